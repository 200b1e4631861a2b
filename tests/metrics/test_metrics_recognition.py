"""Top-k accuracy and mean class accuracy, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gaf.metrics.recognition import confusion_matrix, mean_class_accuracy, topk_accuracy, true_class_rank

SCORES = np.array([
    [0.10, 0.60, 0.20, 0.10],  # true 1: rank 0
    [0.40, 0.30, 0.20, 0.10],  # true 2: rank 2
    [0.05, 0.15, 0.30, 0.50],  # true 0: rank 3
    [0.25, 0.25, 0.25, 0.25],  # true 2: all tied -> rank 2 (classes 0 and 1 come first)
])
LABELS = np.array([1, 2, 0, 2])


def test_topk_by_hand():
    assert true_class_rank(SCORES, LABELS).tolist() == [0, 2, 3, 2]
    acc = topk_accuracy(SCORES, LABELS, ks=(1, 2, 3, 5))
    assert acc == {"top1": 0.25, "top2": 0.25, "top3": 0.75, "top5": 1.0}


def test_ties_go_to_the_lower_class_id_whatever_the_row_order():
    tied = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    assert topk_accuracy(tied, [0, 2], ks=(1,))["top1"] == 0.5
    perm = np.array([1, 0])
    assert topk_accuracy(tied[perm], np.array([0, 2])[perm], ks=(1, 2)) == {"top1": 0.5, "top2": 0.5}


def test_mean_class_accuracy_averages_over_present_classes():
    # top-1 predictions: [1, 0, 3, 0]; class 1: 1/1, class 2: 0/2, class 0: 0/1; class 3 absent
    assert confusion_matrix(SCORES, LABELS)[2].tolist() == [2, 0, 0, 0]
    assert mean_class_accuracy(SCORES, LABELS) == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    imbalanced = np.eye(3)[[0, 0, 0, 0, 1]]  # 4 correct class-0 videos, class 2 video predicted as 1
    assert topk_accuracy(imbalanced, [0, 0, 0, 0, 2], ks=(1,))["top1"] == 0.8
    assert mean_class_accuracy(imbalanced, [0, 0, 0, 0, 2]) == 0.5


def test_empty_input_and_bad_shapes():
    assert topk_accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int)) == {"top1": 0.0, "top5": 0.0}
    assert mean_class_accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 0.0
    with pytest.raises(ValueError, match="labels"):
        topk_accuracy(SCORES, [0, 1, 2, 4])
    with pytest.raises(ValueError, match="rows"):
        topk_accuracy(SCORES, [0, 1])
    with pytest.raises(ValueError, match="k must be"):
        topk_accuracy(SCORES, LABELS, ks=(0,))
