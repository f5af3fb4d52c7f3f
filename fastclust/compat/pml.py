"""pytorch-metric-learning's ``losses.NTXentLoss`` on fastclust's fused NT-Xent, for the
two-view case."""
import torch
from torch import nn

from ..ops import nt_xent_loss


class NTXentLoss(nn.Module):
    """``NTXentLoss(temperature=0.07)``; ``loss(embeddings, labels)`` with ``(N, d)`` embeddings
    whose labels each occur exactly twice (two views of each sample, in any order): every sample
    is an anchor, its twin the positive and every other sample a negative, on cosine
    similarities over ``temperature``, averaged over the N positive pairs (pml's default
    reducer). Other label structures (more than two samples of a label, or one) raise
    NotImplementedError."""

    def __init__(self, temperature=0.07):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, embeddings, labels):
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or len(labels) != len(embeddings):
            raise ValueError("labels must be a 1-D tensor with one label per embedding")
        order = torch.argsort(labels, stable=True)
        pairs = labels[order].view(-1, 2) if len(labels) % 2 == 0 else None
        if pairs is None or not bool((pairs[:, 0] == pairs[:, 1]).all()) or \
                (len(pairs) > 1 and not bool((pairs[1:, 0] != pairs[:-1, 0]).all())):
            raise NotImplementedError(
                "fastclust.compat.pml.NTXentLoss: every label must occur exactly twice (the two views of "
                "one sample); other label structures are not supported")
        twins = order.view(-1, 2)
        return nt_xent_loss(embeddings[twins[:, 0]], embeddings[twins[:, 1]], tau=self.temperature)

    def extra_repr(self):
        return f"temperature={self.temperature}"
