"""The fastclust command line, end to end on digits through a subprocess."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastclust import cli
from fastclust.trainers import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fastclust(*args, check=True):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "fastclust", *map(str, args)], capture_output=True,
                            text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_train_resume_and_predict_on_digits(tmp_path):
    out = tmp_path / "run"
    # A constant learning rate: the run can then be extended (a decay's horizon cannot change).
    tiny = ["--set", "widths=8,16", "--set", "depth=1", "--set", "lr_decay=none", "--batch-size", "256",
            "--no-progress", "--threads", "1"]
    result = fastclust("train", "dac", "--data", "digits", "--epochs", "2", "--out", out, *tiny)
    assert "epoch 2/2" in result.stdout and "final" in result.stdout and "ACC" in result.stdout
    for name in ("assignments.npy", "assignments.csv", "metrics.json", "model.pt", "config.json",
                 "checkpoint.pt"):
        assert (out / name).exists(), name
    assignments = np.load(out / "assignments.npy")
    assert assignments.shape == (1797,)
    csv = (out / "assignments.csv").read_text().splitlines()
    assert csv[0] == "index,cluster,label" and len(csv) == 1798
    assert int(csv[5].split(",")[1]) == assignments[4]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and set(metrics["final"]) == {"acc", "nmi", "ari"}
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "dac" and config["clusters"] == 10 and config["params"]["widths"] == [8, 16]
    pytest.importorskip("matplotlib")
    assert (out / "confusion.png").exists()

    # Resume with one more epoch: epochs 1-2 come from the checkpoint.
    result = fastclust("train", "--resume", out, "--epochs", "3", "--no-progress")
    assert "after epoch 2 of 3" in result.stdout and "epoch 3/3" in result.stdout
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 3
    changed = fastclust("train", "--resume", out, "--lr", "0.5", check=False)
    assert changed.returncode != 0 and "lr" in changed.stderr

    predicted = tmp_path / "predicted"
    result = fastclust("predict", "--model", out, "--data", "digits", "--out", predicted)
    assert "ACC" in result.stdout
    np.testing.assert_array_equal(np.load(predicted / "assignments.npy"), np.load(out / "assignments.npy"))


def test_train_with_restarts_records_the_choice_and_resumes_it(tmp_path):
    out = tmp_path / "run"
    tiny = ["--set", "widths=8,16", "--set", "depth=1", "--batch-size", "256", "--no-progress",
            "--threads", "1"]
    result = fastclust("train", "dac", "--data", "digits", "--epochs", "2", "--seed", "5", "--restarts", "2",
                       "--restart-epochs", "1", "--out", out, *tiny)
    assert "restart 2/2: seed 6" in result.stdout and "continuing seed" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    losses = {c["seed"]: c["loss"] for c in metrics["restarts"]["candidates"]}
    assert set(losses) == {5, 6} and metrics["restarts"]["seed"] == min(losses, key=losses.get)
    for seed, loss in losses.items():
        candidate = json.loads((out / "restarts" / f"seed-{seed}" / "metrics.json").read_text())
        assert candidate["history"][0]["loss"] == loss
    assert len(metrics["history"]) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["restarts"] == 2 and config["restart_epochs"] == 1 and config["seed"] == 5

    result = fastclust("train", "--resume", out, "--no-progress")
    assert "after epoch 2 of 2" in result.stdout
    assert json.loads((out / "metrics.json").read_text())["restarts"] == metrics["restarts"]
    changed = fastclust("train", "--resume", out, "--restarts", "3", check=False)
    assert changed.returncode != 0 and "restarts 3" in changed.stderr
    wrong = fastclust("train", "dac", "--data", "digits", "--epochs", "2", "--restarts", "2",
                      "--restart-epochs", "2", "--out", tmp_path / "o", check=False)
    assert wrong.returncode != 0 and "--restart-epochs must lie in 1..1" in wrong.stderr


def test_bad_input_gives_clear_errors(tmp_path):
    result = fastclust("train", "dac", "--data", tmp_path / "missing.npy", "--out", tmp_path / "o", check=False)
    assert result.returncode != 0 and "missing.npy" in result.stderr
    result = fastclust("predict", "--model", tmp_path, "--data", "digits", check=False)
    assert result.returncode != 0 and "no trained model" in result.stderr
    result = fastclust("train", "dac", "--data", "digits", "--set", "nonsense=1", "--out", tmp_path / "o",
                       check=False)
    assert result.returncode != 0 and "nonsense" in result.stderr


# In process from here: cheaper than a subprocess, and Trainer.fit can be interrupted on cue.
TINY = ["--set", "widths=8,16", "--set", "depth=1", "--batch-size", "256", "--no-progress"]


def train(*args):
    return cli.main(["train", "dac", "--data", "digits", *map(str, args), *TINY])


def resume(out, *args):
    return cli.main(["train", "--resume", str(out), "--no-progress", *map(str, args)])


def test_a_new_run_refuses_a_directory_that_holds_a_run(tmp_path):
    out = tmp_path / "run"
    assert train("--epochs", 1, "--out", out) == 0
    with pytest.raises(SystemExit, match=f"{out} already holds a run .*--resume {out}"):
        train("--epochs", 1, "--out", out)


def interrupted_fit(self, until=None):
    raise KeyboardInterrupt


def test_an_interrupt_before_the_first_checkpoint_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Trainer, "fit", interrupted_fit)
    out = tmp_path / "run"
    assert train("--epochs", 1, "--out", out) == 130
    err = capsys.readouterr().err
    assert "nothing was saved" in err and "--resume" not in err
    monkeypatch.undo()
    assert train("--epochs", 1, "--out", out) == 0  # nothing to continue: a new run may start there


def test_resume_mid_choice_checks_candidates_before_rewriting_config(tmp_path, monkeypatch, capsys):
    fit = Trainer.fit

    def stop_at_the_second_candidate(self, until=None):
        if until is not None and self.seed == 1:
            raise KeyboardInterrupt
        return fit(self, until)
    monkeypatch.setattr(Trainer, "fit", stop_at_the_second_candidate)
    out = tmp_path / "run"
    assert train("--epochs", 3, "--restarts", 2, "--restart-epochs", 2, "--out", out) == 130
    assert f"continue with: fastclust train --resume {out}" in capsys.readouterr().err
    monkeypatch.undo()
    # Seed 0's candidate decays its rate over 3 epochs: 5 are refused, and the run is left as it was.
    assert resume(out, "--epochs", 5) == 1
    assert "decays its learning rate over 3 epochs" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["params"]["epochs"] == 3
    assert resume(out) == 0 and len(json.loads((out / "metrics.json").read_text())["history"]) == 3


def test_resume_into_another_directory_keeps_the_choice_and_refuses_changes(tmp_path, monkeypatch, capsys):
    out, more = tmp_path / "run", tmp_path / "more"
    assert train("--epochs", 2, "--restarts", 2, "--restart-epochs", 1, "--set", "lr_decay=none",
                 "--out", out) == 0
    choice = json.loads((out / "restarts.json").read_text())
    assert resume(out, "--epochs", 3, "--out", more) == 0
    assert json.loads((more / "restarts.json").read_text()) == choice
    assert json.loads((more / "metrics.json").read_text())["restarts"] == choice
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", interrupted_fit)
        assert resume(out, "--out", tmp_path / "copy") == 130
    assert f"--resume {tmp_path / 'copy'}" in capsys.readouterr().err
    assert (tmp_path / "copy" / "checkpoint.pt").exists()
    with pytest.raises(SystemExit, match="split 'test' differs from the run's 'all'"):
        resume(out, "--split", "test")
    assert resume(more, "--epochs", 2, "--out", tmp_path / "fewer") == 1
    assert "after epoch 3, past the 2 epochs" in capsys.readouterr().err
