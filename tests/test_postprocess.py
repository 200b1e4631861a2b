"""Specification of gaf.postprocess: tIoU, hard NMS, Soft-NMS, segment voting, offsets, time units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gaf.postprocess import (
    decode_offsets,
    nms,
    pairwise_tiou,
    seconds_to_steps,
    soft_nms,
    steps_to_seconds,
    vote_segments,
)

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def T(values, device="cpu", dtype=torch.float32):
    return torch.tensor(values, dtype=dtype, device=device)


# ----------------------------------------------------------------------------- tIoU


@pytest.mark.parametrize("device", DEVICES)
def test_tiou_hand_cases(device):
    a = T([[0, 10]], device)
    b = T([
        [5, 15],   # overlap 5, union 15
        [2, 4],    # contained: 2 / 10
        [20, 30],  # disjoint
        [10, 12],  # touching at 10
        [0, 10],   # identical
        [3, 3],    # zero length inside a
        [-5, 20],  # contains a: 10 / 25
    ], device)
    iou = pairwise_tiou(a, b)
    assert iou.shape == (1, 7)
    assert iou.device.type == device
    expected = T([[1 / 3, 0.2, 0.0, 0.0, 1.0, 0.0, 0.4]])
    torch.testing.assert_close(iou.cpu(), expected)


def test_tiou_is_symmetric_and_shaped_n_by_m():
    a = T([[0, 4], [1, 3]])
    b = T([[2, 6], [0, 1], [1, 3]])
    iou = pairwise_tiou(a, b)
    assert iou.shape == (2, 3)
    torch.testing.assert_close(iou, pairwise_tiou(b, a).T)
    torch.testing.assert_close(iou, T([[2 / 6, 1 / 4, 2 / 4], [1 / 5, 0.0, 1.0]]))


def test_zero_length_segments_give_zero_never_nan():
    a = T([[3, 3], [5, 5], [2, 1]])  # two points and a reversed segment
    iou = pairwise_tiou(a, a)
    assert not torch.isnan(iou).any()
    assert torch.equal(iou, torch.zeros(3, 3))


def test_tiou_gradient_stays_finite_on_zero_length():
    a = T([[3, 3], [0, 2]]).requires_grad_()
    b = T([[3, 3], [1, 4]])
    pairwise_tiou(a, b).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_tiou_empty_inputs():
    assert pairwise_tiou(torch.zeros(0, 2), T([[0, 1]])).shape == (0, 1)
    assert pairwise_tiou(T([[0, 1]]), torch.zeros(0, 2)).shape == (1, 0)


def test_tiou_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        pairwise_tiou(torch.zeros(3), torch.zeros(1, 2))


# ----------------------------------------------------------------------------- hard NMS

# 0 and 1 overlap with IoU 9/11; 3 duplicates 0 but has another class; 2 is far away.
SEGS = [[0, 10], [1, 11], [20, 30], [0, 10]]
SCORES = [0.9, 0.8, 0.7, 0.6]
LABELS = [0, 0, 0, 1]


@pytest.mark.parametrize("device", DEVICES)
def test_nms_class_agnostic_suppresses_across_classes(device):
    keep = nms(T(SEGS, device), T(SCORES, device), 0.5)
    assert keep.dtype == torch.long and keep.device.type == device
    assert keep.tolist() == [0, 2]


@pytest.mark.parametrize("device", DEVICES)
def test_nms_per_class_suppresses_only_within_a_class(device):
    labels = torch.tensor(LABELS, device=device)
    keep = nms(T(SEGS, device), T(SCORES, device), 0.5, labels=labels)
    assert keep.tolist() == [0, 2, 3]


def test_nms_threshold_boundary_is_strictly_greater():
    segs = T([[0, 3], [1, 4]])  # IoU exactly 2 / 4 = 0.5
    scores = T([0.9, 0.8])
    assert nms(segs, scores, 0.5).tolist() == [0, 1]
    assert nms(segs, scores, 0.49).tolist() == [0]


def test_nms_returns_indices_in_descending_score_order_and_respects_max_keep():
    segs = T([[0, 1], [2, 3], [4, 5], [6, 7]])
    scores = T([0.1, 0.7, 0.4, 0.9])
    assert nms(segs, scores, 0.5).tolist() == [3, 1, 2, 0]
    assert nms(segs, scores, 0.5, max_keep=2).tolist() == [3, 1]
    assert nms(segs, scores, 0.5, max_keep=0).tolist() == []


def test_nms_suppressed_segment_does_not_suppress_others():
    # 1 is suppressed by 0; 2 overlaps 1 strongly but not 0, so 2 survives.
    segs = T([[0, 10], [2, 12], [5, 15]])
    scores = T([0.9, 0.8, 0.7])
    # IoU(0,1)=8/12, IoU(0,2)=5/15, IoU(1,2)=7/13
    assert nms(segs, scores, 0.5).tolist() == [0, 2]


@pytest.mark.parametrize("device", DEVICES)
def test_nms_on_empty_input(device):
    keep = nms(torch.zeros(0, 2, device=device), torch.zeros(0, device=device), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.long and keep.device.type == device


def test_nms_ties_go_to_lower_index_and_nan_scores_are_dropped():
    segs = T([[0, 10], [0, 10], [20, 30]])
    assert nms(segs, T([0.5, 0.5, 0.1]), 0.5).tolist() == [0, 2]
    assert nms(segs, T([float("nan"), 0.5, 0.1]), 0.5).tolist() == [1, 2]


def test_nms_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="scores"):
        nms(T([[0, 1]]), T([0.1, 0.2]), 0.5)
    with pytest.raises(ValueError, match="integer"):
        nms(T([[0, 1]]), T([0.1]), 0.5, labels=T([0.0]))
    with pytest.raises(ValueError, match="max_keep"):
        nms(T([[0, 1]]), T([0.1]), 0.5, max_keep=-1)


def reference_nms(segs: list[list[float]], scores: list[float], thr: float,
                  labels: list[int] | None) -> list[int]:
    """The textbook greedy loop in plain Python."""
    def iou(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        union = max(0.0, a[1] - a[0]) + max(0.0, b[1] - b[0]) - inter
        return inter / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(iou(segs[i], segs[k]) <= thr or (labels is not None and labels[i] != labels[k]) for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("thr", [0.1, 0.3, 0.5, 0.7])
def test_nms_matches_python_reference_on_random_inputs(per_class, thr):
    rng = np.random.default_rng(int(thr * 10) + 100 * per_class)
    for _ in range(20):
        n = int(rng.integers(0, 40))
        start = rng.integers(0, 50, n)
        segs = np.stack([start, start + rng.integers(0, 15, n)], 1).astype(np.float64)
        scores = rng.integers(0, 10, n) / 10.0  # many ties on purpose
        labels = rng.integers(0, 3, n) if per_class else None
        keep = nms(torch.from_numpy(segs), torch.from_numpy(scores), thr,
                   labels=torch.from_numpy(labels) if per_class else None)
        expected = reference_nms(segs.tolist(), scores.tolist(), thr, labels.tolist() if per_class else None)
        assert keep.tolist() == expected


segment_lists = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 20), st.floats(0.0, 1.0), st.integers(0, 2)),
    min_size=0, max_size=30,
)


def unpack(rows, dtype=torch.float32):
    segs = torch.tensor([[s, s + d] for s, d, _, _ in rows], dtype=dtype).reshape(-1, 2)
    scores = torch.tensor([p for _, _, p, _ in rows], dtype=dtype)
    labels = torch.tensor([c for _, _, _, c in rows], dtype=torch.long)
    return segs, scores, labels


@settings(max_examples=60, deadline=None)
@given(rows=segment_lists, thr=st.floats(0.0, 1.0), per_class=st.booleans())
def test_nms_keeps_a_subset_in_descending_score_order(rows, thr, per_class):
    segs, scores, labels = unpack(rows)
    keep = nms(segs, scores, thr, labels=labels if per_class else None)
    kept = keep.tolist()
    assert len(set(kept)) == len(kept)
    assert all(0 <= k < len(rows) for k in kept)
    kept_scores = scores[keep]
    assert torch.all(kept_scores[:-1] >= kept_scores[1:])
    if rows:
        assert scores[keep[0]] == scores.max()


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 20)), unique=True, max_size=30),
       seed=st.integers(0, 2**16))
def test_nms_with_threshold_one_keeps_every_distinct_segment(rows, seed):
    segs = torch.tensor([[s, s + d] for s, d in rows], dtype=torch.float32).reshape(-1, 2)
    scores = torch.rand(len(rows), generator=torch.Generator().manual_seed(seed))
    keep = nms(segs, scores, 1.0)
    assert sorted(keep.tolist()) == list(range(len(rows)))


# ----------------------------------------------------------------------------- Soft-NMS


@pytest.mark.parametrize("device", DEVICES)
def test_soft_nms_gaussian_hand_computed_decay_and_reranking(device):
    segs = T([[0, 4], [2, 6], [10, 12]], device)  # IoU(0, 1) = 2 / 6
    scores = T([0.9, 0.55, 0.5], device)
    out_segs, out_scores, out_labels, keep = soft_nms(segs, scores, method="gaussian", sigma=0.5)
    decayed = 0.55 * math.exp(-((1 / 3) ** 2) / 0.5)  # 0.4404 < 0.5: segment 1 falls behind segment 2
    assert keep.tolist() == [0, 2, 1]
    assert keep.device.type == device and out_scores.device.type == device
    torch.testing.assert_close(out_scores.cpu(), T([0.9, 0.5, decayed]))
    torch.testing.assert_close(out_segs.cpu(), T([[0, 4], [10, 12], [2, 6]]))
    assert out_labels is None
    assert scores.tolist() == pytest.approx([0.9, 0.55, 0.5])  # inputs untouched


def test_soft_nms_linear_decays_only_above_threshold():
    segs = T([[0, 4], [2, 6]])  # IoU 1/3
    scores = T([0.9, 0.8])
    _, s, _, keep = soft_nms(segs, scores, method="linear", iou_threshold=0.3)
    assert keep.tolist() == [0, 1]
    torch.testing.assert_close(s, T([0.9, 0.8 * (1 - 1 / 3)]))
    _, s, _, _ = soft_nms(segs, scores, method="linear", iou_threshold=0.4)
    torch.testing.assert_close(s, T([0.9, 0.8]))


def test_soft_nms_drops_scores_that_decay_below_min_score():
    segs = T([[0, 1], [0, 1], [5, 6]])
    scores = T([0.9, 0.8, 0.0005])  # the last starts below min_score
    _, s, _, keep = soft_nms(segs, scores, method="linear", min_score=1e-3)
    assert keep.tolist() == [0]  # the duplicate decays to 0
    _, s, _, keep = soft_nms(segs, scores, method="gaussian", sigma=0.5, min_score=0.2)
    assert keep.tolist() == [0]  # 0.8 * exp(-2) = 0.108 < 0.2
    _, s, _, keep = soft_nms(segs, scores, method="gaussian", sigma=0.5, min_score=0.1)
    assert keep.tolist() == [0, 1]
    torch.testing.assert_close(s, T([0.9, 0.8 * math.exp(-2)]))


@pytest.mark.parametrize("device", DEVICES)
def test_soft_nms_per_class_leaves_other_classes_untouched(device):
    segs = T([[0, 1], [0, 1], [0, 1]], device)
    scores = T([0.9, 0.8, 0.7], device)
    labels = torch.tensor([0, 1, 0], device=device)
    _, s, out_labels, keep = soft_nms(segs, scores, labels=labels, method="linear")
    assert keep.tolist() == [0, 1]  # 2 is a same-class duplicate of 0, 1 is another class
    assert out_labels.tolist() == [0, 1]
    torch.testing.assert_close(s.cpu(), T([0.9, 0.8]))


def test_soft_nms_per_class_equals_running_each_class_alone():
    g = torch.Generator().manual_seed(0)
    n = 60
    start = torch.randint(0, 80, (n,), generator=g).float()
    segs = torch.stack([start, start + torch.randint(1, 20, (n,), generator=g).float()], 1)
    scores = torch.rand(n, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    _, s_all, _, k_all = soft_nms(segs, scores, labels=labels)
    together = {int(k): float(v) for k, v in zip(k_all, s_all)}
    alone: dict[int, float] = {}
    for c in range(3):
        idx = torch.nonzero(labels == c).flatten()
        _, s_c, _, k_c = soft_nms(segs[idx], scores[idx])
        alone.update({int(idx[k]): float(v) for k, v in zip(k_c, s_c)})
    assert together.keys() == alone.keys()
    for k in together:
        assert together[k] == pytest.approx(alone[k], rel=1e-6)


def _soft_nms_reference(segs, scores, labels, sigma, limit):
    """Soft-NMS as its definition reads: pick the best waiting candidate of all (lowest index among ties), decay
    every waiting candidate of its class, drop those below 1e-3; plain Python over float64."""
    cur, waiting, keep = list(scores), [s >= 1e-3 for s in scores], []
    while len(keep) < limit and any(waiting):
        i = max((j for j in range(len(cur)) if waiting[j]), key=lambda j: (cur[j], -j))
        keep.append(i)
        waiting[i] = False
        for j in range(len(cur)):
            if waiting[j] and labels[j] == labels[i]:
                (s1, e1), (s2, e2) = segs[i], segs[j]
                inter = max(min(e1, e2) - max(s1, s2), 0.0)
                union = (e1 - s1) + (e2 - s2) - inter
                iou = inter / union if union > 0 else 0.0
                cur[j] *= math.exp(-iou * iou / sigma)
                waiting[j] = cur[j] >= 1e-3
    return keep, [cur[i] for i in keep]


@pytest.mark.parametrize("seed", range(4))
def test_soft_nms_picks_in_the_order_of_its_definition(seed):
    """The class-by-class loop picks what the global definition picks, in the same order, under a cap, with
    tied scores across and within classes and duplicate segments."""
    g = torch.Generator().manual_seed(seed)
    n = 120
    start = torch.randint(0, 60, (n,), generator=g).double()
    segs = torch.stack([start, start + torch.randint(1, 15, (n,), generator=g).double()], 1)
    scores = torch.randint(1, 40, (n,), generator=g).double() / 40  # many ties
    labels = torch.randint(0, 4, (n,), generator=g)
    for limit in (n, 30):
        _, s, out_labels, keep = soft_nms(segs, scores, labels=labels, sigma=0.5, max_keep=limit)
        ref_keep, ref_scores = _soft_nms_reference(segs.tolist(), scores.tolist(), labels.tolist(), 0.5, limit)
        assert keep.tolist() == ref_keep
        assert s.tolist() == pytest.approx(ref_scores, rel=1e-12)
        assert out_labels.tolist() == labels[keep].tolist()


def test_soft_nms_max_keep_and_empty_input():
    segs = T([[0, 1], [2, 3], [4, 5]])
    _, s, _, keep = soft_nms(segs, T([0.3, 0.9, 0.6]), max_keep=2)
    assert keep.tolist() == [1, 2]
    out = soft_nms(torch.zeros(0, 2), torch.zeros(0), labels=torch.zeros(0, dtype=torch.long))
    assert out[0].shape == (0, 2) and out[1].shape == (0,) and out[2].shape == (0,) and out[3].shape == (0,)
    assert out[3].dtype == torch.long


def test_soft_nms_rejects_bad_settings():
    segs, scores = T([[0, 1]]), T([0.5])
    with pytest.raises(ValueError, match="method"):
        soft_nms(segs, scores, method="hard")
    with pytest.raises(ValueError, match="sigma"):
        soft_nms(segs, scores, sigma=0.0)
    with pytest.raises(ValueError, match="min_score"):
        soft_nms(segs, scores, min_score=-1.0)


def reference_soft_nms(segs, scores, method, sigma, thr, min_score):
    def iou(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        union = max(0.0, a[1] - a[0]) + max(0.0, b[1] - b[0]) - inter
        return inter / union if union > 0 else 0.0

    cur = {i: s for i, s in enumerate(scores) if s >= min_score}
    keep, kept_scores = [], []
    while cur:
        i = max(cur, key=lambda j: (cur[j], -j))
        keep.append(i)
        kept_scores.append(cur.pop(i))
        for j in list(cur):
            o = iou(segs[i], segs[j])
            cur[j] *= math.exp(-o * o / sigma) if method == "gaussian" else (1 - o if o > thr else 1.0)
            if cur[j] < min_score:
                del cur[j]
    return keep, kept_scores


@pytest.mark.parametrize("method", ["gaussian", "linear"])
def test_soft_nms_matches_python_reference_on_random_inputs(method):
    rng = np.random.default_rng(7)
    for _ in range(10):
        n = int(rng.integers(0, 40))
        start = rng.uniform(0, 50, n)
        segs = np.stack([start, start + rng.uniform(0, 15, n)], 1)
        scores = rng.uniform(0, 1, n)
        _, s, _, keep = soft_nms(torch.from_numpy(segs), torch.from_numpy(scores), method=method,
                                 sigma=0.5, iou_threshold=0.3, min_score=0.05)
        exp_keep, exp_scores = reference_soft_nms(segs.tolist(), scores.tolist(), method, 0.5, 0.3, 0.05)
        assert keep.tolist() == exp_keep
        np.testing.assert_allclose(s.numpy(), exp_scores, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(rows=segment_lists, method=st.sampled_from(["gaussian", "linear"]), per_class=st.booleans(),
       sigma=st.floats(0.05, 2.0), min_score=st.sampled_from([0.0, 1e-3, 0.1]))
def test_soft_nms_never_raises_a_score_and_picks_the_global_max_first(rows, method, per_class, sigma,
                                                                       min_score):
    segs, scores, labels = unpack(rows)
    out_segs, out_scores, out_labels, keep = soft_nms(segs, scores, labels=labels if per_class else None,
                                                      method=method, sigma=sigma, min_score=min_score)
    assert torch.all(out_scores <= scores[keep])
    assert torch.all(out_scores >= min_score)
    assert torch.all(out_scores[:-1] >= out_scores[1:])
    assert len(set(keep.tolist())) == len(keep)
    assert torch.equal(out_segs, segs[keep])
    if per_class:
        assert torch.equal(out_labels, labels[keep])
    if rows and float(scores.max()) >= min_score:
        assert int(keep[0]) == int(torch.argmax(scores))
        assert out_scores[0] == scores.max()


# ----------------------------------------------------------------------------- segment voting


@pytest.mark.parametrize("device", DEVICES)
def test_voting_hand_computed_weighted_mean(device):
    kept = T([[0, 10]], device)
    candidates = T([[0, 10], [1, 11], [5, 15], [0.5, 10]], device)
    scores = T([0.9, 0.5, 0.8, 0.2], device)
    voted = vote_segments(kept, candidates, scores, 0.7)
    # voters: itself (tIoU 1), [1, 11] (9 / 11), [0.5, 10] (0.95); [5, 15] (1 / 3) is below 0.7
    w = [0.9 * 1.0, 0.5 * 9 / 11, 0.2 * 0.95]
    start = (w[0] * 0 + w[1] * 1 + w[2] * 0.5) / sum(w)
    end = (w[0] * 10 + w[1] * 11 + w[2] * 10) / sum(w)
    assert torch.allclose(voted.cpu(), T([[start, end]]), atol=1e-6)
    assert voted.device == kept.device


def test_voting_counts_only_the_kept_segments_class_and_threshold_one_keeps_segments():
    kept, kept_labels = T([[0, 10], [20, 30]]), torch.tensor([0, 1])
    candidates = T([[0, 10], [20, 30], [1, 11], [21, 31]])
    scores, labels = T([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 1, 1, 1])
    voted = vote_segments(kept, candidates, scores, 0.5, kept_labels=kept_labels, labels=labels)
    assert torch.equal(voted[0], kept[0])  # [1, 11] overlaps it but is of class 1
    w = [0.8, 0.6 * 9 / 11]
    assert torch.allclose(voted[1], T([(w[0] * 20 + w[1] * 21) / sum(w), (w[0] * 30 + w[1] * 31) / sum(w)]))
    assert torch.equal(vote_segments(kept, candidates, scores, 1.0, kept_labels=kept_labels, labels=labels), kept)
    agnostic = vote_segments(kept, candidates, scores, 0.5)
    assert agnostic[0, 0] > 0 and agnostic[1, 0] > 20


def test_voting_in_chunks_equals_one_block_and_handles_empty_and_zero_length():
    g = torch.Generator().manual_seed(0)
    starts = torch.rand(300, generator=g) * 100
    candidates = torch.stack([starts, starts + 1 + torch.rand(300, generator=g) * 20], 1)
    scores = torch.rand(300, generator=g) + 0.01
    kept = candidates[:70]
    assert torch.allclose(vote_segments(kept, candidates, scores, 0.6, chunk=16),
                          vote_segments(kept, candidates, scores, 0.6), atol=1e-5)
    assert vote_segments(T([]).reshape(0, 2), candidates, scores, 0.7).shape == (0, 2)
    point = T([[3, 3]])
    assert torch.equal(vote_segments(point, point, T([0.5]), 0.7), point)  # no voter: unchanged


def test_voting_rejects_bad_settings():
    seg, scores = T([[0, 1]]), T([0.5])
    with pytest.raises(ValueError, match="iou_threshold"):
        vote_segments(seg, seg, scores, 0.0)
    with pytest.raises(ValueError, match="together"):
        vote_segments(seg, seg, scores, 0.7, labels=torch.tensor([0]))
    with pytest.raises(ValueError, match="scores must have shape"):
        vote_segments(seg, seg, T([0.5, 0.4]), 0.7)


# ----------------------------------------------------------------------------- offsets and units


@pytest.mark.parametrize("device", DEVICES)
def test_decode_offsets_scales_distances_by_stride(device):
    points = T([0, 8], device)
    offsets = T([[1, 2], [0.5, 3]], device)
    segs = decode_offsets(points, T([1, 2], device), offsets)
    assert segs.device.type == device
    torch.testing.assert_close(segs.cpu(), T([[-1, 2], [7, 14]]))
    torch.testing.assert_close(decode_offsets(points, 4.0, offsets).cpu(), T([[-4, 8], [6, 20]]))


def test_decode_offsets_rejects_bad_shapes():
    with pytest.raises(ValueError, match="offsets"):
        decode_offsets(T([0.0]), 1.0, T([1.0, 2.0]))
    with pytest.raises(ValueError, match="strides"):
        decode_offsets(T([0.0, 1.0]), T([1.0, 2.0, 3.0]), T([[1, 1], [1, 1]]))


def test_steps_to_seconds_uses_window_centres():
    # 25 fps, a step every 4 frames, each step sees 16 frames: step 0 is centred on frame 8.
    x = T([0, 10, 2.5])
    torch.testing.assert_close(steps_to_seconds(x, 25.0, 4, 16), T([8 / 25, 48 / 25, 18 / 25]))
    torch.testing.assert_close(seconds_to_steps(T([8 / 25, 48 / 25]), 25.0, 4, 16), T([0.0, 10.0]))


@pytest.mark.parametrize("device", DEVICES)
def test_seconds_and_steps_are_inverse(device):
    x = torch.linspace(-3, 300, 50, device=device)
    back = seconds_to_steps(steps_to_seconds(x, 30.0, 8, 16), 30.0, 8, 16)
    assert back.device.type == device
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-4)
    # integer input becomes float
    assert steps_to_seconds(torch.arange(3), 25.0, 4, 16).is_floating_point()


def test_time_conversion_rejects_bad_timing():
    with pytest.raises(ValueError, match="fps"):
        steps_to_seconds(T([0.0]), 0.0, 4, 16)
    with pytest.raises(ValueError, match="stride"):
        seconds_to_steps(T([0.0]), 25.0, 0, 16)
