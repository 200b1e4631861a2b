"""The embedded benchmark (gaf.data.synthetic): real THUMOS14 timing, reproducible features."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import THUMOS_DIR, files_of
from gaf.data.features import FeatureDataset
from gaf.data.synthetic import (DEMO, SyntheticConfig, benchmark_dataset_config, build_timing_table,
                                generate_benchmark, load_timing_table, nearest_centroid_accuracy)
from gaf.errors import ConfigError, DataError

SMALL = replace(DEMO, num_train_videos=8, num_test_videos=5, seed=7)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "small"
    generate_benchmark(out, SMALL)
    return out


# ------------------------------------------------------------------ timing table
def test_timing_table_holds_real_thumos14_counts():
    table = load_timing_table()
    subsets = [v["subset"] for v in table["videos"].values()]
    assert subsets.count("Validation") == 200 and subsets.count("Test") == 212
    assert len(table["labels"]) == 20 and table["labels"][0] == "BaseballPitch" and table["labels"][7] == "Diving"
    assert sum(len(v["segments"]) for v in table["videos"].values()) == 6365
    v = table["videos"]["video_test_0000004"]
    assert v["duration"] == 33.83 and v["fps"] == 30.0 and v["segments"][0] == [0.2, 1.1, 5]


@pytest.mark.skipif(not (THUMOS_DIR / "thumos14.json").is_file(), reason="real THUMOS14 annotation not here")
def test_shipped_timing_table_is_built_from_the_real_annotation():
    assert build_timing_table(THUMOS_DIR / "thumos14.json") == load_timing_table()


def test_shipped_timing_table_is_small():
    path = Path(__file__).resolve().parents[2] / "gaf" / "resources" / "thumos14_timing.json"
    assert path.stat().st_size < 200_000


# --------------------------------------------------------------------- benchmark
def test_generation_is_reproducible_bit_for_bit(bench, tmp_path):
    again = generate_benchmark(tmp_path / "again", SMALL).parent
    assert files_of(again) == files_of(bench)
    other = generate_benchmark(tmp_path / "other", replace(SMALL, seed=8)).parent
    assert files_of(other)["features/syn_train_0000.npy"] != files_of(bench)["features/syn_train_0000.npy"]


def test_layout_is_the_actionformer_one(bench):
    db = json.loads((bench / "annotations.json").read_text())["database"]
    assert sorted(db) == [f"syn_test_{i:04d}" for i in range(5)] + [f"syn_train_{i:04d}" for i in range(8)]
    entry = db["syn_train_0000"]
    assert entry["subset"] == "validation" and entry["fps"] == 30.0 and entry["duration"] > 0
    for ann in entry["annotations"]:
        assert set(ann) >= {"segment", "label", "label_id"}
        assert load_timing_table()["labels"][ann["label_id"]] == ann["label"]
    x = np.load(bench / "features" / "syn_train_0000.npy")
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 64
    # number of steps follows the window layout: floor((frames - num_frames) / stride) + 1
    assert x.shape[0] == int((entry["duration"] * 30.0 - 16) // 4) + 1
    meta = json.loads((bench / "benchmark.json").read_text())
    assert meta["config"]["seed"] == 7 and len(meta["content_sha256"]) == 64 and len(meta["sources"]) == 13


def test_benchmark_reads_through_feature_dataset(bench):
    cfg = benchmark_dataset_config(bench, SMALL)
    train = FeatureDataset(cfg, "train", training=True)
    test = FeatureDataset(cfg, "test", training=False)
    assert len(train) == 8 and len(test) == 5 and train.num_classes == 20 and train.input_dim == 64
    item = test[0]
    assert item["features"].shape[0] == 64 and item["meta"]["step_seconds"] == pytest.approx(4 / 30)
    test.check(progress=False)
    assert len(test.ground_truth().videos) == 5


def test_instances_follow_the_real_timing_scaled(bench):
    table = load_timing_table()["videos"]
    db = json.loads((bench / "annotations.json").read_text())["database"]
    sources = json.loads((bench / "benchmark.json").read_text())["sources"]
    ts, min_len = SMALL.time_scale, SMALL.min_instance_steps * 4 / 30
    for vid, entry in db.items():
        real = table[sources[vid]]
        assert real["subset"] == ("Validation" if vid.startswith("syn_train") else "Test")
        got = sorted((a["segment"][0], a["segment"][1], a["label_id"]) for a in entry["annotations"])
        if real["duration"] * ts > SMALL.max_duration:  # cropped: a subset of the instances, inside the crop
            assert entry["duration"] == SMALL.max_duration and len(got) <= len(real["segments"])
            continue
        assert entry["duration"] == pytest.approx(real["duration"] * ts, abs=1e-3)
        want = [(s * ts, min(e, real["duration"]) * ts, c) for s, e, c in real["segments"] if s < real["duration"]]
        assert len(got) == len(want)
        for (gs, ge, gc), (ws, we, wc) in zip(got, sorted(want)):
            assert gc == wc
            if we - ws >= min_len:  # long enough: the real (scaled) times
                assert (gs, ge) == pytest.approx((ws, we), abs=1e-3)
            else:  # widened about its centre to min_instance_steps
                assert ge - gs == pytest.approx(min_len, abs=2e-3)


def test_steps_are_not_trivially_separable(bench):
    acc = nearest_centroid_accuracy(bench)
    assert 0.05 < acc["foreground_accuracy"] < 0.9
    assert 0.2 < acc["accuracy"] < 0.95


def test_generation_is_idempotent_and_guards_other_content(bench, tmp_path):
    stamp = (bench / "benchmark.json").stat().st_mtime_ns
    assert generate_benchmark(bench, SMALL) == bench / "annotations.json"
    assert (bench / "benchmark.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="another config"):
        generate_benchmark(bench, replace(SMALL, noise_std=2.0))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a gaf synthetic benchmark"):
        generate_benchmark(foreign, SMALL)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert not [p for p in bench.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_a_crash_leaves_no_half_benchmark(tmp_path, monkeypatch):
    from gaf.data import synthetic

    calls = []

    def failing_render(self, rng, duration, fps, instances):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros((4, 64), np.float32)

    monkeypatch.setattr(synthetic._World, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        generate_benchmark(tmp_path / "b", SMALL)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_a_benchmark(tmp_path):
    tiny = replace(SMALL, num_train_videos=2, num_test_videos=1)
    out = tmp_path / "b"
    generate_benchmark(out, tiny)
    generate_benchmark(out, replace(tiny, seed=1), overwrite=True)
    assert json.loads((out / "benchmark.json").read_text())["config"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_config_is_checked():
    with pytest.raises(ConfigError, match="synthetic.feature_dim"):
        SyntheticConfig(feature_dim=63)
    with pytest.raises(ConfigError, match="synthetic.confusable_share"):
        SyntheticConfig(confusable_share=1.5)


def test_unknown_class_names_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="'TripleJump' is not a THUMOS14 class"):
        generate_benchmark(tmp_path / "x", replace(SMALL, runup_classes=["TripleJump"]))
    assert not (tmp_path / "x").exists()
