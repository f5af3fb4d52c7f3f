import math

import pytest
import torch

import fastclust
from fastclust import reference
from helpers import assert_accurate, needs_cuda

OPS = torch.ops.fastclust
NS = (1, 2, 3, 37, 257)
DS = (1, 3, 128)


def views(count, n, d, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
            for _ in range(count)]


def value_and_grads(fn, inputs, **kwargs):
    inputs = [t.detach().requires_grad_() for t in inputs]
    loss = fn(*inputs, **kwargs)
    return loss.detach(), torch.autograd.grad(loss, inputs)


def assert_same_loss_and_grads(got, want, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(got[0], want[0], rtol=rtol, atol=atol)
    for g, w in zip(got[1], want[1]):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


# ---- values and gradients against the eager reference ----

def test_row_logsumexp_self_offset_is_the_global_column():
    # Local rows 3..5 of a 7-row batch against the whole batch: each leaves out its own row.
    batch = reference.normalize_rows(views(1, 7, 4)[0])
    full = fastclust.row_logsumexp(batch, batch, 0.5, 0)
    local = fastclust.row_logsumexp(batch[3:6], batch, 0.5, 3)
    torch.testing.assert_close(local, full[3:6], rtol=1e-14, atol=0)


def test_row_with_no_column_left_is_minus_inf_with_zero_gradient():
    q = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)
    lse = fastclust.row_logsumexp(q, k, 1.0, 0)  # row 0's only column is its own
    assert lse[0].item() == float("-inf") and torch.isfinite(lse[1:]).all()
    torch.testing.assert_close(lse[1:], (q[1:] @ k.T).squeeze(1).detach())
    gq, gk = torch.autograd.grad(lse[1:].sum(), (q, k))
    assert torch.equal(gq[0], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(gq[1:], k.detach().expand(2, 4))
    torch.testing.assert_close(gk[0], q[1:].detach().sum(0))


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (40, 128)])
def test_normalize_rows_matches_reference(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    x[0] = 0  # the all-zero row
    g = torch.randn(*shape, dtype=torch.float64)
    got = value_and_grads(lambda t: (OPS.normalize_rows(t) * g).sum(), [x])
    want = value_and_grads(lambda t: (reference.normalize_rows(t) * g).sum(), [x])
    assert_same_loss_and_grads(got, want, rtol=1e-12, atol=1e-12)
    assert torch.equal(OPS.normalize_rows(x)[0], torch.zeros(shape[1], dtype=torch.float64))


# ---- hand-computed cases ----

def test_nt_xent_hand_computed():
    # Rows e1, e2 and their twins e1, e2 (z_b scaled: normalisation removes it). With tau = 1,
    # row e1 sees its twin at similarity 1 and two rows at 0 (itself left out, or at 1).
    z_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    z_b = 3 * z_a
    e = math.e
    assert fastclust.nt_xent_loss(z_a, z_b, tau=1.0).item() == pytest.approx(math.log(e + 2) - 1, rel=1e-14)
    assert fastclust.nt_xent_loss(z_a, z_b, tau=1.0, exclude_self=False).item() == pytest.approx(
        math.log(2 * e + 2) - 1, rel=1e-14)
    # tau = 0.5 doubles every scaled similarity.
    assert fastclust.nt_xent_loss(z_a, z_b, tau=0.5).item() == pytest.approx(math.log(e ** 2 + 2) - 2, rel=1e-14)


def test_nt_xent_single_pair_with_exclude_self_is_zero():
    # n = 1: each row's denominator holds only its positive, so the loss is log(1) = 0.
    z_a, z_b = torch.randn(1, 5, dtype=torch.float64), torch.randn(1, 5, dtype=torch.float64)
    loss = fastclust.nt_xent_loss(z_a.requires_grad_(), z_b, tau=0.3)
    assert loss.item() == pytest.approx(0.0, abs=1e-15)
    (grad,) = torch.autograd.grad(loss, z_a)
    torch.testing.assert_close(grad, torch.zeros_like(grad), atol=1e-14, rtol=0)


def test_semantic_hand_computed():
    # n = 1, tau = 1: p_a = q_b = e1, q_a = p_b = e2. sl^a = -1 + log(e^0 + e^1) and, by
    # symmetry, sl^b the same.
    e1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    e2 = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    loss = fastclust.semantic_contrastive_loss(e1, e2, e2, 5 * e1, tau=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.e) - 1, rel=1e-14)


# ---- robustness ----

@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input(bad):
    z_a, z_b = views(2, 70, 3)
    z_b[65, 1] = bad
    assert torch.isnan(fastclust.nt_xent_loss(z_a, z_b))
    q, k = views(2, 5, 3)
    k[3, 0] = bad
    # Unnormalised, inf . q is +inf or -inf by the sign of q: follow torch.logsumexp there.
    got, want = OPS.row_logsumexp(q, k, 1.0, -1), reference.row_logsumexp(q, k, 1.0, -1)
    assert not torch.isfinite(got[:3]).any()
    torch.testing.assert_close(got, want, equal_nan=True)


# ---- autograd, registration, compile ----

def test_gradcheck_normalize_rows():
    (q,) = (t.requires_grad_() for t in views(1, 5, 3, seed=7))
    assert torch.autograd.gradcheck(lambda t: OPS.normalize_rows(t), (q,))


def test_torch_compile_inductor():
    z = [t.requires_grad_() for t in views(2, 40, 6, torch.float32)]
    compiled = torch.compile(lambda a, b: fastclust.nt_xent_loss(a, b, tau=0.3) * 2, fullgraph=True)
    got = compiled(*z)
    want = fastclust.nt_xent_loss(*z, tau=0.3) * 2
    torch.testing.assert_close(got, want)
    for g, w in zip(torch.autograd.grad(got, z), torch.autograd.grad(want, z)):
        torch.testing.assert_close(g, w)


# ---- bad input ----

def _z(*shape, **kw):
    return torch.randn(*shape, **kw)


@pytest.mark.parametrize("z_a,z_b,kwargs,match", [
    (_z(5), _z(5), {}, r"z_a must be a 2-D \(n, d\) tensor"),
    (_z(4, 3), _z(2, 2, 3), {}, r"z_b must be a 2-D \(n, d\) tensor"),
    (_z(0, 3), _z(0, 3), {}, "z_a must have at least one row and one feature"),
    (_z(4, 0), _z(4, 0), {}, "z_a must have at least one row and one feature"),
    (_z(4, 3), _z(5, 3), {}, r"z_b has shape \(5, 3\) but z_a has shape \(4, 3\)"),
    (_z(4, 3), _z(4, 2), {}, r"z_b has shape \(4, 2\) but z_a has shape \(4, 3\)"),
    (_z(4, 3), _z(4, 3, dtype=torch.float64), {}, "z_b has dtype torch.float64 but z_a has dtype torch.float32"),
    (_z(4, 3), _z(4, 3), {"tau": 0.0}, "tau must be a finite number > 0"),
    (_z(4, 3), _z(4, 3), {"tau": -1.0}, "tau must be a finite number > 0"),
    (_z(4, 3), _z(4, 3), {"tau": float("nan")}, "tau must be a finite number > 0"),
    (torch.ones(4, 3, dtype=torch.int32), torch.ones(4, 3, dtype=torch.int32), {}, "z_a must be a float16, bfloat16, float32 or float64 tensor, got torch.int32"),
])
def test_nt_xent_bad_input(z_a, z_b, kwargs, match):
    with pytest.raises(RuntimeError, match=match):
        fastclust.nt_xent_loss(z_a, z_b, **kwargs)


def test_semantic_bad_input():
    good = [_z(4, 3) for _ in range(3)]
    with pytest.raises(RuntimeError, match=r"q_b has shape \(4, 2\) but p_a has shape \(4, 3\)"):
        fastclust.semantic_contrastive_loss(*good, _z(4, 2))
    with pytest.raises(RuntimeError, match=r"p_b must be a 2-D \(n, d\) tensor"):
        fastclust.semantic_contrastive_loss(good[0], _z(4), *good[1:])
    with pytest.raises(RuntimeError, match="q_a has dtype torch.float64 but p_a has dtype torch.float32"):
        fastclust.semantic_contrastive_loss(*good[:2], _z(4, 3, dtype=torch.float64), good[2])
    with pytest.raises(RuntimeError, match="tau must be a finite number > 0"):
        fastclust.semantic_contrastive_loss(*good, good[0], tau=0)
    with pytest.raises(TypeError, match="tau must be a number"):
        fastclust.semantic_contrastive_loss(*good, good[0], tau="warm")
    with pytest.raises(TypeError, match="q_b must be a tensor"):
        fastclust.semantic_contrastive_loss(*good, [[1.0]])


def test_row_logsumexp_bad_input():
    q, k = _z(4, 3), _z(6, 3)
    with pytest.raises(RuntimeError, match="keys has 2 features per row but queries has 3"):
        OPS.row_logsumexp(q, _z(6, 2), 1.0, -1)
    with pytest.raises(RuntimeError, match="keys has dtype Double but queries has dtype Float"):
        OPS.row_logsumexp(q, k.double(), 1.0, -1)
    with pytest.raises(RuntimeError, match=r"queries must be a 2-D \(n, k\) tensor"):
        OPS.row_logsumexp(_z(4), k, 1.0, -1)
    with pytest.raises(RuntimeError, match="keys must have at least one row"):
        OPS.row_logsumexp(q, _z(0, 3), 1.0, -1)
    with pytest.raises(RuntimeError, match="tau must be a finite number > 0"):
        OPS.row_logsumexp(q, k, float("inf"), -1)
    with pytest.raises(ValueError, match="self_offset must be None or in \\[0, 2\\*\\*63\\)"):
        fastclust.row_logsumexp(q, k, 1.0, -2)
    lse = OPS.row_logsumexp(q, k, 1.0, -1)
    with pytest.raises(RuntimeError, match=r"grad_lse must have shape \(4,\)"):
        OPS.row_logsumexp_backward(torch.ones(6), q, k, lse, 1.0, -1)
    with pytest.raises(RuntimeError, match=r"lse must have shape \(4,\)"):
        OPS.row_logsumexp_backward(torch.ones(4), q, k, lse[:2], 1.0, -1)
    with pytest.raises(RuntimeError, match="grad_out has shape"):
        OPS.normalize_rows_backward(_z(4, 2), q)
    with pytest.raises(RuntimeError, match=r"x must be a 2-D \(n, k\) tensor"):
        OPS.normalize_rows(_z(3))


# ---- CUDA (the lead runs these on a GPU) ----

@needs_cuda
def test_device_mismatch():
    with pytest.raises(RuntimeError, match="z_b is on cpu but z_a is on cuda"):
        fastclust.nt_xent_loss(_z(4, 3, device="cuda"), _z(4, 3))
    with pytest.raises(RuntimeError, match="keys is on cpu but queries is on cuda"):
        OPS.row_logsumexp(_z(4, 3, device="cuda"), _z(4, 3), 1.0, -1)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rows,cols,self_offset", [(37, 300, 100), (300, 37, 0), (129, 129, None), (1, 1, 0)])
def test_cuda_rectangular_block(rows, cols, self_offset, dtype):
    q64, k64 = (reference.normalize_rows(t) for t in (views(1, rows, 20, seed=1)[0], views(1, cols, 20, seed=2)[0]))
    w = torch.rand(rows, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    offset = -1 if self_offset is None else self_offset

    def weighted(fn, q, k):
        lse = fn(q, k)
        return (torch.where(torch.isfinite(lse), lse, 0) * w.to(lse)).sum()

    want = value_and_grads(lambda q, k: weighted(lambda a, b: fastclust.row_logsumexp(a, b, 0.2, self_offset), q, k),
                           [q64, k64])
    got = value_and_grads(lambda q, k: weighted(lambda a, b: fastclust.row_logsumexp(a, b, 0.2, self_offset), q, k),
                          [q64.to("cuda", dtype), k64.to("cuda", dtype)])
    if dtype == torch.float64 or rows == cols == 1:
        # (1 x 1 with its only column left out: eager's gradient is NaN there, fastclust's 0.)
        assert_same_loss_and_grads((got[0].cpu().double(), [g.cpu().double() for g in got[1]]), want)
    else:
        eager = value_and_grads(lambda q, k: weighted(lambda a, b: reference.row_logsumexp(a, b, 0.2, offset), q, k),
                                [q64.to("cuda", dtype), k64.to("cuda", dtype)])
        assert_accurate(got[0], eager[0], want[0], name=f"{dtype} lse")
        for g, e, ww in zip(got[1], eager[1], want[1]):
            assert_accurate(g, e, ww, name=f"{dtype} grad")


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_bitwise_deterministic(dtype):
    x = [t.to("cuda", dtype) for t in views(4, 2000, 128)]
    first = value_and_grads(fastclust.semantic_contrastive_loss, x)
    second = value_and_grads(fastclust.semantic_contrastive_loss, x)
    assert torch.equal(first[0], second[0]) and all(torch.equal(a, b) for a, b in zip(first[1], second[1]))
    first = value_and_grads(fastclust.nt_xent_loss, x[:2])
    second = value_and_grads(fastclust.nt_xent_loss, x[:2])
    assert torch.equal(first[0], second[0]) and all(torch.equal(a, b) for a, b in zip(first[1], second[1]))


@needs_cuda
def test_cuda_zero_row_and_large_batch():
    z_a, z_b = views(2, 3000, 128, dtype=torch.float32, device="cuda")
    z_a[17] = 0
    got = value_and_grads(fastclust.nt_xent_loss, [z_a, z_b], tau=0.1)
    want = value_and_grads(reference.nt_xent_loss, [z_a.double(), z_b.double()], tau=0.1)
    assert torch.isfinite(got[0]) and all(torch.isfinite(g).all() for g in got[1])
    torch.testing.assert_close(got[0].double(), want[0], rtol=1e-5, atol=1e-6)
