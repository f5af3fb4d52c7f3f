"""Eager PyTorch twins of every fastclust op: the single source of truth for tests and benchmarks.

Each function has the signature and semantics of its fused counterpart and materialises
whatever intermediates eager PyTorch needs (n x n similarity matrices included).
"""
import math

import torch

NORM_FLOOR = 1e-12  # as torch.nn.functional.normalize


def restraint(x, p=2.0):
    t = torch.exp(x - x.max(dim=1, keepdim=True).values)
    return t / t.norm(p=p, dim=1, keepdim=True)


# The ops' kind names (their schemas' `str kind`; csrc/common/*_checks.h holds the same).
DAC, DSEC = "dac", "dsec"
PICA, CLUSTER_CONTRASTIVE = "pica", "cluster_contrastive"


def _clamp_unit(x, eps):
    """clamp(x, eps, 1) whose gradient is 1 strictly inside (eps, 1) and 0 elsewhere, bounds
    included. torch.clamp's own gradient at a bound has changed between releases; spelling it out
    keeps the reference, and the kernels that match it, independent of the torch version."""
    inside = (x > eps) & (x < 1)
    return torch.where(inside, x, x.detach().clamp(eps, 1))


def pairwise_loss(rows, cols, select_rows, select_cols, u, l, kind, eps):
    """Twin of ``torch.ops.fastclust.pairwise_loss``: the per-pair loss summed over rows x cols
    (cols=None: rows x rows) and the numbers of positive and negative pairs; pairs selected on
    select_rows x select_cols when given."""
    cols = rows if cols is None else cols
    S = rows @ cols.T
    with torch.no_grad():
        if select_rows is None:
            side_rows, side_cols, selection = rows, cols, S
        else:
            side_rows = select_rows
            side_cols = select_rows if select_cols is None else select_cols
            selection = side_rows @ side_cols.T
        if kind == DSEC:
            inv_r = 1 / side_rows.norm(dim=1).clamp_min(NORM_FLOOR)
            inv_c = 1 / side_cols.norm(dim=1).clamp_min(NORM_FLOOR)
            selection = selection * inv_r[:, None] * inv_c[None, :]
        pos, neg = selection > u, selection < l
    zero = S.new_zeros(())
    if kind == DSEC:
        pair_loss = torch.where(pos, (1 - S) ** 2, zero) + torch.where(neg, S ** 2, zero)
    else:
        pair_loss = (torch.where(pos, -torch.log(_clamp_unit(S, eps)), zero)
                     + torch.where(neg, -torch.log(_clamp_unit(1 - S, eps)), zero))
    # A non-finite similarity poisons the loss (S - S is NaN there) instead of being silently
    # left out by the threshold comparisons.
    pair_loss = torch.where(torch.isfinite(S), pair_loss, S - S)
    return pair_loss.sum(), pos.sum(), neg.sum()


def _pairwise(kind, feats, u, l, p, normalized, reduction, eps, return_stats, select):
    features = feats if normalized else restraint(feats, p)
    if select is not None:
        select = select.detach() if normalized else restraint(select.detach(), p)
    total, n_pos, n_neg = pairwise_loss(features, None, select, None, u, l, kind, eps)
    if select is not None:  # a non-finite selector poisons the loss (see fastclust.ops.pairwise)
        total = total + (select - select).sum()
    if reduction == "mean":
        total = total / (n_pos + n_neg).clamp_min(1).to(total.dtype)
    return (total, n_pos, n_neg) if return_stats else total


def dac_loss(feats, u, l, *, select=None, p=2.0, normalized=False, reduction="mean", eps=1e-7,
             return_stats=False):
    return _pairwise(DAC, feats, u, l, p, normalized, reduction, eps, return_stats, select)


def dsec_loss(feats, u, l, *, select=None, p=2.0, normalized=False, reduction="mean",
              return_stats=False):
    return _pairwise(DSEC, feats, u, l, p, normalized, reduction, 0.0, return_stats, select)


# ---- column statistics family (PICA, cluster contrastive) ----

def asv_similarity(p1, p2):
    """PICA Eq. 5-8: cosines between the columns of p1 and those of p2, (k, k)."""
    return torch.nn.functional.normalize(p1, dim=0).T @ torch.nn.functional.normalize(p2, dim=0)


def _entropy_term(p):
    """log k - H(z), z = column sums of p normalised to sum 1 (total floored at 1e-12), with
    0 log 0 = 0 (no gradient through an empty cluster's own log term)."""
    sums = p.sum(0)
    z = sums / sums.sum().clamp_min(1e-12)
    log_z = torch.where(z == 0, torch.ones_like(z), z).log()
    return math.log(p.shape[1]) + (z * log_z).sum()


def pica_loss(p1, p2, *, lam=2.0, return_parts=False):
    M = asv_similarity(p1, p2)
    cross_entropy = torch.nn.functional.cross_entropy(M, torch.arange(M.shape[0], device=M.device))
    entropy_term = _entropy_term(p1)
    loss = cross_entropy + lam * entropy_term
    return (loss, cross_entropy, entropy_term) if return_parts else loss


def cluster_contrastive_loss(c_a, c_b, *, tau=1.0, entropy_weight=1.0, return_parts=False):
    k = c_a.shape[1]
    c = torch.nn.functional.normalize(torch.cat([c_a, c_b], dim=1), dim=0)
    sim = (c.T @ c) / tau
    self_mask = torch.eye(2 * k, dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    twins = (torch.arange(2 * k, device=sim.device) + k) % (2 * k)
    cross_entropy = torch.nn.functional.cross_entropy(sim, twins)
    entropy_term = _entropy_term(c_a) + _entropy_term(c_b)
    loss = cross_entropy + entropy_weight * entropy_term
    return (loss, cross_entropy, entropy_term) if return_parts else loss


def column_stats(a, b, full_gram):
    """Twin of ``torch.ops.fastclust.column_stats``: the Gram a^T b (or that of all 2k columns of
    [a | b] when full_gram), and the squared norms and sums of the 2k columns."""
    v = torch.cat([a, b], dim=1)
    gram = v.T @ v if full_gram else a.T @ b
    return gram, (v * v).sum(0), v.sum(0)


# ---- contrastive log-sum-exp family (NT-Xent, semantic contrastive) ----

def normalize_rows(x):
    return torch.nn.functional.normalize(x, dim=1, eps=NORM_FLOOR)


def _self_mask(rows, cols, self_offset, device):
    """True at (r, r + self_offset): the column left out of row r's sum."""
    if self_offset is None or self_offset < 0:
        return torch.zeros(rows, cols, dtype=torch.bool, device=device)
    r = torch.arange(rows, device=device)
    return r[:, None] + self_offset == torch.arange(cols, device=device)[None, :]


def row_logsumexp(queries, keys, tau, self_offset):
    """Twin of ``torch.ops.fastclust.row_logsumexp``: ``log sum_c exp(q_r . k_c / tau)`` per
    query row, leaving out the column ``c = r + self_offset`` (``None`` or negative: none)."""
    S = (queries @ keys.T / tau).masked_fill(
        _self_mask(queries.shape[0], keys.shape[0], self_offset, queries.device), float("-inf"))
    return torch.logsumexp(S, dim=1)


def nt_xent_loss(z_a, z_b, *, tau=0.5, exclude_self=True):
    """NT-Xent over the 2n rows of ``[z_a; z_b]`` as SimCLR / CC write it: cross-entropy of
    each row's similarities with its twin as the target."""
    n = z_a.shape[0]
    z = normalize_rows(torch.cat([z_a, z_b]))
    S = z @ z.T / tau
    if exclude_self:
        S = S.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    twin = torch.arange(2 * n, device=z.device).roll(n)
    return torch.nn.functional.cross_entropy(S, twin)


def semantic_contrastive_loss(p_a, p_b, q_a, q_b, *, tau=1.0):
    """DCSC Eq. 3.4-3.5 with the cosine as s, written as the paper reads: for sl_i^a the
    denominator sums exp(s(p_i^a, q_j^a)/tau) and exp(s(p_j^a, q_i^b)/tau) over all j."""
    pa, pb, qa, qb = (normalize_rows(t) for t in (p_a, p_b, q_a, q_b))

    def side(p_x, q_x, q_y):
        denominator = torch.cat([p_x @ q_x.T, q_y @ p_x.T], dim=1) / tau
        return torch.logsumexp(denominator, dim=1) - (p_x * q_y).sum(1) / tau

    return torch.cat([side(pa, qa, qb), side(pb, qb, qa)]).mean()
