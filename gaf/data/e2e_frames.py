"""Frame clips of decoded videos for end-to-end detection (paper §IV-B: 96×96 crops, 256-frame clips).

On disk: one annotation JSON (any layout :func:`gaf.data.annotations.read_ground_truth`
reads) and a folder of videos named ``<video_dir>/<video_id><video_ext>``.
Each video is decoded at ``fps`` frames per second, its short side scaled to
``short_side`` and the centre ``crop × crop`` square cut
(:func:`gaf.data.video.iter_frames`).

Items follow :class:`gaf.data.features.FeatureDataset`'s contract, so the
detection engine drives them unchanged, with ``features`` being frames
``(3, clip_len, crop, crop)`` float32 in [-1, 1] instead of a feature
sequence. The model (:class:`gaf.models.e2e.E2EDetector`) sees one feature
step per 4 frames (``FRAMES_PER_STEP``), so:

* ``step_seconds = 4 / fps``; clip starts are multiples of 4 frames;
* ``time_offset = start_frame / fps + 2 / fps`` (the centre of the clip's
  first 4-frame step); a position ``x`` in steps of the clip lies at
  ``time_offset + x * step_seconds`` seconds, and ground truth is mapped to
  steps by the inverse, ``x = (seconds - time_offset) / step_seconds``;
* ``offset_steps = start_frame / 4``, ``num_steps`` = valid steps of the
  clip, ``video_steps = ceil(video frames / 4)``.

A clip that runs past the video's end (or a video shorter than one clip) is
padded by repeating the last frame; its padded steps are masked out by
:func:`collate_frames`.

Training gives one random clip per video per epoch (seeded by ``seed``, the
epoch of :meth:`FrameClipDataset.set_epoch` and the index; a clip holding an
instance is preferred); evaluation gives sliding clips overlapping by
``eval_clip_overlap`` that cover the whole video.

Decoding cost: without ``cache_dir`` every item decodes its video from the
start up to the clip's end. With ``cache_dir`` each video is decoded once
into ``<cache_dir>/<video_id>_<fps>fps_<short_side>s_<crop>c.npy`` (uint8
``(N, crop, crop, 3)``, written atomically) and clips are read from that
memory map; THUMOS14 at 25 fps and 96×96 needs about 28 kB per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaf.data.split import SplitDataset, window_starts
from gaf.errors import ConfigError, DataError
from gaf.io import atomic_save_npy
from gaf.models.e2e import FRAMES_PER_STEP  # 4 frames per model step (Mixed_4f)

__all__ = ["FRAMES_PER_STEP", "FrameClipDataset", "FrameDatasetConfig", "collate_frames"]


@dataclass
class FrameDatasetConfig:
    """Where the videos are and how they are cut into clips.

    ``clip_len`` frames per clip (a multiple of 4; the paper: 256), decoded at
    ``fps`` (the paper: 25) with the short side at ``short_side`` and a
    centre ``crop`` square (the paper: 96). ``trunc_min_overlap``: an
    instance cut by a clip is kept only when at least this fraction of it lies
    inside. ``labels``: the class list (default: the annotation's).
    """

    annotation_file: str
    video_dir: str
    video_ext: str = ".mp4"
    train_subset: str = "validation"
    test_subset: str = "test"
    fps: float = 25.0
    short_side: int = 128
    crop: int = 96
    clip_len: int = 256
    eval_clip_overlap: float = 0.25
    trunc_min_overlap: float = 0.5
    cache_dir: str | None = None
    labels: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ConfigError(f"frames.fps: must be > 0, got {self.fps}")
        for name in ("short_side", "crop", "clip_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"frames.{name}: must be >= 1, got {getattr(self, name)}")
        if self.clip_len % FRAMES_PER_STEP:
            raise ConfigError(f"frames.clip_len: must be a multiple of {FRAMES_PER_STEP} frames, got {self.clip_len}")
        if not 0.0 <= self.eval_clip_overlap < 1.0:
            raise ConfigError(f"frames.eval_clip_overlap: must be in [0, 1), got {self.eval_clip_overlap}")
        if not 0.0 <= self.trunc_min_overlap <= 1.0:
            raise ConfigError(f"frames.trunc_min_overlap: must be in [0, 1], got {self.trunc_min_overlap}")

    def video_path(self, video_id: str) -> Path:
        """The video file of ``video_id``."""
        return Path(self.video_dir) / f"{video_id}{self.video_ext}"

    @property
    def clip_steps(self) -> int:
        """Model steps per clip: ``clip_len / 4``."""
        return self.clip_len // FRAMES_PER_STEP


@dataclass
class _VideoInfo:
    video_id: str
    path: Path
    duration: float  # seconds
    num_frames: int  # at cfg.fps
    segments: np.ndarray  # (N, 2) in video steps (same mapping as items, start frame 0)
    labels: np.ndarray  # (N,) int64

    @property
    def num_steps(self) -> int:
        return math.ceil(self.num_frames / FRAMES_PER_STEP)


class FrameClipDataset(SplitDataset):
    """Clips of decoded frames + ground truth of one split (module docstring).

    Each item is a dict: ``video_id``; ``features`` float32 ``(3, clip_len,
    crop, crop)`` in [-1, 1]; ``segments`` float32 ``(N, 2)`` in steps of the
    clip (4 frames each); ``labels`` int64 ``(N,)``; ``meta`` (``video_id``,
    ``fps``, ``duration`` [s], ``time_offset`` [s], ``step_seconds`` [s],
    ``offset_steps``, ``num_steps`` (valid steps), ``video_steps``,
    ``start_frame``, ``num_frames`` (valid frames)).

    Construction reads the annotation and probes every video (missing or
    unreadable files fail here, naming the file and video).
    """

    section = "frames"

    cfg: FrameDatasetConfig

    # ----------------------------------------------------------------- public
    @property
    def input_dim(self) -> int:
        """Input channels of the model: 3 (RGB frames)."""
        return 3

    def check(self, *, progress: bool = True) -> None:
        """Decode every video once (filling ``cache_dir`` when set), so broken files fail before training."""
        from tqdm import tqdm

        for info in tqdm(self._videos, desc=f"checking {self.split} videos", unit="video",
                         disable=not progress, leave=False):
            if self.cfg.cache_dir is not None:
                self._cached(info)
            else:
                self._decode(info, 0, info.num_frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        vi, start_step = self._items[index]
        info = self._videos[vi]
        if start_step is None:
            start_step = self._crop_start(info, index, self.cfg.clip_steps)
        L = self.cfg.clip_len
        start = start_step * FRAMES_PER_STEP
        frames = self._frames(info, start, L)  # (n, H, W, 3) uint8, n <= L
        n = len(frames)
        if n == 0:
            raise DataError(f"{info.path}: video {info.video_id!r}: no frame decoded from frame {start} on")
        if n < L:  # pad by repeating the last frame; the padded steps are masked
            frames = np.concatenate([frames, np.repeat(frames[-1:], L - n, axis=0)])
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)
        valid_steps = math.ceil(n / FRAMES_PER_STEP)
        segs, labels = self._item_segments(info, start_step, valid_steps)
        step_s = FRAMES_PER_STEP / self.cfg.fps
        meta = {
            "video_id": info.video_id, "fps": float(self.cfg.fps), "duration": info.duration,
            "time_offset": (start + 0.5 * FRAMES_PER_STEP) / self.cfg.fps, "step_seconds": step_s,
            "offset_steps": start_step, "num_steps": valid_steps, "video_steps": info.num_steps,
            "start_frame": start, "num_frames": n,
        }
        return {"video_id": info.video_id, "features": x, "segments": torch.from_numpy(segs),
                "labels": torch.from_numpy(labels), "meta": meta}

    # --------------------------------------------------------------- building
    def _video_info(self, vid: str) -> _VideoInfo:
        from gaf.data.annotations import safe_video_id
        from gaf.data.video import num_resampled_frames, probe

        cfg = self.cfg
        path = cfg.video_path(safe_video_id(vid, str(cfg.annotation_file)))
        if not path.is_file():
            raise DataError(f"{path}: video file of video {vid!r} not found (expected "
                            f"<frames.video_dir>/{vid}{cfg.video_ext} with video_dir={cfg.video_dir!r})")
        info = probe(path)
        duration = float(info.duration)
        if not duration > 0:
            raise DataError(f"{path}: video {vid!r}: the container reports no positive duration")
        num_frames = num_resampled_frames(duration, cfg.fps)
        video = self._aset.videos[vid]
        if video.duration:
            duration = float(video.duration)
        num_steps = math.ceil(num_frames / FRAMES_PER_STEP)
        segs, labels = self._instances_in_steps(video, time_offset=0.5 * FRAMES_PER_STEP / cfg.fps,
                                                step_seconds=FRAMES_PER_STEP / cfg.fps, num_steps=num_steps)
        return _VideoInfo(vid, path, duration, num_frames, segs, labels)

    def _build_items(self) -> list[tuple[int, int | None]]:
        """(video index, start step) per item; start None = random training clip."""
        S = self.cfg.clip_steps
        items: list[tuple[int, int | None]] = []
        for vi, info in enumerate(self._videos):
            T = info.num_steps
            if self.training:
                items.append((vi, None if T > S else 0))
            else:
                items.extend((vi, s) for s in window_starts(T, S, self.cfg.eval_clip_overlap))
        return items

    # ---------------------------------------------------------------- decoding
    def _frames(self, info: _VideoInfo, start: int, count: int) -> np.ndarray:
        """Frames [start, start+count) (fewer at the video's end) as uint8 ``(n, H, W, 3)``."""
        if self.cfg.cache_dir is not None:
            return np.array(self._cached(info)[start:start + count])
        return self._decode(info, start, count)

    def _decode(self, info: _VideoInfo, start: int, count: int) -> np.ndarray:
        from gaf.data.video import iter_frames

        cfg = self.cfg
        out: list[np.ndarray] = []
        for i, frame in enumerate(iter_frames(info.path, fps=cfg.fps, short_side=cfg.short_side, crop=cfg.crop)):
            if i >= start + count:
                break
            if i >= start:
                out.append(frame.copy())
        if not out:
            return np.zeros((0, cfg.crop, cfg.crop, 3), np.uint8)
        return np.stack(out)

    def _cached(self, info: _VideoInfo) -> np.ndarray:
        """The whole video's frames from ``cache_dir`` (decoded and written atomically on first use)."""
        cfg = self.cfg
        folder = Path(str(cfg.cache_dir))
        path = folder / f"{info.path.stem}_{cfg.fps:g}fps_{cfg.short_side}s_{cfg.crop}c.npy"
        if not path.is_file():
            frames = self._decode(info, 0, info.num_frames + 64)  # the container's count may be short
            atomic_save_npy(path, frames)
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path}: frame cache of video {info.video_id!r} is unreadable ({exc}); "
                            "delete it to decode again") from None
        if arr.ndim != 4 or arr.shape[1:] != (cfg.crop, cfg.crop, 3) or arr.dtype != np.uint8:
            raise DataError(f"{path}: frame cache of video {info.video_id!r} has shape {arr.shape} / "
                            f"dtype {arr.dtype}, expected (N, {cfg.crop}, {cfg.crop}, 3) uint8; delete it")
        return arr


def collate_frames(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`FrameClipDataset`.

    ``features`` float32 ``(B, 3, L, H, W)`` (every item has ``clip_len``
    frames); ``mask`` bool ``(B, L / 4)``, True on each item's valid steps.
    ``segments`` / ``labels`` / ``meta`` / ``video_id`` are lists.
    """
    if not items:
        raise ValueError("collate_frames: empty batch")
    shape = tuple(items[0]["features"].shape)
    for b, it in enumerate(items):
        if tuple(it["features"].shape) != shape:
            raise ValueError(f"collate_frames: item {b} has shape {tuple(it['features'].shape)}, item 0 {shape}")
    feats = torch.stack([it["features"] for it in items])
    steps = math.ceil(shape[1] / FRAMES_PER_STEP)
    mask = torch.zeros((len(items), steps), dtype=torch.bool)
    for b, it in enumerate(items):
        mask[b, : int(it["meta"]["num_steps"])] = True
    return {"features": feats, "mask": mask, "segments": [it["segments"] for it in items],
            "labels": [it["labels"] for it in items], "meta": [it["meta"] for it in items],
            "video_id": [it["video_id"] for it in items]}
