"""Contrastive losses (NT-Xent, semantic contrastive): fastclust vs eager reference vs
torch.compile(reference), forward and forward+backward, and peak memory.

    pytest bench/bench_contrastive.py --benchmark-json=bench/contrastive.json
    python bench/report.py bench/contrastive.json

FASTCLUST_BENCH_MAX_N caps n (default: 65536 on CUDA, 16384 on CPU); beyond EAGER_MAX_N only
fastclust runs (eager holds several 2n x 2n matrices).
"""
import os

import pytest

from fastclust.ops.contrastive import NT_XENT, SEMANTIC
from common import DEVICE, compiled, inputs_of, record_peak_memory, time_case

MAX_N = int(os.environ.get("FASTCLUST_BENCH_MAX_N", 65536 if DEVICE == "cuda" else 16384))
EAGER_MAX_N = 16384 if DEVICE == "cuda" else 4096
D = 128
TAU = 0.5
# Each loss's front end (fastclust.ops.family: the function, its eager twin, its inputs), and sizes.
LOSSES = {"nt_xent": (NT_XENT, (256, 4096, 16384, 65536)), "semantic_contrastive": (SEMANTIC, (256, 4096))}


def implementation(impl, loss):
    front_end, _ = LOSSES[loss]
    fn = {"fastclust": front_end.fn, "eager": front_end.reference, "compile": compiled(front_end.reference)}[impl]
    return lambda *views: fn(*views, tau=TAU)


def make_inputs(loss, n, d, device=DEVICE):
    return inputs_of(LOSSES[loss][0], n, d, device)


def cases():
    for loss, (_, sizes) in LOSSES.items():
        for n in sizes:
            for impl in ("fastclust", "eager", "compile"):
                if n <= MAX_N and (impl == "fastclust" or n <= EAGER_MAX_N) and (n < 65536 or DEVICE == "cuda"):
                    yield pytest.param(loss, impl, n, id=f"{loss}-{impl}-n{n}-d{D}")


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("loss,impl,n", cases())
def test_time(benchmark, loss, impl, n, backward):
    benchmark.group = f"{loss} n={n} d={D} {'fwd+bwd' if backward else 'fwd'}"
    rounds = 1 if n >= 16384 else 3 if n >= 4096 else 10
    time_case(benchmark, implementation(impl, loss), make_inputs(loss, n, D), backward, rounds,
              op=loss, impl=impl, n=n, d=D)


def memory_case(impl, case, device):
    loss, n, d = case
    return implementation(impl, loss), make_inputs(loss, n, d, device)


MEMORY_CASES = [(impl, "nt_xent", n) for impl, n in
                (("fastclust", 4096), ("eager", 4096), ("fastclust", 16384)) if n <= MAX_N]


@pytest.mark.parametrize("impl,loss,n", MEMORY_CASES, ids=[f"{i}-{l}-n{n}-d{D}" for i, l, n in MEMORY_CASES])
def test_peak_memory(benchmark, impl, loss, n):
    benchmark.group = "peak memory, fwd+bwd"
    peak = record_peak_memory(benchmark, "bench_contrastive", impl, (loss, n, D), op=loss, n=n, d=D)
    if impl == "fastclust" and n == 16384:
        assert peak < 2**30, f"target: n=16384, d=128 under 1 GB peak, measured {peak / 2**20:.0f} MB"
