"""Trainers of the five methods on one shared loop (:mod:`fastclust.trainers.base`)."""
from .aedac import AEDAC
from .base import Method, NonFiniteLossError, Trainer
from .dac import DAC
from .dcsc import DCSC
from .dsec import DSEC
from .pica import PICA

METHODS = {method.name: method for method in (DAC, DSEC, AEDAC, PICA, DCSC)}

__all__ = ["METHODS", "Method", "Trainer", "NonFiniteLossError", "DAC", "DSEC", "AEDAC", "PICA", "DCSC"]
