"""Bounded work: tIoU ranges stop at their end and are capped, sampling rates are bounded, and a FIFO
given as a feature file is refused instead of blocking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gaf.cli import main

GT = {"version": "t", "database": {"v1": {"subset": "test", "duration": 10.0, "annotations": [
    {"label": "Jump", "segment": [1.0, 3.0]}]}}}
PRED = {"results": {"v1": [{"label": "Jump", "segment": [1.0, 3.1], "score": 0.9}]}}


def test_a_tiou_range_stops_at_its_end_and_is_capped(tmp_path: Path, capsys) -> None:
    gt, pred, out = tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "s.json"
    gt.write_text(json.dumps(GT))
    pred.write_text(json.dumps(PRED))
    assert main(["score", str(gt), str(pred), "--tious", "0.1:0.9:0.3", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["tious"] == [0.1, 0.4, 0.7]  # was 0.1, 0.4, 0.7, 1.0
    capsys.readouterr()
    for bad, message in (("0.01:1:0.0001", "9901 thresholds; give 1 to 200"), ("0.5,0.3", "strictly increasing"),
                         ("0.5,1.5", "must be in (0, 1]"), ("0.5:0.3:0.1", "expected a comma list")):
        assert main(["score", str(gt), str(pred), "--tious", bad]) == 2
        assert message in capsys.readouterr().err


def test_sampling_rates_are_bounded(tmp_path: Path, capsys) -> None:
    from gaf.data.video import iter_frames
    from gaf.extract import ExtractConfig
    from gaf.errors import ConfigError

    for command in (["extract", "x.mp4", "--out", str(tmp_path / "f"), "--fps", "1e6"],
                    ["classify", "x.mp4", "--backbone-weights", "w.pt", "--fps", "1e6"]):
        with pytest.raises(SystemExit) as exit_:
            main(command)
        assert exit_.value.code == 2
        assert "must be in (0, 1000], got 1e6" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"extract.fps: must be in \(0, 1000\]"):
        ExtractConfig(fps=1e6)
    with pytest.raises(ValueError, match=r"fps must be in \(0, 1000\]"):
        next(iter_frames("x.mp4", fps=1e6))
    assert not (tmp_path / "f").exists()


@pytest.mark.slow
def test_a_fifo_as_a_feature_file_is_refused_not_blocked_on(pulse_dataset: dict, tmp_path: Path) -> None:
    feature = Path(pulse_dataset["feature_dir"]) / "video_validation_003.npy"
    feature.unlink()
    os.mkfifo(feature)
    config = tmp_path / "fifo.yaml"
    config.write_text(json.dumps({
        "name": "fifo", "dataset": pulse_dataset, "work_dir": str(tmp_path / "run"),
        "model": {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
                  "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1}},
        "train": {"epochs": 1}}))
    done = subprocess.run([sys.executable, "-m", "gaf", "train", str(config), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{feature}: feature file of video 'video_validation_003' is not a regular file" in done.stderr
    assert not (tmp_path / "run" / "final.pt").exists()


def test_score_refuses_a_ground_truth_of_unknown_splits_that_the_predictions_barely_cover(tmp_path, capsys) -> None:
    """BSN's ActivityNet file without its video_info_new.csv: 19,228 videos of every split, no subsets."""
    from conftest import SHARED

    anet = SHARED / "activitynet"
    bare = tmp_path / "anet_anno_action.json"  # copied alone: the split information is not beside it
    bare.write_bytes((anet / "anet_anno_action.json").read_bytes())
    pred = anet / "sample_detection_prediction.json"
    # The official sample's ids lack the ground truth's "v_": said, with the flag that fixes it.
    assert main(["score", str(anet / "anet_anno_action.json"), str(pred)]) == 2
    err = capsys.readouterr().err
    assert "0 of its 4926 video ids are in the ground truth" in err and "pass --add-prefix v_" in err
    assert main(["score", str(bare), str(pred), "--add-prefix", "v_"]) == 2
    err = capsys.readouterr().err
    assert "19228 videos carry no subset (split)" in err and "video_info_new.csv" in err and "--subset all" in err
    assert main(["score", str(bare), str(pred), "--add-prefix", "v_", "--subset", "all", "--tious", "0.5"]) == 0
    assert "subset all; 19228 videos" in capsys.readouterr().out  # asked for explicitly
    assert main(["score", str(anet / "anet_anno_action.json"), str(pred), "--add-prefix", "v_", "--tious", "0.5"]) == 0
    assert "subset validation" in capsys.readouterr().out  # with the split information: the right subset
    empty = tmp_path / "empty.json"
    empty.write_text('{"results": {}}')
    assert main(["score", str(bare), str(empty)]) == 2
    assert "'results' holds no video" in capsys.readouterr().err
