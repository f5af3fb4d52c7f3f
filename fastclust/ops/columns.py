"""Column-statistics losses: PICA's ASV similarity and loss (Eq. 5-12) and the cluster-level
contrastive loss of CC / DCSC (Eq. 3.3 with the Eq. 3.6 regulariser).

Each depends on the two (n, k) views only through statistics of their 2k columns: a Gram matrix,
squared column norms and column sums. ``torch.ops.fastclust.column_stats`` computes them in one
pass over n, ``column_loss_from_stats`` turns them into the loss (and, in the same call, the
loss's gradient w.r.t. them), and the backward is one more pass over n. The two halves are
separate ops so that a global-batch version can all-reduce the statistics in between.

The local loss (no process group) runs the first two in one op, ``column_loss``, which also
returns the loss's gradient w.r.t. the statistics, so that its backward is the one pass over n:
at the sizes people train with (n ~ 10^3, k ~ 10^2) the passes take tens of microseconds, so
every op call and autograd node saved counts. For the same reason these ops' autograd is
registered in C++ (csrc/autograd/column_ops.cpp), not here: only their fake kernels are.
"""
import itertools

import torch

from .. import distributed, reference
from ..reference import CLUSTER_CONTRASTIVE, NORM_FLOOR, PICA
from .family import Family, FrontEnd, OpCase, Sample, randn
from ._autograd import (OPS, acc_dtype, check_tensors, cpu_half_as_float, flag, float32_under_autocast,
                        refuse_double_backward, refuse_forward_ad, scalar)

# Floored squared: flooring before the root keeps the root's infinite slope at 0 out of an
# all-zero column's gradient (the kernels compare squared norms too, csrc/common/scalar_math.h).
_SQ_NORM_FLOOR = NORM_FLOOR**2


@torch.library.register_fake("fastclust::column_stats")
def _column_stats_fake(a, b, full_gram):
    torch._check(a.dim() == 2, lambda: "fastclust: the first view (p1 / c_a) must be a 2-D (n, k) tensor")
    k = a.shape[1]
    side = 2 * k if full_gram else k
    dtype = acc_dtype(a.dtype)
    return (a.new_empty((side, side), dtype=dtype), a.new_empty((2 * k,), dtype=dtype),
            a.new_empty((2 * k,), dtype=dtype))


@torch.library.register_fake("fastclust::column_stats_backward")
def _column_stats_backward_fake(grad_gram, grad_sq_norms, grad_sums, a, b, full_gram):
    return a.new_empty(a.shape), b.new_empty(b.shape)


@torch.library.register_fake("fastclust::column_loss_from_stats")
def _column_loss_fake(gram, sq_norms, sums, kind, tau, weight):
    return (gram.new_empty(()), gram.new_empty(()), gram.new_empty(()), gram.new_empty(gram.shape),
            sq_norms.new_empty(sq_norms.shape), sums.new_empty(sums.shape))


@torch.library.register_fake("fastclust::column_loss")
def _column_loss_fused_fake(a, b, kind, tau, weight):
    gram, sq_norms, sums = _column_stats_fake(a, b, kind == CLUSTER_CONTRASTIVE)
    return _column_loss_fake(gram, sq_norms, sums, kind, tau, weight)


# The family's C++ autograd computes its gradient with column_stats_backward.
refuse_double_backward("column_stats_backward", "asv_similarity / pica_loss / cluster_contrastive_loss")
for _op in ("column_stats", "column_loss_from_stats", "column_loss"):
    float32_under_autocast(_op)


def _statistics(a, b, full_gram, group):
    """The column statistics of this process's rows, or of the global batch when ``group`` (a
    resolved process group) is given (partial statistics all-reduced; see fastclust.distributed)."""
    stats = OPS.column_stats(*cpu_half_as_float(a, b), full_gram)
    return stats if group is None else distributed.sum_over_ranks(stats, group)


def _column_loss(a, b, kind, tau, weight, return_parts, group, global_batch):
    flag(return_parts, "return_parts")
    group = distributed.resolve_group(group, global_batch)
    if group is None:
        loss, cross_entropy, entropy_term, *_ = OPS.column_loss(*cpu_half_as_float(a, b), kind, tau, weight)
    else:
        gram, sq_norms, sums = _statistics(a, b, kind == CLUSTER_CONTRASTIVE, group)
        loss, cross_entropy, entropy_term, *_ = OPS.column_loss_from_stats(gram, sq_norms, sums,
                                                                           kind, tau, weight)
    return (loss, cross_entropy, entropy_term) if return_parts else loss


def asv_similarity(p1, p2, *, group=None, global_batch=False):
    """PICA's ASV similarity (Eq. 5-8): ``M[a, b] = cos(p1[:, a], p2[:, b])``, a ``(k, k)`` matrix.

    ``p1, p2`` are ``(n, k)`` cluster-assignment matrices of two views of the same n samples.
    Column norms are floored at 1e-12 as in ``F.normalize``: an all-zero column has cosine 0
    with every column (and ``F.normalize``'s finite gradient). The ``(k, k)`` cosines are
    formed from the fused statistics with a few elementwise ATen ops. float64 for float64 input,
    float32 otherwise.

    ``group`` (a torch.distributed process group) or ``global_batch=True`` (the default group):
    the views hold this rank's rows, their partial column statistics are all-reduced, and the
    result is that of the concatenated batch on every rank (gradient convention:
    :mod:`fastclust.distributed`).
    """
    check_tensors(("p1", p1), ("p2", p2))
    refuse_forward_ad("asv_similarity", p1, p2)
    gram, sq_norms, _ = _statistics(p1, p2, False, distributed.resolve_group(group, global_batch))
    k = gram.shape[0]
    inv_norms = sq_norms.clamp_min(_SQ_NORM_FLOOR).rsqrt()
    return gram * inv_norms[:k, None] * inv_norms[None, k:]


def pica_loss(p1, p2, *, lam=2.0, return_parts=False, group=None, global_batch=False):
    """The PICA loss (Eq. 9-12) of two ``(n, k)`` views, k >= 2.

    ``cross_entropy``: the mean over the k rows of ``M = asv_similarity(p1, p2)`` of the
    cross-entropy of ``softmax(M[a, :])`` against target a. ``entropy_term``:
    ``log k - H(z)`` with ``z`` the column sums of ``p1`` normalised to sum 1 and
    ``0 log 0 = 0`` (an empty cluster adds nothing and passes no gradient through its own
    log term; an all-zero ``p1`` gives ``z = 0``). Returns ``cross_entropy + lam * entropy_term``,
    or ``(loss, cross_entropy, entropy_term)`` with ``return_parts=True``.

    ``p1, p2`` are cluster probabilities (e.g. softmax outputs) of the original and perturbed
    images; PICA's repetition of each sample is the caller's tiling of ``p1``. A negative
    column sum makes the entropy NaN. Gradients flow to both views; float64 for float64 input,
    float32 otherwise.

    ``group`` / ``global_batch=True``: as for :func:`asv_similarity`.
    """
    check_tensors(("p1", p1), ("p2", p2))
    refuse_forward_ad("pica_loss", p1, p2)
    return _column_loss(p1, p2, PICA, 1.0, scalar(lam, "lam"), return_parts, group, global_batch)


def cluster_contrastive_loss(c_a, c_b, *, tau=1.0, entropy_weight=1.0, return_parts=False,
                             group=None, global_batch=False):
    """The cluster-level contrastive loss of CC / DCSC (Eq. 3.3) plus its clustering
    regulariser (Eq. 3.6, written as CC does), of two ``(n, k)`` views, k >= 2.

    The 2k columns of ``[c_a, c_b]`` are L2-normalised (norm floored at 1e-12 like
    ``F.normalize``); similarities are their cosines over ``tau``. Column j's positive is its
    twin j +/- k and its denominator every column but itself; ``cross_entropy`` is the mean over
    the 2k columns. ``entropy_term = (log k - H(z_a)) + (log k - H(z_b))`` with ``z`` a view's
    column sums normalised to sum 1, ``0 log 0 = 0`` as in :func:`pica_loss`. Returns
    ``cross_entropy + entropy_weight * entropy_term``, or ``(loss, cross_entropy, entropy_term)``
    with ``return_parts=True``.

    ``group`` / ``global_batch=True``: as for :func:`asv_similarity`.
    """
    check_tensors(("c_a", c_a), ("c_b", c_b))
    refuse_forward_ad("cluster_contrastive_loss", c_a, c_b)
    return _column_loss(c_a, c_b, CLUSTER_CONTRASTIVE, scalar(tau, "tau"),
                        scalar(entropy_weight, "entropy_weight"), return_parts, group, global_batch)


# ---- the family's declaration (fastclust.ops.family) ----

def _probabilities(n, k, seed=0):
    """Two views of n samples' cluster probabilities (softmax of scaled logits)."""
    return tuple(randn(n, k, seed=seed + i, scale=3).softmax(1) for i in range(2))


def _logits(n, k, seed=0):
    """Two views of any sign: asv_similarity is defined for any matrix."""
    return tuple(randn(n, k, seed=seed + i, scale=3) for i in range(2))


def _samples(front_end):
    out = []
    for n in (1, 3, 127, 768):
        for k in (2, 10, 70, 700):
            # k = 700 over-clustering: the 2k x 2k Gram of cluster_contrastive_loss at n = 768
            # costs seconds on a small CPU.
            if front_end.name == "cluster_contrastive_loss" and k == 700 and n > 127:
                continue
            sample = front_end.sample(f"{n}x{k}", n, k, seed=n + k)
            if n == 1:
                # A one-sample column's cosines are signs: the exact gradient is 0, and both
                # sides return the rounding residue of terms of size 1 / |x|. Entries away from
                # 0 keep that below the tolerance.
                sample = Sample(sample.label, tuple(t.abs() + 0.5 for t in sample.tensors), sample.options)
            out.append(sample)
    a, b = front_end.inputs(20, 5)
    a[:, 1], b[:, 3] = 0, 0
    out.append(Sample("20x5-zero-columns", (a, b), front_end.options))
    if front_end.name != "asv_similarity":
        zero = torch.zeros(7, 4, dtype=torch.float64)
        out.append(Sample("7x4-all-zero", (zero, zero.clone()), front_end.options))
    return out


def _op_cases():
    # Gram tiles of 64 columns, rows staged 16 at a time, split over n by multiprocessor count.
    for (n, k), full_gram in itertools.product([(1, 1), (15, 63), (16, 64), (17, 65), (200, 130), (1000, 10)],
                                               (False, True)):
        def views(dtype, n=n, k=k):
            return [t.to(dtype) for t in _probabilities(n, k, seed=n + k)]

        def backward(dtype, f=views, k=k, full_gram=full_gram, present=(True, True, True)):
            side = 2 * k if full_gram else k
            grads = [randn(side, side, seed=1), randn(2 * k, seed=2), randn(2 * k, seed=3)]
            grads = [g.to(acc_dtype(dtype)) for g in grads]
            return [g if keep else None for g, keep in zip(grads, present)] + [*f(dtype), full_gram]

        label = f"{n}x{k}-" + ("full" if full_gram else "cross")
        yield OpCase("column_stats", label, lambda dtype, f=views, fg=full_gram: [*f(dtype), fg],
                     uses_sms=True, reference=reference.column_stats)
        yield OpCase("column_stats_backward", label, backward)
        for present in [(True, False, False), (False, True, True)]:
            yield OpCase("column_stats_backward",
                         label + "-grads" + "".join("gqs"[i] for i in range(3) if present[i]),
                         lambda dtype, f=backward, present=present: f(dtype, present=present))
    for (n, k), kind in itertools.product([(1, 2), (17, 65), (300, 70)], (PICA, CLUSTER_CONTRASTIVE)):
        def fused(dtype, n=n, k=k, kind=kind):
            a, b = _probabilities(n, k, seed=n)[0].to(dtype), _probabilities(n, k, seed=k)[0].to(dtype)
            return [a, b, kind, 0.5 if kind == CLUSTER_CONTRASTIVE else 1.0, 1.5]

        yield OpCase("column_loss", f"{n}x{k}-{kind}", fused, uses_sms=True, reference=_column_loss_twin)
    for k, kind in itertools.product([2, 10, 70, 130], (PICA, CLUSTER_CONTRASTIVE)):
        def from_stats(dtype, k=k, kind=kind):
            full_gram = kind == CLUSTER_CONTRASTIVE
            stats = reference.column_stats(*_probabilities(257, k, seed=k), full_gram)
            return [*(t.to(dtype) for t in stats), kind, 0.5 if full_gram else 1.0, 1.5]

        yield OpCase("column_loss_from_stats", f"k{k}-{kind}", from_stats, dtypes=(torch.float64, torch.float32))


def _column_loss_twin(a, b, kind, tau, weight):
    """The first three outputs of column_loss (loss, cross-entropy, entropy term)."""
    if kind == PICA:
        return reference.pica_loss(a, b, lam=weight, return_parts=True)
    return reference.cluster_contrastive_loss(a, b, tau=tau, entropy_weight=weight, return_parts=True)


def _front_end(name, fn, twin, inputs, options):
    return FrontEnd(name, fn, twin, inputs, options, _samples,
                    accuracy_of=lambda fe: (fe.sample("768x70", 768, 70),),
                    gradcheck_of=lambda fe: (fe.sample("5x3", 5, 3, seed=4),), double_backward=False)


FAMILY = Family("columns", (
    _front_end("asv_similarity", asv_similarity, reference.asv_similarity, _logits, {}),
    _front_end("pica_loss", pica_loss, reference.pica_loss, _probabilities, {"lam": 2.0, "return_parts": True}),
    _front_end("cluster_contrastive_loss", cluster_contrastive_loss, reference.cluster_contrastive_loss,
               _probabilities, {"tau": 0.5, "entropy_weight": 1.5, "return_parts": True}),
), _op_cases)
