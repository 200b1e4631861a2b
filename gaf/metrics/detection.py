"""Temporal action detection mAP, numerically the ActivityNet official evaluation.

:func:`evaluate_detections` scores predictions against ground truth (both
:class:`~gaf.data.annotations.AnnotationSet`, times in seconds) at several
tIoU thresholds and returns a :class:`DetectionResult` (AP per class and
tIoU, mAP per tIoU, their average).

Default rules, ``rules="activitynet"`` (``Evaluation/eval_detection.py`` of
github.com/activitynet/ActivityNet, ``compute_average_precision_detection``,
``interpolated_prec_rec``, ``segment_iou``); APs equal the official ones to
1e-9 whenever scores are distinct:

* **tIoU** of a prediction ``p`` and a ground truth ``g``: ``inter / union``
  with ``inter = max(0, min(p.end, g.end) - max(p.start, g.start))`` and
  ``union = (g.end - g.start) + (p.end - p.start) - inter``, the same
  floating-point operations as the official ``segment_iou``. A zero union
  (two zero-length segments, or a reversed prediction exactly as long as the
  ground truth) gives tIoU 0, never NaN (the official code divides 0 by 0
  there, and its matching loop takes the NaN as a match at every threshold).
* **Per class**, the predictions of that class are ranked by score,
  descending. **Ties** keep the order of the predictions file (a stable sort
  on ``-score`` over the predictions in file order: videos in file order,
  detections within a video in file order). The official code ranks with
  ``argsort()[::-1]``, which leaves the order of equal scores unspecified; it
  equals ours with ``np.argsort(-score, kind="stable")``.
* **Matching**, at each tIoU threshold independently (a ground truth matched
  at 0.5 is still free at 0.7): in rank order, a prediction is a true
  positive if some ground truth of its video and class with ``tIoU >=
  threshold`` is still unmatched at that threshold; it takes the one with the
  highest tIoU (when that one is taken, the next best unmatched one, and so
  on). Otherwise it is a false positive. So the same detection listed twice
  gives one true positive and one false positive. Ground truths with equal
  tIoU to a prediction are tried in file order (the official order there is
  the unspecified one of ``argsort``).
* Predictions for a video without ground truth of their class, including
  videos absent from the ground truth, are false positives (the official code
  groups the ground truth by video, so they never match). An
  :class:`EvaluationWarning` counts the predictions for absent videos.
* ``tp`` / ``fp`` cumulative sums over the ranking give ``recall = tp / npos``
  (``npos`` = ground-truth instances of the class) and ``precision = tp /
  (tp + fp)``; **AP** is the official ``interpolated_prec_rec``: precision
  points ``[0, p..., 0]`` at recalls ``[0, r..., 1]``, precision made
  non-increasing from the right (its envelope), then the sum of ``(r_i -
  r_{i-1}) * envelope_i`` over the points where recall changes.
* A class of the ground truth with no prediction has AP 0. **mAP** is the
  mean of the APs over the classes that have at least one ground-truth
  instance (the official class list is built from the instances); the
  average mAP is the mean over the tIoU thresholds.
* Predicted labels without ground-truth instances are ignored, with an
  :class:`EvaluationWarning` counting them (the official code raises
  ``KeyError``).
* **Predictions outside their video or reversed** are scored as the official
  code scores them, by the same tIoU: a segment ending before 0 s or
  starting after its video's duration is a false positive unless it
  overlaps ground truth (e.g. an instance written past the video's end); a
  reversed one (end < start) has intersection 0 with everything (the
  official union ``gt_len - |pred_len|`` gives tIoU 0 or -0 there, below
  every threshold), so it is always a false positive (except under the
  official code's 0/0 above, the zero-union rule). One
  :class:`EvaluationWarning` per call counts each kind (reversed, ending
  before 0 s, starting after the video's end).
* A reversed ground-truth segment, a time that is not a real number, not
  finite or beyond ±``MAX_TIME_S`` (1e9 s: past it tIoU unions and search
  keys would overflow to inf/NaN and a perfect match would silently score
  0), a missing / non-finite score, or an unhashable label raises
  :class:`~gaf.errors.AnnotationError` naming the file and the video.
  Negative times are allowed here (the ground-truth readers refuse them; the
  predictions reader takes them). Strings are not numbers here (the readers
  convert numeric strings). ``Video.ambiguous`` intervals are not used by
  these rules.

``rules="thumos14"``: the THUMOS'14 challenge toolkit (``TH14evalDet.m`` /
``TH14eventdetpr.m``, the "updated" version with non-interpolated AP), read
from its public copies:

* Per class and video, detections are ranked by score (ties: file order);
  the **ground truth drives the matching**: each ground truth in file order
  takes, among the detections not yet taken, the one with the highest overlap
  (ties: the better ranked), if that overlap is strictly ``> threshold``.
  Overlap is the same tIoU (its intersection-over-hull is the IoU whenever the
  intervals intersect).
* Unmatched detections that intersect (positive length) an **Ambiguous**
  interval of their video (``Video.ambiguous``) are removed, neither true
  nor false positives; the other unmatched detections are false positives.
  Matched detections stay true positives even when they touch an Ambiguous
  interval. The ground truth must carry its Ambiguous intervals for this to
  act (e.g. variant ``thumos14-test-213-ambiguous``).
* **AP is not interpolated**: the sum of the precisions at the ranks of the
  true positives over the class's detections (ranked by score over all
  videos, ties in file order; the toolkit orders ties by video name), divided
  by the number of ground-truth instances. A class without detections has AP
  0; mAP is the mean over the classes with ground truth.

Both rule sets are vectorised (about 7 ms for THUMOS14 test with 200
predictions per video, 3 of them turning the 42,400 Segment objects into
arrays; see ``bench/eval.py``): predictions are ranked by one sort of packed
(class, score, file position) words; the candidate (prediction, ground
truth) pairs of the same (class, video) whose tIoU may reach the smallest
threshold are found by binary search (such a prediction starts within
``len(gt) / threshold`` before the ground truth); a proposer (prediction, or
ground truth under ``thumos14``) with a single candidate is resolved for all
thresholds at once by integer "levels" (how many thresholds a pair passes),
and only proposers with several candidates are walked in rank order, one per
connected group of competing pairs per step
(:func:`gaf.metrics._matching.greedy`). Predictions without a candidate are
false positives at every threshold and are never visited.
"""

from __future__ import annotations

import math
import numbers
import struct
import warnings
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Mapping, Sequence

import numpy as np

from gaf.data.annotations import MAX_TIME_S, AnnotationSet
from gaf.errors import AnnotationError, ConfigError
from gaf.metrics._matching import candidate_pairs, greedy, iou, rank_order, same_key_pairs, suffix_max

__all__ = ["DEFAULT_TIOUS", "RULES", "DetectionResult", "EvaluationWarning", "evaluate_detections", "map_table",
           "text_table", "format_tiou", "format_percent",
           "segment_iou_matrix"]

DEFAULT_TIOUS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
"""THUMOS14's usual tIoU thresholds; ActivityNet uses 0.5:0.05:0.95."""
RULES: tuple[str, ...] = ("activitynet", "thumos14")


class EvaluationWarning(UserWarning):
    """Predictions were scored, but some were ignored or could never match (see the message)."""


# ---------------------------------------------------------------- tIoU
def segment_iou_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """tIoU of every predicted segment with every ground-truth segment.

    ``pred`` (P, 2) and ``gt`` (G, 2) hold ``[start, end]`` in seconds (any
    unit, the same for both). Returns (P, G) float64 in [0, 1]; a pair of
    zero-length segments has tIoU 0.
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 2)
    return iou(p[:, :1], p[:, 1:], g[None, :, 0], g[None, :, 1])


# ---------------------------------------------------------------- result
def format_tiou(t: float) -> str:
    """A tIoU for a table header: two decimals (0.50), or as many as it needs (0.525)."""
    return f"{t:.2f}" if abs(round(t, 2) - t) < 1e-9 else f"{t:g}"


def format_percent(v: float | None) -> str:
    """An AP fraction as a percentage with two decimals; ``-`` for missing / NaN."""
    return "-" if v is None or not math.isfinite(float(v)) else f"{100.0 * float(v):.2f}"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """A plain-text table with a dashed rule under the header; ``right[i]``: right-align column i (default:
    every column but the first)."""
    right = [i > 0 for i in range(len(header))] if right is None else list(right)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def map_table(tious: Sequence[float], maps: Sequence[float], average: float,
              per_class: Mapping[str, Sequence[float]] | None = None) -> str:
    """The mAP table every command prints, in percent: tIoUs as columns, then ``Avg``. With ``per_class``
    (label → AP per tIoU), the paper's Table III: one row per class (its mean last), a final ``mAP`` row."""
    header = ["tIoU"] + [format_tiou(t) for t in tious] + ["Avg"]
    total = ["mAP (%)"] + [format_percent(v) for v in maps] + [format_percent(average)]
    if per_class is None:
        return text_table(header, [total])
    rows = [[name] + [format_percent(v) for v in aps] + [format_percent(float(np.mean(aps)) if aps else math.nan)]
            for name, aps in per_class.items()]
    header[0] = "class (AP %)"
    return text_table(header, rows + [total])


@dataclass
class DetectionResult:
    """Scores of one evaluation. APs are fractions in [0, 1].

    ``mAP[i]`` and ``per_class_ap[label][i]`` belong to ``tious[i]``;
    ``per_class_ap`` holds the ground-truth classes (those with at least one
    instance) in the ground truth's label order. ``num_ignored_predictions``
    counts predictions whose label has no ground-truth instance.
    ``num_removed_ambiguous[i]`` (``thumos14`` rules only) counts detections
    removed at ``tious[i]`` for touching an Ambiguous interval.
    """

    tious: list[float]
    mAP: list[float]
    average_mAP: float
    per_class_ap: dict[str, list[float]]
    num_ignored_predictions: int
    ground_truth_variant: str | None
    rules: str
    ground_truth_source: str = "<memory>"
    num_videos: int = 0
    num_ground_truth: int = 0
    num_predictions: int = 0
    num_absent_video_predictions: int = 0
    num_removed_ambiguous: list[int] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: ``tious``, ``mAP``, ``average_mAP``, ``per_class_ap`` (label → AP per tIoU), then counts."""
        doc: dict[str, Any] = {
            "tious": list(self.tious), "mAP": list(self.mAP), "average_mAP": self.average_mAP,
            "per_class_ap": {k: list(v) for k, v in self.per_class_ap.items()},
            "rules": self.rules, "ground_truth": self.ground_truth_source,
            "ground_truth_variant": self.ground_truth_variant, "num_videos": self.num_videos,
            "num_ground_truth": self.num_ground_truth, "num_predictions": self.num_predictions,
            "num_ignored_predictions": self.num_ignored_predictions,
            "num_absent_video_predictions": self.num_absent_video_predictions,
        }
        if self.num_removed_ambiguous is not None:
            doc["num_removed_ambiguous"] = list(self.num_removed_ambiguous)
        return doc

    def format_table(self, per_class: bool = False) -> str:
        """Plain-text table in percent: mAP per tIoU and their average.

        ``per_class=True`` gives the table of the paper's Table III instead:
        one row per class (AP per tIoU, then the class's mean), a last ``mAP`` row.
        """
        return map_table(self.tious, self.mAP, self.average_mAP, self.per_class_ap if per_class else None)


# ---------------------------------------------------------------- flattening
@dataclass
class _Flat:
    """Segments flattened in file order: video index (-1: not in the ground truth), class index (-1: none)."""

    video: np.ndarray
    label: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray
    names: list[str]  # video id of each segment's video, for messages
    unknown_labels: dict[str, int]
    reversed: np.ndarray  # (N,) bool: a prediction with end < start (its end set to its start; never matched)


def _gather(aset: AnnotationSet) -> tuple[list[Any], list[int], list[str]]:
    """Every segment in file order, the number per video with segments, and those videos' ids."""
    segs: list[Any] = []
    counts: list[int] = []
    names: list[str] = []
    for vid, video in aset.videos.items():
        if video.segments:
            segs += video.segments
            counts.append(len(video.segments))
            names.append(vid)
    return segs, counts, names


def _real(x: Any) -> float:
    """``x`` as a float when it is a real number (int, float, NumPy scalar), else NaN (rejected by the caller).

    Ints too large for a float give ±inf (also rejected). Strings, bytes,
    None, arrays and other objects are no numbers here.
    """
    if not isinstance(x, numbers.Real):
        return math.nan
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf
    except (TypeError, ValueError):
        return math.nan


def _float64(values: list[Any]) -> np.ndarray:
    """``values`` as a 1-D float64 array, NaN for a non-number (:func:`_real`); ``struct`` converts a list fastest."""
    try:
        return np.frombuffer(struct.pack(f"{len(values)}d", *values), dtype=np.float64)
    except (struct.error, OverflowError, TypeError):  # None, a string, an array, an int beyond float range
        return np.fromiter((_real(v) for v in values), dtype=np.float64, count=len(values))


def _flatten(aset: AnnotationSet, gathered: tuple[list[Any], list[int], list[str]], labels: list[Any],
             video_index: dict[str, int], class_index: dict[str, int], *, scored: bool) -> _Flat:
    """Arrays of the segments ``gathered`` by :func:`_gather`, whose labels are ``labels``.

    One Python-level pass per field (attribute reads, then one C call to
    convert), as the 40,000-odd segments of a predictions file make this
    the evaluator's largest cost.
    """
    segs, counts, names = gathered
    start = _float64([s.start for s in segs])
    end = _float64([s.end for s in segs])
    score = _float64([s.score for s in segs]) if scored else np.zeros(len(segs))
    # |t| <= MAX_TIME_S also rules out NaN; end - start then stays finite, as do the unions and search keys.
    reverse = end < start
    ok = (np.all(np.abs(start) <= MAX_TIME_S) and np.all(np.abs(end) <= MAX_TIME_S) and np.isfinite(score).all()
          and (scored or not reverse.any()))
    if not ok:
        _raise_bad_segment(aset, scored)
    if scored and reverse.any():  # never matched: an empty interval at its start (a false positive)
        end = np.where(reverse, start, end)
    vmap = np.array([video_index.get(n, -1) for n in names], dtype=np.int64)
    unknown: dict[str, int] = {}
    try:
        try:
            # itemgetter looks every label up in one C loop; small class ids convert fastest through bytes.
            ids = itemgetter(*labels)(class_index) if len(labels) > 1 else tuple(class_index[x] for x in labels)
            if len(class_index) <= 256:
                label = np.frombuffer(bytes(ids), dtype=np.uint8).astype(np.int64)
            else:
                label = np.array(ids, dtype=np.int64)
        except KeyError:
            label = np.array([class_index.get(name, -1) for name in labels], dtype=np.int64)
            for name in labels:
                if name not in class_index:
                    unknown[name] = unknown.get(name, 0) + 1
    except TypeError:  # an unhashable label (a list, an array): no class name
        _raise_bad_label(aset, scored)
        raise
    video = np.repeat(vmap, np.array(counts, dtype=np.int64))
    return _Flat(video, label, start, end, score, names, unknown, reverse)


def _short(x: Any) -> str:
    try:
        text = repr(x)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not hide the real error
        text = f"<{type(x).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _all_hashable(labels: list[Any]) -> bool:
    try:
        set(labels)
    except TypeError:
        return False
    return True


def _raise_bad_label(aset: AnnotationSet, scored: bool) -> None:
    """Raise AnnotationError naming the first segment of ``aset`` whose label cannot be a class name."""
    what = "prediction" if scored else "ground truth"
    for vid, video in aset.videos.items():
        for i, s in enumerate(video.segments):
            if not _all_hashable([s.label]):
                raise AnnotationError(f"{aset.source}: video {vid!r}: {what} {i}: label: expected a class name, "
                                      f"got {_short(s.label)}")
    raise AnnotationError(f"{aset.source}: malformed labels")  # pragma: no cover - defensive


def _raise_bad_segment(aset: AnnotationSet, scored: bool) -> None:
    """Raise AnnotationError naming the first segment of ``aset`` that :func:`_flatten` refuses, and why."""
    what = "prediction" if scored else "ground truth"
    for vid, video in aset.videos.items():
        for i, s in enumerate(video.segments):
            label = s.label if isinstance(s.label, str) else _short(s.label)
            where = f"{aset.source}: video {vid!r}: {what} {i} ({label})"
            start, end = _real(s.start), _real(s.end)
            if math.isnan(start) or math.isnan(end):
                kind = "not finite" if isinstance(s.start, numbers.Real) and isinstance(s.end, numbers.Real) \
                    else "not numbers"
                raise AnnotationError(f"{where}: segment: {kind}: [{_short(s.start)}, {_short(s.end)}]")
            if not (math.isfinite(start) and math.isfinite(end)):
                raise AnnotationError(f"{where}: segment: not finite: [{start}, {end}]")
            if abs(start) > MAX_TIME_S or abs(end) > MAX_TIME_S:
                raise AnnotationError(f"{where}: segment: [{start}, {end}] s reaches beyond ±{MAX_TIME_S:g} s "
                                      "(about 32 years; times are seconds)")
            if end < start and not scored:
                raise AnnotationError(f"{where}: segment: end {end} < start {start} (reversed segment)")
            if scored and not math.isfinite(_real(s.score)):
                raise AnnotationError(f"{where}: score: must be a finite number, got {_short(s.score)}")
    raise AnnotationError(f"{aset.source}: malformed segments")  # pragma: no cover - defensive


# ---------------------------------------------------------------- AP
def _true_positives(rows: list[np.ndarray], p_class: np.ndarray) -> tuple[np.ndarray, ...]:
    """The true positives, ``rows[i]`` the ranks matched at threshold i (ascending): threshold, rank, class,
    count within (threshold, class), and where a (threshold, class) group starts; sorted by (threshold, rank)."""
    ti = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    rank = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    cls = p_class[rank]
    new = np.r_[True, (ti[1:] != ti[:-1]) | (cls[1:] != cls[:-1])]
    idx = np.arange(len(ti))
    count = idx - np.maximum.accumulate(np.where(new, idx, 0)) + 1
    return ti, rank, cls, count, new


def _activitynet_ap(got: list[np.ndarray], p_class: np.ndarray, class_bounds: np.ndarray,
                    npos: np.ndarray) -> np.ndarray:
    """Official ``interpolated_prec_rec`` for every class and threshold; returns (T, C).

    ``got[i]`` lists the true positives at threshold i, ascending, among
    the predictions indexed by rank (classes contiguous, ``class_bounds``;
    ``p_class`` their class). Recall changes exactly at the true positives, so only they enter the sum (the
    appended end point adds ``(1 - r) * 0``); there ``tp + fp`` is the
    position within the class and the precision envelope is the largest
    precision at this or a later true positive of the class.
    """
    ap = np.zeros((len(got), len(npos)))
    ti, rank, cls, count, new = _true_positives(got, p_class)
    if len(ti) == 0:
        return ap
    ctp = count.astype(np.float64)
    prec = ctp / (rank - class_bounds[cls] + 1).astype(np.float64)
    rec = ctp / npos[cls]
    prev = (ctp - 1.0) / npos[cls]
    starts = np.flatnonzero(new)
    contrib = (rec - prev) * suffix_max(prec, starts)
    ap[ti[starts], cls[starts]] = np.add.reduceat(contrib, starts)
    return ap


def _thumos_ap(got: np.ndarray, removed: np.ndarray, p_class: np.ndarray, class_bounds: np.ndarray,
               npos: np.ndarray) -> np.ndarray:
    """TH14 toolkit AP: sum of the precisions at the true positives / npos, for every class and threshold (T, C).

    Predictions are indexed by rank, as for :func:`_activitynet_ap`.
    ``removed`` (T, P) marks detections dropped for touching an Ambiguous
    interval: they count neither as true nor as false positives.
    """
    T, P = got.shape
    ap = np.zeros((T, len(npos)))
    ti, rank, cls, count, new = _true_positives([np.flatnonzero(row) for row in got], p_class)
    if len(ti) == 0:
        return ap
    rt, rp = np.nonzero(removed)
    removed_key = rt * P + rp  # sorted: np.nonzero is row-major
    before = (np.searchsorted(removed_key, ti * P + rank)
              - np.searchsorted(removed_key, ti * P + class_bounds[cls]))
    ctp = count.astype(np.float64)
    prec = ctp / (rank - class_bounds[cls] + 1 - before).astype(np.float64)
    starts = np.flatnonzero(new)
    ap[ti[starts], cls[starts]] = np.add.reduceat(prec, starts) / npos[cls[starts]]
    return ap


# ---------------------------------------------------------------- evaluation
def _check_tious(tious: Sequence[float]) -> np.ndarray:
    try:
        values = np.asarray([float(t) for t in tious], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"tious: expected numbers in (0, 1], got {list(tious)!r}") from None
    if values.size == 0 or not np.all((values > 0) & (values <= 1)):
        raise ConfigError(f"tious: expected one or more thresholds in (0, 1], got {values.tolist()}")
    return values


def _scored_classes(ground_truth: AnnotationSet, gt_labels: list) -> list[str]:
    """The classes mAP averages over: those with an instance, in the ground truth's label order (labels not
    declared in it after, in order of first appearance)."""
    try:
        present = dict.fromkeys(gt_labels)  # first-appearance order
    except TypeError:  # an unhashable label
        _raise_bad_label(ground_truth, False)
        raise
    declared = set(ground_truth.labels)
    classes = [c for c in ground_truth.labels if c in present] + [c for c in present if c not in declared]
    if not classes:
        raise AnnotationError(f"{ground_truth.source}: the ground truth has no action instance to score against")
    return classes


def _outside_counts(pr, keep: np.ndarray, ground_truth: AnnotationSet) -> list[tuple[str, np.ndarray]]:
    """The scored predictions outside their video or reversed, by kind: ending before 0 s, starting after
    their video's duration (when it is known), reversed (end < start); each counted once (a reversed one as
    reversed)."""
    durations = np.array([_real(v.duration) if v.duration is not None else math.inf
                          for v in ground_truth.videos.values()] + [math.inf])  # the last: videos absent (-1)
    ordered = keep & ~pr.reversed
    before = ordered & (pr.end < 0)
    after = ordered & ~before & (pr.start > durations[pr.video])  # NaN duration: never after
    return [("ending before 0 s", before), ("starting after their video's end", after),
            ("reversed (end < start)", keep & pr.reversed)]


def _nth_segment(aset: AnnotationSet, index: int) -> tuple[str, Any]:
    """The video id and segment at position ``index`` of ``aset`` in file order (as :func:`_gather` flattens)."""
    for vid, video in aset.videos.items():
        if index < len(video.segments):
            return vid, video.segments[index]
        index -= len(video.segments)
    raise IndexError(index)  # pragma: no cover - callers index flattened segments


def _warn_and_mark(predictions: AnnotationSet, ground_truth: AnnotationSet, pr, keep: np.ndarray,
                   video_index: dict) -> int:
    """Warn (EvaluationWarning) about predictions that are ignored (unknown labels), outside their video
    or reversed (one warning counting each kind; reversed ones are marked matched-by-nothing in
    ``pr.video``), or in videos absent from the ground truth; returns how many are in absent videos."""
    if pr.unknown_labels:
        shown = ", ".join(f"{k!r} ({n})" for k, n in sorted(pr.unknown_labels.items())[:5])
        more = "" if len(pr.unknown_labels) <= 5 else f" and {len(pr.unknown_labels) - 5} more"
        warnings.warn(EvaluationWarning(
            f"{predictions.source}: {sum(pr.unknown_labels.values())} prediction(s) with "
            f"{len(pr.unknown_labels)} label(s) that have no instance in the ground truth "
            f"({ground_truth.source}) were ignored: {shown}{more}"), stacklevel=3)
    kinds = [(name, mask) for name, mask in _outside_counts(pr, keep, ground_truth) if mask.any()]
    if kinds:
        vid, seg = _nth_segment(predictions, int(np.argmax(np.logical_or.reduce([mask for _, mask in kinds]))))
        total = sum(int(np.count_nonzero(mask)) for _, mask in kinds)
        counts = ", ".join(f"{int(np.count_nonzero(mask))} {name}" for name, mask in kinds)
        warnings.warn(EvaluationWarning(
            f"{predictions.source}: {total} predicted segment(s) outside their video or reversed: {counts} "
            f"(e.g. video {vid!r} [{_short(seg.start)}, {_short(seg.end)}]); scored as the official ActivityNet "
            "evaluation scores them: false positives unless they overlap ground truth (a reversed one never "
            "does)"), stacklevel=3)
    if pr.reversed.any():
        pr.video = np.where(pr.reversed, -1, pr.video)  # matched by nothing
    num_absent = int(np.count_nonzero(keep & (pr.video < 0) & ~pr.reversed))
    if num_absent:
        absent_videos = [n for n in pr.names if n not in video_index]
        warnings.warn(EvaluationWarning(
            f"{predictions.source}: {num_absent} prediction(s) in {len(absent_videos)} video(s) absent from the "
            f"ground truth ({ground_truth.source}; e.g. {absent_videos[0]!r}) count as false positives"),
            stacklevel=3)
    return num_absent


def evaluate_detections(ground_truth: AnnotationSet, predictions: AnnotationSet,
                        tious: Sequence[float] = DEFAULT_TIOUS, *, rules: str = "activitynet") -> DetectionResult:
    """Score ``predictions`` against ``ground_truth`` at each tIoU in ``tious`` (module docstring gives the rules).

    ``predictions`` need a finite ``score`` on every segment; its videos and
    segments in file order (the tie-break). ``rules`` is ``"activitynet"``
    (default, the ActivityNet official evaluation) or ``"thumos14"`` (the
    THUMOS'14 toolkit: Ambiguous intervals, non-interpolated AP).
    """
    if rules not in RULES:
        raise ConfigError(f"rules: expected one of {', '.join(RULES)}, got {rules!r}")
    thr = _check_tious(tious)
    gt_segments = _gather(ground_truth)
    gt_labels = [s.label for s in gt_segments[0]]
    classes = _scored_classes(ground_truth, gt_labels)
    class_index = {c: i for i, c in enumerate(classes)}
    video_index = {vid: i for i, vid in enumerate(ground_truth.videos)}
    gt = _flatten(ground_truth, gt_segments, gt_labels, video_index, class_index, scored=False)
    pr_segments = _gather(predictions)
    pr = _flatten(predictions, pr_segments, [s.label for s in pr_segments[0]], video_index, class_index,
                  scored=True)
    num_predictions = len(pr.label)
    keep = pr.label >= 0
    num_absent = _warn_and_mark(predictions, ground_truth, pr, keep, video_index)
    P = int(keep.sum())
    C, V = len(classes), len(video_index)

    # A kept prediction's rank: by class, score descending, ties in file order. Matching and AP index
    # predictions by rank; the arrays stay in file order (`rank` maps one to the other).
    if P == num_predictions:
        p_video, p_label, p_start, p_end, p_score = pr.video, pr.label, pr.start, pr.end, pr.score
    else:
        p_video, p_label, p_start, p_end, p_score = (x[keep] for x in (pr.video, pr.label, pr.start, pr.end,
                                                                        pr.score))
    rank = np.empty(P, dtype=np.int64)
    rank[rank_order(p_score, p_label, C)] = np.arange(P)
    per_class = np.bincount(p_label, minlength=C)
    class_bounds = np.r_[0, np.cumsum(per_class)]
    rank_class = np.repeat(np.arange(C), per_class)  # class of each rank
    p_block = np.where(p_video >= 0, p_label * V + p_video, -1)
    g_block = gt.label * V + gt.video
    tmin = float(thr.min())
    pi, gj = candidate_pairs(p_block, p_start, p_end, g_block, gt.start, gt.end, tmin)
    overlap = iou(p_start[pi], p_end[pi], gt.start[gj], gt.end[gj])
    strict = rules == "thumos14"
    cand = (overlap > tmin) if strict else (overlap >= tmin)
    cand &= p_block[pi] == g_block[gj]
    pr_rank, gj, overlap = rank[pi[cand]], gj[cand], overlap[cand]
    G = len(g_block)
    npos = np.bincount(gt.label, minlength=C)
    removed_counts = None
    if rules == "activitynet":
        tp, _ = greedy(pr_rank, gj, overlap, np.arange(G), P, G, thr, strict=False, want_targets=False)
        ap = _activitynet_ap(tp, rank_class, class_bounds, npos)
    else:
        _, tp = greedy(gj, pr_rank, overlap, np.arange(P), G, P, thr, strict=True)
        touches = np.zeros(P, dtype=bool)
        touches[rank] = _touches_ambiguous(ground_truth, video_index, p_video, p_start, p_end)
        removed = ~tp & touches[None, :]
        removed_counts = [int(x) for x in removed.sum(axis=1)]
        ap = _thumos_ap(tp, removed, rank_class, class_bounds, npos)
    maps = ap.mean(axis=1)
    return DetectionResult(
        tious=[float(t) for t in thr], mAP=[float(m) for m in maps], average_mAP=float(maps.mean()),
        per_class_ap={c: [float(x) for x in ap[:, k]] for k, c in enumerate(classes)},
        num_ignored_predictions=num_predictions - P, ground_truth_variant=ground_truth.variant, rules=rules,
        ground_truth_source=ground_truth.source, num_videos=len(ground_truth.videos),
        num_ground_truth=len(gt.label), num_predictions=num_predictions, num_absent_video_predictions=num_absent,
        num_removed_ambiguous=removed_counts)


def _touches_ambiguous(ground_truth: AnnotationSet, video_index: dict[str, int], p_video: np.ndarray,
                       p_start: np.ndarray, p_end: np.ndarray) -> np.ndarray:
    """(P,) bool: the prediction's interval intersects an Ambiguous interval of its video with positive length."""
    rows = [(video_index[vid], float(s), float(e)) for vid, v in ground_truth.videos.items() for s, e in v.ambiguous]
    if not rows or len(p_video) == 0:
        return np.zeros(len(p_video), dtype=bool)
    amb = np.asarray(rows, dtype=np.float64)
    amb = amb[np.argsort(amb[:, 0], kind="stable")]
    i, j = same_key_pairs(p_video, amb[:, 0].astype(np.int64))
    hit = np.minimum(p_end[i], amb[j, 2]) - np.maximum(p_start[i], amb[j, 1]) > 0
    out = np.zeros(len(p_video), dtype=bool)
    out[i[hit]] = True
    return out
