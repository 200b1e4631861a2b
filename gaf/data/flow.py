"""Dense optical flow between consecutive frames, for the I3D flow stream.

Two methods, one convention:

* ``"tvl1"``: TV-L1 (Zach, Pock & Bischof 2007), OpenCV contrib's
  ``cv2.optflow.DualTVL1OpticalFlow`` with its default settings, the flow the
  I3D flow checkpoints were trained on. Needs ``opencv-contrib-python-headless``
  (``pip install 'gaf[flow]'``).
* ``"builtin"``: pure PyTorch coarse-to-fine Horn–Schunck with warping
  (Horn & Schunck 1981; image pyramid + warping as in Brox et al. 2004). It
  is smooth, dense and vectorised over all frame pairs at once; it is not
  TV-L1 (edges are blurrier), so features from an I3D trained on TV-L1 flow
  are close to, not the same as, those of the paper.
* ``"auto"``: TV-L1 when OpenCV contrib can be imported, else built-in.

Convention (both methods): ``flow[t]`` maps frame ``t`` to frame ``t + 1``;
channel 0 is the x displacement (pixels, positive = rightwards), channel 1
the y displacement (positive = downwards), so ``frame_t(y, x) ≈
frame_{t+1}(y + flow[t, 1], x + flow[t, 0])``.

:func:`flow_to_input` is the standard I3D preprocessing: clip to ±20 px and
scale to [-1, 1].
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from gaf.errors import ConfigError

__all__ = ["compute_flow", "flow_to_input", "resolve_method", "tvl1_available", "FLOW_BOUND"]

FlowMethod = Literal["auto", "tvl1", "builtin"]
FLOW_BOUND = 20.0  # pixels; I3D flow inputs are clipped to ±20 and scaled to [-1, 1]


def _cv2() -> Any | None:
    try:
        import cv2
    except ImportError:
        return None
    return cv2 if hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create") else None


def tvl1_available() -> bool:
    """True when OpenCV with the contrib ``optflow`` module can be imported."""
    return _cv2() is not None


def resolve_method(method: str) -> str:
    """``auto`` → ``tvl1`` when available else ``builtin``; ``tvl1`` without OpenCV contrib → ConfigError."""
    if method == "auto":
        return "tvl1" if tvl1_available() else "builtin"
    if method == "tvl1":
        if not tvl1_available():
            raise ConfigError("flow method 'tvl1' needs OpenCV contrib (pip install opencv-contrib-python-headless); "
                              "use --flow-method builtin or auto")
        return method
    if method == "builtin":
        return method
    raise ConfigError(f"flow method {method!r}: expected auto, tvl1 or builtin")


def _gray(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB → ``(T, H, W)`` float32 luma in [0, 1] (BT.601 weights)."""
    rgb = frames.astype(np.float32) / 255.0
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def compute_flow(frames: np.ndarray, method: FlowMethod | str = "auto") -> np.ndarray:
    """Optical flow between consecutive frames.

    ``frames``: ``(T, H, W, 3)`` uint8 RGB, ``T >= 2``. Returns float32
    ``(T - 1, 2, H, W)`` in pixels (module docstring for the convention).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[0] < 2:
        raise ValueError(f"optical flow needs at least 2 frames, got {frames.shape[0]}")
    method = resolve_method(method)
    if method == "tvl1":
        return _tvl1(frames)
    return builtin_flow(_gray(frames))


def _tvl1(frames: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    assert cv2 is not None
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    out = np.empty((len(frames) - 1, 2) + frames.shape[1:3], dtype=np.float32)
    for t in range(len(frames) - 1):
        flow = tvl1.calc(gray[t], gray[t + 1], None)  # (H, W, 2): x, y
        out[t] = flow.transpose(2, 0, 1)
    return out


# ---------------------------------------------------------------------- built-in
def _neighbour_mean(x: torch.Tensor) -> torch.Tensor:
    """Horn–Schunck's weighted mean of the 8 neighbours (1/6 edge, 1/12 corner), replicate borders."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    edges = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    corners = p[..., :-2, :-2] + p[..., :-2, 2:] + p[..., 2:, :-2] + p[..., 2:, 2:]
    return edges * (1 / 6) + corners * (1 / 12)


def _median3(x: torch.Tensor) -> torch.Tensor:
    """3×3 median filter of ``(B, C, H, W)`` (replicate borders)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    H, W = x.shape[-2:]
    stack = torch.stack([p[..., i:i + H, j:j + W] for i in range(3) for j in range(3)], dim=0)
    return stack.median(dim=0).values


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, 1, H, W)`` (replicate borders)."""
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = (g / g.sum()).to(x.device)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), g.view(1, 1, -1, 1))


def _warp(img: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``img (B, 1, H, W)`` at ``(x + u, y + v)`` (bilinear, border values).

    Also returns a ``(B, 1, H, W)`` mask, 1 where the sample lies inside the image.
    """
    B, _, H, W = img.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=img.dtype, device=img.device),
                            torch.arange(W, dtype=img.dtype, device=img.device), indexing="ij")
    sx, sy = xs + flow[:, 0], ys + flow[:, 1]
    inside = ((sx >= 0) & (sx <= W - 1) & (sy >= 0) & (sy <= H - 1)).to(img.dtype)[:, None]
    grid = torch.stack([sx * (2.0 / max(W - 1, 1)) - 1.0, sy * (2.0 / max(H - 1, 1)) - 1.0], dim=-1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True), inside


def _gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of ``(B, 1, H, W)`` (replicate borders): ``(d/dx, d/dy)``."""
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    return 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]), 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])


def builtin_flow(gray: np.ndarray, *, alpha: float = 0.08, levels: int = 5, warps: int = 3,
                 iterations: int = 40, sigma: float = 1.0) -> np.ndarray:
    """Coarse-to-fine Horn–Schunck flow between consecutive ``(T, H, W)`` float images in [0, 1].

    At each pyramid level (factor 2, coarsest ≥ 8 px) the second image is
    warped by the current flow ``w``, the brightness constancy is linearised
    around ``w`` and ``iterations`` Jacobi sweeps of Horn–Schunck solve for
    the total flow; this is repeated ``warps`` times. ``alpha`` weighs
    smoothness against the data term (intensities in [0, 1]). Returns float32
    ``(T - 1, 2, H, W)``.
    """
    with torch.no_grad():
        img = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32))[:, None]
        img = _blur(img, sigma)
        first, second = img[:-1], img[1:]
        pyramid = [(first, second)]
        while len(pyramid) < levels and min(pyramid[-1][0].shape[-2:]) >= 16:
            a, b = pyramid[-1]
            pyramid.append((F.avg_pool2d(a, 2, ceil_mode=True), F.avg_pool2d(b, 2, ceil_mode=True)))
        flow = torch.zeros(first.shape[0], 2, *pyramid[-1][0].shape[-2:], dtype=img.dtype)
        alpha2 = alpha * alpha
        for a, b in reversed(pyramid):
            if flow.shape[-2:] != a.shape[-2:]:
                scale = torch.tensor([a.shape[-1] / flow.shape[-1], a.shape[-2] / flow.shape[-2]]).view(1, 2, 1, 1)
                flow = F.interpolate(flow, size=a.shape[-2:], mode="bilinear", align_corners=False) * scale
            for _ in range(warps):
                bw, inside = _warp(b, flow)
                ix, iy = _gradients(0.5 * (a + bw))
                ix, iy, it = ix * inside, iy * inside, (bw - a) * inside  # no data term where w leaves the image
                rho = it - ix * flow[:, :1] - iy * flow[:, 1:]  # constraint: ix*u + iy*v + rho = 0
                grad = torch.cat([ix, iy], dim=1)
                denom = alpha2 + ix * ix + iy * iy
                for _ in range(iterations):
                    avg = _neighbour_mean(flow)
                    residual = (grad * avg).sum(dim=1, keepdim=True) + rho
                    flow = avg - grad * (residual / denom)
                flow = _median3(flow)  # removes outliers of the linearisation (Sun et al. 2010)
        return flow.numpy().astype(np.float32, copy=False)


def flow_to_input(flow: np.ndarray | torch.Tensor, bound: float = FLOW_BOUND) -> np.ndarray | torch.Tensor:
    """I3D flow preprocessing: clip to ``±bound`` pixels and scale to [-1, 1] (same shape, float32)."""
    if isinstance(flow, torch.Tensor):
        return flow.float().clamp(-bound, bound) / bound
    return (np.clip(np.asarray(flow, dtype=np.float32), -bound, bound) / np.float32(bound)).astype(np.float32)
