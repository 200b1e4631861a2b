"""Feature datasets: ActionFormer layout in, model-ready items out (gaf.data.features)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import LABELS, THUMOS_DIR, TWO, make, write_layout  # noqa: F401
from gaf.data.annotations import AnnotationWarning
from gaf.data.features import DatasetConfig, FeatureDataset, collate, window_starts
from gaf.errors import ConfigError, DataError

def to_seconds(item: dict, x: float) -> float:
    return item["meta"]["time_offset"] + x * item["meta"]["step_seconds"]


def test_items_are_channels_first_with_meta_and_labels(tmp_path):
    ds = FeatureDataset(make(tmp_path, TWO), "test", training=False)
    assert len(ds) == 2 and ds.video_ids == ["v_b", "v_c"]
    assert ds.num_classes == 2 and ds.labels == LABELS and ds.input_dim == 6
    item = ds[0]
    assert item["features"].shape == (6, 25) and item["features"].dtype == torch.float32
    assert torch.equal(item["features"][2], torch.arange(25, dtype=torch.float32) + 2000.0)
    assert item["segments"].shape == (1, 2) and item["labels"].tolist() == [1]
    meta = item["meta"]
    assert meta["video_id"] == "v_b" and meta["fps"] == 25.0 and meta["duration"] == 4.5
    assert meta["offset_steps"] == 0 and meta["num_steps"] == 25 and meta["video_steps"] == 25
    assert meta["step_seconds"] == pytest.approx(4 / 25) and meta["time_offset"] == pytest.approx(8 / 25)
    assert ds[1]["segments"].shape == (0, 2) and ds[1]["labels"].shape == (0,)


def test_collate_pads_with_zeros_and_marks_valid_steps(tmp_path):
    ds = FeatureDataset(make(tmp_path, TWO), "test", training=False)
    batch = collate([ds[0], ds[1]], size_divisor=8)
    assert batch["features"].shape == (2, 6, 32) and batch["mask"].shape == (2, 32)
    assert batch["mask"][0].sum() == 25 and batch["mask"][1].sum() == 17
    assert batch["mask"][1, :17].all() and not batch["mask"][1, 17:].any()
    assert torch.all(batch["features"][1, :, 17:] == 0)
    assert batch["video_id"] == ["v_b", "v_c"] and len(batch["segments"]) == 2 and len(batch["meta"]) == 2
    assert collate([ds[1]], pad_to=40)["features"].shape == (1, 6, 40)
    with pytest.raises(ValueError, match="pad_to"):
        collate([ds[0]], pad_to=10)


def test_time_convention_round_trips_seconds_to_steps_and_back(tmp_path):
    ds = FeatureDataset(make(tmp_path, TWO), "train", training=False)
    item = ds[0]
    # step t centred at (t*stride + num_frames/2)/fps
    assert to_seconds(item, 3) == pytest.approx((3 * 4 + 8) / 30.0)
    got = [to_seconds(item, x) for x in item["segments"].flatten().tolist()]
    assert got == pytest.approx([1.0, 2.0, 3.0, 4.5], abs=1e-5)
    assert item["labels"].tolist() == [0, 1]


def test_fps_default_and_force_fps(tmp_path):
    videos = {"v": {"subset": "test", "steps": 10, "segments": [(1.0, 2.0, "Jump")]},
              "w": {"subset": "test", "steps": 10, "fps": 25.0, "segments": []}}
    with pytest.raises(DataError, match=r"video 'v'.*dataset\.fps"):
        FeatureDataset(make(tmp_path / "a", videos), "test", training=False)
    ds = FeatureDataset(make(tmp_path / "b", videos, fps=10.0), "test", training=False)
    assert [it["meta"]["fps"] for it in (ds[0], ds[1])] == [10.0, 25.0]
    assert ds[0]["meta"]["duration"] == pytest.approx((9 * 4 + 16) / 10.0)  # end of the last window
    forced = FeatureDataset(make(tmp_path / "c", videos, fps=10.0, force_fps=True), "test", training=False)
    assert forced[1]["meta"]["fps"] == 10.0


def test_channel_slice_selects_a_stream(tmp_path):
    ds = FeatureDataset(make(tmp_path, TWO, channels=[2, 5]), "test", training=False)
    assert ds.input_dim == 3
    x = ds[0]["features"]
    assert x.shape == (3, 25)
    assert torch.equal(x[:, 4], torch.tensor([2004.0, 3004.0, 4004.0]))


def long_video(steps: int = 300) -> dict:
    # fps 4, stride 4, window 16: step t centred at t + 2 seconds
    segs = [(12.0, 20.0, "Jump"), (60.0, 90.0, "Throw"), (150.0, 151.0, "Jump"), (250.0, 270.0, "Throw")]
    return {"long": {"subset": "validation", "steps": steps, "fps": 4.0, "segments": segs},
            "t": {"subset": "test", "steps": 5, "fps": 4.0}}


def test_training_crop_is_seeded_and_keeps_instances_consistent(tmp_path):
    cfg = make(tmp_path, long_video(), max_seq_len=64)
    ds = FeatureDataset(cfg, "train", training=True, seed=3)
    assert len(ds) == 1
    raw = np.load(cfg.feature_path("long"))
    originals = np.array([[12.0, 20.0], [60.0, 90.0], [150.0, 151.0], [250.0, 270.0]])
    seen_offsets = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[0]
        again = ds[0]
        assert torch.equal(item["features"], again["features"])  # same epoch, same crop
        o = item["meta"]["offset_steps"]
        seen_offsets.add(o)
        assert item["features"].shape == (6, 64) and item["meta"]["num_steps"] == 64
        assert np.array_equal(item["features"].numpy(), raw[o:o + 64].T)
        segs = item["segments"].numpy()
        assert len(segs) >= 1  # the crop prefers windows holding an instance
        assert np.all(segs >= 0) and np.all(segs <= 64) and np.all(segs[:, 1] > segs[:, 0])
        lo, hi = to_seconds(item, 0), to_seconds(item, 64)
        for (s, e), lab in zip(segs, item["labels"].tolist()):
            secs = (to_seconds(item, s), to_seconds(item, e))
            match = [k for k, (os_, oe) in enumerate(originals)
                     if np.allclose(secs, (max(os_, lo), min(oe, hi)), atol=1e-4)]
            assert len(match) == 1 and lab == [0, 1, 0, 1][match[0]]
            os_, oe = originals[match[0]]
            assert (min(oe, hi) - max(os_, lo)) / (oe - os_) >= 0.5 - 1e-6  # trunc_min_overlap
    assert len(seen_offsets) > 3


def test_eval_windows_cover_the_video_with_overlap(tmp_path):
    cfg = make(tmp_path, long_video(), max_seq_len=64, eval_window_overlap=0.25, train_subset="validation")
    ds = FeatureDataset(cfg, "train", training=False)
    starts = [ds[i]["meta"]["offset_steps"] for i in range(len(ds))]
    assert starts[0] == 0 and starts[-1] + 64 == 300
    assert all(b - a <= 48 for a, b in zip(starts, starts[1:]))  # overlap >= 16 steps
    covered = np.zeros(300, bool)
    for i in range(len(ds)):
        item = ds[i]
        o = item["meta"]["offset_steps"]
        assert item["features"].shape == (6, 64) and item["meta"]["video_steps"] == 300
        assert item["meta"]["time_offset"] == pytest.approx(2.0 + o)
        covered[o:o + 64] = True
    assert covered.all()
    assert ds.ground_truth().videos.keys() == {"long"}


def test_test_videos_up_to_eval_max_seq_len_are_whole_and_longer_ones_windows_of_it(tmp_path):
    videos = {**long_video(300), "mid": {"subset": "validation", "steps": 100, "fps": 4.0,
                                         "segments": [(10.0, 95.0, "Jump")]}}
    cfg = make(tmp_path, videos, max_seq_len=64, eval_max_seq_len=128, eval_window_overlap=0.25)
    assert cfg.eval_window == 128
    ds = FeatureDataset(cfg, "train", training=False)
    items = [ds[i] for i in range(len(ds))]
    assert ds.item_steps() == [it["meta"]["num_steps"] for it in items] == [128, 128, 128, 100]
    long, (mid,) = items[:3], items[3:]
    assert [it["meta"]["offset_steps"] for it in long] == window_starts(300, 128, 0.25) == [0, 96, 172]
    # the whole video: all its steps, its instance unclipped, in the video's own seconds
    assert mid["features"].shape == (6, 100) and mid["meta"]["offset_steps"] == 0
    assert mid["meta"]["video_steps"] == 100 and mid["meta"]["time_offset"] == pytest.approx(2.0)
    assert mid["segments"].tolist() == [[8.0, 93.0]] and mid["labels"].tolist() == [0]
    # training crops stay max_seq_len long
    train = FeatureDataset(cfg, "train", training=True)
    assert train.item_steps() == [64, 64] and train[0]["features"].shape == (6, 64)
    assert make(tmp_path / "b", videos, max_seq_len=64, eval_max_seq_len=0).eval_window == 64  # 0: max_seq_len
    default = FeatureDataset(make(tmp_path / "c", videos, max_seq_len=64), "train", training=False)
    assert default.item_steps() == [64] * len(window_starts(300, 64, 0.25)) + [64] * 2  # 100 steps: two windows


@pytest.mark.parametrize("value", [-1, 32, 63, "all", 1.5, [128]])
def test_eval_max_seq_len_below_max_seq_len_or_not_an_integer_is_refused_naming_the_key(tmp_path, value):
    with pytest.raises(ConfigError, match=r"dataset\.eval_max_seq_len"):
        make(tmp_path, TWO, max_seq_len=64, eval_max_seq_len=value)


def test_eval_max_seq_len_is_checked_against_max_seq_len_in_an_experiment_config():
    from gaf.engine.experiment import load_experiment

    assert load_experiment("demo", ["dataset.eval_max_seq_len=4096"]).dataset.eval_window == 4096
    with pytest.raises(ConfigError, match=r"dataset\.eval_max_seq_len: .*>= dataset\.max_seq_len \(512\), got 100"):
        load_experiment("demo", ["dataset.eval_max_seq_len=100"])


@pytest.mark.parametrize("num_steps,window,overlap", [(1, 8, 0.0), (8, 8, 0.5), (9, 8, 0.5), (100, 7, 0.3),
                                                     (1000, 128, 0.25), (129, 128, 0.0)])
def test_window_starts_property(num_steps, window, overlap):
    starts = window_starts(num_steps, window, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert min(num_steps, starts[-1] + window) == num_steps
    assert all(b - a <= window * (1 - overlap) for a, b in zip(starts, starts[1:]))


def test_resize_length_mode_resamples_every_video(tmp_path):
    videos = {"a": {"subset": "test", "steps": 50, "duration": 20.0, "segments": [(5.0, 10.0, "Jump")]},
              "b": {"subset": "test", "steps": 7, "duration": 3.0, "segments": [(1.0, 2.0, "Throw")]}}
    ds = FeatureDataset(make(tmp_path, videos, resize_length=16, max_seq_len=16), "test", training=False)
    for i, (dur, seg) in enumerate([(20.0, (5.0, 10.0)), (3.0, (1.0, 2.0))]):
        item = ds[i]
        assert item["features"].shape == (6, 16)
        assert item["meta"]["step_seconds"] == pytest.approx(dur / 16)
        assert item["meta"]["time_offset"] == pytest.approx(0.5 * dur / 16)
        s, e = item["segments"][0].tolist()
        assert (to_seconds(item, s), to_seconds(item, e)) == pytest.approx(seg, abs=1e-5)
    # linear interpolation of a linear ramp stays linear
    ramp = ds[0]["features"][0].numpy()
    assert np.allclose(np.diff(ramp[1:-1]), 50 / 16, atol=1e-4)
    with pytest.raises(DataError, match="duration"):
        FeatureDataset(make(tmp_path / "x", {"c": {"subset": "test", "steps": 5}}, resize_length=8), "test",
                       training=False)


def test_feature_files_use_prefix_and_suffix(tmp_path):
    cfg = make(tmp_path, TWO, prefix="i3d_", suffix="_rgbflow")
    assert cfg.feature_path("v_b").name == "i3d_v_b_rgbflow.npy"
    assert FeatureDataset(cfg, "test", training=False)[0]["features"].shape == (6, 25)


def test_config_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="dataset.channels"):
        make(tmp_path, TWO, channels=[4, 9])
    with pytest.raises(ConfigError, match="eval_window_overlap"):
        make(tmp_path, TWO, eval_window_overlap=1.0)
    with pytest.raises(DataError, match=r"subset 'training'.*Test, Validation"):
        FeatureDataset(make(tmp_path, TWO, train_subset="training"), "train", training=True)


def test_subsets_match_with_the_annotation_aliases(tmp_path):
    # the file writes "Validation" / "Test"; val/validation/train... mean the same as in read_ground_truth
    for train_subset, test_subset in (("val", "TESTING"), (" validation ", "test"), ("VALIDATION", "Test")):
        cfg = make(tmp_path / train_subset.strip(), TWO, train_subset=train_subset, test_subset=test_subset)
        assert FeatureDataset(cfg, "train", training=False).video_ids == ["v_a"]
        assert FeatureDataset(cfg, "test", training=False).video_ids == ["v_b", "v_c"]
    with pytest.raises(DataError, match=r"subset 'train'.*Test, Validation"):
        FeatureDataset(make(tmp_path / "t", TWO, train_subset="train"), "train", training=False)


# ----------------------------------------------------------------- errors
def test_missing_annotation_names_the_file(tmp_path):
    cfg = DatasetConfig(annotation_file=str(tmp_path / "nope.json"), feature_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"nope\.json.*annotation_file"):
        FeatureDataset(cfg, "test", training=False)


def test_missing_feature_file_names_expected_path_and_keys(tmp_path):
    cfg = make(tmp_path, TWO, prefix="p_")
    cfg.feature_path("v_c").unlink()
    with pytest.raises(DataError) as err:
        FeatureDataset(cfg, "test", training=False)
    msg = str(err.value)
    assert str(cfg.feature_path("v_c")) in msg and "'v_c'" in msg
    for key in ("feature_dir", "file_prefix", "file_suffix"):
        assert key in msg


@pytest.mark.parametrize("array,pattern", [
    (np.zeros((10, 4), np.float32), r"4 channels.*dataset\.input_dim is 6"),
    (np.zeros((10, 6, 1), np.float32), r"2-D \(T, C\)"),
    (np.zeros((10, 6), np.int64), r"floating-point.*int64"),
    (np.zeros((0, 6), np.float32), r"0 feature steps"),
])
def test_malformed_feature_file_is_named(tmp_path, array, pattern):
    videos = dict(TWO, v_c={"subset": "Test", "array": array, "fps": 25.0})
    cfg = make(tmp_path, videos)
    with pytest.raises(DataError, match=pattern) as err:
        FeatureDataset(cfg, "test", training=False)
    assert str(cfg.feature_path("v_c")) in str(err.value) and "'v_c'" in str(err.value)


def test_wrong_dim_error_mentions_channels_when_set(tmp_path):
    videos = dict(TWO, v_c={"subset": "Test", "array": np.zeros((10, 4), np.float32), "fps": 25.0})
    with pytest.raises(DataError, match=r"input_dim.*dataset\.channels"):
        FeatureDataset(make(tmp_path, videos, channels=[0, 3]), "test", training=False)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_unreadable_feature_file_is_named(tmp_path, damage):
    cfg = make(tmp_path, TWO)
    path = cfg.feature_path("v_b")
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) - 40], "garbage": b"not numpy at all"}[damage])
    with pytest.raises(DataError, match="not a readable .npy") as err:
        FeatureDataset(cfg, "test", training=False)
    assert str(path) in str(err.value)


def test_nan_values_name_video_and_first_bad_step(tmp_path):
    bad = np.zeros((25, 6), np.float32)
    bad[13, 2] = np.nan
    bad[20, 0] = np.inf
    videos = dict(TWO, v_b={"subset": "Test", "array": bad, "fps": 25.0})
    ds = FeatureDataset(make(tmp_path, videos), "test", training=False)  # headers only: builds fine
    with pytest.raises(DataError, match=r"'v_b'.*NaN or Inf.*step 13"):
        ds[0]
    with pytest.raises(DataError, match=r"v_b\.npy.*step 13"):
        ds.check(progress=False)
    FeatureDataset(make(tmp_path / "ok", TWO), "test", training=False).check(progress=False)


def test_unknown_label_is_named(tmp_path):
    with pytest.raises(DataError, match=r"'v_b'.*'Throw'.*dataset\.labels"):
        FeatureDataset(make(tmp_path, TWO, labels=["Jump"]), "test", training=False)


def test_instances_outside_the_video_are_no_target_but_stay_in_ground_truth(tmp_path):
    videos = {"v": {"subset": "test", "steps": 20, "fps": 4.0, "duration": 22.0,
                    "segments": [(3.0, 5.0, "Jump"), (40.0, 45.0, "Throw")]}}
    with pytest.warns(AnnotationWarning):  # the reader reports the overrun
        ds = FeatureDataset(make(tmp_path, videos), "test", training=False)
    assert ds[0]["labels"].tolist() == [0]
    assert len(ds.ground_truth().videos["v"].segments) == 2


@pytest.mark.skipif(not (THUMOS_DIR / "thumos14.json").is_file(), reason="real THUMOS14 annotation not here")
def test_reads_the_real_actionformer_thumos14_annotation(tmp_path):
    src = THUMOS_DIR / "thumos14.json"
    db = json.loads(src.read_text())["database"]
    feat_dir = tmp_path / "i3d_features"
    feat_dir.mkdir()
    for vid, entry in db.items():  # ActionFormer's step count: floor((frames - 16) / 4) + 1
        steps = int((entry["duration"] * entry["fps"] - 16) // 4) + 1
        np.save(feat_dir / f"{vid}.npy", np.zeros((steps, 4), np.float32))
    cfg = DatasetConfig(annotation_file=str(src), feature_dir=str(feat_dir), input_dim=4)
    with pytest.warns(AnnotationWarning):  # THUMOS14's overrunning segments
        test = FeatureDataset(cfg, "test", training=False)
        train = FeatureDataset(cfg, "train", training=True)
    assert len(test.video_ids) == 212 and len(train) == 200 and test.num_classes == 20
    assert test.labels[0] == "BaseballPitch" and test.labels[19] == "VolleyballSpiking"
    assert len(test) > 212  # long videos give several 2304-step windows
    item = test[test.video_ids.index("video_test_0000004")]
    assert item["meta"]["fps"] == 30.0 and item["meta"]["step_seconds"] == pytest.approx(4 / 30)
    s, e = item["segments"][0].tolist()
    assert (to_seconds(item, s), to_seconds(item, e)) == pytest.approx((0.2, 1.1), abs=1e-5)
    assert test.ground_truth().num_segments == sum(
        len(v["annotations"]) for v in db.values() if v["subset"] == "Test")
