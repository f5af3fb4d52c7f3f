"""Contrastive losses of DCSC / Contrastive Clustering: NT-Xent (Eq. 3.1-3.2) and the semantic
contrastive loss (Eq. 3.4-3.5), both built on one fused op, a row-wise log-sum-exp over a
rectangular block of cosine similarities computed flash-style (online max / sum over key tiles,
recomputed in backward): O(n d) memory, no n x n tensor.
"""
import itertools
import numbers

import torch

from .. import distributed, reference
from .family import Family, FrontEnd, OpCase, Sample, randn
from ._autograd import (OPS, acc_dtype, check_tensors, check_views, cpu_half_as_float, eager_gradients, flag,
                        float32_under_autocast, fused_backward, refuse_double_backward, refuse_forward_ad,
                        scalar)

_NO_SELF = -1


@torch.library.register_fake("fastclust::normalize_rows")
def _normalize_rows_fake(x):
    torch._check(x.dim() == 2, lambda: "fastclust: x must be a 2-D (n, d) tensor")
    return x.new_empty(x.shape)


@torch.library.register_fake("fastclust::normalize_rows_backward")
def _normalize_rows_backward_fake(grad_out, x):
    return x.new_empty(x.shape)


def _normalize_rows_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _normalize_rows_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
        return eager_gradients(reference.normalize_rows, (x,), (grad,), ctx.needs_input_grad)
    return fused_backward(OPS.normalize_rows_backward, grad, x)


torch.library.register_autograd("fastclust::normalize_rows", _normalize_rows_backward,
                                setup_context=_normalize_rows_setup)
refuse_double_backward("normalize_rows_backward", "normalize_rows_backward")
float32_under_autocast("normalize_rows")


@torch.library.register_fake("fastclust::row_logsumexp")
def _row_logsumexp_fake(queries, keys, tau, self_offset):
    torch._check(queries.dim() == 2, lambda: "fastclust: queries must be a 2-D (R, d) tensor")
    return queries.new_empty((queries.shape[0],), dtype=acc_dtype(queries.dtype))


@torch.library.register_fake("fastclust::row_logsumexp_backward")
def _row_logsumexp_backward_fake(grad_lse, queries, keys, lse, tau, self_offset):
    return queries.new_empty(queries.shape), keys.new_empty(keys.shape)


def _row_logsumexp_setup(ctx, inputs, output):
    queries, keys, ctx.tau, ctx.self_offset = inputs
    ctx.save_for_backward(queries, keys, output)


def _row_logsumexp_backward(ctx, grad):
    queries, keys, lse = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
        return eager_gradients(reference.row_logsumexp, (queries, keys, ctx.tau, ctx.self_offset),
                               (grad,), ctx.needs_input_grad)
    grad_q, grad_k = fused_backward(OPS.row_logsumexp_backward, grad, queries, keys, lse, ctx.tau,
                                    ctx.self_offset)
    return (grad_q if ctx.needs_input_grad[0] else None,
            grad_k if ctx.needs_input_grad[1] else None, None, None)


torch.library.register_autograd("fastclust::row_logsumexp", _row_logsumexp_backward,
                                setup_context=_row_logsumexp_setup)
refuse_double_backward("row_logsumexp_backward",
                       "nt_xent_loss / semantic_contrastive_loss over a process group")
float32_under_autocast("row_logsumexp")


def _row_dots(a, b):
    """Row-wise a_i . b_i in the kernels' accumulation dtype: the O(n d) positive terms."""
    dtype = acc_dtype(a.dtype)
    return (a.to(dtype) * b.to(dtype)).sum(1)


def row_logsumexp(queries, keys, tau=1.0, self_offset=None):
    """``lse[r] = log sum_c exp(queries[r] . keys[c] / tau)`` for an ``(R, d)`` and a ``(C, d)``
    tensor, without the ``R x C`` matrix; differentiable in both.

    ``self_offset``: the column ``c = r + self_offset`` is left out of row r's sum (a row
    against its own batch: 0; local rows against keys gathered across ranks: the rank's first
    global row); ``None`` keeps every column. A row with no column left gives ``-inf`` with a
    zero gradient. The result is float32 for float16/bfloat16 input.
    """
    check_tensors(("queries", queries), ("keys", keys))
    refuse_forward_ad("row_logsumexp", queries, keys)
    if self_offset is None:
        offset = _NO_SELF
    elif isinstance(self_offset, bool) or not isinstance(self_offset, numbers.Integral):
        raise TypeError(f"fastclust: self_offset must be None or an integer, got {self_offset!r}")
    elif not 0 <= self_offset < 2**63:  # the schema's int is 64-bit
        raise ValueError(f"fastclust: self_offset must be None or in [0, 2**63), got {self_offset}")
    else:
        offset = int(self_offset)
    return OPS.row_logsumexp(*cpu_half_as_float(queries, keys), scalar(tau, "tau"), offset)


def nt_xent_loss(z_a, z_b, *, tau=0.5, exclude_self=True, group=None, global_batch=False):
    """NT-Xent, the feature-level contrastive loss of DCSC (Eq. 3.1-3.2), SimCLR and CC.

    The 2n rows of ``[z_a; z_b]`` (two ``(n, d)`` views) are L2-normalised and compared by
    cosine similarity over ``tau``; row i's positive is its twin (i +/- n) and its denominator
    runs over all 2n rows except i itself (``exclude_self=False`` keeps i, as Eq. 3.1 literally
    reads). Returns the mean over the 2n rows of ``lse_i - s(i, twin) / tau``. Any n >= 1 (no
    mask is built for a fixed batch size); with n = 1 and ``exclude_self`` the only term is the
    positive and the loss is 0. A zero row normalises to the zero vector (its similarities are
    0) and, as with ``torch.nn.functional.normalize``, its gradient is scaled by 1 / 1e-12.
    Float32 for float16/bfloat16 input; O(n d) memory forward and backward.

    ``group`` (a torch.distributed process group) or ``global_batch=True`` (the default group):
    the views hold this rank's rows; every row's denominator runs over the rows of both views
    gathered from all ranks (local rows x global keys, never a global n x n tensor), and every
    rank gets the loss of the concatenated batch (gradient convention:
    :mod:`fastclust.distributed`).
    """
    refuse_forward_ad("nt_xent_loss", z_a, z_b)
    check_views(("z_a", z_a), ("z_b", z_b))
    flag(exclude_self, "exclude_self")
    z_a, z_b = cpu_half_as_float(z_a, z_b)
    tau = scalar(tau, "tau")
    n = z_a.shape[0]
    z = OPS.normalize_rows(torch.cat([z_a, z_b]))
    group = distributed.resolve_group(group, global_batch)
    if group is None:
        lse = OPS.row_logsumexp(z, z, tau, 0 if exclude_self else _NO_SELF)
        return (lse.sum() - 2 * _row_dots(z[:n], z[n:]).sum() / tau) / (2 * n)
    # One gather for both views: (n, 2d) side by side, split again after.
    gathered, first = distributed.gather_rows_differentiable(torch.cat([z[:n], z[n:]], 1), group)
    total = gathered.shape[0]
    keys = torch.cat(gathered.chunk(2, dim=1))
    # Row i of view a is global row first + i, its twin in view b global row total + first + i.
    lse_a = OPS.row_logsumexp(z[:n], keys, tau, first if exclude_self else _NO_SELF)
    lse_b = OPS.row_logsumexp(z[n:], keys, tau, total + first if exclude_self else _NO_SELF)
    local = lse_a.sum() + lse_b.sum() - 2 * _row_dots(z[:n], z[n:]).sum() / tau
    (summed,) = distributed.sum_over_ranks([local], group)
    return summed / (2 * total)


def semantic_contrastive_loss(p_a, p_b, q_a, q_b, *, tau=1.0, group=None, global_batch=False):
    """Semantic contrastive loss of DCSC (Eq. 3.4-3.5).

    ``p_a, p_b``: the predictor branch's outputs for the two views, ``q_a, q_b``: the
    projection-only branch's, all ``(n, d)``. The similarity s is the cosine (the paper also
    allows a divergence-based one; fastclust uses the cosine)::

        sl_i^a = -log( exp(s(p_i^a, q_i^b)/tau)
                       / sum_j [exp(s(p_i^a, q_j^a)/tau) + exp(s(p_j^a, q_i^b)/tau)] )

    ``sl_i^b`` the same with a and b swapped; the loss is ``(1/2n) sum_i (sl_i^a + sl_i^b)``.
    Each denominator is the log-sum-exp of two fused row-wise log-sum-exps (p^a against q^a,
    q^b against p^a), combined stably. Zero rows as in :func:`nt_xent_loss`.

    ``group`` / ``global_batch=True``: as for :func:`nt_xent_loss`; both sums over j run over
    the rows gathered from every rank.
    """
    refuse_forward_ad("semantic_contrastive_loss", p_a, p_b, q_a, q_b)
    check_views(("p_a", p_a), ("p_b", p_b), ("q_a", q_a), ("q_b", q_b))
    p_a, p_b, q_a, q_b = cpu_half_as_float(p_a, p_b, q_a, q_b)
    tau = scalar(tau, "tau")
    n = p_a.shape[0]
    p = OPS.normalize_rows(torch.cat([p_a, p_b]))
    q = OPS.normalize_rows(torch.cat([q_a, q_b]))
    pa, pb, qa, qb = p[:n], p[n:], q[:n], q[n:]
    group = distributed.resolve_group(group, global_batch)
    if group is None:
        total, keys = n, (pa, pb, qa, qb)
    else:
        # The keys each local row is compared with: the rows of every rank, gathered in one
        # call with the four views side by side.
        gathered, _ = distributed.gather_rows_differentiable(torch.cat([pa, pb, qa, qb], 1), group)
        total, keys = gathered.shape[0], gathered.chunk(4, dim=1)
    keys_pa, keys_pb, keys_qa, keys_qb = keys

    def side(p_x, q_y, keys_q_x, keys_p_x):
        denominator = torch.logaddexp(OPS.row_logsumexp(p_x, keys_q_x, tau, _NO_SELF),
                                      OPS.row_logsumexp(q_y, keys_p_x, tau, _NO_SELF))
        return denominator.sum() - _row_dots(p_x, q_y).sum() / tau

    local = side(pa, qb, keys_qa, keys_pa) + side(pb, qa, keys_qb, keys_pb)
    if group is not None:
        (local,) = distributed.sum_over_ranks([local], group)
    return local / (2 * total)


# ---- the family's declaration (fastclust.ops.family) ----

def _views(count):
    def inputs(n, d, seed=0):
        return tuple(randn(n, d, seed=seed + i) for i in range(count))
    return inputs


def _normalized(rows, d, seed):
    return reference.normalize_rows(randn(rows, d, seed=seed))


def _nt_xent_samples(front_end):
    out = [front_end.sample(f"{n}x{d}-tau{tau}" + ("" if exclude_self else "-with-self"), n, d,
                            seed=n * 7 + d, tau=tau, exclude_self=exclude_self)
           for n in (1, 2, 3, 37, 257) for d in (1, 3, 128) for exclude_self in (True, False)
           for tau in (0.1, 0.5, 2.0)]
    z_a, z_b = front_end.inputs(6, 4)
    z_a[2] = 0
    return out + [Sample("6x4-zero-row", (z_a, z_b), front_end.options)]


def _semantic_samples(front_end):
    out = [front_end.sample(f"{n}x{d}-tau{tau}", n, d, seed=n * 11 + d, tau=tau)
           for n in (1, 2, 3, 37, 257) for d in (1, 3, 128) for tau in (0.2, 1.0)]
    views = front_end.inputs(6, 4, seed=1)
    views[3][0] = 0
    return out + [Sample("6x4-zero-row", views, front_end.options)]


def _row_logsumexp_samples(front_end):
    # Rectangular blocks (local rows against gathered keys), every kind of self_offset.
    return [Sample(f"{rows}x{cols}-self{offset}", (_normalized(rows, 9, 1), _normalized(cols, 9, 2)),
                   {"tau": 0.3, "self_offset": offset})
            for rows, cols in ((37, 81), (81, 37), (64, 64), (1, 130), (130, 1), (300, 700), (700, 300))
            for offset in (None, 0, 5, 36, 500)]


def _op_cases():
    for n, d in [(1, 1), (7, 31), (8, 32), (9, 33), (70, 128)]:
        def rows(dtype, n=n, d=d):
            x = randn(n, d, seed=n + d)
            x[n // 2] = 0  # a zero row: the norm floor
            return x.to(dtype)

        yield OpCase("normalize_rows", f"{n}x{d}", lambda dtype, f=rows: [f(dtype)],
                     reference=reference.normalize_rows)
        yield OpCase("normalize_rows_backward", f"{n}x{d}",
                     lambda dtype, f=rows, n=n, d=d: [randn(n, d, seed=3).to(dtype), f(dtype)])
    # Query tiles of 64 rows, key tiles of 64 columns, and key splits by multiprocessor count.
    shapes = [(1, 1, 1), (63, 65, 15), (64, 64, 16), (65, 63, 17), (200, 300, 33), (37, 700, 128)]
    for (rows, cols, d), offset in itertools.product(shapes, (_NO_SELF, 0, 5)):
        if offset >= cols:
            continue

        def args(dtype, rows=rows, cols=cols, d=d, offset=offset):
            return [_normalized(rows, d, rows + d).to(dtype), _normalized(cols, d, cols + 2 * d).to(dtype),
                    0.3, offset]

        def backward(dtype, f=args, rows=rows):
            q, k, tau, offset = f(dtype)
            lse = OPS.row_logsumexp(q.double(), k.double(), tau, offset).to(acc_dtype(dtype))
            return [randn(rows, seed=7).to(acc_dtype(dtype)), q, k, lse, tau, offset]

        label = f"{rows}x{cols}x{d}-self{offset}"
        yield OpCase("row_logsumexp", label, args, uses_sms=True, reference=reference.row_logsumexp)
        yield OpCase("row_logsumexp_backward", label, backward, uses_sms=True)


NT_XENT = FrontEnd(
    "nt_xent_loss", nt_xent_loss, reference.nt_xent_loss, _views(2), {"tau": 0.5}, _nt_xent_samples,
    accuracy_of=lambda fe: (fe.sample("300x64", 300, 64, tau=0.2),),
    gradcheck_of=lambda fe: [fe.sample(f"4x3-exclude{e}", 4, 3, seed=5, tau=0.4, exclude_self=e) for e in (True, False)],
    double_backward=True)
SEMANTIC = FrontEnd(
    "semantic_contrastive_loss", semantic_contrastive_loss, reference.semantic_contrastive_loss, _views(4),
    {"tau": 1.0}, _semantic_samples,
    accuracy_of=lambda fe: (fe.sample("300x64", 300, 64, tau=0.2),),
    gradcheck_of=lambda fe: (fe.sample("3x5", 3, 5, seed=6, tau=0.6),), double_backward=True)
ROW_LOGSUMEXP = FrontEnd(
    "row_logsumexp", row_logsumexp, reference.row_logsumexp,
    lambda n, d, seed=0: (_normalized(n, d, seed), _normalized(n, d, seed + 1)),
    {"tau": 0.5, "self_offset": 0}, _row_logsumexp_samples,
    # A rank's few rows against a gathered batch: a single row tile, run on the calling thread.
    accuracy_of=lambda fe: (Sample("50x2000x128-self5", (randn(50, 128, seed=1), randn(2000, 128, seed=2)),
                                   {"tau": 0.2, "self_offset": 5}),),
    gradcheck_of=lambda fe: (Sample("5x4x3-self1", (randn(5, 3, seed=7), randn(4, 3, seed=8)),
                                    {"tau": 0.7, "self_offset": 1}),),
    double_backward=True)
FAMILY = Family("contrastive", (NT_XENT, SEMANTIC, ROW_LOGSUMEXP), _op_cases)
