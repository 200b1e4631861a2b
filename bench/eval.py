"""Benchmark: gaf's vectorised detection mAP vs a loop-per-prediction reference, on real THUMOS14 test ground truth.

    .venv/bin/python bench/eval.py [--gt PATH] [--subset test] [--per-video 200] [--seed 0] [--repeat 5]

Loads the ground truth (default: ../shared/data/thumos14/thumos14.json,
subset test: 212 videos, 3358 instances), generates ``--per-video``
predictions per video (seeded: 60 % jittered copies of true instances, a
fifth of them with a wrong class, 40 % random segments with random classes;
distinct random scores), and times, on the same in-memory sets:

* ``reference``: the ActivityNet official algorithm as a plain loop, class by
  class, one prediction at a time (tIoU to the video's instances, sorted,
  then a Python loop over thresholds and candidates), interpolated AP;
* ``gaf``: :func:`gaf.metrics.detection.evaluate_detections` (best of ``--repeat``).

Then, end to end as ``gaf score`` works, the predictions are written to a
temporary ActivityNet results JSON and read back with
:func:`gaf.data.predictions.read_predictions` (best of ``--repeat-read``);
both evaluators are charged that reading. Prints tables (time in seconds,
ratio to gaf) and the largest absolute difference between the two in any AP
(class × tIoU), which must stay below 1e-9 (exit status 1 otherwise).
NumPy only; under a minute on two cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gaf.data.annotations import (  # noqa: E402
    AnnotationSet, AnnotationWarning, Segment, Video, read_ground_truth, read_predictions, write_predictions)
from gaf.metrics.detection import evaluate_detections  # noqa: E402

TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7)


# ---------------------------------------------------------------- data
def generate_predictions(gt: AnnotationSet, per_video: int, seed: int) -> AnnotationSet:
    """``per_video`` detections per ground-truth video; distinct scores, a random permutation of k / total."""
    rng = np.random.default_rng(seed)
    total = per_video * len(gt.videos)
    scores = (rng.permutation(total) + 1) / (total + 1)
    videos: dict[str, Video] = {}
    k = 0
    for vid, video in gt.videos.items():
        duration = video.duration or max((s.end for s in video.segments), default=100.0)
        segments = []
        for _ in range(per_video):
            if video.segments and rng.random() < 0.6:
                true = video.segments[rng.integers(len(video.segments))]
                length = true.end - true.start
                start = max(0.0, true.start + rng.normal(0.0, 0.2) * length)
                end = max(start, true.end + rng.normal(0.0, 0.2) * length)
                label = true.label if rng.random() < 0.8 else gt.labels[rng.integers(len(gt.labels))]
            else:
                start = rng.uniform(0.0, duration)
                end = start + rng.uniform(0.5, 20.0)
                label = gt.labels[rng.integers(len(gt.labels))]
            segments.append(Segment(float(start), float(end), label, float(scores[k])))
            k += 1
        videos[vid] = Video(vid, segments)
    return AnnotationSet(videos, list(gt.labels), f"generated ({per_video} per video, seed {seed})")


# ---------------------------------------------------------------- reference
def _segment_iou(pred: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """tIoU of one [start, end] with each row of ``gts`` (N, 2); 0 where the union is 0."""
    inter = (np.minimum(pred[1], gts[:, 1]) - np.maximum(pred[0], gts[:, 0])).clip(0)
    union = (gts[:, 1] - gts[:, 0]) + (pred[1] - pred[0]) - inter
    out = np.zeros(len(gts))
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _interpolated_ap(prec: np.ndarray, rec: np.ndarray) -> float:
    mprec = np.concatenate([[0.0], prec, [0.0]])
    mrec = np.concatenate([[0.0], rec, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def reference_class_ap(gt_rows: list, pred_rows: list, tious: tuple[float, ...]) -> list[float]:
    """AP of one class: ``gt_rows`` [(video, start, end)], ``pred_rows`` [(video, start, end, score)]."""
    by_video: dict[str, list[int]] = {}
    for k, row in enumerate(gt_rows):
        by_video.setdefault(row[0], []).append(k)
    gt_segments = {vid: np.array([gt_rows[k][1:3] for k in ks]) for vid, ks in by_video.items()}
    locked = np.zeros((len(tious), len(gt_rows)), dtype=bool)
    tp = np.zeros((len(tious), len(pred_rows)))
    fp = np.zeros((len(tious), len(pred_rows)))
    order = np.argsort(-np.array([row[3] for row in pred_rows]), kind="stable")
    for rank, i in enumerate(order):
        vid, start, end, _ = pred_rows[i]
        if vid not in by_video:
            fp[:, rank] = 1
            continue
        ious = _segment_iou(np.array([start, end]), gt_segments[vid])
        best_first = np.argsort(-ious, kind="stable")
        for t, threshold in enumerate(tious):
            for j in best_first:
                if ious[j] < threshold:
                    break
                k = by_video[vid][j]
                if locked[t, k]:
                    continue
                locked[t, k] = True
                tp[t, rank] = 1
                break
            if not tp[t, rank]:
                fp[t, rank] = 1
    ctp, cfp = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    recall, precision = ctp / len(gt_rows), ctp / np.maximum(ctp + cfp, 1)
    return [_interpolated_ap(precision[t], recall[t]) for t in range(len(tious))]


def reference_ap(gt: AnnotationSet, pred: AnnotationSet, tious: tuple[float, ...]) -> dict[str, list[float]]:
    out = {}
    for label in gt.labels:
        gt_rows = [(vid, s.start, s.end) for vid, v in gt.videos.items() for s in v.segments if s.label == label]
        if gt_rows:
            pred_rows = [(vid, s.start, s.end, s.score) for vid, v in pred.videos.items() for s in v.segments
                         if s.label == label]
            out[label] = reference_class_ap(gt_rows, pred_rows, tious)
    return out


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt", default=str(REPO.parent / "shared" / "data" / "thumos14" / "thumos14.json"),
                        help="ground truth read by gaf.data.annotations.read_ground_truth (default: %(default)s)")
    parser.add_argument("--subset", default="test", help="ground-truth subset (default: %(default)s)")
    parser.add_argument("--per-video", type=int, default=200, help="predictions per video (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5, help="gaf timings to take the best of (default: %(default)s)")
    parser.add_argument("--repeat-read", type=int, default=3,
                        help="timings of reading the predictions JSON to take the best of (default: %(default)s)")
    args = parser.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)  # THUMOS14's known segments past the video end
        gt = read_ground_truth(args.gt, subset=args.subset)
    pred = generate_predictions(gt, args.per_video, args.seed)
    print(f"ground truth: {gt.source} (subset {args.subset}): {len(gt.videos)} videos, {gt.num_segments} instances, "
          f"{len(gt.labels)} classes")
    print(f"predictions: {pred.source}: {pred.num_segments}; tIoU {', '.join(map(str, TIOUS))}; rules activitynet")

    t0 = time.perf_counter()
    want = reference_ap(gt, pred, TIOUS)
    t_ref = time.perf_counter() - t0
    times = []
    for _ in range(max(args.repeat, 1)):
        t0 = time.perf_counter()
        got = evaluate_detections(gt, pred, TIOUS)
        times.append(time.perf_counter() - t0)
    t_gaf = min(times)

    diff = max(abs(a - b) for label, aps in want.items() for a, b in zip(aps, got.per_class_ap[label]))

    with tempfile.TemporaryDirectory() as tmp:
        path = write_predictions(pred, Path(tmp) / "predictions.json")
        size_mb = path.stat().st_size / 1e6
        read_times = []
        for _ in range(max(args.repeat_read, 1)):
            t0 = time.perf_counter()
            read_back = read_predictions(path)
            read_times.append(time.perf_counter() - t0)
    t_read = min(read_times)
    again = evaluate_detections(gt, read_back, TIOUS)
    diff = max(diff, max(abs(a - b) for label, aps in want.items() for a, b in zip(aps, again.per_class_ap[label])))

    def table(title: str, rows: list[tuple[str, float]], base: float) -> None:
        width = max(len(name) for name, _ in rows)
        print(f"\n{title}\n{'':{width}}  {'time (s)':>9}  {'ratio':>7}")
        for name, t in rows:
            print(f"{name:{width}}  {t:9.4f}  {t / base:6.1f}x")

    table("evaluator only (in-memory sets):",
          [("reference (loop per prediction)", t_ref), (f"gaf (best of {len(times)})", t_gaf)], t_gaf)
    table(f"end to end, reading the predictions JSON ({size_mb:.1f} MB) with read_predictions "
          f"(best of {len(read_times)}: {t_read:.4f} s):",
          [("read + reference", t_read + t_ref), ("read + gaf (what gaf score does)", t_read + t_gaf)],
          t_read + t_gaf)
    print(f"\nmAP (gaf): {', '.join(f'{m:.4f}' for m in got.mAP)}; average {got.average_mAP:.4f}")
    print(f"largest |AP difference| over {len(want)} classes x {len(TIOUS)} tIoUs: {diff:.3g}")
    return 0 if diff < 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
