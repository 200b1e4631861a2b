"""Label assignment and the detector's losses: centre sampling with per-level regression ranges, saliency
targets, and the focal / GIoU / quality / saliency / refinement terms of one batch. Units: feature steps."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from gaf import losses as L

__all__ = ["assign_points", "saliency_targets", "detection_losses"]


def assign_points(points: torch.Tensor, strides: torch.Tensor, ranges: torch.Tensor, valid: torch.Tensor,
                  segments: torch.Tensor, labels: torch.Tensor, num_outputs: int, radius: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets of one window: centre sampling + regression range per level.

    ``points, strides (P,)`` steps; ``ranges (P, 2)`` ``[lo, hi]`` of
    ``max(left, right)``; ``valid (P,)`` bool; ``segments (N, 2)`` steps;
    ``labels (N,)``. Returns ``cls_targets (P, num_outputs)`` one-hot,
    ``reg_targets (P, 2)`` (left, right) distances and ``positive (P,)``.
    A point may match several gts; it takes the shortest.
    """
    P = points.shape[0]
    cls_t = points.new_zeros(P, num_outputs)
    reg_t = points.new_zeros(P, 2)
    if segments.numel() == 0:
        return cls_t, reg_t, torch.zeros(P, dtype=torch.bool, device=points.device)
    s, e = segments[:, 0][None, :], segments[:, 1][None, :]
    p = points[:, None]
    left, right = p - s, e - p
    centre = 0.5 * (s + e)
    rad = radius * strides[:, None]
    in_centre = (p >= torch.maximum(s, centre - rad)) & (p <= torch.minimum(e, centre + rad))
    maxd = torch.maximum(left, right)
    in_range = (maxd >= ranges[:, :1]) & (maxd <= ranges[:, 1:])
    cand = in_centre & in_range & valid[:, None] & (left >= 0) & (right >= 0)
    cost = torch.where(cand, (e - s).expand_as(cand), torch.full_like(left, math.inf))
    best_cost, best = cost.min(dim=1)
    positive = torch.isfinite(best_cost)
    idx = torch.nonzero(positive, as_tuple=True)[0]
    g = best[idx]
    cls_t[idx, labels[g].long()] = 1.0
    reg_t[idx, 0] = left[idx, g]
    reg_t[idx, 1] = right[idx, g]
    return cls_t, reg_t, positive


def saliency_targets(segments: Sequence[torch.Tensor], T: int, sigma_ratio: float, device) -> torch.Tensor:
    """``(B, 2, T)`` start / end heat maps: max over gts of ``exp(-(t - b)^2 / 2 sigma^2)``,
    ``sigma = max(1, sigma_ratio * length)`` steps."""
    out = torch.zeros(len(segments), 2, T, device=device)
    t = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    for b, seg in enumerate(segments):
        if seg.numel() == 0:
            continue
        sigma = (sigma_ratio * (seg[:, 1] - seg[:, 0])).clamp(min=1.0)[None, :]
        for j in range(2):
            heat = torch.exp(-0.5 * ((t - seg[:, j][None, :]) / sigma) ** 2)
            out[b, j] = heat.max(dim=1).values
    return out


def detection_losses(out: dict[str, torch.Tensor], mask: torch.Tensor, segments: Sequence[torch.Tensor],
                     labels: Sequence[torch.Tensor], *, num_scored: int, radius: float, weights, quality_target: str,
                     saliency_sigma: float, use_saliency: bool = True, stats: dict | None = None
                     ) -> dict[str, torch.Tensor]:
    """Detector losses of one batch, each already weighted by ``weights`` (a LossConfig).

    ``out``: :meth:`AnchorFreeDetector.forward` output; ``segments`` /
    ``labels``: per window, steps (clamped here to the valid length).
    ``num_scored``: class channels that take part in the focal loss (the
    first ``num_scored`` of ``K'``; a channel beyond it is ignored).
    Returns ``{"cls", "reg", "quality", "refine", "saliency"}`` (present ones).
    ``stats``, when given, receives ``"num_pos"``: the positive-point count
    the terms were divided by (summed over ranks in distributed training).
    """
    B = mask.shape[0]
    K = out["cls_logits"].shape[-1]
    lengths = mask.long().sum(1).to(out["points"].dtype)
    cls_t, reg_t, pos = [], [], []
    clean = []
    for b in range(B):
        seg = segments[b].to(out["points"].dtype).reshape(-1, 2)
        seg = torch.stack([seg[:, 0].clamp(0, lengths[b]), seg[:, 1].clamp(0, lengths[b])], dim=1)
        keep = seg[:, 1] - seg[:, 0] > 1e-3
        seg, lab = seg[keep], labels[b].reshape(-1)[keep]
        clean.append(seg)
        c, r, p = assign_points(out["points"], out["strides"], out["ranges"], out["point_mask"][b], seg, lab, K, radius)
        cls_t.append(c)
        reg_t.append(r)
        pos.append(p)
    cls_t, reg_t, pos = torch.stack(cls_t), torch.stack(reg_t), torch.stack(pos)
    num_pos = L.loss_normalizer(pos.sum().to(reg_t.dtype))  # summed over ranks in distributed training
    if stats is not None:
        stats["num_pos"] = num_pos
    valid = out["point_mask"]
    focal = dict(alpha=weights.focal_alpha, gamma=weights.focal_gamma)

    def cls_loss(logits: torch.Tensor) -> torch.Tensor:
        return L.sigmoid_focal_loss(logits[valid][:, :num_scored], cls_t[valid][:, :num_scored], **focal) / num_pos

    def reg_loss(offsets: torch.Tensor) -> torch.Tensor:
        return L.giou_loss_1d(offsets[pos], reg_t[pos], mode=weights.reg_mode) / num_pos

    refined = "coarse_offsets" in out
    terms = {"cls": weights.cls * cls_loss(out["coarse_cls_logits" if refined else "cls_logits"]),
             "reg": weights.reg * reg_loss(out["coarse_offsets" if refined else "offsets"])}
    if refined and weights.refine > 0:
        terms["refine"] = weights.refine * (cls_loss(out["cls_logits"]) + reg_loss(out["offsets"]))
    if weights.quality > 0:
        if quality_target == "tiou":
            q_t = L.tiou_1d(out["offsets"][pos].detach(), reg_t[pos], kind="distances")
        else:
            rt = reg_t[pos]
            q_t = rt.min(-1).values / rt.max(-1).values.clamp(min=1e-6)
        # Unconditional (every rank must reach the same normalisers); the zero term keeps the head in the
        # graph when no point is positive.
        q = L.quality_bce(out["quality"][pos], q_t) + out["quality"].sum() * 0.0
        terms["quality"] = weights.quality * q
    if use_saliency and "saliency" in out and weights.saliency > 0:
        target = saliency_targets(clean, mask.shape[1], saliency_sigma, mask.device)
        terms["saliency"] = weights.saliency * L.boundary_saliency_loss(out["saliency"], target, mask,
                                                                          pos_weight=weights.saliency_pos_weight)
    return terms
