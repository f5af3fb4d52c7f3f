"""The one training loop every method shares.

A method (``dac.py``, ``dsec.py``, ...) says how to build its network, what its loss is for a
batch and which output's argmax is the cluster label; :class:`Trainer` does the rest: seeding,
epochs, progress bar, per-epoch evaluation, the ``metrics.json`` history, atomic checkpoints
every epoch, exact resume, mixed precision, the non-finite-loss stop, and data-parallel
training when torch.distributed is initialised (``torchrun``).

A checkpoint records the run that wrote it (:func:`run_identity`: method, parameters, clusters,
a fingerprint of the data, seed); a run resumes only a checkpoint of its own.

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
import contextlib
import copy
import hashlib
import json
import math
import numbers
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
from ..errors import CheckpointError, FastclustError, ParameterError, one_line
from ..nn import convert_global_batchnorm
from .params import SEED, Choice, Float, Int, Optional, check

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


class NonFiniteLossError(FastclustError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


PRESETS = ("tuned", "paper")
# Image side from which the "large" settings of a preset apply (mnist5k's 28 px: yes; the 8 px
# of scikit-learn's digits and feature vectors: no).
LARGE_IMAGE_SIDE = 16


def input_kind(input_shape):
    """"large" for images of at least LARGE_IMAGE_SIDE pixels a side, else "small"."""
    return "large" if len(input_shape) == 3 and min(input_shape[1:]) >= LARGE_IMAGE_SIDE else "small"


def by_input(small=None, large=None, **both):
    """A preset's settings per input kind: ``both`` for every input, ``small`` / ``large`` on
    top for that kind (see :func:`input_kind`). A "restarts" entry is the number of seeds the
    command line keeps the best of when --restarts is not given."""
    return {"small": {**both, **(small or {})}, "large": {**both, **(large or {})}}


class Method:
    """What a clustering method adds to the shared loop. Subclasses set ``name`` and
    ``defaults`` (every hyperparameter, ``epochs``, ``batch_size`` and ``lr`` included; an
    ``epochs`` of None means the length of the method's schedule), their ``presets`` and
    implement the hooks.

    ``preset`` picks settings on top of the defaults (``params`` override both): "tuned", the
    default, the settings chosen on small grayscale images (docs/quality.md, docs/presets.md);
    "paper", the paper's hyperparameters. Both may depend on the input (:func:`by_input`)."""

    name = None
    defaults = {}
    presets = {"tuned": by_input(), "paper": by_input()}
    # What each parameter allows (fastclust.trainers.params), for every key of ``defaults``.
    specs = {"epochs": Optional(Int(1), "the length of the method's schedule"), "batch_size": Int(2),
             "lr": Float(0, low_open=True), "lr_decay": Choice("none", "cosine"), "passes": Int(1)}
    # Set by the Trainer: the process group of a distributed run (pass it to the losses as
    # ``group=``), None on one process.
    group = None
    # Whether some steps leave parameters without a gradient (DistributedDataParallel must then
    # look for them every step).
    unused_parameters = False
    # Where in the run --restarts compares its candidates (see restart_epochs).
    restart_fraction = 0.25

    def __init__(self, input_shape, num_clusters, params=None, preset="tuned"):
        self.input_shape = tuple(input_shape)
        if len(self.input_shape) not in (1, 3) or not all(
                isinstance(d, numbers.Integral) and d >= 1 for d in self.input_shape):
            raise ParameterError(f"{self.name}: samples must be images (C, H, W) or feature vectors (D,) "
                                 f"of positive sizes, got shape {self.input_shape}")
        self.input_shape = tuple(int(d) for d in self.input_shape)
        if isinstance(num_clusters, bool) or not isinstance(num_clusters, numbers.Integral) or num_clusters < 2:
            raise ParameterError(f"{self.name}: the number of clusters must be an integer >= 2, "
                                 f"got {num_clusters!r}")
        self.num_clusters = int(num_clusters)
        if preset not in self.presets:
            raise ParameterError(f"{self.name}: unknown preset {preset!r}; known: {', '.join(self.presets)}")
        self.preset = preset
        settings = dict(self.presets[preset][input_kind(self.input_shape)])
        # The number of seeds a run of this preset keeps the best of (fastclust.trainers.restarts).
        self.restarts = settings.pop("restarts", 1)
        given = {k: v for k, v in (params or {}).items() if v is not None}
        unknown = set(given) - set(self.defaults)
        if unknown:
            raise ParameterError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; "
                                 f"known: {sorted(self.defaults)}")
        self.params = {key: check(self.name, key, value, self.specs[key])
                       for key, value in {**self.defaults, **settings, **given}.items()}
        self.check_params()

    def check_params(self):
        """Raise a ParameterError for parameters that are each allowed but not together, or not
        for samples of ``input_shape``."""

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
        partition). A quarter for DAC: its seeds that end in a poor partition settle early and
        already show the higher loss by then (docs/quality.md)."""
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


def json_ready(obj):
    """``obj`` with tuples as lists, as JSON (config.json) and checkpoints hold it."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def data_fingerprint(x, y=None):
    """A content hash of the samples ``x`` and labels ``y``: data replaced by other data of the
    same shape has another fingerprint."""
    digest = hashlib.blake2b(digest_size=12)
    x = torch.as_tensor(x).detach().cpu().contiguous()
    digest.update(f"{x.dtype} {tuple(x.shape)};".encode())
    digest.update(x.reshape(-1).view(torch.uint8).numpy())
    if y is not None:
        y = np.ascontiguousarray(y)
        digest.update(f"{y.dtype} {y.shape};".encode())
        digest.update(y.tobytes() if y.dtype != object else repr(y.tolist()).encode())
    return digest.hexdigest()


def run_identity(method, seed, fingerprint):
    """What a checkpoint must have been written by to continue as this run: the method, each of
    its parameters (``epochs`` aside: more epochs extend a run), the clusters, the samples'
    shape and content, and the seed."""
    return {"method": method.name,
            "params": json_ready({k: v for k, v in method.params.items() if k != "epochs"}),
            "clusters": method.num_clusters, "input_shape": list(method.input_shape),
            "data": fingerprint, "seed": int(seed)}


def _differences(saved, expected):
    """What differs between two run identities, as phrases ("seed 0 there, 1 here")."""
    found = []
    for key, value in expected.items():
        theirs = saved.get(key)
        if key == "params" and isinstance(theirs, dict):
            found += [f"{name} {theirs.get(name, 'absent')!r} there, {mine!r} here"
                      for name, mine in value.items() if theirs.get(name) != mine]
            found += [f"{name} {theirs[name]!r} there, absent here" for name in theirs if name not in value]
        elif key == "data" and theirs != value:
            found.append(f"the data (fingerprint {theirs} there, {value} here: other samples or labels)")
        elif theirs != value:
            found.append(f"{key.replace('_', ' ')} {theirs!r} there, {value!r} here")
    return found


CHECKPOINT_KEYS = ("epoch", "num_epochs", "model", "optimizer", "rng", "history", "identity")


def check_resumable(method, state, identity, source="the checkpoint"):
    """Raise a CheckpointError when the checkpointed ``state`` (read from ``source``) cannot
    continue as the run of ``method`` whose :func:`run_identity` is ``identity``."""
    if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS):
        missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
        raise CheckpointError(f"{source}: not a complete fastclust checkpoint (no {', '.join(missing)})")
    epoch, planned, history = state["epoch"], state["num_epochs"], state["history"]
    if not (Int(0).accepts(epoch) and Int(1).accepts(planned) and isinstance(history, list)
            and len(history) == epoch and all(isinstance(entry, dict) for entry in history)):
        entries = (f"a history of {len(history)} entries" if isinstance(history, list)
                   else f"a history that is a {type(history).__name__}")
        raise CheckpointError(f"{source}: damaged (epoch {epoch!r}, num_epochs {planned!r} and {entries} "
                              f"do not agree)")
    differences = _differences(state["identity"], identity) if isinstance(state["identity"], dict) else [
        "it records no run"]
    if differences:
        raise CheckpointError(f"{source} was written by another run: {'; '.join(differences)}. "
                              f"Start a new run in another directory, or resume with the run's own settings.")
    num_epochs = method.num_epochs()
    if epoch > num_epochs:
        raise CheckpointError(f"{method.name}: {source} is after epoch {epoch}, past the "
                              f"{num_epochs} epochs of this run")
    if method.lr_decay != "none" and planned != num_epochs:
        raise CheckpointError(
            f"{method.name}: the checkpointed run decays its learning rate over {planned} epochs; "
            f"continuing it over {num_epochs} would change the rates its first epochs trained "
            f"with. Resume it with {planned} epochs, or start a new run.")


def load_file(path, map_location="cpu"):
    """The tensors ``torch.save`` wrote to ``path`` (a checkpoint or model), read without running
    code from the file; a file that is not one is a CheckpointError naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as err:  # whatever unpickling a damaged or foreign file raises
        reason = one_line(err)
        if "weights_only" in reason or "Weights only" in reason:  # no advice to run its code
            reason = "it holds objects other than tensors and plain values"
        raise CheckpointError(f"{path}: not a file fastclust wrote, or damaged ({reason})") from None


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _atomic_write(path, write):
    """Write through a temporary file then rename, so an interrupt never leaves half a file; a
    failure is an OSError naming ``path``, and the file it would replace is left as it was."""
    tmp = f"{path}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save reports a failed write as RuntimeError
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise OSError(f"cannot write {path}: {err}") from err


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
        if len(x) < 2:
            raise ParameterError(f"{method.name}: {len(x)} sample(s) to train on; clustering needs at least 2")
        if y is not None and len(y) != len(x):
            raise ParameterError(f"{method.name}: {len(y)} labels for {len(x)} samples")
        # A copy: trainers of one Method (the restarts' candidates) each set their own group.
        self.method = copy.copy(method)
        self.x = x
        self.y = None if y is None else np.asarray(y)
        self.out = out
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ParameterError(f"device {device!r} was asked for but torch sees no CUDA GPU")
        self.amp = amp
        self.seed = check("trainer", "seed", seed, SEED)
        self.group = _process_group()
        self.method.group = self.group
        self.rank = dist.get_rank(self.group) if self.group else 0
        self.world_size = dist.get_world_size(self.group) if self.group else 1
        self.is_main = self.rank == 0
        # Batch norm needs two samples per rank unless it normalises over the global batch.
        per_rank = 1 if sync_batchnorm else 2
        if min(len(x), method.params["batch_size"]) < per_rank * self.world_size:
            raise ParameterError(
                f"{method.name}: batch_size {method.params['batch_size']} (of {len(x)} samples) is the "
                f"global batch, split over {self.world_size} ranks: it needs at least {per_rank} "
                f"sample(s) per rank" + ("" if sync_batchnorm else " (or --sync-bn)"))
        self.progress = progress and self.is_main
        self.log = log if self.is_main else silent
        self.config = config or {}
        seed_everything(self.seed)
        model = method.build_model()
        if sync_batchnorm and self.group:
            model = convert_global_batchnorm(model, self.group)
        self.model = model.to(self.device)
        if self.device.type == "cpu":
            # oneDNN's convolutions, max-pooling and batch norm pick the channels-last layout
            # only when the weights are channels-last, and it runs these networks' training steps
            # faster (bench/RESULTS.md, "training steps in channels-last"); on CUDA the default
            # layout stays, as no GPU timing backs a change there.
            self.model.to(memory_format=torch.channels_last)
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
        self._fingerprint = None
        if out and self.is_main:
            os.makedirs(out, exist_ok=True)

    # -- checkpoints -------------------------------------------------------------------------

    @property
    def identity(self):
        """This run's :func:`run_identity` (the data hashed once, when first needed)."""
        if self._fingerprint is None:
            self._fingerprint = data_fingerprint(self.x, self.y)
        return run_identity(self.method, self.seed, self._fingerprint)

    def state_dict(self):
        rng = {"torch": torch.get_rng_state(), "data": self.data_generator.get_state(),
               "augment": self.augment_generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"epoch": self.epoch, "num_epochs": self.num_epochs, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": rng, "history": self.history,
                "config": self.config, "identity": self.identity}

    def load_state_dict(self, state, source="the checkpoint"):
        """Continue from ``state`` (read from ``source``), once it is shown to be this run's."""
        check_resumable(self.method, state, self.identity, source)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            rng = state["rng"]
            torch.set_rng_state(rng["torch"])
            self.data_generator.set_state(rng["data"])
            self.augment_generator.set_state(rng["augment"])
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a hand-edited file
            raise CheckpointError(f"{source}: damaged ({type(err).__name__}: {one_line(err)})") from None
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])

    def write_metrics(self, **final):
        """``metrics.json`` in ``out`` (rank 0): ``{"history": [per-epoch entries]}``, plus what
        a finished run adds (``final`` scores, ``train_seconds``, the ``restarts`` record)."""
        if self.out and self.is_main:
            write_json(os.path.join(self.out, METRICS), {"history": self.history, **final})

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
        self.load_state_dict(load_file(path, self.device), path)

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
        return {k: float(v) for k, v in evaluate(self.y, assignments, self.method.num_clusters).items()}

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
                self.write_metrics()
            self.log(format_epoch(entry, self.num_epochs))
        return self.predict() if assignments is None else assignments


def format_epoch(entry, epochs):
    from ..metrics import format_scores  # scikit-learn loads on first use, not on import
    shown = [f"epoch {entry['epoch']}/{epochs}", f"loss {entry['loss']:.4f}"]
    shown += [f"{key} {entry[key]:.3f}" for key in ("u", "l") if key in entry]
    shown += [format_scores(entry)] if "acc" in entry else []
    shown.append(f"{entry['seconds']:.1f}s")
    return "  ".join(shown)
