"""Specification of the anchor-free detector and GAFDetector (gaf.models.detector / build)."""

from __future__ import annotations

import math

import pytest
import torch

from gaf.config import from_dict
from gaf.losses import tiou_1d
from gaf.models.gaf_detector import (GAFDetector, LossConfig, ModelConfig, batch_attention, batch_outputs, build_model,
                                     complement_segments)
from gaf.models.blocks import build_sparse_table, range_max
from gaf.models.detection_losses import assign_points
from gaf.models.detector import DetectorConfig
from gaf.models.gaf import GAFConfig

SMALL_GAF = dict(attention_dim=16, reduce_dim=8, hidden_dim=16, latent_dim=4)


def small_model(C: int = 8, K: int = 3, *, gaf: bool = True, levels: int = 4, seed: int = 0, **det) -> GAFDetector:
    torch.manual_seed(seed)
    cfg = ModelConfig(gaf=GAFConfig(enabled=gaf, **SMALL_GAF),
                      detector=DetectorConfig(embed_dim=16, num_levels=levels, head_layers=1, **det))
    return build_model(cfg, in_dim=C, num_classes=K, max_seq_len=64)


def padded_batch(C: int = 8, T: int = 50, valid: int = 37):
    torch.manual_seed(3)
    x = torch.randn(2, C, T)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, valid:] = False
    segs = [torch.tensor([[5.0, 20.0], [30.0, 52.0]]), torch.tensor([[10.0, 14.0]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    return x, mask, segs, labels


# ---------------------------------------------------------------- boundary pooling
def test_range_max_equals_brute_force_max_and_its_gradient():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 37, requires_grad=True)
    lo = torch.randint(0, 37, (2, 40))
    hi = (lo + torch.randint(0, 40, (2, 40))).clamp(max=36)
    lo[0, 0], hi[0, 0] = 0, 36  # whole range
    lo[0, 1], hi[0, 1] = 5, 5  # one step
    got = range_max(x, lo, hi)
    ref = torch.stack([torch.stack([torch.stack([x[b, c, lo[b, p]: hi[b, p] + 1].max() for p in range(40)])
                                    for c in range(3)]) for b in range(2)])
    assert torch.equal(got, ref)
    w = torch.randn_like(ref)
    g1, = torch.autograd.grad((got * w).sum(), x)
    g2, = torch.autograd.grad((ref * w).sum(), x)
    assert torch.allclose(g1, g2)
    with torch.no_grad():  # inference reads the maxima from the table itself: the same values
        assert torch.equal(range_max(x, lo, hi), ref)


@pytest.mark.parametrize("grad", [True, False])
def test_range_max_of_short_ranges_builds_only_the_levels_they_need(grad):
    """Ranges of at most 5 steps need 3 table levels, not log2(T) + 1 = 8; the maxima are the same."""
    torch.manual_seed(1)
    x = torch.randn(1, 4, 200, requires_grad=grad)
    lo = torch.randint(0, 196, (1, 50))
    hi = lo + torch.randint(0, 5, (1, 50))
    ref = torch.stack([torch.stack([x[0, c, lo[0, p]: hi[0, p] + 1].max() for p in range(50)]) for c in range(4)])[None]
    assert torch.equal(range_max(x, lo, hi), ref)
    table = build_sparse_table(x.detach(), levels=3)
    assert table.shape == (1, 4, 3, 200) and torch.equal(table, build_sparse_table(x.detach())[:, :, :3])
    assert torch.equal(table, build_sparse_table(x.detach(), with_index=True, levels=3)[0])


def test_sparse_table_rows_are_maxima_of_power_of_two_windows():
    x = torch.tensor([[[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0]]])
    table = build_sparse_table(x)
    assert table.shape == (1, 1, 3, 7)
    assert table[0, 0, 1, :6].tolist() == [3, 4, 4, 5, 9, 9]
    assert table[0, 0, 2, :4].tolist() == [4, 5, 9, 9]


@pytest.mark.parametrize("head_layers", [0, 1, 2])
def test_packed_heads_give_each_levels_own_outputs(head_layers):
    """The towers and heads run once over all levels laid end to end (layer norm, regression head): the same
    class logits, offsets, quality and tower features as level by level, on a padded batch."""
    from gaf.models.detector import AnchorFreeDetector, DetectorConfig

    torch.manual_seed(0)
    cfg = DetectorConfig(embed_dim=32, backbone="sgp", norm="layer", head_layers=head_layers, saliency=False)
    det = AnchorFreeDetector(16, 6, cfg)
    for p in det.parameters():
        torch.nn.init.normal_(p, std=0.1)
    assert det.packs_levels
    assert not AnchorFreeDetector(16, 6, DetectorConfig(embed_dim=32, norm="group")).packs_levels
    mask = torch.ones(2, 100)
    mask[1, 70:] = 0
    h = torch.randn(2, 32, 100) * mask[:, None]
    feats, masks = det.pyramid(h, mask[:, None])
    strides = torch.cat([torch.full((f.shape[-1],), 2.0 ** l) for l, f in enumerate(feats)])
    packed, per_level = det._heads_packed(feats, masks, strides), det._heads_per_level(feats, masks)
    for a, b in zip(packed, per_level):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- label assignment
def test_assignment_centre_sampling_ranges_and_shortest_gt():
    points = torch.cat([torch.arange(10.0), torch.arange(5.0) * 2])
    strides = torch.cat([torch.ones(10), torch.full((5,), 2.0)])
    ranges = torch.cat([torch.tensor([[0.0, 2.0]]).expand(10, 2), torch.tensor([[2.0, math.inf]]).expand(5, 2)])
    valid = torch.ones(15, dtype=torch.bool)
    segs = torch.tensor([[2.0, 4.0], [1.0, 9.0]])  # A (short, class 1), B (long, class 0)
    labels = torch.tensor([1, 0])
    cls_t, reg_t, pos = assign_points(points, strides, ranges, valid, segs, labels, 2, radius=1.0)
    assert torch.nonzero(pos).flatten().tolist() == [2, 3, 4, 11, 12, 13]
    # level 0: A's centre region; level 1: p=2 -> A, p=4 matches A and B -> A (shorter), p=6 -> B
    assert reg_t[pos].tolist() == [[0, 2], [1, 1], [2, 0], [0, 2], [2, 0], [5, 3]]
    assert cls_t[pos].argmax(1).tolist() == [1, 1, 1, 1, 1, 0]
    assert cls_t[~pos].sum() == 0
    valid[3] = False  # an invalid (padded) point is never positive
    _, _, pos2 = assign_points(points, strides, ranges, valid, segs, labels, 2, radius=1.0)
    assert not pos2[3] and int(pos2.sum()) == 5


def test_complement_segments_are_the_background_gaps():
    segs = torch.tensor([[10.0, 20.0], [15.0, 30.0], [40.0, 45.0], [44.5, 45.2]])
    comp = complement_segments(segs, 50.0)
    assert torch.allclose(comp, torch.tensor([[0.0, 10.0], [30.0, 40.0], [45.2, 50.0]]))
    assert complement_segments(torch.zeros(0, 2), 12.0).tolist() == [[0.0, 12.0]]
    assert complement_segments(torch.tensor([[0.0, 12.0]]), 12.0).shape == (0, 2)


# ---------------------------------------------------------------- forward / predict
@pytest.mark.parametrize("gaf", [True, False])
def test_forward_shapes_for_a_length_not_divisible_by_the_pyramid(gaf):
    m = small_model(gaf=gaf, levels=4)
    x, mask, _, _ = padded_batch(T=50)
    out = m(x, mask)
    P = 50 + 25 + 13 + 7
    assert out["cls_logits"].shape == (2, P, 3)
    assert out["offsets"].shape == (2, P, 2) and (out["offsets"] >= 0).all()
    assert out["quality"].shape == (2, P) and out["point_mask"].shape == (2, P)
    assert out["points"].shape == out["strides"].shape == (P,)
    assert out["points"][50:75].tolist() == [2.0 * i for i in range(25)]
    assert (out["attention"] is None) != gaf
    # points on padding are masked: item 1 has 37 valid steps
    assert int(out["point_mask"][1].sum()) == 37 + 19 + 10 + 5


def test_a_window_alone_gets_the_same_predictions_as_padded_in_a_batch():
    m = small_model().eval()
    x, mask, _, _ = padded_batch()
    n = int(mask[1].sum())
    batched = m.predict(x, mask, score_threshold=0.0, pre_nms_top_k=100)[1]
    alone = m.predict(x[1:2, :, :n], mask[1:2, :n], score_threshold=0.0, pre_nms_top_k=100)[0]
    assert torch.allclose(batched["scores"], alone["scores"], atol=1e-5)
    assert torch.allclose(batched["segments"], alone["segments"], atol=1e-4)
    assert torch.allclose(batched["attention"], alone["attention"], atol=1e-5)


def test_predictions_never_land_on_padding():
    m = small_model().eval()
    x, mask, _, _ = padded_batch()
    x[1, :, 37:] = 100.0
    preds = m.predict(x, mask, score_threshold=0.0, pre_nms_top_k=10_000)
    p = preds[1]
    assert p["attention"].shape == (37,)
    assert (p["segments"] >= 0).all() and (p["segments"] <= 37).all()
    assert (p["segments"][:, 0] <= p["segments"][:, 1]).all()
    assert len(p["scores"]) == (37 + 19 + 10 + 5) * 3  # one candidate per valid point and class
    assert (p["scores"][:-1] >= p["scores"][1:]).all() and p["labels"].dtype == torch.long


def test_top_k_and_threshold():
    m = small_model().eval()
    x, mask, _, _ = padded_batch()
    assert len(m.predict(x, mask, pre_nms_top_k=7)[0]["scores"]) == 7
    assert len(m.predict(x, mask, score_threshold=1.0)[0]["scores"]) == 0


def test_fuse_outputs_averages_probabilities_and_offsets():
    m1, m2 = small_model(seed=0).eval(), small_model(seed=1).eval()
    x, mask, _, _ = padded_batch()
    o1, o2 = m1(x, mask), m2(x, mask)
    same = m1.fuse_outputs([o1, o1])
    assert torch.allclose(torch.sigmoid(same["cls_logits"]), torch.sigmoid(o1["cls_logits"]), atol=1e-5)
    fused = m1.fuse_outputs([o1, o2])
    avg = (torch.sigmoid(o1["cls_logits"]) + torch.sigmoid(o2["cls_logits"])) / 2
    assert torch.allclose(torch.sigmoid(fused["cls_logits"]), avg, atol=1e-5)
    assert torch.allclose(fused["offsets"], (o1["offsets"] + o2["offsets"]) / 2)
    assert torch.allclose(fused["attention"], (o1["attention"] + o2["attention"]) / 2)
    preds = m1.predict_from_outputs(fused, mask, pre_nms_top_k=5)
    assert len(preds) == 2 and preds[0]["segments"].shape == (5, 2)


# ---------------------------------------------------------------- training interface
def test_stage_parameters_partition_all_parameters():
    m = small_model()
    frame, segment = m.stage_parameters("frame"), m.stage_parameters("segment")
    ids_f, ids_s = {id(p) for p in frame}, {id(p) for p in segment}
    assert frame and segment and not ids_f & ids_s
    assert ids_f | ids_s == {id(p) for p in m.parameters()}
    assert ids_f == {id(p) for p in m.gaf.frame.parameters()}
    plain = small_model(gaf=False)
    assert plain.stage_parameters("frame") == []
    assert len(plain.stage_parameters("segment")) == len(list(plain.parameters()))


def test_segment_stage_losses_and_gradients():
    m = small_model().train()
    x, mask, segs, labels = padded_batch()
    out = m.losses(x, mask, segs, labels, stage="segment", progress=0.5)
    for key in ("total", "ai", "nai", "clf", "rep", "ai_cls", "ai_reg", "ai_quality", "ai_saliency", "ai_refine"):
        assert key in out and torch.isfinite(out[key])
    out["total"].backward()
    assert all(p.grad is None for p in m.stage_parameters("frame"))  # Frame-GAF stays frozen
    assert m.gaf.segment.out.weight.grad is not None and m.detector.cls_head.weight.grad is not None


def test_frame_stage_trains_only_the_cvae():
    m = small_model().train()
    x, mask, segs, labels = padded_batch()
    out = m.losses(x, mask, segs, labels, stage="frame", progress=0.0)
    assert set(out) == {"total", "cvae", "cvae_recon", "cvae_kl"}
    out["total"].backward()
    assert all(p.grad is None for p in m.stage_parameters("segment"))
    assert any(p.grad is not None for p in m.stage_parameters("frame"))


def test_representation_weight_ramps_with_progress():
    m = small_model().eval()  # eval: L_R uses the prior mean, so both calls see the same terms
    x, mask, segs, labels = padded_batch()
    a = m.losses(x, mask, segs, labels, stage="segment", progress=0.0)
    b = m.losses(x, mask, segs, labels, stage="segment", progress=1.0)
    assert float((b["total"] - a["total"]).detach()) == pytest.approx(m.cfg.loss.rep * float(a["rep"].detach()), rel=1e-4)


def test_plain_detector_has_no_gaf_terms_and_no_frame_stage():
    m = small_model(gaf=False).train()
    x, mask, segs, labels = padded_batch()
    assert float(m.losses(x, mask, segs, labels, stage="frame")["total"]) == 0.0
    out = m.losses(x, mask, segs, labels, stage="segment")
    assert {"total", "cls", "reg", "quality", "saliency", "refine"} <= set(out)
    assert not {"nai", "clf", "rep"} & set(out)


def test_switched_off_terms_are_skipped():
    torch.manual_seed(0)
    cfg = ModelConfig(gaf=GAFConfig(**SMALL_GAF), detector=DetectorConfig(embed_dim=16, num_levels=3, refine=False,
                                                                          saliency=False),
                      loss=LossConfig(nai=0.0, clf=0.0, rep=0.0, att=0.0))
    m = build_model(cfg, 8, 3, 64)
    x, mask, segs, labels = padded_batch()
    out = m.losses(x, mask, segs, labels, stage="segment", progress=1.0)
    assert set(out) == {"total", "ai", "ai_cls", "ai_reg", "ai_quality"}


def test_model_config_builds_from_plain_dicts():
    cfg = from_dict(ModelConfig, {"gaf": {"enabled": False}, "detector": {"embed_dim": 64, "score": "sqrt"},
                                  "loss": {"nai": 2.0, "cvae_beta": "1e-2"}})
    assert cfg.gaf.enabled is False and cfg.detector.embed_dim == 64 and cfg.loss.cvae_beta == 0.01


# ---------------------------------------------------------------- learning
def pulse_data(n: int = 6, C: int = 16, T: int = 128, seed: int = 0):
    """Clean rectangular pulses: class c lights channels [8c, 8c+8) inside each instance."""
    g = torch.Generator().manual_seed(seed)
    feats, segs, labels = [], [], []
    for _ in range(n):
        x = 0.1 * torch.randn(C, T, generator=g)
        slots = sorted(torch.randperm(T // 32, generator=g)[: int(torch.randint(1, 3, (1,), generator=g))].tolist())
        s_list, l_list = [], []
        for slot in slots:
            s = slot * 32 + int(torch.randint(0, 8, (1,), generator=g))
            length = int(torch.randint(8, 24, (1,), generator=g))
            c = int(torch.randint(0, 2, (1,), generator=g))
            x[c * 8:(c + 1) * 8, s:s + length] += 1.0
            s_list.append([float(s), float(s + length)])
            l_list.append(c)
        feats.append(x)
        segs.append(torch.tensor(s_list))
        labels.append(torch.tensor(l_list))
    return torch.stack(feats), segs, labels


@pytest.mark.learning
def test_gaf_detector_overfits_synthetic_pulses_with_alternating_stages(train_seed, record_property):
    torch.set_num_threads(1)
    x, segs, labels = pulse_data()
    mask = torch.ones(x.shape[0], x.shape[2], dtype=torch.bool)
    torch.manual_seed(train_seed)
    cfg = ModelConfig(gaf=GAFConfig(attention_dim=32, reduce_dim=16, hidden_dim=32, latent_dim=8),
                      detector=DetectorConfig(embed_dim=32, num_levels=4, head_layers=1))
    m = build_model(cfg, 16, 2, 128)
    opts = {s: torch.optim.Adam(m.stage_parameters(s), lr=3e-3) for s in ("frame", "segment")}
    steps = 200
    for it in range(steps):
        for stage in ("frame", "segment"):
            loss = m.losses(x, mask, segs, labels, stage=stage, progress=it / steps)["total"]
            opts[stage].zero_grad()
            loss.backward()
            opts[stage].step()
    m.eval()
    worst_iou = worst_gap = float("inf")
    for pred, gt, lab in zip(m.predict(x, mask), segs, labels):
        top, cls = pred["segments"][0], int(pred["labels"][0])
        ious = tiou_1d(top[None].expand(len(gt), 2), gt)
        j = int(ious.argmax())
        assert float(ious[j]) > 0.7 and cls == int(lab[j])
        inside = torch.zeros(x.shape[2], dtype=torch.bool)
        for s, e in gt.long().tolist():
            inside[s:e] = True
        gap = float(pred["attention"][inside].mean()) - float(pred["attention"][~inside].mean())
        assert gap > 0.3
        worst_iou, worst_gap = min(worst_iou, float(ious[j])), min(worst_gap, gap)
    record_property("worst top tIoU", worst_iou)
    record_property("worst λ in - out", worst_gap)


@pytest.mark.parametrize("attention,oracle", [("scalar", False), ("channel", False), ("scalar", True)])
def test_lambda_alone_is_what_the_full_forward_returns(attention, oracle):
    """The attention-health probe reads λ through batch_attention (GAF only, no detector pass)."""
    torch.manual_seed(0)
    cfg = ModelConfig(gaf=GAFConfig(attention=attention, oracle=oracle, **SMALL_GAF),
                      detector=DetectorConfig(embed_dim=16, num_levels=4, head_layers=1))
    m = build_model(cfg, in_dim=8, num_classes=3, max_seq_len=64).eval()
    x, mask, segs, labels = padded_batch()
    x[1, :, 37:] = 50.0  # padding content must not reach λ either way
    batch = {"features": x, "mask": mask, "segments": segs, "labels": labels}
    with torch.no_grad():
        full = batch_outputs(m, batch, "cpu")["attention"]
        alone = batch_attention(m, batch, "cpu")
    assert alone.shape == full.shape and torch.allclose(alone, full, atol=1e-6)
    assert batch_attention(small_model(gaf=False), batch, "cpu") is None
