"""Evaluation figures, each to a PNG: AP per class (:func:`plot_per_class_ap`), precision–recall curves
per class (:func:`plot_pr_curves`) and the DETAD error analysis (:func:`plot_error_analysis`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gaf.errors import DataError
from gaf.metrics.detection import format_tiou as _fmt_tiou
from gaf.viz.common import DPI, _class_colors, _mpl, _save_figure, _style

_GROUPED_MAX_CLASSES = 40  # above this, plot_per_class_ap shows only the mean per class


def _tiou_range(tious: Sequence[float]) -> str:
    return f"{_fmt_tiou(min(tious))}-{_fmt_tiou(max(tious))}" if tious else ""


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
