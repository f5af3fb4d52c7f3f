"""The ``fastclust`` command line: ``fastclust train METHOD ...`` and ``fastclust predict ...``.

``torchrun --nproc_per_node=N -m fastclust train ...`` trains on N ranks (NCCL on GPUs, gloo on
CPUs): see :mod:`fastclust.trainers.base` for what a distributed run does.
"""
import argparse
import ast
import datetime
import json
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

from .errors import CheckpointError, FastclustError, ParameterError, one_line
from .trainers.base import json_ready
from .trainers.base import PRESETS
from .trainers.params import SEED, Choice, Float, Int, Optional, Refused, Text

# What config.json holds (written by train, read by --resume) and what each value allows;
# model.pt's config adds the samples' shape.
CONFIG_SPECS = {"method": Text(), "preset": Choice(*PRESETS), "data": Text(), "format": Optional(Text(), "inferred"),
                "split": Optional(Text(), "all"), "clusters": Optional(Int(2), "the classes"),
                "seed": SEED, "restarts": Int(1), "restart_epochs": Optional(Int(1), "the method's")}

CONFIG = "config.json"
MODEL = "model.pt"
MODEL_KEYS = ("method", "clusters", "params", "input_shape")


def _parse_value(text):
    """``--set`` values: Python literals (numbers, tuples, True/None), ``a,b`` as a tuple of
    literals, anything else as a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if "," in text:
            return tuple(_parse_value(part) for part in text.split(","))
        return text


def _method_params(args):
    params = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"fastclust: --set expects KEY=VALUE, got {item!r}")
        params[key.replace("-", "_")] = _parse_value(value)
    return {k: v for k, v in params.items() if v is not None}


def _load(source, format, split):
    from .data import load_dataset
    return load_dataset(source, format, split=split or "all")


def _write_assignments(out, assignments, y):
    np.save(os.path.join(out, "assignments.npy"), assignments)
    with open(os.path.join(out, "assignments.csv"), "w") as f:
        f.write("index,cluster" + (",label\n" if y is not None else "\n"))
        for i, cluster in enumerate(assignments):
            f.write(f"{i},{cluster}" + (f",{y[i]}\n" if y is not None else "\n"))


def _write_results(out, trainer, logits, dataset, title):
    """The assignments (the argmax of ``logits``), their scores and the pictures
    (fastclust.plots) of a trained model."""
    from .plots import write_run_plots

    assignments = logits.argmax(1).numpy()
    scores = trainer.evaluate(assignments)
    _write_assignments(out, assignments, dataset.y)
    write_run_plots(out, trainer.history, title, dataset.x, dataset.y, assignments, logits,
                    trainer.method.num_clusters, dataset.class_names)
    return scores, assignments


def _require_keys(config, keys, path):
    """``config`` as read from ``path``, refused unless it is a dict holding ``keys``."""
    missing = [key for key in keys if not isinstance(config, dict) or key not in config]
    if missing:
        raise CheckpointError(f"{path}: not a complete fastclust file (no {', '.join(missing)}); "
                              f"was it edited or cut short?")
    return config


def _read_config(path):
    try:
        with open(path) as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); was it edited or cut short?") from None
    _require_keys(config, (*CONFIG_SPECS, "params"), path)
    if not isinstance(config["params"], dict):
        raise CheckpointError(f"{path}: its params are not a dict")
    for key, spec in CONFIG_SPECS.items():
        if not spec.accepts(config[key]):
            raise CheckpointError(f"{path}: {key} {config[key]!r} is not allowed there: it is {spec.text}")
    return config


def _resume_config(args):
    path = os.path.join(args.resume, CONFIG)
    if not os.path.exists(path):
        raise SystemExit(f"fastclust: cannot resume from {args.resume}: no {CONFIG} there")
    config = _read_config(path)
    given = {"method": args.method, "preset": args.preset, "data": args.data, "format": args.format,
             "split": args.split,
             "clusters": args.clusters, "seed": args.seed, "restarts": args.restarts,
             "restart_epochs": args.restart_epochs}
    for key, value in given.items():
        if value is not None and value != config.get(key):
            raise SystemExit(f"fastclust: --resume {args.resume}: {key} {value!r} differs from the "
                             f"run's {config.get(key)!r}")
    params = _method_params(args)
    for key, value in params.items():
        # More epochs extend a finished or interrupted run (the trainer refuses when they would
        # stretch a learning-rate decay); anything else would change it.
        if key != "epochs" and json_ready(value) != config["params"].get(key):
            raise SystemExit(f"fastclust: --resume {args.resume}: {key} {value!r} differs from the "
                             f"run's {config['params'].get(key)!r}")
    config["params"].update({k: v for k, v in params.items() if k == "epochs"})
    return config


def _distributed():
    return dist.is_available() and dist.is_initialized()


def _start_distributed(args):
    """Joins the process group when launched by torchrun with more than one rank (torchrun sets
    WORLD_SIZE, RANK, LOCAL_RANK and the rendezvous address); returns this rank, 0 otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit("fastclust: --device cuda was asked for but torch sees no CUDA GPU")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        args.device = f"cuda:{local_rank}"
    # The timeout bounds every collective: a rank that dies makes the others fail with an error
    # after at most this long instead of waiting forever.
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=args.timeout))
    return dist.get_rank()


def _restart_settings(args, method):
    """(number of restarts, epoch of the choice) of a new run, checked against its schedule
    before anything is written."""
    from .trainers.restarts import check_select_epochs
    select = args.restart_epochs if args.restart_epochs is not None else method.restart_epochs()
    if args.restarts is not None:
        restarts = args.restarts
    else:
        # The preset's restarts, unless the run is too short to choose among them.
        restarts = method.restarts if 1 <= select < method.num_epochs() else 1
    if restarts > 1:
        check_select_epochs(select, method.num_epochs(), "--restart-epochs")
    return restarts, select


def _new_config(args):
    """The config of a new run and its directory, refused when the directory holds a run."""
    from .trainers.restarts import RESTARTS, run_checkpoints

    if args.method is None or args.data is None:
        raise SystemExit("fastclust train: METHOD and --data are required (or --resume DIR)")
    config = {"method": args.method, "preset": args.preset or "tuned", "data": args.data, "format": args.format,
              "split": args.split or "all", "clusters": args.clusters,
              "seed": 0 if args.seed is None else args.seed, "params": _method_params(args)}
    out = args.out or os.path.join("runs", f"{args.method}-{os.path.basename(str(args.data).rstrip('/'))}")
    # A new run would otherwise pick up the old run's restart candidates or its choice.
    held = run_checkpoints(out)
    if os.path.exists(os.path.join(out, RESTARTS)):
        held.append(os.path.join(out, RESTARTS))
    if held:
        raise SystemExit(f"fastclust: {out} already holds a run ({', '.join(held)}): continue it with "
                         f"fastclust train --resume {out}, or pass another --out")
    return config, out


def _build_method(args, config, dataset):
    """The run's Method for ``dataset``; completes ``config`` with what it resolved (clusters,
    every parameter, restart settings of a new run, the samples' shape)."""
    from .trainers import METHODS

    clusters = config["clusters"] or dataset.num_classes
    if clusters is None:
        raise SystemExit(f"fastclust: {dataset.name} has no labels to count classes from: pass --clusters K")
    if config["method"] not in METHODS:
        raise CheckpointError(f"{args.resume}: {CONFIG} names the method {config['method']!r}, "
                              f"not one of {', '.join(METHODS)}")
    try:
        method = METHODS[config["method"]](tuple(dataset.x.shape[1:]), clusters, config["params"],
                                           config["preset"])
    except ParameterError as err:
        if not args.resume:
            raise
        # The parameters come from the run's config.json (and --epochs).
        raise ParameterError(f"resuming {args.resume}: {err}") from None
    if not args.resume:
        config["restarts"], config["restart_epochs"] = _restart_settings(args, method)
    config.update(clusters=clusters, params=json_ready(method.params),
                  input_shape=list(dataset.x.shape[1:]), dataset=dataset.name)
    return method


def _continued_state(args, config, method, dataset, out, make_trainer, say):
    """(trainer, selection): the trainer that continues the run (None while its restarts have
    not chosen: their candidates then hold its state, checked here) and the restarts' choice."""
    from .trainers.base import CHECKPOINT, check_resumable, data_fingerprint, load_file, run_identity
    from .trainers.restarts import candidate_dir, check_select_epochs, read_selection

    restarts = config["restarts"]
    # A run with restarts has a checkpoint of its own once the choice is made (see
    # fastclust.trainers.restarts); until then its candidates' checkpoints are its state.
    choosing = restarts > 1 and not os.path.exists(os.path.join(args.resume or out, CHECKPOINT))
    if choosing and args.resume and os.path.abspath(out) != os.path.abspath(args.resume):
        raise SystemExit(f"fastclust: {args.resume} has not chosen among its restarts yet: resume it "
                         f"without --out")
    if choosing:
        if args.resume:
            # The candidates must accept a changed --epochs before config.json records it.
            check_select_epochs(config["restart_epochs"], method.num_epochs(), "the run's --restart-epochs")
            fingerprint = data_fingerprint(dataset.x, dataset.y)
            for seed in range(config["seed"], config["seed"] + restarts):
                path = os.path.join(candidate_dir(out, seed), CHECKPOINT)
                if os.path.exists(path):
                    check_resumable(method, load_file(path), run_identity(method, seed, fingerprint), path)
        return None, None
    selection = read_selection(args.resume or out) if restarts > 1 else None
    # After the choice among restarts, the run continues the chosen seed's candidate.
    trainer = make_trainer(selection["seed"] if selection else config["seed"], out)
    if args.resume:
        trainer.resume(args.resume)
        say(f"resuming {config['method']} on {dataset.name} after epoch {trainer.epoch} of {trainer.num_epochs}")
        if os.path.abspath(out) != os.path.abspath(args.resume):
            # The new directory holds the run from the start: an interrupt or a non-finite loss
            # before its first epoch ends then leaves the checkpoint its messages point to.
            trainer.save_checkpoint()
    return trainer, selection


def _announce(config, dataset, method, out, device):
    restarts = config["restarts"]
    world_size = dist.get_world_size() if _distributed() else 1
    return (f"{config['method']} on {dataset.name}: {len(dataset.x)} samples, {config['clusters']} clusters, "
            f"{method.num_epochs()} epochs"
            + (f" (the best of {restarts} seeds by training loss after epoch {config['restart_epochs']})"
               if restarts > 1 else "")
            + f", device {device}" + (f", {world_size} ranks" if world_size > 1 else "")
            + f"; writing to {out}")


def train(args):
    """Steps: the run's config (new, or the resumed run's), its data and method, the state it
    continues, config.json, training (the restarts' choice first, if pending), the results."""
    from .trainers import Trainer
    from .trainers.base import save_tensors, silent, write_json
    from .trainers.restarts import RESTARTS, best_of_restarts, run_checkpoints

    rank = _start_distributed(args)
    say = print if rank == 0 else silent
    config, out = (_resume_config(args), args.out or args.resume) if args.resume else _new_config(args)
    dataset = _load(config["data"], config["format"], config.get("split"))
    method = _build_method(args, config, dataset)

    def make_trainer(seed, directory):
        return Trainer(method, dataset.x, dataset.y, out=directory, device=args.device, seed=seed,
                       amp=args.amp, progress=not args.no_progress, config=config,
                       sync_batchnorm=args.sync_bn)

    trainer, selection = _continued_state(args, config, method, dataset, out, make_trainer, say)
    if rank == 0:
        os.makedirs(out, exist_ok=True)
        write_json(os.path.join(out, CONFIG), config)
        if selection:
            write_json(os.path.join(out, RESTARTS), selection)
    say(_announce(config, dataset, method, out, args.device))
    started = time.perf_counter()
    try:
        if trainer is None:
            seeds = [config["seed"] + i for i in range(config["restarts"])]
            trainer, selection = best_of_restarts(make_trainer, seeds, config["restart_epochs"], out)
        trainer.fit()
    except KeyboardInterrupt:
        # A run resumed into a new out checkpointed there before training, so out holds any state.
        say("\ninterrupted: " + (f"the last checkpoint is in {out}; continue with: fastclust train --resume {out}"
                                  if run_checkpoints(out) else "before the first epoch ended; nothing was saved"),
            file=sys.stderr)
        return 130
    seconds = time.perf_counter() - started
    logits = trainer.predict_logits(dataset.x)  # on every rank: a distributed run gathers them
    if rank != 0:
        return 0
    save_tensors(os.path.join(out, MODEL), {"config": config, "model": trainer.model.state_dict()})
    scores, _ = _write_results(out, trainer, logits, dataset, f"{config['method']} on {dataset.name}")
    trainer.write_metrics(final=scores, train_seconds=seconds, **({"restarts": selection} if selection else {}))
    from .metrics import format_scores
    print(f"final ({seconds:.0f}s): {format_scores(scores) or 'no labels, no scores'}")
    return 0


def _trained_trainer(config, dataset, weights, path, device):
    """A Trainer on ``dataset`` of the run described by ``config`` (read from ``path``), its
    model holding ``weights``; a config or weights that do not fit are a CheckpointError naming
    ``path``."""
    from .trainers import METHODS, Trainer
    from .trainers.base import silent

    if config["method"] not in METHODS:
        raise CheckpointError(f"{path}: names the method {config['method']!r}, not one of {', '.join(METHODS)}")
    method = METHODS[config["method"]](tuple(dataset.x.shape[1:]), config["clusters"] or dataset.num_classes,
                                       config["params"])
    trainer = Trainer(method, dataset.x, dataset.y, device=device, progress=False, log=silent)
    try:
        trainer.model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: its weights do not fit the network of its config ({one_line(err)})") from None
    return trainer


def predict(args):
    from .metrics import format_scores
    from .trainers.base import load_file

    path = os.path.join(args.model, MODEL)
    if not os.path.exists(path):
        raise SystemExit(f"fastclust predict: no trained model at {path} (train writes it at the end)")
    saved = _require_keys(load_file(path), ("config", "model"), path)
    config = _require_keys(saved["config"], MODEL_KEYS, path)
    dataset = _load(args.data, args.format, args.split)
    if list(dataset.x.shape[1:]) != config["input_shape"]:
        raise SystemExit(f"fastclust predict: {dataset.name} has samples of shape {list(dataset.x.shape[1:])} "
                         f"but the model was trained on {config['input_shape']}")
    trainer = _trained_trainer(config, dataset, saved["model"], path, args.device)
    out = args.out or os.path.join(args.model, f"predict-{dataset.name}")
    os.makedirs(out, exist_ok=True)
    scores, assignments = _write_results(out, trainer, trainer.predict_logits(dataset.x), dataset,
                                         f"{config['method']} on {dataset.name}")
    print(f"{len(assignments)} samples assigned to {len(np.unique(assignments))} clusters; written to {out}"
          + (f"\n{format_scores(scores)}" if scores else ""))
    return 0


def _argument(spec, kind=int):
    """An argparse type: the text as a ``kind`` that ``spec`` (fastclust.trainers.params) allows."""
    def parse(text):
        try:
            return spec.parse(kind(text))
        except (ValueError, Refused):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed: it is {spec.text}") from None
    parse.__name__ = kind.__name__
    return parse


def _device(text):
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: fastclust trains on cpu or cuda")
    return text


def parameters_help(methods):
    """What ``fastclust train -h`` says of the method parameters: each method's with its default,
    then what each parameter allows (one line per parameter name and spec)."""
    from .trainers.base import LARGE_IMAGE_SIDE

    lines = ["method parameters (--set KEY=VALUE, or the flags above), checked before anything runs:"]
    for name, method in methods.items():
        lines.append(f"  {name}: " + " ".join(f"{key}={_format_default(value)}"
                                               for key, value in method.defaults.items()))
    lines.append(f"presets, on top of those defaults (large: images of {LARGE_IMAGE_SIDE} px a side or more; "
                 f"small: smaller images and feature vectors):")
    for name, method in methods.items():
        for preset, kinds in method.presets.items():
            shown = [f"{kind}: {_format_settings(settings)}" for kind, settings in kinds.items()]
            same = kinds["small"] == kinds["large"]
            lines.append(f"  {name} {preset}: " + (_format_settings(kinds["small"]) if same else "; ".join(shown)))
    allowed = {}
    for name, method in methods.items():
        for key in method.defaults:
            allowed.setdefault((key, method.specs[key].text), []).append(name)
    lines.append("allowed values:")
    for (key, text), users in sorted(allowed.items()):
        several = sum(k == key for k, _ in allowed) > 1
        lines.append(f"  {key}" + (f" ({', '.join(users)})" if several else "") + f": {text}")
    return "\n".join(lines)


def _format_settings(settings):
    return " ".join(f"{key}={_format_default(value)}" for key, value in settings.items()) or "the defaults"


def _format_default(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def plot(args):
    """Draw the pictures of the run in DIR again: its curves, and from its model (model.pt, or the
    last checkpoint of an interrupted run) the clusters and the confusion matrix."""
    from .plots import pyplot, write_run_plots
    from .trainers.base import CHECKPOINT, METRICS, load_file

    if pyplot() is None:
        raise SystemExit('fastclust plot: drawing needs matplotlib: pip install "fastclust[plot]"')
    config_path = os.path.join(args.dir, CONFIG)
    if not os.path.exists(config_path):
        raise SystemExit(f"fastclust plot: {args.dir} holds no run (no {CONFIG})")
    config = _read_config(config_path)
    metrics_path = os.path.join(args.dir, METRICS)
    history = []
    if os.path.exists(metrics_path):
        try:
            with open(metrics_path) as f:
                history = json.load(f)["history"]
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{metrics_path}: not a fastclust metrics file ({one_line(err)})") from None
    title = f"{config['method']} on {config.get('dataset', config['data'])}"
    weights = next((path for path in (os.path.join(args.dir, MODEL), os.path.join(args.dir, CHECKPOINT))
                    if os.path.exists(path)), None)
    if weights is None:  # a run still choosing among its restarts: the candidates' curves
        written = write_run_plots(args.dir, history, title)
    else:
        dataset = _load(config["data"], config["format"], config["split"])
        state = _require_keys(load_file(weights), ("model",), weights)
        trainer = _trained_trainer(config, dataset, state["model"], weights, args.device)
        logits = trainer.predict_logits(dataset.x)
        written = write_run_plots(args.dir, history, title, dataset.x, dataset.y, logits.argmax(1).numpy(),
                                  logits, trainer.method.num_clusters, dataset.class_names)
    print("wrote " + (", ".join(written) if written else "nothing (no finished epoch yet)"))
    return 0


def build_parser():
    from .data import FORMATS
    from .trainers import METHODS

    parser = argparse.ArgumentParser(prog="fastclust", description="Deep clustering with fused ops.")
    commands = parser.add_subparsers(dest="command", required=True)

    def data_options(p, required):
        p.add_argument("--data", required=required, help="mnist5k, digits, or a path")
        p.add_argument("--format", choices=sorted(FORMATS), help="format of --data (default: inferred)")
        p.add_argument("--split", help="which split to load (default: all, train+test)")
        p.add_argument("--device", default="cpu", type=_device, help="cpu or cuda (default: cpu)")
        p.add_argument("--out", help="output directory")
        p.add_argument("--threads", type=_argument(Int(1)), help="CPU threads for torch (default: torch's choice; "
                                                   "1 on a machine busy with other work)")

    t = commands.add_parser("train", help="train a clustering model", epilog=parameters_help(METHODS),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("method", nargs="?", choices=sorted(METHODS))
    data_options(t, required=False)
    t.add_argument("--preset", choices=PRESETS,
                   help="tuned (default): the settings chosen on small grayscale images, restarts "
                        "included; paper: the paper's hyperparameters. Flags and --set override a preset's "
                        "values (listed below)")
    t.add_argument("--clusters", type=_argument(Int(2)), help="number of clusters (default: number of classes)")
    t.add_argument("--epochs", type=int, help="default: the method's schedule")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=_argument(SEED), help="default 0")
    t.add_argument("--amp", action="store_true", help="bfloat16 mixed precision (autocast; the losses compute in float32)")
    t.add_argument("--restarts", type=_argument(Int(1)), metavar="R",
                   help="train seeds SEED..SEED+R-1 up to --restart-epochs, continue the one with the "
                        "lowest training loss (default 1: no restarts)")
    t.add_argument("--restart-epochs", type=_argument(Int(1)), metavar="E",
                   help="the epoch after which restarts are compared (default: a quarter of the run; "
                        "half for dsec)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="a method parameter")
    t.add_argument("--resume", metavar="DIR", help="continue the run checkpointed in DIR")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: batch normalisation over the global batch (with it, N ranks "
                        "train as one process on the concatenated batch)")
    t.add_argument("--timeout", type=_argument(Float(0, low_open=True), float), default=900,
                   help="under torchrun: seconds any collective may wait for the other ranks (default 900)")
    t.set_defaults(run=train)

    p = commands.add_parser("predict", help="assign clusters to data with a trained model")
    p.add_argument("--model", required=True, help="the --out directory of a finished train")
    data_options(p, required=True)
    p.set_defaults(run=predict)

    d = commands.add_parser("plot", help="draw the pictures of a run again (curves, clusters, confusion)")
    d.add_argument("dir", help="the --out directory of a run, finished or interrupted")
    d.add_argument("--device", default="cpu", type=_device, help="cpu or cuda (default: cpu)")
    d.set_defaults(run=plot, threads=None)
    return parser


def _out_of_memory(err):
    # The CPU allocator reports a failed allocation as a plain RuntimeError.
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


def main(argv=None):
    """Run the command line; a failure caused by what the user gave (a FastclustError: bad
    parameters, data or run files; an OSError: a file that cannot be read or written; a
    collective that timed out because another rank died; memory that ran out) is one line on
    stderr and exit code 1. Anything else is a bug in fastclust and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        if args.threads:
            try:
                torch.set_num_threads(args.threads)
            except RuntimeError as err:
                raise ParameterError(f"--threads {args.threads}: {err}") from None
        return args.run(args)
    except Exception as err:
        if _out_of_memory(err):
            message = f"out of memory ({one_line(err)}); try a smaller --batch-size or network"
        elif isinstance(err, (FastclustError, OSError, dist.DistError)):
            message = str(err)
        else:
            raise
        where = f" on rank {dist.get_rank()}" if _distributed() else ""
        print(f"fastclust: error{where}: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nfastclust: interrupted", file=sys.stderr)
        return 130
    finally:
        if _distributed():
            dist.destroy_process_group()
