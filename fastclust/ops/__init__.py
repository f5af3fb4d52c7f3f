"""Python front ends of the fused ops (torch.ops.fastclust.*), with fake kernels and autograd."""
from .pairwise import dac_loss, dsec_loss
from .restraint import restraint

__all__ = ["restraint", "dac_loss", "dsec_loss"]
