"""The ActivityNet-like embedded benchmark: real ActivityNet v1.3 timing (gaf.data.anet_timing), a class
hierarchy of confusable siblings, the same feature generator (gaf.data.synthetic)."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, files_of
from gaf.data.anet_timing import TABLE_VIDEOS, build_anet_timing_table, load_anet_hierarchy, load_anet_timing_table
from gaf.data.features import FeatureDataset
from gaf.data.synthetic import (DEMO, SyntheticConfig, benchmark_dataset_config, generate_benchmark,
                                nearest_centroid_accuracy)
from gaf.engine.experiment import load_experiment
from gaf.errors import ConfigError

ANET_DIR = SHARED / "activitynet"
ROOT = Path(__file__).resolve().parents[2]
# the shipped demo_anet generator, small
ANET = replace(load_experiment("demo_anet").benchmark.synthetic, seed=3, num_train_videos=40, num_test_videos=20)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("anet") / "small"
    generate_benchmark(out, ANET)
    return out


# ------------------------------------------------------------------ timing table
def test_shipped_anet_timing_table_is_built_from_the_real_annotation():
    assert build_anet_timing_table(ANET_DIR / "anet_anno_action.json") == load_anet_timing_table()


def test_anet_timing_table_copies_the_real_videos_to_a_tenth_of_a_second():
    real = json.loads((ANET_DIR / "anet_anno_action.json").read_text())
    table = load_anet_timing_table()
    for vid in list(table["videos"])[:50]:
        entry, src = table["videos"][vid], real[vid]
        assert entry["duration"] == pytest.approx(src["duration_second"], abs=0.051)
        want = sorted((a["segment"][0], a["segment"][1], table["labels"].index(a["label"])) for a in src["annotations"])
        assert [c for _, _, c in entry["segments"]] == [c for _, _, c in want]
        for (s, e, _), (ws, we, _) in zip(entry["segments"], want):
            # rounding (0.05) plus the 0.1 s a zero-length or overrunning segment may move
            assert s == pytest.approx(ws, abs=0.16) and e == pytest.approx(min(we, src["duration_second"]), abs=0.16)


def test_anet_timing_table_is_a_small_seeded_subset_of_activitynet():
    assert (ROOT / "gaf" / "resources" / "anet_timing.json").stat().st_size < 300_000
    table = load_anet_timing_table()
    assert len(table["labels"]) == 200 and table["labels"] == sorted(table["labels"])
    subsets = [v["subset"] for v in table["videos"].values()]
    assert {s: subsets.count(s) for s in TABLE_VIDEOS} == TABLE_VIDEOS and len(subsets) == sum(TABLE_VIDEOS.values())
    counts = [len(v["segments"]) for v in table["videos"].values()]
    assert min(counts) == 1 and max(counts) >= 10 and 1.3 < np.mean(counts) < 1.8  # ActivityNet: 1.54 a video
    for v in table["videos"].values():
        assert all(0 <= s < e <= v["duration"] for s, e, _ in v["segments"])


def test_hierarchy_puts_each_of_the_200_classes_in_one_group_of_siblings():
    groups = load_anet_hierarchy()
    names = [c for g in groups for c in g["classes"]]
    assert sorted(names) == load_anet_timing_table()["labels"]  # each class exactly once
    assert all(len(g["classes"]) >= 2 for g in groups) and 20 <= len(groups) <= 60
    throws = next(g for g in groups if "Javelin throw" in g["classes"])
    assert {"Discus throw", "Hammer throw", "Shot put"} <= set(throws["classes"]) and throws["motion"]


# --------------------------------------------------------------------- generator
def test_siblings_share_most_of_their_prototype():
    from gaf.data.synthetic import _World

    labels = load_anet_timing_table()["labels"]
    groups = load_anet_hierarchy()
    group_of = {c: i for i, g in enumerate(groups) for c in g["classes"]}
    proto = _World(replace(ANET, feature_dim=256), labels, groups).start_proto
    unit = proto / np.linalg.norm(proto, axis=1, keepdims=True)
    cos = unit @ unit.T
    pairs = list(combinations(range(len(labels)), 2))
    sib = np.mean([cos[i, j] for i, j in pairs if group_of[labels[i]] == group_of[labels[j]]])
    other = np.mean([cos[i, j] for i, j in pairs if group_of[labels[i]] != group_of[labels[j]]])
    assert sib > other + 0.3, (sib, other)
    flat = _World(replace(ANET, feature_dim=256, hierarchy=None), labels).start_proto  # no hierarchy: no structure
    unit = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    cos = unit @ unit.T
    assert np.mean([cos[i, j] for i, j in pairs if group_of[labels[i]] == group_of[labels[j]]]) < other + 0.1


def test_anet_generation_is_reproducible_bit_for_bit(bench, tmp_path):
    again = generate_benchmark(tmp_path / "again", ANET).parent
    assert files_of(again) == files_of(bench)
    other = generate_benchmark(tmp_path / "other", replace(ANET, seed=4, num_train_videos=2, num_test_videos=1)).parent
    assert files_of(other)["features/syn_train_0000.npy"] != files_of(bench)["features/syn_train_0000.npy"]


def test_anet_instances_are_the_real_timing(bench):
    table = load_anet_timing_table()["videos"]
    db = json.loads((bench / "annotations.json").read_text())["database"]
    sources = json.loads((bench / "benchmark.json").read_text())["sources"]
    min_len = ANET.min_instance_steps * 16 / 15
    coverage, counts = [], []
    for vid, entry in db.items():
        real = table[sources[vid]]
        assert (entry["subset"], real["subset"]) in {("training", "training"), ("validation", "validation")}
        assert entry["subset"] == ("training" if vid.startswith("syn_train") else "validation")
        assert entry["duration"] == real["duration"] and entry["fps"] == 15.0  # real durations: no scaling, no crop
        got = sorted((a["segment"][0], a["segment"][1], a["label_id"]) for a in entry["annotations"])
        assert len(got) == len(real["segments"]) >= 1
        for (gs, ge, gc), (ws, we, wc) in zip(got, real["segments"]):
            assert gc == wc
            if we - ws >= min_len:
                assert (gs, ge) == pytest.approx((ws, we), abs=1e-3)
            else:  # widened about its centre to min_instance_steps
                assert ge - gs == pytest.approx(min_len, abs=2e-3)
        mask = np.zeros(int(entry["duration"] * 10) + 1, bool)
        for s, e, _ in got:
            mask[int(s * 10):int(e * 10)] = True
        coverage.append(mask.mean())
        counts.append(len(got))
    assert 0.45 < np.mean(coverage) < 0.85  # ActivityNet: actions cover ~65 % of a video
    assert min(counts) == 1 and max(counts) >= 2
    x = np.load(bench / "features" / "syn_train_0000.npy")
    entry = db["syn_train_0000"]
    assert x.dtype == np.float32 and x.shape == (int((entry["duration"] * 15 - 16) // 16) + 1, 64)


def test_anet_benchmark_reads_as_200_classes_and_is_not_trivially_separable(bench):
    cfg = benchmark_dataset_config(bench, ANET)
    train = FeatureDataset(cfg, "train", training=True)
    assert len(train) == 40 and train.num_classes == 200 and cfg.max_seq_len == 768
    acc = nearest_centroid_accuracy(bench)  # 40 training videos see few of the test videos' classes
    assert 0.0 <= acc["foreground_accuracy"] < 0.8 and 0.1 < acc["accuracy"] < 0.9


def test_the_thumos14_benchmark_record_is_unchanged_by_the_new_keys(tmp_path):
    tiny = replace(DEMO, num_train_videos=1, num_test_videos=1)
    meta = json.loads((generate_benchmark(tmp_path / "t", tiny).parent / "benchmark.json").read_text())
    assert "timing" not in meta["config"] and "hierarchy" not in meta["config"]  # benchmarks made before still match


def test_anet_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="synthetic.hierarchy"):
        SyntheticConfig(hierarchy="activitynet")  # THUMOS14 timing
    with pytest.raises(ConfigError, match="synthetic.fps"):
        replace(ANET, fps=None)
    with pytest.raises(ConfigError, match="'CliffDiving' is not an ActivityNet class"):
        generate_benchmark(tmp_path / "x", replace(ANET, confusable_pairs=[["CliffDiving", "Diving"]]))


# ------------------------------------------------------------------------ config
def test_demo_anet_config_generates_its_benchmark_on_first_use(tmp_path):
    from gaf.engine.train import prepare_benchmark

    out = tmp_path / "anet_bench"
    cfg = load_experiment("demo_anet", [f"benchmark.out_dir={out}", "benchmark.synthetic.num_train_videos=6",
                                        "benchmark.synthetic.num_test_videos=3",
                                        f"dataset.annotation_file={out}/annotations.json",
                                        f"dataset.feature_dir={out}/features"])
    assert cfg.benchmark.synthetic.timing == "activitynet" and cfg.benchmark.synthetic.hierarchy == "activitynet"
    assert cfg.eval.tious == pytest.approx([0.5 + 0.05 * i for i in range(10)])  # ActivityNet: 0.5:0.05:0.95
    assert not out.exists()
    prepare_benchmark(cfg)
    db = json.loads((out / "annotations.json").read_text())["database"]
    assert sorted(e["subset"] for e in db.values()) == ["training"] * 6 + ["validation"] * 3
    test = FeatureDataset(cfg.dataset, "test", training=False)
    assert len(test.ground_truth().videos) == 3 and test.num_classes == 200 and test.input_dim == 64
