"""1-D temporal post-processing: tIoU, hard NMS, Soft-NMS, offset decoding, time units.

Everything here is plain PyTorch on the device of its inputs (CPU or CUDA), but
Soft-NMS's greedy loop, which runs on the host in NumPy (a few hundred small steps,
where each PyTorch call would cost more than its arithmetic); nothing is compiled. Segments are ``(N, 2)`` tensors of ``[start, end]``
in any one unit (seconds or feature steps) — the ops only need the unit to be
the same across their arguments.

Time units (the ActionFormer convention): feature step ``t`` covers frames
``[t * stride, t * stride + window)`` of a video decoded at ``fps`` frames per
second, and stands for the centre of that span, at
``(t * stride + window / 2) / fps`` seconds. :func:`steps_to_seconds` and
:func:`seconds_to_steps` convert both ways with that rule.

The one home of decoding: :func:`decode_offsets` (points + regressed
distances → segments in steps; ``GAFDetector.predict_from_outputs``) and
:func:`item_steps_to_seconds` (steps of a dataset item → seconds, with the
item's own time axis; :func:`gaf.engine.evaluate.run_inference`, behind
gaf eval, gaf train's final evaluation and gaf detect).

NMS variants keep their greedy loop sequential (that is what NMS is) but each
step is a handful of ``O(N)`` array ops (Soft-NMS: ``O(N)`` of the picked class
alone), and the loop runs once per *kept* segment, not once per candidate. No ``N x N`` matrix is built, so
memory stays ``O(N)`` however many candidates a long video yields.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "item_steps_to_seconds",
    "pairwise_tiou",
    "segment_tiou",
    "nms",
    "soft_nms",
    "vote_segments",
    "decode_offsets",
    "steps_to_seconds",
    "seconds_to_steps",
]


def _check_segments(segments: Tensor, name: str) -> None:
    if segments.dim() != 2 or segments.shape[1] != 2:
        raise ValueError(f"{name}: expected a (N, 2) tensor of [start, end], got shape {tuple(segments.shape)}")


def _float(x: Tensor) -> Tensor:
    return x if x.is_floating_point() else x.float()


def pairwise_tiou(a: Tensor, b: Tensor) -> Tensor:
    """Temporal IoU of every segment of ``a`` with every segment of ``b``.

    Args:
        a: ``(N, 2)`` segments ``[start, end]``.
        b: ``(M, 2)`` segments in the same unit as ``a``.

    Returns:
        ``(N, M)`` float tensor on the device of the inputs; entry ``[i, j]``
        is ``|a_i ∩ b_j| / |a_i ∪ b_j|``. A segment of zero (or negative)
        length has IoU 0 with everything, itself included — never NaN.
        Touching segments (``a.end == b.start``) have IoU 0.
    """
    _check_segments(a, "pairwise_tiou(a)")
    _check_segments(b, "pairwise_tiou(b)")
    a, b = _float(a), _float(b)
    return segment_tiou(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1])


def segment_tiou(s1: Tensor, e1: Tensor, s2: Tensor, e2: Tensor) -> Tensor:
    """Broadcasting tIoU of ``[s1, e1]`` against ``[s2, e2]`` (0 where the union is empty)."""
    len1 = (e1 - s1).clamp(min=0)
    len2 = (e2 - s2).clamp(min=0)
    inter = (torch.minimum(e1, e2) - torch.maximum(s1, s2)).clamp(min=0)
    union = len1 + len2 - inter
    positive = union > 0
    # Divide by 1 where the union is empty so no 0/0 is ever formed (keeps gradients finite too).
    return torch.where(positive, inter / torch.where(positive, union, torch.ones_like(union)),
                       torch.zeros_like(inter))


def _tiou_one_to_many(segments: Tensor, i: Tensor) -> Tensor:
    """``(N,)`` tIoU of segment ``i`` (a 0-d device index) with every segment."""
    picked = segments.index_select(0, i.reshape(1))[0]
    return segment_tiou(picked[0], picked[1], segments[:, 0], segments[:, 1])


def _check_inputs(segments: Tensor, scores: Tensor, labels: Tensor | None, max_keep: int | None,
                  fn: str) -> None:
    _check_segments(segments, f"{fn}(segments)")
    n = segments.shape[0]
    if scores.shape != (n,):
        raise ValueError(f"{fn}: scores must have shape ({n},) to match segments, got {tuple(scores.shape)}")
    if scores.device != segments.device:
        raise ValueError(f"{fn}: segments are on {segments.device} but scores on {scores.device}")
    if labels is not None:
        if labels.shape != (n,):
            raise ValueError(f"{fn}: labels must have shape ({n},) to match segments, got {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(f"{fn}: labels must be an integer tensor, got {labels.dtype}")
        if labels.device != segments.device:
            raise ValueError(f"{fn}: segments are on {segments.device} but labels on {labels.device}")
    if max_keep is not None and max_keep < 0:
        raise ValueError(f"{fn}: max_keep must be >= 0 or None, got {max_keep}")


@torch.no_grad()
def nms(segments: Tensor, scores: Tensor, iou_threshold: float, *, labels: Tensor | None = None,
        max_keep: int | None = None) -> Tensor:
    """Greedy hard NMS on 1-D segments.

    Repeatedly keeps the highest-scoring remaining segment and removes every
    remaining segment whose tIoU with it is **strictly greater** than
    ``iou_threshold`` (so ``iou_threshold=1.0`` removes nothing but exact
    duplicates are kept too, and a pair at exactly the threshold both stay).
    Ties in score go to the lower index.

    Args:
        segments: ``(N, 2)`` ``[start, end]``, any unit.
        scores: ``(N,)`` confidences.
        iou_threshold: suppression threshold on tIoU.
        labels: optional ``(N,)`` integer class ids; when given, a segment only
            suppresses segments of its own class (per-class NMS, all classes in
            one pass). ``None``: class-agnostic.
        max_keep: stop after this many kept segments (``None``: no cap).

    Returns:
        ``(K,)`` long tensor of indices into the inputs, on their device, in
        order of descending score.
    """
    _check_inputs(segments, scores, labels, max_keep, "nms")
    device = segments.device
    n = segments.shape[0]
    limit = n if max_keep is None else min(n, max_keep)
    if limit == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    # Sort once (stable: ties go to the lower index); the greedy pass then takes
    # the first remaining position, so -inf scores and ties need no special case.
    order = torch.sort(_float(scores), descending=True, stable=True).indices
    segs = _float(segments)[order]
    labs = labels[order] if labels is not None else None
    remaining = ~torch.isnan(_float(scores)[order])  # NaN scores are never kept
    keep: list[Tensor] = []
    while len(keep) < limit:
        i = remaining.to(torch.uint8).argmax()  # first remaining position
        if not bool(remaining[i]):  # one device sync per kept segment
            break
        keep.append(i)
        suppress = _tiou_one_to_many(segs, i) > iou_threshold
        if labs is not None:
            suppress &= labs == labs[i]
        remaining &= ~suppress
        remaining[i] = False
    if not keep:
        return torch.empty(0, dtype=torch.long, device=device)
    return order[torch.stack(keep)]


@torch.no_grad()
def soft_nms(segments: Tensor, scores: Tensor, *, labels: Tensor | None = None, method: str = "gaussian",
             sigma: float = 0.5, iou_threshold: float = 0.3, min_score: float = 1e-3,
             max_keep: int | None = None) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """Soft-NMS (Bodla et al., 2017) on 1-D segments.

    Repeatedly picks the candidate with the highest *current* score, then
    decays the scores of all candidates still waiting by their tIoU with it:

    * ``"gaussian"``: ``s *= exp(-iou**2 / sigma)``;
    * ``"linear"``: ``s *= 1 - iou`` where ``iou > iou_threshold``.

    Candidates whose current score is below ``min_score`` (from the start or
    after a decay) are dropped, as are NaN scores; since ``min_score >= 0``,
    every decay multiplies a non-negative score by a factor in ``[0, 1]``, so
    scores never increase. Ties go to the lower index. With ``labels`` the
    cross-class tIoU is taken as 0, so classes are processed independently
    but in a single pass.

    Args:
        segments: ``(N, 2)`` ``[start, end]``, any unit.
        scores: ``(N,)`` confidences.
        labels: optional ``(N,)`` integer class ids (per-class Soft-NMS).
        method: ``"gaussian"`` or ``"linear"``.
        sigma: Gaussian width (``> 0``); used by ``"gaussian"``.
        iou_threshold: tIoU above which ``"linear"`` decays.
        min_score: drop threshold on the (decayed) score, ``>= 0``.
        max_keep: stop after this many kept segments (``None``: no cap).

    Returns:
        ``(segments (K, 2), scores (K,), labels (K,) or None, keep (K,))``:
        the kept segments with their decayed scores (in descending order of
        decayed score, the order they were picked), their labels if labels
        were given, and the long indices of the kept candidates in the inputs.
        All on the device of the inputs.
    """
    _check_inputs(segments, scores, labels, max_keep, "soft_nms")
    if method not in ("gaussian", "linear"):
        raise ValueError(f"soft_nms: method must be 'gaussian' or 'linear', got {method!r}")
    if method == "gaussian" and not sigma > 0:
        raise ValueError(f"soft_nms: sigma must be > 0, got {sigma}")
    if not min_score >= 0:
        raise ValueError(f"soft_nms: min_score must be >= 0, got {min_score}")
    device = segments.device
    n = segments.shape[0]
    limit = n if max_keep is None else min(n, max_keep)
    segments = _float(segments)
    picked, current = _soft_nms_host(segments.detach().cpu().numpy(), _float(scores).detach().cpu().numpy(),
                                     None if labels is None else labels.detach().cpu().numpy(), method, sigma,
                                     iou_threshold, min_score, limit)
    idx = torch.from_numpy(picked).to(device)
    kept_labels = labels[idx] if labels is not None else None
    return segments[idx], torch.from_numpy(current).to(device), kept_labels, idx


def _soft_nms_host(segments: np.ndarray, scores: np.ndarray, labels: np.ndarray | None, method: str,
                   sigma: float, iou_threshold: float, min_score: float, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`soft_nms`'s greedy loop on the host: ``(kept indices (K,) int64, their decayed scores (K,))``.

    A pick decays only its own class, so each class keeps its own candidates (in input order) and its best
    waiting one (its *head*); a step takes the best head (ties: the lowest input index, as a global arg-max
    over all candidates would) and updates that class alone: a step costs O(candidates of one class), not
    O(all candidates).
    """
    n = segments.shape[0]
    dtype = np.result_type(segments.dtype, scores.dtype)
    if not n:
        groups = []
    elif labels is None:
        groups = [np.arange(n)]
    else:
        order = np.argsort(labels, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)  # each class's, in input order
    starts = [segments[g, 0] for g in groups]
    ends = [segments[g, 1] for g in groups]
    lengths = [np.maximum(e - s, 0) for s, e in zip(starts, ends)]
    current = [scores[g].astype(dtype) for g in groups]
    waiting = [c >= min_score for c in current]  # False for NaN and negative scores: decays never raise a score
    head_score = np.full(len(groups), -np.inf)
    head_pos = np.zeros(len(groups), dtype=np.int64)

    def refresh(j: int) -> None:  # groups are never empty
        w = np.where(waiting[j], current[j], -np.inf)
        head_pos[j] = p = int(np.argmax(w))
        head_score[j] = w[p]

    for j in range(len(groups)):
        refresh(j)
    keep: list[int] = []
    kept: list[float] = []
    while len(keep) < limit:
        j = int(np.argmax(head_score))
        best = head_score[j]
        if best == -np.inf:
            break
        tied = np.flatnonzero(head_score == best)
        if tied.size > 1:  # equal heads: the lowest input index first
            j = int(tied[np.argmin([groups[t][head_pos[t]] for t in tied])])
        p = int(head_pos[j])
        keep.append(int(groups[j][p]))
        kept.append(current[j][p])
        waiting[j][p] = False
        s, e = starts[j], ends[j]
        inter = np.maximum(np.minimum(e[p], e) - np.maximum(s[p], s), 0)
        union = lengths[j][p] + lengths[j] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        if method == "gaussian":
            decay = np.exp(-(iou * iou) / sigma)
        else:
            decay = np.where(iou > iou_threshold, 1.0 - iou, 1.0).astype(iou.dtype)
        current[j] = np.where(waiting[j], current[j] * decay, current[j])
        waiting[j] &= current[j] >= min_score
        refresh(j)
    return np.asarray(keep, dtype=np.int64), np.asarray(kept, dtype=dtype)


@torch.no_grad()
def vote_segments(kept: Tensor, candidates: Tensor, scores: Tensor, iou_threshold: float, *,
                  kept_labels: Tensor | None = None, labels: Tensor | None = None, chunk: int = 256) -> Tensor:
    """Segment voting (box voting of object detection, as ActionFormer's THUMOS14 recipe decodes): each kept
    segment's boundaries become the average of the candidates that overlap it by ``tIoU >= iou_threshold``,
    weighted by ``score * tIoU``.

    Args:
        kept: ``(K, 2)`` segments that survived NMS (their scores are not changed here).
        candidates: ``(N, 2)`` every candidate before NMS, same unit; ``kept`` are among them, so each kept
            segment votes for itself (tIoU 1) and always has a voter.
        scores: ``(N,)`` the candidates' scores (before any Soft-NMS decay), ``> 0``.
        iou_threshold: in ``(0, 1]``.
        kept_labels / labels: ``(K,)`` / ``(N,)`` integer classes; given both, only candidates of a kept
            segment's class vote for it.
        chunk: kept segments per ``(chunk, N)`` tIoU block (memory ``O(chunk * N)``).

    Returns:
        ``(K, 2)`` voted segments on the device of the inputs. A kept segment with no positive-weight voter (a
        zero-length segment) is returned unchanged.
    """
    _check_segments(kept, "vote_segments(kept)")
    _check_inputs(candidates, scores, labels, None, "vote_segments")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"vote_segments: iou_threshold must be in (0, 1], got {iou_threshold}")
    if (kept_labels is None) != (labels is None):
        raise ValueError("vote_segments: give kept_labels and labels together, or neither")
    kept, candidates, scores = _float(kept), _float(candidates), _float(scores)
    out = []
    for lo in range(0, kept.shape[0], chunk):
        part = kept[lo:lo + chunk]
        iou = segment_tiou(part[:, None, 0], part[:, None, 1], candidates[None, :, 0], candidates[None, :, 1])
        weight = torch.where(iou >= iou_threshold, iou * scores[None, :], torch.zeros_like(iou))
        if labels is not None:
            assert kept_labels is not None
            weight = weight * (kept_labels[lo:lo + chunk, None] == labels[None, :])
        total = weight.sum(1, keepdim=True)
        voted = (weight @ candidates) / total.clamp(min=torch.finfo(total.dtype).tiny)
        out.append(torch.where(total > 0, voted, part))
    return torch.cat(out) if out else kept.reshape(0, 2)


def decode_offsets(points: Tensor, strides: Tensor | float, offsets: Tensor) -> Tensor:
    """Turn per-point distances into segments: ``[p - d_start * s, p + d_end * s]``.

    The one decoding of a detector's regression (``GAFDetector.predict_from_outputs``
    calls it with ``strides = 1``: its offsets are already in steps).

    Args:
        points: ``(P,)`` point positions in feature steps (of the input
            sequence, i.e. the finest level).
        strides: ``(P,)`` (or a scalar) pyramid stride of each point, in
            feature steps per unit of offset (1: the offsets are in steps).
        offsets: ``(P, 2)`` non-negative distances ``(d_start, d_end)`` in
            units of the point's stride.

    Returns:
        ``(P, 2)`` segments ``[start, end]`` in feature steps; convert to
        seconds with :func:`item_steps_to_seconds` (a dataset item's time axis)
        or :func:`steps_to_seconds` (a whole video's, from its frame timing).
    """
    if offsets.dim() != 2 or offsets.shape[1] != 2:
        raise ValueError(f"decode_offsets: offsets must have shape (P, 2), got {tuple(offsets.shape)}")
    if points.shape != offsets.shape[:1]:
        raise ValueError(f"decode_offsets: points must have shape ({offsets.shape[0]},), got {tuple(points.shape)}")
    points, offsets = _float(points), _float(offsets)
    strides = torch.as_tensor(strides, dtype=offsets.dtype, device=offsets.device)
    if strides.dim() > 0 and strides.shape != points.shape:
        raise ValueError(f"decode_offsets: strides must be a scalar or shape {tuple(points.shape)}, "
                         f"got {tuple(strides.shape)}")
    return torch.stack([points - offsets[:, 0] * strides, points + offsets[:, 1] * strides], dim=-1)


def _check_timing(fps: float, stride: int, window: int, fn: str) -> None:
    if not fps > 0:
        raise ValueError(f"{fn}: fps must be > 0, got {fps}")
    if not stride > 0:
        raise ValueError(f"{fn}: stride must be > 0 frames, got {stride}")
    if window < 0:
        raise ValueError(f"{fn}: window must be >= 0 frames, got {window}")


def item_steps_to_seconds(x: Tensor, step_seconds: float, time_offset: float) -> Tensor:
    """Positions in steps of a dataset item → seconds: ``x * step_seconds + time_offset``.

    A feature dataset's item carries its time axis (``meta["step_seconds"]``,
    ``meta["time_offset"]`` = seconds of the centre of the item's step 0), which
    also covers resized (ActivityNet-style) videos; for a video at its feature
    rate it is :func:`steps_to_seconds`'s ``(stride / fps, window / 2 / fps)``
    shifted to the item's first step. Any shape; a float tensor of the same
    shape and device.
    """
    return _float(x) * step_seconds + time_offset


def steps_to_seconds(x: Tensor, fps: float, stride: int, window: int) -> Tensor:
    """Feature-step positions → seconds: ``(x * stride + window / 2) / fps``.

    Step ``t`` covers frames ``[t * stride, t * stride + window)``; its centre,
    ``(t * stride + window / 2) / fps`` seconds, is where the step sits in time.
    Fractional steps map linearly. Any shape; returns a float tensor of the
    same shape and device.

    Args:
        x: positions in feature steps.
        fps: frames per second of the video the features were taken from.
        stride: frames between consecutive feature steps.
        window: frames seen by one feature step.
    """
    _check_timing(fps, stride, window, "steps_to_seconds")
    return item_steps_to_seconds(x, stride / fps, 0.5 * window / fps)


def seconds_to_steps(x: Tensor, fps: float, stride: int, window: int) -> Tensor:
    """Seconds → feature-step positions, the inverse of :func:`steps_to_seconds`.

    ``t = (x * fps - window / 2) / stride``; fractional, not rounded, and may be
    negative for times before the first step's centre. Any shape; returns a
    float tensor of the same shape and device.
    """
    _check_timing(fps, stride, window, "seconds_to_steps")
    return (_float(x) * fps - 0.5 * window) / stride
