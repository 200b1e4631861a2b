"""GAF's formulations side by side (issue 9): attention scalar | channel, context local | global | window | linear,
output average | enhanced | normalized, L_nai complement | background, the L_clf head, the oracle."""

from __future__ import annotations

import itertools

import pytest
import torch

from gaf.engine.health import attention_gradients
from gaf.models.gaf_detector import LossConfig, ModelConfig, build_model
from gaf.models.detector import DetectorConfig
from gaf.models.gaf import GAF, GAFConfig, action_mask

SMALL = dict(attention_dim=16, reduce_dim=8, hidden_dim=16, latent_dim=4, context_heads=4, context_window=7)
VARIANTS = list(itertools.product(("scalar", "channel"), ("local", "global", "window", "linear"),
                                  ("average", "enhanced", "normalized")))


def padded(C: int = 12, T: int = 30, valid: int = 19, seed: int = 1):
    torch.manual_seed(seed)
    x = torch.randn(2, C, T)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, valid:] = False
    return x, mask


@pytest.mark.parametrize("attention,context,output", VARIANTS)
def test_every_variant_keeps_shapes_units_and_zero_padding(attention, context, output):
    torch.manual_seed(0)
    g = GAF(12, GAFConfig(attention=attention, context=context, output=output, **SMALL), num_classes=3).train()
    x, mask = padded()
    out = g(x, mask, reconstruct=True)
    lam_shape = (2, 30) if attention == "scalar" else (2, 12, 30)
    assert out.attention.shape == lam_shape
    assert (out.attention >= 0).all() and (out.attention <= 1).all()
    assert (out.attention[1, ..., 19:] == 0).all()
    assert out.features.shape == x.shape and (out.features[1, :, 19:] == 0).all()
    assert out.f_ai.shape == out.f_nai.shape == (2, 12)
    D = 12 if attention == "channel" else 4  # channel attention: one latent per channel
    assert out.mu.shape == (2, D, 30) and out.latent.shape == (2, D, 30)
    terms = g.cvae_loss(x, mask)
    assert torch.isfinite(terms["total"])
    rep = g.representation_loss(x, mask, out.attention)
    rep.backward()
    assert g.segment.out.weight.grad is not None  # L_R reaches the attention head
    assert all(p.grad is None or not p.grad.any() for p in g.frame.decoder.parameters())


@pytest.mark.parametrize("attention,context,output", VARIANTS)
def test_padding_never_changes_the_outputs_of_valid_steps(attention, context, output):
    torch.manual_seed(0)
    g = GAF(12, GAFConfig(attention=attention, context=context, output=output, **SMALL), num_classes=3).eval()
    x, mask = padded()
    alone = g(x[1:2, :, :19], mask[1:2, :19])
    batched = g(x, mask)
    garbage = x.clone()
    garbage[1, :, 19:] = 1e3
    noisy = g(garbage, mask)
    for out in (batched, noisy):
        torch.testing.assert_close(out.attention[1:2, ..., :19], alone.attention, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.features[1:2, :, :19], alone.features, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out.f_ai[1:2], alone.f_ai, atol=1e-5, rtol=1e-5)


def test_global_context_mixes_the_whole_window_but_never_the_padding():
    from gaf.models.gaf import TemporalSelfAttention

    torch.manual_seed(0)
    block = TemporalSelfAttention(16, 4).eval()
    x = torch.randn(1, 16, 40)
    mask = torch.ones(1, 40, dtype=torch.bool)
    mask[0, 36:] = False
    moved = x.clone()
    moved[:, :, 33] += 3.0 * torch.randn(16)  # a valid step far from the first ones
    with torch.no_grad():
        base = block(x, mask)
        assert float((block(moved, mask)[:, :, :5] - base[:, :, :5]).abs().max()) > 1e-3
        padded = x.clone()
        padded[:, :, 36:] = 1e4  # padding: no influence at all
        torch.testing.assert_close(block(padded, mask), base)
    assert (base[:, :, 36:] == 0).all()


def _window_block(window: int, seed: int = 0):
    from gaf.models.gaf import WindowSelfAttention

    torch.manual_seed(seed)
    return WindowSelfAttention(16, 4, window).eval()


@pytest.mark.parametrize("T", [1, 5, 40, 53])
def test_window_context_wide_enough_is_the_global_attention(T):
    """A window reaching every step is the global context's attention, same weights (blocks of any T)."""
    from gaf.models.gaf import TemporalSelfAttention

    torch.manual_seed(0)
    full = TemporalSelfAttention(16, 4).eval()
    block = _window_block(2 * T + 1)
    block.norm.load_state_dict(full.norm.state_dict())
    block.qkv.weight.data.copy_(full.attn.in_proj_weight.data)
    block.proj.weight.data.copy_(full.attn.out_proj.weight.data)
    x = torch.randn(2, 16, T)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, max(1, T - 3):] = False
    with torch.no_grad():
        torch.testing.assert_close(block(x, mask), full(x, mask), atol=1e-5, rtol=1e-5)


def test_window_context_of_one_step_is_each_steps_own_value_projected():
    """Window 1: each step attends to itself alone, so the output is x + proj(v_t) (hand-computed)."""
    block = _window_block(1)
    x = torch.randn(1, 16, 9)
    mask = torch.ones(1, 9, dtype=torch.bool)
    with torch.no_grad():
        h = block.norm(x.transpose(1, 2))
        value = h @ block.qkv.weight[32:].T  # the v third of the projection
        expected = x + (value @ block.proj.weight.T).transpose(1, 2)
        torch.testing.assert_close(block(x, mask), expected, atol=1e-5, rtol=1e-5)


def test_window_context_reaches_exactly_half_a_window_either_side_and_never_the_padding():
    block = _window_block(7)  # 3 steps either side
    T = 70
    x = torch.randn(2, 16, T)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, 50:] = False
    with torch.no_grad():
        base = block(x, mask)
        moved = x.clone()
        moved[:, :, 40] += 3.0 * torch.randn(16)  # not a constant: the LayerNorm would remove it
        delta = (block(moved, mask) - base).abs().amax(dim=1)  # (B, T)
        assert (delta[:, 37:44] > 1e-4).all()  # steps 37..43 see step 40
        assert (delta[:, :37] == 0).all() and (delta[:, 44:50] == 0).all()
        garbage = x.clone()
        garbage[1, :, 50:] = 1e4
        torch.testing.assert_close(block(garbage, mask), base)
        alone = block(x[1:2, :, :50], mask[1:2, :50])  # the padded video alone: the same outputs
        torch.testing.assert_close(base[1:2, :, :50], alone, atol=1e-5, rtol=1e-5)
    assert (base[1, :, 50:] == 0).all() and torch.isfinite(base).all()


def test_window_context_must_be_odd_and_cost_grows_linearly():
    from torch.utils.flop_counter import FlopCounterMode

    from gaf.errors import ConfigError

    with pytest.raises(ConfigError, match="context_window"):
        GAFConfig(context="window", context_window=8)
    block = _window_block(33)

    def flops(T: int) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            block(torch.randn(1, 16, T), torch.ones(1, T, dtype=torch.bool))
        return counter.get_total_flops()

    assert flops(4096) <= 2.1 * flops(2048)  # the global context's attention grows 4x


def test_channel_attention_pools_each_channel_with_its_own_weights():
    from gaf.models.gaf import SegmentGAF

    f = torch.tensor([[[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]])
    lam = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    f_ai, f_nai = SegmentGAF.pool(f, lam, torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(f_ai, torch.tensor([[1.0, 6.0]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(f_nai, torch.tensor([[4.0, 3.0]]), atol=1e-5, rtol=0)


def test_channel_prior_is_centred_on_each_channels_attention():
    torch.manual_seed(0)
    g = GAF(12, GAFConfig(attention="channel", **SMALL)).eval()
    lam = torch.rand(2, 12, 30)
    assert torch.equal(g.frame.prior_latent(lam, sample=False), lam)


def test_normalized_output_is_features_times_lambda_over_mean_lambda():
    torch.manual_seed(0)
    g = GAF(12, GAFConfig(output="normalized", fusion="attention", **SMALL)).eval()
    x, mask = padded()
    out = g(x, mask)
    lam = out.attention
    for b, n in ((0, 30), (1, 19)):
        expect = x[b, :, :n] * lam[b, :n] / lam[b, :n].mean()
        torch.testing.assert_close(out.features[b, :, :n], expect, atol=1e-5, rtol=1e-5)


def test_oracle_attention_is_the_ground_truth_mask_and_needs_it():
    g = GAF(12, GAFConfig(oracle=True, **SMALL)).eval()
    x, mask = padded()
    truth = action_mask([torch.tensor([[2.0, 6.0]]), torch.tensor([[10.0, 25.0]])], 30)
    assert truth[0, 2:6].all() and not truth[0, 6:].any() and truth[1, 10:25].all()
    out = g(x, mask, oracle=truth)
    assert torch.equal(out.attention, truth * mask)  # step 19+ of video 1 is padding
    with pytest.raises(ValueError, match="oracle"):
        g(x, mask)


def model_with(loss: LossConfig | None = None, C: int = 8, K: int = 3, **gaf):
    torch.manual_seed(0)
    cfg = ModelConfig(gaf=GAFConfig(**{**SMALL, **gaf}), detector=DetectorConfig(embed_dim=16, num_levels=3),
                      loss=loss or LossConfig())
    return build_model(cfg, C, K, 64)


def detection_batch(C: int = 8, T: int = 40):
    torch.manual_seed(3)
    x = torch.randn(2, C, T)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, 31:] = False
    return x, mask, [torch.tensor([[5.0, 15.0]]), torch.tensor([[8.0, 20.0]])], [torch.tensor([0]), torch.tensor([2])]


def test_background_form_of_l_nai_has_no_extra_channel_and_only_negatives():
    comp = model_with(LossConfig(nai_form="complement"))
    back = model_with(LossConfig(nai_form="background", nai=35.0))
    assert comp.detector.cls_head.out_channels == 4 and back.detector.cls_head.out_channels == 3
    x, mask, segs, labels = detection_batch()
    out = back.train().losses(x, mask, segs, labels, stage="segment", progress=0.5)
    assert torch.isfinite(out["nai"]) and float(out["nai"]) > 0
    # the background term is 35x its logged value in the total, and reaches the attention head
    logged, weighted, lam = back.segment_terms(x, mask, segs, labels, progress=0.5)
    torch.testing.assert_close(weighted["nai"], 35.0 * logged["nai"])
    (g,) = torch.autograd.grad(weighted["nai"], lam)
    assert g.abs().sum() > 0


def test_no_clf_head_when_l_clf_is_off():
    m = model_with(LossConfig(clf=0.0))
    assert m.gaf.segment.classifier is None and m.classifier_parameters() == []
    x, mask, segs, labels = detection_batch()
    assert "clf" not in m.train().losses(x, mask, segs, labels, stage="segment")


def test_class_prior_initialises_the_clf_head_bias():
    m = model_with(LossConfig(clf=0.1))
    m.gaf.init_class_prior(torch.tensor([0.5, 0.1, 1.0]))
    bias = m.gaf.segment.classifier.bias
    p = torch.sigmoid(bias)
    torch.testing.assert_close(p, torch.tensor([0.25, 0.05, 0.5, 0.5]), atol=1e-5, rtol=0)


def test_gradient_probe_reports_each_terms_pull_on_lambda_and_leaves_parameters_alone():
    m = model_with(LossConfig(clf=0.1)).train()
    x, mask, segs, labels = detection_batch()
    grads = attention_gradients(m, {"features": x, "mask": mask, "segments": segs, "labels": labels}, 0.5,
                                torch.device("cpu"))
    assert set(grads) == {"ai", "nai", "clf", "rep", "att"}  # L_att is on by default
    assert all(v > 0 for v in grads.values())
    assert all(p.grad is None for p in m.parameters())


def test_oracle_detector_uses_the_ground_truth_in_training_and_inference():
    m = model_with(oracle=True).train()
    x, mask, segs, labels = detection_batch()
    _, _, lam = m.segment_terms(x, mask, segs, labels)
    torch.testing.assert_close(lam, action_mask(segs, 40) * mask)
    assert m.needs_ground_truth
    with pytest.raises(ValueError, match="oracle"):
        m.eval()(x, mask)
    out = m(x, mask, action_mask(segs, 40))
    assert torch.equal(out["attention"], action_mask(segs, 40) * mask)


def test_attention_supervision_is_bce_against_the_action_mask_on_by_default_and_switchable():
    from gaf.models.gaf_detector import attention_bce

    x, mask, segs, labels = detection_batch()
    assert "att" in model_with().train().losses(x, mask, segs, labels, stage="segment")  # the measured default
    assert "att" not in model_with(LossConfig(att=0.0)).train().losses(x, mask, segs, labels, stage="segment")
    m = model_with(LossConfig(att=2.0)).train()
    logged, weighted, lam = m.segment_terms(x, mask, segs, labels)
    torch.testing.assert_close(weighted["att"], 2.0 * logged["att"])
    truth = action_mask(segs, 40)
    lam_v = lam.detach().clamp(1e-6, 1 - 1e-6)
    expect = -(truth * lam_v.log() + (1 - truth) * (1 - lam_v).log())[mask].mean()
    torch.testing.assert_close(logged["att"], expect, atol=1e-5, rtol=1e-5)
    perfect = attention_bce(truth * mask, truth, mask)  # λ = the mask itself: (almost) no loss
    assert float(perfect) < 1e-4


def test_demo_and_its_harder_variant_differ_only_in_their_data():
    from gaf.config import to_dict
    from gaf.engine.experiment import load_experiment

    demo, hard = to_dict(load_experiment("demo")), to_dict(load_experiment("demo_hard"))
    for section in ("model", "train", "eval"):
        assert demo[section] == hard[section], section
    easy_data, hard_data = demo["benchmark"]["synthetic"], hard["benchmark"]["synthetic"]
    assert hard_data["distractor_rate"] > easy_data["distractor_rate"]
    assert hard_data["noise_std"] > easy_data["noise_std"]
    assert demo["benchmark"]["out_dir"] != hard["benchmark"]["out_dir"]


def test_linear_context_is_kernelised_attention_over_the_whole_window_never_the_padding():
    """Hand-computed: y_t = phi(q_t) sum_s phi(k_s) v_s^T / phi(q_t) . sum_s phi(k_s) over the valid s
    (phi = elu + 1), per head; a far valid step moves the first ones, padding moves nothing; linear cost."""
    from torch.utils.flop_counter import FlopCounterMode

    from gaf.models.gaf import LinearSelfAttention

    torch.manual_seed(0)
    block = LinearSelfAttention(16, 4).eval()
    T, valid = 40, 36
    x = torch.randn(1, 16, T)
    mask = torch.ones(1, T, dtype=torch.bool)
    mask[0, valid:] = False
    with torch.no_grad():
        base = block(x, mask)
        h = block.norm(x[0, :, :valid].T)  # (valid, 16)
        q, k, v = (h @ w.T for w in block.qkv.weight.split(16))
        heads = []
        for i in range(4):
            part = slice(4 * i, 4 * i + 4)
            pq, pk = torch.nn.functional.elu(q[:, part]) + 1, torch.nn.functional.elu(k[:, part]) + 1
            weights = pq @ pk.T  # (valid, valid), every pair of valid steps
            heads.append(weights @ v[:, part] / weights.sum(1, keepdim=True))
        expected = x[0, :, :valid] + (torch.cat(heads, 1) @ block.proj.weight.T).T
        torch.testing.assert_close(base[0, :, :valid], expected, atol=1e-5, rtol=1e-5)
        assert (base[:, :, valid:] == 0).all()
        moved = x.clone()
        moved[:, :, 33] += 3.0 * torch.randn(16)
        assert float((block(moved, mask)[:, :, :5] - base[:, :, :5]).abs().max()) > 1e-4
        garbage = x.clone()
        garbage[:, :, valid:] = 1e4
        torch.testing.assert_close(block(garbage, mask), base)

    def flops(T: int) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            block(torch.randn(1, 16, T), torch.ones(1, T, dtype=torch.bool))
        return counter.get_total_flops()

    assert flops(4096) <= 2.1 * flops(2048)
