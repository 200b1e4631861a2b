"""Clip-level action recognition with a pretrained I3D (Kinetics-400): ``gaf classify``.

DeepMind's evaluation recipe, end to end: decode the video (PyAV), resample
to 25 fps, scale the short side to 256 and cut the centre 224×224 square,
keep RGB order and map pixels to [-1, 1] (``x / 127.5 - 1``), run I3D on the
whole clip (the first ``max_frames`` frames) and take the clip-level logits
of :meth:`~gaf.models.backbones.i3d.InceptionI3d.clip_logits`; softmax gives
the class probabilities.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gaf.data.video import iter_frames, num_resampled_frames, probe
from gaf.errors import CheckpointError, DataError
from gaf.models.backbones.i3d import InceptionI3d, load_i3d_state, read_i3d_file

__all__ = ["Classifier", "ClassifyResult", "load_classifier", "frames_to_clip", "classify_video"]

log = logging.getLogger("gaf")


@dataclass
class Classifier:
    """An I3D with a class head, its class names and where its weights came from."""

    model: InceptionI3d
    labels: list[str]
    weights: dict[str, Any] = field(default_factory=dict)  # path, sha256, source of the weights file


@dataclass
class ClassifyResult:
    """One video's top classes: ``top`` = ``[(label, probability, logit), ...]``, best first."""

    video: str
    frames: int             # frames fed to the network (after resampling, ≤ max_frames)
    duration: float         # seconds covered by those frames
    top: list[tuple[str, float, float]]
    seconds: float          # wall time: decode + network

    def to_json(self) -> dict[str, Any]:
        return {"video": self.video, "frames": self.frames, "duration": round(self.duration, 3),
                "seconds": round(self.seconds, 3),
                "top": [{"label": lab, "probability": round(p, 6), "logit": round(z, 4)} for lab, p, z in self.top]}

    def format(self) -> str:
        head = f"{self.video}  ({self.frames} frames, {self.duration:.2f} s, {self.seconds:.1f} s)"
        rows = [f"  {i + 1:>2}. {lab:<40} {p:7.2%}   logit {z:6.2f}" for i, (lab, p, z) in enumerate(self.top)]
        return "\n".join([head, *rows])


def load_classifier(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Classifier:
    """An eval-mode RGB I3D classifier from a weights file with a class head.

    Class names: the file's ``meta["labels"]`` (``gaf weights`` writes them),
    else the Kinetics-400 list for a 400-class head (pytorch-i3d's
    ``rgb_imagenet.pt``), else ``class_<k>``. A file without a head, or whose
    tensors do not fit an RGB I3D, raises :class:`CheckpointError`.
    """
    from gaf.models.backbones.i3d_weights import kinetics400_labels

    state, meta = read_i3d_file(path)
    head = state.get("logits.conv3d.weight")
    if head is None or head.dim() != 5 or head.shape[1] != 1024:
        raise CheckpointError(f"{path}: no I3D class head (logits.conv3d.weight of shape (K, 1024, 1, 1, 1)); "
                              "gaf classify needs a classifier, e.g. `gaf weights i3d-kinetics400 --out W.pt`")
    num_classes = int(head.shape[0])
    model = InceptionI3d(in_channels=3, num_classes=num_classes)
    first = state.get("Conv3d_1a_7x7.conv3d.weight")
    if first is not None and first.dim() == 5 and first.shape[1] != 3:
        raise CheckpointError(f"{path}: weights of a {first.shape[1]}-channel I3D (flow?); gaf classify needs RGB")
    load_i3d_state(model, state, source=str(path))
    labels = [str(x) for x in meta.get("labels", [])]
    if len(labels) != num_classes:
        labels = kinetics400_labels() if num_classes == 400 else [f"class_{k}" for k in range(num_classes)]
    info = {"path": str(path), **{k: meta[k] for k in ("name", "sha256", "source") if k in meta}}
    return Classifier(model.to(device).eval(), labels, info)


def frames_to_clip(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """``T`` frames ``(H, W, 3)`` uint8 RGB → the network input ``(1, 3, T, H, W)`` float32 in [-1, 1]."""
    clip = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)[None]
    return clip.float().div_(127.5).sub_(1.0)


def classify_video(path: str | os.PathLike[str], classifier: Classifier, *, top: int = 5, fps: float = 25.0,
                   short_side: int = 256, crop: int = 224, max_frames: int = 250,
                   progress: bool = False) -> ClassifyResult:
    """Top-``top`` classes of the video at ``path`` (see the module docstring for the recipe).

    ``max_frames``: the clip is the video's first ``max_frames`` frames after
    resampling to ``fps`` (250 = the 10 s of a Kinetics clip). Unreadable
    files raise :class:`DataError` naming the file.
    """
    if max_frames < 1 or top < 1:
        raise ValueError(f"max_frames and top must be >= 1, got {max_frames}, {top}")
    from tqdm import tqdm

    start = time.perf_counter()
    info = probe(path)
    expected = min(max_frames, num_resampled_frames(info.duration, fps)) if info.duration else max_frames
    frames: list[np.ndarray] = []
    with tqdm(total=expected, desc=f"decode {Path(path).name[:28]}", unit="frame", leave=False,
              disable=not progress, dynamic_ncols=True) as bar:
        for frame in iter_frames(path, fps=fps, short_side=short_side, crop=crop):
            frames.append(frame)
            bar.update(1)
            if len(frames) == max_frames:
                break
    if not frames:
        raise DataError(f"{path}: no decodable video frame")
    model = classifier.model
    device = next(model.parameters()).device

    def wrap(names: list[str]):
        return tqdm(names, desc=f"I3D {Path(path).name[:31]}", unit="layer", leave=False,
                    disable=not progress, dynamic_ncols=True)

    with torch.inference_mode():
        logits = model.clip_logits(frames_to_clip(frames).to(device), wrap=wrap)[0].float().cpu()
    probs = logits.softmax(-1)
    values, indices = probs.topk(min(top, probs.numel()))
    best = [(classifier.labels[int(i)], float(v), float(logits[int(i)])) for v, i in zip(values, indices)]
    return ClassifyResult(str(path), len(frames), len(frames) / fps, best, time.perf_counter() - start)
