"""Tests for gaf.viz: timeline / per-class PNGs, the HTML+Markdown report, text tables."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gaf.data.annotations import Segment
from gaf.errors import DataError
from gaf.viz import (
    format_detections_table,
    format_metrics_table,
    plot_per_class_ap,
    plot_timeline,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

GT = [Segment(10.0, 18.0, "Diving"), Segment(12.0, 17.0, "CliffDiving"), Segment(60.0, 75.0, "HighJump")]
DETS = [
    Segment(9.5, 18.5, "Diving", 0.91),
    Segment(11.0, 16.0, "CliffDiving", 0.62),
    Segment(59.0, 77.0, "HighJump", 0.80),
    Segment(30.0, 34.0, "PoleVault", 0.12),
]


def read_png(path: Path) -> np.ndarray:
    """Check the PNG magic bytes and decode the image with matplotlib: (H, W, channels)."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image

    return matplotlib.image.imread(str(path))


def attention_curve(duration: float = 100.0, steps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    times = (np.arange(steps) + 0.5) * duration / steps
    att = np.full(steps, 0.1)
    for seg in GT:
        att[(times >= seg.start) & (times <= seg.end)] = 0.9
    return att, times


def timeline(path: Path, **kw) -> np.ndarray:
    args = dict(video_id="video_test_0000004", duration=100.0, ground_truth=GT, detections=DETS)
    args.update(kw)
    assert plot_timeline(path, **args) == path
    return read_png(path)


# ----------------------------------------------------------------------------- module import
def test_importing_viz_loads_neither_matplotlib_nor_torch():
    code = "import sys, gaf.viz; print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- timeline
def test_timeline_is_a_1400_px_wide_png_with_attention(tmp_path):
    att, times = attention_curve()
    img = timeline(tmp_path / "t.png", attention=att, attention_times=times)
    assert img.shape[1] == 1400
    assert 350 <= img.shape[0] <= 800


def test_attention_panel_changes_the_image(tmp_path):
    att, times = attention_curve()
    with_att = timeline(tmp_path / "a.png", attention=att, attention_times=times)
    without = timeline(tmp_path / "b.png")
    assert without.shape[1] == 1400 and without.shape[0] < with_att.shape[0]


def test_different_attention_curves_give_different_images(tmp_path):
    att, times = attention_curve()
    a = timeline(tmp_path / "a.png", attention=att, attention_times=times)
    b = timeline(tmp_path / "b.png", attention=1.0 - att, attention_times=times)
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_different_detections_give_different_images(tmp_path):
    a = timeline(tmp_path / "a.png")
    moved = [Segment(d.start + 20.0, d.end + 20.0, d.label, d.score) for d in DETS]
    b = timeline(tmp_path / "b.png", detections=moved)
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_attention_without_times_is_spread_over_the_duration(tmp_path):
    att, times = attention_curve()
    implicit = timeline(tmp_path / "a.png", attention=att)
    explicit = timeline(tmp_path / "b.png", attention=att, attention_times=times)
    np.testing.assert_array_equal(implicit, explicit)


@pytest.mark.parametrize(
    "kw",
    [
        dict(ground_truth=[], detections=[]),
        dict(ground_truth=[], detections=[], attention=np.linspace(0, 1, 7)),
        dict(ground_truth=[], detections=DETS, title="raw video"),  # `gaf detect` on a raw video
        dict(ground_truth=GT, detections=[]),
        dict(ground_truth=[], detections=[], attention=np.zeros(0), attention_times=np.zeros(0)),
    ],
)
def test_timeline_with_empty_inputs_still_draws(tmp_path, kw):
    img = timeline(tmp_path / "t.png", **kw)
    assert img.shape[1] == 1400 and img.shape[0] > 100


def test_only_the_top_scoring_detections_are_drawn(tmp_path):
    top3 = sorted(DETS, key=lambda d: -d.score)[:3]
    capped = timeline(tmp_path / "a.png", detections=DETS, max_detections=3)
    only_top = timeline(tmp_path / "b.png", detections=top3, max_detections=3)
    np.testing.assert_array_equal(capped, only_top)


def test_detections_below_the_score_threshold_are_dropped(tmp_path):
    above = [d for d in DETS if d.score >= 0.7]
    filtered = timeline(tmp_path / "a.png", detections=DETS, score_threshold=0.7)
    only_above = timeline(tmp_path / "b.png", detections=above, score_threshold=0.7)
    np.testing.assert_array_equal(filtered, only_above)
    nothing = timeline(tmp_path / "c.png", detections=DETS, max_detections=0)
    empty = timeline(tmp_path / "d.png", detections=[])
    np.testing.assert_array_equal(nothing, empty)


def test_attention_times_of_another_length_is_an_error_naming_the_video(tmp_path):
    with pytest.raises(DataError, match=r"video_test_0000004.*attention_times"):
        timeline(tmp_path / "t.png", attention=np.zeros(10), attention_times=np.arange(9.0))
    assert not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("duration", [0.0, -3.0, float("nan")])
def test_duration_must_be_positive(tmp_path, duration):
    with pytest.raises(DataError, match="duration"):
        timeline(tmp_path / "t.png", duration=duration)


def test_plots_leave_no_temporary_files(tmp_path):
    timeline(tmp_path / "t.png")
    plot_per_class_ap(tmp_path / "ap.png", {"Diving": [0.5, 0.4]}, [0.3, 0.5])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ap.png", "t.png"]


# ----------------------------------------------------------------------------- per-class AP
def thumos_like_ap(n_classes: int, n_tious: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(0)
    return {f"Class{i:03d}": sorted(rng.uniform(0, 1, n_tious).tolist(), reverse=True) for i in range(n_classes)}


def test_per_class_ap_with_20_classes_is_a_valid_png(tmp_path):
    ap = thumos_like_ap(20, 5)
    ap["Class007"] = [float("nan")] * 5  # a class without ground truth
    img = read_png(plot_per_class_ap(tmp_path / "ap.png", ap, [0.3, 0.4, 0.5, 0.6, 0.7]))
    assert img.shape[1] == 1000 and 600 <= img.shape[0] <= 2000


def test_per_class_ap_with_200_classes_grows_tall_but_stays_readable(tmp_path):
    tious = [round(0.5 + 0.05 * i, 2) for i in range(10)]
    img = read_png(plot_per_class_ap(tmp_path / "ap.png", thumos_like_ap(200, 10), tious))
    assert img.shape[1] == 1000 and img.shape[0] >= 200 * 12  # at least 12 px per class row


def test_per_class_ap_depends_on_the_values(tmp_path):
    ap = thumos_like_ap(20, 5)
    a = read_png(plot_per_class_ap(tmp_path / "a.png", ap, [0.3, 0.4, 0.5, 0.6, 0.7]))
    halved = {k: [v / 2 for v in vals] for k, vals in ap.items()}
    b = read_png(plot_per_class_ap(tmp_path / "b.png", halved, [0.3, 0.4, 0.5, 0.6, 0.7]))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_per_class_ap_with_no_classes_still_draws(tmp_path):
    assert read_png(plot_per_class_ap(tmp_path / "ap.png", {}, [0.5])).shape[1] == 1000


def test_per_class_ap_with_a_wrong_number_of_values_is_an_error(tmp_path):
    with pytest.raises(DataError, match="Diving"):
        plot_per_class_ap(tmp_path / "ap.png", {"Diving": [0.5]}, [0.3, 0.5])


# ----------------------------------------------------------------------------- report
def example_metrics() -> dict:
    return {
        "tious": [0.3, 0.5, 0.7],
        "mAP": [0.6125, 0.45, 0.2],
        "average_mAP": 0.42083,
        "per_class_ap": {
            "Diving": [0.8, 0.6, 0.3],
            "<script>alert(1)</script>": [0.425, 0.3, 0.1],
            "HighJump": [float("nan")] * 3,
        },
        "ground_truth_variant": "thumos14-test-212",
    }


def test_report_holds_the_tables_images_and_config(tmp_path):
    plots = tmp_path / "plots"
    tl = plot_timeline(plots / "video 1.png", video_id="v1", duration=100.0, ground_truth=GT, detections=DETS)
    pc = plot_per_class_ap(plots / "ap.png", example_metrics()["per_class_ap"], [0.3, 0.5, 0.7])
    out = tmp_path / "run"
    path = write_report(out, title="THUMOS14 & GAF", metrics=example_metrics(), timelines=[tl], per_class_plot=pc,
                        config_text="model:\n  name: gaf  # <b>", extra={"checkpoint": "best.pt"})
    assert path == out / "report.html"
    page = path.read_text(encoding="utf-8")
    for name in ("Diving", "HighJump", "thumos14-test-212", "best.pt"):
        assert name in page
    assert "THUMOS14 &amp; GAF" in page
    for value in ("61.25", "45.00", "20.00", "42.08", "80.00", "60.00", "30.00", "56.67"):
        assert f"<td>{value}</td>" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "# &lt;b&gt;" in page and "<pre>" in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 2
    from urllib.parse import unquote

    for src in srcs:
        assert not Path(unquote(src)).is_absolute()
        assert (out / unquote(src)).resolve().is_file()
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| mAP (%) | 61.25 | 45.00 | 20.00 | 42.08 |" in md
    assert "| Diving | 80.00 | 60.00 | 30.00 | 56.67 |" in md
    assert "| HighJump | - | - | - | - |" in md
    assert "<script>" not in md
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md"]


def test_report_per_class_rows_keep_the_metrics_order_and_end_with_map(tmp_path):
    md = (write_report(tmp_path, title="t", metrics=example_metrics()).parent / "report.md").read_text()
    rows = [line.split(" | ")[0].lstrip("| ") for line in md.splitlines() if line.startswith("| ")]
    assert rows[-4:] == ["Diving", "&lt;script&gt;alert(1)&lt;/script&gt;", "HighJump", "mAP"]


def test_report_accepts_map_keyed_by_tiou(tmp_path):
    metrics = dict(example_metrics(), mAP={"0.3": 0.6125, "0.5": 0.45, "0.7": 0.2})
    page = write_report(tmp_path, title="t", metrics=metrics).read_text()
    assert "<td>61.25</td><td>45.00</td><td>20.00</td>" in page


def test_report_with_a_missing_image_is_an_error(tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        write_report(tmp_path, title="t", metrics=example_metrics(), timelines=[tmp_path / "missing.png"])


# ----------------------------------------------------------------------------- text tables
def test_metrics_table_has_one_row_with_tious_and_average():
    lines = format_metrics_table(example_metrics()).splitlines()
    assert lines[0].split() == ["tIoU", "0.30", "0.50", "0.70", "Avg"]
    assert lines[-1].split() == ["mAP", "(%)", "61.25", "45.00", "20.00", "42.08"]
    assert len(lines) == 3


def test_metrics_table_without_a_field_is_an_error():
    with pytest.raises(DataError, match="mAP"):
        format_metrics_table({"tious": [0.5]})


def test_detections_table_lists_detections_by_start_time():
    lines = format_detections_table(DETS).splitlines()
    assert lines[0].split() == ["start", "(s)", "end", "(s)", "duration", "(s)", "label", "score"]
    body = [line.split() for line in lines[2:]]
    assert [row[3] for row in body] == ["Diving", "CliffDiving", "PoleVault", "HighJump"]
    assert body[0] == ["9.50", "18.50", "9.00", "Diving", "0.9100"]


def test_detections_table_keeps_the_best_scores_when_capped():
    lines = format_detections_table(DETS, max_rows=2).splitlines()
    assert [line.split()[3] for line in lines[2:4]] == ["Diving", "HighJump"]
    assert "2 more" in lines[-1] and len(lines) == 5


def test_detections_table_of_nothing_says_so():
    assert format_detections_table([]) == "no detections"
