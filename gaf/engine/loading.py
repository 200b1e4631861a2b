"""Loading a trained detector from a checkpoint, with its config."""

from __future__ import annotations

import os
from typing import Sequence

import torch

from gaf.config import apply_overrides
from gaf.engine.checkpoint import load_checkpoint, load_model_state
from gaf.engine.experiment import ExperimentConfig, experiment_from_dict, load_experiment
from gaf.engine.factory import build_detector, data_labels, is_class_agnostic, set_data_labels
from gaf.errors import CheckpointError, ConfigError

__all__ = ["load_detector"]


def load_detector(ckpt: str | os.PathLike[str], *, config: str | None = None, overrides: Sequence[str] = (),
                  device: torch.device | str = "cpu", state: dict | None = None
                  ) -> tuple[torch.nn.Module, ExperimentConfig]:
    """Build the model a checkpoint was trained with and load its weights (``weights_only``).

    ``config``: a YAML path / bundled name to use instead of the config stored in
    the checkpoint (its model section must match the checkpoint's weights);
    ``overrides``: ``key=value`` strings applied on top (e.g. dataset paths).
    ``state``: the checkpoint already loaded (:func:`load_checkpoint` of ``ckpt``), so it is read once.
    Returns the model in eval mode on ``device`` and the resolved config.
    """
    state = state if state is not None else load_checkpoint(ckpt)
    if config is not None:
        cfg = load_experiment(config, overrides)
    else:
        data = dict(state.get("config") or {})
        if not data:
            raise CheckpointError(f"{ckpt}: the checkpoint holds no config; pass CONFIG")
        cfg = experiment_from_dict(apply_overrides(data, list(overrides)), where=f"{ckpt} config")
    meta = state.get("meta") or {}
    try:
        in_dim, num_classes = int(meta["in_dim"]), int(meta["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{ckpt}: checkpoint meta lacks in_dim / num_classes") from None
    agnostic, trained_agnostic = is_class_agnostic(cfg), bool(meta.get("class_agnostic", False))
    if agnostic != trained_agnostic:
        trained = "class-agnostic (one class, 'action')" if trained_agnostic else f"on {num_classes} classes"
        raise ConfigError(f"{ckpt}: the model was trained {trained}, but dataset.class_agnostic is "
                          f"{str(agnostic).lower()}: set dataset.class_agnostic={str(trained_agnostic).lower()}")
    model = build_detector(cfg, {"in_dim": in_dim, "num_classes": num_classes}, pretrained=False)
    load_model_state(model, state["model"], str(ckpt))
    model.to(device).eval()
    labels = list(meta.get("labels") or [])
    if labels and not data_labels(cfg) and not agnostic:  # a class-agnostic model's one label is no class list
        # The model's class k is the k-th label it was trained with: evaluate in that order,
        # whatever order another annotation file would give.
        set_data_labels(cfg, labels)
    return model, cfg
