"""DSEC, Deep Self-Evolution Clustering (Chang et al., TPAMI 2020)."""
import fastclust

from ..errors import ParameterError
from .base import by_input
from .dac import DAC
from .params import Float, Int
from .schedules import sect_thresholds


class DSEC(DAC):
    """DAC's networks (an MLP for feature vectors) with the constraint layer C_p and DSEC's
    squared-error pairwise loss (inside :func:`fastclust.dsec_loss`), under the self-evolution
    schedule SECT: ``u = 0.99``, ``l = 0.8`` moving by ``(u - l) / (2 e)`` per epoch, e = 50."""

    name = "dsec"
    # DSEC's training loss tells the seeds that end in a poor partition only once SECT has
    # narrowed the thresholds, not after the first quarter of the schedule: restarts compare
    # at half the run (docs/quality.md).
    restart_fraction = 0.5
    defaults = {**{k: v for k, v in DAC.defaults.items() if k != "eta"}, "p": 2.0, "u": 0.99,
                "l": 0.8, "e": 50}
    # tuned: two restarts (docs/quality.md); paper: SECT as published, a constant rate.
    presets = {"tuned": by_input(restarts=2), "paper": by_input(lr_decay="none")}
    specs = {**DAC.specs, "p": Float(0, low_open=True), "u": Float(-1, 1), "l": Float(-1, 1), "e": Int(1)}

    def check_params(self):
        if self.params["l"] >= self.params["u"]:
            raise ParameterError(f"dsec: l={self.params['l']} must lie below u={self.params['u']} "
                                 f"(SECT moves them towards each other over e epochs)")

    def schedule_epochs(self):
        return int(self.params["e"])

    def thresholds(self, epoch):
        p = self.params
        return sect_thresholds(epoch, p["u"], p["l"], p["e"])

    def pairwise_loss(self, feats, u, l, select):
        return fastclust.dsec_loss(feats, u, l, select=select, p=self.params["p"], return_stats=True,
                                   group=self.group)
