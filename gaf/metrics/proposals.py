"""Temporal action proposals: average recall at an average number of proposals per video (AR@AN) and the
area under the AR–AN curve, as the ActivityNet proposal task defines them (its ``eval_proposal.py``);
NumPy only, no torch.

The rules, as the official code applies them (written from its behaviour):

* The videos are the ground truth's videos with at least one instance; proposals of other videos are
  not scored but count in the total ``P`` of the file's proposals.
* With ``A`` = ``max_avg_proposals`` (default 100) and ``V`` videos, every video keeps its
  ``min(int(n_v · A·V / P), n_v)`` best proposals (by score, descending; ties in file order), ``K`` in all.
* For the 100 fractions ``f_j = j / 100 · A·V / K`` (j = 1..100), a video with ``m`` kept proposals
  (``m`` = 1 for a video without any: it scores nothing) looks at its first ``min(int(m · f_j), m)``; an
  instance is recalled at threshold ``t`` when one of them has tIoU ``>= t`` with it (no one-to-one
  matching). Recall at ``(t, j)`` = recalled instances / all instances; the average recall is its mean
  over thresholds (default 0.5:0.05:0.95), at an average of ``f_j · K / V`` proposals per video
  (= j·A/100: 1, 2, …, 100 for A = 100).
* The area under the average-recall curve is the trapezoid rule over those points, divided by the last
  one's number of proposals and given in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gaf.data.annotations import AnnotationSet
from gaf.errors import AnnotationError
from gaf.metrics._matching import iou

__all__ = ["ProposalResult", "evaluate_proposals", "REPORTED_AN"]

REPORTED_AN = (1, 5, 10, 50, 100)  # the AR@AN points printed (those up to max_avg_proposals)


@dataclass
class ProposalResult:
    """AR–AN curve of a proposals file.

    ``recall`` is (len(tious), 100): recall at each threshold and curve point; ``average_recall`` (100,)
    its mean over thresholds; ``proposals_per_video`` (100,) the average number of proposals per video
    at each point. ``auc`` is the area under the average-recall curve in percent of the largest.
    """

    tious: list[float]
    recall: np.ndarray
    average_recall: np.ndarray
    proposals_per_video: np.ndarray
    auc: float
    max_avg_proposals: float
    num_videos: int
    num_instances: int
    num_proposals: int
    num_kept: int

    def ar_at(self, an: float) -> float:
        """Average recall at ``an`` proposals per video (exact at the curve's points, linear between)."""
        return float(np.interp(an, self.proposals_per_video, self.average_recall))

    def reported(self) -> dict[str, float]:
        """``{"AR@1": ..., "AR@5": ..., ...}`` for :data:`REPORTED_AN` up to the curve's end."""
        top = float(self.proposals_per_video[-1])
        return {f"AR@{an}": self.ar_at(an) for an in REPORTED_AN if an <= top + 1e-9}

    def format(self) -> str:
        """A table: AR@AN (%) at the reported points and the AUC."""
        cells = self.reported()
        head = "  ".join(f"{k:>8}" for k in cells) + f"  {'AUC':>8}"
        row = "  ".join(f"{100 * v:8.2f}" for v in cells.values()) + f"  {self.auc:8.2f}"
        tious = ", ".join(f"{t:g}" for t in self.tious)
        return (f"proposals: average recall (%) at an average number of proposals per video (tIoU {tious}; "
                f"{self.num_kept} of {self.num_proposals} proposals kept for AN <= {self.max_avg_proposals:g})\n"
                f"{head}\n{row}")

    def to_json(self) -> dict[str, Any]:
        return {"task": "proposals", "tious": self.tious, "auc": self.auc, **self.reported(),
                "max_avg_proposals": self.max_avg_proposals, "num_videos": self.num_videos,
                "num_instances": self.num_instances, "num_proposals": self.num_proposals,
                "num_kept": self.num_kept,
                "proposals_per_video": self.proposals_per_video.tolist(),
                "average_recall": self.average_recall.tolist(), "recall": self.recall.tolist()}


def evaluate_proposals(ground_truth: AnnotationSet, proposals: AnnotationSet,
                       tious: Sequence[float] | None = None, max_avg_proposals: float = 100.0) -> ProposalResult:
    """AR–AN of ``proposals`` (labels ignored) against ``ground_truth`` (module docstring for the rules).

    Times are in seconds. ``tious`` default: 0.5:0.05:0.95. Raises AnnotationError when the ground truth
    has no instance or no scored video has a proposal.
    """
    tious = [round(0.5 + 0.05 * k, 10) for k in range(10)] if tious is None else [float(t) for t in tious]
    if not max_avg_proposals > 0:
        raise AnnotationError(f"max_avg_proposals must be > 0, got {max_avg_proposals}")
    videos = [v for v in ground_truth.videos.values() if v.segments]
    if not videos:
        raise AnnotationError(f"{ground_truth.source}: no ground-truth instance to recall")
    total = proposals.num_segments
    if total == 0:
        raise AnnotationError(f"{proposals.source}: no proposal")
    ratio = max_avg_proposals * float(len(videos)) / total
    scored: list[np.ndarray] = []  # per video: (G, m) tIoU of its kept proposals, in score order
    kept = 0
    for video in videos:
        gt = np.array([(s.start, s.end) for s in video.segments], dtype=np.float64)
        pv = proposals.videos.get(video.video_id)
        if pv is None or not pv.segments:
            scored.append(np.zeros((len(gt), 1)))
            continue
        segs = np.array([(s.start, s.end) for s in pv.segments], dtype=np.float64)
        order = np.argsort(-np.array([s.score for s in pv.segments], dtype=np.float64), kind="stable")
        n = min(int(len(segs) * ratio), len(segs))
        kept += n
        kept_segs = segs[order[:n]]  # (G, m) below: tIoU in the official code's float operations
        scored.append(iou(kept_segs[None, :, 0], kept_segs[None, :, 1], gt[:, None, 0], gt[:, None, 1]))
    if kept == 0:
        raise AnnotationError(f"{proposals.source}: none of its proposals is in a ground-truth video of "
                              f"{ground_truth.source}")
    fractions = np.arange(1, 101) / 100.0 * (max_avg_proposals * float(len(videos)) / kept)
    positives = sum(s.shape[0] for s in scored)
    thresholds = np.asarray(tious, dtype=np.float64)
    recalled = np.zeros((len(tious), len(fractions)))
    for tiou in scored:
        m = tiou.shape[1]
        cutoffs = np.minimum((m * fractions).astype(int), m)  # (100,)
        # the rank of each instance's first proposal with tIoU >= t (m when none): recalled when < cutoff
        hit = tiou[None, :, :] >= thresholds[:, None, None]  # (T, G, m)
        first = np.where(hit.any(axis=2), hit.argmax(axis=2), m)  # (T, G)
        recalled += (first[:, :, None] < cutoffs[None, None, :]).sum(axis=1)
    recall = recalled / positives
    average = recall.mean(axis=0)
    per_video = fractions * (float(kept) / len(videos))
    trapezoid = float(np.sum((per_video[1:] - per_video[:-1]) * (average[1:] + average[:-1]) / 2.0))
    return ProposalResult(tious=tious, recall=recall, average_recall=average, proposals_per_video=per_video,
                          auc=100.0 * trapezoid / float(per_video[-1]), max_avg_proposals=float(max_avg_proposals),
                          num_videos=len(videos), num_instances=positives, num_proposals=total, num_kept=kept)
