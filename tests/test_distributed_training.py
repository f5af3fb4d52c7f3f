"""Data-parallel training: N ranks train as one process on the concatenated batch.

2 CPU processes, gloo over a file rendezvous, float64 so that the comparison with one process
is tight; and ``torchrun -m fastclust train`` end to end.
"""
import datetime
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastclust.augment import Augment, RowGenerator, random_affine
from fastclust.data import load_dataset
from fastclust.nn import GlobalBatchNorm, convert_global_batchnorm
from fastclust.trainers import METHODS, Trainer
from helpers import assert_survivors_raise, leave_process_group, record_outcome

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORLD = 2
SAMPLES = 200
# batch 63: the global batch splits unevenly (32 + 31 rows), and the last short batch is dropped.
# Constant learning rates: the test extends a 1-epoch run to 2 epochs, which a decaying schedule
# refuses (its horizon would change; tests/test_trainers.py covers that refusal).
_CONSTANT = {"lr": 1e-3, "lr_decay": "none"}
PARAMS = {"dac": {"widths": (8, 16), "depth": 1, "batch_size": 63, **_CONSTANT},
          "dsec": {"widths": (8, 16), "depth": 1, "batch_size": 63, **_CONSTANT},
          "aedac": {"pretrain_epochs": 0, "channels": (4, 8, 8, 8), "batch_size": 63, **_CONSTANT},
          "pica": {"widths": (8, 16), "overcluster": 20, "batch_size": 63, **_CONSTANT},
          "dcsc": {"widths": (8, 16), "feature_dim": 16, "batch_size": 63, "lr": 1e-3}}


def _init(rank, init_file, seconds=60):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=seconds))


def _digits():
    data = load_dataset("digits")
    return data.x[:SAMPLES].double(), data.y[:SAMPLES]


def _trainer(name, epochs, out=None):
    torch.set_default_dtype(torch.float64)  # the networks' parameters
    x, y = _digits()
    method = METHODS[name](tuple(x.shape[1:]), 10, {**PARAMS[name], "epochs": epochs})
    return Trainer(method, x, y, out=out, seed=3, progress=False, log=lambda _: None, sync_batchnorm=True)


def _result(trainer, assignments):
    return {"model": {k: v.clone() for k, v in trainer.model.state_dict().items()},
            "assignments": torch.as_tensor(assignments), "logits": trainer.predict_logits(trainer.x),
            "losses": [entry["loss"] for entry in trainer.history]}


def _train_worker(rank, init_file, out_dir, name):
    _init(rank, init_file)
    torch.set_num_threads(1)
    trainer = _trainer(name, epochs=1, out=out_dir)
    assert trainer.world_size == WORLD and isinstance(trainer.network, torch.nn.parallel.DistributedDataParallel)
    assignments = trainer.fit()
    torch.save(_result(trainer, assignments), os.path.join(out_dir, f"rank{rank}.pt"))
    leave_process_group()


def _assert_same_run(got, expected):
    assert got["model"].keys() == expected["model"].keys()
    for key, value in expected["model"].items():
        # float64 rounding differs (other summation orders); Adam divides by the gradient's
        # magnitude, which turns it into ~1e-9 relative parameter differences where a gradient is
        # zero up to rounding (a bias in front of batch normalisation). A different split or
        # augmentation changes parameters by ~1e-3.
        torch.testing.assert_close(got["model"][key], value, rtol=1e-7, atol=1e-9, msg=lambda m: f"{key}: {m}")
    torch.testing.assert_close(got["assignments"], expected["assignments"], rtol=0, atol=0)
    torch.testing.assert_close(got["logits"], expected["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["losses"], expected["losses"], rtol=1e-7)  # aedac: float32 MSE


@pytest.mark.parametrize("name", list(PARAMS))
def test_two_ranks_train_as_one_process_and_resume_on_one(name, tmp_path):
    default_dtype = torch.get_default_dtype()
    try:
        single = _trainer(name, epochs=1)
        first_epoch = _result(single, single.fit())
        single.method.params["epochs"] = 2
        second_epoch = _result(single, single.fit())

        mp.spawn(_train_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path), name),
                 nprocs=WORLD, join=True)
        for rank in range(WORLD):
            _assert_same_run(torch.load(tmp_path / f"rank{rank}.pt"), first_epoch)

        # The 2-rank checkpoint continues on one process exactly as the 1-process run did.
        resumed = _trainer(name, epochs=2, out=str(tmp_path))
        resumed.resume()
        assert resumed.epoch == 1
        _assert_same_run(_result(resumed, resumed.fit()), second_epoch)
    finally:
        torch.set_default_dtype(default_dtype)


def _batchnorm_worker(rank, init_file, out_dir, sizes):
    _init(rank, init_file)
    results = {}
    for shape in [(sum(sizes), 3), (sum(sizes), 3, 4, 5)]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 + 1
        start = sum(sizes[:rank])
        local = x[start:start + sizes[rank]].clone().requires_grad_()
        bn = convert_global_batchnorm(torch.nn.BatchNorm1d(3) if len(shape) == 2 else torch.nn.BatchNorm2d(3))
        bn = bn.double()
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        out = bn(local)
        weights = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).view(x.shape)[start:start + sizes[rank]]
        grad_x, grad_w, grad_b = torch.autograd.grad((out * weights).sum(), [local, bn.weight, bn.bias])
        results[len(shape)] = (out.detach(), grad_x, grad_w, grad_b, bn.running_mean.clone(),
                               bn.running_var.clone(), type(bn).__name__)
    torch.save(results, os.path.join(out_dir, f"bn{rank}.pt"))
    leave_process_group()


def _small_batch_worker(rank, init_file, out_dir):
    _init(rank, init_file)
    x, y = _digits()
    outcomes = []
    for batch_size, sync in ((3, False), (3, True), (1, True)):
        method = METHODS["dac"]((1, 8, 8), 10, {**PARAMS["dac"], "batch_size": max(batch_size, 2)})
        method.params["batch_size"] = batch_size  # below the declared range, as a rank count can make it
        try:
            Trainer(method, x, y, progress=False, log=lambda _: None, sync_batchnorm=sync)
            outcomes.append("built")
        except ValueError as err:
            outcomes.append(str(err))
    with open(os.path.join(out_dir, f"small{rank}.txt"), "w") as f:
        f.write("\n".join(outcomes))
    leave_process_group()


def test_a_batch_too_small_for_the_ranks_is_refused(tmp_path):
    mp.spawn(_small_batch_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD)
    for rank in range(WORLD):
        without_sync, with_sync, one = (tmp_path / f"small{rank}.txt").read_text().split("\n")
        assert "batch_size 3 (of 200 samples) is the global batch, split over 2 ranks: it needs at least 2 " \
               "sample(s) per rank (or --sync-bn)" in without_sync
        assert with_sync == "built"  # batch norm over the global batch: 2 + 1 rows are enough
        assert "it needs at least 1 sample(s) per rank" in one


def test_global_batchnorm_equals_batchnorm_on_the_concatenated_batch(tmp_path):
    sizes = [3, 6]
    mp.spawn(_batchnorm_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path), sizes), nprocs=WORLD)
    per_rank = [torch.load(tmp_path / f"bn{rank}.pt") for rank in range(WORLD)]
    for dims in (2, 4):
        x = torch.randn(sum(sizes), 3, *([4, 5] if dims == 4 else []), generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64) * 2 + 1
        x.requires_grad_()
        bn = (torch.nn.BatchNorm1d(3) if dims == 2 else torch.nn.BatchNorm2d(3)).double()
        with torch.no_grad():
            bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
            bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        out = bn(x)
        weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(x.shape)
        grad_x, grad_w, grad_b = torch.autograd.grad((out * weights).sum(), [x, bn.weight, bn.bias])
        for rank, results in enumerate(per_rank):
            got_out, got_grad_x, got_grad_w, got_grad_b, running_mean, running_var, kind = results[dims]
            assert kind == "GlobalBatchNorm"
            rows = slice(sum(sizes[:rank]), sum(sizes[:rank + 1]))
            torch.testing.assert_close(got_out, out.detach()[rows], rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(got_grad_x, grad_x[rows], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(running_mean, bn.running_mean, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(running_var, bn.running_var, rtol=1e-12, atol=1e-14)
        # Each rank holds the gradient of its own rows' terms; DDP's average times the world size
        # (the losses' convention, fastclust.distributed) is their sum.
        torch.testing.assert_close(sum(r[dims][2] for r in per_rank), grad_w, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sum(r[dims][3] for r in per_rank), grad_b, rtol=1e-10, atol=1e-12)


def test_global_batchnorm_outside_a_distributed_run_is_batchnorm():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    x = torch.randn(8, 4)
    plain(x)  # moves the running statistics away from their initial values
    converted = convert_global_batchnorm(torch.nn.Sequential(*[m for m in plain]))
    assert isinstance(converted[1], GlobalBatchNorm)
    torch.testing.assert_close(converted[1].running_mean, plain[1].running_mean)
    torch.testing.assert_close(converted(x), torch.nn.functional.batch_norm(
        plain[0](x), None, None, plain[1].weight, plain[1].bias, training=True))
    with pytest.raises(ValueError, match="expects"):
        converted[1](torch.randn(4))


def test_row_generator_draws_what_one_process_draws():
    x = torch.rand(10, 3, 12, 12)
    augment = Augment(crop_scale=(0.3, 1.0), flip_p=0.5, blur_p=0.5)
    whole = augment(x, RowGenerator(torch.Generator().manual_seed(4)))
    assert torch.equal(whole, augment(x, torch.Generator().manual_seed(4)))
    shares = [(0, 4), (4, 10)]
    parts = [augment(x[a:b], RowGenerator(torch.Generator().manual_seed(4), torch.arange(a, b), 10))
             for a, b in shares]
    torch.testing.assert_close(torch.cat(parts), whole)
    # Repeated batches (DAC's views, PICA's repeats): rank r's copies are its rows of each copy.
    whole = random_affine(x.repeat(3, 1, 1, 1), RowGenerator(torch.Generator().manual_seed(5)).repeated(3))
    for a, b in shares:
        share = RowGenerator(torch.Generator().manual_seed(5), torch.arange(a, b), 10).repeated(3)
        got = random_affine(x[a:b].repeat(3, 1, 1, 1), share)
        torch.testing.assert_close(got, torch.cat([whole[a + 10 * c:b + 10 * c] for c in range(3)]))
    with pytest.raises(ValueError, match="RowGenerator for 4 rows"):
        augment(x, RowGenerator(torch.Generator(), torch.arange(4), 10))


def _dying_worker(rank, init_file, out_dir):
    _init(rank, init_file, seconds=20)
    trainer = _trainer("dac", epochs=1)
    loss = trainer.method.loss

    def loss_then_die(model, x, epoch, step, generator):
        if rank == 1 and step == 1:
            os._exit(0)  # dies between two collectives
        return loss(model, x, epoch, step, generator)

    trainer.method.loss = loss_then_die
    record_outcome(trainer.fit, out_dir)


def test_a_dying_rank_stops_the_others_with_an_error(tmp_path):
    assert_survivors_raise(_dying_worker, WORLD, tmp_path)


def test_torchrun_trains_on_two_ranks_with_restarts(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
         "-m", "fastclust", "train", "dac", "--data", "digits", "--epochs", "2", "--restarts", "2",
         "--out", str(out), "--set", "widths=8,16", "--set", "depth=1", "--batch-size", "256",
         "--no-progress", "--sync-bn"],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    # Rank 0 alone reports and writes.
    assert result.stdout.count("final") == 1 and "2 ranks" in result.stdout
    assert result.stdout.count("continuing seed") == 1
    assert np.load(out / "assignments.npy").shape == (1797,)
    for name in ("model.pt", "checkpoint.pt", "metrics.json", "config.json", "restarts.json",
                 "restarts/seed-0/checkpoint.pt", "restarts/seed-1/checkpoint.pt"):
        assert (out / name).exists(), name
