"""Pictures and reports: detection timelines, attention curves, per-class AP, HTML/Markdown.

All times are in **seconds**; AP and mAP values are **fractions in [0, 1]**
and are shown as percentages. matplotlib is imported lazily (inside the
plotting functions, Agg backend, no pyplot), so importing this module is cheap
and the text helpers work without it. Every file is written atomically: a
temporary file in the same folder, then ``os.replace``.

``metrics`` dicts (as made by ``gaf.metrics``) hold ``tious`` (list of
thresholds), ``mAP`` (one value per tIoU, a list aligned with ``tious`` or a
dict keyed by tIoU), ``average_mAP``, ``per_class_ap`` (class -> one AP per
tIoU) and optionally ``ground_truth_variant``.
"""

from __future__ import annotations

import html
import io
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

import numpy as np

from gaf.data.annotations import Segment
from gaf.errors import DataError
from gaf.io import atomic_write_bytes
from gaf.metrics.attention import ACTION_MEAN_TARGET, AUROC_TARGET, LOW_LAMBDA
from gaf.metrics.detection import format_percent as _pct
from gaf.metrics.detection import format_tiou as _fmt_tiou
from gaf.metrics.detection import map_table, text_table

__all__ = ["plot_timeline", "plot_per_class_ap", "plot_training_curves", "write_report", "format_detections_table",
           "format_metrics_table"]

DPI = 100
FIG_WIDTH_IN = 14.0  # 1400 px at DPI
_LEFT_IN, _RIGHT_IN = 1.15, 0.25  # timeline margins, inches
_LANE_IN = 0.30  # height of one bar lane in the timeline, inches
_ATTN_IN = 1.5  # height of the attention panel, inches
_GROUPED_MAX_CLASSES = 40  # above this, plot_per_class_ap shows only the mean per class


# ----------------------------------------------------------------------------- helpers
def _mpl() -> tuple[Any, Any, Any]:
    """Import matplotlib with the Agg backend; return ``(Figure, colormaps, Patch)``."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # never switch a backend pyplot already uses
        matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    return Figure, matplotlib.colormaps, Patch


def _save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return atomic_write_bytes(Path(path), buf.getvalue())


def _class_colors(labels: Sequence[str], colormaps: Any) -> dict[str, tuple[float, ...]]:
    """One distinct colour per label (labels sorted so a class keeps its colour across plots)."""
    names = sorted(set(labels))
    if len(names) <= 20:
        cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
        return {n: cmap(i) for i, n in enumerate(names)}
    return {n: colormaps["turbo"](0.05 + 0.9 * i / (len(names) - 1)) for i, n in enumerate(names)}


def _assign_lanes(segments: Sequence[Segment]) -> tuple[list[int], list[float]]:
    """Lanes so that no two segments in a lane overlap, filled in the given (priority) order.

    Returns ``(lane per segment, free seconds after each segment in its lane)``;
    the first segments land in lane 0, so with detections sorted by score the
    best ones sit in the top lane.
    """
    lanes: list[list[Segment]] = []
    out = [0] * len(segments)
    for i, seg in enumerate(segments):
        for k, lane in enumerate(lanes):
            if all(o.end <= seg.start or seg.end <= o.start for o in lane):
                break
        else:
            k = len(lanes)
            lanes.append([])
        lanes[k].append(seg)
        out[i] = k
    room = [
        min([o.start for o in lanes[k] if o.start >= seg.end and o is not seg], default=math.inf) - seg.end
        for seg, k in zip(segments, out)
    ]
    return out, room


def _text_color(rgba: Sequence[float], alpha: float) -> str:
    """Black or white, whichever reads better on ``rgba`` blended over white with ``alpha``."""
    r, g, b = (alpha * c + (1.0 - alpha) for c in rgba[:3])
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _style(ax: Any, grid: str = "x") -> None:
    """Light grid behind the data, no top/right frame."""
    ax.grid(axis=grid, color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def _score_of(seg: Segment) -> float:
    return -math.inf if seg.score is None else float(seg.score)


# ----------------------------------------------------------------------------- timeline
def plot_timeline(
    path: str | os.PathLike[str],
    *,
    video_id: str,
    duration: float,
    ground_truth: Sequence[Segment],
    detections: Sequence[Segment],
    attention: np.ndarray | None = None,
    attention_times: np.ndarray | None = None,
    max_detections: int = 20,
    score_threshold: float = 0.0,
    title: str | None = None,
    outcomes: Sequence[bool] | None = None,
    outcome_tiou: float = 0.5,
) -> Path:
    """Draw one video's ground truth, top detections and attention curve to a PNG (paper Fig. 5).

    Rows, top to bottom: ground-truth bars (omitted when there is none, e.g. a
    raw video), the ``max_detections`` highest-scoring detections with
    ``score >= score_threshold`` (stacked in lanes where they overlap; opacity
    and the printed number give the score), and, when ``attention`` is given,
    the curve λ(t) in [0, 1] with the ground-truth intervals shaded. Colours
    are per class, with a legend. Width 1400 px; height grows with the number
    of lanes (about 450-600 px for a typical video).

    ``attention``: shape (T,), values in [0, 1]. ``attention_times``: shape
    (T,), seconds; when ``None`` the T steps are taken as evenly spaced bin
    centres over ``[0, duration]``. ``outcomes``: one bool per detection (true / false positive at
    ``outcome_tiou``, e.g. :func:`gaf.metrics.curves.match_video`): true positives get a solid dark edge
    and "✓", false positives a hatch and "✗", with a legend entry each. Returns ``Path(path)``.
    """
    if outcomes is not None and len(outcomes) != len(detections):
        raise DataError(f"video {video_id!r}: {len(outcomes)} outcomes for {len(detections)} detections")
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0):
        raise DataError(f"video {video_id!r}: field 'duration' must be a positive number of seconds, got {duration!r}")
    att, att_t = _attention_curve(video_id, duration, attention, attention_times)
    gt = sorted(ground_truth, key=lambda g: (g.start, -g.end))
    verdict = {id(d): ok for d, ok in zip(detections, outcomes)} if outcomes is not None else {}
    kept = [d for d in detections if d.score is None or d.score >= score_threshold]
    kept = sorted(kept, key=lambda d: (-_score_of(d), d.start, d.end))[: max(int(max_detections), 0)]

    Figure, colormaps, Patch = _mpl()
    colors = _class_colors([s.label for s in gt] + [d.label for d in kept], colormaps)
    gt_lanes, gt_room = _assign_lanes(gt)
    det_lanes, det_room = _assign_lanes(kept)
    n_gt = (max(gt_lanes) + 1) if gt else 0
    n_det = max(det_lanes) + 1 if kept else 1
    n_legend_rows = math.ceil((len(colors) + (2 if outcomes is not None else 0)) / 8) if colors else 0

    fig, ax, ax_att, left, width, height_in = _timeline_figure(Figure, n_gt + n_det, bool(n_gt), n_legend_rows,
                                                               att is not None)

    x_max = max([duration] + [s.end for s in gt] + [d.end for d in kept])
    px_per_s = width * FIG_WIDTH_IN * DPI / x_max
    bars = _Bars(ax, colors, px_per_s=px_per_s, x_max=x_max)
    # y coordinates in lane units: ground-truth lanes on top, detections below.
    det_top = n_det - 1
    gt_base = n_det + 0.5 if n_gt else n_det
    for seg, lane, room in zip(gt, gt_lanes, gt_room):
        bars.draw(seg, gt_base + (n_gt - 1 - lane), 0.9, room, seg.label, None)
    for seg, lane, room in zip(kept, det_lanes, det_room):
        bars.draw_detection(seg, det_top - lane, room, verdict.get(id(seg)))
    y_lo, y_hi = -0.6, (gt_base + n_gt - 0.4) if n_gt else n_det - 0.4
    for seg in gt:  # faint guides: where the ground truth is, across the detection lanes
        ax.axvspan(seg.start, seg.end, ymax=(n_det - 0.25 - y_lo) / (y_hi - y_lo), color="0.5", alpha=0.08,
                   linewidth=0)
    if not kept:
        ax.text(x_max / 2, 0, "no detections" + (f" with score >= {score_threshold:g}" if score_threshold > 0 else ""),
                ha="center", va="center", fontsize=9, color="0.4")
    _lane_axis(ax, n_gt, n_det, len(kept), gt_base, (y_lo, y_hi), x_max)

    time_ax = ax
    if ax_att is not None:
        _draw_attention(ax_att, gt, colors, att_t, att)
        ax.tick_params(axis="x", labelbottom=False)
        time_ax = ax_att
    time_ax.set_xlabel("time (s)", fontsize=9)

    fig.suptitle(title if title is not None else f"{video_id}  ({duration:.1f} s)", x=left, ha="left",
                 y=1.0 - 0.1 / height_in, va="top", fontsize=12)
    if colors:
        handles = [Patch(facecolor=c, edgecolor=c, label=n) for n, c in colors.items()]
        if verdict:
            handles += [Patch(facecolor="white", edgecolor="0.1", linewidth=1.6,
                              label=f"✓ true positive (tIoU ≥ {outcome_tiou:g})"),
                        Patch(facecolor="white", edgecolor="0.35", hatch="///", label="✗ false positive")]
        fig.legend(handles=handles, loc="upper left", ncol=min(len(handles), 8), frameon=False, fontsize=9,
                   bbox_to_anchor=(left, 1.0 - 0.4 / height_in), handlelength=1.5, columnspacing=1.5)
    return _save_figure(fig, path)


def _timeline_figure(Figure: Any, lanes: int, has_gt: bool, legend_rows: int, has_attention: bool):
    """A timeline's figure and axes, sized in inches: title and legend rows on top, ``lanes`` bar lanes, the
    λ panel (when ``has_attention``) below them. Returns ``(fig, ax, ax_att | None, left, width, height_in)``
    (``left`` / ``width``: the axes' horizontal place as figure fractions)."""
    top_in = 0.45 + 0.28 * legend_rows
    bars_in = _LANE_IN * lanes + (0.15 if has_gt else 0.0) + 0.2
    gap_in = 0.25 if has_attention else 0.0
    attn_in = _ATTN_IN if has_attention else 0.0
    bottom_in = 0.55
    height_in = top_in + bars_in + gap_in + attn_in + bottom_in
    fig = Figure(figsize=(FIG_WIDTH_IN, height_in), dpi=DPI)
    left, width = _LEFT_IN / FIG_WIDTH_IN, 1.0 - (_LEFT_IN + _RIGHT_IN) / FIG_WIDTH_IN
    ax = fig.add_axes((left, (bottom_in + attn_in + gap_in) / height_in, width, bars_in / height_in))
    ax_att = None
    if has_attention:
        ax_att = fig.add_axes((left, bottom_in / height_in, width, attn_in / height_in), sharex=ax)
    return fig, ax, ax_att, left, width, height_in


def _lane_axis(ax: Any, n_gt: int, n_det: int, n_kept: int, gt_base: float, ylim: tuple[float, float],
               x_max: float) -> None:
    """The lanes' y labels ("detections (top N)", "ground truth"), the rule between them, the limits."""
    ticks, names = [(n_det - 1) / 2], [f"detections\n(top {n_kept})" if n_kept else "detections"]
    if n_gt:
        ax.axhline(n_det - 0.25, color="0.6", linewidth=0.8)
        ticks.append(gt_base + (n_gt - 1) / 2)
        names.append("ground truth")
    ax.set_ylim(*ylim)
    ax.set_yticks(ticks, names, fontsize=9)
    ax.tick_params(axis="y", length=0)
    ax.set_xlim(0, x_max)
    _style(ax)


def _attention_curve(video_id: str, duration: float, attention, attention_times):
    """``(λ (T,), times (T,) s)`` of a timeline, or ``(None, None)``; times default to even bin centres."""
    att = None if attention is None else np.asarray(attention, dtype=np.float64).reshape(-1)
    if att is None:
        return None, None
    if attention_times is None:
        return att, (np.arange(att.size) + 0.5) * (duration / max(att.size, 1))
    att_t = np.asarray(attention_times, dtype=np.float64).reshape(-1)
    if att_t.shape != att.shape:
        raise DataError(f"video {video_id!r}: field 'attention_times' has {att_t.size} values "
                        f"but 'attention' has {att.size}")
    return att, att_t


class _Bars:
    """The bars of a timeline's lanes, each with its label placed where it fits."""

    FONTSIZE = 8.0

    def __init__(self, ax, colors: dict[str, Any], *, px_per_s: float, x_max: float) -> None:
        self.ax, self.colors, self.px_per_s, self.x_max = ax, colors, px_per_s, x_max
        self.char_px = 0.6 * self.FONTSIZE * DPI / 72.0

    def draw_detection(self, seg: Segment, y: float, room: float, ok: bool | None) -> None:
        """A detection's bar: opacity from its score, "label score" (and ✓ / ✗ with an outcome)."""
        s = seg.score
        alpha = 0.9 if s is None else 0.25 + 0.7 * float(np.clip(s, 0.0, 1.0))
        mark = "" if ok is None else (" ✓" if ok else " ✗")
        text = (seg.label if s is None else f"{seg.label} {s:.2f}") + mark
        self.draw(seg, y, alpha, room, text, None if s is None else f"{s:.2f}{mark}", ok)

    def draw(self, seg: Segment, y: float, alpha: float, room: float, text: str, short: str | None,
             ok: bool | None = None) -> None:
        """One bar; ``text`` inside if it fits, else right of the bar if the lane is free, else ``short``.
        ``ok``: a true positive (solid dark edge) or a false positive (hatched), None: neither drawn."""
        ax, color, px_per_s, fontsize = self.ax, self.colors[seg.label], self.px_per_s, self.FONTSIZE
        w = max(seg.end - seg.start, 0.0)
        ax.barh(y, w, left=seg.start, height=0.8, color=color, alpha=alpha, edgecolor=color, linewidth=1.0)
        if ok is not None:
            ax.barh(y, w, left=seg.start, height=0.8, fill=False, edgecolor="0.1" if ok else "0.35",
                    linewidth=1.6 if ok else 0.8, hatch=None if ok else "///")
        need = len(text) * self.char_px + 6
        if need <= w * px_per_s:
            ax.text(seg.start + w / 2, y, text, ha="center", va="center", fontsize=fontsize,
                    color=_text_color(color, alpha), clip_on=True)
        elif need <= min(room, self.x_max - seg.end) * px_per_s:
            ax.text(seg.end + 3 / px_per_s, y, text, ha="left", va="center", fontsize=fontsize, color="0.15",
                    clip_on=True)
        elif short and len(short) * self.char_px + 4 <= w * px_per_s:
            ax.text(seg.start + w / 2, y, short, ha="center", va="center", fontsize=fontsize,
                    color=_text_color(color, alpha), clip_on=True)


def _draw_attention(ax_att, gt: Sequence[Segment], colors: dict[str, Any], att_t: np.ndarray,
                    att: np.ndarray) -> None:
    """The λ(t) panel: the curve over the ground-truth intervals shaded in their class colours."""
    for seg in gt:
        ax_att.axvspan(seg.start, seg.end, color=colors[seg.label], alpha=0.22, linewidth=0)
    ax_att.plot(att_t, att, color="black", linewidth=1.2)
    ax_att.fill_between(att_t, 0, att, color="0.3", alpha=0.15, linewidth=0)
    ax_att.set_ylim(0, 1.05)
    ax_att.set_yticks([0, 0.5, 1])
    ax_att.set_ylabel("attention λ(t)", fontsize=9)
    _style(ax_att, "both")


# ----------------------------------------------------------------------------- per-class AP
def plot_per_class_ap(path: str | os.PathLike[str], per_class_ap: dict[str, list[float]], tious: list[float]) -> Path:
    """Horizontal bar chart of AP per class to a PNG.

    ``per_class_ap[c][i]`` is the AP (fraction) of class ``c`` at ``tious[i]``;
    NaN marks a class without ground truth. Up to 40 classes: bars grouped per
    class, one per tIoU, plus a tick at the mean over tIoUs, classes in the
    given order. More classes (e.g. ActivityNet's 200): only the mean over
    tIoUs, sorted from best to worst. Returns ``Path(path)``.
    """
    names = list(per_class_ap)
    ap = np.full((len(names), len(tious)), np.nan)
    for i, name in enumerate(names):
        row = list(per_class_ap[name])
        if len(row) != len(tious):
            raise DataError(f"per_class_ap[{name!r}] has {len(row)} values but there are {len(tious)} tIoUs")
        ap[i] = [np.nan if v is None else float(v) for v in row]
    mean = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in ap], dtype=np.float64)

    Figure, colormaps, Patch = _mpl()
    grouped = len(names) <= _GROUPED_MAX_CLASSES and len(tious) > 1
    lane_in = (0.16 + 0.07 * len(tious)) if grouped else (0.34 if len(names) <= _GROUPED_MAX_CLASSES else 0.15)
    legend_rows = math.ceil((len(tious) + 1) / 6) if grouped else 0
    top_in = 0.5 + 0.25 * legend_rows
    height_in = 0.75 + top_in + lane_in * max(len(names), 1)
    fig = Figure(figsize=(10.0, height_in), dpi=DPI)
    ax = fig.add_axes((2.6 / 10.0, 0.75 / height_in, 1 - 3.0 / 10.0, 1 - (0.75 + top_in) / height_in))
    y = np.arange(len(names))
    if grouped:
        cmap = colormaps["viridis"]
        h = 0.8 / len(tious)
        for j, t in enumerate(tious):
            ax.barh(y - 0.4 + h * (j + 0.5), 100 * np.nan_to_num(ap[:, j]), height=h,
                    color=cmap(0.1 + 0.8 * j / max(len(tious) - 1, 1)), label=f"tIoU {_fmt_tiou(t)}")
        ax.scatter(100 * mean, y, marker="|", s=220, color="black", linewidths=2, label="mean", zorder=3)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, ncol=min(len(tious) + 1, 6),
                  frameon=False, borderaxespad=0.2)
        order_names = names
        sub = "AP per class at each tIoU (| = mean over tIoUs)"
    else:
        if len(names) > _GROUPED_MAX_CLASSES:
            order = sorted(range(len(names)), key=lambda i: (-np.nan_to_num(mean[i], nan=-1.0), names[i]))
            mean, order_names = mean[order], [names[i] for i in order]
        else:
            order_names = names
        ax.barh(y, 100 * np.nan_to_num(mean), height=0.75, color=colormaps["viridis"](0.45))
        what = f"tIoU {_fmt_tiou(tious[0])}" if len(tious) == 1 else f"mean over tIoU {_tiou_range(tious)}"
        sub = f"AP per class, {what}" + (", sorted" if len(names) > _GROUPED_MAX_CLASSES else "")
    fs = 9 if len(names) <= _GROUPED_MAX_CLASSES else 7
    if len(names) > _GROUPED_MAX_CLASSES:  # a tall chart: the AP scale on top as well
        ax.tick_params(axis="x", top=True, labeltop=True)
    ax.set_yticks(y, order_names, fontsize=fs)
    for i in np.flatnonzero(~np.isfinite(mean)):
        ax.text(1, y[i], "no ground truth", va="center", fontsize=fs - 1, color="0.45")
    if not names:
        ax.text(50, 0, "no classes", ha="center", va="center", color="0.4")
    ax.set_ylim(max(len(names), 1) - 0.5, -0.5)
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)", fontsize=9)
    _style(ax)
    fig.text(2.6 / 10.0, 1.0 - 0.12 / height_in, sub, fontsize=11, ha="left", va="top")
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------- training curves
_SPLIT_COLORS = {"train": "tab:blue", "test": "tab:orange"}


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, not a number, NaN / inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _curve(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """``(epochs, values)`` of ``key`` over the records holding a finite number under it."""
    xs, ys = [], []
    for i, record in enumerate(history):
        y = _number(record.get(key))
        if y is None:
            continue
        x = _number(record.get("epoch"))
        xs.append(float(i + 1) if x is None else x)
        ys.append(y)
    return xs, ys


def _loss_key(key: str) -> bool:
    stage, _, name = key.partition("/")
    return stage in ("segment", "frame") and bool(name) and name != "lr" and not key.startswith("segment/ai_")


def _split_of(key: str, prefix: str) -> tuple[str, str] | None:
    """``health/test_auroc`` with prefix ``health/`` -> ``("test", "auroc")``."""
    if not key.startswith(prefix):
        return None
    split, _, what = key[len(prefix):].partition("_")
    return (split, what) if split and what else None


def _line(ax: Any, xs: Sequence[float], ys: Sequence[float], **kw: Any) -> Any:
    kw.setdefault("linewidth", 1.4)
    if len(xs) <= 40:
        kw.setdefault("marker", "o")
        kw.setdefault("markersize", 3)
    return ax.plot(xs, ys, **kw)[0]


def plot_training_curves(path: str | os.PathLike[str], history: Sequence[Mapping[str, Any]]) -> Path | None:
    """Draw the per-epoch training curves of a run's ``history.json`` to one PNG.

    ``history`` is the list of epoch records (``epoch`` counts from 1). Panels,
    each left out when the history has nothing for it:

    * losses: every ``segment/*`` and ``frame/*`` entry but the learning rates
      (``*/lr``) and the ``segment/ai_*`` sub-terms (log y when all positive);
    * attention: mean λ on ground-truth action steps (solid) and on background
      steps (dashed), one colour per split (``health/{train,test}_action_mean``,
      ``..._background_mean``), with the health target for action steps (0.3);
    * AUROC of λ against the action mask (``health/*_auroc``, target 0.85) and,
      on a second axis, the fraction of steps with λ < 0.05
      (``health/*_low_fraction``);
    * the L2 norm of the gradient on λ of each loss term (``grad_lambda/*``, log y).

    Returns ``Path(path)``, or None (and writes nothing) when the history has
    nothing to plot.
    """
    history = [r for r in history if isinstance(r, Mapping)]
    keys: list[str] = []
    for record in history:
        keys += [k for k in record if k not in keys and _number(record[k]) is not None]
    curves = {k: _curve(history, k) for k in keys}
    losses = [k for k in keys if _loss_key(k)]
    # (split, quantity, key), the training split first
    health = sorted(((sw[0], sw[1], k) for k in keys if (sw := _split_of(k, "health/"))),
                    key=lambda t: (t[0] != "train", t[0], t[1]))
    means = [t for t in health if t[1] in ("action_mean", "background_mean")]
    aurocs = [(s, k) for s, w, k in health if w == "auroc"]
    lows = [(s, k) for s, w, k in health if w == "low_fraction"]
    grads = sorted(k for k in keys if k.startswith("grad_lambda/") and len(k) > len("grad_lambda/"))
    panels = [name for name, have in (("loss", losses), ("lambda", means), ("auroc", aurocs or lows),
                                      ("grad", grads)) if have]
    if not panels:
        return None

    Figure, colormaps, _ = _mpl()
    from matplotlib.ticker import MaxNLocator

    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(FIG_WIDTH_IN, 0.3 + 4.2 * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    epochs = [x for k in losses + [t[2] for t in health] + grads for x in curves[k][0]]
    lo, hi = min(epochs), max(epochs)
    pad = max(1.0, 0.03 * (hi - lo))  # a lone epoch stays in view, between integer ticks
    color = {s: _SPLIT_COLORS.get(s, colormaps["tab10"](2 + i % 8))
             for i, s in enumerate(dict.fromkeys([t[0] for t in means] + [t[0] for t in aurocs + lows]))}

    for ax, panel in zip(axes, panels):
        _style(ax, grid="both")
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_xlim(lo - pad, hi + pad)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel == "loss":
            _loss_panel(ax, losses, curves, colormaps)
        elif panel == "lambda":
            _lambda_panel(ax, means, curves, color)
        elif panel == "auroc":
            _auroc_panel(ax, aurocs, lows, curves, color)
        else:
            _grad_panel(ax, grads, curves, colormaps)
    return _save_figure(fig, path)


def _legend(ax: Any, *others: Any) -> None:
    """One legend on ``ax`` holding its lines and those of ``others`` (twin axes)."""
    handles, labels = ax.get_legend_handles_labels()
    for other in others:
        h, lab = other.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    ax.legend(handles, labels, fontsize=8, frameon=False, loc="best")


def _loss_panel(ax: Any, losses: list[str], curves: dict, colormaps: Any) -> None:
    cmap = colormaps["tab10" if len(losses) <= 10 else "tab20"]
    for i, key in enumerate(losses):
        _line(ax, *curves[key], color=cmap(i % cmap.N), linestyle="--" if key.startswith("frame/") else "-",
              label=key)
    positive = all(v > 0 for k in losses for v in curves[k][1])
    if positive:
        ax.set_yscale("log")
    ax.set_ylabel("loss per batch (epoch mean" + (", log scale)" if positive else ")"), fontsize=9)
    ax.set_title("Training losses (solid: stage segment, dashed: stage frame)", fontsize=10, loc="left")
    _legend(ax)


def _lambda_panel(ax: Any, means: list[tuple[str, str, str]], curves: dict, color: dict) -> None:
    for split, what, key in means:
        action = what == "action_mean"
        _line(ax, *curves[key], color=color[split], linestyle="-" if action else "--",
              label=f"{split}: {'action' if action else 'background'} steps")
    ax.axhline(ACTION_MEAN_TARGET, color="0.35", linestyle=":", linewidth=1.2,
               label=f"health target for action steps ({ACTION_MEAN_TARGET:g})")
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("mean attention λ, in [0, 1]", fontsize=9)
    ax.set_title("Attention λ: mean on action (solid) and background (dashed) steps", fontsize=10, loc="left")
    _legend(ax)


def _auroc_panel(ax: Any, aurocs: list[tuple[str, str]], lows: list[tuple[str, str]], curves: dict,
                 color: dict) -> None:
    """AUROC per split (with its target) and, on a twin axis when both are there, the share of λ < 0.05."""
    if aurocs:
        for split, key in aurocs:
            _line(ax, *curves[key], color=color[split], label=f"{split}: AUROC")
        ax.axhline(AUROC_TARGET, color="0.35", linestyle=":", linewidth=1.2,
                   label=f"health target for AUROC ({AUROC_TARGET:g})")
        ax.set_ylim(0.4, 1.0)
        ax.set_ylabel("AUROC of λ vs the action mask", fontsize=9)
    if lows:
        low_ax = ax.twinx() if aurocs else ax
        for split, key in lows:
            _line(low_ax, *curves[key], color=color[split], linestyle="-.", marker="s" if aurocs else "o",
                  markersize=3, label=f"{split}: fraction λ < {LOW_LAMBDA:g}")
        low_ax.set_ylim(0.0, 1.0)
        low_ax.set_ylabel(f"fraction of steps with λ < {LOW_LAMBDA:g}, in [0, 1]", fontsize=9)
        if low_ax is not ax:
            low_ax.spines["top"].set_visible(False)
            _legend(ax, low_ax)
        else:
            _legend(ax)
    else:
        _legend(ax)
    low_text = f"fraction λ < {LOW_LAMBDA:g}"
    ax.set_title("Attention λ: AUROC vs action mask" + (f" (solid), {low_text} (dash-dot)"
                                                        if aurocs and lows else
                                                        "" if aurocs else f" - {low_text}"),
                 fontsize=10, loc="left")


def _grad_panel(ax: Any, grads: list[str], curves: dict, colormaps: Any) -> None:
    cmap = colormaps["tab10" if len(grads) <= 10 else "tab20"]
    for i, key in enumerate(grads):
        _line(ax, *curves[key], color=cmap(i % cmap.N), label=key.split("/", 1)[1])
    if any(v > 0 for k in grads for v in curves[k][1]):
        ax.set_yscale("log")
    ax.set_ylabel("gradient L2 norm on λ (log scale)", fontsize=9)
    ax.set_title("Gradient on λ of each weighted loss term", fontsize=10, loc="left")
    _legend(ax)


# ----------------------------------------------------------------------------- text tables
def _tiou_range(tious: Sequence[float]) -> str:
    return f"{_fmt_tiou(min(tious))}-{_fmt_tiou(max(tious))}" if tious else ""


def _metric_rows(metrics: Mapping[str, Any]) -> tuple[list[float], list[float], float]:
    """``(tious, mAP per tIoU, average mAP)`` from a metrics dict, checking its fields."""
    for key in ("tious", "mAP"):
        if key not in metrics:
            raise DataError(f"metrics: missing field {key!r} (have {sorted(metrics)})")
    tious = [float(t) for t in metrics["tious"]]
    raw = metrics["mAP"]
    if isinstance(raw, Mapping):
        by_t = {float(k): v for k, v in raw.items()}
        try:
            maps = [float(next(v for k, v in by_t.items() if abs(k - t) < 1e-9)) for t in tious]
        except StopIteration:
            raise DataError(f"metrics: field 'mAP' has no value for every tIoU in {tious}") from None
    else:
        maps = [float(v) for v in raw]
        if len(maps) != len(tious):
            raise DataError(f"metrics: field 'mAP' has {len(maps)} values but 'tious' has {len(tious)}")
    avg = metrics.get("average_mAP")
    avg = float(np.mean(maps)) if avg is None and maps else (math.nan if avg is None else float(avg))
    return tious, maps, avg


def format_metrics_table(metrics: dict) -> str:
    """Plain-text mAP table of a metrics dict (``metrics.json``): one row, tIoUs as columns, then ``Avg``
    (values in %), the table ``gaf score`` / ``gaf eval`` print."""
    return map_table(*_metric_rows(metrics))


def format_detections_table(detections: Sequence[Segment], *, max_rows: int | None = None) -> str:
    """Plain-text table of detections (start s, end s, duration s, label, score), sorted by start.

    With ``max_rows``, the ``max_rows`` highest-scoring detections are kept
    (then shown by start time) and a last line says how many were left out.
    """
    dets = list(detections)
    if not dets:
        return "no detections"
    shown = dets
    if max_rows is not None and len(dets) > max_rows:
        shown = sorted(dets, key=lambda d: (-_score_of(d), d.start, d.end))[: max(max_rows, 0)]
    shown = sorted(shown, key=lambda d: (d.start, d.end, -_score_of(d)))
    rows = [[f"{d.start:.2f}", f"{d.end:.2f}", f"{d.end - d.start:.2f}", d.label,
             "-" if d.score is None else f"{d.score:.4f}"] for d in shown]
    header = ["start (s)", "end (s)", "duration (s)", "label", "score"]
    table = text_table(header, rows, [True, True, True, False, True])
    if len(shown) < len(dets):
        table += f"\n({len(dets) - len(shown)} more detections with lower scores not shown; {len(dets)} in total)"
    return table


# ----------------------------------------------------------------------------- reports
def _per_class_rows(metrics: Mapping[str, Any], tious: Sequence[float]) -> list[tuple[str, list[str], str]]:
    """``(class, AP % per tIoU, mean %)`` per class, in the metrics' order."""
    rows = []
    for name, values in (metrics.get("per_class_ap") or {}).items():
        vals = [math.nan if v is None else float(v) for v in values]
        if len(vals) != len(tious):
            raise DataError(f"metrics: per_class_ap[{name!r}] has {len(vals)} values but 'tious' has {len(tious)}")
        finite = [v for v in vals if math.isfinite(v)]
        rows.append((str(name), [_pct(v) for v in vals], _pct(sum(finite) / len(finite) if finite else None)))
    return rows


def plot_pr_curves(path: str | os.PathLike[str], curves: Mapping[str, Any], tiou: float) -> Path:
    """Precision–recall curve of each class (:func:`gaf.metrics.curves.precision_recall`), one small panel
    per class (5 per row) with its AP and instance count, to a PNG."""
    Figure, colormaps, _ = _mpl()
    names = list(curves)
    ncols = min(5, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = Figure(figsize=(2.8 * ncols, 2.4 * nrows), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True)).ravel())
    colors = _class_colors(names, colormaps)
    for ax, name in zip(axes, names):
        c = curves[name]
        if len(c.recall):
            # the interpolated envelope the AP integrates, over the raw curve
            envelope = np.maximum.accumulate(c.precision[::-1])[::-1]
            ax.plot(c.recall, c.precision, color=colors[name], linewidth=0.8, alpha=0.5)
            ax.step(c.recall, envelope, where="post", color=colors[name], linewidth=1.6)
        ax.set_title(f"{name}: AP {100 * c.ap:.1f} (n={c.num_instances})", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.supxlabel("recall", fontsize=9)
    fig.supylabel("precision", fontsize=9)
    fig.suptitle(f"precision–recall per class at tIoU {tiou:g} (thin: raw; thick: interpolated)", fontsize=10)
    return _save_figure(fig, path)


def _rel_image(path: Path, out_dir: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"report: image {str(path)!r} does not exist")
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def _md_cell(text: str) -> str:
    """Text safe in a Markdown line or table cell (HTML-escaped, pipes and backslashes escaped)."""
    return html.escape(str(text), quote=False).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1460px;padding:0 1em;color:#222}h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.25em .6em}
td{white-space:pre-wrap}table.num td{text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f2f2f2}tr.foot td{font-weight:bold;background:#fafafa}
img{max-width:100%;display:block;margin:.6em 0;border:1px solid #eee}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}.note{color:#666}"""

# A report is a list of blocks, rendered once to HTML and once to Markdown:
# ("h1" | "h2" | "note" | "pre", text), ("img", (alt, relative path)),
# ("table", (header, rows, footer row or None, numeric columns?)).
_Block = tuple[str, Any]


def _html(blocks: Sequence[_Block]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(blocks[0][1])}</title><style>{_CSS}</style></head><body>"]
    for kind, x in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{e(x)}</{kind}>")
        elif kind == "note":
            out.append(f'<p class="note">{e(x)}</p>')
        elif kind == "pre":
            out.append(f"<pre>{e(x)}</pre>")
        elif kind == "img":
            out.append(f'<figure><img src="{e(quote(x[1]))}" alt="{e(x[0])}"></figure>')
        else:
            header, rows, foot, numeric = x
            out.append(f'<table class="{"num" if numeric else "kv"}"><thead><tr>'
                       + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
            if foot is not None:
                out.append('<tr class="foot">' + "".join(f"<td>{e(c)}</td>" for c in foot) + "</tr>")
            out.append("</tbody></table>")
    return "\n".join(out + ["</body></html>", ""])


def _markdown(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for kind, x in blocks:
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + _md_cell(x))
        elif kind == "note":
            out.append(_md_cell(x))
        elif kind == "pre":
            fence = "`" * max(3, 1 + max(map(len, re.findall("`+", x)), default=0))
            out.append(f"{fence}\n{x.rstrip()}\n{fence}")
        elif kind == "img":
            out.append(f"![{_md_cell(x[0])}](<{x[1]}>)")
        else:
            header, rows, foot, _ = x
            lines = [header, ["---"] * len(header)] + list(rows) + ([foot] if foot is not None else [])
            out.append("\n".join("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in lines))
    return "\n\n".join(out) + "\n"


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    metrics: dict,
    timelines: Sequence[Path] = (),
    per_class_plot: Path | None = None,
    config_text: str | None = None,
    extra: dict[str, str] | None = None,
    curves_plot: Path | None = None,
    health: dict[str, float] | None = None,
    run_info: Mapping[str, Any] | None = None,
    pr_plot: Path | None = None,
    analysis_plot: Path | None = None,
    analysis_text: str | None = None,
) -> Path:
    """Write ``out_dir/report.html`` (one self-contained page) and ``out_dir/report.md``.

    Both hold: the mAP table (tIoUs as columns, then the average; values in
    %), the per-class AP table (classes x tIoUs plus the mean over tIoUs, with
    the mAP as the last row), the images (referenced by paths relative to
    ``out_dir``; each must exist), ``extra`` as a key/value table and the
    resolved config verbatim. With ``curves_plot`` (see
    :func:`plot_training_curves`) and / or ``health`` (the last epoch's
    ``health/...`` entries), a section "Training and attention health" holds
    the curves and the health values (3 decimals). ``run_info`` (config,
    checkpoint, epoch, date, wall time, data counts, ground truth) opens the
    page as a table; ``pr_plot`` (:func:`plot_pr_curves`) and
    ``analysis_plot`` / ``analysis_text`` (:func:`plot_error_analysis`,
    ``ErrorAnalysis.format()``) get a section each. All text is HTML-escaped.
    Returns the HTML path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tious, maps, avg = _metric_rows(metrics)
    t_head = [_fmt_tiou(t) for t in tious]
    map_cells = [_pct(v) for v in maps] + [_pct(avg)]
    blocks: list[_Block] = [("h1", title)]
    if metrics.get("ground_truth_variant"):
        blocks.append(("note", f"Ground truth: {metrics['ground_truth_variant']}"))
    if run_info:
        blocks += [("h2", "Run"), ("table", (["field", "value"], [[str(k), str(v)] for k, v in run_info.items()],
                                             None, False))]
    blocks += [("h2", "mAP"), ("table", (["tIoU", *t_head, "Avg"], [["mAP (%)", *map_cells]], None, True))]
    blocks.append(("h2", "Per-class AP (%)"))
    pc_rows = [[name, *vals, mean] for name, vals, mean in _per_class_rows(metrics, tious)]
    if pc_rows:
        blocks.append(("table", (["class", *t_head, "mean"], pc_rows, ["mAP", *map_cells], True)))
    else:
        blocks.append(("note", "No per-class AP in these metrics."))
    if per_class_plot is not None:
        blocks.append(("img", ("per-class AP", _rel_image(Path(per_class_plot), out))))
    if pr_plot is not None:
        blocks += [("h2", "Precision–recall"), ("img", ("precision-recall curves", _rel_image(Path(pr_plot), out)))]
    if analysis_plot is not None or analysis_text:
        blocks += [("h2", "Error analysis (DETAD)")]
        if analysis_plot is not None:
            blocks.append(("img", ("error analysis", _rel_image(Path(analysis_plot), out))))
        if analysis_text:
            blocks.append(("pre", analysis_text))
    if timelines:
        blocks.append(("h2", "Detections"))
        blocks += [("img", (f"detections: {Path(p).stem}", _rel_image(Path(p), out))) for p in timelines]
    if curves_plot is not None or health:
        blocks.append(("h2", "Training and attention health"))
        if curves_plot is not None:
            blocks.append(("img", ("training curves and attention health", _rel_image(Path(curves_plot), out))))
        if health:
            rows = [[str(k), "-" if (v := _number(value)) is None else f"{v:.3f}"] for k, value in health.items()]
            blocks += [("note", "Attention health at the last epoch (λ in [0, 1]):"),
                       ("table", (["key", "value"], rows, None, True))]
    if extra:
        blocks += [("h2", "Run details"), ("table", (["field", "value"], [[str(k), str(v)] for k, v in extra.items()],
                                                     None, False))]
    if config_text is not None:
        blocks += [("h2", "Config"), ("pre", config_text)]
    html_path = atomic_write_bytes(out / "report.html", _html(blocks).encode("utf-8"))
    atomic_write_bytes(out / "report.md", _markdown(blocks).encode("utf-8"))
    return html_path


def plot_error_analysis(path: str | os.PathLike[str], analysis: Any) -> Path:
    """The DETAD figure of a :class:`gaf.metrics.analysis.ErrorAnalysis` to a PNG: the false-positive
    profile per slice (stacked shares of each error type), the average-mAP gain of removing each error
    type, and the normalized mAP and missed share per bin of each instance characteristic."""
    from gaf.metrics.analysis import ERROR_TYPES

    Figure, colormaps, _ = _mpl()
    chars = list(analysis.sensitivity)
    ncols = 3
    nrows = -(-(2 + len(chars)) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.4 * nrows), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(nrows, ncols)).ravel())
    for ax in axes[2 + len(chars):]:
        ax.set_visible(False)
    colors = ["#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#d62728", "#7f7f7f"]
    slices = [f"{g + 1}G" for g in range(len(analysis.profile))]
    bottom = np.zeros(len(slices))
    for k, name in enumerate(ERROR_TYPES):
        values = np.array([100 * row[name] for row in analysis.profile])
        axes[0].bar(slices, values, bottom=bottom, color=colors[k], label=name.replace("_", " "))
        bottom += values
    axes[0].set_ylabel("% of the slice's predictions")
    axes[0].set_title("false-positive profile", fontsize=10)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[0].tick_params(axis="x", labelsize=7)
    names = list(analysis.map_gain)
    axes[1].bar([n.replace("_", "\n") for n in names], [100 * analysis.map_gain[n] for n in names],
                color=colors[1:1 + len(names)])
    axes[1].set_ylabel("average-mAP gain (points)")
    axes[1].set_title("removing each error type", fontsize=10)
    axes[1].tick_params(axis="x", labelsize=7)
    for ax, char in zip(axes[2:], chars):
        bins = list(analysis.sensitivity[char])
        sens = [np.nan if analysis.sensitivity[char][b] is None else 100 * analysis.sensitivity[char][b] for b in bins]
        miss = [np.nan if analysis.false_negatives[char][b] is None else 100 * analysis.false_negatives[char][b]
                for b in bins]
        x = np.arange(len(bins))
        ax.bar(x - 0.2, sens, 0.4, color="#1f77b4", label="normalized mAP")
        ax.bar(x + 0.2, miss, 0.4, color="#d62728", label="missed (FN)")
        ax.set_xticks(x, [f"{b}\nn={analysis.bin_counts[char][b]}" for b in bins], fontsize=7)
        ax.set_ylim(0, 118)  # room for the legend above full bars
        ax.set_title(char.replace("_", " "), fontsize=10)
        ax.legend(fontsize=7, loc="upper right", ncols=2)
    fig.suptitle(f"error analysis at tIoU {', '.join(f'{t:g}' for t in analysis.tious)}", fontsize=11)
    return _save_figure(fig, path)
