"""Eager PyTorch twins of every fastclust op: the single source of truth for tests and benchmarks.

Each function has the signature and semantics of its fused counterpart and materialises
whatever intermediates eager PyTorch needs (n x n similarity matrices included).
"""
import torch

_NORM_FLOOR = 1e-12  # as torch.nn.functional.normalize


def restraint(x, p=2.0):
    t = torch.exp(x - x.max(dim=1, keepdim=True).values)
    return t / t.norm(p=p, dim=1, keepdim=True)


def _reduce_pairs(pair_loss, sim, pos, neg, reduction, return_stats):
    # A non-finite similarity poisons the loss (sim - sim is NaN there) instead of being
    # silently left out by the threshold comparisons.
    pair_loss = torch.where(torch.isfinite(sim), pair_loss, sim - sim)
    total = pair_loss.sum()
    n_pos, n_neg = pos.sum(), neg.sum()
    if reduction == "mean":
        total = total / (n_pos + n_neg).clamp_min(1).to(total.dtype)
    return (total, n_pos, n_neg) if return_stats else total


def dac_loss(feats, u, l, *, p=2.0, normalized=False, reduction="mean", eps=1e-7,
             return_stats=False):
    L = feats if normalized else restraint(feats, p)
    S = L @ L.T
    with torch.no_grad():
        pos, neg = S > u, S < l
    zero = S.new_zeros(())
    pair_loss = (torch.where(pos, -torch.log(S.clamp(eps, 1)), zero)
                 + torch.where(neg, -torch.log((1 - S).clamp(eps, 1)), zero))
    return _reduce_pairs(pair_loss, S, pos, neg, reduction, return_stats)


def dsec_loss(feats, u, l, *, p=2.0, normalized=False, reduction="mean", return_stats=False):
    I = feats if normalized else restraint(feats, p)
    S = I @ I.T
    with torch.no_grad():
        inv_norm = 1 / I.norm(dim=1).clamp_min(_NORM_FLOOR)
        cos = S * inv_norm[:, None] * inv_norm[None, :]
        pos, neg = cos > u, cos < l
    zero = S.new_zeros(())
    pair_loss = torch.where(pos, (1 - S) ** 2, zero) + torch.where(neg, S ** 2, zero)
    return _reduce_pairs(pair_loss, S, pos, neg, reduction, return_stats)
