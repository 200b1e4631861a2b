"""Action recognition: the experiment config, the two-stage training loop and
multi-clip evaluation (paper §IV, Table II).

A recognition YAML has ``task: recognition`` and the sections ``data``
(:class:`gaf.data.clips.ClipDataConfig`), ``model``
(:class:`gaf.models.recognizer.RecognizerConfig`), ``train``
(:class:`gaf.engine.experiment.TrainConfig`, the detector's settings) and
``eval`` (:class:`RecognitionEvalConfig`). ``gaf train CONFIG`` / ``gaf eval``
dispatch here for such files (:func:`run_train_command`,
:func:`run_eval_command`).

Training is the detector's loop (:mod:`gaf.engine.train`) on clips: each
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
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from gaf.config import apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
from gaf.data.clips import ClipDataConfig, build_clip_dataset, collate_clips
from gaf.engine.checkpoint import atomic_write_text, load_checkpoint, load_model_state, save_checkpoint
from gaf.engine.experiment import TrainConfig, resolve_config_path
from gaf.engine.runtime import seed_everything, select_device, setup_logging
from gaf.engine.train import EMA, lr_factor, open_run, progress_bar, prune
from gaf.errors import ConfigError
from gaf.metrics.recognition import mean_class_accuracy, topk_accuracy
from gaf.models.recognizer import STAGES, Recognizer, RecognizerConfig

__all__ = ["RecognitionEvalConfig", "RecognitionExperiment", "RecognitionResult", "RecognitionTrainResult",
           "format_recognition_metrics", "is_recognition_config", "load_recognition_experiment",
           "train_recognizer", "predict_video_scores", "evaluate_recognizer", "load_recognizer",
           "is_recognition_checkpoint", "run_train_command", "run_eval_command"]


@dataclass
class RecognitionEvalConfig:
    """Test-time settings: clips per video (multi-clip averaging), k of top-k, batch size (videos)."""

    num_clips: int = 10
    topk: list[int] = field(default_factory=lambda: [1, 5])
    batch_size: int = 4


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
                     stop_after_epochs: int | None = None, progress: bool = True) -> RecognitionTrainResult:
    """Train ``cfg`` in ``work_dir`` (default ``cfg.resolved_work_dir()``); same contract as
    :func:`gaf.engine.train.train`: ``resume`` from ``latest.pt`` (same config but ``train.epochs``),
    ``stop_after_epochs`` epochs in this call, evaluation at the end when ``train.eval_at_end``."""
    work_dir = Path(work_dir) if work_dir is not None else cfg.resolved_work_dir()
    work_dir.mkdir(parents=True, exist_ok=True)
    logger = setup_logging(work_dir)
    tcfg = cfg.train
    device = select_device(tcfg.device)
    config_dict = to_dict(cfg)
    latest = work_dir / "latest.pt"
    state = open_run(work_dir, config_dict, resume=resume)
    _check_pairing(cfg)
    atomic_write_text(work_dir / "config.yaml", cfg.to_yaml())

    seed_everything(tcfg.seed, deterministic=tcfg.deterministic)
    train_set = build_clip_dataset(cfg.data, "train", training=True)
    meta = {"task": "recognition", "in_dim": train_set.input_dim, "num_classes": train_set.num_classes,
            "labels": list(train_set.classes)}
    model = _build(cfg, meta).to(device)
    logger.info("train: %d videos, %d classes, input %s, device %s, %d parameters", len(train_set),
                train_set.num_classes, cfg.data.source, device, sum(p.numel() for p in model.parameters()))

    stages = model.active_stages()
    iters = max(1, math.ceil(len(train_set) / tcfg.batch_size))
    factor = lr_factor(tcfg, iters)
    optimizers, schedulers = {}, {}
    for stage in stages:
        lr = tcfg.frame_lr if (stage == "frame" and tcfg.frame_lr is not None) else tcfg.lr
        optimizers[stage] = torch.optim.Adam(model.stage_parameters(stage), lr=lr, weight_decay=tcfg.weight_decay)
        schedulers[stage] = torch.optim.lr_scheduler.LambdaLR(optimizers[stage], factor)
    ema = EMA(model, tcfg.ema_decay) if tcfg.ema else None
    start_epoch, history = 0, []
    if state is not None:
        load_model_state(model, state["model"], str(latest))
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            schedulers[name].load_state_dict(state["schedulers"][name])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, history = int(state["epoch"]), list(state.get("history", []))
        logger.info("resumed from %s after epoch %d", latest, start_epoch)

    stop_at = tcfg.epochs if stop_after_epochs is None else min(tcfg.epochs, start_epoch + stop_after_epochs)
    all_params = [p for p in model.parameters()]
    fixed = {id(p) for p in all_params if not p.requires_grad}  # e.g. a frozen backbone
    for epoch in range(start_epoch, stop_at):
        seed_everything(tcfg.seed * 1000 + epoch, deterministic=tcfg.deterministic)
        record: dict[str, Any] = {"epoch": epoch + 1}
        tic = time.perf_counter()
        for stage in stages:
            generator = torch.Generator().manual_seed(tcfg.seed * 1000 + epoch * 2 + STAGES.index(stage))
            loader = DataLoader(train_set, batch_size=tcfg.batch_size, shuffle=True, generator=generator,
                                collate_fn=collate_clips, num_workers=tcfg.num_workers)
            trainable = {id(p) for p in model.stage_parameters(stage)}
            for p in all_params:
                p.requires_grad_(id(p) in trainable)
            model.train()
            sums: dict[str, float] = defaultdict(float)
            steps = 0
            for it, batch in enumerate(progress_bar(loader, f"epoch {epoch + 1}/{tcfg.epochs} {stage}", progress)):
                frac = (epoch + it / iters) / max(1, tcfg.epochs)
                losses = model.losses(batch["inputs"].to(device), batch["labels"].to(device), stage=stage,
                                      mask=batch["mask"].to(device), progress=frac)
                total = losses["total"]
                if not torch.isfinite(total):
                    raise FloatingPointError(f"epoch {epoch + 1} stage {stage}: loss is {total.item()}; "
                                             "lower train.lr")
                optimizers[stage].zero_grad(set_to_none=True)
                total.backward()
                if tcfg.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(model.stage_parameters(stage), tcfg.clip_grad)
                optimizers[stage].step()
                schedulers[stage].step()
                if ema is not None:
                    ema.update(model)
                steps += 1
                for key, value in losses.items():
                    sums[key] += float(value.detach())
            for key, value in sums.items():
                record[f"{stage}/{key}"] = value / max(1, steps)
            record[f"{stage}/lr"] = optimizers[stage].param_groups[0]["lr"]
        for p in all_params:
            p.requires_grad_(id(p) not in fixed)
        record["seconds"] = round(time.perf_counter() - tic, 2)
        history.append(record)
        logger.info("epoch %d/%d %s", epoch + 1, tcfg.epochs,
                    " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"))
        ckpt = {"epoch": epoch + 1, "model": model.state_dict(), "ema": ema.state_dict() if ema else None,
                "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
                "schedulers": {k: v.state_dict() for k, v in schedulers.items()},
                "config": config_dict, "meta": meta, "history": history}
        save_checkpoint(latest, ckpt)
        if tcfg.checkpoint_every > 0 and (epoch + 1) % tcfg.checkpoint_every == 0:
            save_checkpoint(work_dir / f"epoch_{epoch + 1:03d}.pt", ckpt)
            prune(work_dir, tcfg.keep_checkpoints)
        atomic_write_text(work_dir / "history.json", json.dumps(history, indent=1))

    epochs_done = history[-1]["epoch"] if history else start_epoch
    if epochs_done < tcfg.epochs:
        logger.info("stopped after epoch %d of %d; continue with --resume", epochs_done, tcfg.epochs)
        return RecognitionTrainResult(work_dir, epochs_done, None, None)
    if ema is not None:
        model.load_state_dict(ema.state_dict())
    final_state = {"epoch": epochs_done, "model": model.state_dict(), "config": config_dict, "meta": meta,
                   "history": history, "metrics": None}
    metrics = None
    if tcfg.eval_at_end:
        metrics = evaluate_recognizer(model, cfg, device=device, progress=progress, logger=logger,
                                      work_dir=work_dir).metrics
        final_state["metrics"] = metrics
    final = save_checkpoint(work_dir / "final.pt", final_state)
    logger.info("final checkpoint: %s", final)
    return RecognitionTrainResult(work_dir, epochs_done, final, metrics)


# ---------------------------------------------------------------------- CLI entry points
def run_train_command(args: argparse.Namespace) -> int:
    """``gaf train CONFIG`` for ``task: recognition`` (namespace of :mod:`gaf.commands.train`)."""
    cfg = load_recognition_experiment(args.config, getattr(args, "overrides", ()) or ())
    if getattr(args, "work_dir", None):
        cfg.work_dir = args.work_dir
    result = train_recognizer(cfg, work_dir=cfg.resolved_work_dir(), resume=bool(getattr(args, "resume", False)),
                              stop_after_epochs=getattr(args, "stop_after", None),
                              progress=bool(getattr(args, "progress", True)))
    if result.metrics is not None:
        print(format_recognition_metrics(result.metrics))
    print(f"work dir: {result.work_dir}")
    return 0


def run_eval_command(args: argparse.Namespace) -> int:
    """``gaf eval [CONFIG] --ckpt CKPT`` for a recognition checkpoint (namespace of :mod:`gaf.commands.eval`)."""
    device = select_device(getattr(args, "device", "auto") or "auto")
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
