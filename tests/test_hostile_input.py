"""Hostile and careless input, one test (or one parametrised family) per kind of fault: every bad
value is refused at the edge with an error naming it, a resumed run proves its checkpoint is its
own, and a file never yields data it does not hold. The command line is run in-process:
``cli.main`` returns the exit code and prints one line for every user-caused failure."""
import _codecs
import json
import math
import os
import pickle
import re
import shutil

import numpy as np
import pytest
import torch

import fastclust
from fastclust import cli
from fastclust.data import DatasetError, load_dataset
from fastclust.errors import CheckpointError, FastclustError, ParameterError
from fastclust.trainers import METHODS, Trainer
from fastclust.trainers.base import CHECKPOINT

TINY = {"widths": (4, 8), "batch_size": 64, "lr_decay": "none"}


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data.x[:128].clone(), data.y[:128].copy()


def run_cli(capsys, *args):
    """(exit code, stderr) of ``fastclust ARGS`` run in this process."""
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err


def one_line_error(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastclust: error: "), err
    assert "Traceback" not in err
    return lines[0]


def tiny_cli_run(out, method="dac", *extra):
    args = ["train", method, "--data", "digits", "--epochs", 1, "--out", out, "--no-progress",
            "--batch-size", 256, "--set", "widths=4,8", "--set", "lr_decay=none", *extra]
    assert cli.main([str(a) for a in args]) == 0


# -- 1. resume proves the checkpoint belongs to the run ----------------------------------------

def trained(tmp_path, name, x, y, seed=0, **params):
    method = METHODS[name]((1, 8, 8), 10, {**TINY, "epochs": 2, **params})
    trainer = Trainer(method, x, y, out=tmp_path, seed=seed, progress=False, log=lambda _: None)
    trainer.fit(until=1)
    return trainer


@pytest.mark.parametrize("name, x_change, seed, params, difference", [
    ("dsec", None, 0, {}, "method 'dac' there, 'dsec' here"),
    ("dac", None, 0, {"eta": 0.02}, "eta 0.009 there, 0.02 here"),
    ("dac", None, 0, {"views": 3}, "views 2 there, 3 here"),
    ("dac", None, 1, {}, "seed 0 there, 1 here"),
    ("dac", "pixels", 0, {}, "the data (fingerprint"),
    ("dac", "labels", 0, {}, "the data (fingerprint"),
])
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, digits, name, x_change, seed, params,
                                                     difference):
    x, y = digits
    trained(tmp_path, "dac", x, y)
    saved = (tmp_path / CHECKPOINT).read_bytes()
    if x_change == "pixels":  # the same shape, one pixel changed
        x = x.clone()
        x[5, 0, 3, 3] += 0.25
    elif x_change == "labels":
        y = np.roll(y, 1)
    method = METHODS[name]((1, 8, 8), 10, {**TINY, "epochs": 2, **params})
    trainer = Trainer(method, x, y, out=tmp_path, seed=seed, progress=False, log=lambda _: None)
    with pytest.raises(CheckpointError, match="was written by another run: .*" + difference.replace("(", r"\(")):
        trainer.resume()
    assert trainer.epoch == 0 and trainer.history == []
    assert (tmp_path / CHECKPOINT).read_bytes() == saved


def test_resume_accepts_its_own_checkpoint_and_more_epochs(tmp_path, digits):
    x, y = digits
    trained(tmp_path, "dac", x, y, seed=3)
    method = METHODS["dac"]((1, 8, 8), 10, {**TINY, "epochs": 3})
    trainer = Trainer(method, x.clone(), y.copy(), out=tmp_path, seed=3, progress=False, log=lambda _: None)
    trainer.resume()
    assert trainer.epoch == 1


def test_cli_refuses_a_copied_checkpoint_and_leaves_the_run_as_it_was(tmp_path, capsys):
    dac, dsec = tmp_path / "dac", tmp_path / "dsec"
    tiny_cli_run(dac, "dac")
    tiny_cli_run(dsec, "dsec")
    shutil.copy(dac / CHECKPOINT, dsec / CHECKPOINT)
    before = {p.name: p.read_bytes() for p in dsec.iterdir() if p.is_file()}
    code, err = run_cli(capsys, "train", "--resume", dsec, "--epochs", 2, "--no-progress")
    assert code == 1
    assert "was written by another run: method 'dac' there, 'dsec' here" in one_line_error(err)
    assert {p.name: p.read_bytes() for p in dsec.iterdir() if p.is_file()} == before


def test_resume_after_the_choice_among_restarts_continues_the_chosen_seed(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "dac", "--data", "digits", "--epochs", 3, "--out", out, "--no-progress",
            "--batch-size", 256, "--set", "widths=4,8", "--set", "lr_decay=none", "--restarts", 2,
            "--restart-epochs", 1]
    assert cli.main([str(a) for a in args]) == 0
    chosen = json.loads((out / "restarts.json").read_text())["seed"]
    assert torch.load(out / CHECKPOINT, weights_only=True)["identity"]["seed"] == chosen
    code, err = run_cli(capsys, "train", "--resume", out, "--epochs", 4, "--no-progress")
    assert code == 0, err


# -- 2. the CIFAR unpickler gives every array its bytes ----------------------------------------

class Reduce:
    """Pickles as ``fn(*args)`` with ``state`` given to its __setstate__: what a crafted file
    holds."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own array reconstruction


def array_state(shape, raw, dtype=np.uint8):
    return (1, shape, np.dtype(dtype), False, raw)


def write_batch(path, data, labels=(0, 1)):
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": list(labels)}, f, protocol=2)


def cifar_dir(tmp_path):
    """A CIFAR-10 directory whose every batch is two real images (the test edits one)."""
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_batch(tmp_path / name, np.zeros((2, 3072), np.uint8))
    return tmp_path


@pytest.mark.parametrize("data, match", [
    # An array the pickle never gives data: numpy would return uninitialised memory.
    (Reduce(RECONSTRUCT, (np.ndarray, (2, 3072), b"B")), "an array whose data the file never gives"),
    (Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), array_state((2, 3072), b"\0" * 100)),
     "needs 6144 bytes, its pickle gives 100"),
    (Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), array_state((2,), [1, "a"], object)),
     "arrays of dtype object are not read"),
    (Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), array_state((2, 3072), "x")),
     "an array without its raw bytes"),
    (Reduce(_codecs.encode, ("x" * 10, "hex")), "refusing to run the codec 'hex'"),
    (Reduce(os.system, ("true",)), "refusing to load posix.system"),
])
def test_crafted_cifar_pickles_are_refused(tmp_path, data, match):
    cifar_dir(tmp_path)
    write_batch(tmp_path / "data_batch_3", data)
    with pytest.raises(DatasetError, match=f"data_batch_3: not a readable CIFAR pickle.*{match}"):
        load_dataset(tmp_path, "cifar10")


def test_a_cifar_pickle_cannot_claim_more_than_it_holds(tmp_path):
    raw = bytes(range(256)) * 12  # one image, 3072 bytes, referenced by 200 arrays
    rows = [Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), array_state((3072,), raw)) for _ in range(200)]
    write_batch(cifar_dir(tmp_path) / "test_batch", rows, labels=[0] * 200)
    size = (tmp_path / "test_batch").stat().st_size
    assert size < 614400 // 10
    with pytest.raises(DatasetError, match=f"test_batch: its arrays claim 614400 bytes, more than the {size}"):
        load_dataset(tmp_path, "cifar10")


@pytest.mark.parametrize("content", [b"", b"\x80\x02garbage", b"\x80\x02]q\x00(K\x01e.", b"\x80\x02(I1\n" * 9])
def test_damaged_cifar_files_are_dataset_errors(tmp_path, content):
    cifar_dir(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(content)
    with pytest.raises(DatasetError, match="data_batch_1"):
        load_dataset(tmp_path, "cifar10")


# -- 3. method parameters: a declared type and range each --------------------------------------

BAD_PARAMETERS = [
    ("dac", "lr", "abc", "a number > 0"), ("dac", "lr", float("nan"), "a number > 0"),
    ("dac", "lr", 0, "a number > 0"), ("dac", "eta", -0.01, "a number > 0"),
    ("dac", "widths", (16, 0), "integers >= 1"), ("dac", "pool", 0, "an integer >= 1"),
    ("dac", "depth", 1.5, "an integer >= 1"), ("dac", "depth", True, "an integer >= 1"),
    ("dac", "views", "2x", "an integer >= 1"), ("dac", "affine", "maybe", "true or false"),
    ("dac", "lr_decay", "step", "one of none, cosine"), ("dac", "hidden", (), "integers >= 1"),
    ("dac", "epochs", -1, "an integer >= 1"), ("dac", "epochs", 0, "an integer >= 1"),
    ("dac", "batch_size", 1, "an integer >= 2"), ("dac", "passes", 0, "an integer >= 1"),
    ("dsec", "u", 1.5, r"a number in \[-1, 1\]"), ("dsec", "e", 0, "an integer >= 1"),
    ("dsec", "p", 0, "a number > 0"), ("aedac", "channels", (8, 0, 8, 8), "integers >= 1"),
    ("aedac", "pretrain_epochs", -1, "an integer >= 0"), ("aedac", "alpha", -1, "a number >= 0"),
    ("pica", "jitter_p", 1.5, r"a number in \[0, 1\]"), ("pica", "affine_p", 2, r"a number in \[0, 1\], or None"),
    ("pica", "crop_scale", (0.9, 0.5), "two numbers a,b with a <= b"),
    ("pica", "crop_scale", (0.0, 0.5), r"two numbers .* each a number in \(0, 1\]"), ("pica", "crop_scale", 0.5, "two numbers"),
    ("pica", "overcluster", 1, "an integer >= 2"), ("pica", "trunk", "vgg", "one of conv, resnet"),
    ("dcsc", "tau_feature", 0.0, "a number > 0"), ("dcsc", "feature_dim", 0, "an integer >= 1"),
    ("dcsc", "epochs", None, None),  # None is a value's absence: the preset's (or the default) holds
]


@pytest.mark.parametrize("name, key, value, allowed", BAD_PARAMETERS)
def test_each_parameter_is_checked_against_its_declaration(name, key, value, allowed):
    if allowed is None:
        assert METHODS[name]((1, 8, 8), 10, {key: value}).params[key] == METHODS[name]((1, 8, 8), 10).params[key]
        return
    with pytest.raises(ParameterError, match=f"{name}: {key}=.* is not allowed: {key} is {allowed}"):
        METHODS[name]((1, 8, 8), 10, {key: value})


@pytest.mark.parametrize("name, params, match", [
    ("dsec", {"u": 0.5, "l": 0.7}, "l=0.7 must lie below u=0.5"),
    ("aedac", {"strides": (1, 2)}, r"one stride per conv of channels=\(8, 16, 32, 64\)"),
    ("aedac", {"alpha": 0, "beta": 0}, "alpha and beta are both 0"),
    ("aedac", {"epochs": 10, "pretrain_epochs": 10}, "epochs=10 ends before the clustering starts"),
])
def test_parameters_allowed_alone_but_not_together(name, params, match):
    with pytest.raises(ParameterError, match=match):
        METHODS[name]((1, 8, 8), 10, params)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_parameter_has_a_declaration_its_default_and_presets_meet(name):
    method = METHODS[name]
    assert set(method.defaults) <= set(method.specs)
    for preset, kinds in method.presets.items():
        for shape, kind in (((1, 8, 8), "small"), ((1, 28, 28), "large"), ((3, 16, 20), "large")):
            settings = {k: v for k, v in kinds[kind].items() if k != "restarts"}
            assert method(shape, 10, preset=preset).params == {**method.defaults, **settings}


def test_bad_parameters_on_the_command_line_are_one_line_and_write_nothing(tmp_path, capsys):
    for args, match in [(["--set", "lr=abc"], "dac: lr='abc' is not allowed: lr is a number > 0"),
                        (["--set", "pool=0"], "pool=0 is not allowed"),
                        (["--batch-size", "1"], "batch_size=1 is not allowed: batch_size is an integer >= 2"),
                        (["--epochs", "-1"], "epochs=-1 is not allowed"),
                        (["--lr", "nan"], "lr=nan is not allowed")]:
        out = tmp_path / "run"
        code, err = run_cli(capsys, "train", "dac", "--data", "digits", "--out", out, "--no-progress", *args)
        assert code == 1 and match in one_line_error(err), (args, err)
        assert not out.exists()
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "eta: a number > 0" in help_text and "crop_scale: two numbers a,b with a <= b" in help_text
    assert "dac: epochs=None batch_size=64 lr=0.001" in help_text


@pytest.mark.parametrize("flag, value", [("--threads", "0"), ("--clusters", "1"), ("--restarts", "0"),
                                         ("--timeout", "0"), ("--timeout", "nan"), ("--device", "gpu0"),
                                         ("--threads", "two"), ("--seed", "-1"), ("--seed", str(2**64))])
def test_bad_command_line_numbers_are_usage_errors(capsys, flag, value):
    with pytest.raises(SystemExit) as exit:
        cli.main(["train", "dac", "--data", "digits", flag, value])
    assert exit.value.code == 2 and flag in capsys.readouterr().err


# -- 4. user-caused failures are one line; bugs keep their traceback ---------------------------

@pytest.mark.parametrize("content", [b"", b"garbage", pickle.dumps({"epoch": 1}, protocol=2),
                                     pickle.dumps(Reduce(os.system, ("true",)), protocol=2)],
                         ids=["empty", "garbage", "a-plain-dict", "code"])
def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path, capsys, content):
    out = tmp_path / "run"
    tiny_cli_run(out)
    (out / CHECKPOINT).write_bytes(content)
    code, err = run_cli(capsys, "train", "--resume", out, "--no-progress")
    line = one_line_error(err)
    assert code == 1 and str(out / CHECKPOINT) in line and "weights_only" not in line


@pytest.mark.parametrize("edit, match", [
    (lambda state: {k: v for k, v in state.items() if k != "identity"},
     r"not a complete fastclust checkpoint \(no identity\)"),
    (lambda state: {**state, "epoch": "1"}, r"damaged \(epoch '1', num_epochs 1 and a history of 1 entries"),
    (lambda state: {**state, "history": 5}, "a history that is a int do not agree"),
    (lambda state: {**state, "identity": []}, "it records no run"),
    (lambda state: {**state, "rng": {}}, r"damaged \(KeyError: 'torch'\)"),
    (lambda state: {**state, "model": {}}, r"damaged \(RuntimeError: Error\(s\) in loading state_dict"),
])
def test_a_checkpoint_edited_by_hand_is_refused(tmp_path, capsys, edit, match):
    out = tmp_path / "run"
    tiny_cli_run(out)
    torch.save(edit(torch.load(out / CHECKPOINT, weights_only=True)), out / CHECKPOINT)
    code, err = run_cli(capsys, "train", "--resume", out, "--no-progress")
    assert code == 1 and re.search(match, one_line_error(err)), err


def test_a_failed_write_names_the_file_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    tiny_cli_run(out)
    saved = (out / CHECKPOINT).read_bytes()
    real_save = torch.save

    def disk_full(obj, path, *args, **kwargs):
        if str(path).endswith(CHECKPOINT + ".tmp"):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    code, err = run_cli(capsys, "train", "--resume", out, "--epochs", 2, "--no-progress")
    assert code == 1 and f"cannot write {out / CHECKPOINT}" in one_line_error(err)
    assert (out / CHECKPOINT).read_bytes() == saved and not (out / (CHECKPOINT + ".tmp")).exists()


def test_running_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    def allocation_fails(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 40000000000000 bytes.")

    monkeypatch.setattr(METHODS["dac"], "loss", allocation_fails)
    code, err = run_cli(capsys, "train", "dac", "--data", "digits", "--epochs", 1, "--out", tmp_path / "run",
                        "--no-progress", "--set", "widths=4,8")
    assert code == 1 and "out of memory" in one_line_error(err) and "--batch-size" in err


def test_a_file_that_is_not_an_array_gets_no_advice_to_unpickle_it(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="x.npy: cannot read the arrays") as error:
        load_dataset(tmp_path / "x.npy")
    assert "allow_pickle" not in str(error.value)


def test_a_bug_in_fastclust_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(METHODS["dac"], "loss", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["train", "dac", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "run"),
                  "--no-progress", "--set", "widths=4,8"])


def test_an_image_folder_decompression_bomb_is_a_dataset_error(tmp_path, monkeypatch):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((64, 64), np.uint8), "L").save(tmp_path / name / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 is then over twice the limit
    with pytest.raises(DatasetError, match=r"big.png: cannot read the image \(Image size"):
        load_dataset(tmp_path, "imagefolder")


# -- 5. a run that would train for no epoch is refused before it starts ------------------------

def test_no_run_without_an_epoch(tmp_path, capsys, digits):
    for epochs in ("0", "-1"):
        code, err = run_cli(capsys, "train", "dac", "--data", "digits", "--epochs", epochs,
                            "--out", tmp_path / "run", "--no-progress")
        assert code == 1 and f"epochs={epochs} is not allowed" in one_line_error(err)
        assert not (tmp_path / "run").exists()
    x, y = digits
    with pytest.raises(ParameterError, match="1 sample"):
        Trainer(METHODS["dac"]((1, 8, 8), 10, TINY), x[:1], y[:1], progress=False)


# -- 6. messages name what the user gave, not internals ----------------------------------------

def test_contrastive_dtype_errors_name_the_argument():
    ints = torch.ones(4, 3, dtype=torch.int64)
    floats = torch.ones(4, 3)
    with pytest.raises(RuntimeError, match="z_a must be a float16, bfloat16, float32 or float64 tensor"):
        fastclust.nt_xent_loss(ints, ints)
    with pytest.raises(RuntimeError, match="p_a must be a float16"):
        fastclust.semantic_contrastive_loss(ints, ints, ints, ints)
    with pytest.raises(RuntimeError, match="q_b must be a float16"):
        fastclust.semantic_contrastive_loss(floats, floats, floats, ints)


@pytest.mark.parametrize("edit, match", [
    (lambda text: text[:len(text) // 2], "not valid JSON"),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "params"}),
     "not a complete fastclust file \\(no params\\)"),
    (lambda text: json.dumps({**json.loads(text), "method": "kmeans"}), "names the method 'kmeans'"),
    (lambda text: json.dumps({**json.loads(text), "seed": "abc"}), "seed 'abc' is not allowed there"),
    (lambda text: json.dumps({**json.loads(text), "restarts": 0}), "restarts 0 is not allowed there"),
    (lambda text: json.dumps({**json.loads(text), "data": 7}), "data 7 is not allowed there: it is a string"),
    (lambda text: json.dumps({**json.loads(text), "params": []}), "its params are not a dict"),
    (lambda text: json.dumps({**json.loads(text), "params": {"pool": "x"}}), "dac: pool='x' is not allowed"),
])
def test_an_edited_config_is_one_line_naming_it(tmp_path, capsys, edit, match):
    out = tmp_path / "run"
    tiny_cli_run(out)
    config = out / "config.json"
    config.write_text(edit(config.read_text()))
    code, err = run_cli(capsys, "train", "--resume", out, "--no-progress")
    line = one_line_error(err)
    assert code == 1 and str(out) in line and re.search(match, line), line


@pytest.mark.parametrize("edit, match", [
    (lambda saved: {"model": saved["model"]}, r"not a complete fastclust file \(no config\)"),
    (lambda saved: {**saved, "config": {k: v for k, v in saved["config"].items() if k != "input_shape"}},
     r"\(no input_shape\)"),
    (lambda saved: {**saved, "model": {}}, "its weights do not fit the network of its config"),
])
def test_an_edited_model_is_one_line_naming_it(tmp_path, capsys, edit, match):
    out = tmp_path / "run"
    tiny_cli_run(out)
    torch.save(edit(torch.load(out / "model.pt", weights_only=True)), out / "model.pt")
    code, err = run_cli(capsys, "predict", "--model", out, "--data", "digits", "--out", tmp_path / "p")
    line = one_line_error(err)
    assert code == 1 and "model.pt" in line and re.search(match, line), line


# -- 7. scalars and sizes that cannot be honoured are refused ----------------------------------

def test_what_cannot_be_honoured_is_refused(tmp_path):
    feats = torch.randn(6, 3)
    p = torch.tensor(2.0, requires_grad=True)
    with pytest.raises(ValueError, match="p is a tensor that requires grad, but the op gives p no gradient"):
        fastclust.dac_loss(feats, 0.9, 0.5, p=p)
    with pytest.raises(ValueError, match="u is a tensor that requires grad"):
        fastclust.dac_loss(feats, torch.tensor(0.9, requires_grad=True), 0.5)
    assert math.isfinite(fastclust.dac_loss(feats, torch.tensor(0.9), 0.5, p=p.detach()).item())
    for offset in (1.5, True, "1"):
        with pytest.raises(TypeError, match=f"self_offset must be None or an integer, got {offset!r}"):
            fastclust.row_logsumexp(feats, feats, self_offset=offset)
    with pytest.raises(ValueError, match=r"self_offset must be None or in \[0, 2\*\*63\)"):
        fastclust.row_logsumexp(feats, feats, self_offset=2**70)
    # A string or a bool converts to a float, and a non-empty string is truthy: neither is taken.
    for call, match in [(lambda: fastclust.dac_loss(feats, "0.9", 0.5), "u must be a number, got str '0.9'"),
                        (lambda: fastclust.dac_loss(feats, 0.9, True), "l must be a number, got bool True"),
                        (lambda: fastclust.dac_loss(feats, 0.9, 0.5, normalized="yes"),
                         "normalized must be True or False, got 'yes'"),
                        (lambda: fastclust.pica_loss(feats.softmax(1), feats.softmax(1), return_parts="no"),
                         "return_parts must be True or False"),
                        (lambda: fastclust.nt_xent_loss(feats, feats, exclude_self=0), "exclude_self must be True"),
                        (lambda: fastclust.dac_loss(feats.tolist(), 0.9, 0.5), "feats must be a tensor, got list"),
                        (lambda: fastclust.cluster_contrastive_loss(feats.numpy(), feats),
                         "c_a must be a tensor, got ndarray")]:
        with pytest.raises(TypeError, match=match):
            call()
    torch.testing.assert_close(fastclust.row_logsumexp(feats, feats, self_offset=np.int64(1)),
                               fastclust.row_logsumexp(feats, feats, self_offset=1))
    for size in (2.5, "8", (8, 0), (8, 8, 8), True):
        with pytest.raises(ParameterError, match="size must be a positive integer or \\(height, width\\)"):
            load_dataset(tmp_path, "imagefolder", size=size)


def test_every_user_error_is_a_fastclust_error():
    # What the command line reports as one line; they stay ValueErrors for existing callers.
    for error in (ParameterError, CheckpointError, DatasetError):
        assert issubclass(error, FastclustError) and issubclass(error, ValueError)
