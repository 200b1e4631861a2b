"""Training that cannot go wrong silently: data checked before the first epoch (both splits, values that
would overflow), a NaN loss named with its batch's videos, and progress lines in logs without bars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gaf.cli import main

pytestmark = pytest.mark.slow

TINY_MODEL = {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
              "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1}}


def _config(dataset: dict, tmp_path: Path, **train) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps({"name": "tiny", "dataset": dataset, "model": TINY_MODEL,
                                "train": {"epochs": 2, "batch_size": 4, "health_items": 0, "grad_probe_every": 0,
                                          **train},
                                "eval": {"tious": [0.3, 0.5, 0.7]}, "work_dir": str(tmp_path / "run")}))
    return path


def test_a_bad_test_file_is_found_before_the_first_epoch(pulse_dataset, tmp_path, capsys) -> None:
    bad = Path(pulse_dataset["feature_dir"]) / "video_test_002.npy"
    x = np.load(bad)
    x[5, 3] = np.nan
    np.save(bad, x)
    assert main(["train", str(_config(pulse_dataset, tmp_path)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: video 'video_test_002': NaN or Inf feature values" in err and "step 5" in err
    assert not (tmp_path / "run" / "latest.pt").exists()  # no epoch was trained


def test_feature_values_that_would_overflow_the_model_are_named(pulse_dataset, tmp_path, capsys) -> None:
    bad = Path(pulse_dataset["feature_dir"]) / "video_validation_004.npy"
    np.save(bad, np.load(bad) * 1e30)  # finite in float32, but squares overflow
    assert main(["train", str(_config(pulse_dataset, tmp_path)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: video 'video_validation_004': feature values up to" in err and "would overflow" in err


def test_a_nan_loss_names_the_batch_and_keeps_the_last_good_checkpoint(pulse_dataset, tmp_path, capsys,
                                                                       monkeypatch) -> None:
    import gaf.engine.train as train_module

    real = train_module.detection_step_losses
    calls = {"n": 0}

    def diverging(model, batch, stage, progress, device):
        losses = real(model, batch, stage, progress, device)
        calls["n"] += 1
        if progress >= 0.5 and stage == "segment":  # second epoch
            losses["total"] = losses["total"] * float("nan")
        return losses

    monkeypatch.setattr(train_module, "detection_step_losses", diverging)
    assert main(["train", str(_config(pulse_dataset, tmp_path)), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("gaf train: error: epoch 2 stage segment batch 1: loss is nan")
    assert "on videos video_validation_" in err and "latest.pt holds the last good state" in err
    state = torch.load(tmp_path / "run" / "latest.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1


def test_logs_show_progress_lines_without_progress_bars(pulse_dataset, tmp_path, capsys) -> None:
    assert main(["train", str(_config(pulse_dataset, tmp_path, epochs=1)), "--no-progress"]) == 0
    log = (tmp_path / "run" / "log.txt").read_text()
    lines = [line for line in log.splitlines() if "epoch 1/1 segment: " in line and " it/s, ETA " in line]
    assert len(lines) >= 2 and "3/3 it" in lines[-1] and "total=" in lines[-1]
    assert any("inference: " in line and " batch/s, ETA " in line for line in log.splitlines())
    shown = capsys.readouterr()
    assert (shown.out + shown.err).count("mAP (%)") == 1  # the table shows once on the terminal
    assert log.count("mAP (%)") == 1 and "average mAP" in log  # and is kept in the log file


def test_a_training_subset_without_instances_is_an_error(pulse_dataset, tmp_path, capsys) -> None:
    path = Path(pulse_dataset["annotation_file"])
    doc = json.loads(path.read_text())
    for video in doc["database"].values():
        if video["subset"] == "validation":
            video["annotations"] = []
    path.write_text(json.dumps(doc))
    assert main(["train", str(_config(pulse_dataset, tmp_path)), "--no-progress"]) == 2
    assert "the training subset holds no action instance in its 12 videos" in capsys.readouterr().err


def test_resuming_on_changed_data_warns_loudly(pulse_dataset, tmp_path, capsys) -> None:
    config = str(_config(pulse_dataset, tmp_path, eval_at_end=False))
    assert main(["train", config, "--stop-after", "1", "--no-progress"]) == 0
    feature = Path(pulse_dataset["feature_dir"]) / "video_validation_000.npy"
    np.save(feature, np.load(feature)[:80])  # a different file under the same name
    capsys.readouterr()
    with pytest.warns(UserWarning, match="the data changed since this run started"):
        assert main(["train", config, "--resume", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: the data changed since this run started (bytes:" in err
