"""AFSD-style anchor-free temporal action detector on 1-D features.

Everything is in feature steps (the engine converts to seconds). A point
of pyramid level ``l`` sits at step ``i * 2**l`` (``2**l`` is its stride);
step ``t`` is the centre of feature ``t``.

Pipeline (:class:`AnchorFreeDetector`)::

    F (B, C, T) -> stem (conv, GN, ReLU) -> pyramid of ``num_levels`` levels
    (``backbone: conv``: stride-2 conv, GN, ReLU; ``backbone: transformer``:
    local masked self-attention blocks with max-pool downsampling,
    :mod:`gaf.models.transformer`; ``backbone: sgp``: TriDet's SGP layers with
    max-pool downsampling, :mod:`gaf.models.sgp`; ``backbone: maxpool``:
    TemporalMaxer's parameter-free stride-2 max-pools, :mod:`gaf.models.maxpool`;
    level l has ceil(T / 2**l) points)
    -> shared towers -> per point: class logits, distances to start / end
       (``boundary_head: regression``: exp(scale_l * x) * stride_l;
       ``trident``: expectations of TriDet's boundary distributions,
       :mod:`gaf.models.trident`), quality logit
    -> boundary refinement: the start / end regions of each coarse proposal
       (half-width ``boundary_ratio * length``) are max-pooled from a stride-1
       boundary map (range-max by a sparse table), which refines offsets and
       class logits (residuals, zero-initialised)
    + start / end saliency head at stride 1 (boundary supervision).

All norms are masked (:class:`~gaf.models.blocks.MaskedGroupNorm`), so a window
gives the same predictions alone or padded inside a batch.

Label assignment (:func:`gaf.models.detection_losses.assign_points`): centre sampling (a point is a
candidate of a ground truth if it lies within ``center_sample_radius *
stride`` of its centre, inside the gt) and a regression range per level
(``max(left, right)`` in ``[base * 2**(l-1), base * 2**l]``; level 0 from 0,
the last level unbounded); among several candidates, the shortest gt wins.

Losses (:func:`gaf.models.detection_losses.detection_losses`): sigmoid focal (classes, coarse and refined), GIoU (offsets, coarse
and refined), BCE on quality with target = tIoU of the refined prediction
with its gt (positives only), BCE on start / end saliency heat maps
(Gaussians at the gt boundaries).

:class:`GAFDetector` (GAF + this detector, with the two-stage losses,
``predict`` and stream fusion) is defined in :mod:`gaf.models.gaf_detector` next to
``ModelConfig`` and ``LossConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from gaf.config import AT_LEAST_ONE, NON_NEGATIVE, ODD, OPEN_UNIT, POSITIVE, ranged
from gaf.errors import ConfigError
from gaf.models.blocks import Conv1d, ConvBlock, conv1d, range_max
from gaf.models.maxpool import MaxPoolPyramid
from gaf.models.sgp import SGPPyramid
from gaf.models.transformer import TransformerPyramid
from gaf.models.trident import TridentHead

__all__ = [
    "DetectorConfig",
    "AnchorFreeDetector",
    "regression_ranges",
]


@dataclass
class DetectorConfig:
    """Settings of the anchor-free detector (units: feature steps)."""

    embed_dim: int = ranged(256, AT_LEAST_ONE)
    # the pyramid: "conv" (AFSD's strided conv blocks, the paper's base), "transformer" (ActionFormer-class:
    # local masked self-attention blocks, max-pool downsampling; gaf.models.transformer), "sgp" (TriDet-class:
    # scalable-granularity perception layers, max-pool downsampling; gaf.models.sgp) or "maxpool" (TemporalMaxer-
    # class: each level the previous one max-pooled, stride 2, no parameters; gaf.models.maxpool)
    backbone: Literal["conv", "transformer", "sgp", "maxpool"] = "conv"
    attention_window: int = ranged(19, ODD)  # transformer: each step attends to the valid steps within ±window//2
    attention_heads: int = ranged(4, AT_LEAST_ONE)  # transformer: heads (must divide embed_dim)
    sgp_window: int = ranged(1, ODD)  # sgp: the window-level branch's kernel (steps; TriDet's THUMOS14 value)
    sgp_k: float = ranged(5.0, POSITIVE)  # sgp: the wider kernel is about sgp_k * (sgp_window + 1) steps
    maxpool_kernel: int = ranged(3, ODD)  # maxpool: the pooling kernel (steps; TemporalMaxer's 3), stride 2
    # how a point's (left, right) distances are predicted: "regression" (exp(scale * x) * stride, AFSD /
    # ActionFormer) or "trident" (TriDet's Trident head: expectations of distributions over trident_bins + 1
    # neighbouring steps of the level; gaf.models.trident)
    boundary_head: Literal["regression", "trident"] = "regression"
    trident_bins: int = ranged(16, AT_LEAST_ONE)  # trident: farthest distance, in steps of the level
    # the norm of every conv block of the detector (stem, conv pyramid, towers): "group" (over channel groups and
    # the window's valid steps, AFSD's) or "layer" (over the channels of each step, ActionFormer's / TriDet's)
    norm: Literal["group", "layer"] = "group"
    stem_layers: int = ranged(2, NON_NEGATIVE)  # stride-1 conv blocks before the pyramid
    num_levels: int = ranged(6, AT_LEAST_ONE)  # pyramid levels, strides 1, 2, ..., 2**(num_levels-1)
    kernel_size: int = ranged(3, ODD)
    head_layers: int = ranged(2, NON_NEGATIVE)  # conv blocks in each shared tower (cls, reg)
    regression_range_base: float = ranged(4.0, POSITIVE)  # level l: max(left, right) in [base*2**(l-1), base*2**l]
    # "fixed": regression_range_base as set; "auto": raised at the start of training when the training set's short
    # instances are longer (gaf.data.sizing.auto_range_base: gaf data check's rule, the 5th percentile of the
    # half-lengths; never lowered), logged and kept in the checkpoint's meta; the ranges only act on training targets
    regression_ranges: Literal["fixed", "auto"] = "fixed"
    center_sample_radius: float = ranged(1.5, POSITIVE)  # in strides of the level
    prior_prob: float = ranged(0.01, OPEN_UNIT)  # initial class probability
    refine: bool = True  # AFSD boundary pooling refinement
    boundary_ratio: float = ranged(0.2, POSITIVE)  # half-width of start / end regions, fraction of proposal length (>= 1 step)
    quality_target: Literal["tiou", "centerness"] = "tiou"
    score: Literal["product", "sqrt", "cls"] = "product"  # sigmoid(cls) * sigmoid(quality), its sqrt, or cls only
    saliency: bool = True  # start / end saliency head
    saliency_sigma: float = ranged(0.1, POSITIVE)  # Gaussian width of the heat maps, fraction of gt length (>= 1 step)


def regression_ranges(base: float, num_levels: int) -> list[tuple[float, float]]:
    """``[lo, hi]`` of ``max(left, right)`` (steps of the input, not of the level) per level: level ``l``
    (stride ``2**l``) takes ``[base * 2**(l-1), base * 2**l]``, level 0 from 0, the last level unbounded."""
    n = num_levels
    return [(0.0 if l == 0 else base * 2 ** (l - 1), math.inf if l == n - 1 else base * 2 ** l) for l in range(n)]


class _Scale(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))


class AnchorFreeDetector(nn.Module):
    """The detector proper: ``forward(x (B, C, T), mask (B, T)) -> dict`` (see :meth:`forward`)."""

    def __init__(self, in_dim: int, num_outputs: int, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        E, k, n = cfg.embed_dim, cfg.kernel_size, cfg.norm
        self.num_outputs = num_outputs
        self.stem = nn.ModuleList([ConvBlock(in_dim if i == 0 else E, E, k, norm=n) for i in range(max(1, cfg.stem_layers))])
        if cfg.backbone == "transformer":
            if E % cfg.attention_heads:
                raise ConfigError(f"model.detector.attention_heads: {cfg.attention_heads} must divide "
                                  f"model.detector.embed_dim {E}")
            self.downs = None
            self.pyramid = TransformerPyramid(E, cfg.num_levels, heads=cfg.attention_heads, window=cfg.attention_window)
        elif cfg.backbone == "sgp":
            self.downs = None
            self.pyramid = SGPPyramid(E, cfg.num_levels, window=cfg.sgp_window, k=cfg.sgp_k)
        elif cfg.backbone == "maxpool":
            self.downs = None
            self.pyramid = MaxPoolPyramid(cfg.num_levels, kernel=cfg.maxpool_kernel)
        else:
            self.downs = nn.ModuleList([ConvBlock(E, E, k, stride=2, norm=n) for _ in range(cfg.num_levels - 1)])
            self.pyramid = None
        self.cls_tower = nn.ModuleList([ConvBlock(E, E, k, norm=n) for _ in range(cfg.head_layers)])
        self.reg_tower = nn.ModuleList([ConvBlock(E, E, k, norm=n) for _ in range(cfg.head_layers)])
        self.cls_head = Conv1d(E, num_outputs, k, padding=k // 2)
        if cfg.boundary_head == "trident":
            self.reg_head, self.scales = None, None
            self.trident = TridentHead(E, k, cfg.head_layers, cfg.trident_bins, norm=n)
        else:
            self.reg_head, self.scales = Conv1d(E, 2, k, padding=k // 2), _Scale(cfg.num_levels)
            self.trident = None
        self.quality_head = Conv1d(E, 1, k, padding=k // 2)
        bias = -math.log((1 - cfg.prior_prob) / cfg.prior_prob)
        nn.init.constant_(self.cls_head.bias, bias)
        for head in (self.reg_head, self.quality_head):
            if head is None:
                continue
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        self.saliency_head = Conv1d(E, 2, k, padding=k // 2) if cfg.saliency else None
        if cfg.refine:
            half = max(1, E // 2)
            self.boundary_proj = Conv1d(E, 2 * half, 1)
            self.refine_fc = Conv1d(2 * half + E, E, 1)
            self.refine_reg = Conv1d(E, 2, 1)
            self.refine_cls = Conv1d(E, num_outputs, 1)
            for head in (self.refine_reg, self.refine_cls):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def regression_ranges(self) -> list[tuple[float, float]]:
        """``[lo, hi]`` of ``max(left, right)`` (steps) per level (:func:`regression_ranges`)."""
        return regression_ranges(self.cfg.regression_range_base, self.cfg.num_levels)

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
        if self.pyramid is not None:
            feats, masks = self.pyramid(h, m)
        else:
            feats, masks = [h], [m]
            for down in self.downs:
                h, m = down(h, m)
                feats.append(h)
                masks.append(m)
        base = feats[0]
        points, strides, ranges = [], [], []
        for l, f in enumerate(feats):
            stride, n = 2 ** l, f.shape[-1]
            points.append(torch.arange(n, device=x.device, dtype=x.dtype) * stride)
            strides.append(torch.full((n,), float(stride), device=x.device, dtype=x.dtype))
            lo, hi = self.regression_ranges()[l]
            ranges.append(torch.tensor([lo, hi], device=x.device, dtype=x.dtype).expand(n, 2))
        point_strides = torch.cat(strides)
        if self.packs_levels:
            cls_all, off_all, qual_all, reg_all = self._heads_packed(feats, masks, point_strides)
        else:
            cls_all, off_all, qual_all, reg_all = self._heads_per_level(feats, masks)
        coarse_cls = cls_all.transpose(1, 2)
        coarse_off = off_all.transpose(1, 2)
        out = {
            "quality": qual_all, "points": torch.cat(points), "strides": point_strides,
            "ranges": torch.cat(ranges), "point_mask": torch.cat(masks, -1)[:, 0] > 0,
        }
        if self.saliency_head is not None:
            out["saliency"] = self.saliency_head(base)
        if self.cfg.refine:
            out["coarse_cls_logits"], out["coarse_offsets"] = coarse_cls, coarse_off
            n = x.shape[0] if refine_first is None else refine_first
            cls_r, off_r = self._refine(base[:n], mask[:n], reg_all[:n], coarse_cls[:n],
                                        coarse_off[:n], out["points"])
            out["cls_logits"] = torch.cat([cls_r, coarse_cls[n:]]) if n < x.shape[0] else cls_r
            out["offsets"] = torch.cat([off_r, coarse_off[n:]]) if n < x.shape[0] else off_r
        else:
            out["cls_logits"], out["offsets"] = coarse_cls, coarse_off
        return out

    @property
    def packs_levels(self) -> bool:
        """Whether the towers and heads run once over all levels side by side (:meth:`_heads_packed`): with
        the regression head and the per-step layer norm, whose outputs at a step depend only on the steps a
        kernel reaches, so levels set ``kernel_size // 2`` zero steps apart give each level's own outputs (not
        while tracing for export: the packing follows the lengths of the levels, which a traced graph would fix)."""
        return self.trident is None and self.cfg.norm == "layer" and not torch.jit.is_tracing()

    def _heads_per_level(self, feats: list[torch.Tensor], masks: list[torch.Tensor]
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Towers and heads level by level: ``feats [(B, E, T_l)]``, ``masks [(B, 1, T_l)]`` -> class logits
        ``(B, K', P)``, offsets ``(B, 2, P)`` (steps), quality logits ``(B, P)``, regression-tower features
        ``(B, E, P)``, the levels' points one after the other (``P = sum_l T_l``)."""
        cls, off, qual, reg_feats = [], [], [], []
        for l, (f, fm) in enumerate(zip(feats, masks)):
            c, r = self._towers(f, fm)
            stride = 2 ** l
            cls.append(self.cls_head(c))
            if self.trident is not None:
                off.append(self.trident(f, r, fm) * stride)
            else:
                assert self.reg_head is not None and self.scales is not None
                off.append(torch.exp((self.scales.scale[l] * self.reg_head(r)).clamp(max=10.0)) * stride)
            qual.append(self.quality_head(r)[:, 0])
            reg_feats.append(r)
        return torch.cat(cls, -1), torch.cat(off, -1), torch.cat(qual, -1), torch.cat(reg_feats, -1)

    def _towers(self, f: torch.Tensor, fm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The classification and regression towers on ``f (B, E, T')`` with mask ``fm (B, 1, T')``."""
        c, r = f, f
        for blk in self.cls_tower:
            c, _ = blk(c, fm)
        for blk in self.reg_tower:
            r, _ = blk(r, fm)
        return c, r

    def _heads_packed(self, feats: list[torch.Tensor], masks: list[torch.Tensor], strides: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_heads_per_level`'s outputs from one pass over all levels (``strides (P,)``: each point's
        level stride, as :meth:`forward` lists them): the levels laid end to end with
        ``kernel_size // 2`` zero (masked) steps between them, each tower and head run once (the regression and
        quality heads as one 3-channel convolution), the gaps dropped. The same sums at every point (only their
        float order may differ), a sixth of the calls: what makes the heads cheap on a CPU, whose per-call cost
        (forward and above all backward) dominates small convolutions."""
        assert self.reg_head is not None and self.scales is not None
        k = self.cfg.kernel_size
        gap = k // 2
        lengths = [f.shape[-1] for f in feats]
        parts, part_masks = [feats[0]], [masks[0]]
        for t, m in zip(feats[1:], masks[1:]):
            parts += [t.new_zeros(*t.shape[:2], gap), t]
            part_masks += [m.new_zeros(*m.shape[:2], gap), m]
        f, fm = torch.cat(parts, -1), torch.cat(part_masks, -1)
        keep = torch.cat([torch.arange(n, device=f.device) + sum(lengths[:l]) + l * gap for l, n in enumerate(lengths)])
        c, r = self._towers(f, fm)
        weight = torch.cat([self.reg_head.weight, self.quality_head.weight])
        bias = torch.cat([self.reg_head.bias, self.quality_head.bias])
        rq = conv1d(r, weight, bias, padding=k // 2).index_select(-1, keep)  # (B, 3, P)
        scale = self.scales.scale.repeat_interleave(torch.tensor(lengths, device=f.device))  # (P,) each point's level's
        off = torch.exp((scale * rq[:, :2]).clamp(max=10.0)) * strides
        return self.cls_head(c).index_select(-1, keep), off, rq[:, 2], r.index_select(-1, keep)

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
