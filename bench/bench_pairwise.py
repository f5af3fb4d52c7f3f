"""Pairwise losses (restraint + DAC / DSEC): fastclust vs eager reference vs torch.compile(reference).

    pytest bench/bench_pairwise.py --benchmark-json=bench/pairwise.json
    python bench/report.py bench/pairwise.json

FASTCLUST_BENCH_MAX_N caps n (default: 65536 on CPU, 131072 on CUDA); n >= 65536 runs k = 10 only.
"""
import os

import pytest

from fastclust.ops.pairwise import DAC_LOSS, DSEC_LOSS
from common import DEVICE, compiled, inputs_of, record_peak_memory, time_case

MAX_N = int(os.environ.get("FASTCLUST_BENCH_MAX_N", 131072 if DEVICE == "cuda" else 65536))
# Largest n whose n x n float32 matrices eager PyTorch can hold several of.
EAGER_MAX_N = 16384 if DEVICE == "cuda" else 4096
U, L = 0.9, 0.4
# Each loss's front end (fastclust.ops.family: the function, its eager twin, its inputs).
LOSSES = {"dac": DAC_LOSS, "dsec": DSEC_LOSS}


def implementation(impl, loss):
    front_end = LOSSES[loss]
    return {"fastclust": front_end.fn, "eager": front_end.reference, "compile": compiled(front_end.reference)}[impl]


def make_inputs(n, k, device=DEVICE):
    return [*inputs_of(DAC_LOSS, n, k, device), U, L]


def cases():
    for loss in LOSSES:
        for n in (1024, 4096, 16384, 65536, 131072):
            for k in (10, 70):
                for impl in ("fastclust", "eager", "compile"):
                    if n <= MAX_N and (impl == "fastclust" or n <= EAGER_MAX_N) and (n < 65536 or k == 10):
                        yield pytest.param(loss, impl, n, k, id=f"{loss}-{impl}-n{n}-k{k}")


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("loss,impl,n,k", cases())
def test_time(benchmark, loss, impl, n, k, backward):
    benchmark.group = f"{loss} n={n} k={k} {'fwd+bwd' if backward else 'fwd'}"
    rounds = 1 if n >= 65536 else 3 if n >= 16384 else 10
    time_case(benchmark, implementation(impl, loss), make_inputs(n, k), backward, rounds,
              op=loss, impl=impl, n=n, k=k)


def memory_case(impl, case, device):
    loss, n, k = case
    return implementation(impl, loss), make_inputs(n, k, device)


MEMORY_CASES = [("fastclust", "dac", 4096, 10), ("eager", "dac", 4096, 10),
                ("fastclust", "dac", 32768, 10)]


@pytest.mark.parametrize("impl,loss,n,k", MEMORY_CASES, ids=[f"{i}-{l}-n{n}-k{k}" for i, l, n, k in MEMORY_CASES])
def test_peak_memory(benchmark, impl, loss, n, k):
    benchmark.group = "peak memory, fwd+bwd"
    peak = record_peak_memory(benchmark, "bench_pairwise", impl, (loss, n, k), op=loss, n=n, k=k)
    if impl == "fastclust" and n == 32768:
        assert peak < 2**30, f"target: n=32768, k=10 under 1 GB peak, measured {peak / 2**20:.0f} MB"
