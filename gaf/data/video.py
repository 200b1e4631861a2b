"""Video decoding with PyAV: probe, stream frames, resample, resize, crop, clip.

Frames are decoded one at a time and never held all at once: a video of any
length streams through :func:`iter_frames` with the memory of one frame, and
through :func:`iter_clips` with the memory of one window plus one batch.

Time and frame conventions
--------------------------
* Frame times are the decoder's presentation timestamps, in seconds, measured
  from the first decoded frame (so a stream whose first ``pts`` is not 0
  starts at 0 here).
* Resampling to ``fps`` (:func:`iter_frames` with ``fps=``) picks, for each
  target time ``t_k = k / fps``, the latest decoded frame whose time is
  ``<= t_k``. This works for variable frame rate. The output has one frame
  per target time in ``[0, end)``, ``end`` = the last frame's time plus its
  duration, i.e. ``ceil(duration * fps)`` frames for a constant-rate video.
* Clip (window) ``i`` of :func:`iter_clips` covers sampled frames
  ``[i * stride, i * stride + window)``; only windows that fit wholly in the
  video are produced, ``(N - window) // stride + 1`` of them for ``N``
  frames. A video shorter than one window gives one window, padded at the
  end by repeating its last frame.
* Rotation: a display matrix (side data) or a legacy ``rotate`` tag is
  applied, so frames come out as a player would show them; ``VideoInfo``'s
  ``width`` / ``height`` are those of the displayed frame.

Resizing uses libswscale through ``VideoFrame.reformat`` (area filter when
shrinking, so it is antialiased; bilinear when enlarging): the short side is
scaled to ``short_side`` (and to at least ``crop``), then the centre
``crop × crop`` square is cut.

Bad files (missing, zero bytes, not a video, truncated, undecodable) raise
:class:`~gaf.errors.DataError` naming the file.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from gaf.errors import DataError

__all__ = [
    "VideoInfo", "probe", "iter_frames", "iter_clips", "sliding_windows", "WindowBuffer",
    "num_windows", "num_resampled_frames", "clips_to_tensor", "MAX_FPS",
]

MAX_FPS = 1000.0  # sampling rates above this are typos (1e6 would repeat each frame a million times)

# A frame counts as "at or before" a target time within this slack (seconds):
# far below any frame duration, far above float rounding of pts * time_base.
_TIME_TOL = 1e-4


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's (first) video stream.

    ``fps``: average frame rate (frames / s). ``num_frames``: the container's
    frame count, or the number of video packets when the container has none.
    ``duration``: seconds. ``width`` / ``height``: pixels of the displayed
    frame (after ``rotation``). ``rotation``: degrees counter-clockwise
    applied for display (0, 90, 180 or 270).
    """

    path: str
    fps: float
    num_frames: int
    duration: float
    width: int
    height: int
    rotation: int


# ---------------------------------------------------------------------- opening
def _av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a declared dependency of the video extra
        raise DataError("decoding videos needs PyAV: pip install 'gaf[video]' (or pip install av)") from None
    return av


def _open(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Open ``path`` and return ``(container, video_stream)``; DataError when that fails."""
    av = _av()
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: video file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a video file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not a video")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot open as a video ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream in the file")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads; output order is unchanged
    return container, stream


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(": '")[0]  # PyAV appends the file name; we name it ourselves


def _stream_fps(stream: Any) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(rate)
    return None


def _tag_rotation(stream: Any) -> int:
    """Counter-clockwise degrees from the legacy ``rotate`` tag (which is clockwise)."""
    try:
        return (-int(float(stream.metadata.get("rotate", 0)))) % 360
    except (TypeError, ValueError):
        return 0


def _frame_rotation(frame: Any, stream: Any) -> int:
    """Rotation (CCW degrees, multiple of 90) of ``frame``: display matrix, else ``rotate`` tag."""
    try:
        angle = int(round(frame.rotation))
    except (AttributeError, TypeError, ValueError):
        angle = 0
    if angle == 0:
        angle = _tag_rotation(stream)
    return (int(round(angle / 90.0)) * 90) % 360


# ------------------------------------------------------------------------ probe
def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's metadata (decodes only its first frame, for the rotation).

    Raises :class:`DataError` naming the file when it cannot be opened, has no
    video stream or no decodable frame.
    """
    av = _av()
    container, stream = _open(path)
    try:
        fps = _stream_fps(stream)
        if fps is None:
            raise DataError(f"{path}: the video stream has no frame rate")
        num_frames = int(stream.frames or 0)
        try:
            first = next(iter(container.decode(stream)), None)
        except av.FFmpegError as exc:
            raise DataError(f"{path}: cannot decode the first frame ({_reason(exc)})") from None
        if first is None:
            raise DataError(f"{path}: no decodable video frame")
        rotation = _frame_rotation(first, stream)
        width, height = first.width, first.height
        if num_frames <= 0:
            num_frames = _count_packets(path)
        if container.duration:
            duration = container.duration / 1_000_000  # av.time_base: microseconds
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = num_frames / fps
    finally:
        container.close()
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(str(path), fps, num_frames, float(duration), int(width), int(height), rotation)


def _count_packets(path: str | os.PathLike[str]) -> int:
    """Number of non-empty video packets (one per frame for video codecs), without decoding."""
    av = _av()
    container, stream = _open(path)
    try:
        return sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError as exc:
        raise DataError(f"{path}: cannot read packets ({_reason(exc)})") from None
    finally:
        container.close()


# ----------------------------------------------------------------------- frames
def _decode(path: str | os.PathLike[str]) -> Iterator[tuple[float, float, Any, int]]:
    """Yield ``(time, duration, frame, rotation)`` for every decoded frame, times from 0 (seconds).

    At the end, a stream that yields clearly fewer frames than its container
    declares is reported as truncated (DataError).
    """
    av = _av()
    container, stream = _open(path)
    try:
        fps = _stream_fps(stream) or 25.0
        declared = int(stream.frames or 0)
        rotation: int | None = None
        t0: float | None = None
        last = -math.inf
        count = 0
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                raise DataError(f"{path}: corrupt video data after frame {count} ({_reason(exc)})") from None
            if rotation is None:
                rotation = _frame_rotation(frame, stream)
            t = frame.time if frame.pts is not None else None
            t = count / fps if t is None else float(t)
            if t0 is None:
                t0 = t
            t = max(t - t0, last + 1e-6 if count else 0.0)  # keep times increasing
            dur = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 1.0 / fps
            last = t
            count += 1
            yield t, dur, frame, rotation
    finally:
        container.close()
    if count == 0:
        raise DataError(f"{path}: no decodable video frame")
    if declared and count < declared - max(2, int(0.02 * declared)):
        raise DataError(f"{path}: truncated or corrupt: decoded {count} of the {declared} frames "
                        "the container declares")


def _target_size(width: int, height: int, short_side: int | None, crop: int | None) -> tuple[int, int]:
    """Displayed ``(width, height)`` after scaling the short side to ``short_side`` (≥ ``crop``)."""
    short = min(width, height)
    target = short_side if short_side else short
    if crop and target < crop:
        target = crop
    if target == short:
        return width, height
    scale = target / short
    if width <= height:
        return target, max(target, round(height * scale))
    return max(target, round(width * scale)), target


def _to_array(frame: Any, rotation: int, short_side: int | None, crop: int | None) -> np.ndarray:
    """One decoded frame → displayed, resized, centre-cropped ``(H, W, 3)`` uint8 RGB."""
    swap = rotation in (90, 270)
    disp_w, disp_h = (frame.height, frame.width) if swap else (frame.width, frame.height)
    out_w, out_h = _target_size(disp_w, disp_h, short_side, crop)
    raw_w, raw_h = (out_h, out_w) if swap else (out_w, out_h)
    if (raw_w, raw_h) == (frame.width, frame.height):
        rgb = frame.reformat(format="rgb24")
    else:
        shrink = raw_w * raw_h < frame.width * frame.height
        rgb = frame.reformat(width=raw_w, height=raw_h, format="rgb24",
                             interpolation="AREA" if shrink else "BILINEAR")
    img = rgb.to_ndarray()
    if rotation:
        img = np.rot90(img, k=rotation // 90)  # counter-clockwise, as the display matrix says
    if crop:
        h, w = img.shape[:2]
        top, left = (h - crop) // 2, (w - crop) // 2
        img = img[top:top + crop, left:left + crop]
    return np.ascontiguousarray(img)


def num_resampled_frames(duration: float, fps: float) -> int:
    """Frames :func:`iter_frames` gives at ``fps`` for a constant-rate video of ``duration`` seconds."""
    return max(1, math.ceil(duration * fps - _TIME_TOL))


def iter_frames(path: str | os.PathLike[str], *, fps: float | None = None, short_side: int | None = 256,
                crop: int | None = 224) -> Iterator[np.ndarray]:
    """Stream a video's frames as ``(H, W, 3)`` uint8 RGB arrays.

    ``fps``: resample to this rate by timestamps (module docstring); None
    keeps every decoded frame. ``short_side``: scale the short side to this
    many pixels (None: keep the size). ``crop``: cut the centre ``crop ×
    crop`` square (None: no crop); a frame smaller than ``crop`` is first
    enlarged. Frames are rotated per the video's metadata. When resampling
    repeats a frame (target rate above the source's), the same array object
    is yielded again: copy it before changing it in place.
    """
    if fps is not None and not 0 < fps <= MAX_FPS:
        raise ValueError(f"fps must be in (0, {MAX_FPS:g}], got {fps}")
    if short_side is not None and short_side <= 0:
        raise ValueError(f"short_side must be > 0, got {short_side}")
    if crop is not None and crop <= 0:
        raise ValueError(f"crop must be > 0, got {crop}")
    if fps is None:
        for _, _, frame, rotation in _decode(path):
            yield _to_array(frame, rotation, short_side, crop)
        return

    k = 0  # index of the next target time k / fps
    prev: tuple[Any, int] | None = None
    cached: np.ndarray | None = None  # prev converted (a frame may be repeated when upsampling)
    end = 0.0
    for t, dur, frame, rotation in _decode(path):
        if prev is not None:
            while k / fps + _TIME_TOL < t:  # targets before this frame: the previous one is the latest
                if cached is None:
                    cached = _to_array(prev[0], prev[1], short_side, crop)
                yield cached
                k += 1
        prev, cached, end = (frame, rotation), None, t + dur
    if prev is not None:
        while k / fps + _TIME_TOL < end:
            if cached is None:
                cached = _to_array(prev[0], prev[1], short_side, crop)
            yield cached
            k += 1


# ------------------------------------------------------------------------ clips
def num_windows(num_frames: int, window: int, stride: int) -> int:
    """Windows of ``window`` items every ``stride`` items in ``num_frames`` (≥ 1 when any frame)."""
    if num_frames <= 0:
        return 0
    return max(1, (num_frames - window) // stride + 1)


class WindowBuffer:
    """Push-based sliding windows: ``push(item)`` returns the windows it completes.

    Window ``i`` holds items ``[i * stride, i * stride + window)`` stacked on a
    new first axis. :meth:`finish` returns the one padded window (last item
    repeated) of a sequence shorter than ``window``, else nothing. Holds at
    most ``window`` items.
    """

    def __init__(self, window: int, stride: int) -> None:
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
        self.window, self.stride = window, stride
        self._buf: deque[np.ndarray] = deque(maxlen=window)
        self._count = 0
        self._next_end = window  # the next window ends (exclusive) at this item count
        self.emitted = 0

    def push(self, item: np.ndarray) -> list[np.ndarray]:
        self._buf.append(item)
        self._count += 1
        if self._count == self._next_end:
            self._next_end += self.stride
            self.emitted += 1
            return [np.stack(self._buf)]
        return []

    def finish(self) -> list[np.ndarray]:
        if self.emitted or not self._buf:
            return []
        items = list(self._buf) + [self._buf[-1]] * (self.window - len(self._buf))
        self.emitted += 1
        return [np.stack(items)]


def sliding_windows(items: Iterable[np.ndarray], window: int, stride: int) -> Iterator[np.ndarray]:
    """Windows ``(window, ...)`` of ``items`` every ``stride``; see :class:`WindowBuffer`."""
    buf = WindowBuffer(window, stride)
    for item in items:
        yield from buf.push(item)
    yield from buf.finish()


def clips_to_tensor(windows: list[np.ndarray], normalize: bool = False) -> Any:
    """``B`` windows ``(T, H, W, 3)`` uint8 → ``(B, 3, T, H, W)``: uint8, or float32 in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.stack(windows)).permute(0, 4, 1, 2, 3).contiguous()
    return x.float().div_(127.5).sub_(1.0) if normalize else x


def iter_clips(path: str | os.PathLike[str], *, window: int = 16, stride: int = 4, batch_size: int = 8,
               fps: float | None = None, short_side: int | None = 256, crop: int | None = 224,
               normalize: bool = False) -> Iterator[Any]:
    """Stream batches of fixed-length clips ``(N, 3, T=window, H, W)``, ``N ≤ batch_size``.

    Uint8 RGB, or with ``normalize`` float32 in [-1, 1] (the I3D input
    convention: ``x / 127.5 - 1``). Clip ``i`` (counting across batches)
    covers sampled frames ``[i * stride, i * stride + window)``; a video
    shorter than one window gives one clip padded with its last frame.
    Other arguments as :func:`iter_frames`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch: list[np.ndarray] = []
    frames = iter_frames(path, fps=fps, short_side=short_side, crop=crop)
    for clip in sliding_windows(frames, window, stride):
        batch.append(clip)
        if len(batch) == batch_size:
            yield clips_to_tensor(batch, normalize)
            batch = []
    if batch:
        yield clips_to_tensor(batch, normalize)
