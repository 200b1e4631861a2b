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
    from gaf.extraction import ExtractConfig
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


def test_score_uses_the_ground_truths_protocol_and_says_which(tmp_path, capsys) -> None:
    from conftest import SHARED, THUMOS_DIR

    anet = SHARED / "activitynet"
    out = tmp_path / "anet.json"
    assert main(["score", str(anet / "anet_anno_action.json"), str(anet / "sample_detection_prediction.json"),
                 "--add-prefix", "v_", "--json", str(out)]) == 0
    assert "tIoU thresholds: 0.5:0.95:0.05, ActivityNet's" in capsys.readouterr().out
    assert len(json.loads(out.read_text())["tious"]) == 10
    pred = tmp_path / "p.json"
    pred.write_text(json.dumps({"results": {"video_test_0000004": [
        {"label": "CricketBowling", "segment": [0.2, 1.1], "score": 0.9}]}}))
    assert main(["score", "thumos14-test-212", str(pred), "--json", str(out)]) == 0
    assert "tIoU thresholds: 0.3:0.7:0.1, THUMOS14's" in capsys.readouterr().out
    assert json.loads(out.read_text())["tious"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    # a mistyped variant name lists the valid ones; library advice is given as CLI flags
    assert main(["score", "thumos14-tset-212", str(pred)]) == 2
    err = capsys.readouterr().err
    assert "did you mean thumos14-test-212?" in err and "thumos14-val-200" in err
    assert main(["score", str(pred), str(pred)]) == 2
    assert "this is a predictions file" in capsys.readouterr().err
    assert THUMOS_DIR.is_dir()


def test_score_overrun_flag_clips_or_refuses_segments_past_the_video_end(tmp_path, capsys) -> None:
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps({"database": {"v1": {"subset": "test", "duration": 10.0, "annotations": [
        {"label": "Jump", "segment": [8.0, 14.0]}]}}}))
    pred.write_text(json.dumps({"results": {"v1": [{"label": "Jump", "segment": [8.0, 10.0], "score": 0.9}]}}))
    assert main(["score", str(gt), str(pred), "--tious", "0.5"]) == 0
    captured = capsys.readouterr()
    assert "gaf score --overrun clip|error" in captured.err
    assert captured.out.splitlines()[-1].split()[-1] == "0.00"  # [8, 10] vs [8, 14]: tIoU 1/3
    assert main(["score", str(gt), str(pred), "--tious", "0.5", "--overrun", "clip"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[-1] == "100.00"  # clipped to [8, 10]
    assert main(["score", str(gt), str(pred), "--overrun", "error"]) == 2


def test_score_reads_actionformer_outputs_with_a_label_map(tmp_path, capsys) -> None:
    gt, pred, names = tmp_path / "gt.json", tmp_path / "af.json", tmp_path / "classes.txt"
    gt.write_text(json.dumps({"database": {"v1": {"subset": "test", "duration": 10.0, "annotations": [
        {"label": "Jump", "segment": [1.0, 3.0]}, {"label": "Throw", "segment": [6.0, 8.0]}]}}}))
    pred.write_text(json.dumps({"results": [  # ActionFormer's rows, integer class ids
        {"video-id": "v1", "t-start": 1.0, "t-end": 3.1, "label": 0, "score": 0.9},
        {"video-id": "v1", "t-start": 6.0, "t-end": 8.0, "label": 1, "score": 0.8},
        {"video-id": "v1", "t-start": 6.0, "t-end": 8.0, "label": 0, "score": 0.7}]}))
    names.write_text("Jump\nThrow\n")
    assert main(["score", str(gt), str(pred), "--tious", "0.5"]) == 2  # ids without names: never guessed
    assert "integer class id 0: give the class names (gaf score --label-map FILE" in capsys.readouterr().err
    out = tmp_path / "s.json"
    assert main(["score", str(gt), str(pred), "--tious", "0.5", "--label-map", str(names), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["per_class_ap"] == {"Jump": [1.0], "Throw": [1.0]}
    names.write_text("Jump\n")
    assert main(["score", str(gt), str(pred), "--label-map", str(names)]) == 2
    assert "class id 1 is outside the label map's 1 classes" in capsys.readouterr().err
    # ActionFormer's own annotation files carry label_id: then the ground truth names the ids
    numbered = tmp_path / "gt_ids.json"
    numbered.write_text(json.dumps({"database": {"v1": {"subset": "test", "duration": 10.0, "annotations": [
        {"label": "Throw", "label_id": 1, "segment": [6.0, 8.0]}, {"label": "Jump", "label_id": 0,
                                                                   "segment": [1.0, 3.0]}]}}}))
    assert main(["score", str(numbered), str(pred), "--tious", "0.5", "--json", str(out)]) == 0
    assert "named by the class ids of" in capsys.readouterr().err
    assert json.loads(out.read_text())["per_class_ap"] == {"Jump": [1.0], "Throw": [1.0]}
