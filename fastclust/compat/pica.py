"""PICA's ``PUILoss`` (Huang et al., CVPR 2020) on fastclust's fused column-statistics op."""
from torch import nn

from ..ops import pica_loss


class PUILoss(nn.Module):
    """``PUILoss(lamda=2.0)``; ``loss(x, y)`` with two ``(n, k)`` views of cluster probabilities:
    the cross-entropy (mean over the k rows) of the partition uncertainty index, the cosines of
    the columns of ``x`` against those of ``y``, plus ``lamda`` times ``log k - H(p)``, ``p`` the
    column sums of ``x`` normalised to sum 1 (:func:`fastclust.pica_loss` with ``lam=lamda``)."""

    def __init__(self, lamda=2.0):
        super().__init__()
        if not lamda >= 0:
            raise ValueError(f"lamda must be >= 0, got {lamda!r}")
        self.lamda = float(lamda)

    def forward(self, x, y):
        if x.shape != y.shape:
            raise ValueError(f"PUILoss takes two views of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        return pica_loss(x, y, lam=self.lamda)

    def extra_repr(self):
        return f"lamda={self.lamda}"
