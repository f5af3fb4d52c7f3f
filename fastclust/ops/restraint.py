"""The restraint layer (DAC Eq. 9) / constraint layer C_p (DSEC Eq. 11)."""
import torch

from .. import reference
from .family import Family, FrontEnd, OpCase, Sample, randn
from ._autograd import (OPS, check_tensors, cpu_half_as_float, eager_gradients, float32_under_autocast,
                        fused_backward, refuse_double_backward, refuse_forward_ad, scalar)


@torch.library.register_fake("fastclust::restraint")
def _restraint_fake(feats, p):
    torch._check(feats.dim() == 2, lambda: "fastclust: feats must be a 2-D (n, k) tensor")
    return feats.new_empty(feats.shape)


@torch.library.register_fake("fastclust::restraint_backward")
def _restraint_backward_fake(grad_out, out, p):
    return out.new_empty(out.shape)


def _restraint_setup(ctx, inputs, output):
    ctx.p = inputs[1]
    ctx.save_for_backward(inputs[0], output)


def _restraint_backward(ctx, grad):
    feats, out = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: a gradient that can be differentiated again
        return eager_gradients(reference.restraint, (feats, ctx.p), (grad,), ctx.needs_input_grad)
    return fused_backward(OPS.restraint_backward, grad, out, ctx.p), None


torch.library.register_autograd("fastclust::restraint", _restraint_backward,
                                setup_context=_restraint_setup)
refuse_double_backward("restraint_backward", "restraint_backward")
float32_under_autocast("restraint")


def restraint(feats, p=2.0):
    """Row-wise ``t / ||t||_p`` with ``t = exp(feats - max(feats))``, of an ``(n, k)`` tensor.

    DAC's restraint layer (p = 2) and DSEC's constraint layer C_p (any p > 0). Differentiable.
    """
    check_tensors(("feats", feats))
    refuse_forward_ad("restraint", feats)
    out = OPS.restraint(cpu_half_as_float(feats), scalar(p, "p"))
    # The input's dtype, as on CUDA; under autocast, whose policy for the op is float32, float32.
    return out if torch.is_autocast_enabled(feats.device.type) else out.to(feats.dtype)


# ---- the family's declaration (fastclust.ops.family) ----

def _features(n, k, seed=0):
    return (randn(n, k, seed=seed, scale=3),)


def _samples(front_end):
    return [front_end.sample(f"{n}x{k}-p{p}", n, k, seed=n * k, p=p)
            for n in (1, 2, 3, 127, 1000) for k in (1, 2, 10, 70, 700) for p in (1.0, 2.0, 3.0)]


def _op_cases():
    for (n, k), p in [((1, 1), 2.0), ((7, 31), 2.0), ((8, 32), 2.0), ((9, 33), 1.0), ((9, 33), 3.5),
                      ((70, 100), 2.0)]:
        def forward(dtype, n=n, k=k, p=p):
            return [randn(n, k, seed=n + k, scale=3).to(dtype), p]

        def backward(dtype, n=n, k=k, p=p):
            out = reference.restraint(randn(n, k, seed=n + k, scale=3).to(dtype).double(), p)
            return [randn(n, k, seed=n * k).to(dtype), out.to(dtype), p]

        yield OpCase("restraint", f"{n}x{k}-p{p}", forward, reference=reference.restraint)
        yield OpCase("restraint_backward", f"{n}x{k}-p{p}", backward)


RESTRAINT = FrontEnd(
    "restraint", restraint, reference.restraint, _features, {"p": 2.0}, _samples,
    accuracy_of=lambda fe: [fe.sample(f"300x70-p{p}", 300, 70, p=p) for p in (1.0, 2.0, 3.0)],
    gradcheck_of=lambda fe: [Sample(f"4x5-p{p}", (randn(4, 5, seed=1),), {"p": p}) for p in (0.5, 1.0, 2.0, 3.0)],
    double_backward=True)
FAMILY = Family("restraint", (RESTRAINT,), _op_cases)
