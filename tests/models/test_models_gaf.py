"""Specification of gaf.models.gaf: the GAF plug-in on its own."""

from __future__ import annotations

import doctest

import pytest
import torch

import gaf.models.gaf as gaf_module
from gaf import losses as L
from gaf.models.blocks import MaskedGroupNorm
from gaf.models.gaf import GAF, GAFConfig, SegmentGAF, multi_hot

SMALL = GAFConfig(attention_dim=16, reduce_dim=8, hidden_dim=16, latent_dim=4)


def make(C: int = 12, K: int = 3, cfg: GAFConfig = SMALL, seed: int = 0) -> GAF:
    torch.manual_seed(seed)
    return GAF(C, cfg, num_classes=K)


def batch(B: int = 2, C: int = 12, T: int = 20, pad: int = 6):
    torch.manual_seed(1)
    x = torch.randn(B, C, T)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[-1, T - pad:] = False
    return x, mask


def test_plug_in_keeps_the_feature_shape_and_attention_is_in_unit_interval():
    g = make()
    x, mask = batch()
    out = g(x, mask, reconstruct=True)
    assert out.features.shape == x.shape
    assert out.attention.shape == mask.shape
    assert (out.attention >= 0).all() and (out.attention <= 1).all()
    assert (out.attention[~mask] == 0).all()
    assert (out.features[1, :, ~mask[1]] == 0).all()
    assert out.f_ai.shape == out.f_nai.shape == (2, 12)
    assert out.logits_ai.shape == out.logits_nai.shape == (2, 4)  # K + 1, last = background
    assert out.recon.shape == x.shape and out.mu.shape == (2, 4, 20)


def test_padded_steps_never_change_valid_outputs():
    g = make().eval()
    x, mask = batch()
    a = g(x, mask)
    x2 = x.clone()
    x2[1, :, ~mask[1]] = 1e4  # garbage in the padding
    b = g(x2, mask)
    assert torch.equal(a.attention, b.attention)
    assert torch.equal(a.f_ai, b.f_ai) and torch.equal(a.f_nai, b.f_nai)
    assert torch.equal(a.features, b.features)


def test_a_window_alone_equals_the_same_window_padded_in_a_batch():
    g = make().eval()
    x, mask = batch()
    n = int(mask[1].sum())
    alone = g(x[1:2, :, :n], mask[1:2, :n])
    padded = g(x, mask)
    assert torch.allclose(alone.attention[0], padded.attention[1, :n], atol=1e-5)
    assert torch.allclose(alone.features[0], padded.features[1, :, :n], atol=1e-5)


def test_attention_pooling_is_eq_11_over_valid_steps():
    x, mask = batch(B=1, pad=3)
    lam = torch.rand(1, 20) * mask
    f_ai, f_nai = SegmentGAF.pool(x, lam, mask)
    v = mask[0]
    ref_ai = (x[0][:, v] * lam[0, v]).sum(1) / lam[0, v].sum()
    ref_nai = (x[0][:, v] * (1 - lam[0, v])).sum(1) / (1 - lam[0, v]).sum()
    assert torch.allclose(f_ai[0], ref_ai, atol=1e-5) and torch.allclose(f_nai[0], ref_nai, atol=1e-5)


def test_masked_group_norm_matches_group_norm_on_the_valid_part():
    torch.manual_seed(0)
    gn = MaskedGroupNorm(8, groups=4)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 2)
        gn.bias.uniform_(-1, 1)
    x = torch.randn(2, 8, 10)
    mask = torch.ones(2, 1, 10)
    mask[1, :, 6:] = 0
    y = gn(x, mask)
    ref = torch.nn.functional.group_norm(x[1:, :, :6], 4, gn.weight, gn.bias, gn.eps)
    assert torch.allclose(y[1, :, :6], ref[0], atol=1e-5)
    assert (y[1, :, 6:] == 0).all()
    full = gn(x, torch.ones(2, 1, 10))
    assert torch.allclose(full, torch.nn.functional.group_norm(x, 4, gn.weight, gn.bias, gn.eps), atol=1e-6)


@pytest.mark.parametrize("kind", ["prefix", "holes"])
def test_masked_group_norm_per_window_value_and_gradient(kind):
    """Windows of several valid lengths (one empty) in a batch: each valid part normalised as if alone, zero
    elsewhere, and the gradient the same as the per-window group norm's. Prefix masks (what the datasets
    build) take the fused kernel per length; masks with holes take the masked sums."""
    torch.manual_seed(1)
    gn = MaskedGroupNorm(8, groups=4)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 2)
        gn.bias.uniform_(-1, 1)
    lengths = [12, 5, 12, 0, 9, 5]
    mask = torch.zeros(len(lengths), 1, 12)
    for b, n in enumerate(lengths):
        mask[b, :, :n] = 1
    if kind == "holes":
        mask[0, :, 3] = 0
    x = torch.randn(len(lengths), 8, 12, requires_grad=True)
    w = torch.randn(len(lengths), 8, 12)
    y = gn(x, mask)
    (y * w).sum().backward()
    x_grad, weight_grad = x.grad.clone(), gn.weight.grad.clone()
    gn.zero_grad()
    xr = x.detach().clone().requires_grad_(True)
    total = 0.0
    for b in range(len(lengths)):
        v = mask[b, 0] > 0
        assert (y[b][:, ~v] == 0).all()
        if v.any():
            ref = torch.nn.functional.group_norm(xr[b:b + 1][..., v], 4, gn.weight, gn.bias, gn.eps)
            assert torch.allclose(y[b][:, v], ref[0], atol=1e-5)
            total = total + (ref[0] * w[b][:, v]).sum()
    total.backward()
    assert torch.allclose(x_grad, xr.grad, atol=1e-5)
    assert torch.allclose(weight_grad, gn.weight.grad, atol=1e-5)


def test_representation_loss_trains_attention_but_not_the_frozen_decoder():
    g = make().train()
    x, mask = batch()
    out = g(x, mask)
    g.representation_loss(x, mask, out.attention).backward()
    for p in g.frame.parameters():  # decoder (and encoder) get nothing
        assert p.grad is None
    head_grads = [p.grad for p in g.segment.layers.parameters()]
    assert all(gr is not None for gr in head_grads)
    assert sum(float(gr.abs().sum()) for gr in head_grads) > 0


def test_fusion_path_does_not_train_frame_gaf():
    g = make().train()
    x, mask = batch()
    g(x, mask).features.sum().backward()
    assert all(p.grad is None for p in g.frame.parameters())
    assert g.fusion.theta_prime.weight.grad is not None


def test_cvae_loss_trains_frame_gaf_only():
    g = make().train()
    x, mask = batch()
    d = g.cvae_loss(x, mask, beta=1.0)
    assert set(d) == {"total", "recon", "kl"}
    d["total"].backward()
    assert all(p.grad is None for p in g.segment_parameters())
    assert all(p.grad is not None for p in g.frame.parameters())


def test_parameter_groups_partition_the_module():
    g = make()
    frame = {id(p) for p in g.frame_parameters()}
    segment = {id(p) for p in g.segment_parameters()}
    assert not frame & segment
    assert frame | segment == {id(p) for p in g.parameters()}


def test_classification_loss_uses_present_classes_and_background():
    g = make()
    x, mask = batch()
    out = g(x, mask)
    labels = [torch.tensor([0, 2, 2]), torch.tensor([], dtype=torch.long)]
    present = multi_hot(labels, 3)
    assert present.tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    expected = L.clf_loss(out.logits_ai, out.logits_nai, present)
    assert torch.allclose(g.classification_loss(out, labels), expected)


def test_eval_is_deterministic_and_reconstructs_from_the_prior_mean():
    g = make().eval()
    x, mask = batch()
    a, b = g(x, mask, reconstruct=True), g(x, mask, reconstruct=True)
    assert torch.equal(a.features, b.features) and torch.equal(a.recon, b.recon)
    z = a.attention[:, None, :].expand(-1, SMALL.latent_dim, -1)
    assert torch.allclose(a.recon, g.frame.decode(z, a.attention))


def test_attention_only_fusion_is_features_times_lambda():
    g = make(cfg=GAFConfig(attention_dim=16, reduce_dim=8, hidden_dim=16, latent_dim=4, fusion="attention",
                           output="enhanced"))
    x, mask = batch()
    out = g(x, mask)
    assert out.latent is None
    assert torch.allclose(out.features, x * mask[:, None, :] * out.attention[:, None, :])


def test_generative_fusion_starts_as_features_times_lambda():
    g = make(cfg=GAFConfig(attention_dim=16, reduce_dim=8, hidden_dim=16, latent_dim=4, output="enhanced"))
    x, mask = batch()
    out = g(x, mask)
    assert torch.allclose(out.features, x * mask[:, None, :] * out.attention[:, None, :])


def test_average_output_feeds_the_mean_of_features_and_enhanced_features():
    """Eq. 10's f_fpm averages the input layer and the enhanced layer (the default)."""
    g = make(cfg=GAFConfig(attention_dim=16, reduce_dim=8, hidden_dim=16, latent_dim=4, fusion="attention"))
    x, mask = batch()
    out = g(x, mask)
    m = mask[:, None, :].float()
    assert torch.allclose(out.features, 0.5 * (x * m + x * m * out.attention[:, None, :]))


def test_classification_loss_requires_classes():
    g = GAF(12, SMALL)
    x, mask = batch()
    with pytest.raises(ValueError):
        g.classification_loss(g(x, mask), [torch.tensor([0])])


def test_module_docstring_example_runs():
    result = doctest.testmod(gaf_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
