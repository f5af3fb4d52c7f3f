"""Every front end beyond first-order reverse mode in float32/float64, from its family's
declaration: second derivatives are right where the declaration says they are computed and
refused with an error naming the op where not, forward-mode AD is refused (never a silent zero
or None), and autocast regions compute in float32. (Half-precision inputs on the CPU:
tests/test_op_families.py, test_low_precision_accuracy.)"""
import pytest
import torch
import torch.autograd.forward_ad as forward_ad
from torch.autograd import gradgradcheck

from fastclust import reference
from fastclust.ops import FAMILIES
from fastclust.ops.family import randn
from helpers import floating_outputs, front_end_params, weighted_sum

OPS = torch.ops.fastclust
FRONT_ENDS = [fe for family in FAMILIES for fe in family.front_ends]


def params(front_ends, pick=lambda fe: fe.gradcheck()):
    return front_end_params(front_ends, pick)


@pytest.mark.parametrize("fe,sample", params([fe for fe in FRONT_ENDS if fe.double_backward]))
def test_second_derivatives(fe, sample):
    fn, twin = floating_outputs(fe.fn, sample), floating_outputs(fe.reference, sample)
    inputs = sample.inputs()
    # Recorded for a second derivative, the first is unchanged.
    recorded = torch.autograd.grad(weighted_sum(fn(*inputs), seed=5), inputs, create_graph=True)
    plain = torch.autograd.grad(weighted_sum(fn(*inputs), seed=5), inputs)
    torch.testing.assert_close(recorded, plain)
    assert gradgradcheck(fn, inputs)
    # A Hessian-vector product equals the eager twin's.
    vectors = [randn(*t.shape, seed=2) for t in inputs]

    def hvp(f):
        grads = torch.autograd.grad(weighted_sum(f(*inputs), seed=5), inputs, create_graph=True)
        return torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vectors)), inputs)

    got, want = hvp(fn), hvp(twin)
    assert max(g.abs().max() for g in got) > 0
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("fe,sample", params([fe for fe in FRONT_ENDS if not fe.double_backward]))
def test_second_derivatives_refused(fe, sample):
    fn = floating_outputs(fe.fn, sample)
    inputs = sample.inputs()
    plain = torch.autograd.grad(weighted_sum(fn(*inputs), seed=5), inputs)
    grads = torch.autograd.grad(weighted_sum(fn(*inputs), seed=5), inputs, create_graph=True)
    torch.testing.assert_close(grads, plain)  # the first derivative itself is unchanged
    with pytest.raises(RuntimeError, match=f"{fe.name}.*: a gradient of its gradient"):
        torch.autograd.grad(sum(g.sum() for g in grads), inputs)


def _x(n=6, k=3):
    return randn(n, k, seed=0).requires_grad_()


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
    x = _x()
    out = getattr(OPS, op)(*args(x))
    first = out[0] if isinstance(out, tuple) else out
    with pytest.raises(RuntimeError, match="a gradient of its gradient"):
        torch.autograd.grad(first.sum(), x)


@pytest.mark.parametrize("fe,sample", params(FRONT_ENDS, lambda fe: fe.gradcheck()[:1]))
def test_forward_mode_refused(fe, sample):
    fn = floating_outputs(fe.fn, sample)
    inputs = [t.detach() for t in sample.inputs()]
    tangents = [torch.ones_like(t) for t in inputs]
    with pytest.raises(RuntimeError, match=f"{fe.name} does not support forward-mode AD"):
        torch.func.jvp(fn, tuple(inputs), tuple(tangents))
    with forward_ad.dual_level(), pytest.raises(RuntimeError, match="does not support forward-mode AD"):
        fn(*(forward_ad.make_dual(t, d) for t, d in zip(inputs, tangents)))
    fn(*inputs)  # outside forward mode nothing changes


FORWARD_OPS = [op for family in FAMILIES for op in family.ops if not op.endswith("_backward")]


@pytest.mark.parametrize("fe,sample", params(FRONT_ENDS, lambda fe: fe.accuracy()))
def test_autocast_computes_in_float32(fe, sample):
    kwargs = sample.kwargs(torch.bfloat16)
    inputs = [t.detach() for t in sample.inputs(torch.bfloat16)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fe.fn(*inputs, **kwargs)
    outs = got if isinstance(got, tuple) else (got,)
    assert all(o.dtype == torch.float32 for o in outs if o.is_floating_point())
    want = fe.fn(*(t.float() for t in inputs), **sample.kwargs(torch.float32))
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(outs, want):
        torch.testing.assert_close(g, w, rtol=2e-2, atol=2e-2)  # the inputs' own bfloat16 steps differ


@pytest.mark.parametrize("op", FORWARD_OPS)
def test_autocast_registered_for_both_devices(op):
    for key in ("AutocastCPU", "AutocastCUDA"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"fastclust::{op}", key)


@pytest.mark.parametrize("op,args,names", [
    ("pairwise_loss", lambda kind: (_x(), None, None, None, 0.6, 0.4, kind, 1e-7), (reference.DAC, reference.DSEC)),
    ("column_loss", lambda kind: (_x().softmax(1), _x().exp(), kind, 1.0, 1.0),
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
