"""AFSD-style anchor-free temporal action detector on 1-D features.

Everything is in feature steps (the engine converts to seconds). A point
of pyramid level ``l`` sits at step ``i * 2**l`` (``2**l`` is its stride);
step ``t`` is the centre of feature ``t``.

Pipeline (:class:`AnchorFreeDetector`)::

    F (B, C, T) -> stem (conv, GN, ReLU) -> pyramid of ``num_levels`` levels
    (stride-2 conv, GN, ReLU; level l has ceil(T / 2**l) points)
    -> shared towers -> per point: class logits, distances to start / end
       (exp(scale_l * x) * stride_l), quality logit
    -> boundary refinement: the start / end regions of each coarse proposal
       (half-width ``boundary_ratio * length``) are max-pooled from a stride-1
       boundary map (range-max by a sparse table), which refines offsets and
       class logits (residuals, zero-initialised)
    + start / end saliency head at stride 1 (boundary supervision).

All norms are masked (:class:`~gaf.models.gaf.MaskedGroupNorm`), so a window
gives the same predictions alone or padded inside a batch.

Label assignment (:func:`assign_points`): centre sampling (a point is a
candidate of a ground truth if it lies within ``center_sample_radius *
stride`` of its centre, inside the gt) and a regression range per level
(``max(left, right)`` in ``[base * 2**(l-1), base * 2**l]``; level 0 from 0,
the last level unbounded); among several candidates, the shortest gt wins.

Losses: sigmoid focal (classes, coarse and refined), GIoU (offsets, coarse
and refined), BCE on quality with target = tIoU of the refined prediction
with its gt (positives only), BCE on start / end saliency heat maps
(Gaussians at the gt boundaries).

:class:`GAFDetector` (GAF + this detector, with the two-stage losses,
``predict`` and stream fusion) is defined in :mod:`gaf.models.build` next to
``ModelConfig`` and ``LossConfig``, and importable from here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn as nn

from gaf import losses as L
from gaf.config import AT_LEAST_ONE, NON_NEGATIVE, ODD, OPEN_UNIT, POSITIVE, ranged
from gaf.models.gaf import ConvBlock

__all__ = [
    "DetectorConfig",
    "AnchorFreeDetector",
    "build_sparse_table",
    "range_max",
    "assign_points",
    "saliency_targets",
    "detection_losses",
]


@dataclass
class DetectorConfig:
    """Settings of the anchor-free detector (units: feature steps)."""

    embed_dim: int = ranged(256, AT_LEAST_ONE)
    stem_layers: int = ranged(2, NON_NEGATIVE)  # stride-1 conv blocks before the pyramid
    num_levels: int = ranged(6, AT_LEAST_ONE)  # pyramid levels, strides 1, 2, ..., 2**(num_levels-1)
    kernel_size: int = ranged(3, ODD)
    head_layers: int = ranged(2, NON_NEGATIVE)  # conv blocks in each shared tower (cls, reg)
    regression_range_base: float = ranged(4.0, POSITIVE)  # level l: max(left, right) in [base*2**(l-1), base*2**l]
    center_sample_radius: float = ranged(1.5, POSITIVE)  # in strides of the level
    prior_prob: float = ranged(0.01, OPEN_UNIT)  # initial class probability
    refine: bool = True  # AFSD boundary pooling refinement
    boundary_ratio: float = ranged(0.2, POSITIVE)  # half-width of start / end regions, fraction of proposal length (>= 1 step)
    quality_target: Literal["tiou", "centerness"] = "tiou"
    score: Literal["product", "sqrt", "cls"] = "product"  # sigmoid(cls) * sigmoid(quality), its sqrt, or cls only
    saliency: bool = True  # start / end saliency head
    saliency_sigma: float = ranged(0.1, POSITIVE)  # Gaussian width of the heat maps, fraction of gt length (>= 1 step)


def build_sparse_table(x: torch.Tensor, *, with_index: bool = False
                       ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sparse table of maxima: ``x (B, C, T)`` -> ``(B, C, K, T)``, ``K = floor(log2 T) + 1``.

    ``table[..., k, i] = max(x[..., i : i + 2**k])`` wherever ``i + 2**k <= T``
    (other entries are never queried). ``with_index=True`` also returns the
    ``(B, C, K, T)`` int32 table of the positions of those maxima.
    """
    B, C, T = x.shape
    K = int(T).bit_length()  # floor(log2 T) + 1 (int(): T is a tensor when traced for export)
    # Built level by level without writes into views, so tracing and ONNX export record it faithfully.
    levels = [x]
    indices = [torch.arange(T, dtype=torch.int32, device=x.device).expand(B, C, T)] if with_index else []
    span = 1
    for _ in range(1, K):
        prev = levels[-1]
        a, b = prev[..., :-span], prev[..., span:]
        levels.append(torch.cat([torch.maximum(a, b), prev[..., -span:]], -1))
        if with_index:
            pi = indices[-1]
            indices.append(torch.cat([torch.where(a >= b, pi[..., :-span], pi[..., span:]), pi[..., -span:]], -1))
        span *= 2
    table = torch.stack(levels, 2)
    index = torch.stack(indices, 2) if with_index else None
    return (table, index) if with_index else table


def _query(table: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    B, C, K, T = table.shape
    length = (hi - lo + 1).clamp(min=1)
    k = torch.floor(torch.log2(length.to(torch.float32))).long().clamp(max=K - 1)
    k = torch.where((1 << (k + 1)) <= length, k + 1, k).clamp(max=K - 1)  # float rounding at powers of two
    left = (k * T + lo)[:, None, :].expand(B, C, -1)
    right = (k * T + hi - (1 << k) + 1)[:, None, :].expand(B, C, -1)
    return left, right


def range_max(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``out[b, c, p] = max(x[b, c, lo[b, p] : hi[b, p] + 1])`` (inclusive range), via a sparse table.

    ``x (B, C, T)``; ``lo, hi (B, P)`` long with ``0 <= lo <= hi < T``.
    Returns ``(B, C, P)``. The table is built without autograd; the maxima
    are then gathered from ``x``, so gradients flow to the arg-max steps
    exactly as for a max-pool. Works on CPU and GPU.
    """
    B, C, T = x.shape
    with torch.no_grad():
        table, index = build_sparse_table(x.detach(), with_index=True)
        K = table.shape[2]
        left, right = _query(table, lo, hi)
        vals, idx = table.reshape(B, C, K * T), index.reshape(B, C, K * T)
        vl, vr = vals.gather(2, left), vals.gather(2, right)
        arg = torch.where(vl >= vr, idx.gather(2, left), idx.gather(2, right)).long()
    return x.gather(2, arg)


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


class _Scale(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))


class AnchorFreeDetector(nn.Module):
    """The detector proper: ``forward(x (B, C, T), mask (B, T)) -> dict`` (see :meth:`forward`)."""

    def __init__(self, in_dim: int, num_outputs: int, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        E, k = cfg.embed_dim, cfg.kernel_size
        self.num_outputs = num_outputs
        self.stem = nn.ModuleList([ConvBlock(in_dim if i == 0 else E, E, k) for i in range(max(1, cfg.stem_layers))])
        self.downs = nn.ModuleList([ConvBlock(E, E, k, stride=2) for _ in range(cfg.num_levels - 1)])
        self.cls_tower = nn.ModuleList([ConvBlock(E, E, k) for _ in range(cfg.head_layers)])
        self.reg_tower = nn.ModuleList([ConvBlock(E, E, k) for _ in range(cfg.head_layers)])
        self.cls_head = nn.Conv1d(E, num_outputs, k, padding=k // 2)
        self.reg_head = nn.Conv1d(E, 2, k, padding=k // 2)
        self.quality_head = nn.Conv1d(E, 1, k, padding=k // 2)
        self.scales = _Scale(cfg.num_levels)
        bias = -math.log((1 - cfg.prior_prob) / cfg.prior_prob)
        nn.init.constant_(self.cls_head.bias, bias)
        for head in (self.reg_head, self.quality_head):
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        self.saliency_head = nn.Conv1d(E, 2, k, padding=k // 2) if cfg.saliency else None
        if cfg.refine:
            half = max(1, E // 2)
            self.boundary_proj = nn.Conv1d(E, 2 * half, 1)
            self.refine_fc = nn.Conv1d(2 * half + E, E, 1)
            self.refine_reg = nn.Conv1d(E, 2, 1)
            self.refine_cls = nn.Conv1d(E, num_outputs, 1)
            for head in (self.refine_reg, self.refine_cls):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def regression_ranges(self) -> list[tuple[float, float]]:
        """``[lo, hi]`` of ``max(left, right)`` (steps) per level."""
        base, n = self.cfg.regression_range_base, self.cfg.num_levels
        return [(0.0 if l == 0 else base * 2 ** (l - 1), math.inf if l == n - 1 else base * 2 ** l) for l in range(n)]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *, refine_first: int | None = None
                ) -> dict[str, torch.Tensor]:
        """``x (B, C, T)``, ``mask (B, T)`` bool -> dict of

        ``cls_logits (B, P, K')`` refined, ``offsets (B, P, 2)`` refined
        (left, right) steps >= 0, ``coarse_cls_logits / coarse_offsets`` (only
        with refinement: before it), ``quality (B, P)`` logits, ``points (P,)``,
        ``strides (P,)``, ``ranges (P, 2)``, ``point_mask (B, P)`` bool,
        ``saliency (B, 2, T)`` logits (if enabled). ``P = sum_l ceil(T / 2**l)``.
        ``refine_first=n`` refines only the first ``n`` windows (the others
        get their coarse outputs; used for the L_nai half of a batch).
        """
        m = mask[:, None, :].to(x.dtype)
        h = x * m
        for blk in self.stem:
            h, _ = blk(h, m)
        base, feats, masks = h, [h], [m]
        for down in self.downs:
            h, m = down(h, m)
            feats.append(h)
            masks.append(m)
        cls, off, qual, reg_feats, points, strides, ranges = [], [], [], [], [], [], []
        for l, (f, fm) in enumerate(zip(feats, masks)):
            c, r = f, f
            for blk in self.cls_tower:
                c, _ = blk(c, fm)
            for blk in self.reg_tower:
                r, _ = blk(r, fm)
            stride = 2 ** l
            cls.append(self.cls_head(c))
            off.append(torch.exp((self.scales.scale[l] * self.reg_head(r)).clamp(max=10.0)) * stride)
            qual.append(self.quality_head(r)[:, 0])
            reg_feats.append(r)
            n = f.shape[-1]
            points.append(torch.arange(n, device=x.device, dtype=x.dtype) * stride)
            strides.append(torch.full((n,), float(stride), device=x.device, dtype=x.dtype))
            lo, hi = self.regression_ranges()[l]
            ranges.append(torch.tensor([lo, hi], device=x.device, dtype=x.dtype).expand(n, 2))
        coarse_cls = torch.cat(cls, -1).transpose(1, 2)
        coarse_off = torch.cat(off, -1).transpose(1, 2)
        out = {
            "quality": torch.cat(qual, -1), "points": torch.cat(points), "strides": torch.cat(strides),
            "ranges": torch.cat(ranges), "point_mask": torch.cat(masks, -1)[:, 0] > 0,
        }
        if self.saliency_head is not None:
            out["saliency"] = self.saliency_head(base)
        if self.cfg.refine:
            out["coarse_cls_logits"], out["coarse_offsets"] = coarse_cls, coarse_off
            n = x.shape[0] if refine_first is None else refine_first
            cls_r, off_r = self._refine(base[:n], mask[:n], torch.cat(reg_feats, -1)[:n], coarse_cls[:n],
                                        coarse_off[:n], out["points"])
            out["cls_logits"] = torch.cat([cls_r, coarse_cls[n:]]) if n < x.shape[0] else cls_r
            out["offsets"] = torch.cat([off_r, coarse_off[n:]]) if n < x.shape[0] else off_r
        else:
            out["cls_logits"], out["offsets"] = coarse_cls, coarse_off
        return out

    def _refine(self, base: torch.Tensor, mask: torch.Tensor, reg_feat: torch.Tensor, coarse_cls: torch.Tensor,
                coarse_off: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """AFSD boundary pooling: max over the start / end regions of each coarse proposal."""
        T = base.shape[-1]
        bmap = torch.relu(self.boundary_proj(base)) * mask[:, None, :].to(base.dtype)
        start_map, end_map = bmap.chunk(2, dim=1)
        off = coarse_off.detach()
        starts, ends = points[None, :] - off[..., 0], points[None, :] + off[..., 1]
        length = (ends - starts).clamp(min=1.0)
        w = (self.cfg.boundary_ratio * length).clamp(min=1.0)
        last = (mask.long().cumsum(1).max(1).values - 1).clamp(min=0)[:, None]  # last valid step (prefix masks)

        def region(centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            lo = torch.floor(centre - w).long().clamp(min=0)
            hi = torch.ceil(centre + w).long()
            lo, hi = torch.minimum(lo, last), torch.minimum(hi, last)
            return lo, torch.maximum(hi, lo).clamp(max=T - 1)

        pooled_s = range_max(start_map, *region(starts))
        pooled_e = range_max(end_map, *region(ends))
        h = torch.relu(self.refine_fc(torch.cat([pooled_s, pooled_e, reg_feat], dim=1)))
        delta = self.refine_reg(h).transpose(1, 2)  # (B, P, 2) in proposal lengths
        new_start = starts + delta[..., 0] * length
        new_end = ends + delta[..., 1] * length
        offsets = torch.stack([points[None, :] - new_start, new_end - points[None, :]], dim=-1).clamp(min=0.0)
        return coarse_cls + self.refine_cls(h).transpose(1, 2), offsets


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
