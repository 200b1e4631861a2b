"""Predictions outside their video or reversed: gaf scores them as the official ActivityNet evaluation does.

``official_ap`` below is a plain transcription of the algorithm of the official ``segment_iou`` and
``compute_average_precision_detection`` (``Evaluation/eval_detection.py`` of activitynet/ActivityNet), with
its NumPy semantics kept on purpose: the tIoU is ``inter / union`` with no guard, so a zero union gives NaN,
a negative one -0.0; ground truths are tried in ``argsort()[::-1]`` order of that tIoU (NaN first), and a
candidate stops the search only when ``tIoU < threshold`` (NaN never does). gaf must give the same AP on
every hand-made case here, except the one case where the official union is exactly 0 (the zero-union rule
of ``gaf.metrics.detection``), pinned by its own test. Times in seconds; scores distinct.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gaf.data.annotations import AnnotationSet, Segment, Video
from gaf.metrics.detection import EvaluationWarning, evaluate_detections

TIOUS = (0.1, 0.3, 0.5, 0.7, 0.95)


# ---------------------------------------------------------------- the official algorithm, as a loop
def official_tiou(pred: tuple[float, float], gts: np.ndarray) -> np.ndarray:
    """tIoU of one prediction with each ground truth ``gts`` (N, 2), in the official operation order."""
    inter = (np.minimum(pred[1], gts[:, 1]) - np.maximum(pred[0], gts[:, 0])).clip(0)
    union = (gts[:, 1] - gts[:, 0]) + (pred[1] - pred[0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union  # 0/0 = NaN, 0/negative = -0.0: as the official code computes them


def official_class_ap(gt: list[tuple[str, float, float]], pred: list[tuple[str, float, float, float]],
                      tious) -> list[float]:
    """AP of one class at each threshold: ``gt`` rows (video, start, end), ``pred`` rows (video, start, end,
    score)."""
    ranked = sorted(pred, key=lambda p: -p[3])
    of_video: dict[str, list[int]] = {}
    for j, (vid, _, _) in enumerate(gt):
        of_video.setdefault(vid, []).append(j)
    lock = np.full((len(tious), len(gt)), -1)
    tp = np.zeros((len(tious), len(ranked)))
    fp = np.zeros((len(tious), len(ranked)))
    for i, (vid, start, end, _) in enumerate(ranked):
        if vid not in of_video:  # no ground truth of this class in the video
            fp[:, i] = 1
            continue
        cands = of_video[vid]
        tiou = official_tiou((start, end), np.array([gt[j][1:] for j in cands], dtype=float))
        order = tiou.argsort()[::-1]  # NaN sorts last, so it is tried first
        for t, thr in enumerate(tious):
            for k in order:
                if tiou[k] < thr:  # False for NaN: the search goes on
                    fp[t, i] = 1
                    break
                if lock[t, cands[k]] >= 0:
                    continue
                tp[t, i] = 1
                lock[t, cands[k]] = i
                break
            if not tp[t, i] and not fp[t, i]:
                fp[t, i] = 1
    out = []
    for t in range(len(tious)):
        ctp, cfp = np.cumsum(tp[t]), np.cumsum(fp[t])
        recall = ctp / len(gt)
        precision = ctp / (ctp + cfp)  # every rank is a tp or a fp: never 0 / 0
        mprec = np.concatenate([[0.0], precision, [0.0]])
        mrec = np.concatenate([[0.0], recall, [1.0]])
        for k in range(len(mprec) - 2, -1, -1):  # the precision envelope, from the right
            mprec[k] = max(mprec[k], mprec[k + 1])
        steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
        out.append(float(np.sum((mrec[steps] - mrec[steps - 1]) * mprec[steps])))
    return out


def official_ap(gt: AnnotationSet, pred: AnnotationSet, tious) -> dict[str, list[float]]:
    """AP per ground-truth class (the official class list: labels with an instance)."""
    out = {}
    for c in dict.fromkeys(s.label for v in gt.videos.values() for s in v.segments):
        g = [(vid, s.start, s.end) for vid, v in gt.videos.items() for s in v.segments if s.label == c]
        p = [(vid, s.start, s.end, s.score) for vid, v in pred.videos.items() for s in v.segments if s.label == c]
        out[c] = official_class_ap(g, p, tious)
    return out


# ---------------------------------------------------------------- helpers
def gt_set(videos: dict[str, tuple[float, list[tuple[float, float, str]]]]) -> AnnotationSet:
    """``{video: (duration, [(start, end, label)])}``."""
    vids = {vid: Video(vid, [Segment(s, e, lab) for s, e, lab in segs], duration=dur)
            for vid, (dur, segs) in videos.items()}
    return AnnotationSet(vids, sorted({lab for _, segs in videos.values() for _, _, lab in segs}), "gt.json")


def pred_set(videos: dict[str, list[tuple[float, float, str, float]]]) -> AnnotationSet:
    vids = {vid: Video(vid, [Segment(s, e, lab, sc) for s, e, lab, sc in segs]) for vid, segs in videos.items()}
    return AnnotationSet(vids, sorted({d[2] for segs in videos.values() for d in segs}), "pred.json")


def scored(gt: AnnotationSet, pred: AnnotationSet, tious=TIOUS) -> tuple[dict[str, list[float]], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_detections(gt, pred, tious)
    return result.per_class_ap, [str(w.message) for w in caught if issubclass(w.category, EvaluationWarning)]


# ---------------------------------------------------------------- hand-made cases
GT = gt_set({"v1": (60.0, [(0.0, 10.0, "a"), (20.0, 30.0, "a"), (59.0, 60.8, "b")]),
             "v2": (100.0, [(0.0, 4.0, "b"), (95.0, 104.0, "a")])})
CASES = {
    # the segment: wholly before the video, ranked first -> a false positive at every threshold
    "ends-before-0": {"v1": [(-5.0, -2.91, "a", 0.9), (0.0, 10.0, "a", 0.8), (20.0, 29.0, "a", 0.7)]},
    "ends-at-0": {"v2": [(-3.0, 0.0, "b", 0.9), (0.0, 4.0, "b", 0.5)]},
    # starts before 0 and overlaps: [-1, 3] vs [0, 4]: inter 3, union 5 -> tIoU 0.6
    "starts-before-0-overlaps": {"v2": [(-1.0, 3.0, "b", 0.9)], "v1": [(58.0, 60.8, "b", 0.8)]},
    "far-before-0": {"v1": [(-1e6, -9e5, "a", 0.9), (-1e6, 5.0, "a", 0.8), (0.5, 10.0, "a", 0.7)]},
    # after the 100 s video's end, overlapping the instance written past it: [101, 104] vs [95, 104] -> 1/3
    "starts-after-the-end-overlaps": {"v2": [(101.0, 104.0, "a", 0.9), (150.0, 160.0, "a", 0.8),
                                             (96.0, 104.0, "a", 0.7)]},
    # after the 60 s video's end: [60.1, 60.8] vs [59, 60.8] -> 0.7 / 1.8
    "starts-after-the-end-short": {"v1": [(60.1, 60.8, "b", 0.9), (61.0, 62.0, "b", 0.95)]},
    # reversed: union 10 - 8 = 2 > 0 -> tIoU 0; union 10 - 25 < 0 -> tIoU -0.0: both below every threshold
    "reversed-shorter": {"v1": [(9.0, 1.0, "a", 0.9), (0.0, 10.0, "a", 0.8)]},
    "reversed-longer": {"v1": [(30.0, 5.0, "a", 0.9), (21.0, 30.0, "a", 0.6)]},
    "reversed-before-0": {"v2": [(-1.0, -3.0, "b", 0.9), (3.0, -2.0, "b", 0.8), (0.0, 3.5, "b", 0.1)]},
    "reversed-zero-length-gt-free": {"v2": [(2.0, 1.0, "b", 0.2), (0.0, 4.0, "b", 0.1)]},
    "all-kinds-interleaved": {
        "v1": [(-2.0, -1.0, "a", 0.99), (0.0, 9.0, "a", 0.95), (70.0, 80.0, "b", 0.9), (25.0, 21.0, "a", 0.85),
               (-4.0, 2.0, "a", 0.8), (20.0, 31.0, "a", 0.75), (59.5, 61.0, "b", 0.7)],
        "v2": [(96.0, 103.0, "a", 0.97), (104.5, 110.0, "a", 0.6), (-0.5, 4.5, "b", 0.55), (7.0, 2.0, "b", 0.5)],
        "v3": [(-1.0, 1.0, "a", 0.65)],  # a video absent from the ground truth
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_segments_outside_the_video_or_reversed_score_as_the_official_algorithm(case):
    pred = pred_set(CASES[case])
    got, _ = scored(GT, pred)
    want = official_ap(GT, pred, TIOUS)
    assert got.keys() == want.keys()
    for label in want:
        assert got[label] == pytest.approx(want[label], abs=1e-12), (case, label)


def test_the_hand_cases_hold_the_numbers_worked_out_by_hand():
    """The reference itself, checked on two cases whose arithmetic is written out."""
    # a has 3 instances. [-5, -2.91] FP; [0, 10] TP (tIoU 1); [20, 29] TP (0.9): precision 1/2, 2/3 at recall
    # 1/3, 2/3 -> envelope 2/3 at both: 4/9; at 0.95 [20, 29] is a FP: precision 1/2 at recall 1/3 -> 1/6
    assert official_ap(GT, pred_set(CASES["ends-before-0"]), (0.5, 0.95))["a"] == pytest.approx([4 / 9, 1 / 6])
    # b: [-1, 3] (.9) vs [0, 4]: tIoU 0.6; [58, 60.8] (.8) vs [59, 60.8]: 1.8 / 2.8 = 0.643. At 0.6 both TP: 1;
    # at 0.62 FP then TP: precision 1/2 at recall 1/2 -> 1/4; at 0.65 none: 0
    ap = official_ap(GT, pred_set(CASES["starts-before-0-overlaps"]), (0.6, 0.62, 0.65))["b"]
    assert ap == pytest.approx([1.0, 0.25, 0.0])
    assert scored(GT, pred_set(CASES["starts-before-0-overlaps"]), (0.6, 0.62, 0.65))[0]["b"] == pytest.approx(ap)


def test_random_segments_anywhere_score_as_the_official_algorithm():
    """Predictions drawn before, inside, after the video and reversed, against ground truth that may overrun
    the video's end; every case without an exact zero union (the one documented difference)."""
    rng = np.random.default_rng(24)
    checked = 0
    for _ in range(150):
        videos = {}
        for v in range(2):
            segs = []
            for _ in range(int(rng.integers(1, 4))):
                s = float(rng.uniform(0, 60))
                segs.append((s, s + float(rng.uniform(0.5, 15)), str(rng.choice(["a", "b"]))))
            videos[f"v{v}"] = (60.0, segs)
        gt = gt_set(videos)
        preds: dict[str, list] = {}
        for _ in range(int(rng.integers(1, 9))):
            s, e = (float(x) for x in rng.uniform(-20, 80, size=2))  # either order: some reversed
            vid = str(rng.choice(["v0", "v1", "v9"]))
            preds.setdefault(vid, []).append((s, e, str(rng.choice(["a", "b"])), float(rng.uniform())))
        pred = pred_set(preds)
        lengths = {e - s for _, (_, segs) in videos.items() for s, e, _ in segs}
        if any(s - e in lengths for segs in preds.values() for s, e, _, _ in segs):
            continue  # an exact zero union: see the next test
        got, _ = scored(gt, pred)
        want = official_ap(gt, pred, TIOUS)
        for label in want:
            assert got[label] == pytest.approx(want[label], abs=1e-12)
        checked += 1
    assert checked > 100


def test_a_reversed_prediction_exactly_as_long_as_a_ground_truth_is_the_one_documented_difference():
    """Official: [30, 20] against [0, 10] has union 10 + (-10) - 0 = 0, tIoU 0/0 = NaN, which its loop never
    finds below a threshold: a true positive at every threshold, for a segment that overlaps nothing. gaf
    applies its zero-union rule (tIoU 0): a false positive, as every other reversed segment."""
    gt = gt_set({"v": (60.0, [(0.0, 10.0, "a")])})
    pred = pred_set({"v": [(30.0, 20.0, "a", 0.9)]})
    assert official_ap(gt, pred, (0.5, 0.95))["a"] == [1.0, 1.0]
    assert scored(gt, pred, (0.5, 0.95))[0]["a"] == [0.0, 0.0]


def test_one_warning_counts_each_kind_and_names_an_example():
    pred = pred_set(CASES["all-kinds-interleaved"])
    _, messages = scored(GT, pred)
    outside = [m for m in messages if "outside their video" in m]
    assert outside == [
        "pred.json: 5 predicted segment(s) outside their video or reversed: 1 ending before 0 s, 2 starting after "
        "their video's end, 2 reversed (end < start) (e.g. video 'v1' [-2.0, -1.0]); scored as the official "
        "ActivityNet evaluation scores them: false positives unless they overlap ground truth (a reversed one "
        "never does)"]
    assert any("1 prediction(s) in 1 video(s) absent from the ground truth" in m for m in messages)
    inside = pred_set({"v1": [(0.0, 60.0, "a", 0.9), (-0.5, 3.0, "a", 0.8)]})  # reaching outside, not wholly
    assert not [m for m in scored(GT, inside)[1] if "outside their video" in m]
