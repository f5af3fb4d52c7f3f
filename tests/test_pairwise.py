import math

import pytest
import torch

import fastclust
from fastclust import reference
from helpers import devices, needs_cuda

LOSSES = {"dac": (fastclust.dac_loss, reference.dac_loss),
          "dsec": (fastclust.dsec_loss, reference.dsec_loss)}
losses = pytest.mark.parametrize("name", list(LOSSES))


def features(n, k, dtype=torch.float64, device="cpu", scale=4.0, seed=0):
    # Scaled logits give a spread of similarities, so every threshold region is populated.
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g, dtype=torch.float64) * scale).to(dtype=dtype, device=device)


def loss_and_grad(fn, x, *args, **kwargs):
    x = x.detach().requires_grad_()
    loss, n_pos, n_neg = fn(x, *args, return_stats=True, **kwargs)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), n_pos, n_neg, grad


def test_hand_computed():
    # S = [[1, 0, .6], [0, 1, .8], [.6, .8, 1]] with u = .7, l = .3: 5 positives (the diagonal
    # and S = .8 twice), 2 negatives (S = 0 twice), S = .6 ignored.
    L = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    loss, n_pos, n_neg = fastclust.dac_loss(L, 0.7, 0.3, normalized=True, reduction="sum",
                                            return_stats=True)
    assert (n_pos.item(), n_neg.item()) == (5, 2)
    assert loss.item() == pytest.approx(-2 * math.log(0.8), rel=1e-12)
    mean = fastclust.dac_loss(L, 0.7, 0.3, normalized=True)
    assert mean.item() == pytest.approx(-2 * math.log(0.8) / 7, rel=1e-12)
    # DSEC: (1 - .8)^2 twice for the positives, 0^2 for the negatives.
    assert fastclust.dsec_loss(L, 0.7, 0.3, normalized=True, reduction="sum").item() == pytest.approx(0.08, rel=1e-12)
    # d/dL of the DSEC sum: row 0 pairs only with rows 1 (negative, S=0) and itself (S=1).
    L.requires_grad_()
    (grad,) = torch.autograd.grad(fastclust.dsec_loss(L, 0.7, 0.3, normalized=True, reduction="sum"), L)
    # Rows 1 and 2: pairs (1,2),(2,1) give 2 * 2 * (S - 1) * L_other = -0.8 L_other.
    torch.testing.assert_close(grad[1], -0.8 * L[2].detach())
    torch.testing.assert_close(grad[2], -0.8 * L[1].detach())
    torch.testing.assert_close(grad[0], torch.zeros(2, dtype=torch.float64))


def test_dac_clamp_matches_reference_at_the_bounds():
    # Similarities of exactly 1 (clamp upper bound) and 0 (1 - S at the upper bound).
    L = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    got = loss_and_grad(fastclust.dac_loss, L, 0.9, 0.1, normalized=True)
    want = loss_and_grad(reference.dac_loss, L, 0.9, 0.1, normalized=True)
    torch.testing.assert_close(got[3], want[3])
    # Every selected pair sits on a bound (S = 1 or 1 - S = 1), where the clamp passes nothing.
    assert (got[1].item(), got[2].item()) == (5, 4)
    assert torch.equal(got[3], torch.zeros_like(L))


@losses
def test_no_pair_selected_is_zero_not_nan(name):
    fn, _ = LOSSES[name]
    x = features(20, 5).requires_grad_()
    loss, n_pos, n_neg = fn(x, 2.0, -1.0, return_stats=True)  # every S lies in [0, 1]
    assert loss.item() == 0.0 and n_pos.item() == 0 and n_neg.item() == 0
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.equal(grad, torch.zeros_like(x))


@devices
@losses
@pytest.mark.parametrize("selectors", [False, True])
def test_rectangular_block_matches_reference(name, selectors, device):
    # The block a distributed run computes: local rows against the gathered batch.
    kind = {"dac": reference.DAC, "dsec": reference.DSEC}[name]

    def restrained(n, k, seed):
        return reference.restraint(features(n, k, seed=seed), 2.0).to(device)

    rows, cols = restrained(37, 9, 1).requires_grad_(), restrained(81, 9, 2).requires_grad_()
    select = (restrained(37, 5, 3), restrained(81, 5, 4)) if selectors else (None, None)
    got = torch.ops.fastclust.pairwise_loss(rows, cols, *select, 0.6, 0.2, kind, 1e-7)
    want = reference.pairwise_loss(rows, cols, *select, 0.6, 0.2, kind, 1e-7)
    assert got[1].item() == want[1].item() and got[2].item() == want[2].item()
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(torch.autograd.grad(got[0], (rows, cols)),
                               torch.autograd.grad(want[0], (rows, cols)))


@losses
@pytest.mark.parametrize("n,k,ks", [(1, 3, 3), (37, 9, 9), (130, 10, 4)])
def test_select_matches_reference(name, n, k, ks):
    fn, ref = LOSSES[name]
    x, select = features(n, k, seed=1), features(n, ks, seed=2)
    got = loss_and_grad(fn, x, 0.7, 0.3, select=select)
    want = loss_and_grad(ref, x, 0.7, 0.3, select=select)
    assert got[1].item() == want[1].item() and got[2].item() == want[2].item()
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[3], want[3], rtol=1e-9, atol=1e-12)
    # The selection really comes from `select`: it differs from selecting on x itself, and
    # selecting on x itself is the plain loss.
    plain = loss_and_grad(fn, x, 0.7, 0.3)
    if n > 1:
        assert (got[1].item(), got[2].item()) != (plain[1].item(), plain[2].item())
    same = loss_and_grad(fn, x, 0.7, 0.3, select=x)
    assert torch.equal(same[0], plain[0]) and torch.equal(same[3], plain[3])


def test_select_hand_computed():
    # Features with S = [[1, 0], [0, 1]]; the selector calls the off-diagonal pair positive
    # (cosine 0.8 > u) where the features alone would call it negative.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    select = torch.tensor([[1.0, 0.0], [0.8, 0.6]], dtype=torch.float64)
    loss, n_pos, n_neg = fastclust.dsec_loss(x, 0.7, 0.3, select=select, normalized=True,
                                             reduction="sum", return_stats=True)
    # All four pairs positive: (1 - 1)^2 twice on the diagonal, (1 - 0)^2 twice off it.
    assert (n_pos.item(), n_neg.item()) == (4, 0)
    assert loss.item() == 2.0
    (grad,) = torch.autograd.grad(loss, x)
    # d/dx_i of sum_ij (1 - x_i . x_j)^2 = -4 sum_j (1 - S_ij) x_j: the other row, times -4.
    torch.testing.assert_close(grad, torch.tensor([[0.0, -4.0], [-4.0, 0.0]], dtype=torch.float64))


def test_torch_compile_inductor():
    x = features(40, 6, dtype=torch.float32).requires_grad_()
    compiled = torch.compile(lambda t: fastclust.dac_loss(t, 0.8, 0.3) * 2, fullgraph=True)
    got = compiled(x)
    torch.testing.assert_close(got, fastclust.dac_loss(x, 0.8, 0.3) * 2)
    torch.testing.assert_close(torch.autograd.grad(got, x)[0],
                               torch.autograd.grad(fastclust.dac_loss(x, 0.8, 0.3) * 2, x)[0])


@losses
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_give_non_finite_loss(name, bad):
    fn, ref = LOSSES[name]
    x = features(30, 5)
    x[7, 2] = bad
    assert not torch.isfinite(fn(x, 0.8, 0.3))
    assert not torch.isfinite(ref(x, 0.8, 0.3))
    xn = reference.restraint(features(30, 5), 2.0)
    xn[3, 1] = bad
    assert not torch.isfinite(fn(xn, 0.8, 0.3, normalized=True))
    # A bad selector too: left alone it would just select no pair of its row.
    select = features(30, 4, seed=1)
    select[5, 0] = bad
    for normalized in (False, True):
        finite = reference.restraint(features(30, 5), 2.0) if normalized else features(30, 5)
        for loss in (fn, ref):
            assert not torch.isfinite(loss(finite, 0.8, 0.3, select=select, normalized=normalized))


@losses
@pytest.mark.parametrize("x,kwargs,match", [
    (torch.randn(5), {}, "feats must be a 2-D"),
    (torch.randn(0, 3), {}, "must have at least one row"),
    (torch.randn(3, 0), {}, r"at least one column \(k >= 1\)"),
    (torch.randn(4, 3), {"u": 0.2, "l": 0.5}, r"lower threshold l \(0.5\) must not exceed the upper threshold u \(0.2\)"),
    (torch.randn(4, 3), {"u": float("nan")}, "u must be finite"),
    (torch.randn(4, 3), {"l": float("-inf")}, "l must be finite"),
    (torch.randn(4, 3), {"p": 0.0}, "p must be a finite number > 0"),
    (torch.randn(4, 3), {"p": -2.0}, "p must be a finite number > 0"),
    (torch.ones(4, 3, dtype=torch.int32), {"normalized": True}, "feats must be float32 or float64"),
])
def test_bad_input(name, x, kwargs, match):
    fn, _ = LOSSES[name]
    args = {"u": 0.8, "l": 0.3, **kwargs}
    u, l = args.pop("u"), args.pop("l")
    with pytest.raises(RuntimeError, match=match):
        fn(x, u, l, **args)


@losses
@pytest.mark.parametrize("select,match", [
    (torch.randn(4), r"select must be a 2-D \(n, d\) tensor"),
    (torch.randn(5, 2), r"select has shape \(5, 2\) but feats has shape \(4, 3\): one row per row"),
    (torch.randn(4, 3, dtype=torch.float64), "select has dtype torch.float64 but feats has dtype torch.float32"),
    (torch.randn(4, 0), "select must have at least one row and one feature"),
])
def test_bad_select_is_named(name, select, match):
    fn, _ = LOSSES[name]
    for kwargs in ({}, {"normalized": True}):
        with pytest.raises(RuntimeError, match=match):
            fn(torch.rand(4, 3), 0.8, 0.3, select=select, **kwargs)
    with pytest.raises(TypeError, match="select must be a tensor, got list"):
        fn(torch.rand(4, 3), 0.8, 0.3, select=[[1.0]])


def test_bad_python_arguments():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fastclust.dac_loss(x, 0.8, 0.3, reduction="max")
    with pytest.raises(TypeError, match="u must be a number"):
        fastclust.dac_loss(x, "high", 0.3)
    with pytest.raises(RuntimeError, match=r"eps must be in \[0, 1\)"):
        fastclust.dac_loss(x, 0.8, 0.3, eps=2.0)


def test_bad_block_arguments():
    rows = torch.randn(4, 3)
    op = torch.ops.fastclust.pairwise_loss
    with pytest.raises(RuntimeError, match="cols has dtype Double but feats has dtype Float"):
        op(rows, torch.randn(4, 3, dtype=torch.float64), None, None, 0.8, 0.3, "dac", 1e-7)
    with pytest.raises(RuntimeError, match="cols has 2 features per row but feats has 3"):
        op(rows, torch.randn(4, 2), None, None, 0.8, 0.3, "dac", 1e-7)
    with pytest.raises(RuntimeError, match="kind must be one of 'dac', 'dsec', got 'DAC'"):
        op(rows, None, None, None, 0.8, 0.3, "DAC", 1e-7)
    with pytest.raises(RuntimeError, match="grad_sum must be a 0-dim tensor"):
        torch.ops.fastclust.pairwise_loss_backward(torch.ones(2), rows, None, None, None, 0.8, 0.3, "dac", 1e-7)
    with pytest.raises(RuntimeError, match="select has 5 rows but feats has 4"):
        op(rows, None, torch.randn(5, 3), None, 0.8, 0.3, "dac", 1e-7)
    with pytest.raises(RuntimeError, match="select has dtype Double but feats has dtype Float"):
        op(rows, None, torch.randn(4, 3, dtype=torch.float64), None, 0.8, 0.3, "dac", 1e-7)
    with pytest.raises(RuntimeError, match="select_cols must be given exactly when cols is"):
        op(rows, torch.randn(6, 3), torch.randn(4, 3), None, 0.8, 0.3, "dac", 1e-7)
    with pytest.raises(RuntimeError, match="select_cols has 2 features per row but select has 3"):
        op(rows, torch.randn(6, 3), torch.randn(4, 3), torch.randn(6, 2), 0.8, 0.3, "dac", 1e-7)
    with pytest.raises(RuntimeError, match="select_cols needs select_rows"):
        op(rows, torch.randn(6, 3), None, torch.randn(6, 3), 0.8, 0.3, "dac", 1e-7)


@needs_cuda
def test_device_mismatch():
    with pytest.raises(RuntimeError, match="cols is on cpu but feats is on cuda"):
        torch.ops.fastclust.pairwise_loss(torch.rand(4, 3, device="cuda"), torch.rand(4, 3), None, None,
                                          0.8, 0.3, "dac", 1e-7)
    with pytest.raises(RuntimeError, match="select is on cpu but feats is on cuda"):
        fastclust.dac_loss(torch.rand(4, 3, device="cuda"), 0.8, 0.3, select=torch.rand(4, 3))

