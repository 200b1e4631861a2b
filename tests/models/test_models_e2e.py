"""End-to-end detector: I3D Mixed_4f / Mixed_5c maps → GAF + detector, on tiny frame clips."""

from __future__ import annotations

import warnings

import pytest
import torch

from gaf.config import from_dict
from gaf.errors import ConfigError
from gaf.models.e2e import E2EConfig, E2EDetector, build_e2e_detector

pytestmark = pytest.mark.usefixtures("one_thread")  # small CPU kernels: one thread is fastest here

SMALL = {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
         "detector": {"embed_dim": 16, "num_levels": 3, "head_layers": 1}}
L, S, K = 32, 32, 3  # 32 frames of 32×32 -> T' = 8 feature steps


def tiny(*, seed: int = 0, **cfg) -> E2EDetector:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init I3D warning: intended
        model = build_e2e_detector(from_dict(E2EConfig, {"detector": SMALL, **cfg}), num_classes=K, clip_len=L)
    return model


def batch():
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(2, 3, L, S, S, generator=g) * 2 - 1
    segments = [torch.tensor([[1.0, 4.0]]), torch.tensor([[2.0, 6.0], [6.5, 8.0]])]  # steps of T' = 8
    labels = [torch.tensor([0]), torch.tensor([2, 1])]
    return frames, segments, labels


def grad_norm(params) -> float:
    return float(sum(p.grad.abs().sum() for p in params if p.grad is not None))


@pytest.mark.parametrize("merge, dim", [("concat", 832 + 1024), ("average", 24)])
def test_features_merge_mixed_4f_and_5c_at_one_step_per_four_frames(merge, dim):
    model = tiny(merge=merge, proj_dim=24)
    frames, _, _ = batch()
    feats = model.features(frames)
    assert model.feature_dim == dim and feats.shape == (2, dim, L // 4)
    assert model.max_seq_len == 8 and E2EDetector.num_steps(256) == 64  # the paper's 256-frame clips
    out = model(frames)
    P = out["points"].shape[0]
    assert out["cls_logits"].shape == (2, P, K) and out["offsets"].shape == (2, P, 2)
    assert out["attention"].shape == (2, 8) and out["mask"].all()


def test_concat_keeps_mixed_4f_channels_first_and_upsampled_mixed_5c_after():
    model = tiny().eval()
    frames, _, _ = batch()
    with torch.no_grad():
        maps = model.backbone.extract_endpoints(frames, ("Mixed_4f", "Mixed_5c"))
        feats = model.features(frames)
    assert maps["Mixed_4f"].shape[2] == 8 and maps["Mixed_5c"].shape[2] == 4  # temporal strides 4 and 8
    assert torch.allclose(feats[:, :832], maps["Mixed_4f"].mean(dim=(3, 4)))
    f5 = maps["Mixed_5c"].mean(dim=(3, 4))
    up = torch.nn.functional.interpolate(f5, size=8, mode="linear", align_corners=False)
    assert torch.allclose(feats[:, 832:], up)  # Mixed_5c linearly upsampled to Mixed_4f's 8 steps
    assert torch.allclose(feats[:, 832:, 0], f5[:, :, 0])  # linear upsampling keeps the ends
    assert torch.allclose(feats[:, 832:, -1], f5[:, :, -1])


def test_segment_stage_trains_the_backbone_end_to_end():
    model = tiny()
    frames, segments, labels = batch()
    model.train()
    losses = model.losses(frames, None, segments, labels, stage="segment", progress=0.5)
    assert {"total", "ai", "nai", "clf", "rep"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert grad_norm(model.backbone.parameters()) > 0  # gradients reach the I3D
    assert model.backbone.Conv3d_1a_7x7.conv3d.weight.grad.abs().sum() > 0  # down to its first conv
    assert grad_norm(model.detector.detector.parameters()) > 0
    seg_ids = {id(p) for p in model.stage_parameters("segment")}
    assert all(id(p) in seg_ids for p in model.backbone.parameters())


def test_frame_stage_trains_only_frame_gaf_and_leaves_backbone_statistics():
    model = tiny()
    frames, segments, labels = batch()
    model.train()
    running = model.backbone.Mixed_5c.b0.bn.running_mean.clone()
    losses = model.losses(frames, None, segments, labels, stage="frame")
    assert {"total", "cvae", "cvae_recon", "cvae_kl"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())  # no gradient to the backbone
    assert grad_norm(model.stage_parameters("frame")) > 0
    assert torch.equal(model.backbone.Mixed_5c.b0.bn.running_mean, running)  # ran in eval mode
    assert model.backbone.training  # and is back in train mode


def test_stage_parameters_partition_the_model():
    model = tiny(merge="average", proj_dim=16)
    frame = {id(p) for p in model.stage_parameters("frame")}
    segment = {id(p) for p in model.stage_parameters("segment")}
    assert frame and segment and not frame & segment
    assert frame | segment == {id(p) for p in model.parameters()}
    with pytest.raises(ValueError, match="stage"):
        model.stage_parameters("both")


def test_frozen_backbone_is_left_out_of_every_stage():
    model = tiny(freeze_backbone=True)
    frames, segments, labels = batch()
    backbone = {id(p) for p in model.backbone.parameters()}
    assert not backbone & {id(p) for s in ("frame", "segment") for p in model.stage_parameters(s)}
    model.train()
    model.losses(frames, None, segments, labels, stage="segment")["total"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())


@pytest.mark.learning
def test_two_stage_training_steps_lower_the_segment_loss_and_predict_runs(train_seed, record_property):
    model = tiny(merge="average", proj_dim=32, seed=train_seed)
    frames, segments, labels = batch()
    opts = {s: torch.optim.Adam(model.stage_parameters(s), lr=1e-3) for s in ("frame", "segment")}
    first = last = None
    for step in range(6):
        for stage in ("frame", "segment"):
            model.train()
            loss = model.losses(frames, None, segments, labels, stage=stage)["total"]
            opts[stage].zero_grad(set_to_none=True)
            loss.backward()
            opts[stage].step()
            if stage == "segment":
                first = loss.item() if first is None else first
                last = loss.item()
    record_property("last / first loss", last / first)
    assert last < first
    model.eval()
    preds = model.predict(frames, score_threshold=0.0, pre_nms_top_k=10)
    assert len(preds) == 2 and preds[0]["segments"].shape == (10, 2)
    assert float(preds[0]["segments"].min()) >= 0 and float(preds[0]["segments"].max()) <= 8
    fused = model.fuse_outputs([model(frames), model(frames)])
    assert fused["cls_logits"].shape == model(frames)["cls_logits"].shape


def test_bad_inputs_and_settings_are_reported():
    model = tiny()
    with pytest.raises(ValueError, match="frames"):
        model(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="mask"):
        model(batch()[0], torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ConfigError, match="clip_len"):
        E2EDetector(E2EConfig(), num_classes=2, clip_len=2)
    with pytest.raises(ConfigError, match="merge"):
        from_dict(E2EConfig, {"merge": "sum"})


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_freeze_bn_keeps_backbone_statistics_fixed_in_training(freeze_bn):
    from gaf.models.e2e import E2EConfig, build_e2e_detector

    torch.manual_seed(0)
    model = build_e2e_detector(E2EConfig(freeze_bn=freeze_bn), num_classes=2, clip_len=32)
    model.train()
    bn = model.backbone.Conv3d_1a_7x7.bn
    assert bn.training is (not freeze_bn)
    before = bn.running_mean.clone()
    with torch.no_grad():
        model.backbone.forward_features(torch.randn(1, 3, 32, 32, 32))
    assert torch.equal(bn.running_mean, before) is freeze_bn
