"""The restraint layer (DAC Eq. 9) / constraint layer C_p (DSEC Eq. 11)."""
import torch

from ._autograd import OPS, scalar


@torch.library.register_fake("fastclust::restraint")
def _restraint_fake(x, p):
    torch._check(x.dim() == 2, lambda: "fastclust: x must be a 2-D (n, k) tensor")
    return x.new_empty(x.shape)


@torch.library.register_fake("fastclust::restraint_backward")
def _restraint_backward_fake(grad_out, out, p):
    return out.new_empty(out.shape)


def _restraint_setup(ctx, inputs, output):
    ctx.p = inputs[1]
    ctx.save_for_backward(output)


def _restraint_backward(ctx, grad):
    (out,) = ctx.saved_tensors
    return OPS.restraint_backward(grad, out, ctx.p), None


torch.library.register_autograd("fastclust::restraint", _restraint_backward,
                                setup_context=_restraint_setup)


def restraint(x, p=2.0):
    """Row-wise ``exp(x - max(x)) / ||exp(x - max(x))||_p`` of an ``(n, k)`` tensor.

    DAC's restraint layer (p = 2) and DSEC's constraint layer C_p (any p > 0). Differentiable.
    """
    return OPS.restraint(x, scalar(p, "p"))
