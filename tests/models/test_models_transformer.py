"""The transformer pyramid (gaf.models.transformer) and the detector built on it (model.detector.backbone)."""

from __future__ import annotations

import pytest
import torch

from gaf.errors import ConfigError
from gaf.models.detector import AnchorFreeDetector, DetectorConfig
from gaf.models.gaf import GAFConfig
from gaf.models.gaf_detector import ModelConfig, build_model
from gaf.models.blocks import masked_downsample
from gaf.models.transformer import LocalSelfAttention, TransformerBlock


def transformer_model(*, gaf: bool = True, levels: int = 4, window: int = 5, seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(gaf=GAFConfig(enabled=gaf, attention_dim=16, reduce_dim=8, hidden_dim=16, latent_dim=4),
                      detector=DetectorConfig(embed_dim=16, num_levels=levels, head_layers=1, backbone="transformer",
                                              attention_window=window, attention_heads=2))
    return build_model(cfg, in_dim=8, num_classes=3, max_seq_len=64)


def padded(T: int = 50, valid: int = 37):
    torch.manual_seed(3)
    x = torch.randn(2, 8, T)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, valid:] = False
    return x, mask


def test_shapes_points_and_masks_match_the_convolutional_pyramid():
    x, mask = padded()
    out = transformer_model()(x, mask)
    P = 50 + 25 + 13 + 7
    assert out["cls_logits"].shape == (2, P, 3) and out["offsets"].shape == (2, P, 2)
    assert (out["offsets"] >= 0).all()
    assert out["points"][50:75].tolist() == [2.0 * i for i in range(25)]
    assert int(out["point_mask"][1].sum()) == 37 + 19 + 10 + 5


@pytest.mark.parametrize("gaf", [True, False])
def test_padding_never_changes_the_outputs_of_valid_steps(gaf):
    m = transformer_model(gaf=gaf).eval()
    x, mask = padded()
    n = int(mask[1].sum())
    with torch.no_grad():
        batched = m(x, mask)
        noisy = x.clone()
        noisy[1, :, n:] = 100.0  # whatever the padding holds
        noisy_out = m(noisy, mask)
        alone = m(x[1:2, :, :n], mask[1:2, :n])
    valid = batched["point_mask"][1]
    assert torch.allclose(batched["cls_logits"][1][valid], noisy_out["cls_logits"][1][valid], atol=1e-5)
    assert torch.allclose(batched["cls_logits"][1][valid], alone["cls_logits"][0], atol=1e-5)
    assert torch.allclose(batched["offsets"][1][valid], alone["offsets"][0], atol=1e-4)


def test_attention_is_local_and_never_reads_padding():
    torch.manual_seed(0)
    attn = LocalSelfAttention(8, heads=2, window=5)  # ±2 steps
    x = torch.randn(1, 20, 8)
    valid = torch.ones(1, 20, dtype=torch.bool)
    far = x.clone()
    far[0, 15:] += 10.0  # steps 15.. are more than 2 away from steps 0..12
    assert torch.allclose(attn(x, valid)[0, :13], attn(far, valid)[0, :13], atol=1e-6)
    assert not torch.allclose(attn(x, valid)[0, 13:], attn(far, valid)[0, 13:])
    valid[0, 10:] = False
    out = attn(far, valid)
    assert (out[0, 10:] == 0).all() and torch.isfinite(out).all()
    assert torch.allclose(out[0, :10], attn(x[:, :10], valid[:, :10])[0], atol=1e-6)


def test_a_block_acts_per_step_outside_attention():
    torch.manual_seed(0)
    block = TransformerBlock(8, heads=2, window=1)  # window 1: each step attends to itself only
    x = torch.randn(1, 6, 8)
    valid = torch.ones(1, 6, dtype=torch.bool)
    whole = block(x, valid)
    for t in range(6):
        assert torch.allclose(whole[0, t], block(x[:, t:t + 1], valid[:, t:t + 1])[0, 0], atol=1e-6)


def test_downsampling_takes_the_max_over_valid_steps_only():
    x = torch.tensor([[[1.0, 5.0, 2.0, 7.0, 3.0, 9.0]]])
    mask = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]]])
    y, m = masked_downsample(x, mask)
    assert m.tolist() == [[[1.0, 1.0, 0.0]]]
    assert y.tolist() == [[[5.0, 7.0, 0.0]]]  # windows [.,1,5] [5,2,7] and padding (9 never read)


def test_heads_must_divide_the_width():
    with pytest.raises(ConfigError, match="attention_heads"):
        AnchorFreeDetector(8, 3, DetectorConfig(embed_dim=18, backbone="transformer", attention_heads=4))
