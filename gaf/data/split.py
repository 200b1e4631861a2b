"""What feature datasets and frame-clip datasets share: one annotated split cut into items on a step axis.

:class:`SplitDataset` reads the annotation, selects the videos of a split,
maps their instances from seconds to steps, picks the seeded random training
crop, clips instances to an item, and gives the split's ground truth back in
seconds. Subclasses (:class:`gaf.data.features.FeatureDataset`,
:class:`gaf.data.e2e_frames.FrameClipDataset`) say where a video's steps come
from (feature files or decoded frames) and build their items.

Units: instance positions are in steps of the video (``(seconds -
time_offset) / step_seconds``), items in steps relative to the item's start.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch

from gaf.errors import ConfigError, DataError

if TYPE_CHECKING:
    from gaf.data.annotations import AnnotationSet, Video

__all__ = ["SplitDataset", "window_starts", "AGNOSTIC_LABEL"]

#: the one class of a class-agnostic detector (``dataset.class_agnostic``)
AGNOSTIC_LABEL = "action"


class _HasInstances(Protocol):
    video_id: str
    num_steps: int
    segments: np.ndarray  # (N, 2) float64, video steps
    labels: np.ndarray  # (N,) int64


def window_starts(num_steps: int, window: int, overlap: float) -> list[int]:
    """Start steps of sliding windows of ``window`` steps covering ``[0, num_steps)``.

    Consecutive windows overlap by at least ``overlap * window`` steps; the
    last one ends exactly at ``num_steps``.
    """
    if num_steps <= window:
        return [0]
    hop = max(1, int(window * (1.0 - overlap)))
    starts = list(range(0, num_steps - window, hop))
    starts.append(num_steps - window)
    return starts


class SplitDataset(torch.utils.data.Dataset):
    """Base of gaf's detection datasets: the videos of one split of an annotation.

    ``section`` names the config section in messages (``dataset`` or
    ``frames``); ``cfg`` must have ``annotation_file``, ``train_subset``,
    ``test_subset``, ``trunc_min_overlap`` and ``labels`` (and may have
    ``class_agnostic``: :attr:`labels` is then ``["action"]``, the model's
    one class, and :attr:`class_names` the ground truth's); ``annotations``
    gives the annotation in memory instead of ``cfg.annotation_file`` (which
    then only names it in messages). A subclass
    provides ``_video_info(video_id)`` (an object with ``video_id``,
    ``num_steps``, ``segments``, ``labels``) and ``_build_items()`` (tuples
    whose first element is the video index).
    """

    section = "dataset"
    labels: list[str]

    def __init__(self, cfg, split: Literal["train", "test"], *, training: bool, seed: int = 0,
                 annotations: AnnotationSet | None = None) -> None:
        if split not in ("train", "test"):
            raise ConfigError(f"{self.section} split must be 'train' or 'test', got {split!r}")
        self.cfg = cfg
        self.split = split
        self.training = training
        self.seed = int(seed)
        self.epoch = 0
        # in memory (e.g. gaf detect's one video), else read from cfg.annotation_file
        self._aset = annotations if annotations is not None else self._read_annotation()
        self._ids = self._split_ids()
        # the ground truth's classes (cfg.labels, or the annotation's); the model's are the same, or the one
        # class AGNOSTIC_LABEL of a class-agnostic config (every instance a target of class 0)
        self.class_names = list(cfg.labels) if cfg.labels is not None else list(self._aset.labels)
        self.class_agnostic = bool(getattr(cfg, "class_agnostic", False))
        self.labels = [AGNOSTIC_LABEL] if self.class_agnostic else list(self.class_names)
        self._label_ids = {name: 0 if self.class_agnostic else i for i, name in enumerate(self.class_names)}
        self._videos = [self._video_info(vid) for vid in self._ids]
        self._items = self._build_items()

    # ----------------------------------------------------------------- public
    @property
    def num_classes(self) -> int:
        """The model's class count: ``len(labels)`` (1 when class-agnostic)."""
        return len(self.labels)

    @property
    def label_index(self) -> dict[str, int]:
        """Each ground-truth class name → the model's class id (all 0 when class-agnostic)."""
        return dict(self._label_ids)

    def instance_steps(self) -> np.ndarray:
        """``(N,)`` float: the length in steps of every instance of the split's videos (as mapped to the
        video's steps; instances wholly outside the features included)."""
        lengths = [np.asarray(v.segments, dtype=np.float64).reshape(-1, 2) for v in self._videos]
        flat = np.concatenate(lengths) if lengths else np.zeros((0, 2))
        return flat[:, 1] - flat[:, 0]

    @property
    def video_ids(self) -> list[str]:
        return [v.video_id for v in self._videos]

    def set_epoch(self, epoch: int) -> None:
        """Select the random training crops of ``epoch``."""
        self.epoch = int(epoch)

    def ground_truth(self) -> AnnotationSet:
        """The split's annotation (seconds, as written, its real classes even when class-agnostic), for
        evaluation."""
        from gaf.data.annotations import AnnotationSet

        ids = set(self.video_ids)
        videos = {v: video for v, video in self._aset.videos.items() if v in ids}
        return AnnotationSet(videos=videos, labels=list(self.class_names), source=self._aset.source,
                             variant=self._aset.variant)

    def __len__(self) -> int:
        return len(self._items)

    def item_videos(self) -> list[int]:
        """For each item, the index of its video in :attr:`video_ids` (windows of one video are adjacent)."""
        return [item[0] for item in self._items]

    # --------------------------------------------------------------- building
    def _read_annotation(self) -> AnnotationSet:
        from gaf.data.annotations import read_ground_truth

        path = Path(self.cfg.annotation_file)
        if not path.exists():
            raise DataError(f"{path}: annotation file not found ({self.section}.annotation_file)")
        return read_ground_truth(path)

    def _split_ids(self) -> list[str]:
        from gaf.data.annotations import normalize_subset

        cfg = self.cfg
        subset = cfg.train_subset if self.split == "train" else cfg.test_subset
        ids = sorted(v for v, video in self._aset.videos.items()
                     if normalize_subset(video.subset) == normalize_subset(subset))
        if not ids:
            found = sorted({str(v.subset) for v in self._aset.videos.values()})
            key = "train_subset" if self.split == "train" else "test_subset"
            raise DataError(f"{cfg.annotation_file}: no video has subset {subset!r} "
                            f"({self.section}.{key}); subsets in the file: {', '.join(found)}")
        return ids

    def _instances_in_steps(self, video: Video, *, time_offset: float, step_seconds: float,
                            num_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """``video``'s instances in video steps (float64 ``(N, 2)``, int64 ``(N,)``).

        Instances lying wholly outside ``[-0.5, num_steps - 0.5]`` (after the
        decoded video or its features: THUMOS14 has such) are no training target.
        """
        segs, labels = [], []
        for i, seg in enumerate(video.segments):
            if seg.label not in self._label_ids:
                raise DataError(f"{self.cfg.annotation_file}: video {video.video_id!r}: label {seg.label!r} is "
                                f"not in the class list ({self.section}.labels or the annotation's labels)")
            s, e = (seg.start - time_offset) / step_seconds, (seg.end - time_offset) / step_seconds
            if not (math.isfinite(s) and math.isfinite(e)):  # never a silent NaN / inf training target
                raise DataError(f"{self.cfg.annotation_file}: video {video.video_id!r}: segment {i} "
                                f"[{seg.start}, {seg.end}] s: gives steps [{s}, {e}] with {step_seconds} s per "
                                "step: not finite")
            if s > num_steps - 0.5 or e < -0.5:
                continue
            segs.append((s, e))
            labels.append(self._label_ids[seg.label])
        return np.asarray(segs, dtype=np.float64).reshape(-1, 2), np.asarray(labels, dtype=np.int64)

    def _crop_start(self, info: _HasInstances, index: int, length: int) -> int:
        """Seeded random start of a ``length``-step training crop (prefers one that keeps an instance).

        Depends only on ``seed``, the epoch and ``index``, never on worker scheduling.
        """
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = 0
        for _ in range(10):
            start = int(rng.integers(0, info.num_steps - length + 1))
            if len(info.segments) == 0 or len(self._item_segments(info, start, length)[1]) > 0:
                break
        return start

    def _item_segments(self, info: _HasInstances, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Instances of the item [start, start+length) in item steps (float32 (N,2), int64 (N,)).

        Clamped where the item cuts them (not at the video's own ends); kept
        when at least ``trunc_min_overlap`` of an instance lies inside.
        """
        if len(info.segments) == 0:
            return np.zeros((0, 2), np.float32), np.zeros((0,), np.int64)
        lo = -math.inf if start == 0 else float(start)
        hi = math.inf if start + length >= info.num_steps else float(start + length)
        s, e = info.segments[:, 0], info.segments[:, 1]
        cs, ce = np.clip(s, lo, hi), np.clip(e, lo, hi)
        full = np.maximum(e - s, 0.0)
        inside_point = (s >= lo) & (s <= hi)
        frac = np.where(full > 0, np.maximum(ce - cs, 0.0) / np.where(full > 0, full, 1.0),
                        inside_point.astype(np.float64))
        keep = (frac >= self.cfg.trunc_min_overlap) & (frac > 0)
        segs = np.stack([cs[keep], ce[keep]], axis=1) - start
        return segs.astype(np.float32), info.labels[keep].copy()
