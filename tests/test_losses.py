"""Specification of gaf.losses: each loss against its formula on hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from gaf import losses as L

LN2 = math.log(2.0)


def test_focal_loss_at_zero_logit_matches_hand_values():
    logits = torch.zeros(2)
    targets = torch.tensor([1.0, 0.0])
    out = L.sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="none")
    # p = 0.5: CE = ln 2, (1 - p_t)^2 = 0.25; alpha_t = 0.25 (positive), 0.75 (negative)
    assert out.tolist() == pytest.approx([0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2], rel=1e-6)


def test_focal_loss_matches_formula_on_random_inputs():
    torch.manual_seed(0)
    logits = torch.randn(50, 3, dtype=torch.float64) * 4
    targets = (torch.rand(50, 3) > 0.7).double()
    p = torch.sigmoid(logits)
    p_t = torch.where(targets > 0, p, 1 - p)
    alpha_t = 0.3 * targets + 0.7 * (1 - targets)
    expected = (-alpha_t * (1 - p_t) ** 1.5 * torch.log(p_t)).sum()
    got = L.sigmoid_focal_loss(logits, targets, alpha=0.3, gamma=1.5)
    assert float(got) == pytest.approx(float(expected), rel=1e-9)


def test_focal_loss_is_finite_for_extreme_logits():
    logits = torch.tensor([100.0, -100.0, 100.0, -100.0])
    targets = torch.tensor([1.0, 0.0, 0.0, 1.0])
    out = L.sigmoid_focal_loss(logits, targets, reduction="none")
    assert torch.isfinite(out).all()
    assert out[:2].abs().max() < 1e-20 and out[2] > 50 and out[3] > 10


@pytest.mark.parametrize(
    "pred, target, giou, diou, iou",
    [
        ([0.0, 4.0], [0.0, 4.0], 0.0, 0.0, 0.0),  # identical
        ([0.0, 1.0], [2.0, 3.0], 1.0 + 1.0 / 3.0, 1.0 + (2.0 / 3.0) ** 2, 1.0),  # disjoint: hull 3, union 2
        ([0.0, 4.0], [1.0, 2.0], 0.75, 0.75 + (0.5 / 4.0) ** 2, 0.75),  # nested: hull == union, centres 2 / 1.5
        ([0.0, 4.0], [1.0, 3.0], 0.5, 0.5, 0.5),  # nested, same centre: DIoU == tIoU
        ([0.0, 2.0], [1.0, 3.0], 1.0 - 1.0 / 3.0, 1.0 - 1.0 / 3.0 + (1.0 / 3.0) ** 2, 1.0 - 1.0 / 3.0),  # half
    ],
)
def test_iou_losses_on_segments(pred, target, giou, diou, iou):
    p, t = torch.tensor([pred]), torch.tensor([target])
    assert float(L.giou_loss_1d(p, t, kind="segments")) == pytest.approx(giou, abs=1e-6)
    assert float(L.giou_loss_1d(p, t, kind="segments", mode="diou")) == pytest.approx(diou, abs=1e-6)
    assert float(L.giou_loss_1d(p, t, kind="segments", mode="iou")) == pytest.approx(iou, abs=1e-6)


def test_diou_pulls_overlapping_centres_together_where_giou_does_not():
    # from point 0: target (1, 3) = [-1, 3]; pred (2, 2) = [-2, 2] overlaps it, hull == union
    pred = torch.tensor([[2.0, 2.0]], requires_grad=True)
    target = torch.tensor([[1.0, 3.0]])
    assert float(L.giou_loss_1d(pred, target, mode="diou")) == pytest.approx(1 - 3 / 5 + (1 / 5) ** 2, abs=1e-6)
    L.giou_loss_1d(pred, target, mode="diou").backward()
    diou_grad = pred.grad.clone()
    pred.grad = None
    L.giou_loss_1d(pred, target, mode="giou").backward()
    # shifting the prediction right (left - d, right + d) lowers the DIoU loss more than the GIoU loss
    shift = torch.tensor([-1.0, 1.0])
    assert float((diou_grad[0] * shift).sum()) < float((pred.grad[0] * shift).sum()) < 0


def test_giou_loss_on_distances_from_a_shared_point():
    # point 5: (1, 2) -> [4, 7]; (2, 2) -> [3, 7]; tIoU 3/4, hull == union
    loss = L.giou_loss_1d(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 2.0]]), kind="distances")
    assert float(loss) == pytest.approx(0.25, abs=1e-6)
    assert float(L.tiou_1d(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 2.0]]), kind="distances")) == \
        pytest.approx(0.75)


def test_giou_loss_sum_and_mean():
    p = torch.tensor([[0.0, 4.0], [0.0, 4.0]])
    t = torch.tensor([[0.0, 4.0], [1.0, 2.0]])
    assert float(L.giou_loss_1d(p, t, kind="segments")) == pytest.approx(0.75)
    assert float(L.giou_loss_1d(p, t, kind="segments", reduction="mean")) == pytest.approx(0.375)


def test_quality_bce_masked_mean():
    logits = torch.tensor([0.0, 0.0, 50.0])
    targets = torch.tensor([1.0, 0.5, 0.0])
    mask = torch.tensor([True, True, False])
    assert float(L.quality_bce(logits, targets, mask)) == pytest.approx(LN2)


def test_boundary_saliency_loss_ignores_padding_and_weights_positives():
    logits = torch.zeros(1, 2, 4)
    targets = torch.zeros(1, 2, 4)
    targets[0, 0, 1] = 1.0
    mask = torch.tensor([[True, True, False, False]])
    plain = L.boundary_saliency_loss(logits, targets, mask)
    assert float(plain) == pytest.approx(LN2)
    logits_bad_pad = logits.clone()
    logits_bad_pad[..., 2:] = 30.0
    assert float(L.boundary_saliency_loss(logits_bad_pad, targets, mask)) == pytest.approx(LN2)
    weighted = L.boundary_saliency_loss(logits, targets, mask, pos_weight=5.0)
    # 4 valid entries, one positive weighted 5x: (5 + 3) ln2 / 4
    assert float(weighted) == pytest.approx(2 * LN2)


def test_clf_loss_at_zero_logits_and_at_a_perfect_classifier():
    present = torch.tensor([[1.0, 0.0]])  # K = 2, class 0 present
    zeros = torch.zeros(1, 3)
    assert float(L.clf_loss(zeros, zeros, present)) == pytest.approx(6 * LN2)
    good_ai = torch.tensor([[20.0, -20.0, -20.0]])  # class 0, not background
    good_nai = torch.tensor([[-20.0, -20.0, 20.0]])  # background only
    assert float(L.clf_loss(good_ai, good_nai, present)) < 1e-7
    # swapping the roles is heavily penalised
    assert float(L.clf_loss(good_nai, good_ai, present)) > 40


def test_clf_loss_multi_label_targets():
    present = torch.tensor([[1.0, 1.0]])
    ai = torch.tensor([[20.0, 0.0, -20.0]])  # second present class undecided
    nai = torch.tensor([[-20.0, -20.0, 20.0]])
    assert float(L.clf_loss(ai, nai, present)) == pytest.approx(LN2, rel=1e-5)


def test_cvae_kl_matches_closed_form_and_masks_steps():
    torch.manual_seed(0)
    B, C, D, T = 2, 5, 3, 6
    mu, logvar = torch.randn(B, D, T), torch.randn(B, D, T)
    lam = torch.rand(B, T)
    target, recon = torch.randn(B, C, T), torch.randn(B, C, T)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 4:] = False
    total, rec, kl = L.cvae_loss(recon, target, mu, logvar, lam, mask, beta=0.5)
    ref_kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(lam[:, None, :].expand_as(mu), 1.0)).sum(1)
    ref_rec = (recon - target).pow(2).mean(1)
    assert float(kl) == pytest.approx(float(ref_kl[mask].mean()), rel=1e-5)
    assert float(rec) == pytest.approx(float(ref_rec[mask].mean()), rel=1e-5)
    # Eq. 7 per step (squared error summed over channels + beta KL), divided by C.
    eq7 = (recon - target).pow(2).sum(1) + 0.5 * ref_kl
    assert float(total) == pytest.approx(float(eq7[mask].mean()) / C, rel=1e-5)


def test_cvae_kl_is_zero_at_the_prior():
    lam = torch.rand(1, 4)
    mu = lam[:, None, :].expand(1, 3, 4).clone()
    logvar = torch.zeros(1, 3, 4)
    x = torch.randn(1, 2, 4)
    _, rec, kl = L.cvae_loss(x, x, mu, logvar, lam, torch.ones(1, 4, dtype=torch.bool))
    assert float(kl) == pytest.approx(0.0, abs=1e-7) and float(rec) == 0.0


def test_representation_loss_is_masked_mse():
    target = torch.zeros(1, 2, 3)
    recon = torch.tensor([[[1.0, 2.0, 100.0], [3.0, 0.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    # per step mean over channels: (1 + 9) / 2 = 5, (4 + 0) / 2 = 2 -> mean 3.5
    assert float(L.representation_loss(recon, target, mask)) == pytest.approx(3.5)
