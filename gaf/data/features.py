"""Feature datasets in the layout the field uses (ActionFormer's THUMOS14 layout).

On disk: one annotation JSON (ActivityNet / ActionFormer style: per video
``subset``, ``duration``, ``fps``, ``annotations[segment, label, label_id]``)
and a folder holding one ``T×C`` float array per video, named
``<feature_dir>/<file_prefix><video_id><file_suffix><file_ext>``.

Time convention (everything in gaf relies on it)
------------------------------------------------
Feature step ``t`` of a video covers frames ``[t*feature_stride,
t*feature_stride + num_frames)``; its centre lies at::

    seconds(t) = (t * feature_stride + 0.5 * num_frames) / fps

Every item carries ``meta["time_offset"]`` (seconds of the centre of the
item's step 0) and ``meta["step_seconds"]`` (seconds per step), so a position
``x`` (in steps, relative to the item) maps to ``time_offset + x *
step_seconds`` seconds. With ``resize_length = L`` (ActivityNet style) the
whole video is resampled to ``L`` steps: ``step_seconds = duration / L``
seconds and ``time_offset = 0.5 * step_seconds``, whatever the file's raw
step count ``T``. ``resize_mode`` says how (both in steps, blind to seconds):
``linear`` (the default, ActionFormer's ``F.interpolate(mode="linear",
align_corners=False)``) or ``average`` (:func:`resample_average`: output step
``i`` is the mean of the raw steps over ``[i*T/L, (i+1)*T/L)``, the area
resampling of OpenTAD / BMN-style pipelines).

Ground-truth segments of an item are in steps relative to the item. They are
clamped where a training crop or an eval window cuts them, but not at the
video's own ends, where (as in ActionFormer) they may reach up to about half
a window outside ``[0, num_steps]``. Instances lying wholly outside the
video's features (THUMOS14 has 30 after their video's end) are no training
target; :meth:`FeatureDataset.ground_truth` keeps them as written, since the
benchmark is scored on them.

The annotation is read by :func:`gaf.data.annotations.read_ground_truth`, so
any layout it knows works; ``fps`` and ``duration`` come from the file when
it has them.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from gaf.data.split import SplitDataset, window_starts
from gaf.errors import ConfigError, DataError

__all__ = ["DatasetConfig", "FeatureDataset", "collate", "window_starts", "PREPROCESSING", "read_preprocessing",
           "RESIZE_MODES", "resample", "resample_average", "read_feature_index", "TimeAxis", "TimeAxisError",
           "time_axis", "feature_file"]

#: the settings ``gaf extract`` records in a feature folder's ``features.json`` (and gaf detect checks)
PREPROCESSING = ("fps", "stride", "window", "streams", "short_side", "crop", "weights_sha256")

#: the values of ``dataset.resize_mode`` (how ``resize_length`` resamples a video)
RESIZE_MODES = ("linear", "average")



@dataclass
class DatasetConfig:
    """Where the features are and how their time axis maps to seconds.

    ``class_agnostic`` (ActivityNet as the field runs it): the detector
    trains and infers with one class, ``"action"`` (every instance becomes
    class 0); the ground truth scored keeps the annotation's classes, which
    ``eval.video_scores`` (video-level class scores fused with the proposals,
    :mod:`gaf.engine.video_scores`) puts back; without it the proposals are
    scored against the ground truth with every label collapsed to ``"action"``.

    ``input_dim`` is the channel count ``C`` of every feature file; the model
    sees ``channels[1] - channels[0]`` of them when ``channels`` (a ``[start,
    end)`` slice, e.g. ``[0, 1024]`` = RGB of I3D RGB⊕flow) is set.
    ``fps`` is the default frame rate for videos whose annotation has none;
    with ``force_fps`` it overrides the annotation's. ``max_seq_len`` is the
    training crop, in steps. ``eval_max_seq_len`` is the longest item
    evaluation feeds the model (the inference memory budget, in steps): a
    test video of at most that many steps is evaluated whole, as ActionFormer
    does (one item; a batch pads its items to the longest and masks the
    padding), a longer one in windows of ``eval_max_seq_len`` steps
    overlapping by ``eval_window_overlap``, whose detections are merged
    before NMS. ``null`` or ``0`` (the default) means ``max_seq_len``: videos
    longer than the training crop are evaluated in windows of it. Otherwise
    it must be ``>= max_seq_len``; a value above the longest test video
    (e.g. 16384 for THUMOS14 at stride 4) runs every video whole.
    ``gaf eval``, ``gaf detect`` and the Python API all follow it; the
    end-to-end frame clips (``frames``) and ``gaf export``'s fixed-shape
    graph keep windows. ``trunc_min_overlap``: an instance cut by a training
    crop or eval window is kept only when at least this fraction of it lies
    inside. ``resize_length`` (steps; ActivityNet style, e.g. 768 or 192)
    resamples every video's ``T`` raw steps to that many, each
    ``duration / resize_length`` seconds long; ``resize_mode`` picks how:
    ``linear`` (default; ActionFormer's interpolation) or ``average`` (each
    step the mean of the raw steps over its ``T / resize_length``-step bin;
    see :func:`resample_average`). ``resize_mode: average`` needs
    ``resize_length``.
    """

    annotation_file: str
    feature_dir: str
    file_prefix: str = ""
    file_suffix: str = ""
    file_ext: str = ".npy"
    train_subset: str = "validation"
    test_subset: str = "test"
    fps: float | None = None
    force_fps: bool = False
    feature_stride: int = 4
    num_frames: int = 16
    input_dim: int = 2048
    channels: list[int] | None = None
    max_seq_len: int = 2304
    resize_length: int | None = None
    resize_mode: Literal["linear", "average"] = "linear"
    eval_max_seq_len: int | None = None
    eval_window_overlap: float = 0.25
    trunc_min_overlap: float = 0.5
    labels: list[str] | None = None
    class_agnostic: bool = False  # one class, "action" (docstring)

    def __post_init__(self) -> None:
        for name in ("feature_stride", "num_frames", "input_dim", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"dataset.{name}: must be >= 1, got {getattr(self, name)}")
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"dataset.fps: must be > 0, got {self.fps}")
        if self.force_fps and self.fps is None:
            raise ConfigError("dataset.force_fps: true needs dataset.fps to be set")
        if self.resize_length is not None and self.resize_length < 1:
            raise ConfigError(f"dataset.resize_length: must be >= 1, got {self.resize_length}")
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"dataset.resize_mode: must be one of {', '.join(map(repr, RESIZE_MODES))}, "
                              f"got {self.resize_mode!r}")
        if self.resize_mode != "linear" and self.resize_length is None:
            raise ConfigError(f"dataset.resize_mode: {self.resize_mode} needs dataset.resize_length to be set")
        if self.eval_max_seq_len is not None and self.eval_max_seq_len != 0 \
                and self.eval_max_seq_len < self.max_seq_len:
            raise ConfigError(f"dataset.eval_max_seq_len: must be null or 0 (= dataset.max_seq_len) or "
                              f">= dataset.max_seq_len ({self.max_seq_len}), got {self.eval_max_seq_len}")
        if not 0.0 <= self.eval_window_overlap < 1.0:
            raise ConfigError(f"dataset.eval_window_overlap: must be in [0, 1), got {self.eval_window_overlap}")
        if not 0.0 <= self.trunc_min_overlap <= 1.0:
            raise ConfigError(f"dataset.trunc_min_overlap: must be in [0, 1], got {self.trunc_min_overlap}")
        if self.channels is not None:
            c = self.channels
            if len(c) != 2 or not 0 <= c[0] < c[1] <= self.input_dim:
                raise ConfigError(
                    f"dataset.channels: expected [start, end) with 0 <= start < end <= input_dim "
                    f"({self.input_dim}), got {c}"
                )

    @property
    def eval_window(self) -> int:
        """Steps of the longest evaluation item: ``eval_max_seq_len``, or ``max_seq_len`` when that is null / 0."""
        return self.eval_max_seq_len or self.max_seq_len

    def feature_path(self, video_id: str) -> Path:
        """The feature file of ``video_id``."""
        return feature_file(self.feature_dir, video_id, self.file_prefix, self.file_suffix, self.file_ext)


def feature_file(feature_dir: str | os.PathLike[str], video_id: str, prefix: str = "", suffix: str = "",
                 ext: str = ".npy") -> Path:
    """The one naming rule of feature files (detection datasets, the recognizer on a detection annotation):
    ``<feature_dir>/<prefix><video_id><suffix><ext>``."""
    return Path(feature_dir) / f"{prefix}{video_id}{suffix}{ext}"


@dataclass
class _VideoInfo:
    video_id: str
    path: Path
    fps: float
    duration: float
    raw_steps: int  # T of the file
    num_steps: int  # T after resize_length
    time_offset: float  # seconds of the centre of step 0
    step_seconds: float
    segments: np.ndarray  # (N, 2) in video steps
    labels: np.ndarray  # (N,) int64


class TimeAxis(NamedTuple):
    """One video's feature time axis: step ``t`` stands for ``time_offset + t * step_seconds`` seconds."""

    num_steps: int  # steps the model sees: dataset.resize_length, or the feature file's T
    step_seconds: float
    time_offset: float  # seconds of the centre of step 0
    duration: float | None  # seconds: the annotation's, else the end of the last feature window (None: unknown)


class TimeAxisError(DataError):
    """A video with no usable time axis; ``kind`` names the problem for gaf data check (its ``ISSUES``):
    ``no_fps``, ``no_duration`` or ``no_steps``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def time_axis(cfg: DatasetConfig, fps: float | None, duration: float | None, raw_steps: int | None) -> TimeAxis:
    """The time axis of a video of annotated ``duration`` (s, or None) and frame rate ``fps`` (the one the
    dataset uses: the annotation's, or ``dataset.fps``) whose feature file has ``raw_steps`` steps — the one
    rule of training, evaluation and gaf data check.

    ``resize_length`` set: every video is ``resize_length`` steps of ``duration / resize_length`` s (the
    annotated duration is required). Otherwise a step lasts ``feature_stride / fps`` s and stands for the
    centre of its ``num_frames`` window; ``raw_steps`` None (gaf data check without the file) estimates the
    steps from the duration. Raises :class:`TimeAxisError` (its message without the video's name).
    """
    if cfg.resize_length is not None:
        if duration is None or not duration > 0:
            raise TimeAxisError("no_duration", f"dataset.resize_length needs a positive duration, got {duration}")
        step_seconds = duration / cfg.resize_length
        return TimeAxis(cfg.resize_length, step_seconds, 0.5 * step_seconds, duration)
    if not fps:
        raise TimeAxisError("no_fps", "no fps in the annotation; set dataset.fps")
    if raw_steps is None:
        if not duration:
            raise TimeAxisError("no_steps", "no feature file and no duration: its steps are unknown")
        raw_steps = max(1, math.floor((duration * fps - cfg.num_frames) / cfg.feature_stride) + 1)
    elif duration is None:  # the end of the last feature window
        duration = ((raw_steps - 1) * cfg.feature_stride + cfg.num_frames) / fps
    return TimeAxis(raw_steps, cfg.feature_stride / fps, 0.5 * cfg.num_frames / fps, duration)


# Larger feature values are a unit or file error (I3D features are O(1)-O(10)): squared in norms and
# attention logits they overflow float32 and silently zero a video's detections.
MAX_FEATURE_MAGNITUDE = 1e6

# A feature file's span, ((T - 1) * feature_stride + num_frames) / fps seconds, against its video's annotated
# duration (not in resize_length mode, whose raw steps have no fixed rate). Real extractions (ActionFormer's
# THUMOS14 I3D: T = floor((frames - 16) / 4) + 1, the embedded benchmark) end within a stride of the duration;
# a window and two strides of slack cover short videos padded to one window and rounded frame counts.
FEATURE_LENGTH_WARN = 0.1
"""Past the slack, a span that differs from the duration by more than this fraction of it warns (a truncated
extraction, a different fps or stride): the video is used, its instances mapped to steps as annotated."""
FEATURE_LENGTH_LIMIT = 4.0
"""A span under 1/4 or over 4 times the duration (past the slack) is refused: no fps or stride slip of a real
extraction gives that; the file belongs to another video, or the dataset's fps / feature_stride is wrong."""


def length_disagreement(raw_steps: int, fps: float, duration: float, feature_stride: int,
                        num_frames: int) -> tuple[float, float, int] | None:
    """A feature file of ``raw_steps`` steps against its video's annotated ``duration`` (s): None when they
    agree within the slack (one window and two strides), else ``(span, ratio, expected)``: the file's span
    ``((raw_steps - 1) * feature_stride + num_frames) / fps`` s, ``span / duration``, and the step count an
    extraction of ``duration`` s gives. The rule of :meth:`FeatureDataset._check_length` (and ``gaf data
    check``): past :data:`FEATURE_LENGTH_WARN` it warns, past :data:`FEATURE_LENGTH_LIMIT` it refuses."""
    span = ((raw_steps - 1) * feature_stride + num_frames) / fps
    slack = (num_frames + 2 * feature_stride) / fps
    if not (abs(span - duration) > slack and duration > 0):
        return None
    expected = max(1, math.floor((duration * fps - num_frames) / feature_stride) + 1)
    return span, span / duration, expected


def _open_npy(path: Path, video_id: str, cfg: DatasetConfig) -> np.ndarray:
    """Memory-map ``path``; every way it can fail becomes a DataError naming the file."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        regular = True  # missing or unreadable: np.load below names the problem
    if not regular:  # a FIFO would block forever, a device never end
        raise DataError(f"{path}: feature file of video {video_id!r} is not a regular file "
                        "(a FIFO, device or folder); refusing to read it")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(
            f"{path}: feature file of video {video_id!r} not found (expected "
            f"<dataset.feature_dir>/<dataset.file_prefix>{video_id}<dataset.file_suffix>{cfg.file_ext} "
            f"with feature_dir={cfg.feature_dir!r}, file_prefix={cfg.file_prefix!r}, "
            f"file_suffix={cfg.file_suffix!r})"
        ) from None
    except (ValueError, OSError, EOFError) as exc:
        dtype = _npy_dtype(path)
        if dtype is not None and dtype.hasobject:
            raise DataError(f"{path}: video {video_id!r}: expected floating-point features, got dtype {dtype} "
                            "(Python objects: gaf never unpickles feature files)") from None
        raise DataError(f"{path}: video {video_id!r}: not a readable .npy array "
                        f"(empty, truncated or corrupt file: {exc})") from None
    if not isinstance(arr, np.ndarray):  # np.load reads a .npz (zip) archive whatever the file is named
        names = list(getattr(arr, "files", []))
        getattr(arr, "close", lambda: None)()
        raise DataError(f"{path}: video {video_id!r}: a .npz archive (arrays: {', '.join(names) or 'none'}), not a "
                        ".npy array; save the video's (T, C) features with numpy.save")
    return arr


def _npy_dtype(path: Path) -> np.dtype | None:
    """The dtype a ``.npy`` header declares, or None when the header is unreadable."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                _, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return None
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        return None
    return dtype


class FeatureDataset(SplitDataset):
    """Per-video features + ground truth of one split, as model-ready items.

    ``split="train"`` reads ``cfg.train_subset``, ``"test"`` reads
    ``cfg.test_subset``. With ``training=True`` there is one item per video,
    randomly cropped to ``max_seq_len`` steps (the crop depends only on
    ``seed``, the epoch set by :meth:`set_epoch` and the item index, so it
    does not depend on worker scheduling). Videos without instances are kept
    (all-background items). With ``training=False`` a video of at most
    ``cfg.eval_window`` steps (``eval_max_seq_len``, default
    ``max_seq_len``) is one item, whole; a longer one gives several items,
    sliding windows of ``cfg.eval_window`` steps overlapping by
    ``eval_window_overlap`` and covering the whole video; the engine merges
    their detections per video before NMS.

    Each item is a dict: ``video_id``; ``features`` float32 ``(C, T_item)``;
    ``segments`` float32 ``(N, 2)`` in steps relative to the item;
    ``labels`` int64 ``(N,)``; ``meta`` (``video_id``, ``fps``, ``duration``
    [s], ``time_offset`` [s], ``step_seconds`` [s], ``offset_steps`` (item
    start in the video's step axis), ``num_steps`` (``T_item``),
    ``video_steps``, ``feature_stride``, ``num_frames``).

    Construction reads only the annotation and each file's ``.npy`` header
    (missing files, wrong shape or dtype fail here); values are checked when
    loaded, or all at once by :meth:`check`.
    """

    cfg: DatasetConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._length_mismatches: list[tuple[float, str]] = []  # (|log ratio|, description) per video, for one warning
        super().__init__(*args, **kwargs)
        if self._length_mismatches:
            self._warn_length_mismatches()

    # ----------------------------------------------------------------- public
    @property
    def input_dim(self) -> int:
        """Channels per item (after the ``channels`` slice): the model's input width."""
        c = self.cfg.channels
        return self.cfg.input_dim if c is None else c[1] - c[0]

    def check(self, *, progress: bool = True) -> None:
        """Read every feature file in full and check its values (NaN/Inf, also after the cast to float32),
        with a progress bar."""
        from tqdm import tqdm

        for info in tqdm(self._videos, desc=f"checking {self.split} features", unit="video",
                         disable=not progress, leave=False):
            arr = _open_npy(info.path, info.video_id, self.cfg)
            for start in range(0, arr.shape[0], 4096):
                with np.errstate(over="ignore"):  # as the model sees them: float32
                    chunk = np.asarray(arr[start:start + 4096], dtype=np.float32)
                self._check_finite(chunk, info, start)

    def item_steps(self) -> list[int]:
        """Each item's length in steps (a training crop: at most ``max_seq_len``), without loading it."""
        L = self.cfg.max_seq_len
        return [min(self._videos[vi].num_steps, L) if length is None else length for vi, _, length in self._items]

    def __getitem__(self, index: int) -> dict[str, Any]:
        vi, start, length = self._items[index]
        info = self._videos[vi]
        if length is None:  # training: random crop
            start, length = self._crop(info, index)
        x = self._load(info, start, length)
        segs, labels = self._item_segments(info, start, length)
        meta = {
            "video_id": info.video_id, "fps": info.fps, "duration": info.duration,
            "time_offset": info.time_offset + start * info.step_seconds,
            "step_seconds": info.step_seconds, "offset_steps": start, "num_steps": length,
            "video_steps": info.num_steps, "feature_stride": self.cfg.feature_stride,
            "num_frames": self.cfg.num_frames,
        }
        return {"video_id": info.video_id, "features": torch.from_numpy(np.ascontiguousarray(x.T)),
                "segments": torch.from_numpy(segs), "labels": torch.from_numpy(labels), "meta": meta}

    # --------------------------------------------------------------- building
    def _video_info(self, vid: str) -> _VideoInfo:
        cfg = self.cfg
        video = self._aset.videos[vid]
        where = f"{cfg.annotation_file}: video {vid!r}"
        fps = cfg.fps if (cfg.force_fps or video.fps is None) else video.fps
        from gaf.data.annotations import safe_video_id

        path = cfg.feature_path(safe_video_id(vid, str(cfg.annotation_file)))
        arr = _open_npy(path, vid, cfg)
        if arr.ndim != 2:
            raise DataError(f"{path}: video {vid!r}: expected a 2-D (T, C) array, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise DataError(f"{path}: video {vid!r}: expected floating-point features, got dtype {arr.dtype}")
        if arr.shape[1] != cfg.input_dim:
            hint = f" (dataset.channels={cfg.channels} slices it afterwards)" if cfg.channels else ""
            raise DataError(f"{path}: video {vid!r}: {arr.shape[1]} channels, but dataset.input_dim is "
                            f"{cfg.input_dim}{hint}")
        raw_steps = int(arr.shape[0])
        if raw_steps < 1:
            raise DataError(f"{path}: video {vid!r}: 0 feature steps (video shorter than one window of "
                            f"{cfg.num_frames} frames?)")
        try:
            num_steps, step_seconds, time_offset, duration = time_axis(cfg, fps, video.duration, raw_steps)
        except TimeAxisError as err:
            raise DataError(f"{where}: {err}") from None
        if not (0.0 < step_seconds < math.inf and math.isfinite(time_offset)):
            # e.g. fps 1e-320 (stride / fps overflows) or duration 5e-324 (duration / resize_length underflows)
            raise DataError(f"{where}: fps {fps} / duration {duration} s give {step_seconds} s per feature step "
                            f"(step 0 at {time_offset} s): not a usable time axis (check the annotation's fps and "
                            "duration, dataset.fps)")
        if cfg.resize_length is None and video.duration is not None:
            self._check_length(path, vid, raw_steps, fps, float(video.duration))
        segs, labels = self._instances_in_steps(video, time_offset=time_offset, step_seconds=step_seconds,
                                                num_steps=num_steps)
        if fps is None:  # resize mode without fps: the rate the raw steps imply
            fps = raw_steps * cfg.feature_stride / duration
            if not math.isfinite(fps):
                raise DataError(f"{where}: duration {duration} s: {raw_steps} feature steps in it imply "
                                f"{fps} frames per second; set dataset.fps")
        return _VideoInfo(vid, path, float(fps), float(duration), raw_steps, num_steps, time_offset, step_seconds,
                          segs, labels)

    def _check_length(self, path: Path, vid: str, raw_steps: int, fps: float, duration: float) -> None:
        """DataError when the features' span and the annotated ``duration`` (s) are more than
        :data:`FEATURE_LENGTH_LIMIT` times apart; noted for one warning past :data:`FEATURE_LENGTH_WARN`."""
        cfg = self.cfg
        disagreement = length_disagreement(raw_steps, fps, duration, cfg.feature_stride, cfg.num_frames)
        if disagreement is None:
            return
        span, ratio, expected = disagreement
        lengths = (f"{raw_steps} feature steps = {span:.6g} s (fps {fps:g}, dataset.feature_stride "
                   f"{cfg.feature_stride}, num_frames {cfg.num_frames}) for an annotated duration of {duration:g} s "
                   f"({expected} steps)")
        if not 1.0 / FEATURE_LENGTH_LIMIT <= ratio <= FEATURE_LENGTH_LIMIT:
            raise DataError(f"{path}: video {vid!r}: {lengths}: {ratio:.3g} times the duration, beyond the "
                            f"{FEATURE_LENGTH_LIMIT:g}x either way that no extraction gives; is it another video's "
                            "file, or are dataset.fps / feature_stride wrong?")
        if abs(span - duration) > FEATURE_LENGTH_WARN * duration:
            self._length_mismatches.append((abs(math.log(ratio)), f"video {vid!r}: {lengths}"))

    def _warn_length_mismatches(self) -> None:
        """One warning for the videos :meth:`_check_length` noted, naming the worst."""
        import warnings

        notes = sorted(self._length_mismatches, key=lambda note: -note[0])
        more = f" (the worst of {len(notes)} such videos; next: {notes[1][1]})" if len(notes) > 1 else ""
        warnings.warn(f"{self.cfg.annotation_file}: {self.split} split: features and annotation disagree on a "
                      f"video's length by more than {FEATURE_LENGTH_WARN:.0%}: {notes[0][1]}{more}; its instances "
                      "are mapped to feature steps as annotated: check the feature file, or dataset.fps / "
                      "feature_stride / num_frames", UserWarning, stacklevel=3)

    def _build_items(self) -> list[tuple[int, int, int | None]]:
        """(video index, start step, length) per item; length None = random training crop."""
        L = self.cfg.max_seq_len if self.training else self.cfg.eval_window
        items: list[tuple[int, int, int | None]] = []
        for vi, info in enumerate(self._videos):
            T = info.num_steps
            if self.training:
                items.append((vi, 0, None if T > L else T))
            elif T <= L:  # the whole video
                items.append((vi, 0, T))
            else:
                items.extend((vi, s, L) for s in window_starts(T, L, self.cfg.eval_window_overlap))
        return items

    # ---------------------------------------------------------------- loading
    def _crop(self, info: _VideoInfo, index: int) -> tuple[int, int]:
        L = self.cfg.max_seq_len
        return self._crop_start(info, index, L), L

    def _load(self, info: _VideoInfo, start: int, length: int) -> np.ndarray:
        """Features of steps [start, start+length) as float32 (length, C_item)."""
        arr = _open_npy(info.path, info.video_id, self.cfg)
        if arr.ndim != 2 or arr.shape[0] != info.raw_steps or arr.shape[1] != self.cfg.input_dim:
            raise DataError(f"{info.path}: video {info.video_id!r}: shape changed to {arr.shape} since the "
                            f"dataset was built")
        c0, c1 = self.cfg.channels if self.cfg.channels is not None else (0, self.cfg.input_dim)
        with np.errstate(over="ignore"):  # float64 beyond float32's range turns inf: _check_finite names it
            x = np.array(arr[start:start + length, c0:c1] if self.cfg.resize_length is None else arr[:, c0:c1],
                         dtype=np.float32)
        if self.cfg.resize_length is None:
            self._check_finite(x, info, start)
            return x
        self._check_finite(x, info, 0)
        return resample(x.T, info.num_steps, self.cfg.resize_mode)[:, start:start + length].T

    @staticmethod
    def _check_finite(x: np.ndarray, info: _VideoInfo, start: int) -> None:
        bad = ~np.isfinite(x)
        if bad.any():
            step = start + int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
            raise DataError(f"{info.path}: video {info.video_id!r}: NaN or Inf feature values (or values beyond "
                            f"float32's range), first at step {step}")
        big = np.abs(x) > MAX_FEATURE_MAGNITUDE
        if big.any():
            step = start + int(np.argmax(big.reshape(len(x), -1).any(axis=1)))
            raise DataError(f"{info.path}: video {info.video_id!r}: feature values up to {float(np.abs(x).max()):.3g} "
                            f"(first beyond {MAX_FEATURE_MAGNITUDE:g} at step {step}) would overflow the model; "
                            "rescale the features")


def resample(x: np.ndarray, length: int, mode: str = "linear") -> np.ndarray:
    """Features ``(C, T)`` resampled along time to ``(C, length)``, float32 (``dataset.resize_mode``).

    ``linear``: ``F.interpolate(mode="linear", align_corners=False)``, as
    ActionFormer resizes ActivityNet videos (output step ``i`` reads the input
    at ``(i + 0.5) * T / length - 0.5``, clamped to the ends). ``average``:
    :func:`resample_average`. The one place gaf resamples a video's features.
    """
    if mode == "average":
        return resample_average(x, length)
    if mode != "linear":
        raise ValueError(f"resample: mode must be one of {', '.join(map(repr, RESIZE_MODES))}, got {mode!r}")
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]  # (1, C, T)
    return F.interpolate(t, size=length, mode="linear", align_corners=False)[0].numpy()


def resample_average(x: np.ndarray, length: int) -> np.ndarray:
    """Area resampling of features ``(C, T)`` to ``(C, L)``, ``L = length``, float32.

    Raw step ``j`` is taken as constant over ``[j, j + 1)``; output step ``i``
    is the mean over its bin ``[i * T / L, (i + 1) * T / L)``, a raw step that
    overlaps the bin partly weighted by the overlap. When ``L`` divides ``T``
    it is the mean of ``T / L`` consecutive steps; for ``L > T`` a raw step's
    value repeats (a bin straddling two steps mixes them). The mean over time
    is kept. Computed from float64 cumulative sums: ``O(C * (T + L))``.
    """
    C, T = x.shape
    cum = np.zeros((C, T + 1), dtype=np.float64)  # cum[:, k] = sum of raw steps [0, k)
    np.cumsum(x, axis=1, dtype=np.float64, out=cum[:, 1:])
    edges = np.arange(length + 1, dtype=np.float64) * T / length  # bin edges in raw steps; edges[L] == T
    k = np.minimum(np.floor(edges).astype(np.int64), T - 1)  # the raw step each edge falls in
    area = cum[:, k] + (edges - k) * x[:, k]  # (C, L + 1): integral of the features over [0, edge)
    return (np.diff(area, axis=1) * (length / T)).astype(np.float32)


def collate(items: list[dict[str, Any]], *, pad_to: int | None = None, size_divisor: int = 1) -> dict[str, Any]:
    """Batch items of :class:`FeatureDataset`.

    ``features`` float32 ``(B, C, T)`` zero-padded on the right to the longest
    item (or ``pad_to``), then up to a multiple of ``size_divisor``; ``mask``
    bool ``(B, T)``, True on valid steps. ``segments`` / ``labels`` / ``meta``
    / ``video_id`` are lists (one entry per item).
    """
    if not items:
        raise ValueError("collate: empty batch")
    lengths = [int(it["features"].shape[1]) for it in items]
    longest = max(lengths)
    T = longest if pad_to is None else pad_to
    if T < longest:
        raise ValueError(f"collate: an item has {longest} steps, more than pad_to={pad_to}")
    if size_divisor > 1:
        T = -(-T // size_divisor) * size_divisor
    C = int(items[0]["features"].shape[0])
    feats = torch.zeros((len(items), C, T), dtype=torch.float32)
    mask = torch.zeros((len(items), T), dtype=torch.bool)
    for b, (it, n) in enumerate(zip(items, lengths)):
        if it["features"].shape[0] != C:
            raise ValueError(f"collate: item {b} has {it['features'].shape[0]} channels, item 0 has {C}")
        feats[b, :, :n] = it["features"]
        mask[b, :n] = True
    return {"features": feats, "mask": mask, "segments": [it["segments"] for it in items],
            "labels": [it["labels"] for it in items], "meta": [it["meta"] for it in items],
            "video_id": [it["video_id"] for it in items]}


def read_preprocessing(feature_dir: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The :data:`PREPROCESSING` settings of ``<feature_dir>/features.json`` (None: no such readable index)."""
    if not feature_dir:
        return None
    index = read_feature_index(Path(feature_dir) / "features.json")
    return None if index is None else {key: index[key] for key in PREPROCESSING if key in index}


def read_feature_index(path: Path) -> dict[str, Any] | None:
    """``gaf extract``'s ``features.json`` at ``path`` as a dict with a ``videos`` mapping; None when it is
    missing, unreadable or of another shape."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(index, dict) or not isinstance(index.get("videos"), dict):
        return None
    return index
