"""Recognition end to end through the public API and the CLI entry points:
a UCF101-style cached-feature dataset in the official split-file format,
two-stage training that learns, eval from final.pt reproducing the metrics,
and clear errors for bad split files and missing features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gaf.config import from_dict
from gaf.cli import main
from gaf.data.recognition_clips import ClipDataConfig, ClipFeatureDataset, collate_clips
from gaf.engine.checkpoint import load_checkpoint
from gaf.engine.recognition import (RecognitionExperiment, evaluate_recognizer, is_recognition_checkpoint,
                                    is_recognition_config, load_recognition_experiment, load_recognizer, train_recognizer)
from gaf.errors import DataError

CLASSES = ("ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling")
DIM = 16


def write_ucf_features(root: Path, *, train_groups: int = 8, test_groups: int = 5, noise: float = 1.0,
                       seed: int = 0) -> dict:
    """UCF101 layout: ``splits/{classInd,trainlist01,testlist01}.txt`` and ``features/<stem>.npy``.

    Each video (T = 18..30 steps, 16 channels) is unit noise with one burst
    of 8..12 steps; the burst of class k is a class-specific waveform over
    channels [4k, 4k + 4): a rising ramp, a falling ramp, a square pulse,
    an alternating sign pattern.
    """
    rng = np.random.default_rng(seed)
    splits, feats = root / "splits", root / "features"
    splits.mkdir(parents=True)
    feats.mkdir()
    (splits / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(CLASSES)))
    train_lines, test_lines = [], []
    for k, name in enumerate(CLASSES):
        for g in range(1, test_groups + train_groups + 1):
            stem = f"v_{name}_g{g:02d}_c01"
            path = f"{name}/{stem}.avi"
            (test_lines.append(path) if g <= test_groups else train_lines.append(f"{path} {k + 1}"))
            T = int(rng.integers(18, 31))
            L = int(rng.integers(8, 13))
            s = int(rng.integers(0, T - L + 1))
            x = rng.normal(0.0, noise, size=(T, DIM)).astype(np.float32)
            u = np.linspace(0.0, 1.0, L)
            wave = [u, 1.0 - u, np.ones(L), np.where(np.arange(L) % 2 == 0, 1.0, -1.0)][k]
            x[s:s + L, 4 * k:4 * k + 4] += 1.6 * wave[:, None]
            np.save(feats / f"{stem}.npy", x)
    (splits / "trainlist01.txt").write_text("".join(line + "\r\n" for line in train_lines))
    (splits / "testlist01.txt").write_text("".join(line + "\r\n" for line in test_lines))
    return {"source": "features", "split_dir": str(splits), "feature_dir": str(feats), "clip_len": 16,
            "input_dim": DIM}


def tiny_experiment(data: dict, tmp_path: Path, seed: int = 0, **model) -> RecognitionExperiment:
    return from_dict(RecognitionExperiment, {
        "task": "recognition", "name": "tiny_ucf", "dataset": data,
        "model": {"dropout": 0.1, "gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4,
                                         "fusion": "attention"}, **model},
        "train": {"epochs": 30, "batch_size": 4, "lr": 1e-2, "warmup_epochs": 1, "seed": seed},
        "eval": {"num_clips": 3, "topk": [1, 5], "batch_size": 8},
        "work_dir": str(tmp_path / "run"),
    })


@pytest.fixture
def ucf_features(tmp_path: Path) -> dict:
    return write_ucf_features(tmp_path / "ucf")


@pytest.mark.slow
@pytest.mark.learning
def test_gaf_recognizer_learns_and_eval_from_final_reproduces_metrics(ucf_features, train_seed, tmp_path,
                                                                      record_property):
    torch.set_num_threads(1)
    cfg = tiny_experiment(ucf_features, tmp_path, seed=train_seed)
    result = train_recognizer(cfg, progress=False)
    m = result.metrics
    assert m is not None and m["num_videos"] == 20 and m["num_clips"] == 3
    record_property("top1", m["top1"])
    record_property("mean class acc", m["mean_class_acc"])
    assert m["top1"] > 0.8, m  # chance is 0.25
    assert m["top5"] == 1.0  # 4 classes: every true class is in the top 5
    assert m["mean_class_acc"] > 0.8

    run = tmp_path / "run"
    for name in ("config.yaml", "log.txt", "latest.pt", "final.pt", "history.json", "metrics.json",
                 "predictions.json", "video_scores.json"):
        assert (run / name).is_file(), name
    scores = json.loads((run / "video_scores.json").read_text())  # CUHK's layout, the UCF101 list paths as ids
    assert scores["class"] == list(CLASSES) and len(scores["results"]) == 20
    assert sum(scores["results"]["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"]) == pytest.approx(1.0, abs=1e-4)
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 30 and "frame/cvae" in history[0] and "segment/clf" in history[0]
    assert history[-1]["segment/clf"] < history[0]["segment/clf"]
    assert load_checkpoint(run / "final.pt")["metrics"] == m

    # eval from final.pt (config stored in the checkpoint) gives the same numbers
    model, cfg2 = load_recognizer(run / "final.pt")
    again = evaluate_recognizer(model, cfg2).metrics
    assert again == pytest.approx(m)

    # ... and so does the CLI entry point, writing metrics / predictions into its work dir
    assert main(["eval", "--ckpt", str(run / "final.pt"), "--work-dir", str(tmp_path / "ev"), "--device", "cpu",
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text()) == pytest.approx(m)
    preds = json.loads((tmp_path / "ev" / "predictions.json").read_text())["results"]
    assert len(preds) == 20
    first = preds["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"]
    assert first["label"] == "ApplyEyeMakeup" and len(first["top5"]) == 4

    # two-stream fusion averages per-video scores: a model fused with itself scores the same
    assert is_recognition_checkpoint(run / "final.pt")
    assert main(["eval", "--ckpt", str(run / "final.pt"), "--fuse", str(run / "final.pt"), "--work-dir",
                 str(tmp_path / "fused"), "--device", "cpu", "--no-progress"]) == 0
    fused = json.loads((tmp_path / "fused" / "metrics.json").read_text())
    assert fused["streams"] == 2 and fused["top1"] == pytest.approx(m["top1"])


@pytest.mark.slow
@pytest.mark.learning
def test_baseline_without_gaf_trains_through_the_cli_entry_point(ucf_features, train_seed, tmp_path, capsys,
                                                                 record_property):
    torch.set_num_threads(1)
    cfg = tiny_experiment(ucf_features, tmp_path, seed=train_seed, gaf={"enabled": False})
    path = tmp_path / "base.yaml"
    path.write_text(cfg.to_yaml())
    assert is_recognition_config(path)
    assert main(["train", str(path), "--set", "train.epochs=6", "--work-dir", str(tmp_path / "base"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "top1" in out and "top5" in out and "mean_class_acc" in out
    metrics = json.loads((tmp_path / "base" / "metrics.json").read_text())
    record_property("top1", metrics["top1"])
    assert metrics["top1"] > 0.5
    history = json.loads((tmp_path / "base" / "history.json").read_text())
    assert len(history) == 6 and not any(k.startswith("frame/") for k in history[0])  # no Frame-GAF stage


def test_feature_dataset_crops_train_clips_and_spreads_test_clips(ucf_features):
    cfg = from_dict(ClipDataConfig, ucf_features)
    train = ClipFeatureDataset(cfg, "train")
    test = ClipFeatureDataset(cfg, "test", num_clips=4)
    assert (len(train), len(test), train.num_classes, train.input_dim) == (32, 20, 4, DIM)
    assert train.labels[:8] == [0] * 8 and test.labels[-1] == 3
    item = train[0]
    assert item["inputs"].shape == (1, DIM, 16) and item["mask"].all()
    t = test[0]
    x = np.load(Path(ucf_features["feature_dir"]) / "v_ApplyEyeMakeup_g01_c01.npy")
    assert t["inputs"].shape[1:] == (DIM, 16) and 1 <= t["inputs"].shape[0] <= 4
    assert torch.allclose(t["inputs"][0], torch.from_numpy(x[:16]).T)  # first clip starts at 0
    assert torch.allclose(t["inputs"][-1], torch.from_numpy(x[-16:]).T)  # last clip ends at the end
    batch = collate_clips([test[0], test[1]])
    assert batch["labels"].tolist() == [0, 0]
    assert batch["clip_video"].tolist() == [0] * t["inputs"].shape[0] + [1] * test[1]["inputs"].shape[0]


def test_short_videos_are_padded_and_masked(ucf_features):
    np.save(Path(ucf_features["feature_dir"]) / "v_ApplyEyeMakeup_g01_c01.npy",
            np.ones((5, DIM), dtype=np.float32))
    cfg = from_dict(ClipDataConfig, {**ucf_features, "clip_len": 8})
    item = ClipFeatureDataset(cfg, "test", num_clips=3)[0]
    assert item["inputs"].shape == (1, DIM, 8)
    assert item["mask"][0].tolist() == [True] * 5 + [False] * 3
    assert item["inputs"][0, :, 5:].abs().sum() == 0


def test_missing_feature_file_names_the_file_list_and_line(ucf_features):
    (Path(ucf_features["feature_dir"]) / "v_ApplyLipstick_g02_c01.npy").unlink()
    cfg = from_dict(ClipDataConfig, ucf_features)
    with pytest.raises(DataError, match=r"v_ApplyLipstick_g02_c01\.npy.*testlist01\.txt line 7"):
        ClipFeatureDataset(cfg, "test")


def test_bad_split_line_is_a_data_error_naming_file_and_line(ucf_features):
    split = Path(ucf_features["split_dir"]) / "trainlist01.txt"
    lines = split.read_text().splitlines()
    lines[2] = "ApplyEyeMakeup/v_ApplyEyeMakeup_g11_c01.avi 3"  # folder says class 1
    split.write_text("\n".join(lines) + "\n")
    cfg = from_dict(ClipDataConfig, ucf_features)
    with pytest.raises(DataError, match=r"trainlist01\.txt: line 3"):
        ClipFeatureDataset(cfg, "train")


def test_bundled_recognition_configs_load():
    for name in ("ucf101_features", "ucf101_i3d", "demo_anet_cls"):
        assert is_recognition_config(name)
        cfg = load_recognition_experiment(name, ["train.epochs=2"])
        assert cfg.task == "recognition" and cfg.train.epochs == 2 and cfg.eval.topk == [1, 5]
    i3d = load_recognition_experiment("ucf101_i3d")
    assert (i3d.model.backbone, i3d.dataset.source, i3d.dataset.clip_len, i3d.dataset.crop_size) == ("i3d", "video", 64, 224)
    assert (i3d.train.lr, i3d.train.weight_decay, i3d.train.epochs, i3d.train.batch_size) == (1e-5, 1e-3, 20, 8)
    anet = load_recognition_experiment("demo_anet_cls")
    assert (anet.dataset.source, anet.model.gaf.enabled, anet.model.gaf.fusion) == ("annotations", True, "attention")
    # the embedded ActivityNet-like benchmark, generated on first use: demo_anet's copy, key for key
    from gaf.engine.experiment import load_experiment

    assert anet.benchmark == load_experiment("demo_anet").benchmark
    assert anet.dataset.annotation_file == load_experiment("demo_anet").dataset.annotation_file


def test_video_dataset_cuts_resizes_crops_and_scales_clips(ucf_features, tmp_path, monkeypatch):
    from gaf.data.recognition_clips import ClipVideoDataset

    videos = tmp_path / "videos"
    for line in (Path(ucf_features["split_dir"]) / "testlist01.txt").read_text().split():
        (videos / line).parent.mkdir(parents=True, exist_ok=True)
        (videos / line).write_bytes(b"")  # decoding is replaced below
    frames = np.zeros((10, 24, 32, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(10, dtype=np.uint8)[:, None, None] * 25  # red channel encodes the frame index
    monkeypatch.setattr(ClipVideoDataset, "_frames", lambda self, index: frames)
    cfg = from_dict(ClipDataConfig, {"source": "video", "split_dir": ucf_features["split_dir"],
                                     "video_dir": str(videos), "clip_len": 4, "frame_stride": 2, "resize": 12,
                                     "crop_size": 8})
    test = ClipVideoDataset(cfg, "test", num_clips=2)
    item = test[0]
    assert item["inputs"].shape == (2, 3, 4, 8, 8) and item["mask"].all()
    assert item["inputs"].min() >= -1.0 and item["inputs"].max() <= 1.0
    red = item["inputs"][:, 0, :, 4, 4]  # frames 0,2,4,6 and 3,5,7,9 (evenly spaced starts 0 and 3)
    assert torch.allclose(red, torch.tensor([[0, 2, 4, 6], [3, 5, 7, 9]]) * 25 / 127.5 - 1.0, atol=1e-5)
    looped = from_dict(ClipDataConfig, {**{k: getattr(cfg, k) for k in ("source", "split_dir", "video_dir",
                                                                       "resize", "crop_size")},
                                        "clip_len": 8, "frame_stride": 2})
    red = ClipVideoDataset(looped, "test", num_clips=1)[0]["inputs"][0, 0, :, 4, 4]
    assert torch.allclose(red, torch.tensor([0, 2, 4, 6, 8, 0, 2, 4]) * 25 / 127.5 - 1.0, atol=1e-5)


def test_source_and_backbone_must_agree(ucf_features, tmp_path):
    from gaf.errors import ConfigError

    cfg = tiny_experiment(ucf_features, tmp_path, backbone="i3d")
    with pytest.raises(ConfigError, match="dataset.source"):
        train_recognizer(cfg, progress=False)


def test_old_recognition_configs_with_a_data_section_load_with_a_deprecation_warning(ucf_features, tmp_path):
    import yaml

    from gaf.engine.recognition import load_recognition_experiment
    from gaf.errors import ConfigError

    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"task": "recognition", "name": "old", "data": ucf_features}))
    with pytest.warns(DeprecationWarning, match="'data' is now 'dataset'"):
        cfg = load_recognition_experiment(old)
    assert cfg.dataset.feature_dir == ucf_features["feature_dir"]
    with pytest.warns(DeprecationWarning) as caught:  # an old override key, too
        assert load_recognition_experiment(old, ["data.clip_len=8"]).dataset.clip_len == 8
    assert any("--set data.clip_len: 'data.' is now 'dataset.'" in str(w.message) for w in caught)
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump({"task": "recognition", "data": ucf_features, "dataset": ucf_features}))
    with pytest.raises(ConfigError, match="both 'data' and 'dataset'"):
        load_recognition_experiment(both)


def test_detection_and_recognition_configs_have_the_same_sections():
    from gaf.config import config_keys
    from gaf.engine.experiment import ExperimentConfig

    def sections(cls) -> set[str]:
        return {k.split(".")[0] for k in config_keys(cls)}

    shared = {"task", "name", "dataset", "model", "train", "eval", "benchmark", "work_dir"}
    assert shared <= sections(ExperimentConfig) and shared == sections(RecognitionExperiment)
