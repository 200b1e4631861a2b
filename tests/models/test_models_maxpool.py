"""The TemporalMaxer-class max-pooling pyramid (gaf.models.maxpool, model.detector.backbone: maxpool): level
shapes, masking, no parameters; the detector built on it is tested with every backbone in
test_models_sgp_trident.py."""

from __future__ import annotations

import pytest
import torch

from gaf.errors import ConfigError
from gaf.engine.experiment import load_experiment
from gaf.models.detector import AnchorFreeDetector, DetectorConfig
from gaf.models.maxpool import MaxPoolPyramid


@pytest.mark.parametrize("T", [1, 2, 7, 16, 37, 64, 100])
def test_every_level_halves_the_steps_rounding_up(T):
    x = torch.randn(2, 5, T)
    feats, masks = MaxPoolPyramid(6)(x, torch.ones(2, 1, T))
    lengths = [T]
    for _ in range(5):
        lengths.append((lengths[-1] + 1) // 2)  # ceil(T / 2**l)
    assert [f.shape for f in feats] == [(2, 5, n) for n in lengths]
    assert [m.shape for m in masks] == [(2, 1, n) for n in lengths]
    assert torch.equal(feats[0], x)  # level 0 is the stem's output itself


def test_a_level_is_the_max_over_three_steps_of_the_previous_one():
    x = torch.tensor([[[1.0, 5.0, 2.0, 7.0, 3.0, 9.0, 4.0]]])
    feats, masks = MaxPoolPyramid(3)(x, torch.ones(1, 1, 7))
    assert feats[1].tolist() == [[[5.0, 7.0, 9.0, 9.0]]]  # windows [., 1, 5] [5, 2, 7] [7, 3, 9] [9, 4, .]
    assert feats[2].tolist() == [[[7.0, 9.0]]]  # [., 5, 7] [7, 9, 9]
    wide, _ = MaxPoolPyramid(2, kernel=5)(x, torch.ones(1, 1, 7))
    assert wide[1].tolist() == [[[5.0, 7.0, 9.0, 9.0]]]  # [., ., 1, 5, 2] [1, 5, 2, 7, 3] [2, 7, 3, 9, 4] [3, 9, 4, ., .]


def test_padding_never_reaches_a_valid_step_and_padded_steps_are_zero():
    torch.manual_seed(0)
    T, n = 37, 23
    x = -torch.rand(2, 4, T) - 1.0  # all negative: a zero from the padding would win the max if it leaked
    mask = torch.ones(2, 1, T)
    mask[1, 0, n:] = 0
    pyramid = MaxPoolPyramid(5)
    zeros = x.clone()
    zeros[1, :, n:] = 0.0
    huge = x.clone()
    huge[1, :, n:] = 1e30
    a, masks = pyramid(zeros, mask)
    b, _ = pyramid(huge, mask)
    alone, alone_masks = pyramid(x[1:, :, :n], mask[1:, :, :n])
    for l in range(5):
        valid = masks[l][1, 0] > 0
        k = int(valid.sum())
        assert k == alone[l].shape[-1] and bool(valid[:k].all())  # the valid steps are the lone sequence's
        assert torch.equal(a[l][1][:, valid], b[l][1][:, valid])
        assert torch.equal(a[l][1][:, valid], alone[l][0])
        assert torch.equal(masks[l][1:, :, :k], alone_masks[l])
        assert (a[l][1][:, ~valid] == 0).all() and (b[l][1][:, ~valid] == 0).all()
        assert torch.equal(a[l][0], b[l][0])  # the unpadded window is untouched


def test_the_pyramid_has_no_parameters_and_the_detector_only_its_stem_and_heads():
    assert list(MaxPoolPyramid(6).parameters()) == [] and list(MaxPoolPyramid(6).buffers()) == []
    det = AnchorFreeDetector(8, 3, DetectorConfig(embed_dim=16, num_levels=5, backbone="maxpool"))
    conv = AnchorFreeDetector(8, 3, DetectorConfig(embed_dim=16, num_levels=5, backbone="conv"))
    assert det.downs is None and isinstance(det.pyramid, MaxPoolPyramid)
    assert not any(name.startswith(("pyramid.", "downs.")) for name, _ in det.named_parameters())
    n_downs = sum(p.numel() for p in conv.downs.parameters())
    assert sum(p.numel() for p in det.parameters()) == sum(p.numel() for p in conv.parameters()) - n_downs


def test_the_kernel_key_is_checked_by_name():
    with pytest.raises(ConfigError, match=r"model\.detector\.maxpool_kernel"):
        load_experiment("demo", ["model.detector.backbone=maxpool", "model.detector.maxpool_kernel=2"])
    with pytest.raises(ConfigError, match=r"model\.detector\.maxpool_kernel"):
        AnchorFreeDetector(8, 3, DetectorConfig(embed_dim=16, backbone="maxpool", maxpool_kernel=4))
    assert load_experiment("demo", ["model.detector.backbone=maxpool"]).model.detector.maxpool_kernel == 3
