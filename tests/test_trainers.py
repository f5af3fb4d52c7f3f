"""Trainers: loss goes down, schedules follow the papers' formulas, exact resume, non-finite stop."""
import json
import os

import numpy as np
import pytest
import torch

from fastclust.augment import Augment, RowGenerator, random_affine
from fastclust.data import load_dataset
from fastclust.nn import ConvAutoencoder, ConvTrunk, Sobel, SobelTrunk, make_trunk
from fastclust.trainers import METHODS, NonFiniteLossError, Trainer
from fastclust.trainers.base import CHECKPOINT
from fastclust.trainers.restarts import best_of_restarts, read_selection
from fastclust.trainers.schedules import (aedac_epochs, aedac_thresholds, dac_epochs, dac_thresholds,
                                          sect_thresholds)
from helpers import needs_cuda

# Small networks so that every method trains in seconds on 2 cores.
TINY = {"dac": {"widths": (8, 16), "depth": 1},
        "dsec": {"widths": (8, 16), "depth": 1},
        "aedac": {"pretrain_epochs": 1},
        "pica": {"widths": (8, 16), "overcluster": 20, "batch_size": 64},
        "dcsc": {"widths": (8, 16), "feature_dim": 32, "batch_size": 64}}


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data.x[:128], data.y[:128]


def make_trainer(name, x, y=None, tmp_path=None, seed=0, device="cpu", amp=False, **params):
    method = METHODS[name](tuple(x.shape[1:]), 10, {"batch_size": 64, **TINY[name], **params})
    return Trainer(method, x, y, out=tmp_path, seed=seed, device=device, amp=amp, progress=False,
                   log=lambda _: None)


# (device, amp): mixed precision is bfloat16 autocast, in which the fastclust ops compute in
# float32.
PRECISIONS = [("cpu", False), ("cpu", True), pytest.param("cuda", False, marks=needs_cuda),
              pytest.param("cuda", True, marks=needs_cuda)]


@pytest.mark.parametrize("device, amp", PRECISIONS)
@pytest.mark.parametrize("name", list(METHODS))
def test_loss_goes_down_on_a_fixed_batch(name, device, amp, digits):
    x, _ = digits
    x = x[:64].to(device)
    trainer = make_trainer(name, x, device=device, amp=amp, lr=1e-2)
    epoch = 1 if name == "aedac" else 0  # aedac: past pretraining, reconstruction + DAC
    losses = []
    for step in range(10):
        # Same augmentation draw every step: the batch is fixed, only the weights move.
        generator = RowGenerator(torch.Generator(device=device).manual_seed(5))
        trainer.model.train()
        with trainer._autocast():
            loss, parts = trainer.method.loss(trainer.model, x, epoch, step % 2 * 2, generator)
        assert torch.isfinite(loss) and all(np.isfinite(float(v)) for v in parts.values())
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
        losses.append(loss.item())
    # PICA's loss has a high floor (log(1 + (k - 1) / e) for cosines in [0, 1]): a 2% drop in
    # 10 steps is real progress for it; a loss that does not train stays at 100%.
    assert np.mean(losses[-3:]) < (0.98 if name == "pica" else 0.97) * np.mean(losses[:3]), losses


@pytest.mark.parametrize("name", list(METHODS))
def test_cpu_trainer_steps_in_channels_last_as_in_the_default_layout(name, digits):
    x, _ = digits
    steps = []
    for layout in (torch.channels_last, torch.contiguous_format):
        trainer = make_trainer(name, x[:64])  # seeded: the same initial weights each time
        convs = [p for p in trainer.model.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        trainer.model.to(memory_format=layout)
        trainer.model.train()
        loss, _ = trainer.method.loss(trainer.model, x[:64], 1 if name == "aedac" else 0, 0,
                                      RowGenerator(torch.Generator().manual_seed(5)))
        loss.backward()
        steps.append((loss.detach(), [p.grad for p in trainer.model.parameters() if p.grad is not None]))
    (loss_last, grads_last), (loss_default, grads_default) = steps
    torch.testing.assert_close(loss_last, loss_default, rtol=1e-5, atol=1e-6)
    assert len(grads_last) == len(grads_default) > 0
    for last, default in zip(grads_last, grads_default):
        torch.testing.assert_close(last, default, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(METHODS))
def test_one_epoch_end_to_end(name, digits, tmp_path):
    x, y = digits
    trainer = make_trainer(name, x, y, tmp_path, epochs=2)
    assignments = trainer.fit()
    assert assignments.shape == (128,) and assignments.dtype == np.int64
    assert 0 <= assignments.min() and assignments.max() < 10
    history = json.load(open(tmp_path / "metrics.json"))["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "acc", "nmi", "ari"} <= set(history[-1])
    assert os.path.exists(tmp_path / CHECKPOINT)


# (thresholds, epochs, eta, l0, epochs of the schedule): DAC's l > u first at lambda > 0.45
# (epochs 0..50 run); AE+DAC's at xi > 0.409 (epoch 82, xi = 0.41, is the first past it).
@pytest.mark.parametrize("thresholds,epochs,eta,l0,expected", [
    (dac_thresholds, dac_epochs, 0.009, 0.455, 51), (aedac_thresholds, aedac_epochs, 0.005, 0.5, 82)])
def test_adaptive_schedules_step_by_step(thresholds, epochs, eta, l0, expected):
    for epoch in range(90):
        lam = eta * epoch
        assert thresholds(epoch) == pytest.approx((0.95 - lam, l0 + 0.1 * lam))
    assert epochs() == expected
    u, l = thresholds(expected - 1)
    assert l <= u
    u, l = thresholds(expected)
    assert l > u


@pytest.mark.parametrize("eta", [0.001, 0.0025, 0.003, 0.005, 0.0075, 0.009, 0.01, 0.05])
@pytest.mark.parametrize("thresholds,epochs", [(dac_thresholds, dac_epochs), (aedac_thresholds, aedac_epochs)])
def test_adaptive_schedules_keep_l_below_u_to_the_last_epoch(thresholds, epochs, eta):
    # DAC at eta = 0.005 reaches u = l = 0.5 at its last epoch (90), where float error once put
    # l above u and the loss rejected the thresholds.
    last = epochs(eta) - 1
    u, l = thresholds(last, eta)
    assert l <= u
    u, l = thresholds(last + 1, eta)
    assert l > u


def test_aedac_pretrains_then_follows_its_schedule():
    method = METHODS["aedac"]((1, 8, 8), 10, {"pretrain_epochs": 3})
    assert method.num_epochs() == 3 + 82
    assert method.epoch_settings(2) == {"phase": "pretrain"}
    assert method.epoch_settings(3) == pytest.approx({"u": 0.95, "l": 0.5})


def test_sect_schedule_step_by_step():
    u, l, eta = 0.99, 0.8, (0.99 - 0.8) / 100
    for epoch in range(51):
        assert sect_thresholds(epoch) == pytest.approx((u, l))
        u, l = u - eta, l + eta
    assert sect_thresholds(50) == pytest.approx((0.895, 0.895))
    method = METHODS["dsec"]((1, 8, 8), 10, {"e": 20})
    assert method.num_epochs() == 20
    assert method.epoch_settings(10) == pytest.approx({"u": 0.99 - 10 * 0.19 / 40, "l": 0.8 + 10 * 0.19 / 40})


@pytest.mark.parametrize("name", ["dac", "pica"])
def test_resume_equals_uninterrupted(name, digits, tmp_path, monkeypatch):
    x, y = digits
    straight = make_trainer(name, x, y, tmp_path / "straight", epochs=3)
    expected = straight.fit()

    interrupted = make_trainer(name, x, y, tmp_path / "cut", epochs=3)
    real_loss = interrupted.method.loss

    def interrupt_in_epoch_3(model, batch, epoch, step, generator):
        if epoch == 2 and step == 1:
            raise KeyboardInterrupt
        return real_loss(model, batch, epoch, step, generator)

    monkeypatch.setattr(interrupted.method, "loss", interrupt_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)["epoch"] == 2

    resumed = make_trainer(name, x, y, tmp_path / "cut", epochs=3, seed=0)
    resumed.resume()
    assert resumed.epoch == 2
    np.testing.assert_array_equal(resumed.fit(), expected)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]


def test_restarts_continue_the_lowest_loss_seed_as_its_own_uninterrupted_run(digits, tmp_path, monkeypatch):
    x, y = digits
    straight = {seed: make_trainer("dac", x, y, seed=seed, epochs=3) for seed in range(3)}
    for trainer in straight.values():
        trainer.fit()
    epoch_2_loss = {seed: trainer.history[1]["loss"] for seed, trainer in straight.items()}
    best, middle, worst = sorted(epoch_2_loss, key=epoch_2_loss.get)
    seeds = [worst, best, middle]  # the choice is neither the first nor the last candidate
    out = tmp_path / "run"

    def build(seed, directory):
        return make_trainer("dac", x, y, directory, seed=seed, epochs=3)

    # Interrupted in the last candidate, then resumed: the finished candidates are not retrained.
    real_fit, fits = Trainer.fit, []

    def interrupt_third_candidate(self, until=None):
        fits.append(self.seed)
        if len(fits) == 3:
            raise KeyboardInterrupt
        return real_fit(self, until)

    monkeypatch.setattr(Trainer, "fit", interrupt_third_candidate)
    with pytest.raises(KeyboardInterrupt):
        best_of_restarts(build, seeds, 2, out)
    monkeypatch.setattr(Trainer, "fit", real_fit)
    assert not (out / CHECKPOINT).exists()
    assert torch.load(out / "restarts" / f"seed-{best}" / CHECKPOINT, weights_only=True)["epoch"] == 2

    trainer, selection = best_of_restarts(build, seeds, 2, out)
    assert selection == read_selection(out)
    assert selection["seed"] == best and selection["select_epochs"] == 2
    assert selection["candidates"] == [{"seed": s, "loss": epoch_2_loss[s]} for s in seeds]
    assert torch.load(out / CHECKPOINT, weights_only=True)["epoch"] == 2
    np.testing.assert_array_equal(trainer.fit(), straight[best].predict())
    for key, value in straight[best].model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    assert trainer.history == [{**h, "seconds": mine["seconds"]}
                               for h, mine in zip(straight[best].history, trainer.history)]


def test_restarts_reject_a_choice_outside_the_run(digits):
    x, y = digits

    def build(seed, directory):
        return make_trainer("dac", x, y, directory, seed=seed, epochs=2)

    with pytest.raises(ValueError, match="select_epochs=2"):
        best_of_restarts(build, [0, 1], 2)
    with pytest.raises(ValueError, match="two distinct seeds"):
        best_of_restarts(build, [3, 3], 1)


@pytest.mark.parametrize("name, params, expected", [
    ("dac", {"epochs": 20}, 5), ("dac", {"epochs": 2}, 1), ("dac", {}, 13), ("dsec", {"epochs": 20}, 10),
    ("dsec", {}, 25), ("pica", {"epochs": 3}, 1),
    # AE+DAC: a quarter of the clustering epochs after the pretraining, 10 + ceil(30 / 4), 50 + ceil(82 / 4)
    ("aedac", {"epochs": 40, "pretrain_epochs": 10}, 18), ("aedac", {}, 71)])
def test_restarts_compare_after_a_quarter_of_the_clustering_or_half_for_dsec(name, params, expected):
    method = METHODS[name]((1, 8, 8), 10, params)
    assert method.restart_epochs() == expected


def test_restarts_choose_at_the_methods_default_epoch_unless_told(digits):
    x, y = digits
    trainer, selection = best_of_restarts(lambda seed, _: make_trainer("dsec", x, y, None, seed=seed, epochs=4),
                                          [0, 1])
    assert selection["select_epochs"] == 2 and trainer.epoch == 2 and len(trainer.history) == 2


def test_parameters_take_the_type_of_their_defaults():
    params = METHODS["dac"]((1, 8, 8), 10, {"widths": 16, "affine": "false", "select_clean": "True",
                                            "hidden": [32, 16]}).params
    assert params["widths"] == (16,) and params["affine"] is False and params["select_clean"] is True
    assert list(params["hidden"]) == [32, 16]


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(digits, tmp_path, monkeypatch):
    x, y = digits
    trainer = make_trainer("dac", x, y, tmp_path, epochs=3)
    real_loss = trainer.method.loss

    def nan_in_epoch_2(model, batch, epoch, step, generator):
        loss, parts = real_loss(model, batch, epoch, step, generator)
        return (loss * float("nan") if epoch == 1 else loss), parts

    monkeypatch.setattr(trainer.method, "loss", nan_in_epoch_2)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, step 1.*epoch 1"):
        trainer.fit()
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert saved["epoch"] == 1 and len(saved["history"]) == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_unknown_parameter_is_rejected():
    with pytest.raises(ValueError, match="unknown parameter.*'tau'"):
        METHODS["dac"]((1, 8, 8), 10, {"tau": 0.5})


def test_feature_vectors_train_dsec_with_an_mlp(tmp_path):
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 20, generator=g) * 4
    y = np.repeat(np.arange(3), 40)
    x = centers[y] + torch.randn(120, 20, generator=g)
    method = METHODS["dsec"]((20,), 3, {"epochs": 2, "batch_size": 60, "hidden": (32, 16)})
    trainer = Trainer(method, x, y, progress=False, log=lambda _: None)
    assert trainer.fit().shape == (120,)
    with pytest.raises(ValueError, match="use dsec for feature vectors"):
        METHODS["pica"]((20,), 3)


def test_augmentations_are_seeded_and_keep_range(digits):
    x = torch.rand(16, 3, 12, 12)
    augment = Augment(crop_scale=(0.3, 1.0), flip_p=0.5, blur_p=0.5)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    # The identity affine warp (no rotation, shift or zoom) returns the images.
    same = random_affine(digits[0][:4], torch.Generator(), degrees=0, translate=0, scale=(1, 1))
    torch.testing.assert_close(same, digits[0][:4], atol=1e-5, rtol=0)


def test_batches_cover_the_data_once_per_pass(digits):
    x, _ = digits
    trainer = make_trainer("dac", x[:100], passes=2, batch_size=32)
    batches = trainer._batches()
    # 100 = 3 x 32 + 4: the short last batch of each pass is dropped.
    assert len(batches) == 6 and all(len(b) == 32 for b in batches)
    for first in (0, 3):
        seen = torch.cat(batches[first:first + 3])
        assert len(torch.unique(seen)) == 96
    assert not torch.equal(torch.cat(batches[:3]), torch.cat(batches[3:]))


def test_conv_trunk_pool_grid_keeps_where_a_stroke_is():
    torch.manual_seed(0)
    # Freshly initialised BN in eval mode is the identity and the convs have no bias, so a zero
    # background stays zero and a shift by 4 and 8 px (multiples of the two 2x2 pools) only moves
    # the feature maps; the stroke stays 7 px (the trunk's reach) away from the borders.
    x = torch.zeros(1, 1, 28, 28)
    x[..., 8:12, 9:11] = 1
    shifted = torch.roll(x, shifts=(4, 8), dims=(2, 3))
    gap, grid = ConvTrunk(1, pool=1).eval(), ConvTrunk(1, pool=3).eval()
    assert grid.out_dim == 64 * 9 and grid(x).shape == (1, 64 * 9)
    with torch.no_grad():
        torch.testing.assert_close(gap(x), gap(shifted))
        assert not torch.allclose(grid(x), grid(shifted), atol=1e-3)


def test_cosine_learning_rate_is_a_function_of_the_epoch(digits, tmp_path):
    method = METHODS["dac"]((1, 8, 8), 10, {"epochs": 4, "lr": 0.1, "lr_decay": "cosine"})
    expected = [0.1 * 0.5 * (1 + np.cos(np.pi * epoch / 4)) for epoch in range(4)]
    assert [method.learning_rate(epoch) for epoch in range(4)] == pytest.approx(expected)
    assert expected[2] == pytest.approx(0.05)
    constant = METHODS["dac"]((1, 8, 8), 10, {"epochs": 4, "lr": 0.1, "lr_decay": "none"})
    assert [constant.learning_rate(epoch) for epoch in range(4)] == [0.1] * 4
    # The trainer sets each epoch's rate before its first step.
    x, y = digits
    trainer = make_trainer("dac", x, y, tmp_path, epochs=3, lr=0.1, lr_decay="cosine")
    trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 * (1 + np.cos(2 * np.pi / 3)))


def test_augment_warps_the_chosen_fraction_first(digits):
    x = digits[0][:16]
    only_warp = dict(crop_scale=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
    warped = Augment(affine_p=1.0, **only_warp)(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(warped, random_affine(x, torch.Generator().manual_seed(3)), atol=0, rtol=0)
    assert torch.equal(Augment(affine_p=0.0, **only_warp)(x, torch.Generator().manual_seed(3)), x)
    half = Augment(affine_p=0.5, **only_warp)(x, torch.Generator().manual_seed(3))
    unchanged = (half == x).flatten(1).all(1)
    assert 0 < unchanged.sum() < len(x)
    torch.testing.assert_close(half[~unchanged], warped[~unchanged], atol=0, rtol=0)


def test_autoencoder_mirrors_its_strides():
    model = ConvAutoencoder((1, 28, 28), 10)
    assert model.code_shape == (64, 2, 2)  # the paper's 28 -> 14 -> 7 -> 4 -> 2, a code of 256
    for shape, strides, code in [((1, 28, 28), (1, 1, 2, 2), (64, 7, 7)), ((3, 8, 8), (2, 2, 2, 2), (64, 1, 1)),
                                 ((1, 9, 9), (1, 2, 1, 2), (64, 3, 3))]:
        model = ConvAutoencoder(shape, 10, strides=strides)
        assert model.code_shape == code
        assert [layer[0].stride for layer in model.encoder] == [(s, s) for s in strides]
        x = torch.rand(3, *shape)
        logits, reconstruction = model(x)
        assert logits.shape == (3, 10) and reconstruction.shape == x.shape
        torch.testing.assert_close(model(x, reconstruct=False), (model(x)[0], None), atol=0, rtol=0)
    with pytest.raises(ValueError, match="strides must be 4 positive integers"):
        ConvAutoencoder((1, 28, 28), 10, strides=(2, 2))


def test_sobel_input_feeds_any_trunk_the_image_edges():
    for kind in ("conv", "resnet"):
        trunk = make_trunk((3, 12, 12), kind=kind, widths=(4, 8), depth=1, sobel=True)
        assert isinstance(trunk, SobelTrunk) and trunk.out_dim == 8
        assert next(trunk.trunk.parameters()).shape[1] == 2  # the first conv sees 2 edge maps
    # A vertical step from 0 to 1 between columns 2 and 3: the horizontal Sobel filter
    # (correlation with [[1, 0, -1], [2, 0, -2], [1, 0, -1]]) gives -4 on both sides of the step
    # away from the top and bottom rows, the vertical one 0 there.
    image = torch.zeros(1, 3, 6, 6)
    image[..., 3:] = 1
    edges = Sobel()(image)
    assert edges.shape == (1, 2, 6, 6)
    torch.testing.assert_close(edges[0, 0, 1:5, 2:4], torch.full((4, 2), -4.0))
    torch.testing.assert_close(edges[0, 1, 1:5, 1:5], torch.zeros(4, 4))


def test_aedac_learns_warped_views_on_pairs_selected_on_the_clean_images(digits, monkeypatch):
    import fastclust.trainers.aedac as aedac
    x = digits[0][:16]
    method = METHODS["aedac"]((1, 8, 8), 10, {"pretrain_epochs": 1, "views": 3})
    model = method.build_model().train()
    calls = []
    real_dac_loss = aedac.fastclust.dac_loss

    def spy(feats, u, l, **kwargs):
        calls.append((feats, kwargs["select"]))
        return real_dac_loss(feats, u, l, **kwargs)

    monkeypatch.setattr(aedac.fastclust, "dac_loss", spy)
    method.loss(model, x, 0, 0, RowGenerator(torch.Generator().manual_seed(0)))
    assert not calls  # pretraining: reconstruction alone
    loss, parts = method.loss(model, x, 1, 0, RowGenerator(torch.Generator().manual_seed(0)))
    (feats, select), = calls
    assert feats.shape == (48, 10) and feats.requires_grad and not select.requires_grad
    # The selector rows are the clean images' outputs, one copy per view, from a batch of their
    # own (batch-norm statistics over the clean images alone); the learnt rows are the warped
    # copies', in theirs.
    warped = random_affine(x.repeat(3, 1, 1, 1), RowGenerator(torch.Generator().manual_seed(0)).repeated(3))
    torch.testing.assert_close(select, model(x)[0].detach().repeat(3, 1))
    torch.testing.assert_close(feats.detach(), model(warped)[0].detach())
    assert parts["pos"] + parts["neg"] <= 48 * 48


def test_resume_keeps_the_learning_rate_decay_horizon(digits, tmp_path):
    x, y = digits
    make_trainer("dac", x, y, tmp_path, epochs=2, lr_decay="cosine").fit()
    longer = make_trainer("dac", x, y, tmp_path, epochs=3, lr_decay="cosine")
    with pytest.raises(ValueError, match="decays its learning rate over 2 epochs; continuing it over 3"):
        longer.resume()
    same = make_trainer("dac", x, y, tmp_path, epochs=2, lr_decay="cosine")
    same.resume()
    assert same.epoch == 2
    constant = make_trainer("dac", x, y, tmp_path / "constant", epochs=2, lr_decay="none")
    constant.fit()
    extended = make_trainer("dac", x, y, tmp_path / "constant", epochs=3, lr_decay="none")
    extended.resume()
    assert extended.fit().shape == (128,) and extended.epoch == 3
