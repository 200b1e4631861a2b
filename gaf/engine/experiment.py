"""The experiment config: one YAML file = one run.

Sections (fixed names, each a dataclass defined next to its code; a
recognition config has the same ``task`` / ``dataset`` / ``model`` / ``train`` /
``eval`` sections, :mod:`gaf.engine.recognition`)::

    task:       detection (the default; ``recognition`` configs load through gaf.engine.recognition)
    name:       run name (work dir default: work_dirs/<name>)
    dataset:    gaf.data.features.DatasetConfig   (paths, fps, stride, window, dims, lengths)
    model:      gaf.models.gaf_detector.ModelConfig      (gaf / detector / loss)
    e2e:        gaf.models.e2e.E2EConfig | null   (end-to-end run: I3D on frames + GAF; needs ``frames``)
    frames:     gaf.data.e2e_frames.FrameDatasetConfig | null  (videos and clips of an e2e run, instead of ``dataset``)
    train:      TrainConfig                       (optimiser, schedule, epochs, EMA, seed)
    eval:       EvalConfig                        (tIoUs, NMS, caps, report)
    benchmark:  EmbeddedBenchmark | null          (generate gaf's embedded benchmark first)
    work_dir:   str | null

``load_experiment(path, overrides)`` reads a YAML file (or the name of a
config bundled with gaf, e.g. ``demo`` or ``thumos14_i3d``), applies
``--set key=value`` overrides and checks every key and type.

A feature run has ``dataset`` (+ ``model``); an end-to-end run has ``e2e``
and ``frames`` instead (its detector settings are ``e2e.detector``).
:mod:`gaf.engine.factory` builds the datasets and model of either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal, Sequence

from gaf.config import AT_LEAST_ONE, HALF_OPEN_UNIT, NON_NEGATIVE, OPEN_UNIT, POSITIVE, SEED, UNIT, ranged
from gaf.config import apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
from gaf.data.features import DatasetConfig
from gaf.data.e2e_frames import FrameDatasetConfig
from gaf.data.synthetic import SyntheticConfig
from gaf.errors import ConfigError
from gaf.models.gaf_detector import ModelConfig
from gaf.models.e2e import E2EConfig

__all__ = [
    "TrainConfig",
    "EvalConfig",
    "EmbeddedBenchmark",
    "ExperimentConfig",
    "load_experiment",
    "resolve_config_path",
    "bundled_configs",
]


@dataclass
class TrainConfig:
    """Optimisation settings (paper §IV-B: Adam, weight decay 1e-3, 20 epochs)."""

    epochs: int = ranged(20, AT_LEAST_ONE)
    batch_size: int = ranged(2, AT_LEAST_ONE)
    lr: float = ranged(1e-4, POSITIVE)
    frame_lr: float | None = ranged(None, POSITIVE)  # Frame-GAF (stage 1) learning rate; default: lr
    clf_lr: float | None = ranged(None, POSITIVE)  # the L_clf classifier head's learning rate; default: lr
    weight_decay: float = ranged(1e-3, NON_NEGATIVE)
    warmup_epochs: float = ranged(1.0, NON_NEGATIVE)
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    step_epochs: list[int] = field(default_factory=list, metadata=AT_LEAST_ONE)  # for schedule=step: multiply lr by 0.1 at these
    clip_grad: float = ranged(1.0, NON_NEGATIVE)  # max gradient norm; 0 disables
    ema: bool = False
    ema_decay: float = ranged(0.999, OPEN_UNIT)
    seed: int = ranged(0, SEED)
    deterministic: bool = True
    num_workers: int = ranged(0, NON_NEGATIVE)
    # torch's CPU threads (intra-op) while the run trains and evaluates, 0: torch's default (one per core); under
    # OMP_WAIT_POLICY=PASSIVE small models train faster on one (docs/performance.md, "Whole-run training time")
    threads: int = ranged(0, NON_NEGATIVE)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    checkpoint_every: int = ranged(1, NON_NEGATIVE)  # epochs between numbered checkpoints, 0: none (latest.pt: every epoch)
    save_every_iters: int = ranged(0, NON_NEGATIVE)  # also write latest.pt every N batches within an epoch (0: at epoch ends only)
    keep_checkpoints: int = ranged(2, NON_NEGATIVE)  # numbered checkpoints kept (0 = keep all)
    eval_at_end: bool = True
    # attention health (docs/method.md "Attention health"): lambda against the ground truth on at most
    # health_items windows of each split at every epoch end (0: off), and the gradient on lambda of each
    # loss term every grad_probe_every iterations of stage "segment" (0: off); rank 0 only
    health_items: int = ranged(64, NON_NEGATIVE)
    grad_probe_every: int = ranged(25, NON_NEGATIVE)


@dataclass
class EvalConfig:
    """Inference, post-processing and evaluation settings.

    ``video_scores`` (ActivityNet as the field runs it, with ``dataset.class_agnostic: true``): a JSON of
    video-level class scores in the layout of CUHK's ActivityNet classifier file, ``{"results": {video_id:
    [K floats]}, "class": [K names]}`` (``"classes"`` also read; ids with or without ``v_``). Each proposal
    (after NMS and ``max_per_video``) becomes one detection per top-``video_score_topk`` class of its video,
    scored ``p · s_c`` (``video_fusion: afsd``, default top 1) or ``sqrt(p · s_c)`` (``actionformer``, default
    top 2); the best ``max_per_video`` are kept (:func:`gaf.engine.video_scores.fuse_video_scores`). A
    class-agnostic detector without it is scored as proposals: every ground-truth label collapsed to
    ``"action"``.
    """

    tious: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])
    subset: str | None = None  # default: dataset.test_subset
    batch_size: int = ranged(4, AT_LEAST_ONE)
    pre_nms_top_k: int = ranged(2000, AT_LEAST_ONE)
    score_threshold: float = ranged(0.001, UNIT)
    nms: Literal["soft", "hard", "none"] = "soft"
    nms_sigma: float = ranged(0.5, POSITIVE)  # Gaussian Soft-NMS
    nms_iou: float = ranged(0.5, HALF_OPEN_UNIT)  # hard NMS threshold
    min_score: float = ranged(0.001, UNIT)  # drop detections below this after Soft-NMS
    # segment voting after NMS: each kept segment's boundaries become the score x tIoU weighted mean of the
    # candidates (same class) overlapping it by >= this tIoU; 0: off (ActionFormer's THUMOS14 recipe: 0.7)
    voting_iou: float = ranged(0.0, UNIT)
    max_per_video: int = ranged(200, AT_LEAST_ONE)
    class_agnostic_nms: bool = False
    video_scores: str | None = None  # video-level class scores fused with class-agnostic proposals (docstring)
    video_fusion: Literal["afsd", "actionformer"] = "actionformer"  # p * s_c (afsd) or sqrt(p * s_c)
    video_score_topk: int | None = ranged(None, AT_LEAST_ONE)  # classes per proposal; null: afsd 1, actionformer 2
    report_videos: int = ranged(4, NON_NEGATIVE)  # timelines drawn in the report

    def __post_init__(self) -> None:
        if not self.tious:
            raise ConfigError("eval.tious: give at least one tIoU threshold")
        if any(not 0.0 < t <= 1.0 for t in self.tious):
            raise ConfigError(f"eval.tious: each must be in (0, 1], got {self.tious}")
        if any(b <= a for a, b in zip(self.tious, self.tious[1:])):
            raise ConfigError(f"eval.tious: must be strictly increasing (no repeats), got {self.tious}")


@dataclass
class EmbeddedBenchmark:
    """gaf's embedded benchmark (THUMOS14-like; ActivityNet-like with ``synthetic.timing: activitynet``),
    generated on first use into ``out_dir``."""

    out_dir: str = "demo_data/thumos14_synthetic"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ExperimentConfig:
    dataset: DatasetConfig | None = None
    task: Literal["detection"] = "detection"  # recognition configs: gaf.engine.recognition.RecognitionExperiment
    name: str = "gaf"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    benchmark: EmbeddedBenchmark | None = None
    work_dir: str | None = None
    e2e: E2EConfig | None = None
    frames: FrameDatasetConfig | None = None

    def __post_init__(self) -> None:
        if self.e2e is not None:
            if self.frames is None:
                raise ConfigError("e2e: an end-to-end run needs a 'frames' section (videos and clips)")
            if self.dataset is not None:
                raise ConfigError("dataset: an end-to-end run (e2e) reads 'frames', not a feature 'dataset'; "
                                  "remove one of the two")
        elif self.frames is not None:
            raise ConfigError("frames: frame clips are read only by an end-to-end run; add an 'e2e' section")
        elif self.dataset is None:
            raise ConfigError("missing the 'dataset' section")
        if self.eval.video_scores and not (self.dataset is not None and self.dataset.class_agnostic):
            raise ConfigError(f"eval.video_scores: fusing video-level class scores ({self.eval.video_scores}) needs "
                              "a class-agnostic detector: set dataset.class_agnostic: true (and train with it)")
        levels = self.model.detector.num_levels if self.e2e is None else self.e2e.detector.detector.num_levels
        if self.dataset is not None and 2 ** (levels - 1) > self.dataset.max_seq_len:
            raise ConfigError(f"model.detector.num_levels: {levels} levels need a window of at least "
                              f"2**{levels - 1} = {2 ** (levels - 1)} steps, but dataset.max_seq_len is "
                              f"{self.dataset.max_seq_len}")

    def resolved_work_dir(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path("work_dirs") / self.name

    def to_yaml(self) -> str:
        return dump_yaml(to_dict(self))


def bundled_configs() -> list[str]:
    """Names of the configs shipped inside the package (``gaf/configs/*.yaml``)."""
    folder = resources.files("gaf") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A config path as given, or the bundled config of that name (``demo``, ``thumos14_i3d``...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    candidate = Path(str(resources.files("gaf") / "configs" / f"{stem}.yaml"))
    if candidate.is_file() and (len(path.parts) == 1 or path.parent.name == "configs"):
        return candidate
    raise ConfigError(
        f"{name_or_path}: config not found (neither a file nor a bundled config; "
        f"bundled: {', '.join(bundled_configs())})"
    )


def load_experiment(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read, override and check an experiment config. Errors name the key path."""
    resolved = resolve_config_path(path)
    data = load_yaml(resolved)
    apply_overrides(data, overrides)
    if "dataset" not in data and "e2e" not in data:
        raise ConfigError(f"{resolved}: missing the 'dataset' section (or 'e2e' + 'frames' for an end-to-end run)")
    return from_dict(ExperimentConfig, data, where=resolved.name)


def experiment_from_dict(data: dict, where: str = "checkpoint config") -> ExperimentConfig:
    """Rebuild the config stored in a checkpoint."""
    return from_dict(ExperimentConfig, data, where=where)
