"""Checkpoints: atomic writes, safe loads, clear errors on mismatch.

A checkpoint is a plain dict of tensors and plain data, saved with
``torch.save`` and loaded with ``weights_only=True`` (no pickle code runs on
load). It is written to a temporary file in the same folder and renamed into
place, so a kill during a save never leaves a corrupt file under the final
name, and ``latest.pt`` always points at a complete checkpoint.

Layout::

    {"format": "gaf-checkpoint-v1", "epoch": int (epochs completed),
     "model": state_dict, "ema": state_dict | None,
     "optimizers": {name: state_dict}, "schedulers": {name: state_dict},
     "config": dict (the resolved experiment config),
     "meta": {"in_dim": int, "num_classes": int, "labels": [...], ...},
     "history": [ {epoch metrics}, ... ]}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from gaf.errors import CheckpointError
from gaf.io import atomic_write_bytes

FORMAT = "gaf-checkpoint-v1"

__all__ = ["save_checkpoint", "load_checkpoint", "load_model_state"]


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Save ``state`` (see module docstring) atomically to ``path``."""
    import io

    payload = dict(state)
    payload["format"] = FORMAT
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a gaf checkpoint with ``weights_only=True``.

    Raises :class:`CheckpointError` naming the file when it is missing,
    truncated or corrupt, or not a gaf checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise CheckpointError(f"{path}: not a gaf checkpoint (missing format tag {FORMAT!r} or 'model')")
    return state


def load_model_state(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model`` strictly, explaining any difference.

    A checkpoint from a different model config fails with a message that
    lists the missing keys, the unexpected keys and the shape mismatches.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError(
            f"{source}: checkpoint does not fit the model config ({'; '.join(parts)}). "
            "Was it trained with a different model config or dataset (input dim, classes)?"
        )
    model.load_state_dict(state_dict, strict=True)
