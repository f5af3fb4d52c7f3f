"""Weak scaling over torch.distributed ranks: each loss over the global batch (forward +
backward, a fixed number of rows per rank) and a DAC training step (DDP, a fixed batch per
rank), with the bytes each rank hands to collectives per call next to the time.

    torchrun --standalone --nproc_per_node=N bench/weak_scaling.py --out bench/weak-N.json
    python bench/weak_scaling.py --report bench/weak-1.json bench/weak-2.json

Launched by torchrun (one process per rank: gloo on CPU, NCCL with --device cuda) rather than
pytest-benchmark, which times one process. Each timed round starts after a barrier; a round's
time is the slowest rank's. Per-rank work of the pairwise and row-wise contrastive losses grows
with the number of ranks by design (local rows x global rows: more pairs and negatives), so
their ideal weak-scaling efficiency is 1/N; the column-statistics losses and a training step can
stay flat. Communication: the losses' collectives are counted by wrapping
torch.distributed's all_reduce / all_gather (payload each rank contributes); a training step
adds DDP's gradient all-reduce, the size of the parameters.
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist

import fastclust
from common import describe
from fastclust.trainers import DAC, Trainer

LOSSES = {  # name: (loss, number of views, feature width, keyword arguments)
    "dac_loss": (fastclust.dac_loss, 1, 10, {"u": 0.9, "l": 0.5}),
    "dsec_loss": (fastclust.dsec_loss, 1, 10, {"u": 0.9, "l": 0.5}),
    "pica_loss": (fastclust.pica_loss, 2, 70, {}),
    "cluster_contrastive_loss": (fastclust.cluster_contrastive_loss, 2, 10, {}),
    "nt_xent_loss": (fastclust.nt_xent_loss, 2, 128, {}),
    "semantic_contrastive_loss": (fastclust.semantic_contrastive_loss, 4, 10, {}),
}

_payload = [0]


def _count(collective):
    def counted(tensor_or_list, *args, **kwargs):
        tensor = tensor_or_list if isinstance(tensor_or_list, torch.Tensor) else args[0]
        _payload[0] += tensor.numel() * tensor.element_size()
        return collective(tensor_or_list, *args, **kwargs)
    return counted


dist.all_reduce = _count(dist.all_reduce)
dist.all_gather = _count(dist.all_gather)  # all_gather(out_list, tensor): the tensor is args[0]


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, rounds):
    """Median over rounds of the slowest rank's time (ms), and the payload of one call (bytes)."""
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        dist.barrier()
        synchronize(device)
        _payload[0] = 0
        started = time.perf_counter()
        fn()
        synchronize(device)
        elapsed = torch.tensor([time.perf_counter() - started], dtype=torch.float64)
        payload = _payload[0]
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        times.append(elapsed.item() * 1e3)
    return statistics.median(times), payload


def loss_case(name, rows, device):
    fn, views, width, kwargs = LOSSES[name]
    g = torch.Generator().manual_seed(dist.get_rank())
    inputs = [torch.randn(rows, width, generator=g) for _ in range(views)]
    if name in ("pica_loss", "cluster_contrastive_loss", "semantic_contrastive_loss"):
        inputs = [t.softmax(1) for t in inputs]
    inputs = [t.to(device).requires_grad_() for t in inputs]

    def step():
        loss = fn(*inputs, **kwargs, global_batch=True)
        torch.autograd.grad(loss, inputs)
    return step


def train_case(rows, steps, device):
    """A DAC trainer's epoch of ``steps`` steps on random 28 x 28 images, ``rows`` per rank."""
    world = dist.get_world_size()
    x = torch.rand(rows * world * steps, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    method = DAC((1, 28, 28), 10, {"batch_size": rows * world, "epochs": 1})
    trainer = Trainer(method, x, device=device, progress=False, log=lambda _: None)
    parameter_bytes = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
    return (lambda: trainer.train_epoch(0)), parameter_bytes


def run(args):
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    torch.set_num_threads(args.threads)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    world = dist.get_world_size()
    results = []
    for name in LOSSES:
        ms, payload = timed(loss_case(name, args.rows, device), device, args.rounds)
        results.append({"case": name, "rows_per_rank": args.rows, "ms": ms, "payload_bytes": payload})
    step, parameter_bytes = train_case(args.train_rows, args.steps, device)
    ms, payload = timed(step, device, max(3, args.rounds // 10))
    results.append({"case": f"dac train step ({args.steps} steps timed together)",
                    "rows_per_rank": args.train_rows, "ms": ms / args.steps,
                    "payload_bytes": payload / args.steps + (parameter_bytes if world > 1 else 0)})
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump({"world_size": world, "threads_per_rank": torch.get_num_threads(),
                       **describe(), "results": results}, f, indent=1)
    dist.destroy_process_group()


def report(paths):
    runs = sorted((json.load(open(p)) for p in paths), key=lambda r: r["world_size"])
    worlds = [r["world_size"] for r in runs]
    print(f"Device: {runs[0]['device']}, torch {runs[0]['torch']}, {runs[0]['threads_per_rank']} "
          f"thread(s) per rank. Median ms per call (slowest rank); payload = bytes each rank hands "
          f"to collectives per call.\n")
    print("| case | rows per rank | " + " | ".join(f"{w} rank(s): ms / payload" for w in worlds)
          + " | efficiency (1 rank / N ranks time) |")
    print("|---|---|" + "---|" * (len(worlds) + 1))
    for i, case in enumerate(runs[0]["results"]):
        cells = [f"{r['results'][i]['ms']:.2f} / {r['results'][i]['payload_bytes'] / 1e3:.1f} kB" for r in runs]
        efficiency = ", ".join(f"{runs[0]['results'][i]['ms'] / r['results'][i]['ms']:.2f}" for r in runs[1:])
        print(f"| {case['case']} | {case['rows_per_rank']} | " + " | ".join(cells) + f" | {efficiency} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=1024, help="rows per rank for the losses")
    parser.add_argument("--train-rows", type=int, default=64, help="images per rank per training step")
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per rank (default 1)")
    parser.add_argument("--out", default="weak-scaling.json")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="print the table of these runs")
    args = parser.parse_args()
    report(args.report) if args.report else run(args)
