"""Inception-I3D: pytorch-i3d key layout, shapes, TF-SAME padding, weight loading and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gaf.errors import CheckpointError, ConfigError
from gaf.models.backbones.i3d import VALID_ENDPOINTS, InceptionI3d, build_i3d, load_i3d_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # small CPU kernels: one thread is fastest here


def _model(seed: int, **kw) -> InceptionI3d:
    torch.manual_seed(seed)
    model = InceptionI3d(**kw).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so loading them matters
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    return model


def _clip(channels: int = 3, t: int = 8, size: int = 48) -> torch.Tensor:
    return torch.rand(2, channels, t, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_state_dict_has_the_pytorch_i3d_key_layout_and_shapes() -> None:
    state = InceptionI3d(in_channels=3, num_classes=400).state_dict()
    expected = {
        "Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7),
        "Conv3d_1a_7x7.bn.running_mean": (64,),
        "Conv3d_2b_1x1.conv3d.weight": (64, 64, 1, 1, 1),
        "Conv3d_2c_3x3.conv3d.weight": (192, 64, 3, 3, 3),
        "Mixed_3b.b0.conv3d.weight": (64, 192, 1, 1, 1),
        "Mixed_3b.b1a.bn.running_mean": (96,),
        "Mixed_3b.b1b.conv3d.weight": (128, 96, 3, 3, 3),
        "Mixed_4f.b3b.conv3d.weight": (128, 528, 1, 1, 1),
        "Mixed_5c.b2b.conv3d.weight": (128, 48, 3, 3, 3),
        "Mixed_5c.b3b.bn.bias": (128,),
        "logits.conv3d.weight": (400, 1024, 1, 1, 1),
        "logits.conv3d.bias": (400,),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert {k.split(".")[0] for k in state} == {e for e in VALID_ENDPOINTS if "Pool" not in e} | {"logits"}
    assert not any(".b3a." in k or "MaxPool" in k or k.startswith("logits.bn") for k in state)
    assert not any(k.startswith("Conv3d_1a_7x7.conv3d.bias") for k in state)  # convs have no bias
    flow = InceptionI3d(in_channels=2, num_classes=157).state_dict()
    assert tuple(flow["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 2, 7, 7, 7)
    assert tuple(flow["logits.conv3d.weight"].shape) == (157, 1024, 1, 1, 1)


def test_features_endpoints_and_logits_shapes() -> None:
    model = _model(0, num_classes=400)
    x = _clip(t=16, size=64)
    with torch.no_grad():
        feats = model.forward_features(x)
        maps = model.extract_endpoints(x, ("Mixed_4f", "Mixed_5c"))
        logits = model(x)
    assert feats.shape == (2, 1024, 2)
    assert maps["Mixed_4f"].shape == (2, 832, 4, 4, 4)
    assert maps["Mixed_5c"].shape == (2, 1024, 2, 2, 2)
    torch.testing.assert_close(feats, maps["Mixed_5c"].mean(dim=(3, 4)))
    assert logits.shape == (2, 400, 2)


@pytest.mark.parametrize("t,h,w", [(7, 33, 50), (9, 40, 41)])
def test_tf_same_padding_gives_ceil_of_size_over_stride(t: int, h: int, w: int) -> None:
    model = _model(0, num_classes=None, final_endpoint="Conv3d_1a_7x7")
    out = model.extract_endpoints(torch.zeros(1, 3, t, h, w), ("Conv3d_1a_7x7",))["Conv3d_1a_7x7"]
    assert out.shape[2:] == (-(-t // 2), -(-h // 2), -(-w // 2))
    deep = _model(0, num_classes=None)
    with torch.no_grad():
        assert deep.forward_features(torch.zeros(1, 3, t, h, w)).shape == (1, 1024, -(-t // 8))


def test_wrong_input_channels_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(N, 2, T, H, W\)"):
        InceptionI3d(in_channels=2, num_classes=None).forward_features(_clip(channels=3))


def test_saved_state_dict_reloads_into_a_fresh_model_with_identical_outputs(tmp_path: Path) -> None:
    source = _model(0, in_channels=3, num_classes=400)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(source.state_dict(), path)
    fresh = _model(123, in_channels=3, num_classes=400)
    x = _clip()
    with torch.no_grad():
        assert not torch.allclose(fresh.forward_features(x), source.forward_features(x))
        load_i3d_weights(fresh, path)
        torch.testing.assert_close(fresh.forward_features(x), source.forward_features(x), rtol=0, atol=0)
        torch.testing.assert_close(fresh(x), source(x), rtol=0, atol=0)


def test_wrapped_prefixed_and_old_format_state_dicts_load(tmp_path: Path) -> None:
    source = _model(0, in_channels=2, num_classes=400)
    state = {f"module.{k}": v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "flow.pt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    fresh = _model(5, in_channels=2, num_classes=400)
    load_i3d_weights(fresh, path)
    x = _clip(channels=2)
    with torch.no_grad():
        torch.testing.assert_close(fresh.forward_features(x), source.forward_features(x), rtol=0, atol=0)


def test_renamed_key_and_wrong_shape_raise_checkpoint_error_naming_the_keys(tmp_path: Path) -> None:
    state = _model(0).state_dict()
    renamed = dict(state)
    renamed["Mixed_3b.b1a.bn.running_avg"] = renamed.pop("Mixed_3b.b1a.bn.running_mean")
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError) as err:
        load_i3d_weights(_model(1), tmp_path / "renamed.pt")
    assert "missing keys: Mixed_3b.b1a.bn.running_mean" in str(err.value)
    assert "unexpected keys: Mixed_3b.b1a.bn.running_avg" in str(err.value)
    assert "renamed.pt" in str(err.value)

    reshaped = dict(state)
    reshaped["Mixed_4c.b1b.conv3d.weight"] = torch.zeros(224, 112, 1, 3, 3)
    torch.save(reshaped, tmp_path / "reshaped.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatches: Mixed_4c\.b1b\.conv3d\.weight"):
        load_i3d_weights(_model(1), tmp_path / "reshaped.pt")

    # a flow checkpoint into an RGB model: the first conv does not fit
    torch.save(_model(0, in_channels=2).state_dict(), tmp_path / "flow.pt")
    with pytest.raises(CheckpointError, match=r"Conv3d_1a_7x7\.conv3d\.weight \(file \(64, 2, 7, 7, 7\)"):
        load_i3d_weights(_model(1, in_channels=3), tmp_path / "flow.pt")


def test_unreadable_or_non_state_dict_files_raise_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    for name, why in (("junk.pt", "cannot read"), ("list.pt", "not an I3D state dict"), ("none.pt", "not found")):
        with pytest.raises(CheckpointError, match=why):
            load_i3d_weights(_model(0), tmp_path / name)


def test_logits_of_another_class_count_are_skipped_with_a_warning(tmp_path: Path) -> None:
    source = _model(0, num_classes=400)
    torch.save(source.state_dict(), tmp_path / "kinetics.pt")
    charades = _model(1, num_classes=157)
    head = charades.logits.conv3d.weight.clone()
    with pytest.warns(UserWarning, match="logits head not loaded"):
        load_i3d_weights(charades, tmp_path / "kinetics.pt")
    torch.testing.assert_close(charades.logits.conv3d.weight, head)
    x = _clip()
    with torch.no_grad():
        torch.testing.assert_close(charades.forward_features(x), source.forward_features(x), rtol=0, atol=0)


def test_feature_models_ignore_the_head_and_deeper_layers(tmp_path: Path) -> None:
    source = _model(0, num_classes=400)
    torch.save(source.state_dict(), tmp_path / "full.pt")
    x = _clip()
    headless = _model(1, num_classes=None)
    load_i3d_weights(headless, tmp_path / "full.pt")  # no warning needed: there is no head to fill
    shallow = _model(2, num_classes=None, final_endpoint="Mixed_4f")
    load_i3d_weights(shallow, tmp_path / "full.pt")
    with torch.no_grad():
        torch.testing.assert_close(headless.forward_features(x), source.forward_features(x), rtol=0, atol=0)
        torch.testing.assert_close(shallow.forward_features(x),
                                   source.extract_endpoints(x, ("Mixed_4f",))["Mixed_4f"].mean(dim=(3, 4)))


def test_build_i3d_warns_loudly_without_weights_and_loads_with_them(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="UNTRAINED"):
        rgb = build_i3d("rgb")
    assert rgb.in_channels == 3 and rgb.logits is None and rgb.feature_dim == 1024
    source = _model(0, in_channels=2)
    torch.save(source.state_dict(), tmp_path / "flow_imagenet.pt")
    flow = build_i3d("flow", str(tmp_path / "flow_imagenet.pt")).eval()
    x = _clip(channels=2)
    with torch.no_grad():
        torch.testing.assert_close(flow.forward_features(x), source.forward_features(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="stream"):
        build_i3d("depth")
