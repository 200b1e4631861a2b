"""Inference over a dataset split, post-processing, mAP, and the run report.

Pipeline per video: the whole video (when it has at most
``dataset.eval_max_seq_len`` steps) or each of its evaluation windows goes
through the model(s) → candidates (steps, relative to the item) → seconds via
each item's ``time_offset`` / ``step_seconds`` → all windows of the video
merged → Soft-NMS (Gaussian, per class by default) → at most ``max_per_video``
detections. A batch pads its items to the longest and masks the padding (the
model's outputs on valid steps do not depend on it), and holds at most
``eval.batch_size`` items and ``eval.batch_size × dataset.max_seq_len``
padded steps, so a long whole video runs with fewer companions, or alone.
With two models (RGB and flow, ``gaf eval --fuse``) their raw outputs are
averaged before decoding, as the paper does at test time.

A class-agnostic detector (``dataset.class_agnostic``) finds proposals of one
class, ``"action"``; with ``eval.video_scores`` each video's proposals (after
NMS and the cap) take its top video-level classes
(:mod:`gaf.engine.video_scores`) and are scored against the real classes,
without it they are scored as proposals, against the ground truth with every
label collapsed to ``"action"`` (the log and ``metrics.json``'s
``"scored_as"`` say which).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gaf.data.annotations import AnnotationSet, Segment, Video, write_predictions
from gaf.engine.distributed import DistContext
from gaf.engine.experiment import EvalConfig, ExperimentConfig
from gaf.engine.factory import build_dataset, collate_for
from gaf.progress import logged_progress, progress_bar
from gaf.engine.runtime import FILE_ONLY, cpu_threads
from gaf.engine.video_scores import DEFAULT_TOPK, VideoScores, as_proposals, fuse_predictions, read_video_scores
from gaf.io import atomic_write_text
from gaf.errors import ConfigError
from gaf.metrics.detection import DetectionResult, evaluate_detections
from gaf.models.gaf_detector import batch_outputs
from gaf.postprocess import item_steps_to_seconds, nms, soft_nms, vote_segments

log = logging.getLogger("gaf")

__all__ = ["Inference", "run_inference", "gather_inference", "postprocess_video", "evaluate_run", "inference_batches",
           "scored_predictions"]


@dataclass
class Inference:
    """Detections in seconds per video, and the stitched attention λ per video."""

    predictions: AnnotationSet
    attention: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # vid -> (times s, λ)


def postprocess_video(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                      cfg: EvalConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NMS, cap and (``cfg.voting_iou > 0``) segment voting for one video's merged candidates.
    Shapes (N,2) seconds, (N,), (N,)."""
    if segments.numel() == 0:
        return segments.reshape(0, 2), scores, labels
    nms_labels = None if cfg.class_agnostic_nms else labels
    candidates, candidate_scores = segments, scores
    if cfg.nms == "soft":
        segments, scores, kept_labels, keep = soft_nms(
            segments, scores, labels=nms_labels, method="gaussian", sigma=cfg.nms_sigma,
            min_score=cfg.min_score, max_keep=cfg.max_per_video)
        labels = labels[keep]
    elif cfg.nms == "hard":
        keep = nms(segments, scores, cfg.nms_iou, labels=nms_labels, max_keep=cfg.max_per_video)
        segments, scores, labels = segments[keep], scores[keep], labels[keep]
    else:
        order = scores.argsort(descending=True)[: cfg.max_per_video]
        segments, scores, labels = segments[order], scores[order], labels[order]
    if cfg.voting_iou > 0:
        segments = vote_segments(segments, candidates, candidate_scores, cfg.voting_iou,
                                 kept_labels=None if nms_labels is None else labels, labels=nms_labels)
    return segments, scores, labels


def inference_batches(dataset: torch.utils.data.Dataset, indices: Sequence[int], batch_size: int
                      ) -> list[list[int]]:
    """``indices`` in order, cut into batches of at most ``batch_size`` items and, for a dataset that gives its
    items' lengths (``item_steps()``: feature datasets), at most ``batch_size × dataset.cfg.max_seq_len`` padded
    steps (items × the longest); an item longer than that budget (a whole long video) forms a batch alone.
    Items of at most ``max_seq_len`` steps (the default windows) never exceed the budget: their batches are those
    of ``batch_size`` alone."""
    item_steps = getattr(dataset, "item_steps", None)
    if item_steps is None:  # fixed-length items (end-to-end frame clips)
        return [list(indices[i: i + batch_size]) for i in range(0, len(indices), batch_size)]
    steps, budget = item_steps(), batch_size * int(dataset.cfg.max_seq_len)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in indices:
        n = int(steps[i])
        if current and (len(current) >= batch_size or (len(current) + 1) * max(longest, n) > budget):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def run_inference(models: Sequence[torch.nn.Module], datasets: Sequence[torch.utils.data.Dataset], cfg: EvalConfig,
                  labels: Sequence[str], *, device: torch.device, progress: bool = True,
                  ctx: DistContext | None = None) -> Inference:
    """Detect actions in every video of ``datasets`` (one dataset per model/stream).

    The datasets must hold the same videos cut into the same items (same
    annotation, ``max_seq_len`` and ``eval_max_seq_len``); each may slice
    different channels. Batches: :func:`inference_batches`.
    Feature datasets and frame-clip datasets (end-to-end runs) both work:
    items of either carry the same ``meta`` (see :mod:`gaf.engine.factory`).

    With ``ctx`` of several processes, each rank infers every
    ``world_size``-th video (all windows of a video stay on one rank) and
    returns only those; :func:`gather_inference` joins them on rank 0.
    """
    if len(models) != len(datasets) or not models:
        raise ConfigError("run_inference: give one dataset per model")
    ref = datasets[0]
    for ds in datasets[1:]:
        steps = getattr(ds, "item_steps", None), getattr(ref, "item_steps", None)
        if len(ds) != len(ref) or (None not in steps and steps[0]() != steps[1]()):
            raise ConfigError("fused models must see the same videos and windows "
                              f"({len(ref)} vs {len(ds)} windows): use the same dataset.max_seq_len and "
                              "dataset.eval_max_seq_len")
    for m in models:
        m.eval()
    head = models[0]
    merged = _WindowMerger()
    indices = list(range(len(ref)))
    if ctx is not None and ctx.enabled:
        mine = set(ctx.shard(range(len(ref.video_ids))))
        indices = [i for i, v in zip(indices, ref.item_videos()) if v in mine]
    batches = inference_batches(ref, indices, cfg.batch_size)
    iterator = progress_bar(batches, "inference", progress)
    if iterator is batches and (ctx is None or ctx.is_main):
        iterator = logged_progress(batches, log, "inference", len(batches), unit="batch")
    for idx in iterator:
        outputs, mask, metas = [], None, None
        for model, ds in zip(models, datasets):
            batch = collate_for(ds)([ds[i] for i in idx])
            mask = batch["mask"].to(device)
            metas = batch["meta"]
            outputs.append(batch_outputs(model, batch, device))
        out = outputs[0] if len(outputs) == 1 else head.fuse_outputs(outputs)
        preds = head.predict_from_outputs(out, mask, pre_nms_top_k=cfg.pre_nms_top_k,
                                          score_threshold=cfg.score_threshold)
        for pred, meta in zip(preds, metas):
            merged.add(pred, meta)
    return merged.finish(cfg, labels)


class _WindowMerger:
    """Each video's candidates from all its windows, in seconds, and its λ averaged where windows overlap."""

    def __init__(self) -> None:
        self.per_video: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = defaultdict(list)
        self.att_sum: dict[str, np.ndarray] = {}
        self.att_cnt: dict[str, np.ndarray] = {}
        self.att_axis: dict[str, tuple[float, float]] = {}
        self.info: dict[str, dict[str, Any]] = {}  # first window's meta per video, in order of appearance

    def add(self, pred: dict[str, Any], meta: dict[str, Any]) -> None:
        """One window's candidates (steps of the window → seconds of the video) and λ."""
        vid = meta["video_id"]
        self.info.setdefault(vid, meta)
        step_s, t0 = float(meta["step_seconds"]), float(meta["time_offset"])
        segs = item_steps_to_seconds(pred["segments"], step_s, t0)
        segs = segs.clamp(min=0.0, max=float(meta["duration"]))
        self.per_video[vid].append((segs.cpu(), pred["scores"].float().cpu(), pred["labels"].cpu()))
        att = pred.get("attention")
        if att is None:
            return
        n, off = int(meta["video_steps"]), int(meta["offset_steps"])
        if vid not in self.att_sum:
            self.att_sum[vid], self.att_cnt[vid] = np.zeros(n), np.zeros(n)
            self.att_axis[vid] = (t0 - off * step_s, step_s)
        a = att.float().cpu().numpy()[: max(0, n - off)]
        self.att_sum[vid][off: off + len(a)] += a
        self.att_cnt[vid][off: off + len(a)] += 1

    def finish(self, cfg: EvalConfig, labels: Sequence[str]) -> Inference:
        """Every video's merged candidates through :func:`postprocess_video` (NMS, cap), and its λ over time."""
        videos: dict[str, Video] = {}
        for vid, meta in self.info.items():
            parts = self.per_video[vid]
            segs = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, 2)
            scores = torch.cat([p[1] for p in parts]) if parts else torch.zeros(0)
            labs = torch.cat([p[2] for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
            segs, scores, labs = postprocess_video(segs, scores, labs, cfg)
            videos[vid] = Video(
                video_id=vid,
                segments=[Segment(float(s), float(e), labels[int(c)], float(p))
                          for (s, e), p, c in zip(segs.tolist(), scores.tolist(), labs.tolist())],
                duration=float(meta["duration"]), fps=float(meta["fps"]) if meta.get("fps") else None,
            )
        attention = {}
        for vid, total in self.att_sum.items():
            lam = total / np.maximum(self.att_cnt[vid], 1)
            t0, step_s = self.att_axis[vid]
            attention[vid] = (t0 + np.arange(len(lam)) * step_s, lam)
        preds = AnnotationSet(videos=videos, labels=list(labels), source="<gaf inference>")
        return Inference(preds, attention)


def gather_inference(inference: Inference, video_order: Sequence[str], ctx: DistContext) -> Inference | None:
    """Every rank's :class:`Inference` joined on rank 0 in ``video_order``; None on the other ranks."""
    parts = ctx.gather(inference)
    if parts is None:
        return None
    videos: dict[str, Video] = {}
    attention: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for part in parts:
        videos.update(part.predictions.videos)
        attention.update(part.attention)
    ordered = {v: videos[v] for v in video_order if v in videos}
    preds = AnnotationSet(videos=ordered, labels=list(inference.predictions.labels), source="<gaf inference>")
    return Inference(preds, attention)


def evaluate_run(models: Sequence[torch.nn.Module], cfgs: Sequence[ExperimentConfig], *, work_dir: Path | None,
                 device: torch.device, progress: bool = True, logger=None,
                 predictions_path: Path | None = None, report: bool = True,
                 ctx: DistContext | None = None,
                 history: Sequence[Mapping[str, Any]] | None = None,
                 run_info: Mapping[str, Any] | None = None) -> DetectionResult | None:
    """Infer on the test split, score, and write predictions / metrics / report into ``work_dir``.

    ``history``: the run's per-epoch records (``history.json``); when given,
    the report also shows the training curves and the attention health.
    ``run_info``: run metadata for the report's first table (:func:`write_run_report`).

    With ``ctx`` of several processes the videos are shared out, the
    detections gathered, and rank 0 scores and writes; the other ranks
    return None.
    """
    cfg = cfgs[0]
    datasets = [build_dataset(c, "test", training=False) for c in cfgs]
    subset_gt = datasets[0].ground_truth()
    labels = list(datasets[0].labels)
    if any(list(ds.labels) != labels for ds in datasets[1:]):
        raise ConfigError(f"fused models must detect the same classes ({len(labels)} vs "
                          f"{', '.join(str(len(ds.labels)) for ds in datasets[1:])}): train both with the same "
                          "dataset.labels and dataset.class_agnostic")
    video_scores = None
    if cfg.eval.video_scores:  # read and checked before inference: a bad file fails at once
        video_scores = read_video_scores(cfg.eval.video_scores, list(subset_gt.videos), subset_gt.labels)
    distributed = ctx is not None and ctx.enabled
    with cpu_threads(cfg.train.threads):
        inference = run_inference(models, datasets, cfg.eval, labels, device=device,
                                  progress=progress and (ctx is None or ctx.is_main), ctx=ctx)
    if distributed:
        inference = gather_inference(inference, datasets[0].video_ids, ctx)
        if inference is None:
            return None
    predictions, subset_gt, scored_as = scored_predictions(
        inference.predictions, subset_gt, cfg.eval, class_agnostic=bool(getattr(datasets[0], "class_agnostic", False)),
        video_scores=video_scores)
    inference = Inference(predictions, inference.attention)
    result = evaluate_detections(subset_gt, inference.predictions, tious=tuple(cfg.eval.tious))
    if logger is not None:
        if scored_as:
            logger.info("scored as %s", scored_as)
        logger.info("evaluation on %d videos (%s): average mAP %.2f", len(subset_gt.videos), subset_gt.source,
                    100 * result.average_mAP)
        logger.info("mAP table:\n%s", result.format_table(), extra=FILE_ONLY)  # the command prints it
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_predictions(inference.predictions, predictions_path or work_dir / "predictions.json")
        metrics = result.to_json() if not scored_as else {**result.to_json(), "scored_as": scored_as}
        atomic_write_text(work_dir / "metrics.json", json.dumps(metrics, indent=1))
        if report:
            write_run_report(work_dir / "report", cfg, subset_gt, inference, result, history=history,
                             run_info=run_info if not scored_as else {**(run_info or {}), "scored as": scored_as})
    return result


def scored_predictions(predictions: AnnotationSet, gt: AnnotationSet, cfg: EvalConfig, *, class_agnostic: bool,
                       video_scores: VideoScores | None = None) -> tuple[AnnotationSet, AnnotationSet, str | None]:
    """What is scored: ``(predictions, ground truth, how)``; ``how`` is None for a detector of the ground
    truth's classes (both returned as given).

    A class-agnostic detector's proposals (label ``"action"``) with ``video_scores``
    (:class:`~gaf.engine.video_scores.VideoScores` of ``cfg.video_scores``) become detections of the ground
    truth's classes (:func:`~gaf.engine.video_scores.fuse_predictions`, rule ``cfg.video_fusion``, top
    ``cfg.video_score_topk`` classes, at most ``cfg.max_per_video`` per video); without them they are scored
    as proposals, against ``gt`` with every label collapsed to ``"action"``.
    """
    if not class_agnostic:
        if video_scores is not None:
            raise ConfigError("eval.video_scores: fusing video-level class scores needs a class-agnostic detector: "
                              "set dataset.class_agnostic: true (and train with it)")
        return predictions, gt, None
    if video_scores is None:
        return predictions, as_proposals(gt), ("class-agnostic proposals: every ground-truth label collapsed to "
                                               "'action' (set eval.video_scores to score classes)")
    topk = cfg.video_score_topk or DEFAULT_TOPK[cfg.video_fusion]
    fused = fuse_predictions(predictions, video_scores, gt.labels, rule=cfg.video_fusion, topk=topk,
                             max_keep=cfg.max_per_video)
    how = (f"class-agnostic proposals fused with the video-level class scores of {video_scores.path} "
           f"({cfg.video_fusion}: {'p * s' if cfg.video_fusion == 'afsd' else 'sqrt(p * s)'}, top {topk} "
           f"class{'es' if topk > 1 else ''} per proposal)")
    return fused, gt, how


def write_run_report(out_dir: Path, cfg: ExperimentConfig, gt: AnnotationSet, inference: Inference,
                     result: DetectionResult, history: Sequence[Mapping[str, Any]] | None = None,
                     run_info: Mapping[str, Any] | None = None) -> Path:
    """The run's report (``report.html`` + ``report.md``, every figure a PNG beside them): run metadata,
    the mAP table, per-class AP, precision–recall curves at tIoU 0.5, DETAD's error analysis, timelines of
    the videos with the most instances (each detection marked true / false positive at tIoU 0.5, with λ),
    and with a non-empty ``history`` the training curves and the last epoch's attention health.

    ``run_info``: what the caller knows of the run (checkpoint, epoch, wall time, training videos, ...);
    the report adds the date, the config name, the ground truth scored and the counts.
    """
    import datetime

    from gaf import viz
    from gaf.metrics.analysis import analyze_detections, default_tious, protocol_of
    from gaf.metrics.curves import match_video, precision_recall

    out_dir.mkdir(parents=True, exist_ok=True)
    preds = inference.predictions
    info: dict[str, Any] = {"config": cfg.name, **(run_info or {}),
                            "report written": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                            "ground truth": gt.source + (f" (variant {gt.variant})" if gt.variant else ""),
                            "test videos / instances": f"{len(gt.videos)} / {gt.num_segments}",
                            "detections scored": str(preds.num_segments),
                            "tIoU thresholds": ", ".join(f"{t:g}" for t in cfg.eval.tious)}
    # The videos with the most ground-truth instances make the most telling timelines.
    chosen = sorted(gt.videos.values(), key=lambda v: (-len(v.segments), v.video_id))[: cfg.eval.report_videos]
    timelines = []
    for video in chosen:
        pred = preds.videos.get(video.video_id)
        times, lam = inference.attention.get(video.video_id, (None, None))
        dets = pred.segments if pred else []
        timelines.append(viz.plot_timeline(
            out_dir / f"timeline_{video.video_id}.png", video_id=video.video_id,
            duration=float(video.duration or (pred.duration if pred else 0.0) or 1.0),
            ground_truth=video.segments, detections=dets, attention=lam, attention_times=times,
            outcomes=match_video(video.segments, dets, 0.5), outcome_tiou=0.5))
    metrics = result.to_json()
    per_class = viz.plot_per_class_ap(out_dir / "per_class_ap.png", metrics["per_class_ap"], metrics["tious"])
    pr_plot = viz.plot_pr_curves(out_dir / "pr_curves.png", precision_recall(gt, preds, 0.5), 0.5)
    analysis_plot = analysis_text = None
    if gt.num_segments:
        protocol = protocol_of(gt)
        analysis = analyze_detections(gt, preds, default_tious(protocol), protocol=protocol)
        analysis_plot = viz.plot_error_analysis(out_dir / "error_analysis.png", analysis)
        analysis_text = analysis.format()
        atomic_write_text(out_dir / "error_analysis.json", json.dumps(analysis.to_json(), indent=1))
    curves, health = None, None
    if history:
        curves = viz.plot_training_curves(out_dir / "training_curves.png", history)
        last = history[-1] if isinstance(history[-1], Mapping) else {}
        health = {k: float(v) for k, v in last.items()
                  if k.startswith("health/") and isinstance(v, (int, float)) and not isinstance(v, bool)} or None
        seconds = [float(h["seconds"]) for h in history if isinstance(h, Mapping) and isinstance(h.get("seconds"), (int, float))]
        if seconds:
            info.setdefault("training wall time", f"{sum(seconds) / 60:.1f} min over {len(history)} epochs")
    return viz.write_report(out_dir, title=f"gaf report: {cfg.name}", metrics=metrics, timelines=timelines,
                            per_class_plot=per_class, config_text=cfg.to_yaml(), curves_plot=curves, health=health,
                            run_info=info, pr_plot=pr_plot, analysis_plot=analysis_plot, analysis_text=analysis_text)
