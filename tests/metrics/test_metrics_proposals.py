"""Proposal metrics (gaf score --proposals): AR@AN and the AR–AN area as the ActivityNet proposal task's
eval_proposal.py computes them — a hand-computed case, and the real ActivityNet v1.3 validation ground truth
against a step-by-step transcription of the official procedure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gaf.cli import main
from gaf.data.annotations import AnnotationSet, Segment, Video, read_ground_truth
from gaf.metrics.proposals import evaluate_proposals

ANET = Path(__file__).resolve().parents[3] / "shared" / "data" / "activitynet" / "anet_anno_action.json"


def _hand_case() -> tuple[AnnotationSet, AnnotationSet]:
    gt = AnnotationSet({"v1": Video("v1", [Segment(0, 10, "a"), Segment(20, 30, "b")], duration=60.0),
                        "v2": Video("v2", [Segment(0, 50, "a")], duration=60.0)}, ["a", "b"], "gt")
    pred = AnnotationSet({
        "v1": Video("v1", [Segment(0, 10, "proposal", 0.9), Segment(20, 26, "proposal", 0.8),
                           Segment(50, 60, "proposal", 0.7)]),
        "v2": Video("v2", [Segment(0, 40, "proposal", 0.9), Segment(0, 50, "proposal", 0.5)]),
        "v3": Video("v3", [Segment(0, 1, "proposal", 0.9)])}, ["proposal"], "pred")
    return gt, pred


def test_hand_computed_ar_an() -> None:
    """6 proposals in the file, 2 videos, AN up to 2: v1 keeps int(3 · 2·2/6) = 2 proposals, v2 int(2 · 2/3) = 1,
    K = 3. Point j looks at int(m · j/100 · 4/3) proposals: v1's first from j = 38, both and v2's from j = 75.
    Recalled: instance [0, 10] (tIoU 1) at all 10 thresholds, [20, 30] (tIoU 0.6) at 0.5, 0.55, 0.6,
    [0, 50] (tIoU 0.8 with v2's first) at 0.5 ... 0.8: AR = 0, then 10/30, then 20/30."""
    r = evaluate_proposals(*_hand_case(), max_avg_proposals=2)
    assert r.num_kept == 3 and r.num_proposals == 6 and r.num_videos == 2 and r.num_instances == 3
    assert r.proposals_per_video == pytest.approx(np.arange(1, 101) / 50)
    expected = np.zeros(100)
    expected[37:74], expected[74:] = 1 / 3, 2 / 3
    assert r.average_recall == pytest.approx(expected)
    assert r.recall[:, -1] == pytest.approx([1.0] * 3 + [2 / 3] * 4 + [1 / 3] * 3)  # per threshold, at AN = 2
    assert r.ar_at(1) == pytest.approx(1 / 3) and r.ar_at(2) == pytest.approx(2 / 3)
    # trapezoids of width 0.02: (0 + 1/3)/2 + 36 · 1/3 + (1/3 + 2/3)/2 + 25 · 2/3, over AN = 2, in %
    assert r.auc == pytest.approx(100 * 0.02 * (1 / 6 + 12 + 0.5 + 50 / 3) / 2)
    assert list(r.reported()) == ["AR@1"]


def _official(gt: AnnotationSet, pred: AnnotationSet, tious: np.ndarray, max_avg: float):
    """The official procedure, step by step (per video, per threshold, per point), as eval_proposal.py runs it."""
    videos = [v for v in gt.videos.values() if v.segments]
    ratio = max_avg * float(len(videos)) / pred.num_segments
    scores, total = [], 0
    for v in videos:
        g = np.array([(s.start, s.end) for s in v.segments])
        pv = pred.videos.get(v.video_id)
        if pv is None or not pv.segments:
            scores.append(np.zeros((len(g), 1)))
            continue
        p = np.array([(s.start, s.end) for s in pv.segments])
        p = p[np.argsort(-np.array([s.score for s in pv.segments]), kind="stable")]
        n = min(int(len(p) * ratio), len(p))
        total += n
        p = p[:n]
        tiou = np.empty((len(g), n))
        for i in range(n):
            inter = (np.minimum(p[i, 1], g[:, 1]) - np.maximum(p[i, 0], g[:, 0])).clip(0)
            tiou[:, i] = inter / ((g[:, 1] - g[:, 0]) + (p[i, 1] - p[i, 0]) - inter)
        scores.append(tiou)
    pcn = np.arange(1, 101) / 100.0 * (max_avg * float(len(videos)) / total)
    recall = np.empty((len(tious), 100))
    for r, t in enumerate(tious):
        matches, positives = np.empty((len(videos), 100)), np.empty(len(videos))
        for i, s in enumerate(scores):
            positives[i] = s.shape[0]
            tp = s >= t
            cut = np.minimum((s.shape[1] * pcn).astype(int), s.shape[1])
            for j, k in enumerate(cut):
                matches[i, j] = np.count_nonzero(tp[:, :k].sum(axis=1))
        recall[r] = matches.sum(axis=0) / positives.sum()
    avg = recall.mean(axis=0)
    per_video = pcn * (float(total) / len(videos))
    return recall, avg, per_video, 100.0 * float(np.trapezoid(avg, per_video)) / per_video[-1]


def _real_proposals(tmp_path: Path, n_videos: int = 250, seed: int = 0) -> tuple[AnnotationSet, Path]:
    """Proposals for the first ``n_videos`` validation videos of the real ActivityNet ground truth: jittered
    copies of each instance and random segments, 0–150 per video, some scores tied; plus a video outside."""
    gt = read_ground_truth(ANET, subset="validation")
    rng = np.random.default_rng(seed)
    results = {}
    for vid in list(gt.videos)[:n_videos]:
        v = gt.videos[vid]
        dur = v.duration or max(s.end for s in v.segments)
        rows = []
        for s in v.segments:
            for _ in range(int(rng.integers(0, 4))):
                a, b = s.start + rng.normal(0, 0.1 * (s.end - s.start) + 0.5, 2)
                rows.append([float(max(min(a, b), 0.0)), float(max(a, b, 0.0) + 1e-3)])
        for _ in range(int(rng.integers(0, 150))):
            a, b = sorted(rng.uniform(0, dur, 2))
            rows.append([float(a), float(b)])
        results[vid] = [{"segment": r, "score": float(np.round(rng.uniform(), 2))} for r in rows]
    results["v_notinthegroundtruth"] = [{"segment": [0.0, 5.0], "score": 0.5}]
    path = tmp_path / "proposals.json"
    path.write_text(json.dumps({"results": results}))
    return gt, path


def test_matches_the_official_procedure_on_real_activitynet(tmp_path: Path) -> None:
    from gaf.data.predictions import read_predictions

    gt, path = _real_proposals(tmp_path)
    pred = read_predictions(path, unlabelled="proposal")
    tious = np.linspace(0.5, 0.95, 10)
    for max_avg in (100.0, 10.0):
        recall, avg, per_video, auc = _official(gt, pred, tious, max_avg)
        r = evaluate_proposals(gt, pred, list(tious), max_avg_proposals=max_avg)
        np.testing.assert_array_equal(r.recall, recall)
        np.testing.assert_array_equal(r.average_recall, avg)
        np.testing.assert_array_equal(r.proposals_per_video, per_video)
        assert r.auc == pytest.approx(auc, abs=1e-12)
    assert 0.0 < r.ar_at(1) < r.ar_at(10) < 1.0


def test_gaf_score_proposals_cli(tmp_path: Path, capsys) -> None:
    _, path = _real_proposals(tmp_path, n_videos=60, seed=1)
    out = tmp_path / "scores.json"
    assert main(["score", str(ANET), str(path), "--proposals", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AR@100" in printed and "AUC" in printed and "subset validation" in printed
    doc = json.loads(out.read_text())
    assert doc["task"] == "proposals" and doc["num_videos"] == 4728 and len(doc["average_recall"]) == 100
    assert doc["tious"] == pytest.approx(list(np.linspace(0.5, 0.95, 10)))
    assert 0 < doc["AR@100"] < 60 / 4728 + 1e-9  # only 60 of the 4728 scored videos have proposals
    # detections mode refuses the same label-less file, naming the field
    assert main(["score", str(ANET), str(path)]) == 2
    assert "label: missing" in capsys.readouterr().err
