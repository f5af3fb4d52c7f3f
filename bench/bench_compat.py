"""fastclust.compat against what it replaces: each class vs its peer's published formula written
eagerly ("eager": the baselines of tests/test_compat.py, imported from there) and vs the peer
package itself where it is installed ("peer": pytorch-metric-learning, lightly; skipped
otherwise), forward and forward+backward, time and peak memory.

    pytest bench/bench_compat.py --benchmark-json=bench/compat.json
    python bench/report.py bench/compat.json
"""
import os
import sys

import pytest
import torch

from common import DEVICE, record_peak_memory, time_case

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import test_compat as formulas  # noqa: E402
from fastclust.compat import cc, lightly, pica, pml  # noqa: E402


def features(n, d, device):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, d, generator=g).to(device).requires_grad_() for _ in range(2)]


def probabilities(n, k, device):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, k, generator=g) * 3).softmax(1).to(device).requires_grad_() for _ in range(2)]


def labelled_pairs(n, d, device):
    """2n embeddings whose labels each occur twice (pml's two-view case)."""
    return [features(2 * n, d, device)[0], torch.arange(n, device=device).repeat(2)]


def peer_pml(temperature):
    from pytorch_metric_learning.losses import NTXentLoss
    return NTXentLoss(temperature)


def peer_lightly(temperature):
    from lightly.loss import NTXentLoss
    return NTXentLoss(temperature)


# loss: (its inputs for (n, d or k), the second size's name, {impl: (n, d or k) -> the loss}).
LOSSES = {
    "lightly.NTXentLoss": (features, "d", {
        "fastclust": lambda n, d: lightly.NTXentLoss(0.5),
        "eager": lambda n, d: lambda a, b: formulas.lightly_ntxent(a, b, 0.5),
        "peer": lambda n, d: peer_lightly(0.5)}),
    "pml.NTXentLoss": (labelled_pairs, "d", {
        "fastclust": lambda n, d: pml.NTXentLoss(0.07),
        "peer": lambda n, d: peer_pml(0.07)}),
    "cc.InstanceLoss": (features, "d", {
        "fastclust": lambda n, d: cc.InstanceLoss(n, 0.5),
        "eager": lambda n, d: lambda a, b: formulas.cc_instance(a, b, 0.5)}),
    "cc.ClusterLoss": (probabilities, "k", {
        "fastclust": lambda n, k: cc.ClusterLoss(k, 1.0),
        "eager": lambda n, k: lambda a, b: formulas.cc_cluster(a, b, 1.0)}),
    "pica.PUILoss": (probabilities, "k", {
        "fastclust": lambda n, k: pica.PUILoss(2.0),
        "eager": lambda n, k: lambda a, b: formulas.pica_pui(a, b, 2.0)}),
}
# pml's own NT-Xent builds n x n x n tensors: at n = 1024 pairs it asks for tens of GB.
SIZES = {"lightly.NTXentLoss": [(4096, 128)], "pml.NTXentLoss": [(256, 128)],
         "cc.InstanceLoss": [(4096, 128)], "cc.ClusterLoss": [(768, 70)], "pica.PUILoss": [(768, 70)]}


def build(loss, impl, n, size):
    try:
        return LOSSES[loss][2][impl](n, size)
    except ImportError:
        pytest.skip(f"the peer package of {loss} is not installed")


def cases():
    for loss, sizes in SIZES.items():
        for n, size in sizes:
            for impl in LOSSES[loss][2]:
                yield pytest.param(loss, impl, n, size, id=f"{loss}-{impl}-n{n}-{size}")


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("loss,impl,n,size", cases())
def test_time(benchmark, loss, impl, n, size, backward):
    make_inputs, size_name, _ = LOSSES[loss]
    fn = build(loss, impl, n, size)
    benchmark.group = f"{loss} n={n} {size_name}={size} {'fwd+bwd' if backward else 'fwd'}"
    time_case(benchmark, fn, make_inputs(n, size, DEVICE), backward, 10, op=loss, impl=impl, n=n,
              **{size_name: size})


def memory_case(impl, case, device):
    loss, n, size = case
    return LOSSES[loss][2][impl](n, size), LOSSES[loss][0](n, size, device)


@pytest.mark.parametrize("loss,impl,n,size", cases())
def test_peak_memory(benchmark, loss, impl, n, size):
    build(loss, impl, n, size)
    benchmark.group = "peak memory, fwd+bwd"
    record_peak_memory(benchmark, "bench_compat", impl, (loss, n, size), op=loss, n=n,
                       **{LOSSES[loss][1]: size})
