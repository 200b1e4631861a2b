"""Health of GAF's attention λ against the ground-truth action mask (no torch).

A collapsed attention (λ ≈ 0 everywhere, or flat) leaves GAF with nothing
to add to the detector; an inverted one (high on background) misleads it.
:func:`attention_health` measures both on per-step λ:

* ``action_mean`` / ``background_mean``: mean λ over steps inside / outside
  ground-truth instances;
* ``auroc``: the area under the ROC curve of λ as a score for "this step is
  inside an instance" (0.5: no information, 1: every action step above every
  background step; ties count one half, the Mann-Whitney U statistic);
* ``low_fraction``: the fraction of all steps with λ below ``low`` (0.05).

λ of channel attention ``(C, T)`` is summarised per step by its mean over
channels before it reaches these functions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["auroc", "attention_health", "HEALTH_KEYS", "LOW_LAMBDA", "ACTION_MEAN_TARGET", "AUROC_TARGET"]

HEALTH_KEYS = ("action_mean", "background_mean", "auroc", "low_fraction")
LOW_LAMBDA = 0.05  # λ below this counts towards ``low_fraction``
ACTION_MEAN_TARGET = 0.3  # mean λ on action steps that a healthy attention keeps at every epoch
AUROC_TARGET = 0.85  # test AUROC of λ against the action mask that a healthy attention reaches


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores (N,)`` for the bool labels ``positive (N,)``; NaN if one class is empty.

    Equal scores share their average rank, so ties count one half (the
    Mann-Whitney U statistic divided by ``n_pos * n_neg``).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    if scores.shape != positive.shape:
        raise ValueError(f"auroc: {scores.shape[0]} scores but {positive.shape[0]} labels")
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    mean_rank = ends - (counts - 1) / 2.0
    rank_sum = float(mean_rank[inverse][positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def attention_health(attention: Sequence[np.ndarray], actions: Sequence[np.ndarray], *, low: float = LOW_LAMBDA
                     ) -> dict[str, float]:
    """Health of λ over windows: ``attention[i] (T_i,)`` λ on valid steps, ``actions[i] (T_i,)`` bool ground truth.

    Returns :data:`HEALTH_KEYS` (NaN where undefined: no action or no
    background step).
    """
    if len(attention) != len(actions):
        raise ValueError(f"attention_health: {len(attention)} attention arrays but {len(actions)} masks")
    if not attention:
        return {k: float("nan") for k in HEALTH_KEYS}
    lam = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in attention])
    act = np.concatenate([np.asarray(a, dtype=bool).ravel() for a in actions])
    if lam.shape != act.shape:
        raise ValueError("attention_health: each attention array must match its mask's length")
    nan = float("nan")
    return {
        "action_mean": float(lam[act].mean()) if act.any() else nan,
        "background_mean": float(lam[~act].mean()) if (~act).any() else nan,
        "auroc": auroc(lam, act),
        "low_fraction": float((lam < low).mean()) if lam.size else nan,
    }
