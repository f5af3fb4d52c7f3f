"""Pairwise clustering losses: DAC (Eq. 6-10) and DSEC (Eq. 2, 8-12) in one fused op each way."""
import itertools

import torch

from .. import distributed, reference
from ..reference import DAC, DSEC
from .family import Family, FrontEnd, OpCase, Sample, randn
from ._autograd import (OPS, acc_dtype, check_tensors, check_views, cpu_half_as_float, eager_gradients, flag,
                        float32_under_autocast, fused_backward, refuse_double_backward, refuse_forward_ad,
                        scalar)
from .restraint import restraint

_REDUCTIONS = ("mean", "sum")


@torch.library.register_fake("fastclust::pairwise_loss")
def _pairwise_loss_fake(rows, cols, select_rows, select_cols, u, l, kind, eps):
    torch._check(rows.dim() == 2, lambda: "fastclust: rows must be a 2-D (n, k) tensor")
    loss = rows.new_empty((), dtype=acc_dtype(rows.dtype))
    return loss, rows.new_empty((), dtype=torch.long), rows.new_empty((), dtype=torch.long)


@torch.library.register_fake("fastclust::pairwise_loss_backward")
def _pairwise_loss_backward_fake(grad_sum, rows, cols, select_rows, select_cols, u, l, kind, eps):
    return rows.new_empty(rows.shape)


def _pairwise_setup(ctx, inputs, output):
    rows, cols, select_rows, select_cols, ctx.u, ctx.l, ctx.kind, ctx.eps = inputs
    ctx.save_for_backward(rows, cols, select_rows, select_cols)


def _pairwise_backward(ctx, grad_sum, _grad_pos, _grad_neg):
    rows, cols, select_rows, select_cols = ctx.saved_tensors
    args = (ctx.u, ctx.l, ctx.kind, ctx.eps)
    if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
        return eager_gradients(reference.pairwise_loss, (rows, cols, select_rows, select_cols, *args),
                               (grad_sum, None, None), ctx.needs_input_grad)
    grad_rows = grad_cols = None
    if ctx.needs_input_grad[0]:
        grad_rows = fused_backward(OPS.pairwise_loss_backward, grad_sum, rows, cols, select_rows, select_cols,
                                   *args)
    if cols is not None and ctx.needs_input_grad[1]:
        # Every pair (i, j) of rows x cols is the pair (j, i) of cols x rows.
        grad_cols = fused_backward(OPS.pairwise_loss_backward, grad_sum, cols, rows, select_cols, select_rows,
                                   *args)
    # Selection carries no gradient.
    return grad_rows, grad_cols, None, None, None, None, None, None


torch.library.register_autograd("fastclust::pairwise_loss", _pairwise_backward,
                                setup_context=_pairwise_setup)
refuse_double_backward("pairwise_loss_backward", "dac_loss / dsec_loss over a process group")
float32_under_autocast("pairwise_loss")


class _GlobalPairwiseLoss(torch.autograd.Function):
    """Sum over local rows x the global batch, all-reduced over the group.

    Backward needs no communication: the pair (i, j) with i local and j remote is also the pair
    (j, i) of j's rank, and by symmetry both give row i the same gradient, so row i's gradient
    is twice its one-sided sum against the gathered batch (times world_size, see
    fastclust.distributed).
    """

    @staticmethod
    def forward(ctx, rows, select, u, l, kind, eps, group):
        rows = rows.detach()
        if select is None:
            cols, select_cols = distributed.gather_rows(rows, group), None
        else:  # one gather for both, side by side
            cols, select_cols = distributed.gather_rows(torch.cat([rows, select], 1), group).split(
                [rows.shape[1], select.shape[1]], 1)
        total, n_pos, n_neg = OPS.pairwise_loss(rows, cols, select, select_cols, u, l, kind, eps)
        total = total + selector_poison(select)
        # One all-reduce for all three; float64 holds the counts exactly up to 2^53 pairs.
        sums = distributed.all_reduce_sum(torch.stack([total.double(), n_pos.double(), n_neg.double()]), group)
        ctx.save_for_backward(rows, cols, select, select_cols)
        ctx.args = (u, l, kind, eps)
        ctx.factor = 2 * distributed.world_size(group)
        ctx.mark_non_differentiable(n_pos, n_neg)
        return sums[0].to(total.dtype), sums[1].long(), sums[2].long()

    @staticmethod
    def backward(ctx, grad_total, _grad_pos, _grad_neg):
        grad = fused_backward(OPS.pairwise_loss_backward, grad_total * ctx.factor, *ctx.saved_tensors,
                              *ctx.args)
        return grad, None, None, None, None, None, None


def selector_poison(select):
    """0, or NaN when the selector holds a NaN or an infinity: a non-finite selector would
    otherwise just select no pair (comparisons with NaN are false), and its loss would look
    fine. ``x - x`` is exactly 0 for every finite x, so nothing overflows."""
    return 0.0 if select is None else (select - select).sum()


def _pairwise(kind, feats, u, l, p, normalized, reduction, eps, return_stats, group, global_batch,
              select):
    check_tensors(("feats", feats))
    refuse_forward_ad(f"{kind}_loss", feats, select)
    flag(normalized, "normalized")
    flag(return_stats, "return_stats")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"fastclust: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if select is not None:
        check_views(("feats", feats), ("select", select), same_columns=False)
        select = select.detach()
    feats, select = cpu_half_as_float(feats, select)
    if select is not None and not normalized:
        select = restraint(select, p)
    features = feats if normalized else restraint(feats, p)
    args = (scalar(u, "u"), scalar(l, "l"), kind, scalar(eps, "eps"))
    group = distributed.resolve_group(group, global_batch)
    if group is None:
        total, n_pos, n_neg = OPS.pairwise_loss(features, None, select, None, *args)
        total = total + selector_poison(select)
    else:
        total, n_pos, n_neg = _GlobalPairwiseLoss.apply(features, select, *args, group)
    if reduction == "mean":
        # No selected pair: 0 / 1, a zero loss with a zero gradient rather than NaN.
        total = total / (n_pos + n_neg).clamp_min(1).to(total.dtype)
    return (total, n_pos, n_neg) if return_stats else total


def dac_loss(feats, u, l, *, select=None, p=2.0, normalized=False, reduction="mean", eps=1e-7,
             return_stats=False, group=None, global_batch=False):
    """Deep Adaptive Clustering loss (DAC Eq. 6-10) over all ordered pairs of a batch.

    ``L = restraint(feats, p)`` (``feats`` itself when ``normalized``), ``S = L L^T`` with the
    diagonal included. Pairs with ``S_ij > u`` are positives (loss ``-log(clamp(S, eps, 1))``),
    pairs with ``S_ij < l`` negatives (``-log(clamp(1 - S, eps, 1))``); selection carries no
    gradient. ``reduction="mean"`` divides by the number of selected pairs; with none selected
    the loss is 0. ``return_stats=True`` returns ``(loss, n_positive, n_negative)``. No n x n
    tensor is ever held, forward or backward.

    ``select``: an ``(n, k')`` tensor, one row per row of ``feats`` (e.g. the network's outputs
    for the clean images when ``feats`` are those of augmented copies), restrained the same way
    (unless ``normalized``); pairs are then selected on its similarities instead of on ``S``,
    and it gets no gradient. This is DAC's own procedure: the fixed network labels pairs, then
    the network learns them on other views of the images.

    ``group`` (a torch.distributed process group) or ``global_batch=True`` (the default group):
    ``feats`` holds this rank's rows, pairs run over the batch gathered from all ranks, and the
    loss and counts are those of the whole batch (see :mod:`fastclust.distributed` for the
    gradient convention).
    """
    return _pairwise(DAC, feats, u, l, p, normalized, reduction, eps, return_stats, group,
                     global_batch, select)


def dsec_loss(feats, u, l, *, select=None, p=2.0, normalized=False, reduction="mean",
              return_stats=False, group=None, global_batch=False):
    """Deep Self-Evolution Clustering loss (DSEC Eq. 2, 8-12).

    Indicator features ``I = restraint(feats, p)``; pairs are selected on the cosine of
    ``I_i, I_j`` (positive above u, negative below l) and pay ``(r_ij - I_i . I_j)^2`` with
    ``r = 1`` for positives and 0 for negatives. Options as for :func:`dac_loss` (with
    ``select``, on the cosine of the selector's indicator features).
    """
    return _pairwise(DSEC, feats, u, l, p, normalized, reduction, 0.0, return_stats, group,
                     global_batch, select)


# ---- the family's declaration (fastclust.ops.family) ----

def _features(n, k, seed=0):
    # Scaled logits give a spread of similarities, so every threshold region is populated.
    return (randn(n, k, seed=seed, scale=4),)


def _samples(front_end):
    out = []
    for n in (1, 2, 3, 127, 1000):
        for k in (1, 2, 10, 70, 700):
            u, l = (0.8, 0.3) if k > 1 else (1.0, 1.0)  # k = 1: every similarity is exactly 1
            out += [front_end.sample(f"{n}x{k}-p{p}", n, k, seed=n + k, u=u, l=l, p=p)
                    for p in (1.0, 2.0, 3.0)]
    # Norms below 1 keep the diagonal S_ii off DAC's clamp kink at 1, where a last-bit rounding
    # difference would switch its gradient between -1/S and 0.
    restrained = 0.9 * reference.restraint(*_features(50, 6), 2.0)
    for reduction in _REDUCTIONS:
        out.append(front_end.sample(f"50x6-{reduction}", 50, 6, u=0.7, l=0.2, reduction=reduction))
        out.append(Sample(f"50x6-{reduction}-normalized", (restrained,),
                          {**front_end.options, "u": 0.7, "l": 0.2, "reduction": reduction,
                           "normalized": True}))
    for n, k, ks in ((1, 3, 3), (37, 9, 9), (130, 10, 4)):
        out.append(front_end.sample(f"{n}x{k}-select{ks}", n, k, seed=1, u=0.7, l=0.3,
                                    select=_features(n, ks, seed=2)[0]))
    return out


def _similarities(rows, cols, kind):
    """The similarities of restrained ``rows`` x ``cols`` that pairs are selected on (DSEC: cosines)."""
    similarity = rows.double() @ cols.double().T
    if kind == DSEC:
        similarity = similarity / rows.double().norm(dim=1)[:, None] / cols.double().norm(dim=1)[None, :]
    return similarity


def _far_thresholds(values):
    """(u, l) at least a margin away from every value, so that no pair's selection can flip
    between two correct summation orders."""
    v = values.flatten().double()
    lo, hi = v.min().item() - 0.1, v.max().item() + 0.1
    candidates = torch.linspace(lo, hi, 203, dtype=torch.float64)[1:-1]
    dist = (v[None, :] - candidates[:, None]).abs().min(1).values
    half = len(candidates) // 2
    u = candidates[half:][dist[half:].argmax()].item()
    l = candidates[:half][dist[:half].argmax()].item()
    return u, l


def _split_threshold(logits, kind):
    """A threshold u = l in the widest gap between the off-diagonal similarities of
    ``restraint(logits)`` (DSEC: cosines): every pair is selected, as a positive or a negative,
    and none flips under a finite-difference step."""
    restrained = reference.restraint(logits, 2.0)
    similarity = _similarities(restrained, restrained, kind)
    off_diagonal = similarity[~torch.eye(len(similarity), dtype=torch.bool)].sort().values
    widest = (off_diagonal[1:] - off_diagonal[:-1]).argmax()
    threshold = (off_diagonal[widest] + off_diagonal[widest + 1]).item() / 2
    return {"u": threshold, "l": threshold}


def _gradcheck_samples(front_end):
    kind = DSEC if front_end.fn is dsec_loss else DAC
    x, select = randn(6, 3, seed=3), randn(6, 2, seed=4, scale=4)
    return (Sample("6x3", (x,), _split_threshold(x, kind)),
            Sample("6x3-select", (x,), {**_split_threshold(select, kind), "select": select}))


def _op_cases():
    # Symmetric: tiles of 64 x 64 (forward) and 32 rows (backward), features staged 16 (SIMT)
    # and 32 (tensor cores, and the backward's columns) at a time.
    symmetric = [(n, None, k) for n, k in [(1, 1), (31, 15), (32, 16), (33, 17), (63, 31), (64, 32),
                                           (65, 33), (130, 70)]]
    blocks = [(37, 81, 9), (81, 37, 9), (64, 129, 16), (1, 65, 3)]
    for (n, m, k), kind, selector in itertools.product(symmetric + blocks, (DAC, DSEC), (False, True)):
        def args(dtype, n=n, m=m, k=k, kind=kind, selector=selector, ks=max(1, k // 2)):
            def side(rows, width, seed):
                return reference.restraint(randn(rows, width, seed=seed, scale=4), 2.0).to(dtype)

            rows = side(n, k, n + k)
            cols = None if m is None else side(m, k, m + 2 * k)
            sel_rows = side(n, ks, 5) if selector else None
            sel_cols = side(m, ks, 6) if selector and m is not None else None
            on_rows = rows if sel_rows is None else sel_rows
            on_cols = cols if sel_rows is None else sel_cols
            u, l = _far_thresholds(_similarities(on_rows, on_rows if on_cols is None else on_cols, kind))
            return [rows, cols, sel_rows, sel_cols, u, l, kind, 1e-7]

        label = f"{n}x{m or n}x{k}-{kind}" + ("-select" if selector else "")
        yield OpCase("pairwise_loss", label, args, reference=reference.pairwise_loss)
        yield OpCase("pairwise_loss_backward", label,
                     lambda dtype, f=args: [torch.tensor(0.75, dtype=torch.float64), *f(dtype)])


def _front_end(name, fn, twin):
    return FrontEnd(name, fn, twin, _features, {"u": 0.8, "l": 0.3, "return_stats": True}, _samples,
                    accuracy_of=lambda fe: (fe.sample("500x10", 500, 10),), gradcheck_of=_gradcheck_samples,
                    double_backward=True)


DAC_LOSS, DSEC_LOSS = (_front_end("dac_loss", dac_loss, reference.dac_loss),
                       _front_end("dsec_loss", dsec_loss, reference.dsec_loss))
FAMILY = Family("pairwise", (DAC_LOSS, DSEC_LOSS), _op_cases)
