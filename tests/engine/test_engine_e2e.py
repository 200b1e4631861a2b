"""End-to-end detection mode (paper §IV-B): I3D on frame clips + GAF, trained through `gaf train`.

Tiny synthetic videos (a bright square moving over a dark background during
the annotated interval) stand in for THUMOS14; the run uses the same code
path as ``gaf/configs/thumos14_e2e.yaml`` with tiny sizes.
"""

from __future__ import annotations

import json
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import encode_video
import torch
import yaml

from gaf.cli import main
from gaf.data.e2e_frames import FrameClipDataset, FrameDatasetConfig, collate_frames
from gaf.engine.checkpoint import load_checkpoint
from gaf.engine.experiment import load_experiment
from gaf.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # small CPU kernels: one thread is fastest here

FPS, SIZE, FRAMES = 10, 32, 48  # 4.8 s videos of 32×32 at 10 fps -> 12 steps of 4 frames
# (video id, subset, action start s, action end s)
VIDEOS = [("v0", "validation", 1.2, 3.2), ("v1", "validation", 0.4, 2.0), ("v2", "validation", 2.4, 4.4),
          ("t0", "test", 1.6, 3.6)]


def write_video(path: Path, start: float, end: float) -> None:
    """Lossless video; a white 10×10 square moves left to right while start <= t < end."""
    frames = []
    for i in range(FRAMES):
        t = i / FPS
        img = np.full((SIZE, SIZE, 3), 20, np.uint8)
        if start <= t < end:
            x = int((t - start) / (end - start) * (SIZE - 10))
            img[11:21, x:x + 10] = 255
        frames.append(img)
    encode_video(path, frames, list(range(FRAMES)), Fraction(1, FPS))


def write_frames_root(root: Path, videos: list[tuple[str, str, float, float]]) -> Path:
    """``root/videos/<id>.mkv`` (:func:`write_video`) and ``root/annotations.json`` for ``videos``
    (id, subset, action start s, action end s); returns ``root``."""
    (root / "videos").mkdir()
    database = {}
    for vid, subset, s, e in videos:
        write_video(root / "videos" / f"{vid}.mkv", s, e)
        database[vid] = {"subset": subset, "duration": FRAMES / FPS, "fps": float(FPS),
                         "annotations": [{"segment": [s, e], "label": "Slide", "label_id": 0}]}
    (root / "annotations.json").write_text(json.dumps({"database": database}))
    return root


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory) -> Path:
    return write_frames_root(tmp_path_factory.mktemp("e2e"), VIDEOS)


# The learning run's videos: 8 to train on, 4 held out, the square sliding for 1.2–2.4 s at different times.
# A clip of 48 frames holds a whole video, so each held-out action is seen whole by one clip: the score is
# a mean over four videos, not one detection that straddles a window edge (a coin flip at this size).
LEARNING_VIDEOS = [("v0", "validation", 1.2, 3.2), ("v1", "validation", 0.4, 2.0), ("v2", "validation", 2.4, 4.4),
                   ("v3", "validation", 0.8, 2.4), ("v4", "validation", 2.0, 3.6), ("v5", "validation", 3.2, 4.4),
                   ("v6", "validation", 0.4, 2.8), ("v7", "validation", 1.6, 2.8),
                   ("t0", "test", 1.6, 3.6), ("t1", "test", 0.4, 2.4), ("t2", "test", 2.8, 4.4), ("t3", "test", 1.2, 2.8)]


@pytest.fixture(scope="module")
def learning_root(tmp_path_factory) -> Path:
    return write_frames_root(tmp_path_factory.mktemp("e2e_learning"), LEARNING_VIDEOS)


def frames_section(root: Path, **extra) -> dict:
    return {"annotation_file": str(root / "annotations.json"), "video_dir": str(root / "videos"),
            "video_ext": ".mkv", "fps": FPS, "short_side": SIZE, "crop": SIZE, "clip_len": 16, **extra}


def test_clip_items_keep_the_feature_dataset_contract_in_four_frame_steps(frames_root):
    cfg = FrameDatasetConfig(**frames_section(frames_root))
    ds = FrameClipDataset(cfg, "test", training=False)
    assert ds.num_classes == 1 and ds.input_dim == 3 and ds.video_ids == ["t0"]
    assert len(ds) == 4  # 12 steps in windows of 4 overlapping by 25 %: starts 0, 3, 6, 8
    item = ds[1]
    meta = item["meta"]
    assert item["features"].shape == (3, 16, SIZE, SIZE) and item["features"].dtype == torch.float32
    assert -1.0 <= float(item["features"].min()) and float(item["features"].max()) <= 1.0
    assert meta["offset_steps"] == 3 and meta["start_frame"] == 12 and meta["video_steps"] == 12
    assert meta["step_seconds"] == pytest.approx(0.4) and meta["time_offset"] == pytest.approx(1.4)
    # Ground truth 1.6-3.6 s -> steps (t - time_offset) / step_seconds of this clip, cut at its end (4 steps).
    assert item["segments"].tolist() == [[pytest.approx(0.5), pytest.approx(4.0)]]
    # The square is in the frames exactly while the action runs: frame 16 (1.6 s) lights up, frame 15 does not.
    bright = (item["features"][0] > 0.9).flatten(1).any(1)
    assert not bright[3] and bright[4]

    batch = collate_frames([ds[0], ds[3]])
    assert batch["features"].shape == (2, 3, 16, SIZE, SIZE) and batch["mask"].shape == (2, 4)
    assert batch["mask"].all()
    gt = ds.ground_truth()
    assert list(gt.videos) == ["t0"] and gt.labels == ["Slide"]


def test_short_video_is_padded_and_its_padded_steps_masked(frames_root):
    cfg = FrameDatasetConfig(**frames_section(frames_root, clip_len=64))
    ds = FrameClipDataset(cfg, "train", training=True)
    ds.set_epoch(3)
    item = ds[0]
    assert item["features"].shape[1] == 64 and item["meta"]["num_steps"] == 12
    assert torch.equal(item["features"][:, 47], item["features"][:, 63])  # last frame repeated
    mask = collate_frames([item])["mask"]
    assert mask[0, :12].all() and not mask[0, 12:].any()


def test_training_clips_are_seeded_by_epoch(frames_root):
    cfg = FrameDatasetConfig(**frames_section(frames_root))
    ds = FrameClipDataset(cfg, "train", training=True)
    starts = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        starts.append([ds[i]["meta"]["offset_steps"] for i in range(len(ds))])
    ds.set_epoch(2)
    assert [ds[i]["meta"]["offset_steps"] for i in range(len(ds))] == starts[2]
    assert len({tuple(s) for s in starts}) > 1  # different epochs, different clips
    for epoch in range(6):  # each training clip holds (enough of) its video's instance
        ds.set_epoch(epoch)
        assert all(len(ds[i]["segments"]) == 1 for i in range(len(ds)))


def test_cache_dir_gives_the_same_clips_as_streaming(frames_root, tmp_path):
    plain = FrameClipDataset(FrameDatasetConfig(**frames_section(frames_root)), "test", training=False)
    cached = FrameClipDataset(FrameDatasetConfig(**frames_section(frames_root, cache_dir=str(tmp_path / "c"))),
                              "test", training=False)
    cached.check(progress=False)
    assert len(list((tmp_path / "c").glob("*.npy"))) == 1
    for i in range(len(plain)):
        assert torch.equal(plain[i]["features"], cached[i]["features"])


def test_e2e_config_sections_must_come_together(frames_root, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"e2e": {}}))
    with pytest.raises(ConfigError, match="frames"):
        load_experiment(path)
    path.write_text(yaml.safe_dump({"frames": frames_section(frames_root)}))
    with pytest.raises(ConfigError, match="e2e|dataset"):
        load_experiment(path)
    cfg = load_experiment("thumos14_e2e")  # the paper's settings
    assert (cfg.frames.fps, cfg.frames.clip_len, cfg.frames.crop) == (25.0, 256, 96)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.batch_size, cfg.train.epochs) == (1e-5, 1e-3, 1, 20)


@pytest.mark.slow
@pytest.mark.learning
def test_gaf_train_runs_the_e2e_detector_on_frames_through_both_stages_and_evaluates(learning_root, train_seed,
                                                                                   tmp_path, record_property):
    config = {
        "name": "tiny_e2e",
        "frames": frames_section(learning_root, test_subset="test", clip_len=FRAMES),
        "e2e": {"merge": "average", "proj_dim": 16, "detector": {
            "gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
            "detector": {"embed_dim": 16, "num_levels": 3, "head_layers": 1, "stem_layers": 1},
            "loss": {"att": 0.0}}},  # the paper's losses
        "train": {"epochs": 12, "batch_size": 4, "lr": 2e-3, "warmup_epochs": 0, "seed": train_seed, "ema": False},
        "eval": {"tious": [0.3, 0.5], "batch_size": 4, "report_videos": 1},
    }
    path = tmp_path / "tiny_e2e.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init I3D warning: intended here
        code = main(["train", str(path), "--work-dir", str(run), "--no-progress"])
    assert code == 0

    history = json.loads((run / "history.json").read_text())
    assert len(history) == 12
    assert all("frame/cvae" in h and "segment/total" in h for h in history)  # both stages trained
    assert history[-1]["segment/ai"] < 0.9 * history[0]["segment/ai"]  # the detector learns
    state = load_checkpoint(run / "final.pt")
    meta = dict(state["meta"])
    data = meta.pop("data")  # the annotation / inputs the run was trained on (checked on --resume)
    assert meta == {"in_dim": 3, "num_classes": 1, "labels": ["Slide"]}
    assert data["annotation"].endswith("annotations.json") and len(data["annotation_sha256"]) == 64
    assert any(k.startswith("backbone.") for k in state["model"])  # the I3D is part of the trained model
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tious"] == [0.3, 0.5] and len(metrics["mAP"]) == 2
    record_property("mAP@0.3", metrics["mAP"][0])
    assert metrics["mAP"][0] > 0.5  # the moving square is found in the held-out videos (tIoU 0.3; seeds 0-2: 1.0)
    preds = json.loads((run / "predictions.json").read_text())["results"]
    assert sorted(preds) == ["t0", "t1", "t2", "t3"]
    assert all(0.0 <= d["segment"][0] <= d["segment"][1] <= 4.8 + 1e-5 for ds in preds.values() for d in ds)

    # `gaf eval` rebuilds the e2e detector from the checkpoint (no backbone file, no untrained-I3D
    # warning: the checkpoint holds the trained I3D) and reproduces the metrics.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["eval", "--ckpt", str(run / "final.pt"), "--work-dir", str(tmp_path / "eval"), "--no-report",
                     "--no-progress"])
    assert code == 0
    assert not [w for w in caught if "UNTRAINED" in str(w.message)]
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["mAP"] == pytest.approx(metrics["mAP"])

    # `gaf detect` on the raw held-out video decodes its frames for the e2e model (no feature extraction).
    out = tmp_path / "detect"
    code = main(["detect", str(learning_root / "videos" / "t0.mkv"), "--ckpt", str(run / "final.pt"),
                 "--out", str(out), "--score-threshold", "0", "--no-progress"])
    assert code == 0
    found = json.loads((out / "t0.json").read_text())["results"]["t0"]
    # Same clips, seconds and Soft-NMS as gaf eval: the same top detection.
    assert found[0]["segment"] == pytest.approx(preds["t0"][0]["segment"], abs=1e-4)
    assert found[0]["score"] == pytest.approx(preds["t0"][0]["score"], abs=1e-4)
    best = found[0]["segment"]
    inter = max(0.0, min(best[1], 3.6) - max(best[0], 1.6))
    assert inter / (max(best[1], 3.6) - min(best[0], 1.6)) > 0.3  # the top detection is the action
    assert (out / "t0_timeline.png").stat().st_size > 0
    assert not (out / "features").exists()
