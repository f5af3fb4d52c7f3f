"""The restraint layer (DAC Eq. 9) / constraint layer C_p (DSEC Eq. 11)."""
import torch

from ._autograd import OPS, scalar


@torch.library.register_fake("fastclust::restraint")
def _restraint_fake(feats, p):
    torch._check(feats.dim() == 2, lambda: "fastclust: feats must be a 2-D (n, k) tensor")
    return feats.new_empty(feats.shape)


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


def restraint(feats, p=2.0):
    """Row-wise ``t / ||t||_p`` with ``t = exp(feats - max(feats))``, of an ``(n, k)`` tensor.

    DAC's restraint layer (p = 2) and DSEC's constraint layer C_p (any p > 0). Differentiable.
    """
    return OPS.restraint(feats, scalar(p, "p"))
