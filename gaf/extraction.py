"""Raw videos → I3D feature files (the ``gaf extract`` library function).

For each video: decode with PyAV at ``fps``, resize the short side, centre
crop, cut windows of ``window`` frames every ``stride`` frames, run I3D (RGB,
optical flow, or both) on batches of windows and write one ``T × C`` float32
array ``<out_dir>/<video_id>.npy``. Step ``t`` covers sampled frames
``[t * stride, t * stride + window)`` — the layout
:class:`gaf.data.features.FeatureDataset` reads with ``feature_stride =
stride`` and ``num_frames = window``. With both streams a step is RGB 1024 ⊕
flow 1024 (2048 channels, RGB first).

* A window's feature is the Mixed_5c map averaged over space and time.
* Flow: ``flow[i]`` is the flow from sampled frame ``i`` to ``i + 1``
  (:mod:`gaf.data.flow`); the flow window of step ``t`` is
  ``flow[t * stride : t * stride + window]``, the last flow repeated past the
  end, so both streams have the same steps. Flow is computed on the cropped
  frames.
* A video shorter than one window gives one step (last frame repeated).
* ``<out_dir>/features.json`` records the settings (every preprocessing
  setting of :data:`PREPROCESSING`, among them the sha256 of each stream's
  weights file) and, per video, its duration (seconds), steps, sampled
  frames, fps and source; it is merged with an existing file written with
  the same settings (different settings → ConfigError) and rewritten
  atomically after each video. ``gaf train`` copies these settings into the
  checkpoint, and ``gaf detect`` extracts with them.
* A video whose ``.npy`` exists is skipped unless ``overwrite``. A file that
  cannot be decoded is reported in :class:`ExtractReport.failures` and the
  others go on.
* Under ``torchrun`` (``ctx`` of several processes) the videos are shared
  out (every ``world_size``-th one per rank, each rank on its own device);
  rank 0 alone writes ``features.json``, merging every rank's entries at the
  end, and returns the joint report.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

import numpy as np
import torch

from gaf.data.features import PREPROCESSING, read_preprocessing
from gaf.data.flow import compute_flow, flow_to_input, resolve_method
from gaf.data.video import MAX_FPS, WindowBuffer, iter_frames, num_resampled_frames, num_windows, probe
from gaf.io import atomic_save_npy, atomic_write_text, prepare_output_dir, sha256_file
from gaf.errors import ConfigError, DataError

if TYPE_CHECKING:
    from gaf.engine.distributed import DistContext

__all__ = ["ExtractConfig", "ExtractReport", "extract_features", "collect_videos", "video_id_of",
           "VIDEO_EXTENSIONS", "FEATURE_DIM", "PREPROCESSING", "weights_sha256", "read_preprocessing"]

log = logging.getLogger("gaf")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".3gp", ".ts", ".gif", ".ogv")
FEATURE_DIM = 1024  # I3D Mixed_5c channels per stream
_FLOW_CHUNK = 16  # flow fields computed per call (frame pairs)
_UNSAFE_ID = re.compile(r'[\x00-\x1f/\\<>:"|?*]')


@dataclass
class ExtractConfig:
    """Settings of ``gaf extract``.

    ``fps``: frames per second to sample (None: each video's own rate).
    ``window`` / ``stride``: frames per feature step / frames between steps.
    ``short_side`` / ``crop``: pixels (None: keep / no crop).
    ``rgb_weights`` / ``flow_weights``: pytorch-i3d state dicts (None: an
    untrained network, with a warning). ``seed`` fixes the random init then.
    """

    stream: Literal["rgb", "flow", "both"] = "rgb"
    fps: float | None = 30.0
    window: int = 16
    stride: int = 4
    short_side: int | None = 256
    crop: int | None = 224
    batch_size: int = 8
    rgb_weights: str | None = None
    flow_weights: str | None = None
    flow_method: Literal["auto", "tvl1", "builtin"] = "auto"
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stream not in ("rgb", "flow", "both"):
            raise ConfigError(f"extract.stream: expected rgb, flow or both, got {self.stream!r}")
        if self.fps is not None and not 0 < self.fps <= MAX_FPS:
            raise ConfigError(f"extract.fps: must be in (0, {MAX_FPS:g}], got {self.fps}")
        for name in ("window", "stride", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"extract.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("short_side", "crop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"extract.{name}: must be >= 1 (or None), got {value}")
        if self.flow_method not in ("auto", "tvl1", "builtin"):
            raise ConfigError(f"extract.flow_method: expected auto, tvl1 or builtin, got {self.flow_method!r}")

    @property
    def streams(self) -> list[str]:
        return ["rgb", "flow"] if self.stream == "both" else [self.stream]


@dataclass
class ExtractReport:
    """What :func:`extract_features` did. ``failures``: ``(path, reason)``."""

    out_dir: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0  # sampled frames that went through the backbone(s)
    windows: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def format(self) -> str:
        lines = [f"{len(self.written)} video(s) extracted, {len(self.skipped)} skipped (features exist), "
                 f"{len(self.failures)} failed; {self.frames} frames, {self.windows} windows in "
                 f"{self.seconds:.1f} s → {self.out_dir}"]
        lines += [f"  FAILED {reason if reason.startswith(path) else f'{path}: {reason}'}"
                  for path, reason in self.failures]
        return "\n".join(lines)


# ----------------------------------------------------------------------- inputs
def collect_videos(inputs: Iterable[str | Path]) -> list[Path]:
    """Video files named by ``inputs``: files as given, folders searched recursively (sorted).

    A path that does not exist, or a folder with no video file (by
    extension, :data:`VIDEO_EXTENSIONS`), raises DataError.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise DataError(f"{path}: no video files in this folder (extensions {', '.join(VIDEO_EXTENSIONS)})")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise DataError(f"{path}: no such video file or folder")
    return files


def video_id_of(path: Path) -> str:
    """The video id: the file stem. DataError when it is not a safe file name."""
    vid = path.stem
    if not vid or vid.startswith(".") or _UNSAFE_ID.search(vid) or vid != vid.strip():
        raise DataError(f"{path}: video id {vid!r} (the file stem) is not a safe file name "
                        "(no leading dot, path separators, control or <>:\"|?* characters); rename the file")
    return vid


# ---------------------------------------------------------------- features.json
def _settings(cfg: ExtractConfig, flow_method: str | None) -> dict[str, Any]:
    return {
        "fps": cfg.fps, "stride": cfg.stride, "window": cfg.window, "streams": cfg.streams,
        "dims": {s: FEATURE_DIM for s in cfg.streams}, "feature_dim": FEATURE_DIM * len(cfg.streams),
        "short_side": cfg.short_side, "crop": cfg.crop, "flow_method": flow_method,
        "backbone_weights": {s: getattr(cfg, f"{s}_weights") for s in cfg.streams},
        "weights_sha256": {s: weights_sha256(getattr(cfg, f"{s}_weights")) for s in cfg.streams},
    }


def weights_sha256(path: str | os.PathLike[str] | None) -> str | None:
    """sha256 of a backbone weights file (None for none: an untrained backbone). DataError if missing."""
    if not path:
        return None
    if not Path(path).is_file():
        raise DataError(f"{path}: backbone weights file not found")
    return sha256_file(path)


# Settings that change the features (PREPROCESSING): cached features made with others are refused, never mixed.
def _load_index(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Existing ``features.json`` (checked against ``settings``) or a fresh one."""
    if not path.exists():
        return {**settings, "videos": {}}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the existing feature index ({exc})") from None
    if not isinstance(index, dict) or not isinstance(index.get("videos"), dict):
        raise DataError(f"{path}: not a gaf feature index (no 'videos' mapping)")
    for key in PREPROCESSING:
        if index.get(key) != settings[key]:
            were = "(not recorded: an older gaf)" if key not in index else repr(index[key])
            raise ConfigError(f"{path}: features there were extracted with {key}={were}, "
                              f"this run asks for {settings[key]!r}; use another --out folder")
    return {**settings, "videos": index["videos"]}


def _write_index(path: Path, index: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(index, indent=1, sort_keys=False) + "\n")


def _save_npy(path: Path, array: np.ndarray) -> None:
    atomic_save_npy(path, np.asarray(array, dtype=np.float32))


# ------------------------------------------------------------------- extraction
class _Stream:
    """One backbone stream: completed windows waiting for a batch, and the features so far."""

    def __init__(self, name: str, model: torch.nn.Module, cfg: ExtractConfig, device: torch.device) -> None:
        self.name, self.model, self.cfg, self.device = name, model, cfg, device
        self.windows = WindowBuffer(cfg.window, cfg.stride)
        self.pending: list[np.ndarray] = []
        self.features: list[np.ndarray] = []

    def push(self, item: np.ndarray) -> None:
        self.pending.extend(self.windows.push(item))
        if len(self.pending) >= self.cfg.batch_size:
            self.flush()

    def finish(self) -> None:
        self.pending.extend(self.windows.finish())
        self.flush()

    @torch.inference_mode()
    def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[: self.cfg.batch_size], self.pending[self.cfg.batch_size:]
            x = torch.from_numpy(np.stack(batch)).to(self.device, non_blocking=True)
            if self.name == "rgb":  # (B, T, H, W, 3) uint8 → (B, 3, T, H, W) in [-1, 1]
                x = x.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)
            else:  # (B, T, 2, H, W) flow already in [-1, 1] → (B, 2, T, H, W)
                x = x.permute(0, 2, 1, 3, 4).float()
            feats = self.model.forward_features(x.contiguous()).mean(dim=-1)  # (B, 1024)
            self.features.append(feats.float().cpu().numpy())


def _extract_one(path: Path, cfg: ExtractConfig, models: dict[str, torch.nn.Module], device: torch.device,
                 flow_method: str | None, fps: float, pbar: Any) -> tuple[np.ndarray, int]:
    """Features ``(T, C)`` of one video and its number of sampled frames."""
    streams = {name: _Stream(name, models[name], cfg, device) for name in cfg.streams}
    rgb, flow = streams.get("rgb"), streams.get("flow")
    pending_frames: list[np.ndarray] = []  # frames awaiting flow computation (last one kept as next start)
    last_flow: np.ndarray | None = None
    n = 0

    def push_flows(frames: list[np.ndarray]) -> np.ndarray | None:
        assert flow is not None and flow_method is not None
        fields = flow_to_input(compute_flow(np.stack(frames), flow_method))  # (k, 2, H, W)
        for f in fields:
            flow.push(f)
        return fields[-1]

    done = 0
    for frame in iter_frames(path, fps=fps, short_side=cfg.short_side, crop=cfg.crop):
        n += 1
        if rgb is not None:
            rgb.push(frame)
        if flow is not None:
            pending_frames.append(frame)
            if len(pending_frames) > _FLOW_CHUNK:
                last_flow = push_flows(pending_frames)
                pending_frames = pending_frames[-1:]
        now = max(s.windows.emitted for s in streams.values())
        if pbar is not None and now > done:
            pbar.update(now - done)
            done = now
    if n == 0:
        raise DataError(f"{path}: no frames decoded")
    if flow is not None:
        if len(pending_frames) > 1:
            last_flow = push_flows(pending_frames)
        if last_flow is None:  # a single-frame video: no motion
            last_flow = np.zeros((2,) + pending_frames[0].shape[:2], dtype=np.float32)
        flow.push(last_flow)  # n frames ↔ n flow fields: the last one repeated
    for s in streams.values():
        s.finish()
    if pbar is not None:
        pbar.update(max(s.windows.emitted for s in streams.values()) - done)
    parts = [np.concatenate(s.features, axis=0) for s in streams.values()]
    steps = {p.shape[0] for p in parts}
    if len(steps) != 1:  # cannot happen: both streams see n items
        raise RuntimeError(f"{path}: streams gave different step counts {steps}")
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False), n


def _build_models(cfg: ExtractConfig, device: torch.device) -> dict[str, torch.nn.Module]:
    from gaf.models.backbones.i3d import build_i3d

    torch.manual_seed(cfg.seed)  # an untrained backbone is at least the same one every run
    models = {}
    for name in cfg.streams:
        models[name] = build_i3d(name, getattr(cfg, f"{name}_weights")).eval().to(device)
    return models


def _index_existing(index: dict[str, Any], index_path: Path | None, vid: str, path: Path, target: Path,
                    cfg: ExtractConfig) -> None:
    info = probe(path)
    try:
        steps = int(np.load(target, mmap_mode="r").shape[0])
    except (OSError, ValueError) as exc:
        raise DataError(f"{target}: existing feature file is unreadable ({exc}); use --overwrite") from None
    fps = cfg.fps or info.fps
    index["videos"][vid] = {"duration": round(info.duration, 6), "num_steps": steps,
                            "num_frames": num_resampled_frames(info.duration, fps), "fps": fps,
                            "source": str(path.resolve())}
    if index_path is not None:
        _write_index(index_path, index)


def _join_ranks(parts: list[tuple[dict[str, dict[str, Any]], ExtractReport]], index: dict[str, Any],
                report: ExtractReport) -> None:
    """Rank 0: the other ranks' new index entries into ``index``, their counts into ``report``."""
    for their_entries, theirs in parts:
        index["videos"].update(their_entries)
        report.written += theirs.written
        report.skipped += theirs.skipped
        report.failures += theirs.failures
        report.frames += theirs.frames
        report.windows += theirs.windows


def extract_features(paths: Sequence[str | Path], out_dir: str | Path, cfg: ExtractConfig | None = None, *,
                     models: dict[str, torch.nn.Module] | None = None,
                     ctx: DistContext | None = None) -> ExtractReport:
    """Extract I3D features of the videos ``paths`` (files or folders) into ``out_dir``.

    ``models``: ready backbones by stream name (``forward_features(x) → (N,
    1024, T')``) instead of building them from ``cfg`` (for tests and
    benchmarks). ``ctx``: the process group of a ``torchrun`` launch (videos
    sharded over ranks; see the module docstring). Returns an
    :class:`ExtractReport` (the joint one on rank 0 under ``ctx``);
    decoding failures are reported there, not raised. Bad settings, a
    missing input path or an incompatible existing ``features.json`` raise
    ConfigError / DataError; an ``out_dir`` that is not a usable folder (a
    file or device there, read-only) raises OutputError before any work.
    """
    from tqdm.auto import tqdm

    from gaf.progress import logged_progress, shows_bars
    from gaf.engine.runtime import select_device

    cfg = cfg or ExtractConfig()
    tic = time.perf_counter()
    files = collect_videos(paths)
    out = prepare_output_dir(out_dir, "the feature folder")  # before any work: a file or device there, read-only
    flow_method = resolve_method(cfg.flow_method) if "flow" in cfg.streams else None
    distributed = ctx is not None and ctx.enabled
    device = ctx.device if distributed else select_device(cfg.device)
    main = not distributed or ctx.is_main
    index_path = out / "features.json"
    settings = _settings(cfg, flow_method)
    index = _load_index(index_path, settings)
    report = ExtractReport(out)
    first: dict[str, Path] = {}  # the first file of each id, over all ranks' files
    for path in files:
        first.setdefault(path.stem, path)
    mine = ctx.shard(files) if distributed else files
    entries: dict[str, dict[str, Any]] = {}  # this rank's new index entries
    show = main and shows_bars(cfg.progress)
    bar = (tqdm(mine, desc="videos", unit="video", dynamic_ncols=True) if show
           else logged_progress(mine, log, "extract", len(mine), unit="video") if main else mine)
    for path in bar:
        try:
            vid = video_id_of(path)
            if first[vid] != path:
                raise DataError(f"{path}: video id {vid!r} is also the id of {first[vid]}; rename one of them")
            target = out / f"{vid}.npy"
            if target.exists() and not cfg.overwrite:
                report.skipped.append(vid)
                if vid not in index["videos"]:  # e.g. an index lost after a crash: describe the file there
                    _index_existing(index, index_path if main else None, vid, path, target, cfg)
                    entries[vid] = index["videos"][vid]
                continue
            info = probe(path)
            if models is None:  # built on first use: a re-run that skips everything needs none
                models = _build_models(cfg, device)
            fps = cfg.fps or info.fps
            total = num_windows(num_resampled_frames(info.duration, fps), cfg.window, cfg.stride)
            with tqdm(total=total, desc=vid[:30], unit="win", leave=False, disable=not show,
                      dynamic_ncols=True) as pbar:
                feats, n = _extract_one(path, cfg, models, device, flow_method, fps, pbar)
        except DataError as exc:
            report.failures.append((str(path), str(exc)))
            log.warning("gaf extract: skipping %s: %s", path, exc)
            continue
        _save_npy(target, feats)
        entries[vid] = {"duration": round(info.duration, 6), "num_steps": int(feats.shape[0]),
                        "num_frames": n, "fps": fps, "source": str(path.resolve())}
        index["videos"][vid] = entries[vid]
        if main:
            _write_index(index_path, index)
        report.written.append(vid)
        report.frames += n
        report.windows += int(feats.shape[0])
    if distributed:
        parts = ctx.gather((entries, report))
        if parts is None:
            return report  # not rank 0: rank 0 holds the joint index and report
        _join_ranks(parts[1:], index, report)
        _write_index(index_path, index)
    elif not index_path.exists():
        _write_index(index_path, index)
    report.seconds = time.perf_counter() - tic
    return report
