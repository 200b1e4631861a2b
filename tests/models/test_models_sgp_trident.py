"""The SGP pyramid (gaf.models.sgp), the Trident head (gaf.models.trident), the per-step layer norm of the
detector's blocks (model.detector.norm), and the detector on every backbone and boundary head: shapes and
padding invariance (the transformer pyramid's own blocks: test_models_transformer.py)."""

from __future__ import annotations

import pytest
import torch

from gaf.models.detector import DetectorConfig
from gaf.models.gaf import GAFConfig
from gaf.models.gaf_detector import ModelConfig, build_model
from gaf.models.sgp import SGPBlock, depthwise, wide_kernel
from gaf.models.trident import neighbour_responses, trident_distances


def sgp_model(*, gaf: bool = True, boundary_head: str = "trident", backbone: str = "sgp", norm: str = "group",
              seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(gaf=GAFConfig(enabled=gaf, attention_dim=16, reduce_dim=8, hidden_dim=16, latent_dim=4),
                      detector=DetectorConfig(embed_dim=16, num_levels=4, head_layers=1, backbone=backbone,
                                              sgp_window=3, sgp_k=2.0, boundary_head=boundary_head, trident_bins=6,
                                              attention_window=5, attention_heads=2, norm=norm))
    return build_model(cfg, in_dim=8, num_classes=3, max_seq_len=64)


def padded(T: int = 50, valid: int = 37):
    torch.manual_seed(3)
    x = torch.randn(2, 8, T)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, valid:] = False
    return x, mask


# --- the Trident head's decoding on hand-made distributions ---------------------------------------------------

def test_neighbour_responses_read_the_candidate_steps_and_zero_beyond_the_sequence():
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    start = neighbour_responses(r, 2, "start")  # column d: r[t - d]
    end = neighbour_responses(r, 2, "end")  # column d: r[t + d]
    assert start[0].tolist() == [[1, 0, 0], [2, 1, 0], [3, 2, 1], [4, 3, 2], [5, 4, 3]]
    assert end[0].tolist() == [[1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 0], [5, 0, 0]]
    with pytest.raises(ValueError, match="side"):
        neighbour_responses(r, 2, "middle")


def test_a_sharp_boundary_response_pulls_every_point_in_reach_to_it():
    T, bins = 12, 4
    start = torch.zeros(1, T)
    end = torch.zeros(1, T)
    start[0, 3] = 50.0  # a start at step 3
    end[0, 8] = 50.0  # an end at step 8
    centre = torch.zeros(1, T, 2, bins + 1)
    d = trident_distances(centre, start, end)[0]  # (T, 2) level steps
    for t in range(3, 3 + bins + 1):  # the start is within reach of steps 3..7
        assert d[t, 0] == pytest.approx(t - 3, abs=1e-4)
    for t in range(8 - bins, 9):  # the end is within reach of steps 4..8
        assert d[t, 1] == pytest.approx(8 - t, abs=1e-4)
    # out of reach, the distribution stays uniform over 0..bins: the expectation is bins / 2
    assert d[0, 0] == pytest.approx(bins / 2, abs=1e-4) and d[11, 1] == pytest.approx(bins / 2, abs=1e-4)


def test_the_centre_logits_shift_the_expectation_and_flat_responses_leave_it_to_them():
    T, bins = 6, 4
    flat = torch.zeros(1, T)
    centre = torch.zeros(1, T, 2, bins + 1)
    centre[0, :, 0, 1] = 50.0  # left: one step
    centre[0, :, 1, 1] = 50.0  # right: equal logits at 1 and 3 -> expectation 2
    centre[0, :, 1, 3] = 50.0
    d = trident_distances(centre, flat, flat)[0]
    assert torch.allclose(d[:, 0], torch.ones(T), atol=1e-4)
    assert torch.allclose(d[:, 1], torch.full((T,), 2.0), atol=1e-4)
    # a boundary response and a centre logit add: a weaker start at step 0 against the centre's 1-step belief
    start = torch.zeros(1, T)
    start[0, 0] = 50.0 + torch.log(torch.tensor(3.0)).item()  # three times the weight of distance 1 at t = 2
    two = trident_distances(centre, start, flat)[0, 2, 0]
    assert two == pytest.approx((1 * 1 + 2 * 3) / 4, abs=1e-3)


def test_distances_stay_within_the_bins():
    torch.manual_seed(0)
    d = trident_distances(torch.randn(2, 9, 2, 6) * 10, torch.randn(2, 9) * 10, torch.randn(2, 9) * 10)
    assert ((d >= 0) & (d <= 5)).all()


# --- the SGP layer ---------------------------------------------------------------------------------------------

def test_the_wide_kernel_is_odd_and_about_k_windows():
    assert wide_kernel(1, 5.0) == 11 and wide_kernel(3, 1.5) == 7 and wide_kernel(3, 2.0) == 9


@pytest.mark.parametrize("kernel,bias", [(1, True), (1, False), (3, True), (11, True), (11, False)])
def test_the_depthwise_fast_path_is_the_convolution_in_value_and_gradient(kernel, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, kernel, padding=kernel // 2, groups=6, bias=bias)
    x = torch.randn(2, 6, 17, requires_grad=True)
    fast, ref = depthwise(conv, x), conv(x)
    assert fast.shape == ref.shape and torch.allclose(fast, ref, atol=1e-6)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), [conv.weight])
    (g_ref,) = torch.autograd.grad(ref.square().sum(), [conv.weight])
    assert torch.allclose(g_fast, g_ref, atol=1e-5)


def test_an_sgp_layer_reads_only_its_windows_and_never_padding():
    torch.manual_seed(0)
    block = SGPBlock(16, window=3, k=2.0).eval()  # reach: the wide kernel, 9 steps -> ±4
    x = torch.randn(1, 16, 30)
    mask = torch.ones(1, 1, 30)
    base = block(x, mask)
    far = x.clone()
    far[0, :, 20:] += 5.0
    moved = block(far, mask)
    # far steps reach the near ones only through the video-level mean of the instant branch
    assert not torch.allclose(base[0, :, :10], moved[0, :, :10])
    mask[0, 0, 24:] = 0
    padded = block(far, mask)
    assert (padded[0, :, 24:] == 0).all()
    assert torch.allclose(padded[0, :, :24], block(far[:, :, :24], mask[:, :, :24])[0], atol=1e-5)


@pytest.mark.parametrize("window", [1, 3])
def test_an_sgp_layer_is_its_defining_sums_in_value_and_gradient(window):
    """The layer's fused kernels (one multiply-add per 1-step depthwise map and gate) compute the module
    docstring's ``x + instant + window + u``, then ``x + MLP(GN(x))``, masked, on a padded batch."""
    torch.manual_seed(1)
    block = SGPBlock(16, window=window, k=2.0)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    mask = torch.ones(2, 1, 40)
    mask[1, :, 29:] = 0
    x = torch.randn(2, 16, 40, requires_grad=True)

    def defined(h: torch.Tensor) -> torch.Tensor:
        u = block.norm(h, mask)
        mean = u.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
        instant = block.fc(u) * torch.relu(block.fc_global(mean))
        branch = (block.conv_w(u) + block.conv_kw(u)) * block.psi(u)
        h = h + (instant + branch + u) * mask
        return (h + block.mlp(block.mlp_norm(h, mask))) * mask

    got, want = block(x * mask, mask), defined(x * mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    weights = torch.randn_like(got)
    params = [x, *block.parameters()]
    for a, b in zip(torch.autograd.grad((got * weights).sum(), params),
                    torch.autograd.grad((want * weights).sum(), params)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


# --- the detector on them --------------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone,boundary_head", [("sgp", "trident"), ("sgp", "regression"), ("conv", "trident"),
                                                   ("transformer", "trident"), ("transformer", "regression"),
                                                   ("maxpool", "regression"), ("maxpool", "trident")])
def test_shapes_points_and_masks_match_the_convolutional_pyramid(backbone, boundary_head):
    x, mask = padded()
    out = sgp_model(backbone=backbone, boundary_head=boundary_head)(x, mask)
    P = 50 + 25 + 13 + 7
    assert out["cls_logits"].shape == (2, P, 3) and out["offsets"].shape == (2, P, 2)
    assert (out["offsets"] >= 0).all()
    assert out["points"][50:75].tolist() == [2.0 * i for i in range(25)]
    assert int(out["point_mask"][1].sum()) == 37 + 19 + 10 + 5


@pytest.mark.parametrize("gaf", [True, False])
@pytest.mark.parametrize("backbone,boundary_head,norm", [("sgp", "trident", "group"), ("sgp", "regression", "group"),
                                                        ("sgp", "trident", "layer"), ("conv", "regression", "layer"),
                                                        ("transformer", "regression", "group"),
                                                        ("maxpool", "regression", "group"), ("maxpool", "trident", "layer")])
def test_padding_never_changes_the_outputs_of_valid_steps(gaf, backbone, boundary_head, norm):
    m = sgp_model(gaf=gaf, backbone=backbone, boundary_head=boundary_head, norm=norm).eval()
    x, mask = padded()
    n = int(mask[1].sum())
    with torch.no_grad():
        batched = m(x, mask)
        noisy = x.clone()
        noisy[1, :, n:] = 100.0  # whatever the padding holds
        noisy_out = m(noisy, mask)
        alone = m(x[1:2, :, :n], mask[1:2, :n])
    valid = batched["point_mask"][1]
    for key, atol in (("cls_logits", 1e-5), ("offsets", 1e-4)):
        assert torch.allclose(batched[key][1][valid], noisy_out[key][1][valid], atol=atol), key
        assert torch.allclose(batched[key][1][valid], alone[key][0], atol=atol), key


def test_trident_offsets_reach_at_most_bins_strides_and_the_boundary_towers_read_detached_features():
    det = sgp_model(gaf=False).detector
    x, mask = padded()
    out = det(x, mask)
    reach = 6 * out["strides"]
    assert (out["coarse_offsets"] <= reach[None, :, None] + 1e-4).all()
    out["coarse_offsets"].sum().backward()
    assert det.reg_head is None and det.scales is None
    assert det.trident.start_out.weight.grad.abs().sum() > 0  # the boundary heads learn from the offsets
    assert det.trident.end_tower[0].conv.weight.grad.abs().sum() > 0
    # but their input is detached: only the centre head's input (the reg tower's output) carries gradient back
    feat = torch.randn(1, 16, 20, requires_grad=True)
    reg_feat = torch.randn(1, 16, 20, requires_grad=True)
    det.trident(feat, reg_feat, torch.ones(1, 1, 20)).sum().backward()
    assert feat.grad is None and reg_feat.grad.abs().sum() > 0


def test_the_layer_norm_acts_per_step_and_is_the_detector_blocks_norm():
    from gaf.models.blocks import StepLayerNorm

    torch.manual_seed(0)
    norm = StepLayerNorm(6)
    x = torch.randn(2, 6, 9)
    mask = torch.ones(2, 1, 9)
    mask[1, 0, 5:] = 0
    y = norm(x, mask)
    assert torch.allclose(y[0].mean(0), torch.zeros(9), atol=1e-5)  # zero mean over channels at each step
    assert (y[1, :, 5:] == 0).all() and torch.allclose(y[1, :, :5], norm(x[1:, :, :5], mask[1:, :, :5])[0])
    det = sgp_model(backbone="conv", boundary_head="regression", norm="layer").detector
    norms = {type(m.norm).__name__ for name, m in det.named_modules() if hasattr(m, "conv") and hasattr(m, "norm")}
    assert norms == {"StepLayerNorm"}
