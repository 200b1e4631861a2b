"""The experiment config: one YAML file = one run.

Sections (fixed names, each a dataclass defined next to its code)::

    name:       run name (work dir default: work_dirs/<name>)
    dataset:    gaf.data.features.DatasetConfig   (paths, fps, stride, window, dims, lengths)
    model:      gaf.models.build.ModelConfig      (gaf / detector / loss)
    e2e:        gaf.models.e2e.E2EConfig | null   (end-to-end run: I3D on frames + GAF; needs ``frames``)
    frames:     gaf.data.frames.FrameDatasetConfig | null  (videos and clips of an e2e run, instead of ``dataset``)
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

from gaf.config import apply_overrides, dump_yaml, from_dict, load_yaml, to_dict
from gaf.data.features import DatasetConfig
from gaf.data.frames import FrameDatasetConfig
from gaf.data.synthetic import SyntheticConfig
from gaf.errors import ConfigError
from gaf.models.build import ModelConfig
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

    epochs: int = 20
    batch_size: int = 2
    lr: float = 1e-4
    frame_lr: float | None = None  # Frame-GAF (stage 1) learning rate; default: lr
    clf_lr: float | None = None  # the L_clf classifier head's learning rate; default: lr
    weight_decay: float = 1e-3
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    step_epochs: list[int] = field(default_factory=list)  # for schedule=step: multiply lr by 0.1 at these
    clip_grad: float = 1.0  # max gradient norm; 0 disables
    ema: bool = False
    ema_decay: float = 0.999
    seed: int = 0
    deterministic: bool = True
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    checkpoint_every: int = 1  # epochs between numbered checkpoints (latest.pt is written every epoch)
    save_every_iters: int = 0  # also write latest.pt every N batches within an epoch (0: at epoch ends only)
    keep_checkpoints: int = 2  # numbered checkpoints kept (0 = keep all)
    eval_at_end: bool = True
    # attention health (docs/method.md "Attention health"): lambda against the ground truth on at most
    # health_items windows of each split at every epoch end (0: off), and the gradient on lambda of each
    # loss term every grad_probe_every iterations of stage "segment" (0: off); rank 0 only
    health_items: int = 64
    grad_probe_every: int = 25


@dataclass
class EvalConfig:
    """Inference, post-processing and evaluation settings."""

    tious: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])
    subset: str | None = None  # default: dataset.test_subset
    batch_size: int = 4
    pre_nms_top_k: int = 2000
    score_threshold: float = 0.001
    nms: Literal["soft", "hard", "none"] = "soft"
    nms_sigma: float = 0.5  # Gaussian Soft-NMS
    nms_iou: float = 0.5  # hard NMS threshold
    min_score: float = 0.001  # drop detections below this after Soft-NMS
    max_per_video: int = 200
    class_agnostic_nms: bool = False
    report_videos: int = 4  # timelines drawn in the report


@dataclass
class EmbeddedBenchmark:
    """gaf's embedded THUMOS14-like benchmark, generated on first use into ``out_dir``."""

    out_dir: str = "demo_data/thumos14_synthetic"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ExperimentConfig:
    dataset: DatasetConfig | None = None
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
