"""DCSC, deep clustering by semantic contrastive learning."""
import fastclust

from ..nn import DCSCNet
from .augmented import AUGMENT_DEFAULTS, AUGMENT_SPECS, AugmentedMethod
from .base import Method, by_input
from .params import Float, Int


class DCSC(AugmentedMethod):
    """Backbone and four heads (:class:`fastclust.nn.DCSCNet`) on two random augmentations of
    each image; loss ``L_FLC + L_CLC + L_SLC + lam L_CR`` through
    :func:`fastclust.nt_xent_loss` (tau 0.2), :func:`fastclust.cluster_contrastive_loss`
    (tau 1.0, its entropy term weighted by lam = 1 is L_CR) and
    :func:`fastclust.semantic_contrastive_loss` (tau 1.0); Adam 3e-4. Labels: argmax of the
    cluster projector.

    The backbone is DAC's small conv trunk pooled to a 3 x 3 grid (the paper: a ResNet-34),
    cheaper per image on the CPU than the smallest ResNet trunk here, and enough for small
    grayscale images (docs/quality.md)."""

    name = "dcsc"
    defaults = {"epochs": 50, "batch_size": 256, "lr": 3e-4, "lr_decay": "none", "tau_feature": 0.2,
                "tau_cluster": 1.0, "tau_semantic": 1.0, "lam": 1.0, "feature_dim": 128,
                **AUGMENT_DEFAULTS, "trunk": "conv", "widths": (16, 32, 64), "pool": 3}
    # tuned (docs/quality.md): 40 epochs at lr 1e-3. paper: the defaults (Adam 3e-4, the
    # paper's temperatures) on a ResNet trunk (the paper: ResNet-34).
    presets = {"tuned": by_input(epochs=40, lr=1e-3), "paper": by_input(trunk="resnet", widths=(32, 64, 128),
                                                                          pool=1)}
    specs = {**Method.specs, **AUGMENT_SPECS, "tau_feature": Float(0, low_open=True),
             "tau_cluster": Float(0, low_open=True), "tau_semantic": Float(0, low_open=True),
             "lam": Float(0), "feature_dim": Int(1)}

    def build_model(self):
        return DCSCNet(self.trunk(), self.num_clusters, int(self.params["feature_dim"]))

    def loss(self, model, x, epoch, step, generator):
        p = self.params
        z_a, c_a, p_a, q_a = model(self.augment(x, generator))
        z_b, c_b, p_b, q_b = model(self.augment(x, generator))
        flc = fastclust.nt_xent_loss(z_a, z_b, tau=p["tau_feature"], group=self.group)
        clc_cr = fastclust.cluster_contrastive_loss(c_a, c_b, tau=p["tau_cluster"], entropy_weight=p["lam"],
                                                    group=self.group)
        slc = fastclust.semantic_contrastive_loss(p_a, p_b, q_a, q_b, tau=p["tau_semantic"], group=self.group)
        return flc + clc_cr + slc, {"flc": flc.detach(), "clc": clc_cr.detach(), "slc": slc.detach()}

    def logits(self, model, x):
        return model(x)[1]
