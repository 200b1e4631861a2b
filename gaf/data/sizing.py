"""What a dataset's lengths mean for the detector: the instances no pyramid level can regress, and the
``max_seq_len``, ``num_levels`` and ``regression_range_base`` they recommend (used by :mod:`gaf.data.check`).

Lengths are in feature steps; a regression range bounds ``max(left, right)``
in steps of the input (:func:`gaf.models.detector.regression_ranges`), and
level ``l`` of the pyramid has stride ``2**l``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["Recommendation", "recommend", "recommended_config", "unregressable", "auto_range_base",
           "MAX_SEQ_LEN_CAP"]

#: the largest ``max_seq_len`` :func:`recommend` proposes (steps): longer videos are cropped in training and
#: windowed at evaluation, so a longer crop only costs memory
MAX_SEQ_LEN_CAP = 4096


@dataclass(frozen=True)
class Recommendation:
    """A config value the data suggest: ``key`` (dotted), the config's ``current`` value, the ``value``
    recommended and a one-line ``reason``."""

    key: str
    current: float
    value: float
    reason: str

    @property
    def changed(self) -> bool:
        return float(self.value) != float(self.current)

    def text(self) -> str:
        now = f"{self.value:g} (now {self.current:g})" if self.changed else f"{self.value:g} (as now)"
        return f"{self.key}: {now}: {self.reason}"


def unregressable(segments: np.ndarray, num_steps: int, ranges: Sequence[tuple[float, float]],
                  radius: float) -> np.ndarray:
    """``(N,)`` bool: the instances ``segments (N, 2)`` (steps of a ``num_steps``-step item) that no level can
    regress, by the rule of :func:`gaf.models.detection_losses.assign_points`.

    Segments are clamped to ``[0, num_steps]`` (those left under 1e-3 steps
    are no target). Level ``l`` has points at ``i * 2**l``, ``i <
    ceil(num_steps / 2**l)``; a point is a candidate when it lies inside the
    instance, within ``radius * 2**l`` of its centre, and its ``max(left,
    right)`` lies in ``ranges[l]``.
    """
    seg = np.clip(np.asarray(segments, dtype=np.float64).reshape(-1, 2), 0.0, float(num_steps))
    s, e = seg[:, 0], seg[:, 1]
    centre = 0.5 * (s + e)
    ok = np.zeros(len(seg), dtype=bool)
    for level, (lo, hi) in enumerate(ranges):
        stride = 2 ** level
        first = np.ceil(np.maximum(s, centre - radius * stride) / stride)
        last = np.minimum(np.floor(np.minimum(e, centre + radius * stride) / stride), -(-num_steps // stride) - 1)
        for k in range(int(2 * radius) + 2):  # the candidates: at most 2 * radius + 1 points
            p = (first + k) * stride
            maxd = np.maximum(p - s, e - p)
            ok |= (first + k <= last) & (maxd >= lo) & (maxd <= hi)
    return ~ok | (e - s <= 1e-3)


def auto_range_base(instance_steps: np.ndarray, base: float) -> float:
    """``model.detector.regression_ranges: auto``'s ``regression_range_base`` (steps) for training instances of
    ``instance_steps`` steps and the configured ``base``: :func:`recommend`'s rule — ``base`` when the 5th
    percentile of the half-lengths is at most ``base`` (level 0's ``[0, base]`` already holds the shortest
    common instances), else the smallest power of two above it. It never lowers ``base``: lowering it to the
    shortest instances' half-length (1 step on the compressed THUMOS14-like benchmark) cost 22 points of
    average mAP there (docs/performance.md)."""
    half = 0.5 * np.asarray(instance_steps, dtype=np.float64).reshape(-1)
    half = half[half > 0]
    if half.size == 0:
        return float(base)
    h5 = float(np.percentile(half, 5))
    return float(base) if h5 <= base else float(2 ** math.ceil(math.log2(h5)))


def recommend(video_steps: np.ndarray, instance_steps: np.ndarray, *, num_levels: int, base: float,
              max_seq_len: int) -> list[Recommendation]:
    """``dataset.max_seq_len``, ``model.detector.num_levels`` and ``regression_range_base`` for training
    videos of ``video_steps`` steps holding instances of ``instance_steps`` steps (half-length ``h``).

    * ``regression_range_base``: kept when the 5th percentile of ``h`` is
      at most the current base (the shortest common instances land in level
      0's ``[0, base]``); else the smallest power of two above it.
    * ``num_levels``: kept when the top level's nominal range (``base *
      2**(num_levels-1)``) reaches the largest ``h`` (at most half the
      training crop); else the fewest levels that reach it.
    * ``max_seq_len``: a power-of-two multiple of the pyramid's total stride
      ``2**(num_levels-1)`` covering the 90th percentile of the video
      lengths, at most the longest video rounded up to the stride, and at
      most :data:`MAX_SEQ_LEN_CAP` (never under the stride).
    """
    steps = np.asarray(video_steps, dtype=np.float64)
    half = 0.5 * np.asarray(instance_steps, dtype=np.float64)
    half = half[half > 0]
    keys = ("model.detector.regression_range_base", "model.detector.num_levels", "dataset.max_seq_len")
    if steps.size == 0 or half.size == 0:
        why = "no training video with features" if steps.size == 0 else "no training instance"
        return [Recommendation(k, v, v, why) for k, v in zip(keys, (base, num_levels, max_seq_len))]
    h5 = float(np.percentile(half, 5))
    new_base = auto_range_base(2 * half, base)
    if new_base == base:
        why_base = f"level 0 ([0, {base:g}] steps) already holds the shortest common instances"
    else:
        why_base = f"level 0 ([0, {new_base:g}] steps) then holds the shortest common instances"
    why_base = f"5% of the training instances have a half-length of at most {h5:.3g} steps; " + why_base
    crop = _cover(steps, 2 ** (num_levels - 1))[0]
    h_top = min(float(half.max()), crop / 2)
    needed = 1 + max(0, math.ceil(math.log2(h_top / new_base))) if h_top > 0 else 1
    levels = max(num_levels, needed)
    why_levels = (f"the longest training instance has a half-length of {h_top:.4g} steps"
                  f"{' (as cropped)' if h_top < half.max() else ''}; {levels} levels reach "
                  f"{new_base * 2 ** (levels - 1):g} = regression_range_base x 2**{levels - 1} at the top"
                  f"{'' if levels > num_levels else ' (enough already)'}")
    stride = 2 ** (levels - 1)
    value, why_len = _cover(steps, stride)
    return [Recommendation(keys[0], base, new_base, why_base), Recommendation(keys[1], num_levels, levels, why_levels),
            Recommendation(keys[2], max_seq_len, value, why_len)]


def _cover(steps: np.ndarray, stride: int) -> tuple[int, str]:
    """The ``max_seq_len`` rule of :func:`recommend` for video lengths ``steps`` and total stride ``stride``."""
    p90, longest = float(np.percentile(steps, 90)), float(steps.max())
    value = stride * 2 ** max(0, math.ceil(math.log2(max(p90, 1.0) / stride)))
    notes = []
    fit = -(-int(math.ceil(longest)) // stride) * stride
    if fit < value:
        value = fit
        notes.append("the longest video whole")
    cap = max(MAX_SEQ_LEN_CAP // stride, 1) * stride
    if value > cap:
        value = cap
        notes.append(f"capped at {cap}: longer videos are cropped in training and windowed at evaluation")
    why = (f"90% of the {steps.size} training videos have at most {p90:.0f} steps (longest {longest:.0f}); "
           f"{value} = {value // stride} x the pyramid's total stride {stride}")
    return value, why + "".join(f", {note}" for note in notes)


def recommended_config(config: dict[str, Any], recommendations: Sequence[Recommendation]) -> dict[str, Any]:
    """A copy of ``config`` (an experiment config as plain data, e.g. :func:`gaf.config.to_dict`'s) with
    ``recommendations`` applied; an ``eval_max_seq_len`` below the new ``max_seq_len`` is raised to it."""
    data = copy.deepcopy(config)
    for rec in recommendations:
        node = data
        *sections, key = rec.key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = float(rec.value) if isinstance(rec.current, float) else int(rec.value)
    dataset = data["dataset"]
    if dataset.get("eval_max_seq_len") and dataset["eval_max_seq_len"] < dataset["max_seq_len"]:
        dataset["eval_max_seq_len"] = dataset["max_seq_len"]
    return data
