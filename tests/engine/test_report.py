"""The run report a paper needs: run metadata, PR curves, DETAD's error analysis, timelines with true /
false positives, training curves — every figure a PNG beside report.html, and the page renders in a real
headless browser (Debian's Chromium, where installed: `make test` installs it when it can)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gaf
from gaf.data.annotations import Segment, thumos14_ground_truth
from gaf.data.predictions import read_predictions
from gaf.metrics.curves import match_video, precision_recall
from gaf.metrics.detection import evaluate_detections


def test_match_video_marks_true_and_false_positives() -> None:
    gt = [Segment(0, 10, "A"), Segment(20, 30, "A"), Segment(40, 50, "B")]
    dets = [Segment(1, 10, "A", 0.5),    # tIoU 0.9 with [0, 10], but the 0.9 detection took it first
            Segment(0, 10, "A", 0.9),    # TP
            Segment(21, 30, "A", 0.8),   # TP
            Segment(40, 50, "A", 0.7),   # wrong class: FP
            Segment(40, 44, "B", 0.6),   # tIoU 0.4: FP at 0.5, TP at 0.3
            Segment(60, 70, "C", 0.9)]   # class without instances: FP
    assert match_video(gt, dets, 0.5) == [False, True, True, False, False, False]
    assert match_video(gt, dets, 0.3) == [False, True, True, False, True, False]


def test_pr_curves_give_the_evaluators_ap_on_real_thumos14(tmp_path: Path) -> None:
    gt = thumos14_ground_truth(variant="thumos14-test-212")
    rng = np.random.default_rng(0)
    labels = list(gt.labels)
    results = {}
    for vid, video in gt.videos.items():
        dets = []
        for s in video.segments:
            length = s.end - s.start
            for _ in range(3):
                shift = rng.normal(0, 0.3 * length)
                label = s.label if rng.uniform() < 0.8 else labels[int(rng.integers(len(labels)))]
                dets.append({"label": label, "segment": [max(0.0, s.start + shift), s.end + shift + 0.01],
                             "score": float(np.round(rng.uniform(), 2))})  # rounded: ties on purpose
        results[vid] = dets
    path = tmp_path / "pred.json"
    path.write_text(json.dumps({"results": results}))
    pred = read_predictions(path)
    curves = precision_recall(gt, pred, 0.5)
    want = evaluate_detections(gt, pred, [0.5]).per_class_ap
    assert set(curves) == set(want)
    for label, curve in curves.items():
        assert curve.ap == pytest.approx(want[label][0], abs=1e-12), label
        assert np.all(np.diff(curve.recall) >= 0) and curve.recall[-1] <= 1.0


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run = gaf.train("demo", ["benchmark.synthetic.num_train_videos=16", "benchmark.synthetic.num_test_videos=4",
                                 "train.epochs=2"], work_dir="run")
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return root / run.work_dir / "report"


def test_the_report_has_every_section_and_every_figure_as_png(report_dir: Path) -> None:
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    for section in ("Run", "mAP", "Per-class AP (%)", "Precision–recall", "Error analysis (DETAD)", "Detections",
                    "Training and attention health", "Config"):
        assert f"<h2>{section}</h2>" in page, section
    for field in ("config", "checkpoint", "epoch", "report written", "ground truth", "test videos / instances",
                  "training videos / instances / windows", "training wall time", "detections scored"):
        assert f"<td>{field}</td>" in page, field
    images = re.findall(r'<img src="([^"]+)"', page)
    assert {"pr_curves.png", "error_analysis.png", "training_curves.png", "per_class_ap.png"} <= set(images)
    assert sum(i.startswith("timeline_") for i in images) == 4
    for name in images:
        assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    analysis = json.loads((report_dir / "error_analysis.json").read_text())
    assert analysis["tious"] == [0.5] and analysis["protocol"] == "thumos14"
    assert "false-positive profile" in (report_dir / "report.md").read_text(encoding="utf-8")


def test_the_report_renders_in_a_headless_browser(report_dir: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; make test does when it can)")
    shot = tmp_path / "page.png"
    done = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1500,9000", f"--screenshot={shot}", (report_dir / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    inked = np.flatnonzero((pixels[..., :3] < 0.97).any(axis=(1, 2)))
    # text alone ends within ~2000 px; the figures (PR curves, error analysis, 4 timelines, curves) go far below
    assert inked.max() > 5000, inked.max()
    colourful = (pixels[..., :3].max(-1) - pixels[..., :3].min(-1) > 0.3).mean()
    assert colourful > 0.01  # the plots' colours reached the page (images loaded, not alt text)
