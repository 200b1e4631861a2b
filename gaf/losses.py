"""Loss functions of the detector and of GAF (plain functions, masked, stable).

Units: segments and distances are in feature steps. Shapes are given per
function; ``B`` batch, ``C`` channels, ``T`` time steps, ``N`` items.

Detector terms
    :func:`sigmoid_focal_loss`      class logits (focal loss, RetinaNet form)
    :func:`giou_loss_1d`            offsets (1 - generalized tIoU, or 1 - tIoU)
    :func:`quality_bce`             quality / localisation-confidence logits
    :func:`boundary_saliency_loss`  per-step start / end heat maps
GAF terms
    :func:`clf_loss`                Eq. 12 on the pooled f_ai / f_nai logits
    :func:`cvae_loss`               Eq. 7 (reconstruction + beta * KL to the prior N(lambda, I))
    :func:`representation_loss`     Eq. 15 (reconstruction through the frozen decoder)
    :func:`attention_bce`           L_att (ours): BCE of lambda against the ground-truth action mask
Helpers
    :func:`tiou_1d`                 element-wise tIoU of aligned segments
    :func:`loss_normalizer`         the count a mean divides by (summed over ranks in distributed training)
    :func:`masked_mean`             mean over valid entries, through :func:`loss_normalizer`

Every batch-dependent mean (over positives, valid steps or samples) divides
by :func:`loss_normalizer`. Alone, that is the count itself. Inside
:func:`synchronized_normalizers` (what the training loop uses with several
processes) it is the count summed over all ranks divided by the number of
ranks, so that after ``DistributedDataParallel`` averages the gradients, N
processes take exactly the step one process takes on the whole batch.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

import torch
import torch.nn.functional as F

__all__ = [
    "sigmoid_focal_loss",
    "tiou_1d",
    "giou_loss_1d",
    "quality_bce",
    "boundary_saliency_loss",
    "clf_loss",
    "cvae_loss",
    "representation_loss",
    "attention_bce",
    "masked_mean",
    "loss_normalizer",
    "synchronized_normalizers",
]

_SYNC_WORLD = 0  # > 0 inside synchronized_normalizers: the number of ranks


@contextmanager
def synchronized_normalizers(enabled: bool = True) -> Iterator[None]:
    """Within this block :func:`loss_normalizer` sums counts over the ranks of the process group.

    Every rank must then compute the same losses in the same order (each
    normaliser is one collective all-reduce); gaf's loss code calls
    :func:`loss_normalizer` unconditionally for that reason.
    """
    global _SYNC_WORLD
    previous = _SYNC_WORLD
    if enabled:
        import torch.distributed as dist

        _SYNC_WORLD = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 0
    try:
        yield
    finally:
        _SYNC_WORLD = previous


def loss_normalizer(count: torch.Tensor | float, *, like: torch.Tensor | None = None,
                    minimum: float = 1.0) -> torch.Tensor:
    """The divisor of a batch mean: ``max(count, minimum)``, detached.

    Under :func:`synchronized_normalizers` with W ranks: ``max(sum over
    ranks of count, minimum) / W`` (see the module docstring). ``like``
    gives dtype and device when ``count`` is a Python number.
    """
    if not isinstance(count, torch.Tensor):
        ref = like if like is not None else torch.zeros(())
        count = torch.tensor(float(count), dtype=ref.dtype, device=ref.device)
    count = count.detach()
    if _SYNC_WORLD > 1:
        import torch.distributed as dist

        total = count.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.clamp(min=minimum) / _SYNC_WORLD
    return count.clamp(min=minimum)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over entries where ``mask`` is True (0 when none is).

    ``mask`` broadcasts against ``values``.
    """
    if mask is None:
        return values.sum() / loss_normalizer(values.numel(), like=values)
    m = mask.to(values.dtype).expand_as(values)
    return (values * m).sum() / loss_normalizer(m.sum())


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25,
                       gamma: float = 2.0, reduction: Literal["sum", "mean", "none"] = "sum") -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), element-wise over any shape.

    ``FL = -alpha_t (1 - p_t)^gamma log p_t`` with ``p = sigmoid(logits)``,
    ``p_t = p`` where the target is 1 and ``1 - p`` where it is 0;
    ``alpha_t = alpha`` for targets 1 and ``1 - alpha`` for 0 (``alpha < 0``
    disables the weighting). ``targets`` are in [0, 1], same shape as
    ``logits``. The caller normalises (usually by the number of positives).
    """
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / loss_normalizer(loss.numel(), like=loss)
    return loss


def _as_segments(x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "distances":  # (left, right) distances from one shared point
        return -x[..., 0], x[..., 1]
    if kind == "segments":
        return x[..., 0], x[..., 1]
    raise ValueError(f"kind must be 'distances' or 'segments', got {kind!r}")


def tiou_1d(pred: torch.Tensor, target: torch.Tensor, *, kind: Literal["distances", "segments"] = "segments"
            ) -> torch.Tensor:
    """Element-wise temporal IoU of aligned 1-D segments, shape ``(...,)`` (0 where the union is empty).

    ``pred`` and ``target`` are ``(..., 2)``: absolute ``[start, end]``
    (``kind="segments"``) or ``(left, right)`` distances (>= 0) from a
    shared reference point (``kind="distances"``).
    """
    from gaf.postprocess import segment_tiou

    ps, pe = _as_segments(pred, kind)
    ts, te = _as_segments(target, kind)
    return segment_tiou(ps, pe, ts, te)


def giou_loss_1d(pred: torch.Tensor, target: torch.Tensor, *, kind: Literal["distances", "segments"] = "distances",
                 mode: Literal["giou", "diou", "iou"] = "giou", reduction: Literal["sum", "mean", "none"] = "sum",
                 eps: float = 1e-6) -> torch.Tensor:
    """``1 - GIoU``, ``1 - DIoU`` (or ``1 - tIoU``) of aligned 1-D segments.

    ``pred``, ``target``: ``(N, 2)``, either ``(left, right)`` distances
    from the same point (``kind="distances"``, the detector's form) or
    absolute ``[start, end]`` segments (``kind="segments"``).
    GIoU = tIoU - (hull - union) / hull, hull = the smallest segment
    covering both. Identical segments give 0, disjoint segments give a
    GIoU loss in (1, 2]; nested ones ``1 - len(inner) / len(outer)``.
    DIoU = tIoU - (centre distance / hull)^2 (Zheng et al. 2020; what
    ActionFormer trains with): unlike GIoU in 1-D, it still pulls the centres
    together when the segments overlap (there hull = union). Loss in [0, 2).
    """
    ps, pe = _as_segments(pred, kind)
    ts, te = _as_segments(target, kind)
    inter = (torch.minimum(pe, te) - torch.maximum(ps, ts)).clamp(min=0)
    union = (pe - ps).clamp(min=0) + (te - ts).clamp(min=0) - inter
    iou = inter / union.clamp(min=eps)
    if mode in ("giou", "diou"):
        hull = (torch.maximum(pe, te) - torch.minimum(ps, ts)).clamp(min=eps)
        if mode == "giou":
            iou = iou - (hull - union) / hull
        else:
            iou = iou - (((ps + pe) - (ts + te)) / (2 * hull)) ** 2
    loss = 1.0 - iou
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / loss_normalizer(loss.numel(), like=loss)
    return loss


def quality_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of quality logits against soft targets in [0, 1].

    ``logits``, ``targets``: same shape (e.g. ``(N,)``); ``mask`` optional,
    broadcastable. Returns the mean over the masked entries.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return masked_mean(loss, mask)


def boundary_saliency_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                           *, pos_weight: float = 1.0) -> torch.Tensor:
    """BCE of per-step start / end saliency logits against soft heat maps.

    ``logits``, ``targets``: ``(B, 2, T)`` (channel 0 start, 1 end; targets
    in [0, 1]); ``mask``: ``(B, T)`` True on valid steps. Boundaries are
    rare, so ``pos_weight`` scales the positive part of the loss. Returns
    the mean over valid steps and both channels.
    """
    pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=pw, reduction="none")
    return masked_mean(loss, mask[:, None, :])


def clf_loss(logits_ai: torch.Tensor, logits_nai: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Segment-GAF's video-level classification loss L_clf (Eq. 12).

    ``logits_ai``, ``logits_nai``: ``(B, K + 1)`` classifier logits of the
    pooled action feature f_ai and background feature f_nai; column ``K``
    is *background*. ``present``: ``(B, K)`` multi-hot classes present in
    each window.

    A window may hold several classes, so ``-log p(c | f_ai)`` is read as a
    multi-label sigmoid cross-entropy: f_ai's targets are the present
    classes (1) and background (0); f_nai's targets are background (1) and
    every class (0). Each is summed over the K + 1 outputs, averaged over
    the batch; the result is their sum.
    """
    present = present.to(logits_ai.dtype)
    bg_ai = torch.zeros_like(present[:, :1])
    t_ai = torch.cat([present, bg_ai], dim=1)
    t_nai = torch.cat([torch.zeros_like(present), torch.ones_like(bg_ai)], dim=1)
    n = loss_normalizer(logits_ai.shape[0], like=logits_ai)
    l_ai = F.binary_cross_entropy_with_logits(logits_ai, t_ai, reduction="none").sum() / n
    l_nai = F.binary_cross_entropy_with_logits(logits_nai, t_nai, reduction="none").sum() / n
    return l_ai + l_nai


def cvae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              prior_mean: torch.Tensor, mask: torch.Tensor, *, beta: float = 1.0
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame-GAF's CVAE loss L_CVAE (Eq. 7) with L = 1 sample.

    ``recon``, ``target``: ``(B, C, T)``; ``mu``, ``logvar``: ``(B, D, T)``
    of the encoder ``q(z_t | f_t, lambda_t)``; ``prior_mean``: ``(B, T)``
    (the prior is ``N(lambda_t * 1, I)``) or ``(B, D, T)``; ``mask``:
    ``(B, T)``.

    Per valid step, Eq. 7 is ``||f_t - f^_t||^2 + beta * KL_t`` (squared
    error summed over the C channels; KL in closed form summed over the
    latent dims: ``0.5 * sum_d (exp(logvar) + (mu - m)^2 - 1 - logvar)``).
    gaf minimises Eq. 7 divided by C, averaged over valid steps: ``recon``
    (the per-channel mean squared error) ``+ beta * kl / C``. The division
    keeps the loss scale independent of C (learning rates and gradient
    clipping carry over between 64-d and 2048-d features) while keeping
    Eq. 7's balance between the two terms; weighting the KL like one channel
    instead (``recon + beta * kl``) lets it dominate, and the posterior
    collapses onto the prior (measured: KL 0.0014 nats per step, z unused).
    Returns ``(recon + beta * kl / C, recon, kl)`` with ``kl`` in nats per
    step.
    """
    m = mask[:, None, :]
    rec = masked_mean((recon - target).pow(2).mean(1, keepdim=True), m)
    pm = prior_mean[:, None, :] if prior_mean.dim() == 2 else prior_mean
    kl_t = 0.5 * (logvar.exp() + (mu - pm).pow(2) - 1.0 - logvar).sum(1, keepdim=True)
    kl = masked_mean(kl_t, m)
    return rec + (beta / recon.shape[1]) * kl, rec, kl


def representation_loss(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_R (Eq. 15): squared error of features explained from the attention.

    ``recon``: ``(B, C, T)`` decoded by the frozen Frame-GAF decoder from
    ``(z_t, lambda_t)``; ``target``: ``(B, C, T)`` the input features;
    ``mask``: ``(B, T)``. Averaged over channels and valid steps (the paper
    sums over t; the mean keeps the weight independent of T).
    """
    return masked_mean((recon - target).pow(2).mean(1, keepdim=True), mask[:, None, :])


def attention_bce(attention: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_att (ours, not in the paper): mean BCE of λ ``(B, T)`` or ``(B, C, T)`` (each channel against the
    same target) against the action mask ``truth (B, T)`` (1 on action steps) over the valid steps of ``mask
    (B, T)``. The detector's and the recognizer's term."""
    lam = (attention[:, None, :] if attention.dim() == 2 else attention).clamp(1e-6, 1 - 1e-6)
    target = truth[:, None, :].to(lam.dtype).expand_as(lam)
    bce = F.binary_cross_entropy(lam, target, reduction="none")
    return masked_mean(bce, mask[:, None, :].expand_as(lam))
