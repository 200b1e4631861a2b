"""Action recognition: the experiment config, the two-stage training loop and
multi-clip evaluation (paper §IV, Table II).

A recognition YAML has the sections of a detection one: ``task: recognition``,
``dataset`` (:class:`gaf.data.recognition_clips.ClipDataConfig`), ``model``
(:class:`gaf.models.recognizer.RecognizerConfig`), ``train``
(:class:`gaf.engine.experiment.TrainConfig`, the detector's settings),
``eval`` (:class:`RecognitionEvalConfig`) and ``benchmark`` (the detection
configs' :class:`gaf.engine.experiment.EmbeddedBenchmark`: gaf's embedded
benchmark, generated on first use, e.g. by ``demo_anet_cls``). Configs
written before the sections were shared name ``dataset`` ``data``: they
still load, with a :class:`DeprecationWarning` naming the new key (:func:`upgrade_sections`).
``gaf train CONFIG`` / ``gaf eval`` dispatch here for such files
(:mod:`gaf.commands.train`, :mod:`gaf.commands.eval`).

Training is the detector's run setup (:mod:`gaf.engine.run`) and loop
(:func:`gaf.engine.loop.fit`) on clips: each
epoch runs stage "frame" (Frame-GAF, ``L_CVAE``) then stage "segment"
(everything else, ``L_clf (+ L_R) (+ L_att``, whose action masks only
``dataset.source: annotations`` has), each with its own Adam optimiser and
warm-up + schedule; RNGs are re-seeded from ``(seed, epoch)`` every epoch and
``latest.pt`` is written atomically after each, so ``resume`` continues
exactly. Evaluation averages each video's clip scores (softmax
probabilities; sigmoid for ``clf_form: sigmoid``) over ``eval.num_clips``
evenly spaced clips and reports top-k accuracy and mean class accuracy;
``fuse`` averages a second stream's per-video scores in (RGB + flow, §IV-B).
The raw-video path is RGB only: the flow stream reads cached flow features.

Work dir: ``config.yaml``, ``log.txt``, ``latest.pt``, ``epoch_NNN.pt``,
``history.json``, ``final.pt`` and, after evaluation, ``metrics.json``,
``predictions.json`` (per test video: label, top-5 classes and scores) and
``video_scores.json`` (:func:`write_video_scores`: every test video's K class
probabilities in the layout of CUHK's ActivityNet classifier file, which a
detection config's class-agnostic detections fuse with).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from gaf.config import AT_LEAST_ONE, ranged
from gaf.config import apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
from gaf.data.recognition_clips import ClipDataConfig, build_clip_dataset, collate_clips
from gaf.engine.checkpoint import load_checkpoint, load_model_state
from gaf.engine.experiment import EmbeddedBenchmark, TrainConfig, resolve_config_path
from gaf.engine.distributed import DistContext, init_distributed
from gaf.engine.loop import fit
from gaf.engine.run import TrainResult, finish_run, start_run
from gaf.io import atomic_write_text
from gaf.progress import progress_bar
from gaf.errors import ConfigError, DataError
from gaf.metrics.recognition import mean_class_accuracy, topk_accuracy
from gaf.models.recognizer import Recognizer, RecognizerConfig

__all__ = ["RecognitionEvalConfig", "RecognitionExperiment", "RecognitionResult", "RecognitionTrainResult",
           "format_recognition_metrics", "is_recognition_config", "load_recognition_experiment",
           "train_recognizer", "predict_video_scores", "evaluate_recognizer", "load_recognizer",
           "is_recognition_checkpoint", "upgrade_sections", "write_video_scores"]


@dataclass
class RecognitionEvalConfig:
    """Test-time settings: clips per video (multi-clip averaging), k of top-k, batch size (videos)."""

    num_clips: int = ranged(10, AT_LEAST_ONE)
    topk: list[int] = field(default_factory=lambda: [1, 5], metadata=AT_LEAST_ONE)
    batch_size: int = ranged(4, AT_LEAST_ONE)


@dataclass
class RecognitionExperiment:
    dataset: ClipDataConfig
    task: Literal["recognition"] = "recognition"
    name: str = "recognition"
    model: RecognizerConfig = field(default_factory=RecognizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: RecognitionEvalConfig = field(default_factory=RecognitionEvalConfig)
    benchmark: EmbeddedBenchmark | None = None
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


RecognitionTrainResult = TrainResult  # one result type for both tasks (the name kept for callers)


def is_recognition_config(path: str | os.PathLike[str]) -> bool:
    """Whether the YAML at ``path`` (or the bundled config of that name) says ``task: recognition``."""
    return load_yaml(resolve_config_path(path)).get("task") == "recognition"


def upgrade_sections(doc: dict[str, Any], overrides: Sequence[str] = (), *, where: str) -> list[str]:
    """Rename a recognition config's old ``data`` section (and ``data.*`` overrides) to ``dataset`` in place,
    with a :class:`DeprecationWarning` naming the new key; returns the overrides to apply."""
    if "data" in doc:
        if "dataset" in doc:
            raise ConfigError(f"{where}: both 'data' and 'dataset' sections; 'data' is the old name of "
                              "'dataset': keep one")
        warnings.warn(f"{where}: the recognition section 'data' is now 'dataset' (the detection configs' name); "
                      "rename it", DeprecationWarning, stacklevel=3)
        doc["dataset"] = doc.pop("data")
    renamed = []
    for item in overrides:
        if item.startswith("data."):
            warnings.warn(f"--set {item.split('=', 1)[0]}: 'data.' is now 'dataset.'", DeprecationWarning,
                          stacklevel=3)
            item = "dataset." + item[len("data."):]
        renamed.append(item)
    return renamed


def load_recognition_experiment(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> RecognitionExperiment:
    """Read, override (``section.key=value``) and check a recognition config; errors name the key path."""
    resolved = resolve_config_path(path)
    doc = load_yaml(resolved)
    overrides = upgrade_sections(doc, overrides, where=str(resolved))
    data = apply_overrides(doc, overrides)
    if "dataset" not in data:
        raise ConfigError(f"{resolved}: missing the 'dataset' section")
    return from_dict(RecognitionExperiment, data, where=resolved.name)


def _check_pairing(cfg: RecognitionExperiment) -> None:
    model_cfg = cfg.model
    if (cfg.dataset.source == "video") != (model_cfg.backbone == "i3d"):
        raise ConfigError(f"dataset.source: {cfg.dataset.source!r} needs model.backbone: "
                          f"{'i3d' if cfg.dataset.source == 'video' else 'none'} (got {model_cfg.backbone!r})")
    if cfg.dataset.source == "video" and model_cfg.stream == "flow":
        raise ConfigError("model.stream: 'flow' cannot read decoded RGB video (dataset.source: video); "
                          "train the flow stream on cached flow features (dataset.source: features)")
    if model_cfg.loss.att > 0 and cfg.dataset.source != "annotations":
        raise ConfigError(f"model.loss.att: {model_cfg.loss.att:g} trains the attention on annotated action steps, "
                          f"which only dataset.source: annotations has (got {cfg.dataset.source!r}); set it to 0")


def _build(cfg: RecognitionExperiment, meta: dict[str, Any], *, for_checkpoint: bool = False) -> Recognizer:
    _check_pairing(cfg)
    model_cfg = cfg.model
    if for_checkpoint:  # the checkpoint holds the backbone's weights: do not read the initial ones
        model_cfg = replace(model_cfg, backbone_weights=None)
    in_dim = meta["in_dim"] if model_cfg.backbone == "none" else None
    return Recognizer(model_cfg, meta["num_classes"], in_dim)


def _data_name(data: ClipDataConfig) -> str:
    """The file or folder that lists a dataset's videos, for messages."""
    return data.annotation_file if data.source == "annotations" else data.split_dir


# ---------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_video_scores(model: Recognizer, cfg: RecognitionExperiment, *, device: torch.device | str = "cpu",
                         progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[str], list[str], int]:
    """Per-video scores on the test list: ``(scores (N, K), labels (N,), videos, classes, clips per video)``.

    A video's score is the mean of its clips' class probabilities (``eval.num_clips``
    evenly spaced clips; fewer when the video is too short to hold them apart).
    """
    device = torch.device(device)
    ds = build_clip_dataset(cfg.dataset, "test", training=False, num_clips=cfg.eval.num_clips)
    if ds.num_classes != model.num_classes:
        raise ConfigError(f"{_data_name(cfg.dataset)}: {ds.num_classes} classes but the model was trained on "
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


def write_video_scores(path: Path, scores: np.ndarray, videos: Sequence[str], classes: Sequence[str]) -> None:
    """Write per-video class scores ``(N, K)`` atomically in the layout of CUHK's ActivityNet classifier file
    (``cuhk_val_simp_share.json``): ``{"results": {video: [K scores]}, "class": [K names]}``.

    Each row is divided by its sum (``clf_form: softmax`` leaves a share on
    the background, ``sigmoid`` scores are independent), so it reads as the
    video's distribution over the K classes, as CUHK's scores do; rounded to
    6 decimals. Video ids are the dataset's as written (annotation ids, with or
    without ``v_``; UCF101 list paths).
    """
    rows = np.asarray(scores, dtype=np.float64)
    rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1e-12)
    doc = {"results": {v: [round(float(x), 6) for x in row] for v, row in zip(videos, rows)},
           "class": list(classes)}
    atomic_write_text(path, json.dumps(doc))


def evaluate_recognizer(model: Recognizer, cfg: RecognitionExperiment, *, device: torch.device | str = "cpu",
                        progress: bool = False, logger=None, work_dir: Path | None = None,
                        predictions_path: Path | None = None, scores_path: Path | None = None,
                        fuse: Sequence[tuple[Recognizer, RecognitionExperiment]] = ()) -> RecognitionResult:
    """Top-k / mean class accuracy of ``model`` on the test list of ``cfg.dataset`` (multi-clip averaging).

    ``fuse``: further ``(model, cfg)`` pairs (e.g. the flow stream next to the
    RGB one, §IV-B) whose per-video scores are averaged in; they must list
    the same test videos. With ``work_dir``, writes ``metrics.json``,
    ``predictions.json`` (or ``predictions_path``) and ``video_scores.json``
    (or ``scores_path``; :func:`write_video_scores`) there, atomically.
    """
    scores, labels, videos, classes, clips = predict_video_scores(model, cfg, device=device, progress=progress)
    for other, other_cfg in fuse:
        s2, _, v2, _, _ = predict_video_scores(other, other_cfg, device=device, progress=progress)
        if v2 != videos:
            raise ConfigError(f"{_data_name(other_cfg.dataset)}: the fused model's test videos differ from "
                              f"{_data_name(cfg.dataset)}'s")
        scores = scores + s2
    scores = scores / (1 + len(fuse))
    metrics: dict[str, Any] = topk_accuracy(scores, labels, cfg.eval.topk)
    metrics["mean_class_acc"] = mean_class_accuracy(scores, labels)
    metrics.update(num_videos=int(len(labels)), num_clips=int(clips), streams=1 + len(fuse))
    if cfg.dataset.source == "annotations":
        metrics["subset"] = cfg.dataset.test_subset
    else:
        metrics["split"] = cfg.dataset.split
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
        write_video_scores(scores_path or Path(work_dir) / "video_scores.json", scores, videos, classes)
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
        stored = dict(state.get("config") or {})
        if stored.get("task") != "recognition":
            raise ConfigError(f"{ckpt}: not a recognition checkpoint (its config has no 'task: recognition')")
        if "data" in stored and "dataset" not in stored:  # a checkpoint from before the shared section names
            stored["dataset"] = stored.pop("data")
        overrides = upgrade_sections(stored, overrides, where=f"{ckpt} config")
        cfg = from_dict(RecognitionExperiment, apply_overrides(stored, overrides), where=f"{ckpt} config")
    model = _build(cfg, state["meta"], for_checkpoint=True)
    load_model_state(model, state["model"], str(ckpt))
    return model.to(device).eval(), cfg


# ---------------------------------------------------------------------- training
def train_recognizer(cfg: RecognitionExperiment, *, work_dir: Path | None = None, resume: bool = False,
                     stop_after_epochs: int | None = None, progress: bool = True,
                     ctx: DistContext | None = None) -> TrainResult:
    """Train ``cfg`` in ``work_dir`` (default ``cfg.resolved_work_dir()``); same contract as
    :func:`gaf.engine.train.train`: ``resume`` from ``latest.pt`` (same config but ``train.epochs``),
    ``stop_after_epochs`` epochs in this call, evaluation at the end when ``train.eval_at_end``,
    several processes under ``torchrun`` (rank 0 writes; it evaluates on its own)."""
    work_dir = Path(work_dir) if work_dir is not None else cfg.resolved_work_dir()
    ctx = ctx if ctx is not None else init_distributed(cfg.train.device)
    _check_pairing(cfg)
    from gaf.engine.train import prepare_benchmark  # the detection configs' embedded benchmark, same generator

    with start_run(cfg, work_dir, ctx, resume=resume, prepare=lambda log: prepare_benchmark(cfg, log)) as run:
        train_set = build_clip_dataset(cfg.dataset, "train", training=True)
        untimed = getattr(train_set, "untimed", [])
        if cfg.model.gaf.enabled and cfg.model.loss.att > 0 and untimed:
            raise DataError(f"{cfg.dataset.annotation_file}: video {untimed[0]!r} ({len(untimed)} of "
                            f"{len(train_set)}) has neither fps nor duration: its action steps, which "
                            "model.loss.att trains on, cannot be placed")
        meta = {"task": "recognition", "in_dim": train_set.input_dim, "num_classes": train_set.num_classes,
                "labels": list(train_set.classes)}
        model = _build(cfg, meta).to(run.device)
        run.logger.info("train: %d videos, %d classes, input %s, device %s%s, %d parameters", len(train_set),
                        train_set.num_classes, cfg.dataset.source, run.device,
                        f" x {ctx.world_size} processes" if ctx.enabled else "",
                        sum(p.numel() for p in model.parameters()))
        result = fit(model, train_set, stages=model.active_stages(), collate=collate_clips,
                     step_losses=recognition_step_losses, tcfg=cfg.train, work_dir=work_dir,
                     config_dict=run.config_dict, meta=meta, state=run.state, ctx=ctx, logger=run.logger,
                     progress=progress, stop_after_epochs=stop_after_epochs)

        def evaluate() -> dict[str, Any] | None:
            if not (ctx.is_main and cfg.train.eval_at_end):  # recognition test sets are small: rank 0 scores alone
                return None
            return evaluate_recognizer(model, cfg, device=run.device, progress=progress, logger=run.logger,
                                       work_dir=work_dir).metrics

        return finish_run(run, model, result, epochs=cfg.train.epochs, meta=meta, evaluate=evaluate)


def recognition_step_losses(model: torch.nn.Module, batch: dict[str, Any], stage: str, progress: float,
                            device: torch.device) -> dict[str, torch.Tensor]:
    """One batch of a recognition stage: ``model.losses`` on the clips (and their action masks, when the
    dataset has them) moved to ``device``."""
    action = batch.get("action_mask")
    return model.losses(batch["inputs"].to(device), batch["labels"].to(device), stage=stage,
                        mask=batch["mask"].to(device), progress=progress,
                        action_mask=action.to(device) if action is not None else None)
