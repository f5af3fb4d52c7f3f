"""PICA, deep semantic clustering by Partition Confidence mAximisation (Huang et al., CVPR 2020)."""
import fastclust
import torch.nn.functional as F

from ..nn import MultiHeadNet, mlp
from .augmented import AUGMENT_DEFAULTS, AUGMENT_SPECS, AugmentedMethod
from .base import Method, by_input
from .params import Float, Int


class PICA(AugmentedMethod):
    """ResNet trunk with a 3x3 stem (optionally on Sobel-filtered input) and two heads: the
    main head (k clusters) and an over-clustering head (``overcluster``, 70 by default),
    trained alternately, one per step. Each sample is repeated ``repeats`` times against
    independently perturbed copies; :func:`fastclust.pica_loss` with ``lam`` = 2; Adam 1e-4.
    Labels: argmax of the main head.

    The paper's rate and batch learn too slowly for a CPU budget, so the tuned preset trains
    at a higher rate on smaller batches (a batch of 64 also gives each head four times the
    steps an epoch of a batch of 256). At batch 64 a step has 3 x 64 perturbed rows, under 3
    per over-cluster of 70, so the over-clustering head's column cosines rest on very few
    samples; the tuned preset uses fewer over-clusters on 28 px images (docs/quality.md)."""

    name = "pica"
    unused_parameters = True  # the heads train alternately
    defaults = {"epochs": 50, "batch_size": 256, "lr": 1e-4, "lr_decay": "none", "lam": 2.0,
                "overcluster": 70, "repeats": 3, **AUGMENT_DEFAULTS}
    # tuned (docs/quality.md): DAC's conv trunk at lr 3e-3, batch 64, a cosine decay; on
    # 28 px images 90 epochs, 30 over-clusters and three restarts, on smaller ones 60 epochs and
    # two. paper: the defaults (lr 1e-4, batch 256, 70 over-clusters).
    presets = {"tuned": by_input(lr=3e-3, batch_size=64, trunk="conv", widths=(16, 32, 64), pool=3,
                                 lr_decay="cosine", small={"epochs": 60, "restarts": 2},
                                 large={"epochs": 90, "overcluster": 30, "restarts": 3}),
               "paper": by_input()}
    specs = {**Method.specs, **AUGMENT_SPECS, "lam": Float(0), "overcluster": Int(2), "repeats": Int(1)}

    def build_model(self):
        trunk = self.trunk()
        return MultiHeadNet(trunk, {"main": mlp((trunk.out_dim, self.num_clusters)),
                                    "over": mlp((trunk.out_dim, int(self.params["overcluster"])))})

    def loss(self, model, x, epoch, step, generator):
        head = ("over", "main")[step % 2]
        repeats = int(self.params["repeats"])
        p1 = F.softmax(model(x, [head])[head], dim=1).repeat(repeats, 1)
        perturbed = self.augment(x.repeat(repeats, *([1] * (x.dim() - 1))), generator.repeated(repeats))
        p2 = F.softmax(model(perturbed, [head])[head], dim=1)
        loss, cross_entropy, entropy = fastclust.pica_loss(p1, p2, lam=self.params["lam"], return_parts=True,
                                                              group=self.group)
        return loss, {"ce": cross_entropy.detach(), "ent": entropy.detach()}

    def logits(self, model, x):
        return model(x, ["main"])["main"]
