"""gaf analyze: DETAD's error analysis on hand-built cases where every error type is known, and on the
real THUMOS14 ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gaf.cli import main
from gaf.data.annotations import AnnotationSet, Segment, Video
from gaf.metrics.analysis import analyze_detections, interpolated_ap


def _case() -> tuple[AnnotationSet, AnnotationSet]:
    """Class A: 2 instances (v1 [0, 10], v2 [0, 10]); class B: 1 (v1 [20, 30]). A's 8 predictions in score
    order are: TP, double detection, TP, wrong label, localization, confusion, background, background
    (a video without instances); B's one prediction is a TP."""
    gt = AnnotationSet({"v1": Video("v1", [Segment(0, 10, "A"), Segment(20, 30, "B")], duration=100.0),
                        "v2": Video("v2", [Segment(0, 10, "A")], duration=50.0)}, ["A", "B"], "gt.json")
    pred = AnnotationSet({
        "v1": Video("v1", [Segment(0, 10, "A", 0.9), Segment(1, 10, "A", 0.8), Segment(20, 30, "A", 0.7),
                           Segment(22, 40, "A", 0.5), Segment(50, 60, "A", 0.4), Segment(20, 30, "B", 0.9)]),
        "v2": Video("v2", [Segment(0, 10, "A", 0.75), Segment(0, 3, "A", 0.6)]),
        "v3": Video("v3", [Segment(0, 1, "A", 0.3)])}, ["A", "B"], "pred.json")
    return gt, pred


def test_every_error_type_lands_where_the_definitions_put_it() -> None:
    gt, pred = _case()
    r = analyze_detections(gt, pred, [0.5])
    assert r.num_limited == 9 and r.profile_counts[:4] == [3, 2, 2, 2] and sum(r.profile_counts[4:]) == 0
    # 1G: A's TP + double, B's TP; 2G: TP + wrong label; 3G: localization + confusion; 4G: two backgrounds
    assert r.profile[0] == pytest.approx({"true_positive": 2 / 3, "double_detection": 1 / 3, "wrong_label": 0,
                                          "localization": 0, "confusion": 0, "background": 0})
    assert r.profile[1]["true_positive"] == pytest.approx(0.5) and r.profile[1]["wrong_label"] == pytest.approx(0.5)
    assert r.profile[2]["localization"] == pytest.approx(0.5) and r.profile[2]["confusion"] == pytest.approx(0.5)
    assert r.profile[3]["background"] == pytest.approx(1.0)
    # A: TP, FP, TP -> AP 0.5·1 + 0.5·2/3; B: 1. Removing the double detection lifts A to 1.
    assert r.average_map == pytest.approx((0.5 + 0.5 * 2 / 3 + 1.0) / 2)
    assert r.map_gain["double_detection"] == pytest.approx((1.0 - (0.5 + 1 / 3)) / 2)
    assert all(r.map_gain[k] == pytest.approx(0.0) for k in ("wrong_label", "localization", "confusion",
                                                             "background"))
    # every instance is found; lengths are 10 s (M), one instance of its class per video (XS), coverage > 8 %
    assert r.false_negatives["length"]["M"] == 0.0 and r.bin_counts["length"]["M"] == 3
    assert r.bin_counts["num_instances"]["XS"] == 3 and r.bin_counts["coverage"]["XL"] == 3
    # normalized AP (N = 1.5 instances per class): A 0.5·1 + 0.5·1.5/2.5, B 1
    assert r.sensitivity["length"]["M"] == pytest.approx((0.5 + 0.5 * 0.6 + 1.0) / 2)
    assert r.sensitivity["length"]["XS"] is None


def test_a_missed_instance_counts_as_a_false_negative_of_its_bin() -> None:
    gt, pred = _case()
    gt.videos["v2"].segments.append(Segment(20, 45, "B"))  # 25 s: bin XL, never predicted
    r = analyze_detections(gt, pred, [0.5])
    assert r.bin_counts["length"]["XL"] == 1 and r.false_negatives["length"]["XL"] == 1.0
    assert r.false_negatives["length"]["M"] == 0.0


def test_interpolated_ap_matches_hand_values() -> None:
    assert interpolated_ap([1, 0, 1], 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert interpolated_ap([0, 0], 2) == 0.0
    assert interpolated_ap([1, 1], 4) == pytest.approx(0.5)


def test_gaf_analyze_on_the_real_thumos14_ground_truth(tmp_path: Path, capsys) -> None:
    """Predictions built from the real test ground truth: every instance once exactly (true positives),
    once shifted by half its length (localization errors) and once with the next class's label (wrong
    labels)."""
    from gaf.data.annotations import thumos14_ground_truth

    gt = thumos14_ground_truth(variant="thumos14-test-212")
    labels = list(gt.labels)
    results = {}
    for vid, video in gt.videos.items():
        dets = []
        for s in video.segments:
            length = s.end - s.start
            other = labels[(labels.index(s.label) + 1) % len(labels)]
            dets += [{"label": s.label, "segment": [s.start, s.end], "score": 0.9},
                     {"label": s.label, "segment": [s.start + 0.5 * length, s.end + 0.5 * length], "score": 0.5},
                     {"label": other, "segment": [s.start, s.end], "score": 0.3}]
        results[vid] = dets
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"results": results}))
    out = tmp_path / "analysis"
    assert main(["analyze", "thumos14-test-212", str(pred), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "false-positive profile" in printed and "tIoU 0.5 (thumos14 bins)" in printed
    doc = json.loads((out / "analysis.json").read_text())
    assert doc["average_map"] == pytest.approx(1.0)
    assert doc["num_instances"] == gt.num_segments
    shares = doc["error_shares"]
    # each instance gives 1 TP, 1 prediction shifted by half (tIoU 1/3: localization, unless a neighbour
    # overlaps it more) and 1 wrong label; the 3 kinds are a third each up to overlaps between instances
    assert shares["true_positive"] == pytest.approx(1 / 3, abs=0.01)
    assert shares["wrong_label"] + shares["double_detection"] == pytest.approx(1 / 3, abs=0.02)
    assert shares["localization"] + shares["confusion"] + shares["double_detection"] + shares["wrong_label"] \
        + shares["background"] == pytest.approx(2 / 3, abs=0.01)
    assert all(v == pytest.approx(0.0) for v in doc["false_negatives"]["length"].values() if v is not None)
    assert (out / "analysis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gaf_analyze_does_not_import_torch(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps({"database": {"v1": {"subset": "test", "duration": 100.0, "annotations": [
        {"label": "A", "segment": [0, 10]}]}}}))
    pred.write_text(json.dumps({"results": {"v1": [{"label": "A", "segment": [0, 10], "score": 0.9}]}}))
    code = ("import sys\nfrom gaf.cli import main\n"
            f"assert main(['analyze', {str(gt)!r}, {str(pred)!r}]) == 0\nassert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
