"""lightly's ``lightly.loss.NTXentLoss`` on fastclust's fused NT-Xent."""
from torch import nn

from ..ops import nt_xent_loss


class NTXentLoss(nn.Module):
    """``NTXentLoss(temperature=0.5, memory_bank_size=0, gather_distributed=False)``;
    ``loss(out0, out1)`` with the ``(n, d)`` embeddings of two views: the mean over the 2n
    samples of the cross-entropy of their cosine similarities over ``temperature``, each
    sample's positive its twin and its negatives every other sample of both views (lightly's
    loss without a memory bank). ``gather_distributed=True`` takes the negatives from every
    rank (``global_batch=True``)."""

    def __init__(self, temperature=0.5, memory_bank_size=0, gather_distributed=False):
        super().__init__()
        if memory_bank_size:
            raise NotImplementedError(
                "fastclust.compat.lightly.NTXentLoss: a memory bank (memory_bank_size="
                f"{memory_bank_size!r}) is not supported; only memory_bank_size=0")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.gather_distributed = bool(gather_distributed)

    def forward(self, out0, out1):
        return nt_xent_loss(out0, out1, tau=self.temperature, global_batch=self.gather_distributed)

    def extra_repr(self):
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"
