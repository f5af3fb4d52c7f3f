"""Column-statistics losses (pica_loss, cluster_contrastive_loss): fastclust vs eager reference vs
torch.compile(reference), forward and forward+backward, time and peak memory.

    pytest bench/bench_columns.py --benchmark-json=bench/columns.json
    python bench/report.py bench/columns.json

On CUDA also n = 2^20, k = 100 (memory-bound): each such entry stores in extra_info the bytes
the pass must move at the least (`bytes`: forward reads both views once; forward+backward
also reads them again and writes both gradients), so achieved bandwidth = bytes / median time.
Beside them, `copy` entries time a device-to-device copy moving the same number of bytes (half
read, half written): the bandwidth ceiling to compare with.

FASTCLUST_BENCH_MAX_N caps n (for smoke runs, e.g. FASTCLUST_BENCH_MAX_N=256).
"""
import os

import pytest
import torch

from fastclust.ops.columns import FAMILY
from common import DEVICE, compiled, inputs_of, describe, record_peak_memory, synchronize, time_case

MAX_N = int(os.environ.get("FASTCLUST_BENCH_MAX_N", 1 << 20))
LARGE_N = 1 << 20
# Each loss's front end (fastclust.ops.family: the function, its eager twin, its inputs).
LOSSES = {fe.name: fe for fe in FAMILY.front_ends if fe.name in ("pica_loss", "cluster_contrastive_loss")}
SIZES = {"pica_loss": [(768, 10), (768, 70)] + ([(LARGE_N, 100)] if DEVICE == "cuda" else []),
         "cluster_contrastive_loss": [(256, 10), (256, 70), (768, 10), (768, 70)]}


def implementation(impl, loss):
    front_end = LOSSES[loss]
    return {"fastclust": front_end.fn, "eager": front_end.reference, "compile": compiled(front_end.reference)}[impl]


def make_inputs(n, k, device=DEVICE):
    return inputs_of(LOSSES["pica_loss"], n, k, device)  # two views of cluster probabilities


def bytes_moved(n, k, backward, element_size=4):
    """Least traffic of a pass: read both views; backward reads them again and writes both grads."""
    return (6 if backward else 2) * n * k * element_size


def cases():
    for loss, sizes in SIZES.items():
        for n, k in sizes:
            if n <= MAX_N:
                for impl in ("fastclust", "eager", "compile"):
                    yield pytest.param(loss, impl, n, k, id=f"{loss}-{impl}-n{n}-k{k}")


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("loss,impl,n,k", cases())
def test_time(benchmark, loss, impl, n, k, backward):
    benchmark.group = f"{loss} n={n} k={k} {'fwd+bwd' if backward else 'fwd'}"
    rounds = 10 if n >= LARGE_N else 50
    time_case(benchmark, implementation(impl, loss), make_inputs(n, k), backward, rounds,
              op=loss, impl=impl, n=n, k=k, bytes=bytes_moved(n, k, backward))


def _copy(dst, src):
    dst.copy_(src)
    synchronize()


@pytest.mark.skipif(DEVICE != "cuda", reason="the bandwidth ceiling is measured on CUDA only")
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_copy_bandwidth_ceiling(benchmark, backward):
    n = min(LARGE_N, MAX_N)
    moved = bytes_moved(n, 100, backward)
    src = torch.empty(moved // 2 // 4, dtype=torch.float32, device=DEVICE).uniform_()
    dst = torch.empty_like(src)
    benchmark.group = f"device copy of {moved} bytes"
    benchmark.extra_info.update(describe(), op="copy", impl="copy", n=n, k=100, backward=backward,
                                bytes=moved)
    benchmark.pedantic(_copy, args=(dst, src), rounds=20, iterations=1, warmup_rounds=2)


def memory_case(impl, case, device):
    loss, n, k = case
    return implementation(impl, loss), make_inputs(n, k, device)


def memory_cases():
    for loss, sizes in SIZES.items():
        n, k = max(s for s in sizes if s[0] <= MAX_N) if any(s[0] <= MAX_N for s in sizes) else (0, 0)
        if n:
            for impl in ("fastclust", "eager"):
                yield pytest.param(impl, loss, n, k, id=f"{impl}-{loss}-n{n}-k{k}")


@pytest.mark.parametrize("impl,loss,n,k", memory_cases())
def test_peak_memory(benchmark, impl, loss, n, k):
    benchmark.group = "peak memory, fwd+bwd"
    record_peak_memory(benchmark, "bench_columns", impl, (loss, n, k), op=loss, n=n, k=k)
