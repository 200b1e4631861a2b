"""The recognizer: shapes, the two-stage parameter partition, L_clf on f_ai / f_nai, L_att on
annotated action steps, masking of padded steps, and the no-GAF baseline."""

from __future__ import annotations

import pytest
import torch

from gaf.errors import ConfigError
from gaf.models.gaf import GAFConfig
from gaf.models.recognizer import RecognitionLossConfig, Recognizer, RecognizerConfig

SMALL = GAFConfig(attention_dim=16, reduce_dim=8, hidden_dim=16, latent_dim=4, fusion="attention")


def make(**kw) -> Recognizer:
    torch.manual_seed(0)
    return Recognizer(RecognizerConfig(gaf=kw.pop("gaf", SMALL), **kw), num_classes=5, in_dim=12)


def test_forward_shapes_and_scores_are_probabilities():
    model = make().eval()
    out = model(torch.randn(3, 12, 10))
    assert out["logits"].shape == (3, 5) and out["scores"].shape == (3, 5) and out["attention"].shape == (3, 10)
    assert (out["scores"] >= 0).all() and (out["scores"].sum(1) <= 1.0 + 1e-6).all()
    assert ((out["attention"] >= 0) & (out["attention"] <= 1)).all()
    # the K action logits are GAF's K + 1 head on f_ai, background column dropped
    assert out["scores"].argmax(1).tolist() == out["logits"].argmax(1).tolist()


def test_stage_parameters_partition_the_model():
    model = make()
    frame = {id(p) for p in model.stage_parameters("frame")}
    segment = {id(p) for p in model.stage_parameters("segment")}
    assert frame == {id(p) for p in model.gaf.frame.parameters()}
    assert not frame & segment and frame | segment == {id(p) for p in model.parameters()}
    assert model.active_stages() == ["frame", "segment"]
    with pytest.raises(ValueError):
        model.stage_parameters("detector")


def test_frame_stage_trains_frame_gaf_only_and_segment_stage_the_rest():
    model = make(dropout=0.0)
    x, y = torch.randn(4, 12, 10), torch.tensor([0, 1, 2, 4])
    model.losses(x, y, stage="frame")["total"].backward()
    assert all(p.grad is not None for p in model.gaf.frame.parameters())
    assert all(p.grad is None for p in model.gaf.segment.parameters())
    model.zero_grad(set_to_none=True)
    terms = model.losses(x, y, stage="segment", progress=0.5)
    assert set(terms) == {"total", "clf", "clf_ai", "rep"}
    terms["total"].backward()
    assert model.gaf.segment.classifier.weight.grad.abs().sum() > 0
    assert model.gaf.segment.out.weight.grad.abs().sum() > 0  # L_clf and L_R reach the attention head
    assert all(p.grad is None for p in model.gaf.frame.parameters())  # L_R uses the frozen decoder


def test_clf_is_softmax_ce_on_f_ai_plus_background_on_f_nai():
    model = make(dropout=0.0, loss=RecognitionLossConfig(rep=0.0))
    x, y = torch.randn(2, 12, 10), torch.tensor([3, 0])
    terms = model.losses(x, y, stage="segment")
    lam, f_ai, f_nai = model._attend(x, torch.ones(2, 10, dtype=torch.bool))
    head = model.gaf.segment.classifier
    expected_ai = torch.nn.functional.cross_entropy(head(f_ai), y)
    expected_nai = torch.nn.functional.cross_entropy(head(f_nai), torch.tensor([5, 5]))
    assert terms["clf_ai"].item() == pytest.approx(expected_ai.item(), rel=1e-5)
    assert terms["total"].item() == pytest.approx((expected_ai + expected_nai).item(), rel=1e-5)
    sig = make(dropout=0.0, loss=RecognitionLossConfig(rep=0.0, clf_form="sigmoid"))
    assert torch.isfinite(sig.losses(x, y, stage="segment")["total"])


def test_padded_steps_do_not_change_the_scores():
    model = make().eval()
    x = torch.randn(1, 12, 7)
    padded = torch.cat([x, 100 * torch.randn(1, 12, 5)], dim=2)
    mask = torch.tensor([[True] * 7 + [False] * 5])
    assert torch.allclose(model(x)["scores"], model(padded, mask)["scores"], atol=1e-5)


def test_baseline_without_gaf_is_average_pooling_and_a_linear_classifier():
    model = make(gaf=GAFConfig(enabled=False), dropout=0.0).eval()
    assert model.gaf is None and model.active_stages() == ["segment"]
    assert model.stage_parameters("frame") == []
    x = torch.randn(2, 12, 6)
    expected = model.classifier(x.mean(2))
    assert torch.allclose(model(x)["logits"], expected, atol=1e-6)
    assert model(x)["attention"] is None
    assert model.losses(x, torch.tensor([1, 2]), stage="frame")["total"].item() == 0.0
    assert set(model.losses(x, torch.tensor([1, 2]), stage="segment")) == {"total", "clf"}


def test_feature_input_needs_in_dim_and_the_right_shape():
    with pytest.raises(ConfigError, match="in_dim"):
        Recognizer(RecognizerConfig(), num_classes=3)
    with pytest.raises(ValueError, match=r"\(B, 12, T\)"):
        make()(torch.randn(2, 8, 10))


def test_att_loss_is_the_detectors_bce_of_lambda_on_the_action_steps_and_trains_the_attention_head():
    from gaf.losses import attention_bce

    x, y = torch.randn(2, 12, 10), torch.tensor([3, 0])
    mask = torch.tensor([[True] * 10, [True] * 6 + [False] * 4])
    action = torch.zeros(2, 10, dtype=torch.bool)
    action[0, 2:7] = action[1, :3] = True
    model = make(dropout=0.0, loss=RecognitionLossConfig(rep=0.0, att=1.0))
    only_att = make(dropout=0.0, loss=RecognitionLossConfig(rep=0.0, clf=0.0, att=1.0))
    terms = model.losses(x, y, stage="segment", mask=mask, action_mask=action)
    lam = model._attend(x, mask)[0]
    assert terms["att"].item() == pytest.approx(attention_bce(lam, action, mask).item(), rel=1e-6)
    assert terms["total"].item() == pytest.approx((terms["clf"] + terms["att"]).item(), rel=1e-6)
    only_att.losses(x, y, stage="segment", mask=mask, action_mask=action)["total"].backward()
    assert only_att.gaf.segment.out.weight.grad.abs().sum() > 0  # L_att alone reaches the attention head
    assert not only_att.gaf.segment.classifier.weight.grad.any()  # clf: 0 (L_clf weighted away)
    with pytest.raises(ValueError, match="action_mask"):
        model.losses(x, y, stage="segment", mask=mask, action_mask=action[:, :8])


def test_att_zero_or_no_action_mask_keeps_todays_losses_exactly():
    x, y = torch.randn(2, 12, 10), torch.tensor([3, 0])
    action = torch.ones(2, 10, dtype=torch.bool)
    today = make(dropout=0.0).losses(x, y, stage="segment", progress=0.5)
    off = make(dropout=0.0).losses(x, y, stage="segment", progress=0.5, action_mask=action)  # att: 0 (default)
    unlabelled = make(dropout=0.0, loss=RecognitionLossConfig(att=1.0)).losses(x, y, stage="segment", progress=0.5)
    assert RecognitionLossConfig().att == 0.0
    for terms in (off, unlabelled):
        assert set(terms) == set(today) == {"total", "clf", "clf_ai", "rep"}
        assert all(torch.equal(terms[k], today[k]) for k in today)
    baseline = make(gaf=GAFConfig(enabled=False), dropout=0.0, loss=RecognitionLossConfig(att=1.0))
    assert set(baseline.losses(x, y, stage="segment", action_mask=action)) == {"total", "clf"}  # no λ: no L_att
