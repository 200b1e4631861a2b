"""The training-curve figure of a run's ``history.json``: losses, attention λ on action / background
steps, λ's AUROC and low fraction, and the gradient on λ of each loss term, to one PNG.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from gaf.metrics.attention import ACTION_MEAN_TARGET, AUROC_TARGET, LOW_LAMBDA
from gaf.viz.common import DPI, FIG_WIDTH_IN, _mpl, _number, _save_figure, _style

_SPLIT_COLORS = {"train": "tab:blue", "test": "tab:orange"}


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
