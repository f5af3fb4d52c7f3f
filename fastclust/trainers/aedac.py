"""AE+DAC: deep adaptive clustering on the code of a convolutional autoencoder."""
import fastclust

from ..distributed import global_mean
from ..errors import ParameterError
from ..nn import ConvAutoencoder
from .base import Method, by_input
from .dac import VIEW_SPECS, learning_batch
from .params import Float, Int, Ints
from .schedules import aedac_epochs, aedac_thresholds


class AEDAC(Method):
    """The fully convolutional autoencoder of the paper's Table 3 with a clustering head on its
    code. The first ``pretrain_epochs`` epochs train the reconstruction loss (mean squared
    error) alone; then ``alpha * L_rec + beta * L_dac`` with ``u(xi) = 0.95 - xi``,
    ``l(xi) = 0.5 + 0.1 xi``, xi rising by ``eta`` per epoch until l > u (82 epochs at
    eta = 0.005). Adam 1e-4, batch 128. The paper does not fix the pretraining length.

    After pretraining, ``affine``, ``views`` and ``select_clean`` work as in :class:`DAC`
    (:func:`~fastclust.trainers.dac.learning_batch`): the DAC and reconstruction terms are
    learnt on ``views`` warped copies of each image, their pairs selected on the clean images'
    outputs, computed in a batch of their own. The learning rate decays along a cosine over the
    run (``lr_decay``, as for DAC). Both depart from the paper's procedure (no warps, a
    constant rate), which clustered mnist5k far worse (docs/quality.md).

    ``strides`` of the encoder's convs: the paper's four halvings leave a 2 x 2 code of a 28 px
    digit, too coarse for DAC on mnist5k; ``(1, 1, 2, 2)`` keeps a 7 x 7 one. The tuned preset
    holds the settings chosen for small grayscale images (``--lr 1e-3`` among them);
    docs/quality.md has the runs that chose them."""

    name = "aedac"
    defaults = {"epochs": None, "batch_size": 128, "lr": 1e-4, "lr_decay": "cosine", "eta": 0.005, "alpha": 0.5,
                "beta": 0.3, "pretrain_epochs": 50, "channels": (8, 16, 32, 64), "head_hidden": 64,
                "strides": (2, 2, 2, 2), "affine": True, "views": 2, "select_clean": True}
    # tuned (docs/quality.md): lr 1e-3 and two restarts; on 28 px images also a 7 x 7 code,
    # 10 pretraining epochs, 40 in all, DAC's batch of 64, a fifth of the reconstruction weight
    # and a head 256 wide. paper: Table 3's network and the paper's training, no warps, a
    # constant rate.
    presets = {"tuned": by_input(lr=1e-3, restarts=2,
                                 large={"strides": (1, 1, 2, 2), "pretrain_epochs": 10, "epochs": 40,
                                        "batch_size": 64, "alpha": 0.1, "head_hidden": 256}),
               "paper": by_input(affine=False, lr_decay="none")}
    specs = {**Method.specs, "eta": Float(0, low_open=True), "alpha": Float(0), "beta": Float(0),
             "pretrain_epochs": Int(0), "channels": Ints(1), "head_hidden": Int(1), "strides": Ints(1),
             **VIEW_SPECS}

    def check_params(self):
        p = self.params
        if len(self.input_shape) != 3:
            raise ParameterError("aedac clusters images: its autoencoder is convolutional, but the "
                                 f"samples have shape {self.input_shape}; use dsec for feature vectors")
        if len(p["strides"]) != len(p["channels"]):
            raise ParameterError(f"aedac: strides={p['strides']} must give one stride per conv of "
                                 f"channels={p['channels']}")
        if p["alpha"] == 0 and p["beta"] == 0:
            raise ParameterError("aedac: alpha and beta are both 0, so the clustering loss would be 0")
        if p["epochs"] is not None and p["epochs"] <= p["pretrain_epochs"]:
            raise ParameterError(f"aedac: epochs={p['epochs']} ends before the clustering starts, after "
                                 f"pretrain_epochs={p['pretrain_epochs']}")

    @property
    def unused_parameters(self):
        return self.clustering_start() > 0  # no gradient to the head while pretraining

    def build_model(self):
        return ConvAutoencoder(self.input_shape, self.num_clusters, tuple(self.params["channels"]),
                               int(self.params["head_hidden"]), tuple(self.params["strides"]))

    def schedule_epochs(self):
        return self.clustering_start() + aedac_epochs(self.params["eta"])

    def clustering_start(self):
        return int(self.params["pretrain_epochs"])

    def thresholds(self, epoch):
        """(u, l) of a clustering epoch, or None during pretraining."""
        xi_epoch = epoch - self.clustering_start()
        return aedac_thresholds(xi_epoch, self.params["eta"]) if xi_epoch >= 0 else None

    def epoch_settings(self, epoch):
        thresholds = self.thresholds(epoch)
        return {"phase": "pretrain"} if thresholds is None else {"u": thresholds[0], "l": thresholds[1]}

    def loss(self, model, x, epoch, step, generator):
        thresholds = self.thresholds(epoch)
        select = None
        if thresholds is not None:
            x, select = learning_batch(lambda images: self.logits(model, images), x, generator,
                                       self.params)
        logits, reconstruction = model(x)
        rec = global_mean((reconstruction.float() - x.float()).square(), self.group)
        if thresholds is None:
            return rec, {"rec": rec.detach()}
        dac, n_pos, n_neg = fastclust.dac_loss(logits, *thresholds, select=select, return_stats=True,
                                               group=self.group)
        loss = self.params["alpha"] * rec + self.params["beta"] * dac
        return loss, {"rec": rec.detach(), "dac": dac.detach(), "pos": n_pos, "neg": n_neg}

    def logits(self, model, x):
        return model(x, reconstruct=False)[0]
