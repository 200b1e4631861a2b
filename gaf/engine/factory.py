"""The one place the engine chooses between feature and end-to-end (frame) runs.

An :class:`~gaf.engine.experiment.ExperimentConfig` with an ``e2e`` section
trains :class:`gaf.models.e2e.E2EDetector` on frame clips
(:class:`gaf.data.e2e_frames.FrameClipDataset`, section ``frames``); otherwise
the detector of ``model`` (:func:`gaf.models.gaf_detector.build_model`) trains on
cached features (:class:`gaf.data.features.FeatureDataset`, section
``dataset``). Both datasets give items with the same keys and ``meta``
(steps, ``time_offset``, ``step_seconds``), and both models the same
interface, so the loops in :mod:`gaf.engine.train` and
:mod:`gaf.engine.evaluate` use whatever these functions return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

from gaf.data.features import FeatureDataset, collate
from gaf.data.e2e_frames import FrameClipDataset, collate_frames
from gaf.engine.experiment import ExperimentConfig
from gaf.models.gaf_detector import ModelConfig, build_model

__all__ = ["build_dataset", "build_detector", "collate_for", "data_labels", "detector_config", "set_data_labels",
           "is_class_agnostic"]


def build_dataset(cfg: ExperimentConfig, split: Literal["train", "test"], *,
                  training: bool) -> FeatureDataset | FrameClipDataset:
    """The ``split`` dataset of ``cfg``: frame clips for an e2e run, else features."""
    if cfg.e2e is not None:
        assert cfg.frames is not None  # ExperimentConfig checks it
        return FrameClipDataset(cfg.frames, split, training=training, seed=cfg.train.seed)
    assert cfg.dataset is not None
    return FeatureDataset(cfg.dataset, split, training=training)


def build_detector(cfg: ExperimentConfig, meta: Mapping[str, Any], *, pretrained: bool = True) -> torch.nn.Module:
    """The untrained detector of ``cfg``; ``meta`` gives ``in_dim`` and ``num_classes`` (checkpoint meta).

    ``pretrained=False`` (a checkpoint's weights are loaded next): an
    end-to-end model skips its ``e2e.backbone_weights`` file.
    """
    num_classes = int(meta["num_classes"])
    if cfg.e2e is not None:
        from gaf.models.e2e import build_e2e_detector

        assert cfg.frames is not None
        return build_e2e_detector(cfg.e2e, num_classes=num_classes, clip_len=cfg.frames.clip_len,
                                  pretrained=pretrained)
    assert cfg.dataset is not None
    return build_model(cfg.model, in_dim=int(meta["in_dim"]), num_classes=num_classes,
                       max_seq_len=cfg.dataset.max_seq_len)


def collate_for(dataset: torch.utils.data.Dataset) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """The batching function of ``dataset``'s items."""
    return collate_frames if isinstance(dataset, FrameClipDataset) else collate


def detector_config(cfg: ExperimentConfig) -> ModelConfig:
    """The GAF + detector settings in use (``e2e.detector`` for an e2e run, else ``model``)."""
    return cfg.e2e.detector if cfg.e2e is not None else cfg.model


def data_labels(cfg: ExperimentConfig) -> list[str] | None:
    """The class list the data section fixes, if any."""
    data = cfg.frames if cfg.e2e is not None else cfg.dataset
    return None if data is None else data.labels


def is_class_agnostic(cfg: ExperimentConfig) -> bool:
    """Whether the detector of ``cfg`` has the one class ``"action"`` (``dataset.class_agnostic``)."""
    data = cfg.frames if cfg.e2e is not None else cfg.dataset
    return bool(getattr(data, "class_agnostic", False))


def set_data_labels(cfg: ExperimentConfig, labels: list[str]) -> None:
    """Fix the data section's class list (the order a checkpoint was trained with)."""
    data = cfg.frames if cfg.e2e is not None else cfg.dataset
    if data is not None:
        data.labels = list(labels)
