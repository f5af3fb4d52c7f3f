"""Every front end beyond first-order reverse mode in float32/float64: second derivatives are
right or refused with an error naming the op, forward-mode AD is refused (never a silent zero or
None), and autocast regions compute in float32. (Half-precision inputs on the CPU: each family's
test_low_precision_accuracy.)"""
import pytest
import torch
import torch.autograd.forward_ad as forward_ad
from torch.autograd import gradgradcheck

import fastclust
from fastclust import reference

OPS = torch.ops.fastclust


def _x(n=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=torch.float64)


def _selector(t):
    return _x(*t.shape, seed=1).to(t.dtype)


# Each front end as a function of one (n, k) tensor, and its eager twin. Thresholds sit far from
# every similarity of _x(), so that a finite-difference step cannot flip a pair's selection.
SUPPORTED = {
    "restraint": (lambda t: fastclust.restraint(t, 2.5), lambda t: reference.restraint(t, 2.5)),
    "dac_loss": (lambda t: fastclust.dac_loss(t, 0.6, 0.4), lambda t: reference.dac_loss(t, 0.6, 0.4)),
    "dsec_loss": (lambda t: fastclust.dsec_loss(t, 0.6, 0.4), lambda t: reference.dsec_loss(t, 0.6, 0.4)),
    "dac_loss select": (lambda t: fastclust.dac_loss(t, 0.6, 0.4, select=_selector(t)),
                        lambda t: reference.dac_loss(t, 0.6, 0.4, select=_selector(t))),
    "nt_xent_loss": (lambda t: fastclust.nt_xent_loss(t, 2 * t + 1, tau=0.7),
                     lambda t: reference.nt_xent_loss(t, 2 * t + 1, tau=0.7)),
    "semantic_contrastive_loss": (
        lambda t: fastclust.semantic_contrastive_loss(t, t + 1, t * t, t - 2, tau=0.5),
        lambda t: reference.semantic_contrastive_loss(t, t + 1, t * t, t - 2, tau=0.5)),
    "row_logsumexp": (lambda t: fastclust.row_logsumexp(t, 3 * t[:4], 0.5, 1),
                      lambda t: reference.row_logsumexp(t, 3 * t[:4], 0.5, 1)),
}
REFUSED = {
    "asv_similarity": lambda t: fastclust.asv_similarity(t.softmax(1), t.exp()),
    "pica_loss": lambda t: fastclust.pica_loss(t.softmax(1), t.exp()),
    "cluster_contrastive_loss": lambda t: fastclust.cluster_contrastive_loss(t.softmax(1), t.exp()),
}
EVERY = {**{name: fn for name, (fn, _) in SUPPORTED.items()}, **REFUSED}


@pytest.mark.parametrize("name", list(SUPPORTED))
def test_second_derivatives(name):
    fn, twin = SUPPORTED[name]
    x = _x().requires_grad_()
    # Recorded for a second derivative, the first is unchanged.
    (recorded,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    torch.testing.assert_close(recorded, torch.autograd.grad(fn(x).sum(), x)[0])
    assert gradgradcheck(fn, (x,))
    # A Hessian-vector product equals the eager twin's.
    v = _x(seed=2)

    def hvp(f):
        out = f(x)
        (g,) = torch.autograd.grad(out, x, torch.ones_like(out), create_graph=True)
        return torch.autograd.grad((g * v).sum(), x)[0]

    got, want = hvp(fn), hvp(twin)
    assert got.abs().max() > 0
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", list(REFUSED))
def test_second_derivatives_refused(name):
    fn = REFUSED[name]
    x = _x().requires_grad_()
    plain = torch.autograd.grad(fn(x).sum(), x)[0]
    (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    torch.testing.assert_close(g, plain)  # the first derivative itself is unchanged
    with pytest.raises(RuntimeError, match="pica_loss / cluster_contrastive_loss: a gradient of its gradient"):
        torch.autograd.grad(g.sum(), x)


@pytest.mark.parametrize("op,args", [
    ("pairwise_loss_backward", lambda t: (torch.tensor(1.0, dtype=torch.float64), t, None, None, None,
                                          0.6, 0.4, "dac", 1e-7)),
    ("row_logsumexp_backward", lambda t: (torch.ones(6, dtype=torch.float64), t, t, torch.zeros(6, dtype=torch.float64),
                                          1.0, -1)),
    ("restraint_backward", lambda t: (torch.ones_like(t), t, 2.0)),
    ("normalize_rows_backward", lambda t: (torch.ones_like(t), t)),
])
def test_backward_ops_refuse_their_gradient(op, args):
    # The global-batch paths call these ops in their backward.
    x = _x().requires_grad_()
    out = getattr(OPS, op)(*args(x))
    first = out[0] if isinstance(out, tuple) else out
    with pytest.raises(RuntimeError, match="a gradient of its gradient"):
        torch.autograd.grad(first.sum(), x)


@pytest.mark.parametrize("name", list(EVERY))
def test_forward_mode_refused(name):
    fn = EVERY[name]
    x = _x()
    with pytest.raises(RuntimeError, match="does not support forward-mode AD"):
        torch.func.jvp(fn, (x,), (torch.ones_like(x),))
    with forward_ad.dual_level(), pytest.raises(RuntimeError, match="does not support forward-mode AD"):
        fn(forward_ad.make_dual(x, torch.ones_like(x)))
    fn(x)  # outside forward mode nothing changes


FORWARD_OPS = ["restraint", "pairwise_loss", "column_stats", "column_loss_from_stats", "column_loss",
               "normalize_rows", "row_logsumexp"]


@pytest.mark.parametrize("name", list(EVERY))
def test_autocast_computes_in_float32(name):
    fn = EVERY[name]
    x = _x(64, 10).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn(x)
    outs = got if isinstance(got, tuple) else (got,)
    assert all(o.dtype == torch.float32 for o in outs)
    want = fn(x.float())
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(outs, want):
        torch.testing.assert_close(g, w, rtol=2e-2, atol=2e-2)  # the inputs' own bfloat16 steps differ


@pytest.mark.parametrize("op", FORWARD_OPS)
def test_autocast_registered_for_both_devices(op):
    for key in ("AutocastCPU", "AutocastCUDA"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastclust::{op}", key)


@pytest.mark.parametrize("op,args,names", [
    ("pairwise_loss", lambda kind: (_x(), None, None, None, 0.6, 0.4, kind, 1e-7), (reference.DAC, reference.DSEC)),
    ("column_loss", lambda kind: (_x().softmax(1), _x(seed=1).softmax(1), kind, 1.0, 1.0),
     (reference.PICA, reference.CLUSTER_CONTRASTIVE)),
])
def test_kind_names_agree_with_the_kernels(op, args, names):
    """The Python constants are the names the C++ checks accept, all of them."""
    for name in names:
        getattr(OPS, op)(*args(name))
    with pytest.raises(RuntimeError, match="kind must be one of") as info:
        getattr(OPS, op)(*args("no such kind"))
    listed = str(info.value).split("kind must be one of ")[1].split(", got")[0]
    assert listed == ", ".join(f"'{n}'" for n in names)
