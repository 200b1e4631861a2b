"""gaf data check through the CLI: the embedded benchmark, the real THUMOS14 / ActivityNet annotations, broken
datasets (each problem named), provenance, recommendations computed by hand, --write, and gaf train's summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from gaf.cli import main
from gaf.config import dump_yaml
from gaf.data.check import MAX_SEQ_LEN_CAP, recommend, unregressable
from gaf.data.features import FeatureDataset
from gaf.data.split import window_starts
from gaf.engine.experiment import load_experiment
from gaf.errors import DataError

FPS, STRIDE, WINDOW, DIM = 10.0, 2, 4, 4  # a step lasts STRIDE / FPS = 0.2 s; step 0 is centred at 0.2 s


def steps_of(duration: float) -> int:
    """The feature steps of an extraction of ``duration`` s (window WINDOW, stride STRIDE frames at FPS)."""
    return max(1, math.floor((duration * FPS - WINDOW) / STRIDE) + 1)


def duration_of(steps: int) -> float:
    """The duration whose extraction has ``steps`` steps exactly: the end of the last window."""
    return ((steps - 1) * STRIDE + WINDOW) / FPS


def write_dataset(root: Path, videos: dict[str, dict], *, model: dict | None = None, **dataset) -> Path:
    """``root/ann.json``, ``root/feats/<vid>.npy`` and ``root/config.yaml``; returns the config's path.

    ``videos[vid]``: ``subset``, ``steps`` (the file's; None: no file), ``duration`` (default: the one
    ``steps`` gives) and ``segments`` [(start s, end s, label)].
    """
    feats = root / "feats"
    feats.mkdir(parents=True, exist_ok=True)
    database = {}
    for vid, v in videos.items():
        if v.get("steps") is not None:
            np.save(feats / f"{vid}.npy", np.zeros((v["steps"], DIM), np.float32))
        duration = v["duration"] if "duration" in v else duration_of(v["steps"])
        database[vid] = {"subset": v["subset"], "fps": FPS, "duration": duration,
                         "annotations": [{"label": lab, "segment": [s, e]} for s, e, lab in v.get("segments", [])]}
    (root / "ann.json").write_text(json.dumps({"version": "test", "database": database}))
    section = {"annotation_file": str(root / "ann.json"), "feature_dir": str(feats), "train_subset": "validation",
               "test_subset": "test", "feature_stride": STRIDE, "num_frames": WINDOW, "input_dim": DIM,
               "max_seq_len": 256, **dataset}
    config = {"name": "check", "dataset": section,
              "model": model or {"detector": {"num_levels": 4, "regression_range_base": 4.0}}}
    path = root / "config.yaml"
    path.write_text(dump_yaml(config))
    return path


def check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["data", "check", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def problem_line(out: str, what: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("  - ") and what in line]
    assert len(lines) == 1, (what, out)
    return lines[0]


def clean_videos() -> dict[str, dict]:
    """Two training and two test videos, every file as long as its duration says, labels in both subsets."""
    return {
        "a": {"subset": "validation", "steps": 100, "segments": [(2.0, 4.0, "Jump"), (10.0, 12.0, "Throw")]},
        "b": {"subset": "validation", "steps": 150, "segments": [(5.0, 9.0, "Throw")]},
        "c": {"subset": "test", "steps": 120, "segments": [(3.0, 6.0, "Jump")]},
        "d": {"subset": "test", "steps": 80, "segments": [(1.0, 2.0, "Throw")]},
    }


# ------------------------------------------------------------------------------------- the embedded benchmark
def test_the_demo_config_is_checked_on_a_fresh_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no demo_data yet: generated on first use, as gaf train does
    code, out, err = check(capsys, "demo")
    assert code == 0, err
    assert "generating the embedded benchmark" in err
    assert (tmp_path / "demo_data" / "thumos14_synthetic" / "benchmark.json").is_file()
    doc = json.loads((tmp_path / "demo_data/thumos14_synthetic/annotations.json").read_text())["database"]
    train = sum(v["subset"] == "validation" for v in doc.values())
    instances = sum(len(v["annotations"]) for v in doc.values() if v["subset"] == "validation")
    assert f"train subset 'validation': {train} videos, {instances} instances, 20 labels" in out
    assert "test subset 'test': " in out and "problems: none found" in out
    assert "no features.json" in out  # the benchmark is not made by gaf extract
    for key in ("regression_range_base", "num_levels", "max_seq_len"):
        assert f"{key}: " in out
    code, again, _ = check(capsys, "demo")  # the second time nothing is generated
    assert code == 0 and again == out


# ------------------------------------------------------------------------------------- the real annotations
THUMOS = SHARED / "thumos14" / "thumos14.json"
ANET = SHARED / "activitynet" / "anet_anno_action.json"


def test_real_thumos14_annotations_with_a_few_feature_files(tmp_path, capsys):
    assert THUMOS.is_file(), f"the real THUMOS14 annotation is missing: {THUMOS}"  # fails, never skips
    doc = json.loads(THUMOS.read_text())["database"]
    val = sorted(v for v, e in doc.items() if e["subset"].lower() == "validation")
    test = sorted(v for v, e in doc.items() if e["subset"].lower() == "test")
    feats = tmp_path / "feats"
    feats.mkdir()
    for vid in val[:3] + test[:2]:  # files of the right length (stride 4, window 16 at the video's fps)
        e = doc[vid]
        np.save(feats / f"{vid}.npy", np.zeros((math.floor((e["duration"] * e["fps"] - 16) / 4) + 1, 8), np.float32))
    config = tmp_path / "thumos.yaml"
    config.write_text(dump_yaml({"dataset": {"annotation_file": str(THUMOS), "feature_dir": str(feats),
                                             "feature_stride": 4, "num_frames": 16, "input_dim": 8,
                                             "max_seq_len": 2304}}))
    code, out, err = check(capsys, config)
    assert code == 0, err
    val_instances = sum(len(doc[v]["annotations"]) for v in val)
    assert f"train subset 'validation': {len(val)} videos, {val_instances} instances, 20 labels" in out
    assert f"test subset 'test': {len(test)} videos" in out
    assert f"({len(val) - 3} estimated from durations: no readable file)" in out
    assert problem_line(out, "feature files missing (train subset 'validation')").startswith(f"  - {len(val) - 3} ")
    assert problem_line(out, "feature files missing (test subset 'test')").startswith(f"  - {len(test) - 2} ")
    assert "feature files whose length differs" not in out  # the files written match their durations
    longest = max(doc[v]["duration"] for v in val)  # THUMOS14 has videos far longer than 2304 steps
    assert math.floor((longest * 30 - 16) / 4) + 1 > 2304 and "longer than max_seq_len 2304: " in out
    assert "[gaf train refuses this]" in problem_line(out, "missing (train")
    # the 30 instances THUMOS14 annotates after their video's end (gaf.data.features), with their overruns
    assert problem_line(out, "wholly outside their video's features (no training target) (train").startswith("  - 4 ")
    assert problem_line(out, "wholly outside their video's features (no training target) (test").startswith("  - 26 ")
    assert "video_test_0000270 [187.3, 193.4] s, duration 176.25 s" in problem_line(out, "after their video's "
                                                                                   "annotated duration (test")


def test_real_activitynet_annotations_in_resize_mode(tmp_path, capsys):
    assert ANET.is_file(), f"the real ActivityNet annotation is missing: {ANET}"  # fails, never skips
    doc = json.loads(ANET.read_text())
    feats = tmp_path / "feats"
    feats.mkdir()
    for vid in list(doc)[:4]:  # raw lengths do not matter with resize_length
        np.save(feats / f"{vid}.npy", np.zeros((37, 8), np.float32))
    config = tmp_path / "anet.yaml"
    config.write_text(dump_yaml({
        "dataset": {"annotation_file": str(ANET), "feature_dir": str(feats), "train_subset": "training",
                    "test_subset": "validation", "feature_stride": 16, "num_frames": 16, "input_dim": 8,
                    "max_seq_len": 128, "resize_length": 128},
        "model": {"detector": {"num_levels": 6}}}))
    code, out, err = check(capsys, config)
    assert code == 0, err
    assert "every video resampled to resize_length 128 steps" in out
    assert "train subset 'training': 9649 videos" in out and "test subset 'validation': 4728 videos" in out
    assert out.count(", 200 labels ") == 2  # every class in both subsets
    assert "labels with instances in subset" not in out
    assert "feature steps       128 / 128 / 128 per video" in out and "every video fits max_seq_len 128" in out
    # ActivityNet instances cover most of a video: the longest reaches past level 5's nominal range
    assert "dataset.max_seq_len: 128 (as now)" in out
    assert "model.detector.num_levels: " in out


# ------------------------------------------------------------------------------------- broken datasets
def test_a_clean_dataset_has_no_problem_and_strict_passes(tmp_path, capsys):
    config = write_dataset(tmp_path, clean_videos())
    code, out, _ = check(capsys, config, "--strict")
    assert code == 0 and "problems: none found" in out


def test_a_missing_feature_file_is_named_and_strict_fails(tmp_path, capsys):
    videos = clean_videos()
    videos["b"]["steps"] = None
    videos["b"]["duration"] = duration_of(150)
    config = write_dataset(tmp_path, videos)
    code, out, _ = check(capsys, config)
    assert code == 0  # a warning
    line = problem_line(out, "feature files missing")
    assert line.startswith("  - 1 feature files missing (train subset 'validation') [gaf train refuses this]")
    assert "(first: b.npy)" in line
    assert "(1 estimated from durations" in out
    assert check(capsys, config, "--strict")[0] == 1


def test_resize_mode_without_a_duration_is_refused_by_the_check_and_by_training_alike(tmp_path, capsys):
    # one time-axis rule (gaf.data.features.time_axis) for both: resizing needs the annotated duration, even
    # where the feature file's span could stand in for it
    videos = clean_videos()
    videos["a"]["duration"] = None
    config = write_dataset(tmp_path, videos, resize_length=64, max_seq_len=64)
    code, out, _ = check(capsys, config)
    line = problem_line(out, "videos with no duration")
    assert line.startswith("  - 1 videos with no duration") and "[gaf train refuses this]" in line
    assert "(first: a)" in line
    with pytest.raises(DataError, match=r"video 'a': dataset.resize_length needs a positive duration, got None"):
        FeatureDataset(load_experiment(str(config)).dataset, "train", training=True)


def test_an_extra_feature_file_is_named(tmp_path, capsys):
    config = write_dataset(tmp_path, clean_videos())
    np.save(tmp_path / "feats" / "stray.npy", np.zeros((5, DIM), np.float32))
    code, out, _ = check(capsys, config)
    assert code == 0
    assert "1 .npy files in" in problem_line(out, "with no video in the annotation")
    assert "(first: stray.npy)" in out


def test_feature_files_three_and_five_times_too_long_warn_and_are_refused(tmp_path, capsys):
    videos = clean_videos()
    videos["a"].update(steps=300, duration=duration_of(100))  # 3x: the silent-drop case training only warns on
    videos["c"].update(steps=600, duration=duration_of(120))  # 5x: training refuses
    code, out, _ = check(capsys, write_dataset(tmp_path, videos))
    assert code == 0
    warned = problem_line(out, "length differs from duration x fps / feature_stride by over 10%")
    assert warned.startswith("  - 1 ") and "(train subset 'validation')" in warned
    assert "a: 300 steps = 60.2 s for 20.2 s (100 steps expected, 2.98x)" in warned
    refused = problem_line(out, "over 4x longer or shorter")
    assert "(test subset 'test') [gaf train refuses this]" in refused and "c: 600 steps" in refused


def test_a_label_in_one_subset_only_is_named(tmp_path, capsys):
    videos = clean_videos()
    videos["d"]["segments"].append((3.0, 4.0, "Dive"))
    code, out, _ = check(capsys, write_dataset(tmp_path, videos))
    assert code == 0
    assert problem_line(out, "labels with instances in subset 'test' only") == \
        "  - 1 labels with instances in subset 'test' only (first: Dive)"


def test_an_instance_longer_than_every_range_and_one_under_a_step_are_named(tmp_path, capsys):
    videos = clean_videos()
    videos["b"]["segments"] += [(4.0, 24.0, "Jump"),  # 100 steps: half-length 50 > 4 * 2**3 = 32
                                (20.05, 20.15, "Jump")]  # 0.5 step between two level-0 points: no point inside
    code, out, _ = check(capsys, write_dataset(tmp_path, videos))
    assert code == 0
    assert "b [4, 24] s (100 steps)" in problem_line(out, "exceeds the top level's range")
    assert "b [20.05, 20.15] s (0.5 steps)" in problem_line(out, "shorter than one feature step")
    assert "b [20.05, 20.15] s (0.5 steps)" in problem_line(out, "no pyramid level can regress")
    assert "regression ranges (max(left, right) in steps; level l has stride 2**l): 0: [0, 4], 1: [4, 8], " \
           "2: [8, 16], 3: [16, inf]" in out


def test_missing_annotation_or_feature_folder_is_a_one_line_error(tmp_path, capsys):
    config = write_dataset(tmp_path, clean_videos())
    (tmp_path / "ann.json").rename(tmp_path / "moved.json")
    code, out, err = check(capsys, config)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"gaf data: error: {tmp_path / 'ann.json'}: annotation file not found "
                                        "(dataset.annotation_file)"]
    (tmp_path / "moved.json").rename(tmp_path / "ann.json")
    code, _, err = check(capsys, config, "--set", f"dataset.feature_dir={tmp_path / 'nowhere'}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "feature folder not found" in err


@pytest.mark.parametrize("config, message", [("thumos14_e2e", "this config trains end to end on frames"),
                                             ("ucf101_features", "a recognition config (task: recognition)")])
def test_configs_without_a_detection_feature_dataset_are_refused(config, message, capsys):
    code, out, err = check(capsys, config)
    (line,) = err.strip().splitlines()
    assert code == 2 and out == "" and line.startswith(f"gaf data: error: {config}: ") and message in line


# ------------------------------------------------------------------------------------- provenance
def extraction_record(**settings) -> dict:
    record = {"fps": FPS, "stride": STRIDE, "window": WINDOW, "streams": ["rgb"], "dims": {"rgb": DIM},
              "feature_dim": DIM, "short_side": 256, "crop": 224, "flow_method": None,
              "backbone_weights": {"rgb": "rgb.pt"}, "weights_sha256": {"rgb": "ab12cd34ef56" + "0" * 52}}
    record.update(settings)
    return record


def write_index(folder: Path, record: dict, videos: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "features.json").write_text(json.dumps({**record, "videos": videos}))


def test_the_provenance_of_gaf_extract_features_is_described(tmp_path, capsys):
    config = write_dataset(tmp_path, clean_videos())
    write_index(tmp_path / "feats", extraction_record(), {"a": {"num_steps": 100, "fps": FPS},
                                                         "b": {"num_steps": 99, "fps": FPS}})
    code, out, _ = check(capsys, config)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("provenance: "))
    assert "gaf extract" in line and "2 videos recorded" in line
    for part in ("streams rgb", "fps 10", "window 4", "stride 2", "short side 256", "crop 224",
                 "weights sha256 rgb ab12cd34ef56"):
        assert part in line, part
    assert "b.npy: 150 steps, features.json says 99" in problem_line(out, "differs from features.json's record")


def test_settings_that_disagree_with_features_json_are_named(tmp_path, capsys):
    config = write_dataset(tmp_path, clean_videos())
    write_index(tmp_path / "feats", extraction_record(stride=4), {})
    code, out, _ = check(capsys, config)
    assert code == 0
    line = problem_line(out, "settings that disagree with features.json")
    assert "dataset.feature_stride is 2, the features were made with stride 4" in line


def test_a_folder_mixing_extractions_is_refused_naming_the_folder_and_the_setting(tmp_path, capsys):
    config = write_dataset(tmp_path, clean_videos())
    feats = tmp_path / "feats"
    write_index(feats, extraction_record(), {"a": {"num_steps": 100}})
    write_index(feats / "more", extraction_record(window=8), {"b": {"num_steps": 150}})
    code, out, err = check(capsys, config)
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"gaf data: error: {feats}: mixes feature extractions: window differs ")
    assert "4" in line and "8" in line

    (feats / "more" / "features.json").unlink()  # one index, a video recorded at another fps
    write_index(feats, extraction_record(), {"a": {"num_steps": 100, "fps": 25.0}})
    code, _, err = check(capsys, config)
    assert code == 2
    assert f"{feats}: mixes feature extractions: fps differs" in err and "'a': 25.0" in err


# ------------------------------------------------------------------------------------- recommendations
# Ten training videos of 100, 200, ..., 900 and 3000 steps; 20 instances: ten of 8 steps (half-length 4), nine
# of 40 (20) and one of 120 (60). The config starts from regression_range_base 1, 3 levels, max_seq_len 256.
HAND_STEPS = [100, 200, 300, 400, 500, 600, 700, 800, 900, 3000]


def hand_videos() -> dict[str, dict]:
    step = STRIDE / FPS
    lengths = [8] * 10 + [40] * 9 + [120]
    videos = {}
    for i, steps in enumerate(HAND_STEPS):
        a, b = lengths[2 * i], lengths[2 * i + 1]
        if b == 120:  # the long one in a long video
            assert steps >= 200
        videos[f"v{i}"] = {"subset": "validation", "steps": steps,
                           "segments": [(1.0, 1.0 + a * step, "Jump"), (10.0, 10.0 + b * step, "Throw")]}
    videos["t0"] = {"subset": "test", "steps": 1000, "segments": [(2.0, 5.0, "Jump"), (8.0, 9.0, "Throw")]}
    return videos


def test_recommendations_match_the_hand_computed_values(tmp_path, capsys):
    config = write_dataset(tmp_path, hand_videos(), model={"detector": {"num_levels": 3, "regression_range_base": 1.0}})
    code, out, _ = check(capsys, config)
    assert code == 0
    # base: the 5th percentile of the half-lengths is 4 > 1, the smallest power of two >= 4 is 4
    assert "time axis: a step lasts feature_stride / fps = 2 / fps s = 0.2 s at 10 fps (the annotation's fps)" in out
    assert "model.detector.regression_range_base: 4 (now 1): 5% of the training instances have a half-length of " \
           "at most 4 steps" in out
    # levels: the longest half-length, 60, needs 4 * 2**(n-1) >= 60: n = 1 + ceil(log2(15)) = 5
    assert "model.detector.num_levels: 5 (now 3): the longest training instance has a half-length of 60 steps; " \
           "5 levels reach 64" in out
    # max_seq_len: total stride 16; 90th percentile of the lengths (linear): 900 + 0.1 * 2100 = 1110 steps;
    # 16 * 2**ceil(log2(1110 / 16)) = 16 * 128 = 2048 <= the longest (3000) rounded up to 16
    assert np.percentile(HAND_STEPS, 90) == pytest.approx(1110)
    assert "dataset.max_seq_len: 2048 (now 256): 90% of the 10 training videos have at most 1110 steps " \
           "(longest 3000); 2048 = 128 x the pyramid's total stride 16" in out
    # the one test video of 1000 steps: windows of 256 steps overlapping by 0.25 start at 0, 192, 384, 576, 744
    assert window_starts(1000, 256, 0.25) == [0, 192, 384, 576, 744]
    assert "longer than max_seq_len 256: 1 videos; evaluation cuts 1 into 5 windows of 256 steps (overlap 0.25)" in out
    assert "feature steps       100 / 550 / 3000 per video" in out  # median: (500 + 600) / 2
    # instance lengths: median of ten 8s, nine 40s and one 120 = (8 + 40) / 2 steps of 0.2 s
    assert "instances / video   2 / 2 / 2" in out and "instance length     1.6 / 4.8 / 24 s = 8 / 24 / 120 steps" in out


def test_write_gives_a_config_that_loads_with_the_recommended_values(tmp_path, capsys):
    config = write_dataset(tmp_path, hand_videos(), model={"detector": {"num_levels": 3, "regression_range_base": 1.0}},
                           eval_max_seq_len=512)
    out_path = tmp_path / "tuned.yaml"
    code, out, _ = check(capsys, config, "--write", out_path)
    assert code == 0 and f"wrote {out_path}" in out
    tuned = load_experiment(out_path)
    assert tuned.dataset.max_seq_len == 2048 and tuned.dataset.eval_max_seq_len == 2048  # raised with it
    assert tuned.model.detector.num_levels == 5 and tuned.model.detector.regression_range_base == 4.0
    assert tuned.dataset.annotation_file == str(tmp_path / "ann.json")  # the rest as it was
    # the tuned config has nothing left to change
    code, again, _ = check(capsys, out_path)
    assert code == 0 and "(now " not in again

    before = out_path.read_text()
    code, _, err = check(capsys, config, "--write", out_path)  # no overwrite without --force
    assert code == 2 and "exists; pass --force" in err and out_path.read_text() == before
    code, _, _ = check(capsys, config, "--write", out_path, "--force", "--set", "dataset.max_seq_len=128")
    assert code == 0 and load_experiment(out_path).dataset.max_seq_len == 2048
    code, _, err = check(capsys, config, "--write", config, "--force")  # never CONFIG itself
    assert code == 2 and "is also an input" in err and "max_seq_len: 256" in config.read_text()


def test_recommend_keeps_what_already_fits_and_caps_the_crop():
    steps = np.array([9000.0] * 10)
    recs = {r.key.rsplit(".", 1)[1]: r for r in recommend(steps, np.array([2.0, 6.0, 30.0]), num_levels=6, base=4.0,
                                                             max_seq_len=2304)}
    assert not recs["regression_range_base"].changed  # half-length 5th percentile 1.2 <= 4
    assert not recs["num_levels"].changed and "(enough already)" in recs["num_levels"].reason  # 15 <= 4 * 32
    assert recs["max_seq_len"].value == MAX_SEQ_LEN_CAP and "capped at 4096" in recs["max_seq_len"].reason
    none = recommend(np.zeros(0), np.zeros(0), num_levels=6, base=4.0, max_seq_len=2304)
    assert [r.changed for r in none] == [False] * 3


def test_unregressable_follows_the_training_assignment():
    import torch

    from gaf.models.detection_losses import assign_points
    from gaf.models.detector import regression_ranges

    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        T, n = int(rng.integers(8, 200)), int(rng.integers(1, 6))
        base, radius = float(rng.choice([0.5, 1.0, 4.0])), float(rng.choice([0.5, 1.5, 2.5]))
        ranges = regression_ranges(base, n)
        points = [torch.arange(-(-T // 2 ** l), dtype=torch.float64) * 2 ** l for l in range(n)]
        strides = torch.cat([torch.full_like(p, 2.0 ** l) for l, p in enumerate(points)])
        bounds = torch.cat([torch.tensor(ranges[l], dtype=torch.float64).expand(len(p), 2)
                            for l, p in enumerate(points)])
        start = rng.uniform(0, T - 1)
        seg = np.array([[start, min(T, start + rng.exponential(rng.choice([0.5, 4.0, 40.0])))]])
        _, _, positive = assign_points(torch.cat(points), strides, bounds, torch.ones(len(strides), dtype=torch.bool),
                                       torch.tensor(seg), torch.tensor([0]), 1, radius)
        assert unregressable(seg, T, ranges, radius)[0] == (not bool(positive.any()))
        seen.add(bool(positive.any()))
    assert seen == {True, False}


# ------------------------------------------------------------------------------------- gaf train
@pytest.mark.slow
def test_train_logs_a_short_data_check_and_keeps_the_provenance(tmp_path, capsys):
    from gaf.engine.checkpoint import load_checkpoint

    videos = clean_videos()
    videos["b"].update(steps=300, duration=duration_of(150))  # a warning (2x): training goes on
    config = write_dataset(tmp_path, videos, model={"gaf": {"enabled": False},
                                                    "detector": {"embed_dim": 8, "num_levels": 3, "head_layers": 1,
                                                                 "stem_layers": 1}})
    write_index(tmp_path / "feats", extraction_record(), {})
    with pytest.warns(UserWarning, match="disagree on a video's length"):  # the dataset's own warning, once
        code = main(["train", str(config), "--work-dir", str(tmp_path / "run"), "--no-progress",
                     "--set", "train.epochs=1", "--set", "train.eval_at_end=false", "--set", "train.health_items=0"])
    assert code == 0, capsys.readouterr().err
    log = [line for line in (tmp_path / "run" / "log.txt").read_text().splitlines() if "data check: " in line]
    assert 2 <= len(log) <= 4, log
    assert "train 'validation' 2 videos / 3 instances" in log[0]
    assert "1 feature files whose length differs" in log[1]
    assert log[-1].endswith(f"data check: gaf data check {tmp_path / 'run' / 'config.yaml'} for details")
    meta = load_checkpoint(tmp_path / "run" / "final.pt")["meta"]
    assert meta["feature_provenance"]["stride"] == STRIDE
    assert meta["feature_provenance"]["weights_sha256"] == {"rgb": "ab12cd34ef56" + "0" * 52}
