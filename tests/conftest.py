"""Shared fixtures: small datasets written in the exact on-disk layouts gaf reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():  # CI clones next to shared/ too; allow an override
    SHARED = Path(os.environ.get("GAF_SHARED_DATA", "../shared/data")).resolve()

THUMOS_DIR = SHARED / "thumos14"

# Under pytest-xdist (`make test` runs `-n auto`) the workers share the cores: each gets its share of
# torch's intra-op threads instead of every worker starting one thread per core.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
VIDEOS_DIR = SHARED / "videos"

# The real fixtures are part of the test suite: without them many capability tests would only
# skip, so a missing shared/data is an error (set GAF_SHARED_DATA to point at it).
if not (THUMOS_DIR / "thumos14.json").is_file() or not (VIDEOS_DIR / "clips.csv").is_file():
    raise pytest.UsageError(
        f"gaf tests need the real fixtures in shared/data (looked in {SHARED}); "
        "clone next to shared/ or set GAF_SHARED_DATA=/path/to/shared/data"
    )


def write_pulse_features(root: Path, *, num_train: int = 12, num_test: int = 6, dim: int = 16,
                         classes: tuple[str, ...] = ("Jump", "Throw"), steps: int = 96, fps: float = 10.0,
                         stride: int = 2, window: int = 4, noise: float = 0.3, seed: int = 0) -> dict:
    """An ActionFormer-layout feature dataset of clean class pulses on noise.

    Writes ``root/annotations.json`` (database with subset, duration, fps,
    annotations[segment seconds, label, label_id]) and ``root/features/<vid>.npy``
    (``steps × dim`` float32; step t centred at (t*stride + window/2)/fps s).
    Each video holds 1–2 instances of 8–20 steps; class k lights up channels
    [k*4, k*4+4). Returns the dataset config section for these files.
    """
    rng = np.random.default_rng(seed)
    feat_dir = root / "features"
    feat_dir.mkdir(parents=True, exist_ok=True)
    database = {}
    for split, count in (("validation", num_train), ("test", num_test)):
        for i in range(count):
            vid = f"video_{split}_{i:03d}"
            x = rng.normal(0.0, noise, size=(steps, dim)).astype(np.float32)
            annotations = []
            cursor = int(rng.integers(4, 16))
            for _ in range(int(rng.integers(1, 3))):
                length = int(rng.integers(8, 21))
                if cursor + length >= steps - 4:
                    break
                k = int(rng.integers(0, len(classes)))
                x[cursor:cursor + length, k * 4:(k + 1) * 4] += 2.0
                to_s = lambda t: (t * stride + 0.5 * window) / fps  # noqa: E731
                annotations.append({"label": classes[k], "label_id": k,
                                    "segment": [round(to_s(cursor - 0.5), 4), round(to_s(cursor + length - 0.5), 4)]})
                cursor += length + int(rng.integers(6, 20))
            np.save(feat_dir / f"{vid}.npy", x)
            duration = (steps * stride) / fps
            database[vid] = {"subset": split, "duration": duration, "fps": fps, "annotations": annotations}
    ann = root / "annotations.json"
    ann.write_text(json.dumps({"version": "pulses", "database": database}))
    return {"annotation_file": str(ann), "feature_dir": str(feat_dir), "feature_stride": stride,
            "num_frames": window, "input_dim": dim, "max_seq_len": steps, "fps": fps}


def encode_video(path: Path, frames, pts: list[int], time_base, *, codec: str = "ffv1", pix_fmt: str = "bgr0",
                 bit_rate: int | None = None, rotation: int = 0) -> Path:
    """Write ``frames`` (``(H, W, 3)`` uint8 RGB arrays) at ``pts`` (in units of ``time_base``, a Fraction)
    with ``codec`` (default lossless FFV1; the container follows the file's extension)."""
    import av
    import numpy as np

    frames = [np.ascontiguousarray(f) for f in frames]
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=int(round(1 / time_base)) if codec != "ffv1" else 1 / time_base)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = pix_fmt
    if bit_rate is not None:
        stream.bit_rate = bit_rate
    stream.time_base = time_base
    if rotation:
        stream.set_display_rotation(rotation)
    for img, t in zip(frames, pts):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = t, time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def write_video(path: Path, colours: list, pts_ms: list[int] | None = None, *, size: tuple[int, int] = (32, 24),
                rotation: int = 0, pattern: bool = False) -> Path:
    """Lossless (FFV1 / Matroska) video whose frame i is colours[i] (a grey level or an (R, G, B) triple),
    at times pts_ms (ms)."""
    from fractions import Fraction

    import numpy as np

    width, height = size
    pts_ms = pts_ms if pts_ms is not None else [40 * i for i in range(len(colours))]
    frames = []
    for colour in colours:
        img = np.full((height, width, 3), colour, np.uint8)
        if pattern:
            img[:, : width // 4] = 255  # a white band on the left
        frames.append(img)
    return encode_video(path, frames, pts_ms, Fraction(1, 1000), rotation=rotation)


def files_of(root: Path) -> dict[str, bytes]:
    """Every file below ``root``, by its relative path: its bytes (to compare generated trees)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def pulse_dataset(tmp_path: Path) -> dict:
    return write_pulse_features(tmp_path / "pulses")


@pytest.fixture()
def one_thread():
    """Run the test with one torch thread (small CPU convolutions: less overhead, exact same sums)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------ a feature layout (ActionFormer) written file by file
from gaf.config import from_dict  # noqa: E402
from gaf.data.features import DatasetConfig  # noqa: E402

LABELS = ["Jump", "Throw"]


def write_layout(root: Path, videos: dict[str, dict], *, prefix: str = "", suffix: str = "",
                 dim: int = 6) -> dict:
    """Write ``root/ann.json`` + ``root/feats/<prefix><vid><suffix>.npy`` (ActionFormer layout).

    ``videos[vid]`` holds ``subset``, ``steps`` (or ``array``), ``fps`` (optional),
    ``duration`` (optional) and ``segments`` [(start s, end s, label)]. Feature
    value at (t, c) is ``t + 1000 * c`` so slices can be recognised.
    """
    feat_dir = root / "feats"
    feat_dir.mkdir(parents=True, exist_ok=True)
    database = {}
    for vid, v in videos.items():
        arr = v.get("array")
        if arr is None:
            t = np.arange(v["steps"], dtype=np.float32)[:, None]
            arr = t + 1000.0 * np.arange(dim, dtype=np.float32)[None]
        np.save(feat_dir / f"{prefix}{vid}{suffix}.npy", arr)
        entry = {"subset": v["subset"], "annotations": [
            {"label": lab, "label_id": LABELS.index(lab), "segment": [s, e]} for s, e, lab in v.get("segments", [])]}
        for key in ("fps", "duration"):
            if key in v:
                entry[key] = v[key]
        database[vid] = entry
    ann = root / "ann.json"
    ann.write_text(json.dumps({"version": "test", "database": database}))
    return {"annotation_file": str(ann), "feature_dir": str(feat_dir), "file_prefix": prefix,
            "file_suffix": suffix, "input_dim": dim, "feature_stride": 4, "num_frames": 16}


def make(root: Path, videos: dict[str, dict], **overrides) -> DatasetConfig:
    section = write_layout(root, videos, **{k: overrides.pop(k) for k in ("prefix", "suffix", "dim") if k in overrides})
    section.update(overrides)
    return from_dict(DatasetConfig, section, "dataset")


TWO = {
    "v_a": {"subset": "Validation", "steps": 40, "fps": 30.0, "duration": 6.0,
            "segments": [(1.0, 2.0, "Jump"), (3.0, 4.5, "Throw")]},
    "v_b": {"subset": "Test", "steps": 25, "fps": 25.0, "duration": 4.5, "segments": [(0.9, 1.7, "Throw")]},
    "v_c": {"subset": "Test", "steps": 17, "fps": 25.0, "duration": 3.2, "segments": []},
}


# ------------------------------------------------ training seeds of the learning tests
# Every test that asserts learning or a mechanism trains under this seed (marker `learning`); `make test-seeds`
# reruns them under seeds 0, 1 and 2 to show that none needs a lucky seed.
@pytest.fixture(scope="session")
def train_seed() -> int:
    """The training seed of a learning test: $GAF_TRAIN_SEED, 0 when unset."""
    return int(os.environ.get("GAF_TRAIN_SEED", "0"))


_LEARNING: list[tuple[str, list[tuple[str, object]]]] = []


def pytest_runtest_logreport(report) -> None:
    """Keep what learning tests measured (``record_property``), for the summary below."""
    if report.when == "call" and "learning" in report.keywords and report.user_properties:
        _LEARNING.append((report.nodeid, list(report.user_properties)))


def pytest_terminal_summary(terminalreporter) -> None:
    """Under `make test-seeds`: one line per learning test with the values its assertions judged."""
    if not _LEARNING:
        return
    seed = os.environ.get("GAF_TRAIN_SEED", "0")
    terminalreporter.section(f"learning tests, training seed {seed}: measured values")
    for nodeid, props in sorted(_LEARNING):
        values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in props)
        terminalreporter.write_line(f"{nodeid.split('::', 1)[1]}: {values}")
