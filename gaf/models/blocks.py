"""Building blocks shared by GAF, the detector and the recognizer: masked group norm, masked conv blocks,
the sparse-table range max of AFSD's boundary pooling, and the two-stage parameter split. Shapes:
features ``(B, C, T)``, masks ``(B, 1, T)`` or ``(B, T)``; everything in feature steps."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Conv1d", "conv1d", "MaskedGroupNorm", "StepLayerNorm", "ConvBlock", "masked_downsample", "StridedPyramid", "build_sparse_table", "range_max", "stage_parameters", "freeze_batchnorm",
           "BackboneHost"]


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0 and channels // g >= 2 or g == 1:
            return g
    return 1


def _native_backward(out_channels: int, kernel: int) -> bool:
    """Whether a convolution's backward runs faster on PyTorch's own CPU kernels than on oneDNN's: few output
    channels, where oneDNN's weight gradient takes several times longer (5-50x measured, 2 threads: a 1-channel
    1x1 convolution 8 ms against 0.1 ms, a 3-channel k=3 one 12 ms against 2.5 ms), while wide convolutions
    keep oneDNN (twice as fast at 128 channels, k=3)."""
    return out_channels < 8 or (kernel == 1 and out_channels <= 64)


class _NativeBackward(torch.autograd.Function):
    """``F.conv1d(x, weight, bias, padding=padding)`` (stride 1) whose backward runs with oneDNN switched off."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv1d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        wanted = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        before = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad.contiguous(), x, weight, [weight.shape[0]] if ctx.has_bias else None, [1], [ctx.padding], [1],
                False, [0], 1, wanted)
        finally:
            torch.backends.mkldnn.enabled = before
        return gx, gw, gb if ctx.has_bias else None, None


def conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int = 0) -> torch.Tensor:
    """``F.conv1d`` at stride 1 (no groups, no dilation), the same values; when it trains on a CPU with few
    output channels (:func:`_native_backward`), its backward avoids oneDNN, which is slow for such shapes."""
    O, _, k = weight.shape
    if (x.device.type == "cpu" and torch.is_grad_enabled() and _native_backward(O, k)
            and (x.requires_grad or weight.requires_grad) and not torch.jit.is_tracing()):
        return _NativeBackward.apply(x, weight, bias, padding)
    return F.conv1d(x, weight, bias, padding=padding)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (the same parameters and values) whose backward on a CPU avoids oneDNN for few output
    channels (:func:`conv1d`): the detector's heads, GAF's attention output and its CVAE's 1x1 layers. Stride 1,
    one group, zero padding only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1,) or self.groups != 1 or self.dilation != (1,) or self.padding_mode != "zeros" \
                or isinstance(self.padding, str):
            return super().forward(x)
        return conv1d(x, self.weight, self.bias, self.padding[0])


class MaskedGroupNorm(nn.Module):
    """GroupNorm over valid steps only: ``(B, C, T)`` with mask ``(B, 1, T)``.

    Statistics ignore padded steps, so a sequence gives the same outputs
    alone or padded inside a batch. Output is zero on padding.
    """

    def __init__(self, channels: int, groups: int | None = None, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups = groups or _groups(channels)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.group_norm(x, self.groups, self.weight, self.bias, self.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, C, T)``, ``mask (B, 1, T)`` (bool or float) -> ``(B, C, T)``."""
        B, C, T = x.shape
        m = mask.reshape(B, T).to(x.dtype)
        if bool(m.min() > 0):  # no padding: the fused kernel
            return self._norm(x)
        if torch.jit.is_tracing():  # a traced graph must hold for any mask: no length-dependent slicing
            return self._masked_norm(x, m)
        lengths = m.sum(1).round().long()
        if bool((m == (torch.arange(T, device=m.device) < lengths[:, None]).to(m.dtype)).all()):
            return self._prefix_norm(x, lengths)
        return self._masked_norm(x, m)

    def _prefix_norm(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Masks that are prefixes (valid steps ``[0, L_b)``, padding after: every window the datasets
        build): the fused kernel once per run of equal lengths, zero on padding. ``lengths (B,)`` long."""
        B, C, T = x.shape
        order = torch.argsort(lengths, stable=True)
        parts = []
        for L, count in zip(*(v.tolist() for v in torch.unique_consecutive(lengths[order], return_counts=True))):
            idx, order = order[:count], order[count:]
            if L == 0:
                parts.append((idx, x.new_zeros(count, C, T)))
                continue
            y = self._norm(x.index_select(0, idx)[..., :L])
            parts.append((idx, F.pad(y, (0, T - L)) if L < T else y))
        if len(parts) == 1:
            return parts[0][1]
        idx = torch.cat([i for i, _ in parts])
        out = torch.cat([y for _, y in parts])
        return out.index_select(0, torch.argsort(idx))

    def _masked_norm(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Any mask ``m (B, T)``: statistics from masked sums (slower than the fused kernel)."""
        B, C, T = x.shape
        G = self.groups
        mm = m[:, :, None]
        s1 = torch.bmm(x, mm).reshape(B, G, C // G).sum(2)
        s2 = torch.bmm(x * x, mm).reshape(B, G, C // G).sum(2)
        n = (mm.sum(1) * (C // G)).clamp(min=1.0)
        mean = s1 / n
        rstd = torch.rsqrt((s2 / n - mean.pow(2)).clamp(min=0.0) + self.eps)
        scale = rstd.repeat_interleave(C // G, dim=1) * self.weight  # (B, C)
        shift = self.bias - mean.repeat_interleave(C // G, dim=1) * scale
        return torch.addcmul(shift[:, :, None], x, scale[:, :, None]) * m[:, None, :]


class StepLayerNorm(nn.Module):
    """LayerNorm over the channels of each step: ``(B, C, T)`` with mask ``(B, 1, T)`` -> ``(B, C, T)``, zero on
    padding. Per step, so padding (and the rest of the video) never changes a valid step's output."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.reshape(x.shape[0], 1, x.shape[-1]).to(x.dtype)
        return self.norm(x.transpose(1, 2)).transpose(1, 2) * m


NORMS = {"group": MaskedGroupNorm, "layer": StepLayerNorm}


class ConvBlock(nn.Module):
    """Masked ``Conv1d -> norm -> ReLU``; stride 2 halves T (ceil). ``norm``: ``"group"``
    (:class:`MaskedGroupNorm`, statistics over channel groups and the window's valid steps) or ``"layer"``
    (:class:`StepLayerNorm`, over the channels of each step)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, norm: str = "group") -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.norm = NORMS[norm](cout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, cin, T)`` zero on padding, ``mask (B, 1, T)`` float -> ``(B, cout, T'), (B, 1, T')``."""
        y = self.conv(x)
        if self.stride > 1:
            mask = mask[..., :: self.stride][..., : y.shape[-1]]
        return torch.relu(self.norm(y, mask)), mask



def masked_downsample(x: torch.Tensor, mask: torch.Tensor, kernel: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Stride-2 max-pool (``kernel`` odd, padding ``kernel // 2``) over valid steps: ``x (B, E, T)``,
    ``mask (B, 1, T)`` float -> ``(B, E, ceil(T / 2))``, ``(B, 1, ceil(T / 2))``; output ``i`` is valid where
    input ``2i`` is (as the stride-2 conv blocks of the convolutional pyramid), padded outputs are 0."""
    filled = x.masked_fill(mask <= 0, float("-inf"))
    y = F.max_pool1d(filled, kernel_size=kernel, stride=2, padding=kernel // 2)
    m = mask[..., ::2][..., : y.shape[-1]]
    return torch.where(m > 0, y, torch.zeros_like(y)), m


class StridedPyramid(nn.Module):
    """A feature pyramid of stride-1 ``stem`` blocks, then per further level a masked stride-2 max-pool
    (:func:`masked_downsample`) and one ``branch`` block — the shape of the transformer and SGP backbones.

    ``forward(h (B, E, T), m (B, 1, T))`` -> per-level features ``[(B, E, T_l)]`` and masks
    ``[(B, 1, T_l)]``, level 0 first (``T_l = ceil(T / 2**l)``, ``len(branch) + 1`` levels).
    Subclasses say how a block is called in :meth:`run_block`.
    """

    def __init__(self, stem: Sequence[nn.Module], branch: Sequence[nn.Module]) -> None:
        super().__init__()
        self.stem = nn.ModuleList(stem)
        self.branch = nn.ModuleList(branch)

    def run_block(self, block: nn.Module, h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """One block on ``h (B, E, T)`` with ``m (B, 1, T)`` float -> ``(B, E, T)``."""
        return block(h, m)

    def forward(self, h: torch.Tensor, m: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        for block in self.stem:
            h = self.run_block(block, h, m)
        feats, masks = [h], [m]
        for block in self.branch:
            h, m = masked_downsample(h, m)
            h = self.run_block(block, h, m)
            feats.append(h)
            masks.append(m)
        return feats, masks


def build_sparse_table(x: torch.Tensor, *, with_index: bool = False, levels: int | None = None
                       ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sparse table of maxima: ``x (B, C, T)`` -> ``(B, C, K, T)``, ``K = floor(log2 T) + 1`` (or ``levels``,
    enough for ranges of fewer than ``2**levels`` steps).

    ``table[..., k, i] = max(x[..., i : i + 2**k])`` wherever ``i + 2**k <= T``
    (other entries are never queried). ``with_index=True`` also returns the
    ``(B, C, K, T)`` int32 table of the positions of those maxima.
    """
    B, C, T = x.shape
    K = int(T).bit_length() if levels is None else levels  # floor(log2 T) + 1 (int(): T is a tensor when traced)
    if not with_index and not torch.jit.is_tracing():  # the values alone, written level by level in place
        table = x.new_empty(B, C, K, T)
        table[:, :, 0] = x
        span = 1
        for k in range(1, K):
            prev, level = table[:, :, k - 1], table[:, :, k]
            torch.maximum(prev[..., :-span], prev[..., span:], out=level[..., :-span])
            level[..., -span:] = prev[..., -span:]
            span *= 2
        return table
    # Built level by level without writes into views, so tracing and ONNX export record it faithfully.
    rows = [x]
    indices = [torch.arange(T, dtype=torch.int32, device=x.device).expand(B, C, T)] if with_index else []
    span = 1
    for _ in range(1, K):
        prev = rows[-1]
        a, b = prev[..., :-span], prev[..., span:]
        rows.append(torch.cat([torch.maximum(a, b), prev[..., -span:]], -1))
        if with_index:
            pi = indices[-1]
            indices.append(torch.cat([torch.where(a >= b, pi[..., :-span], pi[..., span:]), pi[..., -span:]], -1))
        span *= 2
    table = torch.stack(rows, 2)
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
    Returns ``(B, C, P)``. The table has only the levels the longest range needs. Without autograd (inference)
    the maxima are read from the table; with it, the table is built without autograd and the maxima are
    gathered from ``x`` at their positions, so gradients flow to the arg-max steps exactly as for a max-pool.
    Works on CPU and GPU.
    """
    B, C, T = x.shape
    levels = None
    if not torch.jit.is_tracing() and lo.numel():  # a traced graph must hold for any ranges: every level
        levels = max(1, int((hi - lo).max()) + 1).bit_length()
    grad = torch.is_grad_enabled() and x.requires_grad
    with torch.no_grad():
        built = build_sparse_table(x.detach(), with_index=grad, levels=levels)
        table, index = built if grad else (built, None)
        K = table.shape[2]
        left, right = _query(table, lo, hi)
        vals = table.reshape(B, C, K * T)
        vl, vr = vals.gather(2, left), vals.gather(2, right)
        if index is None:
            return torch.maximum(vl, vr)
        idx = index.reshape(B, C, K * T)
        arg = torch.where(vl >= vr, idx.gather(2, left), idx.gather(2, right)).long()
    return x.gather(2, arg)


def stage_parameters(model: nn.Module, stage: str, frame: Sequence[nn.Parameter],
                     frozen: Sequence[nn.Parameter] = ()) -> list[nn.Parameter]:
    """The parameters of ``model`` one training stage updates (the two-stage schedule, paper §IV-B).

    ``"frame"``: ``frame`` (Frame-GAF's CVAE); ``"segment"``: every other
    parameter of ``model`` except ``frozen`` (e.g. a frozen backbone). The
    two never overlap.
    """
    if stage == "frame":
        return list(frame)
    if stage == "segment":
        ids = {id(p) for p in frame} | {id(p) for p in frozen}
        return [p for p in model.parameters() if id(p) not in ids]
    raise ValueError(f"stage must be 'frame' or 'segment', got {stage!r}")


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Put every BatchNorm layer of ``module`` in eval mode (running statistics fixed, affine
    parameters still trainable). Fine-tuning I3D with the small batches of video training
    otherwise drifts its statistics away from what eval mode uses. Call after ``.train()``."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return module


class BackboneHost(nn.Module):
    """Base of a model with an optional video backbone (``self.backbone``: an I3D or None) and a config
    with ``freeze_bn``: ``train()`` keeps the backbone's BatchNorm in eval mode when ``cfg.freeze_bn``."""

    backbone: nn.Module | None
    cfg: object

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.backbone is not None and getattr(self.cfg, "freeze_bn", False):
            freeze_batchnorm(self.backbone)
        return self
