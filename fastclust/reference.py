"""Eager PyTorch twins of every fastclust op: the single source of truth for tests and benchmarks.

Each function has the signature and semantics of its fused counterpart and materialises
whatever intermediates eager PyTorch needs (n x n similarity matrices included).
"""
import torch

_NORM_FLOOR = 1e-12  # as torch.nn.functional.normalize


def restraint(x, p=2.0):
    t = torch.exp(x - x.max(dim=1, keepdim=True).values)
    return t / t.norm(p=p, dim=1, keepdim=True)


DAC_LOG, DSEC_SQUARED = 0, 1


def _clamp_unit(x, eps):
    """clamp(x, eps, 1) whose gradient is 1 strictly inside (eps, 1) and 0 elsewhere, bounds
    included. torch.clamp's own gradient at a bound has changed between releases; spelling it out
    keeps the reference, and the kernels that match it, independent of the torch version."""
    inside = (x > eps) & (x < 1)
    return torch.where(inside, x, x.detach().clamp(eps, 1))


def pairwise_loss(rows, cols, u, l, kind, eps):
    """Twin of ``torch.ops.fastclust.pairwise_loss``: the per-pair loss summed over rows x cols
    (cols=None: rows x rows) and the numbers of positive and negative pairs."""
    cols = rows if cols is None else cols
    S = rows @ cols.T
    with torch.no_grad():
        if kind == DSEC_SQUARED:
            inv_r = 1 / rows.norm(dim=1).clamp_min(_NORM_FLOOR)
            inv_c = 1 / cols.norm(dim=1).clamp_min(_NORM_FLOOR)
            selection = S * inv_r[:, None] * inv_c[None, :]
        else:
            selection = S
        pos, neg = selection > u, selection < l
    zero = S.new_zeros(())
    if kind == DSEC_SQUARED:
        pair_loss = torch.where(pos, (1 - S) ** 2, zero) + torch.where(neg, S ** 2, zero)
    else:
        pair_loss = (torch.where(pos, -torch.log(_clamp_unit(S, eps)), zero)
                     + torch.where(neg, -torch.log(_clamp_unit(1 - S, eps)), zero))
    # A non-finite similarity poisons the loss (S - S is NaN there) instead of being silently
    # left out by the threshold comparisons.
    pair_loss = torch.where(torch.isfinite(S), pair_loss, S - S)
    return pair_loss.sum(), pos.sum(), neg.sum()


def _pairwise(kind, feats, u, l, p, normalized, reduction, eps, return_stats):
    features = feats if normalized else restraint(feats, p)
    total, n_pos, n_neg = pairwise_loss(features, None, u, l, kind, eps)
    if reduction == "mean":
        total = total / (n_pos + n_neg).clamp_min(1).to(total.dtype)
    return (total, n_pos, n_neg) if return_stats else total


def dac_loss(feats, u, l, *, p=2.0, normalized=False, reduction="mean", eps=1e-7,
             return_stats=False):
    return _pairwise(DAC_LOG, feats, u, l, p, normalized, reduction, eps, return_stats)


def dsec_loss(feats, u, l, *, p=2.0, normalized=False, reduction="mean", return_stats=False):
    return _pairwise(DSEC_SQUARED, feats, u, l, p, normalized, reduction, 0.0, return_stats)
