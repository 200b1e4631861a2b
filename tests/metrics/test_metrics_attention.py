"""Specification of gaf.metrics.attention: λ's health against the ground-truth action mask."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gaf.engine.health import spread_indices
from gaf.metrics.attention import HEALTH_KEYS, attention_health, auroc


def brute_auroc(scores, positive):
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_of_perfect_inverted_and_uninformative_scores():
    truth = np.array([0, 0, 1, 1, 0], bool)
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9, 0.3]), truth) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.1, 0.2, 0.7]), truth) == 0.0
    assert auroc(np.full(5, 0.4), truth) == 0.5  # a flat (collapsed) attention carries no information


def test_auroc_counts_ties_one_half_like_the_mann_whitney_statistic():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 4, size=30) / 4.0  # many ties
        truth = rng.random(30) < 0.4
        if truth.all() or not truth.any():
            continue
        assert auroc(scores, truth) == pytest.approx(brute_auroc(scores, truth), abs=1e-12)


def test_auroc_is_nan_without_both_classes_and_checks_lengths():
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([True, True])))
    with pytest.raises(ValueError):
        auroc(np.array([0.1, 0.2]), np.array([True]))


def test_health_of_a_hand_made_attention():
    lam = [np.array([0.0, 0.9, 0.7, 0.02]), np.array([0.5, 0.01])]
    act = [np.array([0, 1, 1, 0], bool), np.array([1, 0], bool)]
    h = attention_health(lam, act)
    assert set(h) == set(HEALTH_KEYS)
    assert h["action_mean"] == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert h["background_mean"] == pytest.approx((0.0 + 0.02 + 0.01) / 3)
    assert h["auroc"] == 1.0
    assert h["low_fraction"] == pytest.approx(3 / 6)


def test_a_collapsed_attention_reads_as_collapsed():
    lam = [np.full(50, 0.004), np.full(30, 0.004)]
    act = [np.arange(50) % 10 < 4, np.arange(30) < 12]
    h = attention_health(lam, act)
    assert h["action_mean"] < 0.05 and h["low_fraction"] == 1.0
    assert h["auroc"] == 0.5


def test_health_rejects_mismatched_inputs_and_handles_no_windows():
    with pytest.raises(ValueError):
        attention_health([np.zeros(3)], [])
    with pytest.raises(ValueError):
        attention_health([np.zeros(3)], [np.zeros(4, bool)])
    assert all(math.isnan(v) for v in attention_health([], []).values())


def test_health_windows_are_spread_over_the_split():
    assert spread_indices(5, 10) == [0, 1, 2, 3, 4]
    picked = spread_indices(1000, 4)
    assert picked[0] == 0 and picked[-1] == 999 and len(picked) == 4
    assert spread_indices(10, 0) == []
