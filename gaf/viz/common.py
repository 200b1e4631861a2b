"""Shared matplotlib plumbing of the figures: the lazy Agg import, the atomic PNG save, figure size
constants, class colours, axis style, and small value helpers (a detection's score, a finite number).

matplotlib is imported only inside :func:`_mpl`, so importing this module is cheap.
"""

from __future__ import annotations

import io
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gaf.data.annotations import Segment
from gaf.io import atomic_write_bytes

DPI = 100
FIG_WIDTH_IN = 14.0  # 1400 px at DPI


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


def _style(ax: Any, grid: str = "x") -> None:
    """Light grid behind the data, no top/right frame."""
    ax.grid(axis=grid, color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def _score_of(seg: Segment) -> float:
    return -math.inf if seg.score is None else float(seg.score)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, not a number, NaN / inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
