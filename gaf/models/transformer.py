"""A transformer feature pyramid for the detector: local masked self-attention, strided downsampling.

The ActionFormer-class backbone (Zhang et al., ECCV 2022), written from the
paper: after the detector's convolutional projection, ``stem_blocks``
transformer blocks at stride 1, then one block per further pyramid level,
each after a stride-2 downsampling (a masked max-pool of kernel 3), so
level ``l`` has ``ceil(T / 2**l)`` points, as the convolutional pyramid has.

A block is pre-LN: ``x + attn(LN(x))`` then ``x + MLP(LN(x))`` (MLP ``E →
4E → E`` with GELU). Attention is multi-head and *local*: step ``t`` attends to
the valid steps in ``[t - w, t + w]`` (``window = 2w + 1`` steps), so time and
memory grow linearly with T. Everything is masked: a padded step is never a
key, its outputs are zero, and LayerNorm / MLP act per step — a window gives
the same outputs alone or padded inside a batch.

Shapes: features ``(B, E, T)`` (the detector's layout), masks ``(B, 1, T)``
float; the blocks work on ``(B, T, E)`` internally.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from gaf.models.blocks import StridedPyramid

__all__ = ["LocalSelfAttention", "TransformerBlock", "TransformerPyramid"]


class LocalSelfAttention(nn.Module):
    """Multi-head self-attention of each step over the valid steps within ``window // 2`` of it."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention_heads: {heads} must divide the detector's embed_dim {dim}")
        self.heads, self.half = heads, window // 2
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x (B, T, E)``, ``valid (B, T)`` bool -> ``(B, T, E)`` (zero on padded steps)."""
        B, T, E = x.shape
        H, w = self.heads, self.half
        d = E // H
        q, k, v = self.qkv(x).view(B, T, 3, H, d).permute(2, 0, 3, 1, 4)  # each (B, H, T, d)
        K = 2 * w + 1
        # One window offset at a time (slices of the padded sequence): memory O(T * K) for the scores,
        # never a (T, K, d) copy of the keys, and plain slices for TorchScript / ONNX export.
        k_pad, v_pad = F.pad(k, (0, 0, w, w)), F.pad(v, (0, 0, w, w))
        ok_pad = F.pad(valid, (w, w), value=False)
        scores = torch.stack([(q * k_pad[:, :, j:j + T]).sum(-1) for j in range(K)], -1) / math.sqrt(d)
        key_ok = torch.stack([ok_pad[:, j:j + T] for j in range(K)], -1)  # (B, T, K)
        scores = scores.masked_fill(~key_ok[:, None], float("-inf"))
        scores = torch.where(valid[:, None, :, None], scores, torch.zeros_like(scores))  # padded queries: no -inf row
        attn = torch.softmax(scores, dim=-1)  # (B, H, T, K)
        out = sum(attn[..., j, None] * v_pad[:, :, j:j + T] for j in range(K))  # (B, H, T, d)
        out = out.permute(0, 2, 1, 3).reshape(B, T, E)
        return self.proj(out) * valid[..., None].to(x.dtype)


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``; ``(B, T, E)`` with ``valid (B, T)``."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LocalSelfAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        keep = valid[..., None].to(x.dtype)
        x = x + self.attn(self.norm1(x), valid)
        return (x + self.mlp(self.norm2(x))) * keep


class TransformerPyramid(StridedPyramid):
    """``stem_blocks`` transformer blocks at stride 1, then ``levels - 1`` times (masked max-pool, one block).

    ``forward(h (B, E, T), m (B, 1, T))`` -> the per-level features ``[(B, E, T_l)]`` and masks
    ``[(B, 1, T_l)]``, level 0 first (``T_l = ceil(T / 2**l)``).
    """

    def __init__(self, dim: int, levels: int, *, heads: int, window: int, stem_blocks: int = 2) -> None:
        super().__init__([TransformerBlock(dim, heads, window) for _ in range(stem_blocks)],
                         [TransformerBlock(dim, heads, window) for _ in range(levels - 1)])

    def run_block(self, block: nn.Module, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return block(h.transpose(1, 2), m[:, 0] > 0).transpose(1, 2)
