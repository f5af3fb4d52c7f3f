"""The restraint layer (DAC Eq. 9) / constraint layer C_p (DSEC Eq. 11)."""
import torch

from .. import reference
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
