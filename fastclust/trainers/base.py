"""The one training loop every method shares.

A method (``dac.py``, ``dsec.py``, ...) says how to build its network, what its loss is for a
batch and which output's argmax is the cluster label; :class:`Trainer` does the rest: seeding,
epochs, progress bar, per-epoch evaluation, the ``metrics.json`` history, atomic checkpoints
every epoch, exact resume, mixed precision, the non-finite-loss stop, and data-parallel
training when torch.distributed is initialised (``torchrun``).

Every random draw of a run comes from the global torch generator (model initialisation) or
from two generators the trainer owns (data order on the CPU, augmentations on the training
device); all three are saved in each checkpoint, so a resumed run repeats an uninterrupted
one bit for bit (same device and thread count).

Distributed runs (a process group of N > 1 ranks): the model is wrapped in
DistributedDataParallel, every rank draws the same global batches from the same seeded
generator and takes its contiguous share of each (the job of a distributed sampler), the
methods' losses run over the global batch (``group=``, :mod:`fastclust.distributed`), and
augmentations are drawn for the whole batch (:class:`fastclust.augment.RowGenerator`). With
``sync_batchnorm`` (:class:`fastclust.nn.GlobalBatchNorm`) a step on N ranks is therefore the
step one process takes on the concatenated batch, up to float rounding; the run's state is
rank-independent, so a checkpoint resumes on any number of ranks. Only rank 0 logs, shows a
progress bar and writes files.
"""
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..augment import RowGenerator
from ..distributed import gather_rows
from ..nn import convert_global_batchnorm

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


def _typed_like(method, key, value, default):
    """A parameter's ``value`` in the type of its default: a lone number becomes a 1-tuple where
    the default is a tuple (``--set widths=16``), and "true" / "false" (any case) or 1 / 0 a bool
    where the default is a bool (the string "false" would be truthy)."""
    if isinstance(default, tuple) and isinstance(value, (int, float)):
        return (value,)
    if isinstance(default, bool) and not isinstance(value, bool):
        text = str(value).lower()
        if text not in ("true", "false", "1", "0"):
            raise ValueError(f"{method}: {key} is true or false, got {value!r}")
        return text in ("true", "1")
    return value


class Method:
    """What a clustering method adds to the shared loop. Subclasses set ``name`` and
    ``defaults`` (every hyperparameter, ``epochs``, ``batch_size`` and ``lr`` included; an
    ``epochs`` of None means the length of the method's schedule) and implement the hooks."""

    name = None
    defaults = {}
    # Set by the Trainer: the process group of a distributed run (pass it to the losses as
    # ``group=``), None on one process.
    group = None
    # Whether some steps leave parameters without a gradient (DistributedDataParallel must then
    # look for them every step).
    unused_parameters = False
    # Where in the run --restarts compares its candidates (see restart_epochs).
    restart_fraction = 0.25

    def __init__(self, input_shape, num_clusters, params=None):
        unknown = set(params or {}) - set(self.defaults)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(self.defaults)}")
        self.params = {**self.defaults, **{k: _typed_like(self.name, k, v, self.defaults[k])
                                           for k, v in (params or {}).items() if v is not None}}
        if self.lr_decay not in ("none", "cosine"):
            raise ValueError(f"{self.name}: lr_decay must be 'none' or 'cosine', got {self.lr_decay!r}")
        self.input_shape = tuple(input_shape)
        self.num_clusters = int(num_clusters)
        if self.num_clusters < 2:
            raise ValueError(f"{self.name}: the number of clusters must be at least 2, got {num_clusters}")

    def build_model(self):
        raise NotImplementedError

    def build_optimizer(self, model):
        return torch.optim.Adam(model.parameters(), lr=self.params["lr"])

    def schedule_epochs(self):
        """The number of epochs of the method's schedule (used when ``epochs`` is None)."""
        raise NotImplementedError

    def num_epochs(self):
        epochs = self.params["epochs"]
        return self.schedule_epochs() if epochs is None else int(epochs)

    def clustering_start(self):
        """The first epoch whose loss is the clustering loss (AE+DAC pretrains before it)."""
        return 0

    def restart_epochs(self):
        """The default epoch after which restarts are compared: ``restart_fraction`` of the
        clustering epochs, rounded up, after any pretraining (whose loss says nothing about the
        partition). A quarter for DAC: on mnist5k, its seeds that end in a poor partition
        already have the higher loss by then (README, "Quality")."""
        start = min(self.clustering_start(), self.num_epochs())
        return start + max(1, math.ceil((self.num_epochs() - start) * self.restart_fraction))

    def epoch_settings(self, epoch):
        """What the schedule sets for ``epoch`` (thresholds, phase), logged in the history."""
        return {}

    @property
    def lr_decay(self):
        """The learning-rate schedule: "none" (constant) or "cosine"; "none" for a method
        without the parameter."""
        return self.params.get("lr_decay", "none")

    def learning_rate(self, epoch):
        """The learning rate of ``epoch``: ``lr``, or with ``lr_decay`` "cosine" ``lr`` decayed
        along half a cosine to 0 over the run's epochs (a function of the epoch alone, so a
        resumed run sets what an uninterrupted one does)."""
        lr = float(self.params["lr"])
        if self.lr_decay == "none":
            return lr
        return lr * 0.5 * (1 + math.cos(math.pi * epoch / self.num_epochs()))

    def loss(self, model, x, epoch, step, generator):
        """The training loss of batch ``x`` (this rank's rows of the batch) and a dict of parts
        shown in the progress bar; ``generator`` (a :class:`fastclust.augment.RowGenerator`)
        feeds the augmentations."""
        raise NotImplementedError

    def logits(self, model, x):
        """The outputs whose argmax is the cluster label (model in eval mode, no grad)."""
        return model(x)


def silent(*args, **kwargs):
    """A log that shows nothing (ranks other than 0)."""


def check_resumable(method, state):
    """Raise a ValueError when the checkpointed ``state`` cannot continue as a run of ``method``."""
    num_epochs = method.num_epochs()
    if state["epoch"] > num_epochs:
        raise ValueError(f"{method.name}: the checkpoint is after epoch {state['epoch']}, past the "
                         f"{num_epochs} epochs of this run")
    planned = state.get("num_epochs")
    if method.lr_decay != "none" and planned is not None and planned != num_epochs:
        raise ValueError(
            f"{method.name}: the checkpointed run decays its learning rate over {planned} epochs; "
            f"continuing it over {num_epochs} would change the rates its first epochs trained "
            f"with. Resume it with {planned} epochs, or start a new run.")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _atomic_write(path, write):
    """Write through a temporary file then rename, so an interrupt never leaves half a file."""
    tmp = f"{path}.tmp"
    write(tmp)
    os.replace(tmp, path)


def save_tensors(path, obj):
    """``torch.save`` through :func:`_atomic_write`."""
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_json(path, obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
    _atomic_write(path, write)


def _process_group():
    """The default process group when torch.distributed runs more than one rank, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.group.WORLD
    return None


class Trainer:
    """Trains ``method`` on the samples ``x`` (an (N, ...) float tensor), evaluating against
    ``y`` (N labels, or None) after every epoch and checkpointing to ``out`` (or nowhere).
    ``sync_batchnorm``: in a distributed run, batch normalisation over the global batch."""

    def __init__(self, method, x, y=None, *, out=None, device="cpu", seed=0, amp=False,
                 progress=True, log=print, config=None, sync_batchnorm=False):
        self.method = method
        self.x = x
        self.y = None if y is None else np.asarray(y)
        self.out = out
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU")
        self.amp = amp
        self.seed = int(seed)
        self.group = _process_group()
        self.rank = dist.get_rank(self.group) if self.group else 0
        self.world_size = dist.get_world_size(self.group) if self.group else 1
        self.is_main = self.rank == 0
        if self.world_size > int(method.params["batch_size"]):
            raise ValueError(f"batch_size {method.params['batch_size']} is the global batch and "
                             f"must be at least the number of ranks, {self.world_size}")
        self.progress = progress and self.is_main
        self.log = log if self.is_main else silent
        self.config = config or {}
        seed_everything(self.seed)
        model = method.build_model()
        if sync_batchnorm and self.group:
            model = convert_global_batchnorm(model, self.group)
        self.model = model.to(self.device)
        if self.device.type == "cpu":
            # oneDNN's convolutions, max-pooling and batch norm run these networks' training
            # steps 1.1-1.9x faster with channels-last weights (README, "Benchmarks"); on CUDA the
            # default layout stays, as no GPU timing backs a change there.
            self.model.to(memory_format=torch.channels_last)
        method.group = self.group
        # What the loss runs through: the model itself, or its DDP wrapper, which averages the
        # parameter gradients over the ranks during backward.
        self.network = self.model if self.group is None else DistributedDataParallel(
            self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
            process_group=self.group, find_unused_parameters=method.unused_parameters)
        self.optimizer = method.build_optimizer(self.model)
        self.data_generator = torch.Generator().manual_seed(self.seed)
        self.augment_generator = torch.Generator(device=self.device).manual_seed(self.seed + 1)
        self.history = []
        self.epoch = 0  # epochs completed
        if out and self.is_main:
            os.makedirs(out, exist_ok=True)

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self):
        rng = {"torch": torch.get_rng_state(), "data": self.data_generator.get_state(),
               "augment": self.augment_generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"epoch": self.epoch, "num_epochs": self.num_epochs, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": rng, "history": self.history,
                "config": self.config}

    def load_state_dict(self, state):
        check_resumable(self.method, state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        self.data_generator.set_state(rng["data"])
        self.augment_generator.set_state(rng["augment"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])

    def save_checkpoint(self):
        """Rank 0 writes; the state is the same on every rank."""
        if not self.is_main:
            return
        save_tensors(os.path.join(self.out, CHECKPOINT), self.state_dict())

    def resume(self, directory=None):
        """Load the checkpoint in ``directory`` (default: ``out``); training continues after
        its last completed epoch."""
        path = os.path.join(directory or self.out, CHECKPOINT)
        if not os.path.exists(path):
            raise FileNotFoundError(f"cannot resume: no checkpoint at {path}")
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

    # -- training ----------------------------------------------------------------------------

    def _batches(self):
        """The index batches of one epoch: ``passes`` (a method parameter, default 1) shuffled
        passes over the data, so a schedule step can train longer than one pass."""
        n, size = len(self.x), int(self.method.params["batch_size"])
        batches = []
        for _ in range(int(self.method.params.get("passes", 1))):
            order = torch.randperm(n, generator=self.data_generator)
            # A short last batch is dropped (unless it is the only one): BN and the batch-level
            # losses are noisy on a handful of samples.
            batches += [order[i * size:(i + 1) * size] for i in range(max(1, n // size))]
        return batches

    def _local_share(self, index):
        """This rank's rows of the global batch ``index`` and the generator its augmentations
        draw from (see :class:`fastclust.augment.RowGenerator`)."""
        if self.group is None:
            return index, RowGenerator(self.augment_generator)
        shares = index.tensor_split(self.world_size)
        first = sum(len(share) for share in shares[:self.rank])
        rows = torch.arange(first, first + len(shares[self.rank]), device=self.device)
        return shares[self.rank], RowGenerator(self.augment_generator, rows, len(index))

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def train_epoch(self, epoch):
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.method.learning_rate(epoch)
        batches = self._batches()
        totals, count = {}, 0
        bar = tqdm(batches, desc=f"{self.method.name} epoch {epoch + 1}/{self.num_epochs}",
                   leave=False, disable=None if self.progress else True, dynamic_ncols=True)
        for step, index in enumerate(bar):
            rows, generator = self._local_share(index)
            x = self.x[rows].to(self.device, non_blocking=True)
            with self._autocast():
                # Every loss is over the global batch, so its value (and the finiteness test)
                # is the same on every rank.
                loss, parts = self.method.loss(self.network, x, epoch, step, generator)
            if not torch.isfinite(loss):
                kept = (f"the checkpoint of epoch {self.epoch} in {self.out} is kept"
                        if self.out and self.epoch else "no checkpoint was written")
                raise NonFiniteLossError(
                    f"{self.method.name}: the loss became {loss.item()} at epoch {epoch + 1}, "
                    f"step {step + 1}; training stopped and {kept}. Try a lower learning rate.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            values = {"loss": loss.item(), **{k: float(v) for k, v in parts.items()}}
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value
            count += 1
            bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        bar.close()
        return {k: v / count for k, v in totals.items()}

    @torch.no_grad()
    def predict_logits(self, x, batch_size=1024):
        """The label outputs of ``x``; in a distributed run every rank computes its share and
        every rank returns all of them (so every rank must call it)."""
        self.model.eval()
        share = x if self.group is None else x.tensor_split(self.world_size)[self.rank]
        outputs = []
        for start in range(0, max(len(share), 1), batch_size):  # an empty share gives (0, k)
            with self._autocast():
                out = self.method.logits(self.model, share[start:start + batch_size].to(self.device))
            outputs.append(out.float())
        logits = torch.cat(outputs)
        if self.group is not None:
            logits = gather_rows(logits, self.group)
        return logits.cpu()

    def predict(self, x=None):
        """Cluster labels (argmax of the method's label outputs) of ``x`` (default: the
        training samples), as an int64 numpy array."""
        return self.predict_logits(self.x if x is None else x).argmax(dim=1).numpy()

    def evaluate(self, assignments):
        if self.y is None:
            return {}
        from ..metrics import evaluate
        return {k: float(v) for k, v in evaluate(self.y, assignments).items()}

    @property
    def num_epochs(self):
        return self.method.num_epochs()

    def fit(self, until=None):
        """Train from the current epoch to epoch ``until`` (default: the last); returns the
        final assignments."""
        assignments = None  # the last epoch's, already computed for its scores
        for epoch in range(self.epoch, self.num_epochs if until is None else until):
            started = time.perf_counter()
            settings = self.method.epoch_settings(epoch)
            means = self.train_epoch(epoch)
            assignments = self.predict()
            scores = self.evaluate(assignments)
            entry = {"epoch": epoch + 1, **settings, **means, **scores,
                     "clusters_used": int(len(np.unique(assignments))),
                     "seconds": time.perf_counter() - started}
            self.history.append(entry)
            self.epoch = epoch + 1
            if self.out and self.is_main:
                self.save_checkpoint()
                write_json(os.path.join(self.out, METRICS), {"history": self.history})
            self.log(format_epoch(entry, self.num_epochs))
        return self.predict() if assignments is None else assignments


def format_epoch(entry, epochs):
    shown = [f"epoch {entry['epoch']}/{epochs}", f"loss {entry['loss']:.4f}"]
    shown += [f"{key} {entry[key]:.3f}" for key in ("u", "l") if key in entry]
    shown += [f"{key.upper()} {entry[key]:.4f}" for key in ("acc", "nmi", "ari") if key in entry]
    shown.append(f"{entry['seconds']:.1f}s")
    return "  ".join(shown)
