import math

import pytest
import torch
from torch.library import opcheck

import fastclust
from fastclust import reference
from helpers import assert_accurate, devices, low_precision_dtypes

SIZES = [(n, k) for n in (1, 2, 3, 127, 1000) for k in (1, 2, 10, 70, 700)]


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("n,k", SIZES)
def test_matches_reference_float64(n, k, p):
    x = torch.randn(n, k, dtype=torch.float64, requires_grad=True)
    out = fastclust.restraint(x, p)
    want = reference.restraint(x, p)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-14)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, g)
    (want_grad,) = torch.autograd.grad(want, x, g)
    torch.testing.assert_close(grad, want_grad, rtol=1e-10, atol=1e-12)


def test_hand_computed():
    x = torch.tensor([[0.0, math.log(2.0)], [5.0, 5.0]], dtype=torch.float64)
    # t = [1/2, 1]: p=1 gives t / 1.5, p=2 gives t / sqrt(1.25); equal entries give 1/sqrt(2).
    torch.testing.assert_close(fastclust.restraint(x, 1.0)[0], torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(fastclust.restraint(x, 2.0),
                               torch.tensor([[0.5 / math.sqrt(1.25), 1 / math.sqrt(1.25)],
                                             [2 ** -0.5, 2 ** -0.5]], dtype=torch.float64))


@devices
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_low_precision_accuracy(device, p):
    x64 = torch.randn(300, 70, dtype=torch.float64, device=device) * 3
    want = reference.restraint(x64, p)
    for dtype in low_precision_dtypes(device):
        x = x64.to(dtype)
        assert_accurate(fastclust.restraint(x, p), reference.restraint(x, p), want, name=str(dtype))


def test_gradcheck():
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    for p in (0.5, 1.0, 2.0, 3.0):
        assert torch.autograd.gradcheck(lambda t: fastclust.restraint(t, p), (x,))


def test_opcheck():
    x = torch.randn(6, 4, requires_grad=True)
    opcheck(torch.ops.fastclust.restraint.default, (x, 2.0))
    y = fastclust.restraint(x.detach(), 3.0)
    opcheck(torch.ops.fastclust.restraint_backward.default, (torch.randn_like(y), y, 3.0))


def test_torch_compile_fullgraph():
    x = torch.randn(33, 7, requires_grad=True)
    compiled = torch.compile(lambda t: fastclust.restraint(t, 2.0).square().sum(), fullgraph=True,
                             backend="aot_eager")
    got = compiled(x)
    (g_got,) = torch.autograd.grad(got, x)
    want = fastclust.restraint(x, 2.0).square().sum()
    (g_want,) = torch.autograd.grad(want, x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_got, g_want)


def test_non_contiguous():
    base = torch.randn(10, 40, dtype=torch.float64)
    x = base.t()  # (40, 10), column-major
    assert not x.is_contiguous()
    torch.testing.assert_close(fastclust.restraint(x, 2.0), reference.restraint(x.contiguous(), 2.0))


def test_non_finite_propagates():
    x = torch.randn(3, 4)
    x[1, 2] = float("nan")
    out = fastclust.restraint(x)
    assert torch.isnan(out[1]).all()
    assert torch.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("x,p,match", [
    (torch.randn(5), 2.0, "feats must be a 2-D"),
    (torch.randn(0, 3), 2.0, "feats must have at least one row"),
    (torch.randn(3, 0), 2.0, r"feats must have at least one column \(k >= 1\)"),
    (torch.randn(3, 4), 0.0, "p must be a finite number > 0"),
    (torch.randn(3, 4), -1.0, "p must be a finite number > 0"),
    (torch.randn(3, 4), float("nan"), "p must be a finite number > 0"),
    (torch.ones(3, 4, dtype=torch.long), 2.0, "feats must be float32 or float64"),
])
def test_bad_input(x, p, match):
    with pytest.raises(RuntimeError, match=match):
        fastclust.restraint(x, p)
