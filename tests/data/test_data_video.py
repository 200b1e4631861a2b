"""PyAV decoding: metadata, frame counts, resampling, rotation, clips, bad files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from gaf.data.video import (  # noqa: E402
    VideoInfo, iter_clips, iter_frames, num_resampled_frames, num_windows, probe, sliding_windows,
)
from gaf.errors import DataError  # noqa: E402
from conftest import write_video  # noqa: E402

VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "videos"
if not VIDEOS.is_dir():
    VIDEOS = Path("/work/shared/data/videos")
CLIPS = list(csv.DictReader(open(VIDEOS / "clips.csv"))) if (VIDEOS / "clips.csv").exists() else []
needs_clips = pytest.mark.skipif(not CLIPS, reason="real clips not available")
AVI = VIDEOS / "v_Basketball_g01_c01.avi"  # 320x240, 29.97 fps, 141 frames
MP4 = VIDEOS / "abseiling_k400.mp4"  # 454x256, 25 fps, 250 frames


# ------------------------------------------------------------------ real clips
@needs_clips
@pytest.mark.parametrize("row", CLIPS, ids=[r["file"] for r in CLIPS])
def test_probe_agrees_with_the_container_metadata_of_each_real_clip(row: dict[str, str]) -> None:
    info = probe(VIDEOS / row["file"])
    assert isinstance(info, VideoInfo)
    assert info.fps == pytest.approx(float(row["fps"]), abs=0.01)
    assert info.num_frames == int(row["frames"])
    assert info.duration == pytest.approx(float(row["duration_s"]), abs=0.01)
    assert (info.width, info.height) == (int(row["width"]), int(row["height"]))
    assert info.rotation == 0


@needs_clips
@pytest.mark.parametrize("name", ["v_Basketball_g01_c01.avi", "abseiling_k400.mp4", "v_CricketShot_g04_c01_rgb.gif",
                                  "k400_arm_wrestling_mmaction2_demo.mp4"])
def test_every_frame_decodes_at_native_rate_with_the_declared_count(name: str) -> None:
    row = next(r for r in CLIPS if r["file"] == name)
    frames = list(iter_frames(VIDEOS / name, short_side=32, crop=None))
    assert len(frames) == int(row["frames"])
    w, h = int(row["width"]), int(row["height"])
    expected = (32, round(w * 32 / h)) if h <= w else (round(h * 32 / w), 32)
    assert all(f.shape == expected + (3,) and f.dtype == np.uint8 for f in frames)


@needs_clips
@pytest.mark.parametrize("target", [5.0, 12.5, 30.0])
def test_resampling_gives_one_frame_per_target_time(target: float) -> None:
    for path in (AVI, MP4):
        info = probe(path)
        n = sum(1 for _ in iter_frames(path, fps=target, short_side=32, crop=32))
        assert n == math.ceil(info.num_frames / info.fps * target - 1e-6) == num_resampled_frames(info.duration, target)


@needs_clips
def test_resize_then_centre_crop_and_rgb_content() -> None:
    full = next(iter_frames(AVI, short_side=None, crop=None))
    assert full.shape == (240, 320, 3)
    small = next(iter_frames(AVI, short_side=120, crop=None))
    assert small.shape == (120, 160, 3)
    cropped = next(iter_frames(AVI, short_side=None, crop=100))
    np.testing.assert_array_equal(cropped, full[70:170, 110:210])
    # a frame smaller than the crop is enlarged first
    assert next(iter_frames(AVI, short_side=64, crop=224)).shape == (224, 224, 3)


@needs_clips
def test_truncated_copy_of_a_real_clip_raises_data_error_naming_it(tmp_path: Path) -> None:
    for source in (AVI, MP4):
        data = source.read_bytes()
        bad = tmp_path / f"cut_{source.name}"
        bad.write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError, match=f"cut_{source.name}"):
            for _ in iter_frames(bad, short_side=32, crop=None):
                pass


def test_zero_byte_missing_and_non_video_files_raise_data_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.avi"
    text.write_text("this is not a video\n" * 50)
    for path, why in ((empty, "0 bytes"), (tmp_path / "missing.mp4", "not found"), (text, "cannot open")):
        with pytest.raises(DataError, match=why) as err:
            list(iter_frames(path))
        assert path.name in str(err.value)
        with pytest.raises(DataError, match=path.name):
            probe(path)


# ---------------------------------------------------------------- synthetic
def test_variable_frame_rate_picks_the_latest_frame_at_or_before_each_target(tmp_path: Path) -> None:
    path = write_video(tmp_path / "vfr.mkv", [0, 40, 80, 120, 160, 200], [0, 100, 150, 400, 420, 1000])
    grey = [int(f[0, 0, 0]) for f in iter_frames(path, fps=10, short_side=None, crop=None)]
    # targets 0.0 0.1 ... 1.0 s: frames at 0, .1, .15, .4, .42, 1.0 s
    assert grey == [0, 40, 80, 80, 120, 160, 160, 160, 160, 160, 200]
    native = [int(f[0, 0, 0]) for f in iter_frames(path, short_side=None, crop=None)]
    assert native == [0, 40, 80, 120, 160, 200]
    assert probe(path).num_frames == 6  # Matroska has no frame count: packets are counted


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    path = write_video(tmp_path / "rot.mkv", [0, 0], size=(64, 32), rotation=90, pattern=True)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (32, 64, 90)
    frame = next(iter_frames(path, short_side=None, crop=None))
    assert frame.shape == (64, 32, 3)
    # 90° counter-clockwise: the left band ends at the bottom
    assert frame[-16:].min() == 255 and frame[:48].max() == 0


def test_sliding_windows_cover_stride_offsets_and_pad_short_sequences() -> None:
    items = [np.array([i]) for i in range(10)]
    wins = list(sliding_windows(items, window=4, stride=3))
    assert [w[:, 0].tolist() for w in wins] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert len(wins) == num_windows(10, 4, 3)
    short = list(sliding_windows(items[:3], window=5, stride=2))
    assert [w[:, 0].tolist() for w in short] == [[0, 1, 2, 2, 2]]
    assert list(sliding_windows([], window=5, stride=2)) == []


@needs_clips
def test_iter_clips_batches_windows_of_the_frame_stream() -> None:
    kw = dict(fps=5.0, short_side=32, crop=32)
    frames = np.stack(list(iter_frames(AVI, **kw)))  # 24 frames
    batches = list(iter_clips(AVI, window=8, stride=4, batch_size=2, **kw))
    clips = torch.cat(batches)
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert clips.shape == (num_windows(len(frames), 8, 4), 3, 8, 32, 32) and clips.dtype == torch.uint8
    for i, clip in enumerate(clips):
        np.testing.assert_array_equal(clip.permute(1, 2, 3, 0).numpy(), frames[4 * i:4 * i + 8])
    norm = torch.cat(list(iter_clips(AVI, window=8, stride=4, batch_size=8, normalize=True, **kw)))
    assert norm.dtype == torch.float32 and norm.min() >= -1 and norm.max() <= 1
    torch.testing.assert_close(norm, clips.float() / 127.5 - 1)


def test_video_shorter_than_one_clip_is_padded_with_its_last_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mkv", [10, 20, 30])
    (clip,) = list(iter_clips(path, window=5, stride=2, short_side=None, crop=None))
    assert clip.shape == (1, 3, 5, 24, 32)
    assert clip[0, 0, :, 0, 0].tolist() == [10, 20, 30, 30, 30]
