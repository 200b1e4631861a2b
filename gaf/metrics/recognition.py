"""Action-recognition metrics: top-k accuracy and mean class accuracy.

``scores`` are per-video class scores ``(N, K)`` (probabilities, logits,
anything where higher means more likely); ``labels`` are 0-based class ids
``(N,)``.

**Ties** are broken deterministically in favour of the *lower class id*: a
video's true class ``c`` has rank ``#{j : s_j > s_c} + #{j < c : s_j = s_c}``
(0-based), and it counts as correct at ``k`` when that rank is below ``k``.
This is the order a stable descending sort gives, so it does not depend on
the device or on the sorting algorithm. With ``k >= K`` every video is
correct at ``k``.

Example
-------
>>> import numpy as np
>>> scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.3, 0.3, 0.4]])
>>> topk_accuracy(scores, np.array([1, 1, 1]), ks=(1, 2))
{'top1': 0.3333333333333333, 'top2': 0.6666666666666666}
>>> mean_class_accuracy(scores, np.array([1, 1, 0]))
0.25
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["true_class_rank", "topk_accuracy", "mean_class_accuracy", "confusion_matrix"]


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).reshape(-1)
    if s.ndim != 2:
        raise ValueError(f"scores must be (N, K), got shape {s.shape}")
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"scores have {s.shape[0]} rows but there are {y.shape[0]} labels")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must lie in [0, {s.shape[1]}), got range [{y.min()}, {y.max()}]")
    return s, y


def true_class_rank(scores, labels) -> np.ndarray:
    """0-based rank ``(N,)`` of each video's true class among its scores (ties: lower class id first)."""
    s, y = _check(scores, labels)
    true = s[np.arange(len(y)), y][:, None]
    ids = np.arange(s.shape[1])[None, :]
    return ((s > true) | ((s == true) & (ids < y[:, None]))).sum(1)


def topk_accuracy(scores, labels, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of videos whose true class is among the ``k`` highest scores, for each ``k``.

    Returns ``{"top1": ..., "top5": ...}`` (keys ``f"top{k}"``), each in [0, 1];
    0.0 for every ``k`` when there are no videos.
    """
    rank = true_class_rank(scores, labels)
    out = {}
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        out[f"top{int(k)}"] = float((rank < int(k)).mean()) if rank.size else 0.0
    return out


def confusion_matrix(scores, labels) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = top-1 prediction (ties: lower class id)."""
    s, y = _check(scores, labels)
    pred = np.argmax(s, axis=1)  # argmax returns the first (lowest) id among ties
    cm = np.zeros((s.shape[1], s.shape[1]), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def mean_class_accuracy(scores, labels) -> float:
    """Top-1 accuracy per class, averaged over the classes that occur in ``labels``.

    Classes with no video are left out of the mean (they have no accuracy);
    0.0 when there are no videos.
    """
    cm = confusion_matrix(scores, labels)
    support = cm.sum(1)
    present = support > 0
    if not present.any():
        return 0.0
    return float((np.diag(cm)[present] / support[present]).mean())
