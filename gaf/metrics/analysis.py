"""Error analysis of temporal action detections (Alwassel et al., "Diagnosing Error in Temporal Action
Detectors", ECCV 2018 — DETAD), on any ground truth and predictions gaf reads; NumPy only, no torch.

Definitions (written from the paper's; the names are DETAD's):

* **Limited predictions.** For each class with ``N_c`` ground-truth instances, its predictions sorted by
  score (ties in file order) are cut to the top ``groups × N_c`` (``groups`` = 10); the rank ``r`` of a
  prediction within its class puts it in slice ``r // N_c``: the "1G", "2G", … "10G" of the profile.
  Predictions of classes without instances are left out (as the evaluator ignores them).
* **Matching** at a threshold ``t`` is the ActivityNet rule: per class, predictions by score, each takes
  the unmatched instance of its video with the highest tIoU ``>= t``; a match is a true positive.
* **Error types** of every other prediction, from the instance of its video with the highest tIoU, any
  class: tIoU ``>= t`` — *double detection* when that instance has the prediction's class (it was taken
  by a higher-scoring prediction), else *wrong label*; ``min_tiou <= tIoU < t`` (``min_tiou`` = 0.1) —
  *localization* when the class agrees, else *confusion*; below ``min_tiou`` (or no instance in the
  video) — *background*.
* **Profile**: the share of each type among the predictions of each slice, averaged over thresholds.
* **mAP gain** of an error type: the average mAP after removing the predictions of that type (the
  others keep their true/false status), minus the average mAP of the limited predictions.
* **Sensitivity** to an instance characteristic (length in seconds, instances of its class per video,
  coverage = length / video duration), per bin: the *normalized* AP (precision computed with the
  average number of instances per class, so bins of different sizes compare) of the instances in the
  bin, where predictions matched to instances outside the bin are left out; averaged over classes
  with instances in the bin and over thresholds.
* **False negatives** per bin: the share of the bin's instances that no limited prediction matches,
  averaged over thresholds.

Bins are DETAD's: THUMOS14 lengths (0, 3], (3, 6], (6, 12], (12, 18], > 18 s and instances per video 1,
2–40, 41–80, > 80; ActivityNet lengths (0, 30], (30, 60], (60, 120], (120, 180], > 180 s and instances
1, 2–4, 5–8, > 8; coverage bins (0, .02], … (.08, 1] for THUMOS14, fifths of (0, 1] for ActivityNet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from gaf.data.annotations import AnnotationSet
from gaf.errors import AnnotationError
from gaf.metrics._matching import iou as tiou_of

__all__ = ["ERROR_TYPES", "BINS", "ErrorAnalysis", "analyze_detections", "interpolated_ap", "protocol_of",
           "default_tious"]

ERROR_TYPES = ("true_positive", "double_detection", "wrong_label", "localization", "confusion", "background")
_TP, _DOUBLE, _WRONG, _LOC, _CONF, _BG = range(6)

# (edges, labels); a value v falls in bin i when edges[i] < v <= edges[i + 1]
BINS: dict[str, dict[str, tuple[tuple[float, ...], tuple[str, ...]]]] = {
    "thumos14": {
        "length": ((0, 3, 6, 12, 18, math.inf), ("XS", "S", "M", "L", "XL")),
        "num_instances": ((-1, 1, 40, 80, math.inf), ("XS", "S", "M", "L")),
        "coverage": ((0, 0.02, 0.04, 0.06, 0.08, 1.0), ("XS", "S", "M", "L", "XL")),
    },
    "activitynet": {
        "length": ((0, 30, 60, 120, 180, math.inf), ("XS", "S", "M", "L", "XL")),
        "num_instances": ((-1, 1, 4, 8, math.inf), ("XS", "S", "M", "L")),
        "coverage": ((0, 0.2, 0.4, 0.6, 0.8, 1.0), ("XS", "S", "M", "L", "XL")),
    },
}


def protocol_of(gt: AnnotationSet) -> str:
    """``"activitynet"`` for a ground truth that looks like ActivityNet (>= 100 classes, or ``v_<youtube id>``
    video ids), else ``"thumos14"`` (the field's default protocol): picks default tIoUs and DETAD's bins."""
    ids = list(gt.videos)[:200]
    anet = len(gt.labels) >= 100 or (bool(ids) and all(v.startswith("v_") and len(v) == 13 for v in ids))
    return "activitynet" if anet else "thumos14"


def default_tious(protocol: str) -> list[float]:
    """DETAD's thresholds: 0.5 on THUMOS14, 0.5:0.05:0.95 on ActivityNet."""
    return [0.5] if protocol == "thumos14" else [round(0.5 + 0.05 * k, 10) for k in range(10)]


def interpolated_ap(tp: np.ndarray, npos: int, *, normalizer: float | None = None) -> float:
    """ActivityNet's interpolated AP of ranked true-positive flags ``tp`` (1/0) against ``npos`` instances.

    ``normalizer``: DETAD's normalized precision ``rec·N / (rec·N + fp)`` with ``N = normalizer`` instead
    of ``tp / (tp + fp)``.
    """
    if npos <= 0 or len(tp) == 0:
        return 0.0
    tp = np.asarray(tp, dtype=np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
    rec = ctp / npos
    prec = ctp / np.maximum(ctp + cfp, 1e-12) if normalizer is None else \
        rec * normalizer / np.maximum(rec * normalizer + cfp, 1e-12)
    mprec = np.concatenate([[0.0], prec, [0.0]])
    mrec = np.concatenate([[0.0], rec, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


@dataclass
class ErrorAnalysis:
    """What :func:`analyze_detections` found (fractions in [0, 1], mAP values in [0, 1])."""

    tious: list[float]
    protocol: str
    groups: int
    average_map: float  # of the limited predictions
    profile: list[dict[str, float]]  # per slice 1G..groups·G: share of each error type
    profile_counts: list[int]  # predictions in each slice
    error_shares: dict[str, float]  # over all limited predictions
    map_gain: dict[str, float]  # error type (not true_positive) -> average-mAP gain if removed
    sensitivity: dict[str, dict[str, float | None]]  # characteristic -> bin -> normalized mAP (None: empty)
    false_negatives: dict[str, dict[str, float | None]]  # characteristic -> bin -> missed share
    bin_counts: dict[str, dict[str, int]]  # characteristic -> bin -> instances
    num_predictions: int
    num_limited: int
    num_instances: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def format(self) -> str:
        """Plain-text tables, in percent."""
        out = [f"error analysis (DETAD) at tIoU {', '.join(f'{t:g}' for t in self.tious)} ({self.protocol} bins); "
               f"{self.num_limited} of {self.num_predictions} predictions (top {self.groups}G per class), "
               f"{self.num_instances} instances; average mAP {100 * self.average_map:.2f}"]
        names = ERROR_TYPES
        head = "slice  " + "  ".join(f"{n:>16}" for n in names)
        out += ["", "false-positive profile (% of each slice's predictions)", head]
        for g, row in enumerate(self.profile):
            if self.profile_counts[g]:
                out.append(f"{g + 1:>3}G   " + "  ".join(f"{100 * row[n]:16.1f}" for n in names))
        out.append("all    " + "  ".join(f"{100 * self.error_shares[n]:16.1f}" for n in names))
        out += ["", "average-mAP gain if an error type were removed (points)"]
        out += [f"  {n:<18} {100 * v:+6.2f}" for n, v in self.map_gain.items()]
        for title, table in (("sensitivity: normalized mAP (%) per bin", self.sensitivity),
                             ("false negatives: % of the bin's instances missed", self.false_negatives)):
            out += ["", title]
            for char, bins in table.items():
                cells = "  ".join(f"{b}={'—' if v is None else f'{100 * v:.1f}'} (n={self.bin_counts[char][b]})"
                                  for b, v in bins.items())
                out.append(f"  {char:<14} {cells}")
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def _bin_of(value: float, edges: Sequence[float], labels: Sequence[str]) -> str | None:
    for i, label in enumerate(labels):
        if edges[i] < value <= edges[i + 1]:
            return label
    return None


def _error_types(tious: Sequence[float], order: list[int], overlaps: list[tuple[np.ndarray, np.ndarray]],
                 g_label: list[str], p_label: list[str], num_gt: int, min_tiou: float) -> tuple[np.ndarray, np.ndarray]:
    """DETAD's matching, per tIoU: predictions in ``order`` (class, then score) each take the free instance
    of its class with the highest tIoU ≥ the threshold (a true positive); the others are typed by their
    best overlap (double detection, wrong label, localization, confusion, background). Returns
    ``types (T, P)`` and ``matched_to (T, P)`` (instance index, or -1)."""
    T, P = len(tious), len(p_label)
    types = np.full((T, P), _BG, dtype=np.int64)
    matched_to = np.full((T, P), -1, dtype=np.int64)
    for t, thr in enumerate(tious):
        taken = np.zeros(num_gt, dtype=bool)
        for i in order:
            idx, iou = overlaps[i]
            if len(idx) == 0:
                continue
            same = np.array([g_label[j] == p_label[i] for j in idx])
            for k in np.argsort(-iou, kind="stable"):
                if iou[k] < thr:
                    break
                if same[k] and not taken[idx[k]]:
                    taken[idx[k]] = True
                    matched_to[t, i] = idx[k]
                    types[t, i] = _TP
                    break
            if types[t, i] == _TP:
                continue
            best = int(np.argmax(iou))
            top, agree = float(iou[best]), bool(same[best])
            if top >= thr:
                types[t, i] = _DOUBLE if agree else _WRONG
            elif top >= min_tiou:
                types[t, i] = _LOC if agree else _CONF
    return types, matched_to


def _false_positive_profile(types: np.ndarray, p_slice: np.ndarray, groups: int):
    """Per rank group (the top N_c of a class, the next N_c, ...) the share of each error type, averaged over
    the tIoUs; the group sizes; and each type's share over all kept predictions."""
    T, P = types.shape
    profile, profile_counts = [], []
    for g in range(groups):
        in_slice = p_slice == g
        n = int(in_slice.sum())
        profile_counts.append(n)
        profile.append({name: (float(np.mean([(types[t, in_slice] == e).mean() for t in range(T)])) if n else 0.0)
                        for e, name in enumerate(ERROR_TYPES)})
    shares = {name: float(np.mean([(types[t] == e).mean() for t in range(T)])) if P else 0.0
              for e, name in enumerate(ERROR_TYPES)}
    return profile, profile_counts, shares


def _sensitivity(bins_of: dict, values: dict[str, np.ndarray], types: np.ndarray, matched_to: np.ndarray,
                 class_preds: dict[str, list[int]], g_label: list[str], npos: dict[str, int]):
    """Per characteristic and bin: the normalized mAP on the instances in the bin (DETAD's sensitivity,
    AP normalized to the mean class size), the share of them missed, and their count."""
    T = types.shape[0]
    mean_npos = float(np.mean(list(npos.values())))
    labels_arr = np.array(g_label)
    sensitivity: dict[str, dict[str, float | None]] = {}
    false_neg: dict[str, dict[str, float | None]] = {}
    counts: dict[str, dict[str, int]] = {}
    for char, (edges, labels) in bins_of.items():
        bins = np.array([_bin_of(v, edges, labels) if not math.isnan(v) else None for v in values[char]],
                        dtype=object)
        sensitivity[char], false_neg[char], counts[char] = {}, {}, {}
        for b in labels:
            inside = bins == b
            counts[char][b] = int(inside.sum())
            if not inside.any():
                sensitivity[char][b] = None
                false_neg[char][b] = None
                continue
            aps, missed = [], []
            for t in range(T):
                hit = np.zeros(len(g_label), dtype=bool)
                hit[matched_to[t][matched_to[t] >= 0]] = True
                missed.append(float((~hit[inside]).mean()))
                for c in class_preds:
                    n_c = int(np.sum(inside & (labels_arr == c)))
                    if n_c == 0:
                        continue
                    ranked = [i for i in class_preds[c] if matched_to[t, i] < 0 or inside[matched_to[t, i]]]
                    aps.append(interpolated_ap(types[t, ranked] == _TP, n_c, normalizer=mean_npos))
            sensitivity[char][b] = float(np.mean(aps)) if aps else None
            false_neg[char][b] = float(np.mean(missed))
    return sensitivity, false_neg, counts


def analyze_detections(ground_truth: AnnotationSet, predictions: AnnotationSet, tious: Sequence[float] = (0.5,),
                       *, protocol: str = "thumos14", groups: int = 10, min_tiou: float = 0.1) -> ErrorAnalysis:
    """DETAD's false-positive, sensitivity and false-negative analyses (module docstring gives the rules).

    ``protocol`` picks the characteristic bins (``"thumos14"`` or ``"activitynet"``). Predictions of
    videos absent from the ground truth count as background errors.
    """
    if protocol not in BINS:
        raise ValueError(f"protocol must be one of {', '.join(BINS)}, got {protocol!r}")
    if groups < 1 or not 0 < min_tiou < min(tious, default=1.0) <= 1:
        raise ValueError(f"groups >= 1 and 0 < min_tiou < every tIoU required, got {groups}, {min_tiou}, {tious}")
    # ---- ground truth, by video
    gt_rows = [(vid, s.start, s.end, str(s.label), v.duration) for vid, v in ground_truth.videos.items()
               for s in v.segments]
    if not gt_rows:
        raise AnnotationError(f"{ground_truth.source}: the ground truth has no action instance to analyze")
    g_vid = [r[0] for r in gt_rows]
    g_start = np.array([r[1] for r in gt_rows], dtype=np.float64)
    g_end = np.array([r[2] for r in gt_rows], dtype=np.float64)
    g_label = [r[3] for r in gt_rows]
    by_video: dict[str, np.ndarray] = {}
    for i, vid in enumerate(g_vid):
        by_video.setdefault(vid, []).append(i)  # type: ignore[attr-defined]
    by_video = {k: np.array(v, dtype=np.int64) for k, v in by_video.items()}
    classes = sorted(set(g_label))
    npos = {c: g_label.count(c) for c in classes}
    # ---- predictions: limited to the top groups * N_c of each class
    rows = [(vid, s.start, s.end, str(s.label), float(s.score), k) for k, (vid, v, s) in
            enumerate((vid, v, s) for vid, v in predictions.videos.items() for s in v.segments)]
    num_predictions = len(rows)
    limited: list[tuple] = []  # (vid, start, end, label, score, rank_in_class)
    for c in classes:
        mine = sorted((r for r in rows if r[3] == c), key=lambda r: (-r[4], r[5]))[: groups * npos[c]]
        limited += [(r[0], r[1], r[2], r[3], r[4], rank) for rank, r in enumerate(mine)]
    P = len(limited)
    p_vid = [r[0] for r in limited]
    p_start = np.array([r[1] for r in limited], dtype=np.float64)
    p_end = np.maximum(np.array([r[2] for r in limited], dtype=np.float64), p_start)  # reversed: empty
    p_label = [r[3] for r in limited]
    p_slice = np.array([r[5] // npos[r[3]] for r in limited], dtype=np.int64)
    order = sorted(range(P), key=lambda i: (p_label[i], -limited[i][4], limited[i][5]))  # class, score
    # ---- tIoU of every prediction with the instances of its video
    overlaps = [(by_video.get(p_vid[i], np.zeros(0, np.int64)),
                 tiou_of(p_start[i], p_end[i], g_start[by_video[p_vid[i]]], g_end[by_video[p_vid[i]]])
                 if p_vid[i] in by_video else np.zeros(0)) for i in range(P)]
    T = len(tious)
    types, matched_to = _error_types(tious, order, overlaps, g_label, p_label, len(gt_rows), min_tiou)
    # ---- APs: base and with each error type removed
    class_preds = {c: [i for i in order if p_label[i] == c] for c in classes}

    def average_map(drop: int | None = None) -> float:
        aps = []
        for t in range(T):
            for c in classes:
                ranked = [i for i in class_preds[c] if drop is None or types[t, i] != drop]
                aps.append(interpolated_ap(types[t, ranked] == _TP, npos[c]))
        return float(np.mean(aps))

    base = average_map()
    gain = {ERROR_TYPES[e]: average_map(e) - base for e in range(1, 6)}
    profile, profile_counts, shares = _false_positive_profile(types, p_slice, groups)
    # ---- characteristics of every instance
    per_video_class: dict[tuple[str, str], int] = {}
    for vid, lab in zip(g_vid, g_label):
        per_video_class[(vid, lab)] = per_video_class.get((vid, lab), 0) + 1
    values = {"length": g_end - g_start,
              "num_instances": np.array([per_video_class[(v, lab)] for v, lab in zip(g_vid, g_label)], dtype=float),
              "coverage": np.array([(e - s) / d if d else math.nan for (_, s, e, _, d) in gt_rows])}
    notes = []
    if np.isnan(values["coverage"]).any():
        notes.append("coverage needs video durations: instances of videos without one are left out of it")
    sensitivity, false_neg, counts = _sensitivity(BINS[protocol], values, types, matched_to, class_preds,
                                                  g_label, npos)
    return ErrorAnalysis(tious=[float(t) for t in tious], protocol=protocol, groups=groups, average_map=base,
                         profile=profile, profile_counts=profile_counts, error_shares=shares, map_gain=gain, sensitivity=sensitivity,
                         false_negatives=false_neg, bin_counts=counts, num_predictions=num_predictions,
                         num_limited=P, num_instances=len(gt_rows), notes=notes)
