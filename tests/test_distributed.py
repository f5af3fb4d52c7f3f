"""Global-batch losses on torch.distributed: 2 CPU processes, gloo over a file rendezvous."""
import datetime
import itertools
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fastclust
from fastclust import reference
from helpers import assert_survivors_raise, leave_process_group, record_outcome

WORLD = 2
SIZES = [5, 9]  # uneven local batches
K = 6
U, L = 0.7, 0.3
LOSSES = {"dac": fastclust.dac_loss, "dsec": fastclust.dsec_loss}


def full_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(sum(SIZES), K, generator=g, dtype=torch.float64) * 3


SELECTS = {"own": None, "select": full_batch(seed=1)}  # pairs selected on the features or a selector


def _init(rank, init_file, seconds):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=seconds))


def _global_batch_worker(rank, init_file, out_dir):
    _init(rank, init_file, 60)
    start = sum(SIZES[:rank])
    results = {}
    rows = slice(start, start + SIZES[rank])
    for name, fn in LOSSES.items():
        for reduction in ("mean", "sum"):
            for selected_on, select in SELECTS.items():
                local = full_batch()[rows].requires_grad_()
                loss, n_pos, n_neg = fn(local, U, L, reduction=reduction, return_stats=True,
                                        global_batch=True, select=None if select is None else select[rows])
                (grad,) = torch.autograd.grad(loss, local)
                results[name, reduction, selected_on] = (loss.detach(), n_pos, n_neg, grad)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    leave_process_group()


def test_global_batch_equals_single_process(tmp_path):
    mp.spawn(_global_batch_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)),
             nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name in LOSSES:
        ref = getattr(reference, f"{name}_loss")
        for reduction, (selected_on, select) in itertools.product(("mean", "sum"), SELECTS.items()):
            x = full_batch().requires_grad_()
            loss, n_pos, n_neg = ref(x, U, L, reduction=reduction, return_stats=True, select=select)
            (grad,) = torch.autograd.grad(loss, x)
            for rank, results in enumerate(per_rank):
                got = results[name, reduction, selected_on]
                assert (got[1].item(), got[2].item()) == (n_pos.item(), n_neg.item())
                torch.testing.assert_close(got[0], loss.detach(), rtol=1e-12, atol=1e-14)
                # The documented convention: world_size x the single-process gradient, so that
                # DDP's averaging over ranks gives the single-process gradient.
                start = sum(SIZES[:rank])
                torch.testing.assert_close(got[3] / WORLD, grad[start:start + SIZES[rank]],
                                           rtol=1e-10, atol=1e-13)


COLUMN_LOSSES = {"pica": (fastclust.pica_loss, reference.pica_loss, {"lam": 2.0}),
                 "cluster": (fastclust.cluster_contrastive_loss, reference.cluster_contrastive_loss,
                             {"tau": 0.5}),
                 "asv": (fastclust.asv_similarity, reference.asv_similarity, {})}


def full_views():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(sum(SIZES), K, generator=g, dtype=torch.float64).softmax(1) for _ in range(2)]


def _column_worker(rank, init_file, out_dir):
    _init(rank, init_file, 60)
    start = sum(SIZES[:rank])
    results = {}
    for name, (fn, _, kwargs) in COLUMN_LOSSES.items():
        views = [v[start:start + SIZES[rank]].requires_grad_() for v in full_views()]
        out = fn(*views, global_batch=True, **kwargs)
        # A fixed random weighting makes asv's (k, k) output a scalar with a non-trivial gradient.
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
        grads = torch.autograd.grad((out * weights).sum(), views)
        results[name] = (out.detach(), grads)
    torch.save(results, os.path.join(out_dir, f"columns{rank}.pt"))
    leave_process_group()


def test_column_losses_over_the_global_batch(tmp_path):
    mp.spawn(_column_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp_path / f"columns{r}.pt") for r in range(WORLD)]
    for name, (_, ref, kwargs) in COLUMN_LOSSES.items():
        views = [v.requires_grad_() for v in full_views()]
        out = ref(*views, **kwargs)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
        grads = torch.autograd.grad((out * weights).sum(), views)
        for rank, (got, got_grads) in enumerate(per_rank[r][name] for r in range(WORLD)):
            torch.testing.assert_close(got, out.detach(), rtol=1e-12, atol=1e-14)
            start = sum(SIZES[:rank])
            for got_grad, grad in zip(got_grads, grads):
                # world_size x the single-process gradient: DDP's average gives the latter.
                torch.testing.assert_close(got_grad / WORLD, grad[start:start + SIZES[rank]],
                                           rtol=1e-10, atol=1e-13)


# name: (fused, reference, number of (n, d) views, keyword arguments)
LSE_LOSSES = {"nt_xent": (fastclust.nt_xent_loss, reference.nt_xent_loss, 2, {"tau": 0.3}),
              "nt_xent_with_self": (fastclust.nt_xent_loss, reference.nt_xent_loss, 2,
                                    {"tau": 0.3, "exclude_self": False}),
              "semantic": (fastclust.semantic_contrastive_loss, reference.semantic_contrastive_loss,
                           4, {"tau": 0.7})}


def lse_views(count):
    return full_views() + [v.flip(1) for v in full_views()][:count - 2]


def _lse_worker(rank, init_file, out_dir):
    _init(rank, init_file, 60)
    start = sum(SIZES[:rank])
    results = {}
    for name, (fn, _, count, kwargs) in LSE_LOSSES.items():
        views = [v[start:start + SIZES[rank]].requires_grad_() for v in lse_views(count)]
        loss = fn(*views, global_batch=True, **kwargs)
        results[name] = (loss.detach(), torch.autograd.grad(loss, views))
    torch.save(results, os.path.join(out_dir, f"lse{rank}.pt"))
    leave_process_group()


def test_contrastive_losses_over_the_global_batch(tmp_path):
    mp.spawn(_lse_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp_path / f"lse{r}.pt") for r in range(WORLD)]
    for name, (_, ref, count, kwargs) in LSE_LOSSES.items():
        views = [v.requires_grad_() for v in lse_views(count)]
        loss = ref(*views, **kwargs)
        grads = torch.autograd.grad(loss, views)
        for rank, results in enumerate(per_rank):
            got, got_grads = results[name]
            torch.testing.assert_close(got, loss.detach(), rtol=1e-12, atol=1e-14)
            start = sum(SIZES[:rank])
            for got_grad, grad in zip(got_grads, grads):
                torch.testing.assert_close(got_grad / WORLD, grad[start:start + SIZES[rank]],
                                           rtol=1e-10, atol=1e-13)


def _dead_peer_worker(rank, init_file, out_dir):
    _init(rank, init_file, 5)
    if rank == 1:
        os._exit(0)  # dies without joining the collective
    record_outcome(lambda: fastclust.dac_loss(torch.randn(4, 3), U, L, global_batch=True), out_dir)


def test_dead_rank_raises_instead_of_hanging(tmp_path):
    assert_survivors_raise(_dead_peer_worker, WORLD, tmp_path)


def test_global_batch_without_init_is_a_clear_error():
    with pytest.raises(RuntimeError, match="need torch.distributed to be initialised"):
        fastclust.dac_loss(torch.randn(4, 3), U, L, global_batch=True)
    with pytest.raises(RuntimeError, match="need torch.distributed to be initialised"):
        fastclust.pica_loss(torch.rand(4, 3), torch.rand(4, 3), global_batch=True)
