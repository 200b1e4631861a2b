"""Per-detection outcomes and precision–recall curves at one tIoU, by the ActivityNet matching rule;
NumPy only, no torch.

The rule (as :mod:`gaf.metrics.detection`): per class, detections by score (ties in file order) each take
the unmatched instance of their class in their video with the highest tIoU ``>= tiou``. Matching never
crosses videos, so a video's outcomes are those of the whole evaluation; the curves rank every class's
detections over all videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from gaf.data.annotations import AnnotationSet, Segment
from gaf.metrics._matching import iou

__all__ = ["PRCurve", "match_video", "precision_recall"]


def match_video(ground_truth: Sequence[Segment], detections: Sequence[Segment], tiou: float = 0.5) -> list[bool]:
    """True / False (true / false positive) for each of one video's ``detections``, in their order."""
    outcome = [False] * len(detections)
    gt_by_class: dict[str, list[int]] = {}
    for j, g in enumerate(ground_truth):
        gt_by_class.setdefault(str(g.label), []).append(j)
    det_by_class: dict[str, list[int]] = {}
    for i, d in enumerate(detections):
        det_by_class.setdefault(str(d.label), []).append(i)
    for label, dets in det_by_class.items():
        gts = gt_by_class.get(label)
        if not gts:
            continue
        gs = np.array([ground_truth[j].start for j in gts], dtype=np.float64)
        ge = np.array([ground_truth[j].end for j in gts], dtype=np.float64)
        taken = np.zeros(len(gts), dtype=bool)
        for i in sorted(dets, key=lambda i: (-float(detections[i].score or 0.0), i)):
            overlap = iou(detections[i].start, max(detections[i].end, detections[i].start), gs, ge)
            overlap[taken] = -1.0
            best = int(np.argmax(overlap))
            if overlap[best] >= tiou:
                taken[best] = True
                outcome[i] = True
    return outcome


@dataclass
class PRCurve:
    """One class's ranked detections: ``recall`` and ``precision`` after each (both (N,)), ``ap`` the
    interpolated AP, ``num_instances`` its ground-truth instances."""

    label: str
    recall: np.ndarray
    precision: np.ndarray
    ap: float
    num_instances: int


def precision_recall(ground_truth: AnnotationSet, predictions: AnnotationSet, tiou: float = 0.5
                     ) -> dict[str, PRCurve]:
    """The precision–recall curve of every ground-truth class at ``tiou`` (classes in the ground truth's
    label order; those without instances left out). ``ap`` equals the evaluator's per-class AP."""
    from gaf.metrics.analysis import interpolated_ap

    npos: dict[str, int] = {}
    for v in ground_truth.videos.values():
        for s in v.segments:
            npos[str(s.label)] = npos.get(str(s.label), 0) + 1
    ranked: dict[str, list[tuple[float, int, bool]]] = {c: [] for c in npos}
    order = 0
    for vid, video in predictions.videos.items():
        gt = ground_truth.videos[vid].segments if vid in ground_truth.videos else []
        for d, ok in zip(video.segments, match_video(gt, video.segments, tiou)):
            if str(d.label) in ranked:
                ranked[str(d.label)].append((-float(d.score or 0.0), order, ok))
            order += 1
    curves = {}
    for label in [str(c) for c in ground_truth.labels if str(c) in npos] + sorted(set(npos) - set(map(str, ground_truth.labels))):
        tp = np.array([ok for _, _, ok in sorted(ranked[label])], dtype=np.float64)
        ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
        curves[label] = PRCurve(label, ctp / npos[label], ctp / np.maximum(ctp + cfp, 1e-12),
                                interpolated_ap(tp, npos[label]), npos[label])
    return curves
