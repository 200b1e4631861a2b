"""Recognition from raw video, end to end through the public API, on real clips.

A UCF101-style folder is built in ``tmp_path`` from four real clips of
``shared/data/videos`` (one per class): each clip is cut into six temporal
crops of 32 frames ("groups" ``g01..g06``), written as small MPEG-4 AVIs under
``videos/<Class>/v_<Class>_gXX_c01.avi``, with ``classInd.txt`` /
``trainlist01.txt`` / ``testlist01.txt`` in the official format (groups 3 and
6 are the test videos). ``dataset.source: video`` + ``model.backbone: i3d`` then
trains backbone, GAF and classifier together with :func:`train_recognizer`
(both stages run, the backbone's weights change, the run writes final.pt and
metrics.json); learning is shown with the backbone frozen (held-out top-1
above chance), because an unfrozen I3D's eval-mode scores lag (below).

The backbone starts from a seeded random I3D whose batch-norm statistics were
estimated on the training clips and saved as a state dict: it stands in for
the Kinetics-pretrained weights the paper fine-tunes (§IV-B). A raw random
init is not used because I3D's batch norm keeps running statistics with
momentum 0.01, so after a few dozen steps eval mode still normalises with the
initial (0, 1) statistics and its scores are at chance even when training
accuracy is perfect.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from gaf.config import from_dict  # noqa: E402
from gaf.data.recognition_clips import ClipDataConfig, ClipVideoDataset, collate_clips  # noqa: E402
from gaf.data.video import iter_frames  # noqa: E402
from gaf.engine.checkpoint import load_checkpoint  # noqa: E402
from gaf.engine.recognition import RecognitionExperiment, train_recognizer  # noqa: E402
from gaf.errors import ConfigError  # noqa: E402
from gaf.models.backbones.i3d import build_i3d  # noqa: E402

VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "videos"
if not VIDEOS.is_dir():
    VIDEOS = Path("/work/shared/data/videos")
SOURCES = {  # class -> real clip it is cut from
    "Basketball": "v_Basketball_g01_c01.avi",
    "ApplyEyeMakeup": "apply_eye_makeup_mmaction2_test.avi",
    "Archery": "archery_paddlevideo_example.avi",
    "ShootingBasketball": "shooting_basketball_mmaction2_structuralize.mp4",
}
needs_clips = pytest.mark.skipif(not all((VIDEOS / f).is_file() for f in SOURCES.values()),
                                 reason="real clips not available")
GROUPS, FRAMES, TEST_GROUPS = 6, 32, (3, 6)


def write_avi(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    """``frames`` ``(H, W, 3)`` uint8 RGB as an MPEG-4 Part 2 AVI (UCF101's codec and container)."""
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=fps)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = "yuv420p"
    for img in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def write_ucf_videos(root: Path) -> dict:
    """UCF101 layout of 4 classes x 6 groups of real frames; returns the ``data`` config section."""
    splits, videos = root / "splits", root / "videos"
    splits.mkdir(parents=True)
    (splits / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(SOURCES)))
    train_lines, test_lines = [], []
    for k, (name, source) in enumerate(SOURCES.items()):
        frames = [f[:, :64].copy() for f in iter_frames(VIDEOS / source, short_side=48, crop=None)]  # 48 x 64
        (videos / name).mkdir(parents=True)
        for g, start in enumerate(np.linspace(0, len(frames) - FRAMES, GROUPS).astype(int), 1):
            rel = f"{name}/v_{name}_g{g:02d}_c01.avi"
            write_avi(videos / rel, frames[start:start + FRAMES])
            (test_lines.append(rel) if g in TEST_GROUPS else train_lines.append(f"{rel} {k + 1}"))
    (splits / "trainlist01.txt").write_text("".join(line + "\r\n" for line in train_lines))
    (splits / "testlist01.txt").write_text("".join(line + "\r\n" for line in test_lines))
    return {"source": "video", "split_dir": str(splits), "video_dir": str(videos), "clip_len": 16,
            "frame_stride": 1, "resize": 40, "crop_size": 32}


def calibrated_i3d_weights(data: dict, path: Path) -> Path:
    """A seeded random RGB I3D with batch-norm statistics averaged over the training clips, saved to ``path``."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no backbone weights given": intended here
        net = build_i3d("rgb")
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.momentum = None  # cumulative average over the batches seen
            module.reset_running_stats()
    ds = ClipVideoDataset(from_dict(ClipDataConfig, data), "train", training=False)
    clips = collate_clips([ds[i] for i in range(len(ds))])["inputs"]
    net.train()
    with torch.no_grad():
        net.forward_features(clips)
    torch.save(net.state_dict(), path)
    return path


def video_experiment(data: dict, tmp_path: Path, seed: int = 0, **model) -> RecognitionExperiment:
    return from_dict(RecognitionExperiment, {
        "task": "recognition", "name": "tiny_ucf_video", "dataset": data,
        "model": {"backbone": "i3d", "stream": "rgb", "dropout": 0.0,
                  "gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4,
                          "fusion": "attention"}, **model},
        "train": {"epochs": 4, "batch_size": 4, "lr": 1e-4, "warmup_epochs": 0, "schedule": "constant",
                  "seed": seed, "checkpoint_every": 0},
        "eval": {"num_clips": 2, "topk": [1, 5], "batch_size": 4},
        "work_dir": str(tmp_path / "run"),
    })


@pytest.fixture
def ucf_videos(tmp_path: Path) -> dict:
    return write_ucf_videos(tmp_path / "ucf")


@needs_clips
def test_video_dataset_reads_the_real_clips_in_the_official_layout(ucf_videos):
    cfg = from_dict(ClipDataConfig, ucf_videos)
    train, test = ClipVideoDataset(cfg, "train"), ClipVideoDataset(cfg, "test", num_clips=2)
    assert (len(train), len(test), train.num_classes) == (16, 8, 4)
    assert train.labels == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    item = train[0]
    assert item["inputs"].shape == (1, 3, 16, 32, 32) and item["inputs"].dtype == torch.float32
    assert -1.0 <= float(item["inputs"].min()) and float(item["inputs"].max()) <= 1.0
    assert float(item["inputs"].std()) > 0.05  # real image content, not a blank frame
    assert test[0]["inputs"].shape == (2, 3, 16, 32, 32)
    assert test[0]["video"] == "Basketball/v_Basketball_g03_c01.avi"


@pytest.mark.slow
@needs_clips
def test_i3d_recognizer_trains_end_to_end_on_raw_video(ucf_videos, tmp_path):
    """Both stages run on frame clips, the backbone learns, and the run writes its files and metrics."""
    torch.set_num_threads(1)
    weights = calibrated_i3d_weights(ucf_videos, tmp_path / "i3d_rgb_calibrated.pt")
    cfg = video_experiment(ucf_videos, tmp_path, backbone_weights=str(weights))
    cfg.train.epochs = 2
    result = train_recognizer(cfg, progress=False)

    run = tmp_path / "run"
    for name in ("config.yaml", "log.txt", "latest.pt", "final.pt", "history.json", "metrics.json",
                 "predictions.json"):
        assert (run / name).is_file(), name
    m = json.loads((run / "metrics.json").read_text())
    assert m == pytest.approx(result.metrics)
    assert {"top1", "top5", "mean_class_acc"} <= set(m) and m["num_videos"] == 8 and m["num_clips"] == 2
    assert m["top5"] == 1.0  # 4 classes
    final = load_checkpoint(run / "final.pt")
    assert final["metrics"] == result.metrics

    history = json.loads((run / "history.json").read_text())
    assert len(history) == 2
    assert "frame/cvae" in history[0] and "segment/clf" in history[0]  # both stages ran every epoch
    assert all(np.isfinite(v) for h in history for v in h.values())
    before = torch.load(weights, weights_only=True)
    key = "Conv3d_1a_7x7.conv3d.weight"
    assert not torch.equal(final["model"][f"backbone.{key}"], before[key])  # the first conv learned


@pytest.mark.slow
@pytest.mark.learning
@needs_clips
def test_gaf_on_i3d_frame_clips_learns_to_tell_the_real_clips_apart(ucf_videos, train_seed, tmp_path,
                                                                     record_property):
    """Frames -> I3D (frozen, so eval-mode batch norm matches training) -> GAF -> classifier learns."""
    torch.set_num_threads(1)
    weights = calibrated_i3d_weights(ucf_videos, tmp_path / "i3d.pt")
    cfg = video_experiment(ucf_videos, tmp_path, seed=train_seed, backbone_weights=str(weights),
                           freeze_backbone=True)
    cfg.train.epochs, cfg.train.lr = 10, 1e-3
    m = train_recognizer(cfg, progress=False).metrics
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["segment/clf"] < history[0]["segment/clf"]  # L_clf falls
    # held-out temporal crops of the same clips (8 videos): chance is 0.25
    record_property("top1", m["top1"])
    record_property("mean class acc", m["mean_class_acc"])
    assert m["top1"] >= 0.375 and m["mean_class_acc"] >= 0.375, m
    after = load_checkpoint(tmp_path / "run" / "final.pt")["model"]
    before = torch.load(weights, weights_only=True)
    for key in ("Conv3d_1a_7x7.conv3d.weight", "Mixed_5c.b0.bn.running_mean"):  # frozen: unchanged
        assert torch.equal(after[f"backbone.{key}"], before[key]), key


@needs_clips
def test_flow_stream_on_decoded_rgb_video_is_refused(ucf_videos, tmp_path):
    """The raw-video path decodes RGB only: a flow-stream I3D must read cached flow features."""
    cfg = video_experiment(ucf_videos, tmp_path, stream="flow")
    with pytest.raises(ConfigError, match="flow"):
        train_recognizer(cfg, progress=False)
    assert not (tmp_path / "run" / "latest.pt").exists()
