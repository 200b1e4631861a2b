"""Optical flow: direction and size on a translating pattern, both methods, I3D preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gaf.data.flow as flow_mod
from gaf.data.flow import compute_flow, flow_to_input, resolve_method, tvl1_available
from gaf.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # small CPU kernels: one thread is fastest here

METHODS = ["builtin", pytest.param("tvl1", marks=pytest.mark.skipif(not tvl1_available(),
                                                                     reason="OpenCV contrib not installed"))]


def translating(dx: int, dy: int, frames: int = 3, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A smooth random colour texture moving ``(dx, dy)`` pixels per frame (x right, y down)."""
    H, W = size
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, (H + 64) // 6, (W + 64) // 6, generator=g)
    big = F.interpolate(coarse, size=(H + 64, W + 64), mode="bicubic", align_corners=False)[0]
    big = (big.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return np.stack([big[32 - k * dy:32 - k * dy + H, 32 - k * dx:32 - k * dx + W] for k in range(frames)])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dx,dy", [(2, -1), (-5, 3), (0, 4)])
def test_flow_of_a_translating_pattern_has_its_direction_and_size(method: str, dx: int, dy: int) -> None:
    frames = translating(dx, dy)
    flow = compute_flow(frames, method)
    assert flow.shape == (2, 2, 48, 64) and flow.dtype == np.float32
    inner = flow[:, :, 10:-10, 10:-10]  # away from the pixels entering / leaving the view
    assert np.median(inner[:, 0]) == pytest.approx(dx, abs=0.1)
    assert np.median(inner[:, 1]) == pytest.approx(dy, abs=0.1)
    assert np.abs(inner[:, 0] - dx).mean() < 0.25 and np.abs(inner[:, 1] - dy).mean() < 0.25


@pytest.mark.parametrize("method", METHODS)
def test_a_still_scene_has_no_flow(method: str) -> None:
    frames = np.repeat(translating(0, 0, frames=1), 3, axis=0)
    assert np.abs(compute_flow(frames, method)).max() < 0.05


@pytest.mark.skipif(not tvl1_available(), reason="OpenCV contrib not installed")
def test_builtin_and_tvl1_agree_on_the_same_motion() -> None:
    frames = translating(3, -2)
    a, b = compute_flow(frames, "builtin"), compute_flow(frames, "tvl1")
    inner = (slice(None), slice(None), slice(10, -10), slice(10, -10))
    assert np.abs(a[inner] - b[inner]).mean() < 0.2


def test_flow_to_input_clips_to_20_pixels_and_scales_to_unit_range() -> None:
    flow = np.array([[-45.0, -20.0, -5.0, 0.0, 10.0, 20.0, 33.0]], dtype=np.float32)
    expected = np.array([[-1.0, -1.0, -0.25, 0.0, 0.5, 1.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(flow_to_input(flow), expected)
    assert flow_to_input(flow).dtype == np.float32
    torch.testing.assert_close(flow_to_input(torch.from_numpy(flow)), torch.from_numpy(expected))


def test_auto_falls_back_to_builtin_without_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_method("auto") == ("tvl1" if tvl1_available() else "builtin")
    monkeypatch.setattr(flow_mod, "_cv2", lambda: None)
    assert resolve_method("auto") == "builtin"
    frames = translating(1, 1)
    assert compute_flow(frames, "auto").shape == (2, 2, 48, 64)
    with pytest.raises(ConfigError, match="opencv-contrib"):
        resolve_method("tvl1")
    with pytest.raises(ConfigError, match="expected auto, tvl1 or builtin"):
        resolve_method("farneback")


def test_bad_frame_arrays_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2 frames"):
        compute_flow(np.zeros((1, 8, 8, 3), np.uint8), "builtin")
    with pytest.raises(ValueError, match="uint8"):
        compute_flow(np.zeros((3, 8, 8, 3), np.float32), "builtin")
