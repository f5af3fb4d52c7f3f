"""Restarts: what ``n_init`` is to k-means, for a deep clustering run.

A run can settle early in a poor partition and never leave it (DAC on mnist5k: some seeds
split one digit and merge others by epoch ~10 and stay there; docs/quality.md), and such runs
carry a higher training loss from then on, so restarts keep the lowest-loss seed.
:func:`best_of_restarts` trains one candidate per seed for the first ``select_epochs`` epochs
of the run's schedule, keeps the candidate whose mean training loss over its last epoch is the
lowest (labels are never looked at) and continues it to the end. The result is the
uninterrupted run of the chosen seed, bit for bit: a candidate's first epochs are those of that
run, and the candidate continues from its own saved state, random generators included.
"""
import glob
import json
import os

from ..errors import ParameterError
from .base import CHECKPOINT, write_json

RESTARTS = "restarts.json"
CANDIDATES = "restarts"


def check_select_epochs(select_epochs, num_epochs, name="select_epochs"):
    """The choice must fall after a whole epoch and before the run's last one; ``name`` is the
    argument as the caller knows it."""
    if not 1 <= select_epochs < num_epochs:
        raise ParameterError(f"{name} must lie in 1..{num_epochs - 1} for a {num_epochs}-epoch run, "
                         f"got {name}={select_epochs}")


def candidate_dir(out, seed):
    return None if out is None else os.path.join(out, CANDIDATES, f"seed-{seed}")


def run_checkpoints(out):
    """The checkpoints a run keeps in ``out``: its own and its restart candidates'."""
    root = glob.escape(str(out))
    return (glob.glob(os.path.join(root, CHECKPOINT))
            + glob.glob(os.path.join(root, CANDIDATES, "*", CHECKPOINT)))


def read_selection(out):
    """The record :func:`best_of_restarts` wrote in ``out``, or None."""
    path = os.path.join(out, RESTARTS)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def best_of_restarts(make_trainer, seeds, select_epochs=None, out=None):
    """Train a candidate per seed for ``select_epochs`` epochs, choose the lowest-loss one.

    ``make_trainer(seed, out)`` builds a :class:`~fastclust.trainers.Trainer` for ``seed`` that
    checkpoints to ``out`` (None: nowhere). ``select_epochs`` None: the method's default,
    :meth:`~fastclust.trainers.base.Method.restart_epochs`. Candidates checkpoint to
    ``out/restarts/seed-S`` and resume from there when a checkpoint is found, so an interrupted
    selection continues where it stopped. Returns ``(trainer, selection)``: the chosen run
    rebuilt with ``out`` as its directory, its state that of the candidate after
    ``select_epochs`` epochs (saved to ``out`` at once, which marks the selection as made),
    ready for ``trainer.fit()``; and the record ``{"seed": chosen, "select_epochs": E,
    "candidates": [{"seed", "loss"}, ...]}``, also written to ``out/restarts.json``.
    """
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ParameterError(f"restarts need at least two distinct seeds, got {seeds}")
    states, candidates = {}, []
    for number, seed in enumerate(seeds, 1):
        directory = candidate_dir(out, seed)
        trainer = make_trainer(seed, directory)
        if select_epochs is None:
            select_epochs = trainer.method.restart_epochs()
        check_select_epochs(select_epochs, trainer.num_epochs)
        if directory and os.path.exists(os.path.join(directory, CHECKPOINT)):
            trainer.resume()
        trainer.log(f"restart {number}/{len(seeds)}: seed {seed}, epochs 1-{select_epochs}"
                    + (f" (resumed after epoch {trainer.epoch})" if trainer.epoch else ""))
        trainer.fit(until=select_epochs)
        # The state holds the candidate's own tensors, which nothing trains any more.
        states[seed] = trainer.state_dict()
        candidates.append({"seed": seed, "loss": trainer.history[select_epochs - 1]["loss"]})
    chosen = min(candidates, key=lambda c: c["loss"])["seed"]
    selection = {"seed": chosen, "select_epochs": select_epochs, "candidates": candidates}
    trainer = make_trainer(chosen, out)
    trainer.load_state_dict(states[chosen])
    trainer.log("restarts: " + ", ".join(f"seed {c['seed']} loss {c['loss']:.4f}" for c in candidates)
                + f"; continuing seed {chosen}")
    if out and trainer.is_main:
        write_json(os.path.join(out, RESTARTS), selection)
        trainer.save_checkpoint()
    return trainer, selection
