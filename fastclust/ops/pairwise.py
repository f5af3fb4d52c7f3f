"""Pairwise clustering losses: DAC (Eq. 6-10) and DSEC (Eq. 2, 8-12) in one fused op each way."""
import torch

from ._autograd import OPS, acc_dtype, scalar
from .restraint import restraint

DAC_LOG = 0
DSEC_SQUARED = 1
_REDUCTIONS = ("mean", "sum")


@torch.library.register_fake("fastclust::pairwise_loss")
def _pairwise_loss_fake(rows, cols, u, l, kind, eps):
    torch._check(rows.dim() == 2, lambda: "fastclust: rows must be a 2-D (n, k) tensor")
    loss = rows.new_empty((), dtype=acc_dtype(rows.dtype))
    return loss, rows.new_empty((), dtype=torch.long), rows.new_empty((), dtype=torch.long)


@torch.library.register_fake("fastclust::pairwise_loss_backward")
def _pairwise_loss_backward_fake(grad_sum, rows, cols, u, l, kind, eps):
    return rows.new_empty(rows.shape)


def _pairwise_setup(ctx, inputs, output):
    rows, cols, ctx.u, ctx.l, ctx.kind, ctx.eps = inputs
    ctx.save_for_backward(rows, cols)


def _pairwise_backward(ctx, grad_sum, _grad_pos, _grad_neg):
    rows, cols = ctx.saved_tensors
    args = (ctx.u, ctx.l, ctx.kind, ctx.eps)
    grad_rows = grad_cols = None
    if ctx.needs_input_grad[0]:
        grad_rows = OPS.pairwise_loss_backward(grad_sum, rows, cols, *args)
    if cols is not None and ctx.needs_input_grad[1]:
        # Every pair (i, j) of rows x cols is the pair (j, i) of cols x rows.
        grad_cols = OPS.pairwise_loss_backward(grad_sum, cols, rows, *args)
    return grad_rows, grad_cols, None, None, None, None


torch.library.register_autograd("fastclust::pairwise_loss", _pairwise_backward,
                                setup_context=_pairwise_setup)


def _pairwise(kind, feats, u, l, p, normalized, reduction, eps, return_stats):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"fastclust: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    features = feats if normalized else restraint(feats, p)
    total, n_pos, n_neg = OPS.pairwise_loss(features, None, scalar(u, "u"), scalar(l, "l"), kind,
                                            scalar(eps, "eps"))
    if reduction == "mean":
        # No selected pair: 0 / 1, a zero loss with a zero gradient rather than NaN.
        total = total / (n_pos + n_neg).clamp_min(1).to(total.dtype)
    return (total, n_pos, n_neg) if return_stats else total


def dac_loss(feats, u, l, *, p=2.0, normalized=False, reduction="mean", eps=1e-7,
             return_stats=False):
    """Deep Adaptive Clustering loss (DAC Eq. 6-10) over all ordered pairs of a batch.

    ``L = restraint(feats, p)`` (``feats`` itself when ``normalized``), ``S = L L^T`` with the
    diagonal included. Pairs with ``S_ij > u`` are positives (loss ``-log(clamp(S, eps, 1))``),
    pairs with ``S_ij < l`` negatives (``-log(clamp(1 - S, eps, 1))``); selection carries no
    gradient. ``reduction="mean"`` divides by the number of selected pairs; with none selected
    the loss is 0. ``return_stats=True`` returns ``(loss, n_positive, n_negative)``. No n x n
    tensor is ever held, forward or backward.
    """
    return _pairwise(DAC_LOG, feats, u, l, p, normalized, reduction, eps, return_stats)


def dsec_loss(feats, u, l, *, p=2.0, normalized=False, reduction="mean", return_stats=False):
    """Deep Self-Evolution Clustering loss (DSEC Eq. 2, 8-12).

    Indicator features ``I = restraint(feats, p)``; pairs are selected on the cosine of
    ``I_i, I_j`` (positive above u, negative below l) and pay ``(r_ij - I_i . I_j)^2`` with
    ``r = 1`` for positives and 0 for negatives. Options as for :func:`dac_loss`.
    """
    return _pairwise(DSEC_SQUARED, feats, u, l, p, normalized, reduction, 0.0, return_stats)
