"""A TriDet-class feature pyramid: scalable-granularity perception (SGP) layers, strided downsampling.

Written from the TriDet paper (Shi et al., CVPR 2023). An SGP layer replaces
self-attention by two convolutional branches on the layer-normalised input
``u = LN(x)`` (per step, over channels):

* the *instant-level* branch ``fc(u) * ReLU(fc_g(mean_t u))``: each step's own
  feature, gated per channel by the video-level average — it raises the
  discriminability between steps (the paper's answer to the rank loss of
  self-attention);
* the *window-level* branch ``(conv_w(u) + conv_kw(u)) * psi(u)``: depthwise
  convolutions over a window of ``window`` steps and a wider one of about
  ``k * (window + 1)`` steps (odd), gated by a third depthwise convolution
  ``psi`` — several temporal granularities in one layer.

The layer output is ``x + instant + window + u``, followed by ``x + MLP(GN(x))``
(MLP ``E -> 1.5 E -> E``, GELU; TriDet's THUMOS14 ratio 768 / 512). The
pyramid is :class:`~gaf.models.blocks.StridedPyramid`: ``stem_blocks`` SGP
layers at stride 1, then per level a masked stride-2 max-pool and one layer.

Masked throughout: the normalised input is zeroed on padding before every
convolution (so a padded step reads zeros, as beyond the end of a lone
sequence), the video-level mean and the group norm count valid steps only,
and outputs are zero on padding — a window gives the same outputs alone or
padded inside a batch. Shapes: ``(B, E, T)`` features, ``(B, 1, T)`` float
masks.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gaf.models.blocks import MaskedGroupNorm, StepLayerNorm, StridedPyramid

__all__ = ["SGPBlock", "SGPPyramid", "depthwise", "wide_kernel"]


def depthwise(conv: nn.Conv1d, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)`` for a depthwise ``conv`` (``groups`` = channels, zero padding ``kernel // 2``), the same sums
    on a faster path: on CPU, PyTorch runs a depthwise Conv1d one channel at a time (about 1 ms per call at any
    length for 128 channels), so a 1-step kernel is the per-channel affine map it is, and a wider one goes
    through the 2-d depthwise kernel. ``bias`` (``(C,)``) replaces ``conv.bias`` when given."""
    C, k = conv.out_channels, conv.kernel_size[0]
    bias = conv.bias if bias is None else bias
    if k == 1:
        y = x * conv.weight.view(1, C, 1)
        return y + bias.view(1, C, 1) if bias is not None else y
    y = nn.functional.conv2d(x.unsqueeze(2), conv.weight.unsqueeze(2), bias, padding=(0, k // 2), groups=C)
    return y.squeeze(2)


def wide_kernel(window: int, k: float) -> int:
    """The window-level branch's wider kernel: ``round(k * (window + 1))``, made odd (steps)."""
    size = round(k * (window + 1))
    return size + 1 if size % 2 == 0 else size


class SGPBlock(nn.Module):
    """One SGP layer: ``forward(x (B, E, T), mask (B, 1, T) float) -> (B, E, T)``, zero on padding."""

    def __init__(self, dim: int, *, window: int = 1, k: float = 5.0, mlp_ratio: float = 1.5) -> None:
        super().__init__()
        wide = wide_kernel(window, k)
        self.norm = StepLayerNorm(dim)
        self.fc = nn.Conv1d(dim, dim, 1, groups=dim)  # instant level: a per-channel affine map of each step
        self.fc_global = nn.Conv1d(dim, dim, 1, groups=dim)  # its gate, from the video-level mean
        self.conv_w = nn.Conv1d(dim, dim, window, padding=window // 2, groups=dim)
        self.conv_kw = nn.Conv1d(dim, dim, wide, padding=wide // 2, groups=dim)
        self.psi = nn.Conv1d(dim, dim, window, padding=window // 2, groups=dim)
        hidden = max(1, round(mlp_ratio * dim))
        self.mlp_norm = MaskedGroupNorm(dim, groups=16 if dim % 16 == 0 else None)
        self.mlp = nn.Sequential(nn.Conv1d(dim, hidden, 1), nn.GELU(), nn.Conv1d(hidden, dim, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, E, T)``, ``mask (B, 1, T)`` float -> ``(B, E, T)``, zero on padding.

        The layer's sums (the module docstring) in as few whole-tensor kernels as they allow: the 1-step
        depthwise maps are per-channel affine maps, so each one and its product with a per-channel gate is
        one fused multiply-add, and a bias that only adds to another branch is added to that branch's bias."""
        u = self.norm(x, mask)
        mean = u.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1.0)
        gate = torch.relu(depthwise(self.fc_global, mean))  # (B, E, 1)
        if self.conv_w.kernel_size[0] == 1 and self.psi.kernel_size[0] == 1:
            E = u.shape[1]
            # instant = fc(u) * gate = u * (w_fc * gate) + b_fc * gate
            instant = torch.addcmul(self.fc.bias.view(1, E, 1) * gate, u, self.fc.weight.view(1, E, 1) * gate)
            # conv_w(u) + conv_kw(u) = u * w_w + (conv_kw without bias)(u) + (b_w + b_kw)
            wide = depthwise(self.conv_kw, u, bias=self.conv_kw.bias + self.conv_w.bias)
            branches = torch.addcmul(wide, u, self.conv_w.weight.view(1, E, 1))
            psi = torch.addcmul(self.psi.bias.view(1, E, 1), u, self.psi.weight.view(1, E, 1))
            y = torch.addcmul(instant + u, branches, psi)  # instant + window + u
        else:
            instant = depthwise(self.fc, u) * gate
            window = (depthwise(self.conv_w, u) + depthwise(self.conv_kw, u)) * depthwise(self.psi, u)
            y = instant + window + u
        x = torch.addcmul(x, y, mask)  # x + y * mask
        return (x + self.mlp(self.mlp_norm(x, mask))) * mask


class SGPPyramid(StridedPyramid):
    """``stem_blocks`` SGP layers at stride 1, then ``levels - 1`` times (masked max-pool, one SGP layer).

    ``forward(h (B, E, T), m (B, 1, T))`` -> per-level features ``[(B, E, T_l)]`` and masks ``[(B, 1, T_l)]``,
    ``T_l = ceil(T / 2**l)``.
    """

    def __init__(self, dim: int, levels: int, *, window: int = 1, k: float = 5.0, stem_blocks: int = 2) -> None:
        super().__init__([SGPBlock(dim, window=window, k=k) for _ in range(stem_blocks)],
                         [SGPBlock(dim, window=window, k=k) for _ in range(levels - 1)])

