"""Drop-in replacements for the losses of code people already use, computed by fastclust's fused
ops: same constructor, same call, same result; switching is one import line.

    from lightly.loss import NTXentLoss             ->  from fastclust.compat.lightly import NTXentLoss
    from pytorch_metric_learning.losses import NTXentLoss  ->  from fastclust.compat.pml import NTXentLoss
    Contrastive Clustering's contrastive_loss.InstanceLoss / ClusterLoss
                                                    ->  from fastclust.compat.cc import InstanceLoss, ClusterLoss
    PICA's PUILoss                                  ->  from fastclust.compat.pica import PUILoss

None of those packages is needed. What a class cannot do as its original does (a memory bank,
label structures other than pairs) raises NotImplementedError saying so.
"""
