"""The Python API (docs/api.md): the page's example runs as written, the exports are stable, scoring
never imports torch, and the video functions are the commands' code paths."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gaf

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def test_the_api_page_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:
    blocks = _python_blocks(ROOT / "docs" / "api.md")
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102 - our own documentation
    run, detections, result, analysis = (namespace[k] for k in ("run", "detections", "result", "analysis"))
    assert run.final_checkpoint.is_file() and 0.0 <= run.metrics["average_mAP"] <= 1.0
    assert isinstance(detections, gaf.Detections) and 1 <= len(detections) <= 5
    for d in detections:
        assert isinstance(d, gaf.Detection) and 0.0 <= d.start < d.end and 0.0 <= d.attention <= 1.0
        assert d.label in namespace["detector"].labels and d.score >= 0.05
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
    assert detections.attention.shape == detections.attention_times.shape == (len(namespace["features"]),)
    assert result.average_mAP == pytest.approx(run.metrics["average_mAP"], abs=1e-9)
    assert sum(analysis.error_shares.values()) == pytest.approx(1.0)


def test_features_give_what_gaf_eval_gave(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:
    """Detector.detect on a test video's feature file returns the detections gaf eval wrote for it (same
    windows, seconds, Soft-NMS), with the full annotation's duration."""
    import json

    monkeypatch.chdir(tmp_path)
    run = gaf.train("demo", ["benchmark.synthetic.num_train_videos=16", "benchmark.synthetic.num_test_videos=4",
                             "train.epochs=1"], work_dir="run")
    detector = gaf.load_detector(run.final_checkpoint, device="cpu")
    ann = json.loads(Path("demo_data/thumos14_synthetic/annotations.json").read_text())["database"]
    written = json.loads(Path("run/predictions.json").read_text())["results"]
    vid = sorted(written)[0]
    x = np.load(f"demo_data/thumos14_synthetic/features/{vid}.npy")
    got = detector.detect(x, score_threshold=0.0, duration=ann[vid]["duration"])
    want = written[vid]
    assert len(got) == len(want) > 0
    for d, w in zip(got, want):
        assert [d.start, d.end] == pytest.approx(w["segment"], abs=1e-4) and d.label == w["label"]
        assert d.score == pytest.approx(w["score"], abs=1e-5)
    with pytest.raises(gaf.GafError, match=r"expected an array \(T, 64\)"):
        detector.detect(x[:, :10])


def test_features_follow_the_checkpoints_whole_video_rule(tmp_path: Path) -> None:
    """Detector.detect evaluates a feature array whole up to dataset.eval_max_seq_len steps (λ is the model's
    on the whole array) and in windows of max_seq_len without it, as gaf eval does."""
    import torch

    from gaf.config import from_dict, to_dict
    from gaf.engine.checkpoint import save_checkpoint
    from gaf.engine.experiment import ExperimentConfig
    from gaf.models.gaf_detector import build_model

    cfg = from_dict(ExperimentConfig, {
        "dataset": {"annotation_file": "-", "feature_dir": "-", "input_dim": 8, "fps": 4.0, "max_seq_len": 64,
                    "eval_max_seq_len": 256},
        "model": {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4, "context_heads": 2},
                  "detector": {"embed_dim": 16, "num_levels": 4, "head_layers": 1, "stem_layers": 1}}})
    torch.manual_seed(0)
    model = build_model(cfg.model, 8, 2, 64)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", {"config": to_dict(cfg), "model": model.state_dict(),
                                                  "meta": {"in_dim": 8, "num_classes": 2, "labels": ["A", "B"]}})
    detector = gaf.load_detector(ckpt, device="cpu")
    x = np.random.default_rng(0).standard_normal((150, 8)).astype(np.float32)
    with torch.no_grad():
        whole = detector.model.attention(torch.from_numpy(x.T.copy())[None], torch.ones(1, 150, dtype=torch.bool))
    got = detector.detect(x, score_threshold=0.0)
    np.testing.assert_allclose(got.attention, whole[0].numpy(), atol=1e-5)
    detector.config.dataset.eval_max_seq_len = None  # windows of 64 steps: λ of each window's own context
    windowed = detector.detect(x, score_threshold=0.0)
    assert windowed.attention.shape == (150,) and not np.allclose(windowed.attention, whole[0].numpy(), atol=1e-3)


def test_exports_and_no_torch_for_scoring(tmp_path: Path) -> None:
    assert {"load_detector", "Detector", "Detection", "score", "analyze", "extract", "classify",
            "train"} <= set(gaf.__all__)
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text('{"database": {"v1": {"subset": "test", "duration": 100.0, "annotations": ['
                  '{"label": "A", "segment": [0, 10]}, {"label": "B", "segment": [20, 30]}]}}}')
    pred.write_text('{"results": {"v1": [{"label": "A", "segment": [0, 10], "score": 0.9},'
                    '{"label": "B", "segment": [50, 60], "score": 0.8}]}}')
    code = ("import sys, gaf\n"
            f"r = gaf.score({str(gt)!r}, {str(pred)!r}, [0.5])\n"
            "assert abs(r.average_mAP - 0.5) < 1e-12, r.average_mAP\n"
            f"a = gaf.analyze({str(gt)!r}, {str(pred)!r})\n"
            "assert a.profile_counts[0] == 2 and abs(a.error_shares['background'] - 0.5) < 1e-12\n"
            f"p = gaf.score({str(gt)!r}, {str(pred)!r}, proposals=True)\n"
            "assert abs(p.ar_at(1) - 0.5) < 1e-12\n"
            "assert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
