"""Python front ends of the fused ops (torch.ops.fastclust.*), with fake kernels and autograd."""
from .columns import asv_similarity, cluster_contrastive_loss, pica_loss
from .contrastive import nt_xent_loss, row_logsumexp, semantic_contrastive_loss
from .pairwise import dac_loss, dsec_loss
from .restraint import restraint

__all__ = ["restraint", "dac_loss", "dsec_loss", "asv_similarity", "pica_loss", "cluster_contrastive_loss",
           "nt_xent_loss", "semantic_contrastive_loss", "row_logsumexp"]
