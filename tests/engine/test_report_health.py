"""Tests for the training-curve / attention-health part of the run report (gaf.viz, gaf.engine.evaluate)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from gaf.viz import plot_training_curves, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEALTH_KEYS = [f"health/{split}_{what}" for split in ("train", "test")
               for what in ("action_mean", "background_mean", "auroc", "low_fraction")]


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image

    return matplotlib.image.imread(str(path))


def loss_record(epoch: int) -> dict:
    return {"epoch": epoch, "segment/ai": 2.0 * math.exp(-epoch / 5) + 0.1, "segment/ai_cls": 1.0,
            "segment/ai_reg": 0.5, "segment/total": 3.0 * math.exp(-epoch / 6) + 0.3, "segment/lr": 1e-4,
            "frame/cvae": 0.5 / epoch, "frame/lr": 1e-3, "seconds": 12.5}


def gaf_history(epochs: int = 6, *, test_split: bool = True) -> list[dict]:
    """A GAF run's history: losses, health of both splits (unless ``test_split`` is off), λ gradients."""
    out = []
    for e in range(1, epochs + 1):
        r = loss_record(e)
        for split, shift in (("train", 0.0), ("test", -0.05)):
            if split == "test" and not test_split:
                continue
            r.update({f"health/{split}_action_mean": 0.2 + 0.08 * e + shift,
                      f"health/{split}_background_mean": 0.15,
                      f"health/{split}_auroc": 0.6 + 0.05 * e + shift,
                      f"health/{split}_low_fraction": 0.5 / e})
        r.update({"grad_lambda/ai": 1e-2 / e, "grad_lambda/nai": 3e-3, "grad_lambda/clf": 1e-4 * e,
                  "grad_lambda/rep": 5e-3})
        out.append(r)
    out[-1]["health/test_auroc"] = 0.912
    return out


# ----------------------------------------------------------------------------- plot_training_curves
def test_training_curves_of_a_gaf_run_are_a_four_panel_png(tmp_path):
    path = plot_training_curves(tmp_path / "curves.png", gaf_history())
    assert path == tmp_path / "curves.png"
    assert path.stat().st_size > 20_000
    img = read_png(path)
    h, w = img.shape[:2]
    assert w == 1400 and h > 800  # two rows of two panels
    assert (img[..., :3] < 0.5).any()  # something was drawn, not a blank page


def test_training_curves_of_a_plain_detector_show_the_losses_only(tmp_path):
    plain = [loss_record(e) for e in range(1, 6)]
    path = plot_training_curves(tmp_path / "plain.png", plain)
    assert path == tmp_path / "plain.png"
    h, w = read_png(path).shape[:2]
    full_h = read_png(plot_training_curves(tmp_path / "full.png", gaf_history())).shape[0]
    assert w == 1400 and h < full_h / 1.5  # one panel: a single row
    assert path.stat().st_size > 10_000


def test_training_curves_without_the_test_split_still_plot_every_panel(tmp_path):
    hist = gaf_history(test_split=False)
    hist[-1].pop("health/test_auroc")
    assert not any("test_" in k for r in hist for k in r)
    h = read_png(plot_training_curves(tmp_path / "c.png", hist)).shape[0]
    assert h > 800


def test_training_curves_of_nothing_plottable_are_none(tmp_path):
    only_times = [{"epoch": 1, "seconds": 3.0}, {"epoch": 2, "seconds": 2.9}]
    assert plot_training_curves(tmp_path / "a.png", only_times) is None
    # learning rates, the L_ai sub-terms and non-numbers are not curves either
    junk = [{"epoch": 1, "segment/lr": 1e-4, "frame/lr": 1e-3, "segment/ai_cls": 1.0, "segment/ai_reg": 0.2,
             "health/train_auroc": None, "grad_lambda/ai": float("nan"), "segment/note": "x"}]
    assert plot_training_curves(tmp_path / "b.png", junk) is None
    assert plot_training_curves(tmp_path / "c.png", []) is None
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("keys", [["health/train_low_fraction"], ["health/test_auroc"],
                                  ["health/train_action_mean", "health/train_background_mean"],
                                  ["grad_lambda/nai"], ["frame/cvae"]])
def test_training_curves_with_one_kind_of_key_make_one_panel(tmp_path, keys):
    hist = [{"epoch": e, **{k: 0.5 / e for k in keys}} for e in (1, 2)]
    path = plot_training_curves(tmp_path / "one.png", hist)
    assert path is not None and read_png(path).shape[0] < 600


# ----------------------------------------------------------------------------- write_report
def metrics() -> dict:
    return {"tious": [0.3, 0.5], "mAP": [0.6, 0.4], "average_mAP": 0.5,
            "per_class_ap": {"Diving": [0.6, 0.4]}}


def test_report_shows_the_curves_and_the_last_health_values(tmp_path):
    out = tmp_path / "report"
    curves = plot_training_curves(out / "training_curves.png", gaf_history())
    last = {k: v for k, v in gaf_history()[-1].items() if k.startswith("health/")}
    page = write_report(out, title="t", metrics=metrics(), curves_plot=curves, health=last).read_text("utf-8")
    md = (out / "report.md").read_text("utf-8")
    for text in (page, md):
        assert "Training and attention health" in text
        assert text.index("Training and attention health") < text.index("training_curves.png")
    assert '<img src="training_curves.png"' in page
    assert "](<training_curves.png>)" in md
    assert "<td>health/test_auroc</td><td>0.912</td>" in page
    assert "| health/test_auroc | 0.912 |" in md
    assert "<td>health/train_action_mean</td><td>0.680</td>" in page  # 0.2 + 0.08 * 6, 3 decimals
    assert "| health/train_action_mean | 0.680 |" in md
    assert "| health/train_low_fraction | 0.083 |" in md
    for key in HEALTH_KEYS:
        assert f"<td>{key}</td>" in page and f"| {key} |" in md
    assert "grad_lambda" not in md


def test_report_health_without_curves_and_curves_without_health(tmp_path):
    page = write_report(tmp_path / "a", title="t", metrics=metrics(),
                        health={"health/train_auroc": 0.87654, "health/test_auroc": float("nan")}).read_text()
    assert "Training and attention health" in page and "<td>0.877</td>" in page
    assert "<td>health/test_auroc</td><td>-</td>" in page and "<img" not in page
    curves = plot_training_curves(tmp_path / "b" / "c.png", gaf_history())
    html_path = write_report(tmp_path / "b", title="t", metrics=metrics(), curves_plot=curves)
    md = (html_path.parent / "report.md").read_text()
    assert "Training and attention health" in md and "](<c.png>)" in md and "| key | value |" not in md


def test_report_without_history_has_no_health_section(tmp_path):
    page = write_report(tmp_path, title="t", metrics=metrics()).read_text()
    assert "Training and attention health" not in page
    assert "Training and attention health" not in (tmp_path / "report.md").read_text()


# ----------------------------------------------------------------------------- write_run_report
def run_report(tmp_path: Path, history):
    from gaf.data.annotations import AnnotationSet, Segment, Video
    from gaf.data.features import DatasetConfig
    from gaf.engine.evaluate import Inference, write_run_report
    from gaf.engine.experiment import ExperimentConfig
    from gaf.metrics.detection import evaluate_detections

    gt = AnnotationSet({"v1": Video("v1", [Segment(10.0, 18.0, "Diving")], duration=60.0)}, ["Diving"])
    preds = AnnotationSet({"v1": Video("v1", [Segment(9.0, 18.5, "Diving", 0.9)], duration=60.0)}, ["Diving"])
    cfg = ExperimentConfig(dataset=DatasetConfig(annotation_file="a.json", feature_dir="f"), name="health")
    result = evaluate_detections(gt, preds, tious=(0.3, 0.5))
    return write_run_report(tmp_path / "report", cfg, gt, Inference(preds), result, history=history)


def test_run_report_with_history_holds_curves_and_health(tmp_path):
    page = run_report(tmp_path, json.loads(json.dumps(gaf_history()))).read_text("utf-8")
    assert (tmp_path / "report" / "training_curves.png").stat().st_size > 20_000
    assert '<img src="training_curves.png"' in page
    assert "<td>health/test_auroc</td><td>0.912</td>" in page
    md = (tmp_path / "report" / "report.md").read_text("utf-8")
    assert "| health/test_auroc | 0.912 |" in md and "](<training_curves.png>)" in md


@pytest.mark.parametrize("history", [None, []])
def test_run_report_without_history_is_unchanged(tmp_path, history):
    page = run_report(tmp_path, history).read_text("utf-8")
    assert "Training and attention health" not in page
    assert not (tmp_path / "report" / "training_curves.png").exists()


def test_run_report_of_a_plain_detector_has_curves_but_no_health_table(tmp_path):
    page = run_report(tmp_path, [loss_record(e) for e in range(1, 4)]).read_text("utf-8")
    assert '<img src="training_curves.png"' in page
    assert not re.search(r"<td>health/", page)


# ----------------------------------------------------------------------------- gaf eval
@pytest.mark.parametrize("stored", [True, False])
def test_gaf_eval_reports_the_history_stored_in_the_checkpoint(pulse_dataset, tmp_path, stored):
    """An untrained tiny detector saved with a history: ``gaf eval`` plots it (no training run here)."""
    import torch

    from gaf.cli import main
    from gaf.config import from_dict, to_dict
    from gaf.engine.checkpoint import save_checkpoint
    from gaf.engine.experiment import ExperimentConfig
    from gaf.engine.factory import build_detector

    cfg = from_dict(ExperimentConfig, {
        "name": "tiny", "dataset": pulse_dataset,
        "model": {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
                  "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1}},
        "eval": {"tious": [0.3, 0.5], "batch_size": 8, "report_videos": 1}, "work_dir": str(tmp_path / "run")})
    torch.manual_seed(0)
    meta = {"in_dim": 16, "num_classes": 2, "labels": ["Jump", "Throw"]}
    model = build_detector(cfg, meta, pretrained=False)
    state = {"epoch": 6, "model": model.state_dict(), "config": to_dict(cfg), "meta": meta, "metrics": None}
    if stored:
        state["history"] = gaf_history()
    ckpt = save_checkpoint(tmp_path / "final.pt", state)
    assert main(["eval", "--ckpt", str(ckpt), "--work-dir", str(tmp_path / "ev"), "--device", "cpu",
                 "--no-progress"]) == 0
    report = tmp_path / "ev" / "report"
    page = (report / "report.html").read_text("utf-8")
    md = (report / "report.md").read_text("utf-8")
    if stored:
        assert (report / "training_curves.png").stat().st_size > 20_000
        assert '<img src="training_curves.png"' in page and "| health/test_auroc | 0.912 |" in md
    else:
        assert not (report / "training_curves.png").exists()
        assert "Training and attention health" not in page + md
