"""The embedded benchmark: THUMOS14-like features on the real THUMOS14 timing.

No dataset can be downloaded where gaf is tested, so this module builds one in
the same on-disk layout as real features (ActionFormer THUMOS14: an annotation
JSON + ``features/<video_id>.npy`` of ``T×C`` float32), see
:mod:`gaf.data.features`. The code under test is the code a user runs.

Timing is real: every synthetic video copies one real THUMOS14 video's
duration and instances (start, end, class; the training split from the
Validation videos, the test split from the Test videos), compressed by
``time_scale``. The timing table ships with gaf
(``gaf/resources/thumos14_timing.json``, built by :func:`build_timing_table`).

Features are made, at each step, by averaging over the step's window of
``num_frames`` frames (centre at ``(t*feature_stride + num_frames/2)/fps`` s):

* class prototypes (start and end phase differ) × an envelope with ramped,
  soft boundaries, per-instance amplitude and intra-class variation;
* confusable classes: ``confusable_pairs`` share most of a prototype
  (CliffDiving inside Diving); the ``runup_classes`` (the jumps and the
  javelin) share a run-up component over the first part of each instance;
* two streams: channels ``[0, D/2)`` are "RGB", ``[D/2, D)`` "flow"; motion
  classes are stronger in flow, the others in RGB, scene context mostly in
  RGB, the noise is independent, so fusing the streams helps;
* per-video context (a constant offset plus a slow drift), action-like
  background distractors (unannotated weaker bursts of a random class), and
  temporally correlated Gaussian noise.

Everything is drawn from ``seed``: the same config gives the same bytes.

``timing: activitynet`` makes the ActivityNet-like variant (``demo_anet``):
the real ActivityNet v1.3 timing (:mod:`gaf.data.anet_timing`: 200 classes,
long instances, 1 to many per video; training videos from ``training``, test
videos from ``validation``, written under those subset names), and with
``hierarchy: activitynet`` the shipped class hierarchy: the classes of a
group share ``confusable_share`` of a parent prototype (the ``confusable_pairs``
idea, for groups of siblings) and a group's ``motion`` flag adds its classes
to ``motion_classes``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gaf.errors import ConfigError, DataError

__all__ = ["SyntheticConfig", "DEMO", "generate_benchmark", "benchmark_dataset_config",
           "build_timing_table", "load_timing_table", "nearest_centroid_accuracy",
           "GENERATOR_VERSION"]

GENERATOR_VERSION = 1
_TIMING_RESOURCE = "resources/thumos14_timing.json"
# per timing, per split: (the real subset videos are drawn from, the subset name written)
_SUBSETS = {"thumos14": {"train": ("Validation", "validation"), "test": ("Test", "test")},
            "activitynet": {"train": ("training", "training"), "test": ("validation", "validation")}}
_TIMING_NAMES = {"thumos14": "a THUMOS14", "activitynet": "an ActivityNet"}
# keys added to SyntheticConfig after the THUMOS14-like benchmark was fixed, with the values that keep it:
# left out of benchmark.json at these values, so that existing benchmarks keep their identity and bytes
_LATER_KEYS = {"timing": "thumos14", "hierarchy": None}

_MOTION = ["BasketballDunk", "CleanAndJerk", "CliffDiving", "Diving", "HammerThrow", "HighJump",
           "JavelinThrow", "LongJump", "PoleVault", "Shotput", "ThrowDiscus", "VolleyballSpiking"]


@dataclass
class SyntheticConfig:
    """Knobs of the embedded benchmark. Times in (synthetic) seconds unless noted.

    Size: ``num_train_videos`` / ``num_test_videos`` sampled from the real
    Validation / Test timing (ActivityNet: training / validation);
    ``time_scale`` compresses real time (0.25: a 200 s video becomes 50 s);
    longer videos are cropped to ``max_duration``;
    instances shorter than ``min_instance_steps`` steps are widened about
    their centre. ``fps=None`` keeps each real video's fps.

    Difficulty (amplitudes are relative to a prototype of RMS 1 per channel):
    ``noise_std`` (correlated over ``noise_smoothing`` steps),
    ``prototype_separation`` (1: independent class prototypes; lower pulls
    them towards a shared "action" direction), ``phase_strength`` (start vs
    end phase of a class), ``intra_class_std``, ``amplitude_jitter``,
    ``boundary_ramp`` (half-width of the onset/offset ramps, as a fraction of
    the instance length), ``context_strength`` / ``drift_strength`` /
    ``drift_timescale`` (per-video offset and slow drift),
    ``distractor_rate`` (unannotated bursts per minute) at
    ``distractor_strength``, ``confusable_share`` (fraction of the prototype
    a confusable pair, or the siblings of a ``hierarchy`` group, share),
    ``runup_share`` over the first ``runup_fraction`` of a run-up class
    instance, ``weak_stream_gain`` (a class's strength in its weaker stream).

    Source: ``timing`` picks the real timing (``thumos14`` or
    ``activitynet``; the latter has no per-video fps, so ``fps`` must be
    set), ``hierarchy`` the class hierarchy (``activitynet`` or none). The
    class lists must name classes of the chosen timing (``[]`` for none).
    """

    seed: int = 0
    num_train_videos: int = 120
    num_test_videos: int = 60
    feature_dim: int = 64
    fps: float | None = 30.0
    feature_stride: int = 4
    num_frames: int = 16
    time_scale: float = 0.25
    max_duration: float = 120.0
    min_instance_steps: float = 2.0
    signal_strength: float = 1.0
    noise_std: float = 1.0
    noise_smoothing: float = 1.0
    prototype_separation: float = 0.7
    phase_strength: float = 0.5
    intra_class_std: float = 0.5
    amplitude_jitter: float = 0.3
    boundary_ramp: float = 0.15
    context_strength: float = 0.8
    drift_strength: float = 0.4
    drift_timescale: float = 8.0
    distractor_rate: float = 6.0
    distractor_strength: float = 0.5
    confusable_pairs: list[list[str]] = field(default_factory=lambda: [["CliffDiving", "Diving"]])
    confusable_share: float = 0.8
    runup_classes: list[str] = field(default_factory=lambda: ["HighJump", "LongJump", "PoleVault", "JavelinThrow"])
    runup_fraction: float = 0.4
    runup_share: float = 0.7
    motion_classes: list[str] = field(default_factory=lambda: list(_MOTION))
    weak_stream_gain: float = 0.5
    timing: Literal["thumos14", "activitynet"] = "thumos14"
    hierarchy: Literal["activitynet"] | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"synthetic.{name}: must be {rule}, got {getattr(self, name)!r}")

        for name in ("num_train_videos", "num_test_videos", "feature_stride", "num_frames"):
            need(getattr(self, name) >= 1, name, ">= 1")
        need(self.feature_dim >= 2 and self.feature_dim % 2 == 0, "feature_dim", "even and >= 2")
        need(self.fps is None or self.fps > 0, "fps", "> 0 or null")
        for name in ("time_scale", "max_duration", "drift_timescale"):
            need(getattr(self, name) > 0, name, "> 0")
        for name in ("prototype_separation", "confusable_share", "runup_fraction", "runup_share",
                     "amplitude_jitter", "weak_stream_gain", "boundary_ramp"):
            need(0.0 <= getattr(self, name) <= 1.0, name, "in [0, 1]")
        for name in ("noise_std", "noise_smoothing", "intra_class_std", "phase_strength", "context_strength",
                     "drift_strength", "distractor_rate", "distractor_strength", "min_instance_steps",
                     "signal_strength"):
            need(getattr(self, name) >= 0, name, ">= 0")
        need(all(len(p) == 2 for p in self.confusable_pairs), "confusable_pairs", "a list of [class, class] pairs")
        need(self.hierarchy is None or self.hierarchy == self.timing, "hierarchy", f"null or {self.timing!r} "
             f"(the hierarchy of the timing's classes)")
        need(self.fps is not None or self.timing == "thumos14", "fps", "set for the ActivityNet timing "
             "(its table has no per-video fps)")


DEMO = SyntheticConfig()
"""The ``gaf demo`` benchmark: 120 train / 60 test videos of ~20–900 steps, 64 channels."""


# ------------------------------------------------------------------ timing table
def build_timing_table(src: str | os.PathLike[str]) -> dict[str, Any]:
    """Compact timing of every video of an ActionFormer-style THUMOS14 JSON.

    Returns ``{"source", "labels": [20 names by label_id], "videos": {video_id:
    {"subset", "duration", "fps", "segments": [[start, end, label_id], ...]}}}``,
    times in seconds rounded to 0.01.
    """
    path = Path(src)
    try:
        db = json.loads(path.read_text(encoding="utf-8"))["database"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read a THUMOS14 annotation with a 'database' ({exc})") from None
    names: dict[int, str] = {}
    videos = {}
    for vid in sorted(db):
        entry = db[vid]
        segs = []
        for ann in entry.get("annotations", []):
            names[int(ann["label_id"])] = ann["label"]
            segs.append([round(float(ann["segment"][0]), 2), round(float(ann["segment"][1]), 2), int(ann["label_id"])])
        segs.sort()
        videos[vid] = {"subset": entry["subset"], "duration": round(float(entry["duration"]), 2),
                       "fps": float(entry["fps"]), "segments": segs}
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{path}: label_id values are not 0..N-1: {sorted(names)}")
    return {"source": f"{path.name} (ActionFormer-layout THUMOS14, Ambiguous removed)",
            "labels": [names[i] for i in range(len(names))], "videos": videos}


def load_timing_table(timing: str = "thumos14") -> dict[str, Any]:
    """A timing table shipped with gaf: THUMOS14's (see :func:`build_timing_table`) or ActivityNet's
    (:func:`gaf.data.anet_timing.build_anet_timing_table`)."""
    from importlib.resources import files

    if timing == "activitynet":
        from gaf.data.anet_timing import load_anet_timing_table

        return load_anet_timing_table()
    return json.loads(files("gaf").joinpath(_TIMING_RESOURCE).read_text(encoding="utf-8"))


# --------------------------------------------------------------------- benchmark
def generate_benchmark(out_dir: str | os.PathLike[str], cfg: SyntheticConfig = DEMO, *,
                       overwrite: bool = False) -> Path:
    """Write the benchmark into ``out_dir``; return the annotation path.

    Layout: ``annotations.json`` (ActionFormer style, subsets ``validation``
    and ``test``), ``features/<video_id>.npy`` (``T×feature_dim`` float32),
    ``benchmark.json`` (config, generator version, sources, content hash).
    Nothing is done when ``out_dir`` already holds this benchmark. The
    benchmark is written to a temporary folder and renamed into place, so a
    crash never leaves a half-written one.
    """
    from gaf.config import to_dict

    out = Path(out_dir)
    record = {k: v for k, v in to_dict(cfg).items() if k not in _LATER_KEYS or v != _LATER_KEYS[k]}
    wanted = {"generator_version": GENERATOR_VERSION, "config": json.loads(json.dumps(record))}
    existing = _existing_benchmark(out)
    if existing is not None:
        if {k: existing.get(k) for k in wanted} == wanted:
            return out / "annotations.json"
        if not overwrite:
            raise DataError(f"{out}: holds a synthetic benchmark made with another config or generator version; "
                            f"remove it, pick another folder, or pass overwrite=True")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not a gaf synthetic benchmark (no benchmark.json); "
                        f"pick an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        sources = _write_benchmark(tmp, cfg)
        meta = dict(wanted, format="gaf-synthetic-benchmark", content_sha256=_content_hash(tmp), sources=sources)
        (tmp / "benchmark.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        _move_into_place(tmp, out, wanted, overwrite=existing is not None)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out / "annotations.json"


def benchmark_dataset_config(out_dir: str | os.PathLike[str], cfg: SyntheticConfig = DEMO):
    """A :class:`~gaf.data.features.DatasetConfig` reading the benchmark in ``out_dir``.

    ``max_seq_len`` holds the longest possible video whole (a multiple of 256);
    ``labels`` is the timing's full class list (20 THUMOS14 or 200
    ActivityNet classes), also when a small benchmark misses some classes;
    the subsets are the ones the benchmark writes.
    """
    from gaf.data.features import DatasetConfig

    fps = cfg.fps if cfg.fps is not None else 30.0
    longest = int(cfg.max_duration * fps / cfg.feature_stride) + 1
    out = Path(out_dir)
    return DatasetConfig(annotation_file=str(out / "annotations.json"), feature_dir=str(out / "features"),
                         feature_stride=cfg.feature_stride, num_frames=cfg.num_frames, input_dim=cfg.feature_dim,
                         max_seq_len=-(-longest // 256) * 256,
                         labels=list(load_timing_table(cfg.timing)["labels"]),
                         train_subset=_SUBSETS[cfg.timing]["train"][1], test_subset=_SUBSETS[cfg.timing]["test"][1])


def _existing_benchmark(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(f"{out / 'benchmark.json'}: unreadable ({exc}); remove the folder") from None


def _move_into_place(tmp: Path, out: Path, wanted: dict[str, Any], *, overwrite: bool) -> None:
    if overwrite:
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, trash)
        os.rename(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
        return
    try:
        if out.is_dir():
            out.rmdir()  # empty: checked by the caller
        os.rename(tmp, out)
    except OSError:
        other = _existing_benchmark(out)  # another process finished first
        if other is None or {k: other.get(k) for k in wanted} != wanted:
            raise DataError(f"{out}: could not move the new benchmark into place") from None


def _content_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def _write_benchmark(root: Path, cfg: SyntheticConfig) -> dict[str, str]:
    from gaf.data.annotations import AnnotationSet, Segment, Video, write_activitynet

    table = load_timing_table(cfg.timing)
    labels: list[str] = table["labels"]
    for name in [n for p in cfg.confusable_pairs for n in p] + cfg.runup_classes + cfg.motion_classes:
        if name not in labels:
            raise ConfigError(f"synthetic: {name!r} is not {_TIMING_NAMES[cfg.timing]} class "
                              f"({', '.join(labels) if len(labels) <= 20 else f'{len(labels)} classes'})")
    groups = []
    if cfg.hierarchy == "activitynet":
        from gaf.data.anet_timing import load_anet_hierarchy

        groups = load_anet_hierarchy()
    world = _World(cfg, labels, groups)
    (root / "features").mkdir(parents=True)
    videos: dict[str, Video] = {}
    sources: dict[str, str] = {}
    for split, count in (("train", cfg.num_train_videos), ("test", cfg.num_test_videos)):
        real_subset, subset = _SUBSETS[cfg.timing][split]
        pool = sorted(v for v, e in table["videos"].items() if e["subset"] == real_subset)
        pick_rng = np.random.default_rng([cfg.seed, 1 if split == "train" else 2, 0])
        picks = pick_rng.choice(len(pool), size=count, replace=count > len(pool))
        for i, p in enumerate(picks):
            vid = f"syn_{split}_{i:04d}"
            rng = np.random.default_rng([cfg.seed, 1 if split == "train" else 2, i + 1])
            duration, fps, instances = _synthetic_timing(table["videos"][pool[p]], cfg, rng)
            x = world.render(rng, duration, fps, instances)
            np.save(root / "features" / f"{vid}.npy", x)
            videos[vid] = Video(vid, [Segment(s, e, labels[c]) for s, e, c in instances],
                                duration=duration, fps=fps, subset=subset)
            sources[vid] = pool[p]
    aset = AnnotationSet(videos=videos, labels=list(labels), source="gaf synthetic benchmark")
    write_activitynet(aset, root / "annotations.json")
    return sources


def _synthetic_timing(entry: dict[str, Any], cfg: SyntheticConfig,
                      rng: np.random.Generator) -> tuple[float, float, list[tuple[float, float, int]]]:
    """(duration s, fps, [(start s, end s, label_id)]) of one synthetic video from a real one."""
    fps = float(cfg.fps if cfg.fps is not None else entry["fps"])
    ts = cfg.time_scale
    duration = entry["duration"] * ts
    segs = [(s * ts, min(e, entry["duration"]) * ts, c) for s, e, c in entry["segments"] if s < entry["duration"]]
    start = 0.0
    if duration > cfg.max_duration:  # crop; prefer a window holding an instance
        for _ in range(8):
            start = float(rng.uniform(0.0, duration - cfg.max_duration))
            if any(s < start + cfg.max_duration and e > start for s, e, _ in segs):
                break
        duration = cfg.max_duration
    min_len = cfg.min_instance_steps * cfg.feature_stride / fps
    out = []
    for s, e, c in segs:
        s, e = max(s - start, 0.0), min(e - start, duration)
        if e <= s:
            continue
        if e - s < min_len:
            mid = min(max(0.5 * (s + e), 0.5 * min_len), duration - 0.5 * min_len)
            s, e = max(mid - 0.5 * min_len, 0.0), min(mid + 0.5 * min_len, duration)
        out.append((round(s, 3), round(e, 3), int(c)))
    return round(duration, 3), fps, sorted(out)


def _rms1(v: np.ndarray) -> np.ndarray:
    return v / np.sqrt(np.mean(v**2, axis=-1, keepdims=True))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _smooth_noise(rng: np.random.Generator, steps: int, dim: int, sigma: float) -> np.ndarray:
    """Gaussian noise of unit variance, correlated over ``sigma`` steps: (steps, dim)."""
    if sigma <= 0:
        return rng.standard_normal((steps, dim))
    pad = int(math.ceil(3.0 * sigma))
    k = np.exp(-0.5 * (np.arange(-pad, pad + 1) / sigma) ** 2)
    k /= np.sqrt(np.sum(k**2))
    white = rng.standard_normal((steps + 2 * pad, dim))
    out = np.zeros((steps, dim))
    for j, w in enumerate(k):
        out += w * white[j:j + steps]
    return out


class _World:
    """Class prototypes and stream gains shared by every video of a benchmark."""

    def __init__(self, cfg: SyntheticConfig, labels: list[str], groups: list[dict[str, Any]] | None = None) -> None:
        self.cfg = cfg
        groups = groups or []
        rng = np.random.default_rng([cfg.seed, 0, 0])
        C, D, H = len(labels), cfg.feature_dim, cfg.feature_dim // 2
        shared = rng.standard_normal(D)
        own = rng.standard_normal((C, D))
        sep = cfg.prototype_separation
        base = _rms1(math.sqrt(sep) * own + math.sqrt(1.0 - sep) * shared)
        weak = cfg.weak_stream_gain
        for a, b in cfg.confusable_pairs:  # a's prototype lies mostly inside b's; the rest shows in RGB
            ia, ib = labels.index(a), labels.index(b)
            private = rng.standard_normal(D)
            private[H:] *= weak
            base[ia] = _rms1(math.sqrt(cfg.confusable_share) * base[ib]
                             + math.sqrt(1.0 - cfg.confusable_share) * _rms1(private))
        for group in groups:  # siblings share a parent prototype (built like a class's); the rest is their own
            members = [labels.index(n) for n in group["classes"]]
            parent = _rms1(math.sqrt(sep) * rng.standard_normal(D) + math.sqrt(1.0 - sep) * shared)
            base[members] = _rms1(math.sqrt(cfg.confusable_share) * parent
                                  + math.sqrt(1.0 - cfg.confusable_share) * base[members])
        ph = cfg.phase_strength
        self.start_proto = _rms1(base + ph * rng.standard_normal((C, D)))
        self.end_proto = _rms1(base + ph * rng.standard_normal((C, D)))
        self.runup = _rms1(rng.standard_normal(D))
        self.runup[:H] *= weak  # a run-up is motion: mostly flow
        self.is_runup = np.array([n in cfg.runup_classes for n in labels])
        motion_names = set(cfg.motion_classes).union(*(g["classes"] for g in groups if g["motion"]))
        motion = np.array([n in motion_names for n in labels])
        self.gain = np.ones((C, D))
        self.gain[motion, :H] = weak
        self.gain[~motion, H:] = weak
        self.context_gain = np.ones(D)
        self.context_gain[H:] = weak  # scene appearance lives in RGB
        self.num_classes = C

    def render(self, rng: np.random.Generator, duration: float, fps: float,
               instances: list[tuple[float, float, int]]) -> np.ndarray:
        """Features (T, D) float32 of one video; instances in seconds."""
        cfg = self.cfg
        D = cfg.feature_dim
        T = max(1, int(math.floor((duration * fps - cfg.num_frames) / cfg.feature_stride)) + 1)
        sub = 4  # sub-samples per feature window
        frames = np.arange(T)[:, None] * cfg.feature_stride + (np.arange(sub) + 0.5) / sub * cfg.num_frames
        times = frames / fps  # (T, sub) seconds
        signal = np.zeros((T, D))
        events = [(s, e, c, 1.0) for s, e, c in instances]
        lengths = [e - s for s, e, _ in instances] or [1.0]
        for _ in range(int(rng.poisson(cfg.distractor_rate * duration / 60.0))):
            length = min(float(rng.choice(lengths)), duration)
            s = float(rng.uniform(0.0, max(duration - length, 0.0)))
            events.append((s, s + length, int(rng.integers(self.num_classes)), cfg.distractor_strength))
        for s, e, c, strength in events:
            amp = strength * (1.0 - cfg.amplitude_jitter * rng.random())
            variation = cfg.intra_class_std * rng.standard_normal(D)
            signal += amp * self._instance(times, s, e, c, variation, fps)
        context = cfg.context_strength * rng.standard_normal(D)
        drift_sigma = cfg.drift_timescale * fps / cfg.feature_stride
        drift = cfg.drift_strength * _smooth_noise(rng, T, D, drift_sigma)
        noise = cfg.noise_std * _smooth_noise(rng, T, D, cfg.noise_smoothing)
        x = cfg.signal_strength * signal + (context + drift) * self.context_gain + noise
        return x.astype(np.float32)

    def _instance(self, times: np.ndarray, s: float, e: float, c: int, variation: np.ndarray,
                  fps: float) -> np.ndarray:
        """One instance's contribution (T, D): window averages of envelope × phase-blended prototype."""
        cfg = self.cfg
        length = max(e - s, 1e-6)
        ramp = max(cfg.boundary_ramp * length, 0.25 * cfg.feature_stride / fps)  # >= a quarter step
        env = _smoothstep((times - (s - ramp)) / (2 * ramp)) * _smoothstep(((e + ramp) - times) / (2 * ramp))
        tau = np.clip((times - s) / length, 0.0, 1.0)
        runup = np.zeros_like(tau)
        if self.is_runup[c] and cfg.runup_fraction > 0:
            runup = cfg.runup_share * (1.0 - _smoothstep((tau - 0.5 * cfg.runup_fraction) / (0.5 * cfg.runup_fraction)))
        w_start = np.mean(env * (1.0 - tau) * (1.0 - runup), axis=1)
        w_end = np.mean(env * tau * (1.0 - runup), axis=1)
        w_runup = np.mean(env * runup, axis=1)
        w_all = np.mean(env * (1.0 - runup), axis=1)
        g = self.gain[c]
        return (np.outer(w_start, self.start_proto[c] * g) + np.outer(w_end, self.end_proto[c] * g)
                + np.outer(w_all, variation * g) + np.outer(w_runup, self.runup))


# ----------------------------------------------------------------- sanity check
def nearest_centroid_accuracy(out_dir: str | os.PathLike[str], *,
                              channels: tuple[int, int] | None = None) -> dict[str, float]:
    """Per-step nearest-centroid accuracy (classes + background) on a benchmark.

    Centroids are the mean feature of each class's steps (step centre inside
    an instance) and of background steps on the training split (``validation``;
    ActivityNet-like: ``training``); test steps are classified by the closest
    centroid. Returns ``{"accuracy",
    "foreground_accuracy", "background_accuracy"}``: a quick measure of how
    separable single steps are (far from 1.0 on a useful benchmark).
    """
    root = Path(out_dir)
    db = json.loads((root / "annotations.json").read_text(encoding="utf-8"))["database"]
    bench = json.loads((root / "benchmark.json").read_text(encoding="utf-8"))["config"]
    stride, window = bench["feature_stride"], bench["num_frames"]
    train_sub, test_sub = (_SUBSETS[bench.get("timing", "thumos14")][k][1] for k in ("train", "test"))
    data: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {train_sub: ([], []), test_sub: ([], [])}
    num_classes = 0
    for vid, entry in sorted(db.items()):
        x = np.load(root / "features" / f"{vid}.npy")
        if channels is not None:
            x = x[:, channels[0]:channels[1]]
        centres = (np.arange(len(x)) * stride + 0.5 * window) / entry["fps"]
        y = np.full(len(x), -1)
        for ann in entry["annotations"]:
            y[(centres >= ann["segment"][0]) & (centres <= ann["segment"][1])] = ann["label_id"]
            num_classes = max(num_classes, ann["label_id"] + 1)
        data[entry["subset"]][0].append(x)
        data[entry["subset"]][1].append(y)
    xtr, ytr = np.concatenate(data[train_sub][0]), np.concatenate(data[train_sub][1])
    xte, yte = np.concatenate(data[test_sub][0]), np.concatenate(data[test_sub][1])
    ytr, yte = np.where(ytr < 0, num_classes, ytr), np.where(yte < 0, num_classes, yte)
    present = [k for k in range(num_classes + 1) if np.any(ytr == k)]
    centroids = np.stack([xtr[ytr == k].mean(axis=0) for k in present])
    d2 = (xte**2).sum(1)[:, None] - 2 * xte @ centroids.T + (centroids**2).sum(1)[None]
    pred = np.asarray(present)[np.argmin(d2, axis=1)]
    fg = yte < num_classes
    return {"accuracy": float(np.mean(pred == yte)),
            "foreground_accuracy": float(np.mean(pred[fg] == yte[fg])) if fg.any() else float("nan"),
            "background_accuracy": float(np.mean(pred[~fg] == yte[~fg])) if (~fg).any() else float("nan")}

