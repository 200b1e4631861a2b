"""The transformer pyramid's blocks (gaf.models.transformer); the detector built on it is tested with every
backbone in test_models_sgp_trident.py."""

from __future__ import annotations

import pytest
import torch

from gaf.errors import ConfigError
from gaf.models.detector import AnchorFreeDetector, DetectorConfig
from gaf.models.blocks import masked_downsample
from gaf.models.transformer import LocalSelfAttention, TransformerBlock


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
