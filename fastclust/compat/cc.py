"""Contrastive Clustering's ``InstanceLoss`` and ``ClusterLoss`` (Li et al., AAAI 2021; also the
base of DCSC's instance- and cluster-level losses) on fastclust's fused ops."""
import torch
from torch import nn

from ..ops import cluster_contrastive_loss, row_logsumexp


def _check(name, value, kind=float):
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return kind(value)


class InstanceLoss(nn.Module):
    """``InstanceLoss(batch_size, temperature, device)``; ``loss(z_i, z_j)``: with ``z = [z_i;
    z_j]`` and ``s = z z^T / temperature`` (plain dot products: CC's network normalises its
    features itself), the summed cross-entropy of each row against its twin over every other row,
    divided by 2 ``batch_size``. The batch must have ``batch_size`` rows, as CC's mask requires;
    ``device`` is accepted and unused (the loss runs where its inputs are)."""

    def __init__(self, batch_size, temperature, device=None):
        super().__init__()
        self.batch_size = _check("batch_size", batch_size, int)
        self.temperature = _check("temperature", temperature)

    def forward(self, z_i, z_j):
        if z_i.shape[0] != self.batch_size or z_j.shape != z_i.shape:
            raise ValueError(f"InstanceLoss(batch_size={self.batch_size}) takes two ({self.batch_size}, d) "
                             f"views, got {tuple(z_i.shape)} and {tuple(z_j.shape)}")
        z = torch.cat([z_i, z_j])
        lse = row_logsumexp(z, z, self.temperature, self_offset=0)
        positives = (z_i * z_j).sum(1)
        return (lse.sum() - 2 * positives.sum() / self.temperature) / (2 * self.batch_size)

    def extra_repr(self):
        return f"batch_size={self.batch_size}, temperature={self.temperature}"


class ClusterLoss(nn.Module):
    """``ClusterLoss(class_num, temperature, device)``; ``loss(c_i, c_j)`` with two ``(n,
    class_num)`` views of cluster probabilities: the cluster-level contrastive loss over the
    2 ``class_num`` columns' cosine similarities plus CC's entropy term ``(log K - H(p_i)) +
    (log K - H(p_j))`` (:func:`fastclust.cluster_contrastive_loss` with ``entropy_weight=1``).
    CC's cosine floors the product of two norms at 1e-8, fastclust each norm at 1e-12: they
    differ only for columns of norm below ~1e-4."""

    def __init__(self, class_num, temperature, device=None):
        super().__init__()
        self.class_num = _check("class_num", class_num, int)
        self.temperature = _check("temperature", temperature)

    def forward(self, c_i, c_j):
        if c_i.shape[1] != self.class_num or c_j.shape != c_i.shape:
            raise ValueError(f"ClusterLoss(class_num={self.class_num}) takes two (n, {self.class_num}) views, "
                             f"got {tuple(c_i.shape)} and {tuple(c_j.shape)}")
        return cluster_contrastive_loss(c_i, c_j, tau=self.temperature, entropy_weight=1.0)

    def extra_repr(self):
        return f"class_num={self.class_num}, temperature={self.temperature}"
