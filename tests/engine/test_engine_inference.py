"""Inference over a split (gaf.engine.evaluate.run_inference): test videos whole up to
``dataset.eval_max_seq_len`` steps, in overlapping windows past it, padded and masked in batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import LABELS, make
from gaf.config import from_dict
from gaf.data.annotations import Video
from gaf.data.features import FeatureDataset
from gaf.engine.evaluate import inference_batches, run_inference
from gaf.engine.experiment import EvalConfig
from gaf.models.gaf_detector import ModelConfig, build_model

DIM = 8
CPU = torch.device("cpu")

# the three pyramids, each with GAF's global context (attention over the whole item) in front
BACKBONES = {
    "conv": {"backbone": "conv"},
    "transformer": {"backbone": "transformer", "attention_window": 5, "attention_heads": 2},
    "sgp": {"backbone": "sgp", "boundary_head": "trident", "trident_bins": 4, "norm": "layer"},
}


def tiny_model(backbone: str = "conv") -> torch.nn.Module:
    """A random-weight GAF detector in eval mode (weights jittered so that scores are spread, not tied)."""
    cfg = {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4, "context": "global",
                   "context_heads": 2},
           "detector": {"embed_dim": 16, "num_levels": 4, "head_layers": 1, "stem_layers": 1, **BACKBONES[backbone]}}
    torch.manual_seed(0)
    model = build_model(from_dict(ModelConfig, cfg, "model"), DIM, len(LABELS), 64)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def dataset(tmp_path, lengths: dict[str, int], **overrides) -> FeatureDataset:
    """Test videos of random features, ``lengths[vid]`` steps each (fps 4, stride 4: one step per second)."""
    rng = np.random.default_rng(0)
    videos = {vid: {"subset": "test", "fps": 4.0, "array": rng.standard_normal((n, DIM)).astype(np.float32)}
              for vid, n in lengths.items()}
    cfg = make(tmp_path, videos, input_dim=DIM, labels=LABELS, max_seq_len=64, **overrides)
    return FeatureDataset(cfg, "test", training=False)


def infer(model, ds: FeatureDataset, batch_size: int):
    # every candidate kept (no NMS, no cap): the comparison sees the raw detections of each video
    cfg = from_dict(EvalConfig, {"batch_size": batch_size, "nms": "none", "max_per_video": 100000}, "eval")
    return run_inference([model], [ds], cfg, LABELS, device=CPU, progress=False)


def assert_same_detections(a: Video, b: Video, *, seconds: float = 2e-3, score: float = 1e-5) -> None:
    """Same detections, matched one to one, boundaries within ``seconds`` and scores within ``score``."""
    rows = lambda v: np.array([(s.start, s.end, s.score, LABELS.index(s.label)) for s in v.segments])  # noqa: E731
    A, B = rows(a), rows(b)
    assert len(A) == len(B) > 0, (a.video_id, len(A), len(B))
    free = np.ones(len(B), bool)
    tol = np.array([seconds, seconds, score, 0.0])
    for row in A:
        hit = np.flatnonzero(free & np.all(np.abs(B - row) <= tol, axis=1))
        assert hit.size, f"{a.video_id}: no match for detection {row}"
        free[hit[0]] = False


def test_whole_and_windowed_inference_agree_on_a_video_that_fits_one_window(tmp_path):
    model = tiny_model()
    lengths = {"fits": 50, "long": 150}
    windowed = dataset(tmp_path / "w", lengths)  # default: windows of max_seq_len = 64 past 64 steps
    whole = dataset(tmp_path / "h", lengths, eval_max_seq_len=256)
    assert windowed.item_steps() == [50, 64, 64, 64] and whole.item_steps() == [50, 150]
    # "fits" is padded to 64 beside the windows of "long" in one case, to 150 beside "long" whole in the other
    a, b = infer(model, windowed, 8), infer(model, whole, 8)
    assert_same_detections(a.predictions.videos["fits"], b.predictions.videos["fits"])
    np.testing.assert_allclose(a.attention["fits"][1], b.attention["fits"][1], atol=1e-5)
    assert len(b.attention["long"][1]) == len(a.attention["long"][1]) == 150


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_a_long_video_gives_the_same_detections_alone_and_in_a_batch(tmp_path, backbone):
    model = tiny_model(backbone)
    # lengths that are no multiple of the largest stride (8): the pyramid takes any length, masked
    ds = dataset(tmp_path, {"long": 203, "short": 37, "mid": 90}, eval_max_seq_len=256)
    assert ds.item_steps() == [203, 90, 37]  # one whole item per video (ids sorted)
    assert inference_batches(ds, range(3), 16) == [[0, 1, 2]]  # padded to 203 together
    alone, batched = infer(model, ds, 1), infer(model, ds, 16)
    for vid in ("long", "short", "mid"):
        assert_same_detections(alone.predictions.videos[vid], batched.predictions.videos[vid])
        np.testing.assert_allclose(alone.attention[vid][1], batched.attention[vid][1], atol=1e-5)


def test_a_video_longer_than_the_limit_is_cut_into_overlapping_windows(tmp_path):
    model = tiny_model()
    ds = dataset(tmp_path, {"long": 300, "whole": 120}, eval_max_seq_len=128, eval_window_overlap=0.25)
    metas = [ds[i]["meta"] for i in range(len(ds))]
    long = [m for m in metas if m["video_id"] == "long"]
    assert [m["num_steps"] for m in long] == [128] * len(long) and len(long) == 3
    assert long[0]["offset_steps"] == 0 and long[-1]["offset_steps"] + 128 == 300
    assert [(m["offset_steps"], m["num_steps"]) for m in metas if m["video_id"] == "whole"] == [(0, 120)]
    out = infer(model, ds, 4)
    times, lam = out.attention["long"]  # the windows' λ stitched over the whole video
    assert len(lam) == 300 and times[0] == pytest.approx(2.0) and times[-1] == pytest.approx(301.0)
    segs = np.array([(s.start, s.end) for s in out.predictions.videos["long"].segments])
    assert len(segs) and segs.min() >= 0.0 and segs.max() <= out.predictions.videos["long"].duration
    assert segs[:, 1].max() > 200.0  # the last window's detections are there, in the video's seconds


def test_batches_hold_at_most_batch_size_items_and_batch_size_windows_of_steps(tmp_path):
    ds = dataset(tmp_path, {"a": 40, "b": 200, "c": 90, "d": 64, "e": 64}, eval_max_seq_len=256)
    assert ds.item_steps() == [40, 200, 90, 64, 64]
    # budget 4 × 64 = 256 padded steps: "b" alone, "c" padded to 90 with one companion
    assert inference_batches(ds, range(5), 4) == [[0], [1], [2, 3], [4]]
    windowed = dataset(tmp_path / "w", {"a": 40, "b": 200, "c": 90})
    assert inference_batches(windowed, range(len(windowed)), 4) == [[0, 1, 2, 3], [4, 5, 6]]
    assert inference_batches(windowed, [0, 2, 5], 2) == [[0, 2], [5]]
