"""The training loop: GAF's two-stage alternation, checkpoints, resume.

Each epoch runs two passes over the training set (paper §IV-B, Fig. 2):

1. **stage "frame"**: Frame-GAF (the CVAE) learns ``L_CVAE`` with the
   attention λ from Segment-GAF detached; everything else is frozen;
2. **stage "segment"**: Segment-GAF and the detector learn
   ``L_d + L_R`` with Frame-GAF frozen (``L_R`` goes through its frozen
   decoder).

With GAF disabled (the plain detector, Table IV's first row) only stage
"segment" runs. Each stage has its own Adam optimiser and warm-up +
schedule. Every epoch ends with an atomic ``latest.pt``; every random draw
is keyed by ``(seed, epoch, stage, item)``, so a run resumed from
``latest.pt`` continues exactly as the uninterrupted run would have. The
epoch loop itself (shared with recognition, one process or many under
``torchrun``) is :func:`gaf.engine.loop.fit`.

Work dir layout::

    config.yaml      resolved config        log.txt        the log
    latest.pt        last completed epoch   epoch_NNN.pt   numbered checkpoints
    final.pt         weights for eval (EMA when enabled) + config + metrics
    history.json     per-epoch losses       predictions.json, metrics.json, report/ (after eval)
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaf.data.features import read_preprocessing
from gaf.engine.distributed import DistContext, init_distributed
from gaf.engine.experiment import ExperimentConfig
from gaf.engine.factory import build_dataset, build_detector, collate_for, detector_config
from gaf.engine.loop import STAGES, fit
from gaf.engine.run import Run, TrainResult, finish_run, start_run
from gaf.errors import ConfigError, DataError
from gaf.models.gaf_detector import GAFDetector

__all__ = ["train", "TrainResult", "prepare_benchmark", "detection_step_losses", "class_frequency", "data_fingerprint"]


def prepare_benchmark(cfg: ExperimentConfig, logger=None) -> None:
    """Generate the embedded benchmark into ``cfg.benchmark.out_dir`` when the config asks for it."""
    if cfg.benchmark is None:
        return
    from gaf.data.synthetic import generate_benchmark

    out = Path(cfg.benchmark.out_dir)
    if logger is not None and not (out / "benchmark.json").exists():
        logger.info("generating the embedded benchmark into %s", out)
    generate_benchmark(out, cfg.benchmark.synthetic)


def data_fingerprint(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a run's data looked like when it started: the annotation file's size and sha256, and the
    count, total size and newest modification time of the feature (or video) folder's files."""
    from gaf.io import sha256_file

    source = cfg.dataset if cfg.e2e is None else cfg.frames
    folder = Path(cfg.dataset.feature_dir if cfg.e2e is None else cfg.frames.video_dir)
    annotation = Path(source.annotation_file)
    doc: dict[str, Any] = {"annotation": str(annotation)}
    if annotation.is_file():
        doc.update(annotation_bytes=annotation.stat().st_size, annotation_sha256=sha256_file(annotation))
    files = [p.stat() for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    doc.update(folder=str(folder), files=len(files), bytes=sum(f.st_size for f in files),
               newest_mtime=max((f.st_mtime for f in files), default=0.0))
    return doc


def _warn_if_data_changed(before: dict[str, Any] | None, now: dict[str, Any], logger) -> None:
    """A loud warning when a resumed run's data differ from what the run started on."""
    if not before:
        return
    changed = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in now if k in before and before[k] != now[k]]
    if changed:
        message = ("the data changed since this run started (" + "; ".join(changed) + "): the resumed run mixes "
                   "two datasets; start a new run (another --work-dir) unless that is intended")
        warnings.warn(message, UserWarning, stacklevel=2)
        logger.warning("WARNING: %s", message)


def _check_extraction(cfg: ExperimentConfig, extraction: dict[str, Any], videos: dict[str, Any]) -> None:
    """The dataset config must read the features as ``gaf extract`` made them (its features.json): stride,
    window and fps, and, unless ``dataset.force_fps``, the fps of each of ``videos`` (the annotation's
    :class:`~gaf.data.annotations.Video` by id) must be the extraction's rate."""
    ds = cfg.dataset
    where = f"{ds.feature_dir}/features.json"
    for key, ours in (("stride", ds.feature_stride), ("window", ds.num_frames), ("fps", ds.fps)):
        theirs = extraction.get(key)
        if ours is not None and theirs is not None and float(theirs) != float(ours):
            name = {"stride": "feature_stride", "window": "num_frames", "fps": "fps"}[key]
            raise ConfigError(f"dataset.{name}: {ours}, but {where} says the features were extracted with "
                              f"{key} {theirs}; set dataset.{name}: {theirs}")
    rate = extraction.get("fps")
    if rate is not None and not ds.force_fps:  # each video's own fps would place its steps: it must be the rate
        for vid, video in videos.items():
            if video.fps is not None and abs(float(video.fps) - float(rate)) > 1e-3 * float(rate):
                raise ConfigError(f"{ds.annotation_file}: video {vid!r} has fps {video.fps:g}, but {where} says "
                                  f"the features were extracted at {float(rate):g} fps (gaf extract resamples "
                                  f"every video), so its steps would be placed at the wrong times; set "
                                  f"dataset.fps: {float(rate):g} and dataset.force_fps: true")


def train(
    cfg: ExperimentConfig,
    *,
    work_dir: Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    progress: bool = True,
    ctx: DistContext | None = None,
) -> TrainResult:
    """Train ``cfg`` in ``work_dir`` (default ``cfg.resolved_work_dir()``).

    ``resume`` continues from ``work_dir/latest.pt`` (same config required,
    except ``train.epochs`` which may grow). ``stop_after_epochs`` trains
    that many epochs in this call and returns (resume later to finish).
    Evaluates on the test split at the end when ``cfg.train.eval_at_end``.
    ``ctx``: the process group of a ``torchrun`` launch (default: joined
    from the environment; one process without it). Under several processes
    only rank 0 writes files; every rank returns the same epochs, and the
    metrics on rank 0.
    """
    work_dir = Path(work_dir) if work_dir is not None else cfg.resolved_work_dir()
    ctx = ctx if ctx is not None else init_distributed(cfg.train.device)
    with start_run(cfg, work_dir, ctx, resume=resume, prepare=lambda log: prepare_benchmark(cfg, log)) as run:
        train_set, meta = _training_data(cfg, run, progress)
        mcfg = detector_config(cfg)
        model_cfg = _resolve_auto_ranges(cfg, train_set, meta, run.logger) \
            if mcfg.detector.regression_ranges == "auto" else cfg
        model = build_detector(model_cfg, meta).to(run.device)
        run.logger.info("train: %d videos, %d classes, input dim %d, device %s%s, %d CPU thread(s), %d parameters",
                        len(train_set), train_set.num_classes, train_set.input_dim, run.device,
                        f" x {ctx.world_size} processes" if ctx.enabled else "", torch.get_num_threads(),
                        sum(p.numel() for p in model.parameters()))
        if run.state is None and isinstance(model, GAFDetector) and model.gaf is not None and mcfg.loss.clf_prior:
            model.gaf.init_class_prior(class_frequency(train_set))
        # Stage "frame" trains Frame-GAF's CVAE; without GAF or with L_CVAE off there is nothing to train.
        stages = [s for s in STAGES if s == "segment" or (mcfg.gaf.enabled and mcfg.loss.cvae > 0)]
        monitor = _attention_monitor(cfg, model, train_set, run.device, run.logger) if ctx.is_main else None
        result = fit(model, train_set, stages=stages, collate=collate_for(train_set),
                     step_losses=detection_step_losses, tcfg=cfg.train, work_dir=work_dir,
                     config_dict=run.config_dict, meta=meta, state=run.state, ctx=ctx, logger=run.logger,
                     progress=progress, stop_after_epochs=stop_after_epochs, monitor=monitor)

        def evaluate() -> dict[str, Any] | None:
            if not cfg.train.eval_at_end:
                return None
            from gaf.engine.evaluate import evaluate_run

            run_info = {"checkpoint": str(work_dir / "final.pt"), "epoch": result.epochs_done,
                        "device": str(run.device),
                        "training videos / instances / windows": f"{len(train_set.video_ids)} / "
                        f"{train_set.ground_truth().num_segments} / {len(train_set)}",
                        "weights": "EMA" if result.ema is not None else "last epoch"}
            evaluated = evaluate_run([model], [cfg], work_dir=work_dir, device=run.device, progress=progress,
                                     logger=run.logger, ctx=ctx, history=result.history, run_info=run_info)
            return evaluated.to_json() if evaluated is not None else None

        return finish_run(run, model, result, epochs=cfg.train.epochs, meta=meta, evaluate=evaluate)


def _training_data(cfg: ExperimentConfig, run: Run, progress: bool):
    """The training split, checked (and the test split's files when the run ends with an evaluation), and
    the run's ``meta``: input dim, classes, the data's fingerprint and the features' extraction record."""
    train_set = build_dataset(cfg, "train", training=True)
    train_set.check(progress=progress and run.ctx.is_main)
    if cfg.train.eval_at_end and run.ctx.is_main:  # a bad test file is found now, not after the last epoch
        build_dataset(cfg, "test", training=False).check(progress=progress)
    gt = train_set.ground_truth()
    if gt.num_segments == 0:
        raise DataError(f"{gt.source}: the training subset holds no action instance in its {len(gt.videos)} "
                        "videos (dataset.train_subset, and the annotation's subset names); nothing to learn")
    if cfg.e2e is None and run.ctx.is_main:  # the data load: a few lines on what they mean for the config
        _log_data_check(cfg, run)
    meta = {"in_dim": train_set.input_dim, "num_classes": train_set.num_classes, "labels": list(train_set.labels),
            "data": data_fingerprint(cfg)}
    if getattr(train_set, "class_agnostic", False):  # one class, "action"; the annotation's classes for reference
        meta.update(class_agnostic=True, class_names=list(train_set.class_names))
    if run.state is not None:
        _warn_if_data_changed(run.state.get("meta", {}).get("data"), meta["data"], run.logger)
    extraction = read_preprocessing(cfg.dataset.feature_dir) if cfg.e2e is None else None
    if extraction:  # features from `gaf extract`: gaf detect must make new ones the same way
        _check_extraction(cfg, extraction, gt.videos)
        meta["extraction"] = extraction
    if cfg.e2e is None:  # how the features were made (features.json), None when not recorded
        from gaf.data.provenance import provenance_record

        meta["feature_provenance"] = provenance_record(cfg.dataset.feature_dir)
    return train_set, meta


def _resolve_auto_ranges(cfg: ExperimentConfig, train_set, meta: dict[str, Any], logger) -> ExperimentConfig:
    """``model.detector.regression_ranges: auto``: a copy of ``cfg`` for building the model, whose
    ``regression_range_base`` comes from the training instances' lengths
    (:func:`gaf.data.sizing.auto_range_base`), also recorded in ``meta`` and the log. The run's config stays
    as written (``auto``): the same data give the same value, so a resumed run resolves it alike; the ranges
    only shape training targets, so inference does not need it."""
    import copy

    from gaf.data.sizing import auto_range_base

    lengths = train_set.instance_steps()
    configured = detector_config(cfg).detector.regression_range_base
    base = auto_range_base(lengths, configured)
    model_cfg = copy.deepcopy(cfg)
    detector_config(model_cfg).detector.regression_range_base = base
    meta["regression_range_base"] = base
    half = 0.5 * lengths[lengths > 0]
    logger.info("regression ranges: auto -> regression_range_base %g steps (5th percentile of the %d training "
                "instances' half-lengths: %.3g steps; the configured base %g kept unless that is longer, then "
                "raised to a power of two above it)", base, half.size,
                float(np.percentile(half, 5)) if half.size else float("nan"), configured)
    return model_cfg


def _log_data_check(cfg: ExperimentConfig, run: Run) -> None:
    """A few lines of ``gaf data check`` (shapes only) in the run's log, once the datasets have loaded (what
    they cannot use has stopped the run with its own error); it never stops training."""
    import warnings

    from gaf.data.check import check_dataset

    try:
        with warnings.catch_warnings():  # the datasets have warned about the annotation already
            warnings.simplefilter("ignore")
            report = check_dataset(cfg.dataset, cfg.model.detector)
    except Exception as exc:  # noqa: BLE001 -- it only informs (e.g. a folder mixing extractions is named here)
        run.logger.warning("data check: not done (%s)", exc)
        return
    details = f"gaf data check {run.work_dir / 'config.yaml'}"
    for line in report.summary(details):
        (run.logger.warning if " problem(s): " in line else run.logger.info)("%s", line)


def class_frequency(dataset) -> torch.Tensor:
    """``(K,)``: the fraction of the dataset's videos holding each of the model's classes (the L_clf head's
    prior; a class-agnostic model's one class: the videos holding any instance)."""
    gt = dataset.ground_truth()
    index = dataset.label_index
    counts = torch.zeros(len(dataset.labels))
    for video in gt.videos.values():
        for k in {index[s.label] for s in video.segments if s.label in index}:
            counts[k] += 1
    return counts / max(1, len(gt.videos))


def _attention_monitor(cfg: ExperimentConfig, model: torch.nn.Module, train_set, device: torch.device, logger):
    """The :class:`~gaf.engine.health.AttentionMonitor` of a feature GAF run (None otherwise)."""
    tcfg = cfg.train
    if not isinstance(model, GAFDetector) or model.gaf is None or cfg.e2e is not None:
        return None
    if tcfg.health_items <= 0 and tcfg.grad_probe_every <= 0:
        return None
    from gaf.engine.health import AttentionMonitor

    datasets = {"train": (train_set, collate_for(train_set))}
    if tcfg.health_items > 0:
        try:
            test_set = build_dataset(cfg, "test", training=False)
            datasets["test"] = (test_set, collate_for(test_set))
        except (ConfigError, DataError) as err:
            logger.warning("attention health on the training split only: the test split is unavailable (%s)", err)
    return AttentionMonitor(model, datasets, device=device, health_items=tcfg.health_items,
                            grad_every=tcfg.grad_probe_every, seed=tcfg.seed)


def detection_step_losses(model: torch.nn.Module, batch: dict[str, Any], stage: str, progress: float,
                          device: torch.device) -> dict[str, torch.Tensor]:
    """One batch of a detection stage: ``model.losses`` on the batch moved to ``device``."""
    feats = batch["features"].to(device)
    mask = batch["mask"].to(device)
    segments = [s.to(device) for s in batch["segments"]]
    labels = [lab.to(device) for lab in batch["labels"]]
    return model.losses(feats, mask, segments, labels, stage=stage, progress=progress)


