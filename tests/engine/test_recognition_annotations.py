"""Recognition on the untrimmed videos of a detection annotation file (``dataset.source: annotations``):
each video labelled by the class with the most annotated seconds, unannotated videos skipped with one
warning, training and evaluation through the CLI, the video-level scores written in the layout of
CUHK's ActivityNet classifier file (``video_scores.json``), and the clips' annotated action steps (the target
of ``model.loss.att``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gaf.cli import main
from gaf.config import from_dict
from gaf.data.annotations import AnnotationWarning, Segment, Video
from gaf.data.recognition_clips import (AnnotationFeatureDataset, ClipDataConfig, build_clip_dataset, collate_clips,
                                         video_class)
from gaf.errors import DataError

CLASSES = ("Archery", "Knitting", "Surfing")  # sorted: the class order of a file without label ids
DIM = 12

# every subset here holds an unannotated video; the tests that check its warning catch it themselves
pytestmark = pytest.mark.filterwarnings("ignore:.*no annotated segment:gaf.data.annotations.AnnotationWarning")


def write_anet_layout(root: Path, *, train_per_class: int = 6, test_per_class: int = 4, seed: int = 0) -> dict:
    """ActivityNet v1.3 layout: ``root/anet.json`` (ids without ``v_``) and ``root/feats/v_<id>.npy``.

    A video is T = 24..40 steps (one a second) of unit noise; its action, one
    segment over 40-70 % of it, adds its class's prototype (a fixed random
    vector of norm ~4) to those steps. The first test video of each class
    also carries a 2 s annotated segment of the next class (no features: the
    longer class labels the video). Each of ``training`` and ``validation``
    holds one video with no annotation, and ``testing`` holds two.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(0.0, 1.2, size=(len(CLASSES), DIM)).astype(np.float32)
    feats = root / "feats"
    feats.mkdir(parents=True)
    database = {}

    def add(vid: str, subset: str, k: int | None, extra: int | None = None) -> None:
        T = int(rng.integers(24, 41))
        x = rng.normal(0.0, 1.0, size=(T, DIM)).astype(np.float32)
        annotations = []
        if k is not None:
            length = int(round(T * rng.uniform(0.4, 0.7)))
            s = int(rng.integers(0, T - length + 1))
            x[s:s + length] += prototypes[k]
            annotations.append({"segment": [float(s), float(s + length)], "label": CLASSES[k]})
        if extra is not None:
            annotations.append({"segment": [0.0, 2.0], "label": CLASSES[extra]})
        np.save(feats / f"v_{vid}.npy", x)
        database[vid] = {"subset": subset, "duration": float(T), "annotations": annotations}

    for k, name in enumerate(CLASSES):
        for i in range(train_per_class):
            add(f"{name.lower()}_tr{i}", "training", k)
        for i in range(test_per_class):
            add(f"{name.lower()}_va{i}", "validation", k, (k + 1) % len(CLASSES) if i == 0 else None)
    add("blank_tr", "training", None)
    add("blank_va", "validation", None)
    add("blank_te0", "testing", None)
    add("blank_te1", "testing", None)
    ann = root / "anet.json"
    ann.write_text(json.dumps({"version": "VERSION 1.3", "database": database}))
    return {"source": "annotations", "annotation_file": str(ann), "feature_dir": str(feats), "file_prefix": "v_",
            "train_subset": "training", "test_subset": "validation", "input_dim": DIM, "clip_len": 16}


@pytest.fixture
def anet(tmp_path: Path) -> dict:
    return write_anet_layout(tmp_path / "anet")


def test_a_video_is_labelled_by_the_class_with_the_most_annotated_seconds():
    index = {"A": 0, "B": 1, "C": 2}
    three_short_b = Video("v", [Segment(0, 10, "A"), Segment(12, 14, "B"), Segment(15, 17, "B"), Segment(20, 21, "B")])
    assert video_class(three_short_b, index) == 0  # 10 s of A beats 5 s of B in three segments
    two_b = Video("v", [Segment(0, 4, "C"), Segment(5, 7, "B"), Segment(8, 10, "B")])
    assert video_class(two_b, index) == 1  # 4 s each: the class with more segments
    assert video_class(Video("v", [Segment(0, 4, "C"), Segment(5, 9, "B")]), index) == 1  # 4 s, one each: lower id
    assert video_class(Video("v", []), index) is None


def test_annotation_dataset_labels_videos_skips_unannotated_ones_and_cuts_clips(anet):
    cfg = from_dict(ClipDataConfig, anet)
    with pytest.warns(AnnotationWarning, match=r"anet\.json: 1 of the 19 videos of subset 'training' have no "
                                               r"annotated segment"):
        train = build_clip_dataset(cfg, "train")
    with pytest.warns(AnnotationWarning, match="1 of the 13 videos of subset 'validation'"):
        test = build_clip_dataset(cfg, "test", num_clips=3)
    assert isinstance(train, AnnotationFeatureDataset)
    assert train.classes == test.classes == list(CLASSES)  # the file's labels, shared by both subsets
    assert (len(train), len(test), train.input_dim) == (18, 12, DIM)
    assert train.labels == [0] * 6 + [1] * 6 + [2] * 6
    assert test.labels == [0] * 4 + [1] * 4 + [2] * 4  # the 2 s of the next class do not relabel a video
    assert train[0]["inputs"].shape == (1, DIM, 16) and train[0]["video"] == "archery_tr0"
    item = test[0]
    x = np.load(Path(anet["feature_dir"]) / "v_archery_va0.npy")
    assert item["video"] == "archery_va0" and item["inputs"].shape == (3, DIM, 16)
    assert torch.allclose(item["inputs"][0], torch.from_numpy(x[:16]).T)  # first clip at the start
    assert torch.allclose(item["inputs"][-1], torch.from_numpy(x[-16:]).T)  # last clip at the end


@pytest.mark.slow
@pytest.mark.learning
def test_recognizer_trains_on_annotated_videos_and_writes_cuhk_style_video_scores(anet, train_seed, tmp_path,
                                                                                  record_property):
    torch.set_num_threads(1)
    config = tmp_path / "anet_cls.yaml"
    config.write_text(yaml.safe_dump({
        "task": "recognition", "name": "anet_cls", "dataset": anet,
        "model": {"dropout": 0.1, "gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4,
                                         "fusion": "attention"}},
        "train": {"epochs": 15, "batch_size": 6, "lr": 1e-2, "warmup_epochs": 1},
        "eval": {"num_clips": 3, "topk": [1, 2], "batch_size": 8},
    }))
    run = tmp_path / "run"
    with pytest.warns(AnnotationWarning, match="no annotated segment"):
        assert main(["train", str(config), "--set", f"train.seed={train_seed}", "--work-dir", str(run),
                     "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    record_property("top1", metrics["top1"])
    assert metrics["num_videos"] == 12 and metrics["subset"] == "validation"
    assert metrics["top1"] >= 0.75, metrics  # chance is 1/3

    scores = json.loads((run / "video_scores.json").read_text())
    assert set(scores) == {"results", "class"} and scores["class"] == list(CLASSES)
    ids = [f"{c.lower()}_va{i}" for c in CLASSES for i in range(4)]  # the annotation's ids, as written
    assert list(scores["results"]) == ids
    rows = np.array([scores["results"][v] for v in ids])
    assert rows.shape == (12, 3) and (rows >= 0).all()
    assert np.allclose(rows.sum(axis=1), 1.0, atol=1e-4)
    assert (rows.argmax(axis=1) == [0] * 4 + [1] * 4 + [2] * 4).mean() == pytest.approx(metrics["top1"])

    # gaf eval writes the same scores where --scores-out says
    out = tmp_path / "anet_video_scores.json"
    with pytest.warns(AnnotationWarning):
        assert main(["eval", "--ckpt", str(run / "final.pt"), "--work-dir", str(tmp_path / "ev"), "--scores-out",
                     str(out), "--device", "cpu", "--no-progress"]) == 0
    assert json.loads(out.read_text()) == scores
    assert not (tmp_path / "ev" / "video_scores.json").exists()
    before = Path(anet["annotation_file"]).read_bytes()  # ... and never over its own annotation file
    assert main(["eval", "--ckpt", str(run / "final.pt"), "--work-dir", str(tmp_path / "ev2"), "--scores-out",
                 anet["annotation_file"], "--device", "cpu", "--no-progress"]) == 2
    assert Path(anet["annotation_file"]).read_bytes() == before and not (tmp_path / "ev2").exists()


def test_missing_feature_file_names_the_file_the_video_and_the_annotation(anet):
    (Path(anet["feature_dir"]) / "v_knitting_va2.npy").unlink()
    cfg = from_dict(ClipDataConfig, anet)
    with pytest.warns(AnnotationWarning), pytest.raises(
            DataError, match=r"v_knitting_va2\.npy: feature file missing for 'knitting_va2' \(.*anet\.json, "
                             r"subset 'validation'\)"):
        build_clip_dataset(cfg, "test")


def test_wrong_channel_count_names_the_file_and_the_annotation(anet):
    np.save(Path(anet["feature_dir"]) / "v_surfing_tr1.npy", np.zeros((30, DIM + 1), dtype=np.float32))
    train = build_clip_dataset(from_dict(ClipDataConfig, anet), "train")
    with pytest.raises(DataError, match=rf"v_surfing_tr1\.npy: {DIM + 1} channels, but v_archery_tr0\.npy has "
                                        rf"{DIM} \(.*anet\.json, subset 'training'\)"):
        train[[video for video, _, _ in train.entries].index("surfing_tr1")]
    wrong_dim = from_dict(ClipDataConfig, {**anet, "input_dim": DIM + 4})
    with pytest.raises(DataError, match=rf"v_archery_tr0\.npy: {DIM} channels but dataset.input_dim is {DIM + 4}"):
        build_clip_dataset(wrong_dim, "train")


def test_a_test_subset_without_annotated_videos_is_an_error_naming_the_file_and_the_key(anet):
    cfg = from_dict(ClipDataConfig, {**anet, "test_subset": "testing"})
    with pytest.raises(DataError, match=r"anet\.json: none of the 2 videos of subset 'testing' "
                                        r"\(dataset\.test_subset\) has an annotated segment"):
        build_clip_dataset(cfg, "test")
    absent = from_dict(ClipDataConfig, {**anet, "train_subset": "train_extra"})
    with pytest.raises(DataError, match=r"no video has subset 'train_extra'.*\(dataset\.train_subset\)"):
        build_clip_dataset(absent, "train")


def write_timed_videos(root: Path) -> dict:
    """Two 10-step videos whose step t holds the value t (a clip's first value is its start): ``timed`` at
    fps 10 (feature_stride 4, num_frames 8: step t's centre at (4 t + 4) / 10 = 0.4 (t + 1) s), ``untimed_fps``
    without fps, 5 s long (centres spread evenly: (t + 0.5) * 0.5 s)."""
    feats = root / "feats"
    feats.mkdir(parents=True)
    for vid in ("timed", "untimed_fps"):
        np.save(feats / f"{vid}.npy", np.repeat(np.arange(10, dtype=np.float32)[:, None], DIM, 1))
    database = {
        "timed": {"subset": "training", "duration": 4.5, "fps": 10.0,
                  "annotations": [{"segment": [1.0, 2.0], "label": "Archery"},  # centres 1.2, 1.6, 2.0 (end included)
                                  {"segment": [3.3, 3.7], "label": "Knitting"}]},  # centre 3.6
        "untimed_fps": {"subset": "training", "duration": 5.0,
                        "annotations": [{"segment": [1.0, 2.0], "label": "Archery"}]},  # centres 1.25, 1.75
    }
    ann = root / "anet.json"
    ann.write_text(json.dumps({"version": "VERSION 1.3", "database": database}))
    return {"source": "annotations", "annotation_file": str(ann), "feature_dir": str(feats),
            "train_subset": "training", "test_subset": "training", "input_dim": DIM, "clip_len": 6,
            "feature_stride": 4, "num_frames": 8}


def test_items_carry_the_action_steps_of_their_clips(tmp_path):
    cfg = from_dict(ClipDataConfig, write_timed_videos(tmp_path))
    timed = [0, 0, 1, 1, 1, 0, 0, 0, 1, 0]  # centres 0.4 .. 4.0 s in [1.0, 2.0] or [3.3, 3.7]
    spread = [0, 0, 1, 1, 0, 0, 0, 0, 0, 0]  # no fps: centres 0.25 .. 4.75 s in [1.0, 2.0]
    test = build_clip_dataset(cfg, "test", num_clips=2)  # clips at steps 0 and 4
    assert [it["video"] for it in (test[0], test[1])] == ["timed", "untimed_fps"]
    assert test[0]["action_mask"].int().tolist() == [timed[:6], timed[4:]]
    assert test[1]["action_mask"].int().tolist() == [spread[:6], spread[4:]]
    whole = build_clip_dataset(replace(cfg, clip_len=12), "test")
    assert whole[0]["action_mask"].int().tolist() == [timed + [0, 0]]  # False on padding
    train = build_clip_dataset(cfg, "train")
    torch.manual_seed(0)
    for _ in range(5):  # random crops: the mask is cut where the features are
        item = train[0]
        s = int(item["inputs"][0, 0, 0])
        assert item["action_mask"].int().tolist() == [timed[s:s + 6]]
    batch = collate_clips([test[0], test[1]])
    assert batch["action_mask"].shape == (4, 6) and batch["action_mask"].dtype == torch.bool
    no_steps = {k: v for k, v in test[0].items() if k != "action_mask"}  # a split-list item
    assert "action_mask" not in collate_clips([no_steps, no_steps])


def test_loss_att_on_a_video_with_neither_fps_nor_duration_is_an_error_naming_it(tmp_path, capsys):
    layout = write_timed_videos(tmp_path / "anet")
    doc = json.loads(Path(layout["annotation_file"]).read_text())
    del doc["database"]["untimed_fps"]["duration"]
    Path(layout["annotation_file"]).write_text(json.dumps(doc))
    train = build_clip_dataset(from_dict(ClipDataConfig, layout), "train")
    assert train.untimed == ["untimed_fps"] and "action_mask" not in train[1]
    assert "action_mask" not in collate_clips([train[0], train[1]])
    config = tmp_path / "att.yaml"
    config.write_text(yaml.safe_dump({"task": "recognition", "dataset": layout, "model": {"loss": {"att": 1.0}},
                                      "train": {"epochs": 1}}))
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "video 'untimed_fps' (1 of 2) has neither fps nor duration" in capsys.readouterr().err


def test_loss_att_without_annotated_action_steps_is_a_one_line_config_error(tmp_path, capsys):
    config = tmp_path / "ucf_att.yaml"
    config.write_text(yaml.safe_dump({
        "task": "recognition", "dataset": {"source": "features", "split_dir": str(tmp_path / "splits"),
                                           "feature_dir": str(tmp_path / "feats")},
        "model": {"loss": {"att": 0.5}}}))
    assert main(["train", str(config), "--work-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model.loss.att: 0.5" in err and "dataset.source: annotations" in err, err
    assert not (tmp_path / "run").exists()
