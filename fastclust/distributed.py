"""Losses over the global batch of a torch.distributed job.

Each rank passes its local rows; the ops pair them with the rows gathered from every rank
(a rectangular block: local rows x global columns, never a global n x n tensor), and every rank
gets the loss of the concatenated batch.

The column-statistics losses (``pica_loss``, ``cluster_contrastive_loss``, ``asv_similarity``)
need no gathered features: their statistics (Gram matrix, column norms and sums) are sums over
rows, so each rank all-reduces its partial statistics and evaluates the loss on the totals.

Gradient convention: the gradient a rank receives for its own rows is ``world_size`` times the
single-process gradient of those rows. DistributedDataParallel averages parameter gradients
over the ranks, so after its all-reduce every rank holds exactly the single-process gradient of
the global-batch loss, as if one process had trained on the whole batch.
"""
import torch
import torch.distributed as dist


def resolve_group(group, global_batch):
    """The process group to reduce over, or None for a purely local loss."""
    if not isinstance(global_batch, bool):
        raise TypeError(f"fastclust: global_batch must be True or False, got {global_batch!r}")
    if group is None and not global_batch:
        return None
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("fastclust: group= / global_batch=True need torch.distributed to be "
                           "initialised first (torch.distributed.init_process_group)")
    return dist.group.WORLD if group is None else group


def world_size(group):
    return dist.get_world_size(group)


def _gather(x, group):
    """The rows of ``x`` from every rank, concatenated in rank order, and each rank's row count;
    local row counts may differ between ranks."""
    count = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    counts = [torch.empty_like(count) for _ in range(world_size(group))]
    dist.all_gather(counts, count, group=group)
    counts = [int(c) for c in counts]
    # all_gather needs equal shapes: pad to the largest local batch, then cut the padding off.
    padded = x.new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:c] for part, c in zip(parts, counts)]), counts


def gather_rows(x, group):
    """The rows of ``x`` from every rank, concatenated in rank order. Not differentiable (the
    pairwise loss's backward handles the columns itself)."""
    return _gather(x, group)[0]


class _GatherRows(torch.autograd.Function):
    """gather_rows with a gradient: each rank's gradient w.r.t. the gathered rows is summed
    over the ranks (one all-reduce) and every rank keeps the slice of its own rows. With the
    losses' world_size-scaled upstream gradient (see _SumOverRanks) this is the convention
    above. Also returns the global index of this rank's first row (no gradient)."""

    @staticmethod
    def forward(ctx, x, group):
        rows, counts = _gather(x, group)
        ctx.group = group
        ctx.first = sum(counts[:dist.get_rank(group)])
        ctx.count = x.shape[0]
        first = torch.tensor(ctx.first)
        ctx.mark_non_differentiable(first)
        return rows, first

    @staticmethod
    def backward(ctx, grad, _grad_first):
        total = all_reduce_sum(grad.contiguous(), ctx.group)
        return total[ctx.first:ctx.first + ctx.count], None


def gather_rows_differentiable(x, group):
    """The rows of ``x`` from every rank in rank order, and the global index (an int) of this
    rank's first row; gradients reach the rank that produced each row."""
    rows, first = _GatherRows.apply(x, group)
    return rows, int(first)


class _AllReduceSum(torch.autograd.Function):
    """The sum over the ranks, each rank's output feeding a different computation (as in batch
    normalisation over the global batch): the gradient w.r.t. a rank's input is the sum of the
    gradients w.r.t. every rank's output, one all-reduce."""

    @staticmethod
    def forward(ctx, t, group):
        ctx.group = group
        t = t.clone()
        dist.all_reduce(t, group=group)
        return t

    @staticmethod
    def backward(ctx, grad):
        return _AllReduceSum.apply(grad.contiguous(), ctx.group), None


def all_reduce_sum(t, group):
    """Sum of ``t`` over the ranks, on every rank (a new tensor); differentiable (see
    :class:`_AllReduceSum`)."""
    return _AllReduceSum.apply(t, group)


class _SumOverRanks(torch.autograd.Function):
    """The elementwise sum of each tensor over the ranks, in one all-reduce.

    Backward needs no communication: every rank evaluates the loss on the same totals, so each
    holds the same gradient w.r.t. them, which is the gradient w.r.t. its own partial sums;
    it is scaled by ``world_size`` for the convention above.
    """

    @staticmethod
    def forward(ctx, group, *tensors):
        ctx.world = world_size(group)
        flat = torch.cat([t.reshape(-1) for t in tensors])  # a fresh buffer: reduce in place
        dist.all_reduce(flat, group=group)
        return tuple(part.view_as(t) for part, t in
                     zip(flat.split([t.numel() for t in tensors]), tensors))

    @staticmethod
    def backward(ctx, *grads):
        return (None, *(None if g is None else g * ctx.world for g in grads))


def sum_over_ranks(tensors, group):
    """Differentiable sums of same-dtype tensors over the ranks of ``group`` (see
    :class:`_SumOverRanks` for the gradient)."""
    return _SumOverRanks.apply(group, *tensors)


def global_mean(values, group):
    """The mean of every element of ``values`` over all ranks (``values.mean()`` when ``group``
    is None), with the gradient convention above: for a loss term that is a mean over samples."""
    if group is None:
        return values.mean()
    # float64: the count stays exact far beyond float32's 2^24 elements.
    total, count = sum_over_ranks([values.sum(dtype=torch.float64).reshape(1),
                                   torch.full((1,), values.numel(), dtype=torch.float64, device=values.device)],
                                  group)
    return (total / count).reshape(()).to(torch.float64 if values.dtype == torch.float64 else torch.float32)
