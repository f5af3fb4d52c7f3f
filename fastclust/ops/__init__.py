"""Python front ends of the fused ops (torch.ops.fastclust.*), with fake kernels and autograd,
and each op family's declaration (fastclust.ops.family)."""
from . import columns as _columns, contrastive as _contrastive, pairwise as _pairwise, restraint as _restraint
from .columns import asv_similarity, cluster_contrastive_loss, pica_loss
from .contrastive import nt_xent_loss, row_logsumexp, semantic_contrastive_loss
from .pairwise import dac_loss, dsec_loss
from .restraint import restraint

# Every op family, each declared once at the end of its module.
FAMILIES = (_restraint.FAMILY, _pairwise.FAMILY, _columns.FAMILY, _contrastive.FAMILY)

__all__ = ["restraint", "dac_loss", "dsec_loss", "asv_similarity", "pica_loss",
           "cluster_contrastive_loss", "nt_xent_loss", "semantic_contrastive_loss", "row_logsumexp"]
