"""Specification of `gaf score GT PRED`: printed table and ground-truth line, JSON output, errors, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import THUMOS_DIR
from gaf.cli import main

REPO = Path(__file__).resolve().parents[2]
GAF_BIN = REPO / ".venv" / "bin" / "gaf"


def write(path: Path, doc) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """Ground truth with a validation and a test subset; predictions for the test videos.

    Class a: g=[0,10] in t1, [20,30] in t2; predictions [0,10] (.9, tIoU 1), [20,27] (.8, tIoU .7)
      -> AP 1 at 0.5, at 0.7 (>=), and AP .5 at 0.8 (only the first matches).
    Class b: g=[5,9] in t1; prediction [40,50] (.7): fp -> AP 0.
    mAP: 0.5 at 0.5, 0.5 at 0.7, 0.25 at 0.8.
    """
    gt = {"version": "test", "database": {
        "v1": {"subset": "validation", "duration": 60.0, "annotations": [{"segment": [1, 2], "label": "a"}]},
        "t1": {"subset": "testing", "duration": 60.0, "annotations": [
            {"segment": [0, 10], "label": "a"}, {"segment": [5, 9], "label": "b"}]},
        "t2": {"subset": "testing", "duration": 60.0, "annotations": [{"segment": [20, 30], "label": "a"}]},
    }}
    pred = {"version": "VERSION 1.3", "external_data": {}, "results": {
        "t1": [{"segment": [0, 10], "label": "a", "score": 0.9}, {"segment": [40, 50], "label": "b", "score": 0.7}],
        "t2": [{"segment": [20, 27], "label": "a", "score": 0.8}],
    }}
    return write(tmp_path / "gt.json", gt), write(tmp_path / "pred.json", pred)


def test_prints_ground_truth_used_and_the_map_table(files, capsys):
    gt, pred = files
    assert main(["score", str(gt), str(pred), "--tious", "0.5,0.7,0.8"]) == 0
    out = capsys.readouterr().out
    gt_line = next(line for line in out.splitlines() if line.startswith("ground truth:"))
    assert str(gt) in gt_line and "subset testing" in gt_line and "holds 2 of the 2 predicted videos" in gt_line
    assert "2 videos, 3 instances, 2 classes" in gt_line
    assert f"predictions: {pred}; 2 videos, 3 detections" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("tIoU"))
    assert header.split() == ["tIoU", "0.50", "0.70", "0.80", "Avg"]
    assert lines[-1].split() == ["mAP", "(%)", "50.00", "50.00", "25.00", "41.67"]


def test_per_class_table_and_json_output(files, tmp_path, capsys):
    gt, pred = files
    out_json = tmp_path / "deep" / "scores.json"
    assert main(["score", str(gt), str(pred), "--tious", "0.5:0.8:0.15", "--subset", "test", "--per-class",
                 "--json", str(out_json)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert next(r for r in rows if r.startswith("a ")).split() == ["a", "100.00", "100.00", "50.00", "83.33"]
    assert next(r for r in rows if r.startswith("b ")).split() == ["b", "0.00", "0.00", "0.00", "0.00"]
    doc = json.loads(out_json.read_text())
    assert doc["tious"] == [0.5, 0.65, 0.8]
    assert doc["mAP"] == [0.5, 0.5, 0.25]
    assert doc["average_mAP"] == pytest.approx(1.25 / 3)
    assert doc["per_class_ap"] == {"a": [1.0, 1.0, 0.5], "b": [0.0, 0.0, 0.0]}
    assert doc["rules"] == "activitynet" and doc["subset"] == "test" and doc["predictions"] == str(pred)
    assert not list(out_json.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def test_unknown_labels_and_absent_videos_are_reported_on_stderr(files, tmp_path, capsys):
    gt, _ = files
    pred = write(tmp_path / "p.json", {"results": {
        "t1": [{"segment": [0, 10], "label": "a", "score": 0.9}, {"segment": [0, 10], "label": "zebra", "score": 0.8}],
        "nowhere": [{"segment": [0, 10], "label": "a", "score": 0.5}]}})
    assert main(["score", str(gt), str(pred), "--subset", "testing"]) == 0
    captured = capsys.readouterr()
    assert "gaf score: warning:" in captured.err and "'zebra' (1)" in captured.err
    assert "absent from the ground truth" in captured.err and "'nowhere'" in captured.err
    assert "(1 ignored: label not in the ground truth)" in captured.out


def test_segments_outside_the_video_or_reversed_are_scored_as_the_official_code_does_with_one_warning(tmp_path,
                                                                                                    capsys):
    """Detectors emit them and the official ActivityNet code scores them: false positives unless they overlap
    ground truth (tests/metrics/test_metrics_detection_official.py checks the same rules against it)."""
    gt = write(tmp_path / "gt.json", {"database": {"t1": {"subset": "test", "duration": 60.0, "annotations": [
        {"segment": [0, 10], "label": "a"}, {"segment": [59, 60.8], "label": "a"}]}}})
    pred = write(tmp_path / "pred.json", {"results": {"t1": [
        {"segment": [-5, -2.91], "label": "a", "score": 0.9},  # before the video: FP
        {"segment": [-1, 9], "label": "a", "score": 0.8},  # vs [0, 10]: 9 / 11 = 0.82: TP at every threshold
        {"segment": [60.1, 60.8], "label": "a", "score": 0.7},  # after the 60 s end, vs [59, 60.8]: 0.39
        {"segment": [8, 2], "label": "a", "score": 0.6}]}})  # reversed: FP
    out_json = tmp_path / "scores.json"
    assert main(["score", str(gt), str(pred), "--tious", "0.3,0.5,0.7", "--json", str(out_json)]) == 0
    captured = capsys.readouterr()
    warned = [line for line in captured.err.splitlines() if line.startswith("gaf score: warning:")]
    assert warned == [f"gaf score: warning: {pred}: 3 predicted segment(s) outside their video or reversed: 1 ending "
                      "before 0 s, 1 starting after their video's end, 1 reversed (end < start) (e.g. video 't1' "
                      "[-5.0, -2.91]); scored as the official ActivityNet evaluation scores them: false positives unless "
                      "they overlap ground truth (a reversed one never does)"]
    # 0.3: FP, TP, TP, FP -> precision 1/2, 2/3 at recall 1/2, 1 -> 2/3; 0.5, 0.7: FP, TP, FP, FP -> 1/2 * 1/2
    assert json.loads(out_json.read_text())["mAP"] == pytest.approx([2 / 3, 0.25, 0.25])
    assert f"predictions: {pred}; 1 videos, 4 detections" in captured.out


def test_thumos14_rules_print_what_they_do(files, capsys):
    gt, pred = files
    assert main(["score", str(gt), str(pred), "--rules", "thumos14", "--tious", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "rules: thumos14" in out and "no Ambiguous intervals" in out
    # class a: both predictions match (tIoU 1 and .7 > .5): AP 1; class b: 0
    assert out.splitlines()[-1].split() == ["mAP", "(%)", "50.00", "50.00"]


@pytest.mark.parametrize("which, content, message", [
    ("gt", '{"database": {"t1": {"subset": "test", "annotations": [{"segment": [10, 2], "label": "a"}]}}}',
     "reversed segment"),
    ("pred", '{"results": {"t1": [{"segment": [0, 2], "label": "a"}]}}', "score: missing"),
    ("pred", "{not json", ""),
    ("gt", '{"results": {}}', "predictions file"),
])
def test_malformed_files_exit_2_with_a_message_naming_the_file(files, tmp_path, capsys, which, content, message):
    gt, pred = files
    bad = write(tmp_path / "bad.json", content)
    args = [str(bad), str(pred)] if which == "gt" else [str(gt), str(bad)]
    assert main(["score", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gaf score: error:") and str(bad) in err and message in err
    assert len(err.strip().splitlines()) == 1


def test_bad_tious_and_missing_subset_exit_2(files, capsys):
    gt, pred = files
    assert main(["score", str(gt), str(pred), "--tious", "0.5,abc"]) == 2
    assert "--tious" in capsys.readouterr().err
    assert main(["score", str(gt), str(pred), "--tious", "0,0.5"]) == 2
    assert "tious" in capsys.readouterr().err
    assert main(["score", str(gt), str(pred), "--subset", "training"]) == 2
    assert "no video has subset 'training'" in capsys.readouterr().err


def test_installed_gaf_script_scores_in_a_subprocess(files):
    if not GAF_BIN.exists():
        pytest.skip("no .venv/bin/gaf in this checkout")
    gt, pred = files
    done = subprocess.run([str(GAF_BIN), "score", str(gt), str(pred), "--tious", "0.5"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["mAP", "(%)", "50.00", "50.00"]
    bad = subprocess.run([str(GAF_BIN), "score", str(gt), str(gt)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "missing field 'results'" in bad.stderr and str(gt) in bad.stderr


def test_score_does_not_import_torch(files):
    gt, pred = files
    code = ("import sys, gaf.cli; rc = gaf.cli.main(['score', sys.argv[1], sys.argv[2]]); "
            "print(rc, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(gt), str(pred)], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 False"


def test_help_explains_formats_and_rules(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("ActivityNet", "ActionFormer", '"results"', "activitynet", "thumos14", "Ambiguous", "--subset",
                   "thumos14-test-213-ambiguous"):
        assert needle in text


@pytest.mark.skipif(not (THUMOS_DIR / "thumos14.json").is_file(), reason="shared data not present")
def test_real_thumos14_ground_truth_scores_its_own_instances_at_100(tmp_path, capsys):
    doc = json.loads((THUMOS_DIR / "thumos14.json").read_text())["database"]
    results = {vid: [{"segment": a["segment"], "label": a["label"], "score": 1.0 - 1e-4 * i}
                     for i, a in enumerate(v["annotations"])] for vid, v in doc.items() if v["subset"] == "Test"}
    pred = write(tmp_path / "perfect.json", {"results": results})
    assert main(["score", str(THUMOS_DIR / "thumos14.json"), str(pred), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "subset Test" in out and "212 videos, 3358 instances, 20 classes" in out
    assert out.splitlines()[-2].split()[2:] == ["100.00"] * 6
    assert json.loads((tmp_path / "s.json").read_text())["average_mAP"] == 1.0
