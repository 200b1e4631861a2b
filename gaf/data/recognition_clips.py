"""Clip datasets for action recognition: UCF101-style split lists, or the
untrimmed videos of a detection annotation file.

A UCF101-style dataset is a folder of split files in UCF101's official format
plus either cached features or the videos themselves::

    split_dir/classInd.txt        "1 ApplyEyeMakeup" (1-based id, class name)
    split_dir/trainlist01.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    split_dir/testlist01.txt      "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
    feature_dir/<stem>.npy        T×C float32 per video (or feature_dir/<Class>/<stem>.npy)
    video_dir/<Class>/<file>.avi  the videos as listed (or video_dir/<file>.avi, flat)

* :class:`ClipFeatureDataset` (``source: features``): training items are a
  random temporal crop of ``clip_len`` feature steps; test items are
  ``num_clips`` evenly spaced crops of the same video, for multi-clip
  averaging. Videos shorter than ``clip_len`` steps are zero-padded and
  masked.
* :class:`ClipVideoDataset` (``source: video``): ``clip_len`` frames taken
  every ``frame_stride`` frames (looping short videos), shorter side resized
  to ``resize``, cropped to ``crop_size`` (random + horizontal flip in
  training, centre at test), scaled to [-1, 1]; test items hold
  ``num_clips`` evenly spaced clips.
* :class:`AnnotationFeatureDataset` (``source: annotations``): the untrimmed
  videos of a detection annotation file (ActivityNet / ActionFormer JSON, BSN's
  file, THUMOS14's: whatever :func:`gaf.data.annotations.read_ground_truth`
  reads), subsets ``train_subset`` / ``test_subset``, features named as the
  detection datasets name them
  (``feature_dir/<file_prefix><video_id><file_suffix><file_ext>``), clips cut
  as for ``features``. The classes are the file's labels (the whole file, so
  every subset shares the ids); a video's label is the class with the most
  annotated seconds in it (:func:`video_class`: ActivityNet videos hold one
  class, almost always). Videos without an annotated segment have no label:
  they are skipped, with one :class:`~gaf.data.annotations.AnnotationWarning`
  counting them. Its items also carry ``"action_mask"`` (:func:`step_action_mask`):
  which steps of each clip are annotated action, the target of the
  recognizer's ``model.loss.att``.

Every item is a dict ``{"inputs": (n, C, L) features or (n, 3, L, H, W)
frames, "mask": (n, L) bool, "label": int, "video": str}`` with ``n``
clips (1 in training) (plus ``"action_mask": (n, L) bool`` for ``annotations``);
:func:`collate_clips` concatenates items and records which clips belong to
which video. Randomness comes from torch's RNG, so
the engine's per-epoch seeding makes runs reproducible.

Errors are :class:`gaf.errors.DataError` naming the file and, for entries of
a split list, the list and its line; for videos of an annotation file, the
annotation file and the subset.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from gaf.config import AT_LEAST_ONE, ranged
from gaf.data.annotations import AnnotationWarning, Video, read_ground_truth, read_ucf101_split
from gaf.errors import AnnotationError, DataError

__all__ = ["ClipDataConfig", "ClipFeatureDataset", "ClipVideoDataset", "AnnotationFeatureDataset",
           "build_clip_dataset", "collate_clips", "clip_starts", "video_class", "step_action_mask"]


@dataclass
class ClipDataConfig:
    """Where the clips are and how they are cut (``clip_len`` in feature steps or frames)."""

    source: Literal["features", "video", "annotations"] = "features"
    split_dir: str = "data/ucf101/splits"  # classInd.txt, trainlist0N.txt, testlist0N.txt
    split: int = 1  # official split 1, 2 or 3
    feature_dir: str = "data/ucf101/features"  # source=features: <stem>.npy; annotations: see feature_path
    video_dir: str = "data/ucf101/videos"  # source=video: <Class>/<file>.avi (or flat)
    # source=annotations: the videos of a detection annotation file (ActivityNet / ActionFormer JSON, ...)
    annotation_file: str = "data/anet/annotations/activity_net.v1-3.min.json"
    train_subset: str = "training"
    test_subset: str = "validation"
    file_prefix: str = ""  # feature file: <feature_dir>/<file_prefix><video_id><file_suffix><file_ext>
    file_suffix: str = ""
    file_ext: str = ".npy"
    # annotations: the features' time axis (gaf.data.features' convention: step t's centre at
    # (t * feature_stride + 0.5 * num_frames) / fps s, fps the annotation's), for the action masks of loss.att
    feature_stride: int = ranged(4, AT_LEAST_ONE)  # frames between feature steps
    num_frames: int = ranged(16, AT_LEAST_ONE)  # frames one feature step sees
    input_dim: int | None = ranged(None, AT_LEAST_ONE)  # features/annotations: expected C (None: the first file's)
    clip_len: int = ranged(16, AT_LEAST_ONE)  # feature steps (features) or frames (video) per clip
    frame_stride: int = ranged(1, AT_LEAST_ONE)  # video: keep every Nth decoded frame
    resize: int = ranged(256, AT_LEAST_ONE)  # video: shorter side after resizing (pixels)
    crop_size: int = ranged(224, AT_LEAST_ONE)  # video: square crop (pixels)
    hflip: bool = True  # video: random horizontal flip in training

    def feature_path(self, video_id: str) -> Path:
        """``source: annotations``: the feature file of ``video_id`` (named as the detection datasets do)."""
        from gaf.data.features import feature_file

        return feature_file(self.feature_dir, video_id, self.file_prefix, self.file_suffix, self.file_ext)


def clip_starts(length: int, clip_len: int, num_clips: int) -> list[int]:
    """``num_clips`` evenly spaced start indices of ``clip_len`` windows in ``length`` (duplicates removed)."""
    last = max(0, length - clip_len)
    if num_clips <= 1:
        return [last // 2]
    return sorted({int(round(v)) for v in np.linspace(0, last, num_clips)})


def _split_entries(cfg: ClipDataConfig, subset: str) -> tuple[list[str], list[tuple[str, int, str]]]:
    """Classes and ``(path, label, "list:line")`` of the ``subset`` ("train" | "test") list."""
    root = Path(cfg.split_dir)
    if not root.is_dir():
        raise DataError(f"{root}: split folder not found (expected classInd.txt, trainlist0N.txt, testlist0N.txt)")
    try:
        classes, train, test = read_ucf101_split(root, cfg.split)
    except AnnotationError as exc:
        raise DataError(str(exc)) from None
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    list_file = root / f"{subset}list0{cfg.split}.txt"
    lines = [n for n, line in enumerate(list_file.read_text(encoding="utf-8-sig").splitlines(), 1) if line.strip()]
    entries = train if subset == "train" else test
    if not entries:
        raise DataError(f"{list_file}: no videos listed")
    return classes, [(p, lab, f"{list_file.name} line {n}") for (p, lab), n in zip(entries, lines)]


def video_class(video: Video, index: dict[str, int]) -> int | None:
    """The label of an untrimmed video: the class with the most annotated seconds in it (``index``:
    ``{class: id}``); ties go to the class with more segments, then to the lower id. None without segments."""
    if not video.segments:
        return None
    seconds: dict[int, float] = {}
    counts: dict[int, int] = {}
    for s in video.segments:
        k = index[s.label]
        seconds[k] = seconds.get(k, 0.0) + (s.end - s.start)
        counts[k] = counts.get(k, 0) + 1
    return max(seconds, key=lambda k: (seconds[k], counts[k], -k))


def step_action_mask(video: Video, num_steps: int, cfg: ClipDataConfig) -> np.ndarray | None:
    """``(num_steps,)`` bool: True where a feature step's centre lies in one of ``video``'s annotated segments
    (ends included, any label; the detector's :func:`gaf.models.gaf.action_mask` rule).

    Step ``t``'s centre is ``(t * feature_stride + 0.5 * num_frames) / fps`` s with the annotation's ``fps``
    (:mod:`gaf.data.features`' convention); a video without fps is taken to be spread evenly over its
    ``duration``: ``(t + 0.5) * duration / num_steps`` s. None when the video has neither.
    """
    if video.fps is not None:
        centres = (np.arange(num_steps) * cfg.feature_stride + 0.5 * cfg.num_frames) / video.fps
    elif video.duration is not None:
        centres = (np.arange(num_steps) + 0.5) * (video.duration / num_steps)
    else:
        return None
    out = np.zeros(num_steps, dtype=bool)
    for seg in video.segments:
        out |= (centres >= seg.start) & (centres <= seg.end)
    return out


def _annotation_videos(cfg: ClipDataConfig, subset: str
                       ) -> tuple[list[str], list[tuple[str, int, str]], dict[str, Video]]:
    """Classes (the whole file's labels), ``(video_id, label, where)`` of the annotated videos of
    ``cfg.train_subset`` (``subset == "train"``) or ``cfg.test_subset`` (``"test"``) in file order, and the
    subset's videos (``{video_id: Video}``)."""
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    key = f"{subset}_subset"
    name = getattr(cfg, key)
    path = Path(cfg.annotation_file)
    if not path.exists():
        raise DataError(f"{path}: annotation file not found (dataset.annotation_file)")
    try:
        aset = read_ground_truth(path, overrun="keep")
        videos = aset.subset(name).videos
    except AnnotationError as exc:
        raise DataError(f"{exc} (dataset.{key})") from None
    index = aset.label_index
    where = f"{path}, subset {name!r}"
    entries = []
    for vid, video in videos.items():
        unknown = [s.label for s in video.segments if s.label not in index]
        if unknown:
            raise DataError(f"{path}: video {vid!r}: label {unknown[0]!r} is not in the file's class list")
        label = video_class(video, index)
        if label is not None:
            entries.append((vid, label, where))
    if not entries:
        raise DataError(f"{path}: none of the {len(videos)} videos of subset {name!r} (dataset.{key}) has an "
                        "annotated segment: a recognizer needs labelled videos")
    if len(entries) < len(videos):
        warnings.warn(f"{path}: {len(videos) - len(entries)} of the {len(videos)} videos of subset {name!r} have "
                      "no annotated segment, hence no label: skipped", AnnotationWarning, stacklevel=4)
    return list(aset.labels), entries, videos


class _ClipDataset(Dataset):
    """The videos of ``subset`` (:meth:`_read_entries`: the split list's); ``training`` (default:
    ``subset == "train"``) draws one random clip per video, evaluation ``num_clips`` evenly spaced ones;
    ``folder_key``: the config key of the inputs' folder."""

    folder_key = ""

    def __init__(self, cfg: ClipDataConfig, subset: str, *, training: bool | None, num_clips: int) -> None:
        training = subset == "train" if training is None else training
        self.cfg = cfg
        self.subset = subset
        self.training = training
        self.num_clips = 1 if training else max(1, int(num_clips))
        self.classes, self.entries = self._read_entries(cfg, subset)
        if cfg.clip_len < 1:
            raise DataError(f"dataset.clip_len: must be >= 1, got {cfg.clip_len}")
        self.root = Path(getattr(cfg, self.folder_key))
        if not self.root.is_dir():
            kind = self.folder_key.split("_")[0]
            raise DataError(f"{self.root}: {kind} folder not found (dataset.{self.folder_key})")

    def _read_entries(self, cfg: ClipDataConfig, subset: str) -> tuple[list[str], list[tuple[str, int, str]]]:
        """Classes and ``(video, label, where)`` of ``subset``: the split list's."""
        return _split_entries(cfg, subset)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> list[int]:
        return [lab for _, lab, _ in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Kept for the engine's interface; crops come from torch's (re-seeded) RNG."""

    def _starts(self, length: int, span: int) -> list[int]:
        if self.training:
            return [int(torch.randint(0, max(0, length - span) + 1, ()).item())]
        return clip_starts(length, span, self.num_clips)


class ClipFeatureDataset(_ClipDataset):
    """Cached features: ``feature_dir/<stem>.npy`` (T×C) per video of the split list."""

    folder_key = "feature_dir"

    def __init__(self, cfg: ClipDataConfig, subset: str, *, training: bool | None = None, num_clips: int = 1) -> None:
        super().__init__(cfg, subset, training=training, num_clips=num_clips)
        root = self.root
        self.files: list[Path] = []
        for path, _, where in self.entries:
            candidates = self._feature_candidates(path)
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise DataError(f"{candidates[0]}: feature file missing for {path!r} ({where})")
            self.files.append(found)
        first = self._load(0)
        self.input_dim = int(first.shape[1])
        if cfg.input_dim is not None and cfg.input_dim != self.input_dim:
            raise DataError(f"{self.files[0]}: {self.input_dim} channels but dataset.input_dim is {cfg.input_dim} "
                            f"({self.entries[0][2]})")

    def _feature_candidates(self, path: str) -> tuple[Path, ...]:
        """Where the features of split-list entry ``path`` may be, first choice first."""
        stem = Path(path).stem
        return self.root / f"{stem}.npy", self.root / Path(path).parent / f"{stem}.npy"

    def _load(self, index: int) -> np.ndarray:
        f = self.files[index]
        try:
            x = np.load(f, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{f}: cannot read features ({exc})") from None
        if x.ndim != 2 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.floating):
            raise DataError(f"{f}: expected a T×C float array, got shape {x.shape} dtype {x.dtype}")
        if hasattr(self, "input_dim") and x.shape[1] != self.input_dim:
            raise DataError(f"{f}: {x.shape[1]} channels, but {self.files[0].name} has {self.input_dim} "
                            f"({self.entries[index][2]})")
        return x

    def _action_steps(self, index: int, num_steps: int) -> np.ndarray | None:
        """The ``(num_steps,)`` action mask of video ``index``, or None (split lists have no temporal labels)."""
        return None

    def __getitem__(self, index: int) -> dict[str, Any]:
        x = self._load(index)
        L = self.cfg.clip_len
        starts = self._starts(x.shape[0], L)
        clips, masks = [], []
        for s in starts:
            crop = torch.from_numpy(np.array(x[s:s + L], dtype=np.float32)).T  # (C, n)
            n = crop.shape[1]
            clips.append(F.pad(crop, (0, L - n)))
            masks.append(torch.arange(L) < n)
        path, label, _ = self.entries[index]
        item = {"inputs": torch.stack(clips), "mask": torch.stack(masks), "label": label, "video": path}
        steps = self._action_steps(index, x.shape[0])
        if steps is not None:  # cut as the clips are, False on padding
            action = torch.zeros(len(starts), L, dtype=torch.bool)
            for i, s in enumerate(starts):
                action[i, :len(steps[s:s + L])] = torch.from_numpy(steps[s:s + L])
            item["action_mask"] = action
        return item


class ClipVideoDataset(_ClipDataset):
    """Raw videos decoded with :mod:`gaf.data.video` (PyAV): frame clips in [-1, 1]."""

    folder_key = "video_dir"

    def __init__(self, cfg: ClipDataConfig, subset: str, *, training: bool | None = None, num_clips: int = 1) -> None:
        super().__init__(cfg, subset, training=training, num_clips=num_clips)
        root = self.root
        self.files = []
        for path, _, where in self.entries:
            candidates = (root / path, root / Path(path).name)
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise DataError(f"{candidates[0]}: video missing for {path!r} ({where})")
            self.files.append(found)
        self.input_dim = 3

    def _frames(self, index: int) -> np.ndarray:
        """All decoded frames ``(N, H, W, 3)`` uint8 RGB of video ``index`` (UCF101 clips are a few seconds)."""
        from gaf.data.video import iter_frames  # PyAV decoding; yields (H, W, 3) uint8 RGB frames

        frames = [np.asarray(f) for f in iter_frames(self.files[index], short_side=None, crop=None)]
        if not frames:
            raise DataError(f"{self.files[index]}: no frames could be decoded")
        return np.stack(frames)

    def _transform(self, clip: torch.Tensor) -> torch.Tensor:
        """``(L, H, W, 3)`` uint8 -> ``(3, L, S, S)`` float in [-1, 1] (resize, crop, flip)."""
        cfg = self.cfg
        x = clip.permute(0, 3, 1, 2).float()  # (L, 3, H, W)
        H, W = x.shape[-2:]
        scale = cfg.resize / min(H, W)
        size = (max(cfg.crop_size, round(H * scale)), max(cfg.crop_size, round(W * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
        S = cfg.crop_size
        if self.training:
            top = int(torch.randint(0, size[0] - S + 1, ()).item())
            left = int(torch.randint(0, size[1] - S + 1, ()).item())
        else:
            top, left = (size[0] - S) // 2, (size[1] - S) // 2
        x = x[..., top:top + S, left:left + S]
        if self.training and self.cfg.hflip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return (x / 127.5 - 1.0).clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()

    def __getitem__(self, index: int) -> dict[str, Any]:
        frames = torch.from_numpy(np.asarray(self._frames(index)))
        L, stride = self.cfg.clip_len, max(1, self.cfg.frame_stride)
        span = (L - 1) * stride + 1
        clips = []
        for s in self._starts(frames.shape[0], span):
            idx = (s + torch.arange(L) * stride) % frames.shape[0]  # loops videos shorter than the span
            clips.append(self._transform(frames[idx]))
        path, label, _ = self.entries[index]
        return {"inputs": torch.stack(clips), "mask": torch.ones(len(clips), L, dtype=torch.bool),
                "label": label, "video": path}


class AnnotationFeatureDataset(ClipFeatureDataset):
    """Untrimmed videos of a detection annotation file (``source: annotations``): the annotated videos of
    ``train_subset`` / ``test_subset``, labelled by :func:`video_class`, features at
    :meth:`ClipDataConfig.feature_path`; clips and errors as :class:`ClipFeatureDataset`. Items also hold
    ``"action_mask" (n, L)`` bool (:func:`step_action_mask`, False on padding); ``untimed`` lists the videos
    whose annotation has neither fps nor duration (their items have none)."""

    def _read_entries(self, cfg: ClipDataConfig, subset: str) -> tuple[list[str], list[tuple[str, int, str]]]:
        classes, entries, self.videos = _annotation_videos(cfg, subset)
        self.untimed = [v for v, _, _ in entries if self.videos[v].fps is None and self.videos[v].duration is None]
        return classes, entries

    def _action_steps(self, index: int, num_steps: int) -> np.ndarray | None:
        return step_action_mask(self.videos[self.entries[index][0]], num_steps, self.cfg)

    def _feature_candidates(self, path: str) -> tuple[Path, ...]:
        return (self.cfg.feature_path(path),)


_SOURCES = {"features": ClipFeatureDataset, "video": ClipVideoDataset, "annotations": AnnotationFeatureDataset}


def build_clip_dataset(cfg: ClipDataConfig, subset: str, *, training: bool | None = None,
                       num_clips: int = 1) -> ClipFeatureDataset | ClipVideoDataset:
    """The dataset for ``cfg.source`` over the ``subset`` ("train" | "test") list or annotation subset."""
    return _SOURCES[cfg.source](cfg, subset, training=training, num_clips=num_clips)


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: ``inputs (N, ...)`` and ``mask (N, L)`` over all clips, ``labels (B,)``,
    ``clip_video (N,)`` (index of each clip's video in the batch), ``videos`` (B names) and, when every
    item has one, ``action_mask (N, L)`` (else the key is absent)."""
    counts = [it["inputs"].shape[0] for it in items]
    batch = {
        "inputs": torch.cat([it["inputs"] for it in items]),
        "mask": torch.cat([it["mask"] for it in items]),
        "labels": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "clip_video": torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts)),
        "videos": [it["video"] for it in items],
    }
    if all(it.get("action_mask") is not None for it in items):
        batch["action_mask"] = torch.cat([it["action_mask"] for it in items])
    return batch
