"""Action recognition: the experiment config, the two-stage training loop and
multi-clip evaluation (paper §IV, Table II).

A recognition YAML has ``task: recognition`` and the sections ``data``
(:class:`gaf.data.clips.ClipDataConfig`), ``model``
(:class:`gaf.models.recognizer.RecognizerConfig`), ``train``
(:class:`gaf.engine.experiment.TrainConfig`, the detector's settings) and
``eval`` (:class:`RecognitionEvalConfig`). ``gaf train CONFIG`` / ``gaf eval``
dispatch here for such files (:func:`run_train_command`,
:func:`run_eval_command`).

Training is the detector's loop (:func:`gaf.engine.loop.fit`) on clips: each
epoch runs stage "frame" (Frame-GAF, ``L_CVAE``) then stage "segment"
(everything else, ``L_clf (+ L_R)``), each with its own Adam optimiser and
warm-up + schedule; RNGs are re-seeded from ``(seed, epoch)`` every epoch and
``latest.pt`` is written atomically after each, so ``resume`` continues
exactly. Evaluation averages each video's clip scores (softmax
probabilities; sigmoid for ``clf_form: sigmoid``) over ``eval.num_clips``
evenly spaced clips and reports top-k accuracy and mean class accuracy;
``fuse`` averages a second stream's per-video scores in (RGB + flow, §IV-B).
The raw-video path is RGB only: the flow stream reads cached flow features.

Work dir: ``config.yaml``, ``log.txt``, ``latest.pt``, ``epoch_NNN.pt``,
``history.json``, ``final.pt`` and, after evaluation, ``metrics.json`` and
``predictions.json`` (per test video: label, top-5 classes and scores).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from gaf.config import AT_LEAST_ONE, ranged
from gaf.config import apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
from gaf.data.clips import ClipDataConfig, build_clip_dataset, collate_clips
from gaf.engine.checkpoint import load_checkpoint, load_model_state
from gaf.engine.experiment import TrainConfig, resolve_config_path
from gaf.engine.runlock import hold_work_dir
from gaf.engine.runtime import seed_everything, setup_logging
from gaf.engine.distributed import DistContext, init_distributed
from gaf.engine.loop import fit, progress_bar, write_final
from gaf.engine.train import open_run
from gaf.io import atomic_write_text
from gaf.errors import ConfigError
from gaf.metrics.recognition import mean_class_accuracy, topk_accuracy
from gaf.models.recognizer import Recognizer, RecognizerConfig

__all__ = ["RecognitionEvalConfig", "RecognitionExperiment", "RecognitionResult", "RecognitionTrainResult",
           "format_recognition_metrics", "is_recognition_config", "load_recognition_experiment",
           "train_recognizer", "predict_video_scores", "evaluate_recognizer", "load_recognizer",
           "is_recognition_checkpoint", "run_train_command", "run_eval_command"]


@dataclass
class RecognitionEvalConfig:
    """Test-time settings: clips per video (multi-clip averaging), k of top-k, batch size (videos)."""

    num_clips: int = ranged(10, AT_LEAST_ONE)
    topk: list[int] = field(default_factory=lambda: [1, 5], metadata=AT_LEAST_ONE)
    batch_size: int = ranged(4, AT_LEAST_ONE)


@dataclass
class RecognitionExperiment:
    data: ClipDataConfig
    task: Literal["recognition"] = "recognition"
    name: str = "recognition"
    model: RecognizerConfig = field(default_factory=RecognizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: RecognitionEvalConfig = field(default_factory=RecognitionEvalConfig)
    work_dir: str | None = None

    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path("work_dirs") / self.name

    def to_yaml(self) -> str:
        return dump_yaml(to_dict(self))


@dataclass
class RecognitionResult:
    """Evaluation output: ``metrics`` plus per-video ``scores (N, K)``, ``labels (N,)``, ``videos``."""

    metrics: dict[str, Any]
    scores: np.ndarray
    labels: np.ndarray
    videos: list[str]
    classes: list[str]

    def format_table(self) -> str:
        return format_recognition_metrics(self.metrics)


def format_recognition_metrics(metrics: dict[str, Any]) -> str:
    """A small text table of top-k and mean class accuracy (percent)."""
    keys = [k for k in metrics if k.startswith("top")] + ["mean_class_acc"]
    head = " ".join(f"{k:>14}" for k in keys)
    row = " ".join(f"{100 * metrics[k]:>13.2f}%" for k in keys)
    return f"{head}\n{row}\n({metrics['num_videos']} test videos, up to {metrics['num_clips']} clips each)"


@dataclass
class RecognitionTrainResult:
    work_dir: Path
    epochs_done: int
    final_checkpoint: Path | None
    metrics: dict[str, Any] | None


def is_recognition_config(path: str | os.PathLike[str]) -> bool:
    """Whether the YAML at ``path`` (or the bundled config of that name) says ``task: recognition``."""
    return load_yaml(resolve_config_path(path)).get("task") == "recognition"


def load_recognition_experiment(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> RecognitionExperiment:
    """Read, override (``section.key=value``) and check a recognition config; errors name the key path."""
    resolved = resolve_config_path(path)
    data = apply_overrides(load_yaml(resolved), overrides)
    if "data" not in data:
        raise ConfigError(f"{resolved}: missing the 'data' section")
    return from_dict(RecognitionExperiment, data, where=resolved.name)


def _check_pairing(cfg: RecognitionExperiment) -> None:
    model_cfg = cfg.model
    if (cfg.data.source == "video") != (model_cfg.backbone == "i3d"):
        raise ConfigError(f"data.source: {cfg.data.source!r} needs model.backbone: "
                          f"{'i3d' if cfg.data.source == 'video' else 'none'} (got {model_cfg.backbone!r})")
    if cfg.data.source == "video" and model_cfg.stream == "flow":
        raise ConfigError("model.stream: 'flow' cannot read decoded RGB video (data.source: video); "
                          "train the flow stream on cached flow features (data.source: features)")


def _build(cfg: RecognitionExperiment, meta: dict[str, Any], *, for_checkpoint: bool = False) -> Recognizer:
    _check_pairing(cfg)
    model_cfg = cfg.model
    if for_checkpoint:  # the checkpoint holds the backbone's weights: do not read the initial ones
        model_cfg = replace(model_cfg, backbone_weights=None)
    in_dim = meta["in_dim"] if model_cfg.backbone == "none" else None
    return Recognizer(model_cfg, meta["num_classes"], in_dim)


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_video_scores(model: Recognizer, cfg: RecognitionExperiment, *, device: torch.device | str = "cpu",
                         progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[str], list[str], int]:
    """Per-video scores on the test list: ``(scores (N, K), labels (N,), videos, classes, clips per video)``.

    A video's score is the mean of its clips' class probabilities (``eval.num_clips``
    evenly spaced clips; fewer when the video is too short to hold them apart).
    """
    device = torch.device(device)
    ds = build_clip_dataset(cfg.data, "test", training=False, num_clips=cfg.eval.num_clips)
    if ds.num_classes != model.num_classes:
        raise ConfigError(f"{cfg.data.split_dir}: {ds.num_classes} classes but the model was trained on "
                          f"{model.num_classes}")
    loader = DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, collate_fn=collate_clips,
                        num_workers=cfg.train.num_workers)
    model.eval()
    all_scores, all_labels, videos, clips = [], [], [], 0
    for batch in progress_bar(loader, "eval", progress):
        scores = model(batch["inputs"].to(device), batch["mask"].to(device))["scores"].float().cpu()
        index = batch["clip_video"]
        sums = torch.zeros(len(batch["videos"]), scores.shape[1]).index_add_(0, index, scores)
        counts = torch.bincount(index, minlength=len(batch["videos"])).clamp(min=1)
        all_scores.append(sums / counts[:, None])
        all_labels.append(batch["labels"])
        videos += batch["videos"]
        clips = max(clips, int(counts.max()))
    return torch.cat(all_scores).numpy(), torch.cat(all_labels).numpy(), videos, list(ds.classes), clips


def evaluate_recognizer(model: Recognizer, cfg: RecognitionExperiment, *, device: torch.device | str = "cpu",
                        progress: bool = False, logger=None, work_dir: Path | None = None,
                        predictions_path: Path | None = None,
                        fuse: Sequence[tuple[Recognizer, RecognitionExperiment]] = ()) -> RecognitionResult:
    """Top-k / mean class accuracy of ``model`` on the test list of ``cfg.data`` (multi-clip averaging).

    ``fuse``: further ``(model, cfg)`` pairs (e.g. the flow stream next to the
    RGB one, §IV-B) whose per-video scores are averaged in; they must list
    the same test videos. With ``work_dir``, writes ``metrics.json`` and
    ``predictions.json`` (or ``predictions_path``) there, atomically.
    """
    scores, labels, videos, classes, clips = predict_video_scores(model, cfg, device=device, progress=progress)
    for other, other_cfg in fuse:
        s2, _, v2, _, _ = predict_video_scores(other, other_cfg, device=device, progress=progress)
        if v2 != videos:
            raise ConfigError(f"{other_cfg.data.split_dir}: the fused model's test list differs from "
                              f"{cfg.data.split_dir}'s (split {other_cfg.data.split} vs {cfg.data.split})")
        scores = scores + s2
    scores = scores / (1 + len(fuse))
    metrics: dict[str, Any] = topk_accuracy(scores, labels, cfg.eval.topk)
    metrics["mean_class_acc"] = mean_class_accuracy(scores, labels)
    metrics.update(num_videos=int(len(labels)), num_clips=int(clips), split=cfg.data.split, streams=1 + len(fuse))
    result = RecognitionResult(metrics, scores, labels, videos, classes)
    if logger is not None:
        logger.info("test: %s", " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
    if work_dir is not None:
        atomic_write_text(Path(work_dir) / "metrics.json", json.dumps(metrics, indent=1))
        top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        preds = {v: {"label": classes[int(y)],
                     "top5": [[classes[int(c)], round(float(scores[i, c]), 6)] for c in top[i]]}
                 for i, (v, y) in enumerate(zip(videos, labels))}
        atomic_write_text(predictions_path or Path(work_dir) / "predictions.json",
                          json.dumps({"results": preds}, indent=1))
    return result


def is_recognition_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether the gaf checkpoint at ``path`` holds a recognizer (its config says ``task: recognition``)."""
    return (load_checkpoint(path).get("config") or {}).get("task") == "recognition"


def load_recognizer(ckpt: str | os.PathLike[str], *, config: str | None = None, overrides: Sequence[str] = (),
                    device: torch.device | str = "cpu") -> tuple[Recognizer, RecognitionExperiment]:
    """A trained recognizer and its config from a checkpoint (``config``: a YAML to use instead of the stored one)."""
    state = load_checkpoint(ckpt)
    if config is not None:
        cfg = load_recognition_experiment(config, overrides)
    else:
        stored = state.get("config") or {}
        if stored.get("task") != "recognition":
            raise ConfigError(f"{ckpt}: not a recognition checkpoint (its config has no 'task: recognition')")
        cfg = from_dict(RecognitionExperiment, apply_overrides(dict(stored), overrides), where=f"{ckpt} config")
    model = _build(cfg, state["meta"], for_checkpoint=True)
    load_model_state(model, state["model"], str(ckpt))
    return model.to(device).eval(), cfg


# ---------------------------------------------------------------------- training
def train_recognizer(cfg: RecognitionExperiment, *, work_dir: Path | None = None, resume: bool = False,
                     stop_after_epochs: int | None = None, progress: bool = True,
                     ctx: DistContext | None = None) -> RecognitionTrainResult:
    """Train ``cfg`` in ``work_dir`` (default ``cfg.resolved_work_dir()``); same contract as
    :func:`gaf.engine.train.train`: ``resume`` from ``latest.pt`` (same config but ``train.epochs``),
    ``stop_after_epochs`` epochs in this call, evaluation at the end when ``train.eval_at_end``,
    several processes under ``torchrun`` (rank 0 writes; it evaluates on its own)."""
    work_dir = Path(work_dir) if work_dir is not None else cfg.resolved_work_dir()
    ctx = ctx if ctx is not None else init_distributed(cfg.train.device)
    with hold_work_dir(work_dir, enabled=ctx.is_main):  # one run per work dir
        return _train_recognizer_holding(cfg, work_dir, ctx, resume=resume, stop_after_epochs=stop_after_epochs,
                                         progress=progress)


def _train_recognizer_holding(cfg: RecognitionExperiment, work_dir: Path, ctx: DistContext, *, resume: bool,
                              stop_after_epochs: int | None, progress: bool) -> RecognitionTrainResult:
    """:func:`train_recognizer`'s body, run while this process holds ``work_dir``'s lock."""
    tcfg = cfg.train
    logger = setup_logging(work_dir if ctx.is_main else None, console=ctx.is_main)
    device = ctx.device
    config_dict = to_dict(cfg)
    state = open_run(work_dir, config_dict, resume=resume)
    _check_pairing(cfg)
    ctx.barrier()
    if ctx.is_main:
        atomic_write_text(work_dir / "config.yaml", cfg.to_yaml())

    seed_everything(tcfg.seed, deterministic=tcfg.deterministic)
    train_set = build_clip_dataset(cfg.data, "train", training=True)
    meta = {"task": "recognition", "in_dim": train_set.input_dim, "num_classes": train_set.num_classes,
            "labels": list(train_set.classes)}
    model = _build(cfg, meta).to(device)
    logger.info("train: %d videos, %d classes, input %s, device %s%s, %d parameters", len(train_set),
                train_set.num_classes, cfg.data.source, device,
                f" x {ctx.world_size} processes" if ctx.enabled else "", sum(p.numel() for p in model.parameters()))
    result = fit(model, train_set, stages=model.active_stages(), collate=collate_clips,
                 step_losses=recognition_step_losses, tcfg=tcfg, work_dir=work_dir, config_dict=config_dict,
                 meta=meta, state=state, ctx=ctx, logger=logger, progress=progress,
                 stop_after_epochs=stop_after_epochs)
    if result.epochs_done < tcfg.epochs:
        return RecognitionTrainResult(work_dir, result.epochs_done, None, None)
    if result.ema is not None:
        model.load_state_dict(result.ema.state_dict())
    final_state = {"epoch": result.epochs_done, "model": model.state_dict(), "config": config_dict, "meta": meta,
                   "history": result.history, "metrics": None}
    final = work_dir / "final.pt"
    metrics = None
    if ctx.is_main and tcfg.eval_at_end:  # recognition test sets are small: rank 0 scores alone
        metrics = evaluate_recognizer(model, cfg, device=device, progress=progress, logger=logger,
                                      work_dir=work_dir).metrics
        final_state["metrics"] = metrics
    return RecognitionTrainResult(work_dir, result.epochs_done, write_final(final, final_state, ctx, logger), metrics)


def recognition_step_losses(model: torch.nn.Module, batch: dict[str, Any], stage: str, progress: float,
                            device: torch.device) -> dict[str, torch.Tensor]:
    """One batch of a recognition stage: ``model.losses`` on the clips moved to ``device``."""
    return model.losses(batch["inputs"].to(device), batch["labels"].to(device), stage=stage,
                        mask=batch["mask"].to(device), progress=progress)


# ---------------------------------------------------------------------- CLI entry points
def run_train_command(args: argparse.Namespace) -> int:
    """``gaf train CONFIG`` for ``task: recognition`` (namespace of :mod:`gaf.commands.train`)."""
    cfg = load_recognition_experiment(args.config, getattr(args, "overrides", ()) or ())
    if getattr(args, "work_dir", None):
        cfg.work_dir = args.work_dir
    result = train_recognizer(cfg, work_dir=cfg.resolved_work_dir(), resume=bool(getattr(args, "resume", False)),
                              stop_after_epochs=getattr(args, "stop_after", None),
                              progress=bool(getattr(args, "progress", True)))
    if not init_distributed(cfg.train.device).is_main:
        return 0
    if result.metrics is not None:
        print(format_recognition_metrics(result.metrics))
    print(f"work dir: {result.work_dir}")
    return 0


def run_eval_command(args: argparse.Namespace) -> int:
    """``gaf eval [CONFIG] --ckpt CKPT`` for a recognition checkpoint (namespace of :mod:`gaf.commands.eval`)."""
    ctx = init_distributed(getattr(args, "device", "auto") or "auto")
    if not ctx.is_main:  # recognition is scored on rank 0 alone (test sets are small)
        return 0
    device = ctx.device
    model, cfg = load_recognizer(args.ckpt, config=getattr(args, "config", None),
                                 overrides=getattr(args, "overrides", ()) or (), device=device)
    ckpt = Path(args.ckpt)
    suffix = "_fused" if getattr(args, "fuse", None) else ""
    work_dir = Path(args.work_dir) if getattr(args, "work_dir", None) else ckpt.parent / f"eval_{ckpt.stem}{suffix}"
    logger = setup_logging(work_dir, filename="eval_log.txt")
    out = Path(args.out) if getattr(args, "out", None) else None
    fuse = []
    if getattr(args, "fuse", None):  # second stream (e.g. flow next to RGB): its stored config, same overrides
        fuse.append(load_recognizer(args.fuse, overrides=getattr(args, "overrides", ()) or (), device=device))
    result = evaluate_recognizer(model, cfg, device=device, progress=bool(getattr(args, "progress", True)),
                                 logger=logger, work_dir=work_dir, predictions_path=out, fuse=fuse)
    print(result.format_table())
    print(f"predictions: {out or work_dir / 'predictions.json'}")
    return 0
