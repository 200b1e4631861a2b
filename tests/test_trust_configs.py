"""Strict configs: every numeric key is range-checked at load time, before any work, with its dotted key
in a one-line error (exit 2, nothing written); duplicate YAML keys are an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaf.cli import main

BAD = [
    ("train.epochs=0", "train.epochs: must be >= 1, got 0"),
    ("train.batch_size=0", "train.batch_size: must be >= 1"),
    ("train.lr=0", "train.lr: must be > 0"),
    ("train.lr=.inf", "train.lr: must be a finite number"),
    ("train.lr=.nan", "train.lr: must be a finite number"),
    ("train.weight_decay=-1e-4", "train.weight_decay: must be >= 0"),
    ("train.ema_decay=5", "train.ema_decay: must be in (0, 1), got 5.0"),
    ("train.ema_decay=1", "train.ema_decay: must be in (0, 1)"),
    ("train.seed=-1", "train.seed: must be in [0, 2**32 - 1]"),
    ("train.seed=4294967296", "train.seed: must be in [0, 2**32 - 1]"),
    ("train.step_epochs=[0]", "train.step_epochs: must be >= 1"),
    ("model.loss.nai=-0.5", "model.loss.nai: must be >= 0"),
    ("model.loss.cvae_beta=-1", "model.loss.cvae_beta: must be >= 0"),
    ("model.detector.kernel_size=4", "model.detector.kernel_size: must be odd and >= 1, got 4"),
    ("model.detector.embed_dim=0", "model.detector.embed_dim: must be >= 1"),
    ("model.detector.num_levels=11", "model.detector.num_levels: 11 levels need a window of at least 2**10"),
    ("model.gaf.latent_dim=0", "model.gaf.latent_dim: must be >= 1"),
    ("model.gaf.attention_kernel=2", "model.gaf.attention_kernel: must be odd and >= 1"),
    ("model.gaf.context_heads=3", "model.gaf.context_heads: 3 must divide model.gaf.attention_dim"),
    ("eval.max_per_video=-1", "eval.max_per_video: must be >= 1, got -1"),
    ("eval.nms_sigma=0", "eval.nms_sigma: must be > 0"),
    ("eval.tious=[0.5,0.3]", "eval.tious: must be strictly increasing"),
    ("eval.tious=[0.3,0.3]", "eval.tious: must be strictly increasing (no repeats)"),
    ("eval.tious=[0.0,0.5]", "eval.tious: each must be in (0, 1]"),
    ("eval.tious=[0.5,1.5]", "eval.tious: each must be in (0, 1]"),
    ("eval.tious=[]", "eval.tious: give at least one tIoU threshold"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_value_is_refused_before_any_work(override: str, message: str, tmp_path: Path, capsys) -> None:
    work = tmp_path / "run"
    assert main(["train", "demo", "--set", override, "--work-dir", str(work), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not work.exists()


def test_the_shipped_configs_are_all_valid(capsys) -> None:
    from gaf.engine.experiment import bundled_configs, load_experiment
    from gaf.engine.recognition import is_recognition_config, load_recognition_experiment

    for name in bundled_configs():
        (load_recognition_experiment if is_recognition_config(name) else load_experiment)(name)


def test_a_key_given_twice_in_a_yaml_file_is_an_error(tmp_path: Path, capsys) -> None:
    config = tmp_path / "twice.yaml"
    config.write_text("name: twice\ntrain:\n  epochs: 2\n  lr: 0.001\n  epochs: 30\n")
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{config}: line 5 invalid YAML (duplicate key 'epochs' (first on line 3))" in err
    assert not (tmp_path / "run").exists()


def test_recognition_configs_are_checked_too(tmp_path: Path, capsys) -> None:
    for override, message in (("model.dropout=1.0", "model.dropout: must be in [0, 1)"),
                              ("eval.num_clips=0", "eval.num_clips: must be >= 1"),
                              ("eval.topk=[0]", "eval.topk: must be >= 1"),
                              ("train.epochs=0", "train.epochs: must be >= 1")):
        assert main(["train", "ucf101_features", "--set", override, "--work-dir", str(tmp_path / "r")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["demo", "thumos14_i3d", "ucf101_features"])
def test_config_show_prints_every_key_resolved_with_defaults_and_ranges(name: str, capsys) -> None:
    import yaml

    from gaf.config import to_dict
    from gaf.engine.experiment import load_experiment
    from gaf.engine.recognition import is_recognition_config, load_recognition_experiment

    assert main(["config", "show", name, "--set", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    loader = load_recognition_experiment if is_recognition_config(name) else load_experiment
    assert yaml.safe_load(out) == to_dict(loader(name, ["train.epochs=3"]))  # every key, resolved
    assert "epochs: 3  # default: 20; must be >= 1" in out
    for key in ("keep_checkpoints:", "checkpoint_every:", "eval_at_end:", "frame_lr:", "health_items:"):
        assert key in out
    if name != "ucf101_features":
        assert "class_agnostic_nms: false" in out and "pre_nms_top_k: 2000  # must be >= 1" in out
        assert "att: 1.0  # must be >= 0" in out
        linear = name in ("thumos14_i3d", "thumos14_i3d_afsd")  # the configs that set it
        context = "context: linear  # default: global; one of" if linear else "context: global  # one of"
        assert context + " local | global | window | linear" in out


def _feature_detection_configs() -> list[str]:
    """The shipped detection configs that train on features (not recognition, not end to end on frames)."""
    from gaf.engine.experiment import bundled_configs, load_experiment
    from gaf.engine.recognition import is_recognition_config

    return [n for n in bundled_configs() if not is_recognition_config(n) and load_experiment(n).e2e is None]


@pytest.mark.parametrize("name", _feature_detection_configs())
def test_every_shipped_feature_config_builds_its_model_and_padding_stays_out_of_valid_outputs(name: str) -> None:
    import torch

    from gaf.engine.experiment import load_experiment
    from gaf.models.gaf_detector import build_model

    cfg = load_experiment(name)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.dataset.input_dim, 20, cfg.dataset.max_seq_len).eval()
    T, valid = 96, 70
    x = torch.randn(2, cfg.dataset.input_dim, T)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, valid:] = False
    with torch.no_grad():
        batched = model(x, mask)
        alone = model(x[1:2, :, :valid], mask[1:2, :valid])
    keep = batched["point_mask"][1]
    assert batched["cls_logits"].shape[-1] == 20 and torch.isfinite(batched["cls_logits"]).all()
    assert torch.allclose(batched["cls_logits"][1][keep], alone["cls_logits"][0], atol=1e-4)
    assert torch.allclose(batched["offsets"][1][keep], alone["offsets"][0], atol=1e-3)


@pytest.mark.parametrize("name, detector_keys, loss_keys", [
    ("thumos14_i3d", {"backbone", "head_layers", "norm", "saliency"}, {"saliency", "reg_mode"}),  # the THUMOS14 table's
    ("anet_i3d", {"backbone"}, set()),  # the ActivityNet table's: demo_anet's norm, saliency head and GIoU
])
def test_the_afsd_configs_are_the_defaults_on_the_papers_base_detector(name: str, detector_keys: set,
                                                                        loss_keys: set) -> None:
    """``X_afsd`` differs from ``X`` only in the detector (the paper's AFSD-style conv base; both with the
    regression boundary head) and, for THUMOS14, its losses (saliency, regression form): same data, GAF,
    schedule and evaluation, so the two compare the base detectors alone."""
    from gaf.config import to_dict
    from gaf.engine.experiment import load_experiment

    best, afsd = to_dict(load_experiment(name)), to_dict(load_experiment(f"{name}_afsd"))
    assert (best["name"], afsd["name"]) == (name, f"{name}_afsd")
    for key in ("dataset", "train", "eval", "benchmark"):
        assert best[key] == afsd[key], key
    assert best["model"]["gaf"] == afsd["model"]["gaf"] and best["model"]["gaf"]["enabled"]
    # THUMOS14's whole test videos (up to ~12,600 steps): a context whose cost is linear in T (the three
    # THUMOS14-like benchmarks measured it as accurate as softmax attention); ActivityNet's videos are resized
    assert best["model"]["gaf"]["context"] == ("linear" if name == "thumos14_i3d" else "global")
    detector_diff = {k for k in best["model"]["detector"]
                     if best["model"]["detector"][k] != afsd["model"]["detector"][k]}
    assert detector_diff == detector_keys
    assert (best["model"]["detector"]["backbone"], afsd["model"]["detector"]["backbone"]) == ("sgp", "conv")
    assert best["model"]["detector"]["boundary_head"] == "regression"
    loss_diff = {k for k in best["model"]["loss"] if best["model"]["loss"][k] != afsd["model"]["loss"][k]}
    assert loss_diff == loss_keys
    assert afsd["model"]["loss"]["reg_mode"] == "giou"
    assert best["model"]["loss"]["reg_mode"] == ("diou" if "reg_mode" in loss_keys else "giou")
