"""The detection timeline figure (paper Fig. 5): one video's ground truth, top detections (stacked in
lanes) and attention curve λ(t), to a PNG.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gaf.data.annotations import Segment
from gaf.errors import DataError
from gaf.viz.common import DPI, FIG_WIDTH_IN, _class_colors, _mpl, _save_figure, _score_of, _style

_LEFT_IN, _RIGHT_IN = 1.15, 0.25  # timeline margins, inches
_LANE_IN = 0.30  # height of one bar lane in the timeline, inches
_ATTN_IN = 1.5  # height of the attention panel, inches


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
