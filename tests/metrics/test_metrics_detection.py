"""Specification of gaf.metrics.detection: ActivityNet-identical mAP, THUMOS14 toolkit rules, edge cases.

The hand-computed cases write their arithmetic in comments. ``reference_ap``
below is a plain loop over the predictions, written from the ActivityNet
official algorithm (and, for ``rules="thumos14"``, from the THUMOS'14
toolkit); the vectorised evaluator must agree with it to 1e-9.
"""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import THUMOS_DIR
from gaf.data.annotations import AnnotationSet, AnnotationWarning, Segment, Video, read_ground_truth
from gaf.errors import AnnotationError, ConfigError
from gaf.metrics.detection import (
    DetectionResult, EvaluationWarning, evaluate_detections, segment_iou_matrix)

needs_data = pytest.mark.skipif(not (THUMOS_DIR / "thumos14.json").is_file(), reason="shared data not present")


# ---------------------------------------------------------------- helpers
def gt_set(videos: dict[str, list[tuple[float, float, str]]], *, ambiguous=None, labels=None) -> AnnotationSet:
    ambiguous = ambiguous or {}
    vids = {vid: Video(vid, [Segment(s, e, lab) for s, e, lab in segs], ambiguous=list(ambiguous.get(vid, [])))
            for vid, segs in videos.items()}
    names = labels or sorted({lab for segs in videos.values() for _, _, lab in segs})
    return AnnotationSet(vids, names, "gt.json")


def pred_set(videos: dict[str, list[tuple[float, float, str, float]]]) -> AnnotationSet:
    vids = {vid: Video(vid, [Segment(s, e, lab, sc) for s, e, lab, sc in segs]) for vid, segs in videos.items()}
    return AnnotationSet(vids, sorted({d[2] for segs in videos.values() for d in segs}), "pred.json")


def ap_of(gt, pred, tious=(0.5,), label="a", **kw) -> list[float]:
    return evaluate_detections(gt, pred, tious, **kw).per_class_ap[label]


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (b[1] - b[0]) + (a[1] - a[0]) - inter
    return inter / union if union > 0 else 0.0


def reference_ap(gt: AnnotationSet, pred: AnnotationSet, tious, rules: str = "activitynet") -> dict[str, list[float]]:
    """AP per class and threshold by a straightforward loop (one prediction / ground truth at a time)."""
    classes = [c for c in gt.labels if any(s.label == c for v in gt.videos.values() for s in v.segments)]
    out = {}
    for c in classes:
        gts = {vid: [(s.start, s.end) for s in v.segments if s.label == c] for vid, v in gt.videos.items()}
        npos = sum(len(g) for g in gts.values())
        preds = [(vid, (s.start, s.end), s.score) for vid, v in pred.videos.items() for s in v.segments
                 if s.label == c]
        ranked = sorted(range(len(preds)), key=lambda i: -preds[i][2])  # stable: file order on ties
        aps = []
        for t in tious:
            if rules == "activitynet":
                used = {vid: [False] * len(g) for vid, g in gts.items()}
                flags = []
                for i in ranked:
                    vid, seg, _ = preds[i]
                    cands = gts.get(vid, [])
                    ious = [_iou(seg, g) for g in cands]
                    hit = False
                    for j in sorted(range(len(cands)), key=lambda j: -ious[j]):  # best tIoU first, file order on ties
                        if ious[j] < t:
                            break
                        if not used[vid][j]:
                            used[vid][j] = hit = True
                            break
                    flags.append(hit)
                tp = fp = 0
                prec, rec = [], []
                for hit in flags:
                    tp, fp = tp + hit, fp + (not hit)
                    prec.append(tp / (tp + fp))
                    rec.append(tp / npos)
                mprec, mrec = [0.0] + prec + [0.0], [0.0] + rec + [1.0]
                for i in range(len(mprec) - 2, -1, -1):
                    mprec[i] = max(mprec[i], mprec[i + 1])
                aps.append(sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]))
            else:
                outcome = {}  # prediction index -> True (tp) / False (fp); removed ones absent
                for vid in set(gts) | {p[0] for p in preds}:
                    dets = [i for i in ranked if preds[i][0] == vid]
                    free = [True] * len(dets)
                    for g in gts.get(vid, []):  # ground truth in file order drives the matching
                        best, best_ov = None, -1.0
                        for k, i in enumerate(dets):
                            ov = _iou(preds[i][1], g)
                            if free[k] and ov > best_ov:
                                best, best_ov = k, ov
                        if best is not None and best_ov > t:
                            free[best] = False
                    amb = gt.videos[vid].ambiguous if vid in gt.videos else []
                    for k, i in enumerate(dets):
                        s, e = preds[i][1]
                        if not free[k]:
                            outcome[i] = True
                        elif not any(min(e, b) - max(s, a) > 0 for a, b in amb):
                            outcome[i] = False
                tp = fp = 0
                total = 0.0
                for i in ranked:
                    if i in outcome:
                        tp, fp = tp + outcome[i], fp + (not outcome[i])
                        total += tp / (tp + fp) if outcome[i] else 0.0
                aps.append(total / npos)
        out[c] = aps
    return out


# ---------------------------------------------------------------- tIoU
def test_segment_iou_matrix_is_intersection_over_union_with_zero_for_empty_union():
    pred = np.array([[0.0, 10.0], [5.0, 15.0], [3.0, 3.0]])
    gt = np.array([[0.0, 10.0], [20.0, 30.0], [3.0, 3.0]])
    iou = segment_iou_matrix(pred, gt)
    assert iou.shape == (3, 3)
    # [5,15] vs [0,10]: intersection 5, union 15
    np.testing.assert_allclose(iou, [[1.0, 0.0, 0.0], [5 / 15, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert not np.isnan(iou).any()


# ---------------------------------------------------------------- hand-computed APs
def test_interpolated_ap_uses_the_precision_envelope():
    # g1=[0,10], g2=[20,30]; ranked: p1 fp, p2 tp (g1), p3 tp (g2)
    # precision 0/1, 1/2, 2/3; recall 0, .5, 1
    # envelope at the recall changes: max(1/2, 2/3) = 2/3 at r=.5, 2/3 at r=1
    # AP = .5 * 2/3 + .5 * 2/3 = 2/3
    gt = gt_set({"v": [(0, 10, "a"), (20, 30, "a")]})
    pred = pred_set({"v": [(50, 60, "a", 0.9), (0, 10, "a", 0.8), (20, 30, "a", 0.7)]})
    assert ap_of(gt, pred) == pytest.approx([2 / 3], abs=1e-12)
    # THUMOS14 toolkit AP is not interpolated: (1/2 + 2/3) / 2
    assert ap_of(gt, pred, rules="thumos14") == pytest.approx([(1 / 2 + 2 / 3) / 2], abs=1e-12)


def test_thresholds_keep_independent_locks():
    # g=[0,10]; p1=[0,6] (tIoU .6, score .9), p2=[0,9] (tIoU .9, score .8)
    # at .5: p1 takes g, p2 is fp -> precision 1, 1/2 at recall 1, 1 -> AP 1
    # at .7: p1 is below, fp; p2 takes g (still free at .7) -> precision 0, 1/2 -> AP .5
    gt = gt_set({"v": [(0, 10, "a")]})
    pred = pred_set({"v": [(0, 6, "a", 0.9), (0, 9, "a", 0.8)]})
    assert ap_of(gt, pred, (0.5, 0.7)) == pytest.approx([1.0, 0.5], abs=1e-12)


def test_a_prediction_falls_back_to_the_next_best_unmatched_ground_truth():
    # g1=[0,10], g2=[2,12]; p1=[0,10] takes g1 (tIoU 1 vs 8/12)
    # p2=[.5,10.5]: g1 tIoU 9.5/10.5 = .905 (taken), g2 tIoU 8.5/11.5 = .739
    # at .5 p2 falls back to g2 -> 2 tp -> AP 1; at .8 g2 is too far -> AP = .5 * 1 = .5
    gt = gt_set({"v": [(0, 10, "a"), (2, 12, "a")]})
    pred = pred_set({"v": [(0, 10, "a", 0.9), (0.5, 10.5, "a", 0.8)]})
    assert ap_of(gt, pred, (0.5, 0.8)) == pytest.approx([1.0, 0.5], abs=1e-12)


def test_an_earlier_single_candidate_prediction_blocks_a_later_multi_candidate_one():
    # g1=[0,10], g2=[10,20]; p1=[0,10] (.9) only overlaps g1
    # p2=[4,15] (.8): g1 tIoU 6/15 = .4, g2 tIoU 5/16 = .3125 -> at .3 its best, g1, is taken: falls back to g2
    # p3=[10,20] (.7) finds g2 taken: fp. tp, tp, fp: precision 1, 1, 2/3; recall .5, 1, 1 -> AP 1
    # at .35: p2 has only g1 (taken) -> fp; p3 takes g2: tp, fp, tp -> AP = .5 + .5 * 2/3
    gt = gt_set({"v": [(0, 10, "a"), (10, 20, "a")]})
    pred = pred_set({"v": [(0, 10, "a", 0.9), (4, 15, "a", 0.8), (10, 20, "a", 0.7)]})
    assert ap_of(gt, pred, (0.3, 0.35)) == pytest.approx([1.0, 0.5 + 0.5 * 2 / 3], abs=1e-12)


def test_equal_scores_rank_in_file_order_across_and_within_videos():
    # one gt; two predictions with the same score, one fp and one exact
    # fp first: precision 0, 1/2 -> AP .5; exact first: precision 1 -> AP 1
    gt = gt_set({"v": [(0, 10, "a")], "w": [(100, 110, "a")]})
    fp_first = pred_set({"v": [(50, 60, "a", 0.5), (0, 10, "a", 0.5)]})
    tp_first = pred_set({"v": [(0, 10, "a", 0.5), (50, 60, "a", 0.5)]})
    # npos = 2: AP = .5 * precision envelope
    assert ap_of(gt, fp_first) == pytest.approx([0.25])
    assert ap_of(gt, tp_first) == pytest.approx([0.5])
    # across videos: video order of the file decides
    w_first = pred_set({"w": [(0, 5, "a", 0.5)], "v": [(0, 10, "a", 0.5)]})  # fp in w, then tp in v
    v_first = pred_set({"v": [(0, 10, "a", 0.5)], "w": [(0, 5, "a", 0.5)]})
    assert ap_of(gt, w_first) == pytest.approx([0.25])
    assert ap_of(gt, v_first) == pytest.approx([0.5])


def test_a_duplicated_prediction_is_a_false_positive_the_second_time():
    # g1=[0,10], g2=[20,30]; [0,10] twice (.9, .9), then [20,30] (.8)
    # tp, fp, tp: precision 1, 1/2, 2/3; recall .5, .5, 1 -> AP = .5 * 1 + .5 * 2/3 = 5/6
    gt = gt_set({"v": [(0, 10, "a"), (20, 30, "a")]})
    pred = pred_set({"v": [(0, 10, "a", 0.9), (0, 10, "a", 0.9), (20, 30, "a", 0.8)]})
    assert ap_of(gt, pred) == pytest.approx([5 / 6], abs=1e-12)
    single = pred_set({"v": [(0, 10, "a", 0.9), (20, 30, "a", 0.8)]})
    assert ap_of(gt, single) == pytest.approx([1.0])


def test_videos_without_predictions_cap_recall():
    # two gts in two videos, only one predicted exactly: recall .5 at precision 1 -> AP .5
    gt = gt_set({"v": [(0, 10, "a")], "w": [(0, 10, "a")]})
    assert ap_of(gt, pred_set({"v": [(0, 10, "a", 0.9)]})) == pytest.approx([0.5])


def test_predictions_for_videos_absent_from_the_ground_truth_are_false_positives_with_a_warning():
    # fp (unknown video, .9) then tp: precision 0, 1/2 -> AP .5
    gt = gt_set({"v": [(0, 10, "a")]})
    pred = pred_set({"elsewhere": [(0, 10, "a", 0.9)], "v": [(0, 10, "a", 0.8)]})
    with pytest.warns(EvaluationWarning, match=r"1 prediction\(s\) in 1 video\(s\) absent.*'elsewhere'"):
        result = evaluate_detections(gt, pred, (0.5,))
    assert result.per_class_ap["a"] == pytest.approx([0.5])
    assert result.num_absent_video_predictions == 1


def test_zero_length_segments_have_tiou_zero_never_nan():
    gt = gt_set({"v": [(5, 5, "a"), (0, 10, "a")]})
    pred = pred_set({"v": [(5, 5, "a", 0.9), (0, 10, "a", 0.8)]})
    # the zero-length prediction matches nothing (tIoU 0): fp, tp -> AP = .5 * 1/2
    result = evaluate_detections(gt, pred, (0.5,))
    assert result.per_class_ap["a"] == pytest.approx([0.25])
    assert all(math.isfinite(v) for v in result.mAP)


def test_a_reversed_predicted_segment_is_a_false_positive_with_a_warning():
    """Official parity: its tIoU with anything is 0 (the official code clips the intersection at 0), so it
    can only be a false positive — and it takes its place in the ranking."""
    gt = gt_set({"v": [(0, 10, "a"), (20, 30, "a")]})
    pred = pred_set({"v": [(10, 0, "a", 0.95), (0, 10, "a", 0.9), (30, 20, "a", 0.8), (20, 30, "a", 0.5)]})
    with pytest.warns(EvaluationWarning, match=r"pred\.json: 2 predicted segment\(s\) outside their video or reversed: "
                                               r"2 reversed \(end < start\) \(e\.g\. video 'v' \[10, 0\]\)"):
        result = evaluate_detections(gt, pred, (0.5,))
    # ranks: FP, TP, FP, TP -> precision 1/2 at recall 1/2 and 2/4 at recall 1: interpolated AP 0.5
    assert result.per_class_ap["a"] == pytest.approx([0.5])
    assert result.num_absent_video_predictions == 0


def test_a_reversed_ground_truth_segment_raises_naming_the_video():
    gt = gt_set({"v": [(0, 10, "a")], "bad_video": [(8, 3, "a")]})
    pred = pred_set({"v": [(0, 10, "a", 0.9)]})
    with pytest.raises(AnnotationError, match=r"'bad_video'.*end 3(\.0)? < start 8"):
        evaluate_detections(gt, pred)


def test_missing_score_raises_naming_the_video():
    gt = gt_set({"v": [(0, 10, "a")]})
    pred = AnnotationSet({"v": Video("v", [Segment(0, 10, "a", None)])}, ["a"], "pred.json")
    with pytest.raises(AnnotationError, match=r"pred\.json.*'v'.*score"):
        evaluate_detections(gt, pred)


def test_labels_absent_from_the_ground_truth_are_ignored_with_a_counting_warning():
    gt = gt_set({"v": [(0, 10, "a"), (20, 30, "b")]})
    base = {"v": [(0, 10, "a", 0.5), (20, 30, "b", 0.4)]}
    extra = {"v": [(0, 10, "zzz", 0.99), (40, 50, "zzz", 0.98), (1, 2, "yyy", 0.97)] + base["v"]}
    with pytest.warns(EvaluationWarning, match=r"3 prediction\(s\) with 2 label\(s\).*ignored.*'yyy' \(1\), 'zzz' \(2\)"):
        result = evaluate_detections(gt, pred_set(extra))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = evaluate_detections(gt, pred_set(base))
    assert result.per_class_ap == clean.per_class_ap
    assert result.num_ignored_predictions == 3 and result.num_predictions == 5


def test_a_class_without_predictions_has_ap_zero_and_counts_in_the_mean():
    # a: perfect (AP 1); b: no prediction (AP 0); c exists only in the label list (no instance: not a class)
    gt = gt_set({"v": [(0, 10, "a"), (20, 30, "b")]}, labels=["a", "b", "c"])
    result = evaluate_detections(gt, pred_set({"v": [(0, 10, "a", 0.9)]}), (0.3, 0.7))
    assert result.per_class_ap == {"a": [1.0, 1.0], "b": [0.0, 0.0]}
    assert result.mAP == [0.5, 0.5] and result.average_mAP == 0.5


def test_no_predictions_at_all_scores_zero():
    gt = gt_set({"v": [(0, 10, "a")]})
    result = evaluate_detections(gt, AnnotationSet({}, [], "empty.json"))
    assert result.mAP == [0.0] * 5 and result.num_predictions == 0


def test_bad_thresholds_and_rules_are_config_errors():
    gt = gt_set({"v": [(0, 10, "a")]})
    pred = pred_set({"v": [(0, 10, "a", 0.9)]})
    for bad in ([], [0.0], [1.5], ["x"]):
        with pytest.raises(ConfigError, match="tious"):
            evaluate_detections(gt, pred, bad)
    with pytest.raises(ConfigError, match="rules"):
        evaluate_detections(gt, pred, rules="coco")


def test_empty_ground_truth_is_an_annotation_error():
    with pytest.raises(AnnotationError, match="gt.json.*no action instance"):
        evaluate_detections(gt_set({"v": []}), pred_set({"v": [(0, 1, "a", 0.5)]}))


# ---------------------------------------------------------------- THUMOS14 toolkit rules
def test_thumos14_rules_let_the_ground_truth_pick_its_best_detection():
    # g=[0,10]; p1=[0,7] (tIoU .7, score .9), p2=[0,10] (tIoU 1, score .5)
    # ActivityNet: p1 (first by score) takes g: tp, fp -> AP 1
    # THUMOS14: g takes the free detection with the largest overlap, p2: fp, tp -> AP = (1/2) / 1
    gt = gt_set({"v": [(0, 10, "a")]})
    pred = pred_set({"v": [(0, 7, "a", 0.9), (0, 10, "a", 0.5)]})
    assert ap_of(gt, pred) == pytest.approx([1.0])
    assert ap_of(gt, pred, rules="thumos14") == pytest.approx([0.5])


def test_thumos14_rules_need_overlap_strictly_above_the_threshold():
    # [0,5] vs [0,10]: tIoU exactly .5 -> a match at .5 for ActivityNet (>=), not for THUMOS14 (>)
    gt = gt_set({"v": [(0, 10, "a")]})
    pred = pred_set({"v": [(0, 5, "a", 0.9)]})
    assert ap_of(gt, pred) == [1.0]
    assert ap_of(gt, pred, rules="thumos14") == [0.0]


def test_thumos14_rules_remove_unmatched_detections_touching_ambiguous_intervals():
    # g=[0,10], Ambiguous [20,30]; p1=[22,28] (.9) unmatched and inside the Ambiguous interval, p2=[0,10] (.8)
    # THUMOS14: p1 removed -> tp only -> AP 1; ActivityNet ignores Ambiguous: fp, tp -> AP .5
    # p3=[40,50] (.7) is an ordinary fp; p4=[30,31] (.6) only touches the interval's end: fp
    gt = gt_set({"v": [(0, 10, "a")]}, ambiguous={"v": [(20.0, 30.0)]})
    pred = pred_set({"v": [(22, 28, "a", 0.9), (0, 10, "a", 0.8), (40, 50, "a", 0.7), (30, 31, "a", 0.6)]})
    result = evaluate_detections(gt, pred, (0.5,), rules="thumos14")
    assert result.per_class_ap["a"] == pytest.approx([1.0])
    assert result.num_removed_ambiguous == [1]
    assert ap_of(gt, pred) == pytest.approx([0.5])
    # a detection that is a true positive stays one even when it touches an Ambiguous interval
    gt2 = gt_set({"v": [(0, 10, "a")]}, ambiguous={"v": [(9.0, 12.0)]})
    assert ap_of(gt2, pred_set({"v": [(0, 10, "a", 0.9)]}), rules="thumos14") == [1.0]


# ---------------------------------------------------------------- result object
def test_result_json_and_tables():
    gt = gt_set({"v": [(0, 10, "a"), (20, 30, "b")]})
    result = evaluate_detections(gt, pred_set({"v": [(0, 10, "a", 0.9), (21, 30, "b", 0.8)]}), (0.5, 0.95))
    assert isinstance(result, DetectionResult)
    doc = result.to_json()
    assert doc["tious"] == [0.5, 0.95]
    assert doc["mAP"] == [1.0, 0.5]  # b: tIoU .9 -> matched at .5, not at .95
    assert doc["average_mAP"] == 0.75
    assert doc["per_class_ap"] == {"a": [1.0, 1.0], "b": [1.0, 0.0]}
    assert doc["rules"] == "activitynet" and doc["ground_truth"] == "gt.json"
    table = result.format_table()
    assert "0.50" in table and "0.95" in table and "Avg" in table
    assert table.splitlines()[0].split() == ["tIoU", "0.50", "0.95", "Avg"]
    assert table.splitlines()[-1].split() == ["mAP", "(%)", "100.00", "50.00", "75.00"]
    rows = result.format_table(per_class=True).splitlines()
    assert [r.split()[0] for r in rows[2:]] == ["a", "b", "mAP"]
    assert rows[3].split() == ["b", "100.00", "0.00", "50.00"]


# ---------------------------------------------------------------- against the reference, random cases
@st.composite
def random_case(draw, with_ambiguous: bool = False, crowded: bool = False):
    """Random ground truth and predictions (distinct scores; some predictions for an absent video).

    ``crowded``: one or two classes on a short integer grid, so that predictions
    overlap several instances, tIoUs tie and land exactly on the thresholds.
    """
    if crowded:
        return draw(crowded_case(with_ambiguous))
    labels = ["a", "b", "c"]
    num_videos = draw(st.integers(1, 4))
    gt_videos, amb = {}, {}
    for v in range(num_videos):
        segs = []
        for _ in range(draw(st.integers(0, 5))):
            s = draw(st.integers(0, 60)) / 2
            segs.append((s, s + draw(st.integers(0, 20)) / 2, draw(st.sampled_from(labels))))
        gt_videos[f"v{v}"] = segs
        if with_ambiguous and draw(st.booleans()):
            s = draw(st.integers(0, 60)) / 2
            amb[f"v{v}"] = [(s, s + draw(st.integers(1, 10)))]
    if not any(gt_videos.values()):
        gt_videos["v0"] = [(0.0, 5.0, "a")]
    num_preds = draw(st.integers(0, 25))
    scores = draw(st.lists(st.integers(0, 10 ** 6), min_size=num_preds, max_size=num_preds, unique=True))
    pred_videos: dict[str, list] = {}
    for k in range(num_preds):
        vid = f"v{draw(st.integers(0, num_videos))}"  # v{num_videos} is absent from the ground truth
        s = draw(st.integers(0, 60)) / 2
        pred_videos.setdefault(vid, []).append((s, s + draw(st.integers(0, 20)) / 2, draw(st.sampled_from(labels)),
                                                scores[k] / 10 ** 6))
    return gt_set(gt_videos, ambiguous=amb, labels=labels), pred_set(pred_videos)


@st.composite
def crowded_case(draw, with_ambiguous: bool):
    labels = ["a", "b"][: draw(st.integers(1, 2))]
    gt_videos, amb = {}, {}
    for v in range(draw(st.integers(1, 2))):
        gt_videos[f"v{v}"] = [(float(s), float(s + draw(st.integers(1, 6))), draw(st.sampled_from(labels)))
                              for s in draw(st.lists(st.integers(0, 20), min_size=1, max_size=8))]
        if with_ambiguous and draw(st.booleans()):
            s = draw(st.integers(0, 20))
            amb[f"v{v}"] = [(float(s), float(s + draw(st.integers(1, 4))))]
    num_preds = draw(st.integers(1, 30))
    scores = draw(st.lists(st.integers(0, 10 ** 6), min_size=num_preds, max_size=num_preds, unique=True))
    pred_videos: dict[str, list] = {}
    for k in range(num_preds):
        vid = f"v{draw(st.integers(0, len(gt_videos) - 1))}"
        s = draw(st.integers(0, 20))
        pred_videos.setdefault(vid, []).append((float(s), float(s + draw(st.integers(0, 7))),
                                                draw(st.sampled_from(labels)), scores[k] / 10 ** 6))
    return gt_set(gt_videos, ambiguous=amb, labels=labels), pred_set(pred_videos)


def shuffled(aset: AnnotationSet, seed: int, *, segments: bool = True) -> AnnotationSet:
    """``aset`` with its videos (and, with ``segments``, each video's segments) in a random order."""
    rng = random.Random(seed)
    items = list(aset.videos.items())
    rng.shuffle(items)
    videos = {}
    for vid, v in items:
        segs = list(v.segments)
        if segments:
            rng.shuffle(segs)
        videos[vid] = Video(vid, segs, ambiguous=list(v.ambiguous))
    return AnnotationSet(videos, list(aset.labels), aset.source)


TIOUS = (0.1, 0.3, 0.5, 0.7, 0.9)
hyp = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_matches_reference(gt, pred, rules):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        got = evaluate_detections(gt, pred, TIOUS, rules=rules)
    want = reference_ap(gt, pred, TIOUS, rules)
    assert list(got.per_class_ap) == list(want)
    for c in want:
        np.testing.assert_allclose(got.per_class_ap[c], want[c], rtol=0, atol=1e-9, err_msg=c)
    np.testing.assert_allclose(got.mAP, np.mean([want[c] for c in want], axis=0), rtol=0, atol=1e-9)
    return got


@hyp
@given(random_case(), st.integers(0, 1000))
def test_random_cases_match_the_reference_and_ignore_file_order_when_scores_differ(case, seed):
    gt, pred = case
    got = assert_matches_reference(gt, pred, "activitynet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        # ground-truth order within a video only breaks exact tIoU ties, so only its video order moves
        again = evaluate_detections(shuffled(gt, seed, segments=False), shuffled(pred, seed + 1), TIOUS)
    for c in got.per_class_ap:
        np.testing.assert_allclose(again.per_class_ap[c], got.per_class_ap[c], rtol=0, atol=1e-12)


@hyp
@given(random_case(crowded=True))
def test_crowded_cases_match_the_reference(case):
    gt, pred = case
    assert_matches_reference(gt, pred, "activitynet")


@hyp
@given(random_case(with_ambiguous=True))
def test_random_cases_match_the_thumos14_reference(case):
    assert_matches_reference(*case, "thumos14")


@hyp
@given(random_case(with_ambiguous=True, crowded=True))
def test_crowded_cases_match_the_thumos14_reference(case):
    assert_matches_reference(*case, "thumos14")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=12), st.integers(0, 2 ** 31), st.sampled_from(["activitynet", "thumos14"]))
def test_perfect_predictions_score_one_and_shifting_them_never_raises_ap(lengths, seed, rules):
    rng = np.random.default_rng(seed)
    # instances 50 s apart (longer than any instance or shift), one class, one video
    segs = [(50.0 * k, 50.0 * k + n, "a") for k, n in enumerate(lengths)]
    gt = gt_set({"v": segs})
    scores = rng.permutation(len(segs)) + 1.0
    direction = rng.uniform(0.2, 1.0, len(segs)) * rng.choice([-1, 1], len(segs))
    previous = None
    for amount in (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8):
        shift = [amount * d * (e - s) for d, (s, e, _) in zip(direction, segs)]
        pred = pred_set({"v": [(s + dx + 1000, e + dx + 1000, "a", sc) for (s, e, _), dx, sc in zip(segs, shift, scores)]})
        # move the ground truth with the same 1000 s offset so that no start is negative
        gt_shifted = gt_set({"v": [(s + 1000, e + 1000, lab) for s, e, lab in segs]})
        ap = np.array(ap_of(gt_shifted, pred, (0.3, 0.5, 0.7), rules=rules))
        if amount == 0.0:
            assert ap.tolist() == [1.0, 1.0, 1.0]
        else:
            assert (ap <= previous + 1e-12).all()
        previous = ap
    assert gt.num_segments == len(lengths)


# ---------------------------------------------------------------- the real THUMOS14 ground truth
def generated_predictions(gt: AnnotationSet, per_video: int, seed: int) -> AnnotationSet:
    """Per video: jittered true segments (some with a wrong class) and random ones; distinct scores."""
    rng = np.random.default_rng(seed)
    total = per_video * len(gt.videos)
    scores = rng.permutation(total) / total
    videos, k = {}, 0
    for vid, v in gt.videos.items():
        duration = v.duration or max(s.end for s in v.segments)
        segs = []
        for _ in range(per_video):
            if v.segments and rng.random() < 0.6:
                s = v.segments[rng.integers(len(v.segments))]
                length = s.end - s.start
                a = max(0.0, s.start + rng.normal(0, 0.25) * length)
                b = max(a, s.end + rng.normal(0, 0.25) * length)
                label = s.label if rng.random() < 0.8 else gt.labels[rng.integers(len(gt.labels))]
            else:
                a = rng.uniform(0, duration)
                b = a + rng.uniform(0.5, 15.0)
                label = gt.labels[rng.integers(len(gt.labels))]
            segs.append(Segment(float(a), float(b), label, float(scores[k])))
            k += 1
        videos[vid] = Video(vid, segs)
    return AnnotationSet(videos, list(gt.labels), "generated")


@needs_data
@pytest.mark.parametrize("rules", ["activitynet", "thumos14"])
def test_real_thumos14_ground_truth_matches_the_reference(rules):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        if rules == "activitynet":
            gt = read_ground_truth(THUMOS_DIR / "thumos14.json", subset="test")
        else:
            gt = read_ground_truth(THUMOS_DIR / "thumos14_test_groundtruth.csv", variant="thumos14-test-213-ambiguous")
    assert gt.num_segments == 3358
    pred = generated_predictions(gt, per_video=12, seed=7)
    got = assert_matches_reference(gt, pred, rules)
    assert 0.05 < got.average_mAP < 0.95  # a meaningful case: neither empty nor perfect
    if rules == "thumos14":
        assert sum(got.num_removed_ambiguous) > 0
