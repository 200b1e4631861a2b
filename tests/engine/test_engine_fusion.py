"""ActivityNet as the field runs it: a class-agnostic detector (``dataset.class_agnostic``) whose proposals
are fused with video-level class scores (``eval.video_scores``, gaf.engine.video_scores)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gaf.cli import main
from gaf.config import from_dict
from gaf.data.annotations import AnnotationSet, Segment, Video
from gaf.data.features import FeatureDataset
from gaf.engine.experiment import EvalConfig, ExperimentConfig
from gaf.engine.evaluate import scored_predictions
from gaf.engine.video_scores import as_proposals, fuse_predictions, fuse_video_scores, read_video_scores
from gaf.errors import AnnotationError, ConfigError, DataError

from conftest import TWO, make, write_pulse_features

# Two proposals (p = 0.81, 0.25) in a video whose class scores are s = (0.1, 0.64, 0.36).
SEGMENTS = np.array([[0.0, 10.0], [20.0, 30.0]])
P = np.array([0.81, 0.25])
S = np.array([0.1, 0.64, 0.36])


# ------------------------------------------------------------------------------------------- the two rules
def test_afsd_rule_keeps_the_top_class_and_multiplies() -> None:
    segs, scores, labels = fuse_video_scores(SEGMENTS, P, S, rule="afsd")
    # top 1 class: c = 1 (0.64); p * s = 0.81 * 0.64, 0.25 * 0.64
    np.testing.assert_allclose(scores, [0.5184, 0.16])
    assert labels.tolist() == [1, 1]
    np.testing.assert_array_equal(segs, SEGMENTS)


def test_actionformer_rule_keeps_the_top_two_classes_and_takes_the_square_root() -> None:
    segs, scores, labels = fuse_video_scores(SEGMENTS, P, S, rule="actionformer")
    # top 2 classes: 1 (0.64 = 0.8²), 2 (0.36 = 0.6²); sqrt(0.81 · s_c) = 0.9 · 0.8, 0.9 · 0.6;
    # sqrt(0.25 · s_c) = 0.5 · 0.8, 0.5 · 0.6
    np.testing.assert_allclose(scores, [0.72, 0.54, 0.40, 0.30])
    assert labels.tolist() == [1, 2, 1, 2]
    np.testing.assert_array_equal(segs, SEGMENTS[[0, 0, 1, 1]])


def test_topk_overrides_the_rules_default_and_max_keep_caps_by_fused_score() -> None:
    _, scores, labels = fuse_video_scores(SEGMENTS, P, S, rule="afsd", topk=2)
    np.testing.assert_allclose(scores, [0.5184, 0.2916, 0.16, 0.09])
    assert labels.tolist() == [1, 2, 1, 2]
    segs, scores, labels = fuse_video_scores(SEGMENTS, P, S, rule="actionformer", max_keep=3)
    np.testing.assert_allclose(scores, [0.72, 0.54, 0.40])
    assert labels.tolist() == [1, 2, 1] and len(segs) == 3
    _, scores, labels = fuse_video_scores(SEGMENTS, P, S, rule="afsd", topk=10)  # at most K classes
    assert len(scores) == 2 * 3 and sorted(set(labels.tolist())) == [0, 1, 2]


def test_no_proposal_gives_no_detection() -> None:
    segs, scores, labels = fuse_video_scores(np.zeros((0, 2)), np.zeros(0), S)
    assert segs.shape == (0, 2) and scores.shape == (0,) and labels.shape == (0,)


def test_fuse_predictions_labels_with_the_files_class_names_and_caps_per_video(tmp_path) -> None:
    path = _write(tmp_path / "s.json", {"results": {"a": S.tolist()}, "class": ["Run", "Jump", "Throw"]})
    vs = read_video_scores(path, ["a"], ["Jump", "Run", "Throw"])
    preds = AnnotationSet({"a": Video("a", [Segment(0, 10, "action", 0.81), Segment(20, 30, "action", 0.25)],
                                      duration=40.0)}, ["action"])
    fused = fuse_predictions(preds, vs, ["Jump", "Run", "Throw"], rule="actionformer", max_keep=3)
    assert fused.labels == ["Jump", "Run", "Throw"]
    got = [(s.start, s.label, round(s.score, 9)) for s in fused.videos["a"].segments]
    assert got == [(0.0, "Jump", 0.72), (0.0, "Throw", 0.54), (20.0, "Jump", 0.4)]
    assert fused.videos["a"].duration == 40.0


# ----------------------------------------------------------------------------------------- the score file
def _write(path: Path, doc) -> str:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


CLASSES = ["Jump", "Throw"]


def test_ids_match_with_or_without_the_v_prefix_and_classes_is_read_too(tmp_path) -> None:
    with_prefix = _write(tmp_path / "a.json", {"results": {"v_x": [0.2, 0.8], "y": [1.0, 0.0]}, "class": CLASSES})
    vs = read_video_scores(with_prefix, ["x", "v_y"], CLASSES)
    assert vs.scores["x"].tolist() == [0.2, 0.8] and vs.scores["v_y"].tolist() == [1.0, 0.0]
    other_key = _write(tmp_path / "b.json", {"results": {"x": [0.3, 0.7]}, "classes": ["Throw", "Jump"]})
    vs = read_video_scores(other_key, ["x"], CLASSES)
    assert vs.classes == ["Throw", "Jump"] and vs.scores["x"].tolist() == [0.3, 0.7]
    # an exact id wins over a prefix match
    both = _write(tmp_path / "c.json", {"results": {"v_x": [0.1, 0.9], "x": [0.9, 0.1]}, "class": CLASSES})
    assert read_video_scores(both, ["x"], CLASSES).scores["x"].tolist() == [0.9, 0.1]


@pytest.mark.parametrize("doc, error, words", [
    (None, DataError, ["not found"]),
    ("{not json", AnnotationError, ["not a JSON file"]),
    ({"class": CLASSES}, AnnotationError, ['no "results"']),
    ({"results": {"x": [0.5, 0.5]}}, AnnotationError, ['no "class" list']),
    ({"results": {"x": [0.5, 0.5]}, "class": ["Jump", "Swim"]}, AnnotationError, ["'Swim'", "not the ground truth"]),
    ({"results": {"x": [0.5, 0.5], "y": [0.1, 0.2, 0.7]}, "class": CLASSES}, AnnotationError,
     ["video 'y'", "3 scores", "K = 2"]),
    ({"results": {"x": [0.5, 0.5], "y": [0.1, -0.2]}, "class": CLASSES}, AnnotationError,
     ["video 'y'", "-0.2", "'Throw'", "finite and >= 0"]),
    ('{"results": {"x": [0.5, 0.5], "y": [NaN, 0.2]}, "class": ["Jump", "Throw"]}', AnnotationError,
     ["video 'y'", "nan", "'Jump'", "finite"]),
    ({"results": {"x": [0.5, 0.5], "y": [0.5, 0.5]}, "class": CLASSES}, DataError,
     ["video 'v_z'", "2 of the 4 evaluated videos missing"]),
])
def test_a_bad_score_file_is_refused_naming_the_file_and_the_video(tmp_path, doc, error, words) -> None:
    path = str(tmp_path / "scores.json") if doc is None else _write(tmp_path / "scores.json", doc)
    with pytest.raises(error) as info:
        read_video_scores(path, ["x", "v_y", "v_z", "w"], CLASSES)
    message = str(info.value)
    assert "\n" not in message and message.startswith(path) and "eval.video_scores" in message
    for word in words:
        assert word in message, message


def test_video_scores_need_a_class_agnostic_detector(tmp_path) -> None:
    dataset = {"annotation_file": "a.json", "feature_dir": "f", "max_seq_len": 64}
    with pytest.raises(ConfigError, match=r"^eval\.video_scores: .*needs a class-agnostic detector: set "
                                          r"dataset\.class_agnostic: true"):
        from_dict(ExperimentConfig, {"dataset": dataset, "eval": {"video_scores": "s.json"}})
    cfg = from_dict(ExperimentConfig, {"dataset": {**dataset, "class_agnostic": True},
                                       "eval": {"video_scores": "s.json", "video_fusion": "afsd",
                                                "video_score_topk": 3}})
    assert cfg.eval.video_fusion == "afsd" and cfg.eval.video_score_topk == 3
    with pytest.raises(ConfigError, match="video_score_topk"):
        from_dict(ExperimentConfig, {"dataset": dataset, "eval": {"video_score_topk": 0}})
    with pytest.raises(ConfigError, match="video_fusion"):
        from_dict(ExperimentConfig, {"dataset": dataset, "eval": {"video_fusion": "mean"}})
    with pytest.raises(ConfigError, match="class-agnostic"):  # the evaluator checks it too
        scored_predictions(AnnotationSet({}, CLASSES), AnnotationSet({}, CLASSES), EvalConfig(),
                           class_agnostic=False, video_scores=object())


# --------------------------------------------------------------------- the class-agnostic dataset and gt
def test_a_class_agnostic_dataset_trains_one_class_and_keeps_the_real_ground_truth(tmp_path) -> None:
    cfg = make(tmp_path, TWO, max_seq_len=64, fps=None, class_agnostic=True)
    ds = FeatureDataset(cfg, "train", training=False)
    assert ds.labels == ["action"] and ds.num_classes == 1 and ds.class_names == ["Jump", "Throw"]
    assert ds.label_index == {"Jump": 0, "Throw": 0}
    item = ds[0]
    assert item["labels"].tolist() == [0, 0]  # Jump and Throw: both the one class
    gt = ds.ground_truth()
    assert gt.labels == ["Jump", "Throw"] and [s.label for s in gt.videos["v_a"].segments] == ["Jump", "Throw"]
    collapsed = as_proposals(gt)
    assert collapsed.labels == ["action"] and [s.label for s in collapsed.videos["v_a"].segments] == ["action"] * 2
    assert [s.label for s in gt.videos["v_a"].segments] == ["Jump", "Throw"]  # the original is untouched
    preds, scored_gt, how = scored_predictions(AnnotationSet({}, ["action"]), gt, EvalConfig(), class_agnostic=True)
    assert scored_gt.labels == ["action"] and "collapsed to 'action'" in how


# ------------------------------------------------------------------------------------------- end to end
def _one_class_test_videos(root: Path) -> tuple[dict, dict[str, str]]:
    """The pulse dataset with ActivityNet's shape: each test video holds one class (test videos holding two
    are moved out of the test subset). Returns the dataset section and each test video's class."""
    dataset = write_pulse_features(root, num_test=10)
    path = Path(dataset["annotation_file"])
    doc = json.loads(path.read_text())
    classes = {}
    for vid, entry in doc["database"].items():
        present = {a["label"] for a in entry["annotations"]}
        if entry["subset"] == "test":
            if len(present) == 1:
                classes[vid] = present.pop()
            else:
                entry["subset"] = "unused"
    path.write_text(json.dumps(doc))
    assert len(classes) >= 5 and set(classes.values()) == {"Jump", "Throw"}
    return dataset, classes


@pytest.mark.slow
@pytest.mark.learning
def test_class_agnostic_training_then_eval_with_video_scores(train_seed, tmp_path, capsys, record_property) -> None:
    dataset, truth = _one_class_test_videos(tmp_path / "pulses")
    cfg = from_dict(ExperimentConfig, {
        "name": "tiny", "dataset": dataset, "work_dir": str(tmp_path / "run"),
        "model": {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
                  "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1}},
        "train": {"epochs": 12, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 1, "seed": train_seed,
                  "health_items": 0, "grad_probe_every": 0},
        "eval": {"tious": [0.3, 0.5, 0.7], "batch_size": 8}})
    config = tmp_path / "tiny.yaml"
    config.write_text(cfg.to_yaml())
    assert main(["train", str(config), "--no-progress", "--set", "dataset.class_agnostic=true"]) == 0
    run = tmp_path / "run"
    proposals = json.loads((run / "metrics.json").read_text())  # scored at the end of training
    assert "collapsed to 'action'" in proposals["scored_as"]

    def score_file(name: str, right: bool) -> str:  # ids written with ActivityNet's v_ prefix
        rows = {f"v_{vid}": [0.9 if (c == label) == right else 0.05 for c in ("Jump", "Throw")]
                for vid, label in truth.items()}
        return _write(tmp_path / name, {"results": rows, "class": ["Jump", "Throw"]})

    def evaluate(work: str, *sets: str) -> dict:
        args = ["eval", "--ckpt", str(run / "final.pt"), "--no-progress", "--no-report", "--work-dir",
                str(tmp_path / work)]
        for s in sets:
            args += ["--set", s]
        assert main(args) == 0, capsys.readouterr().err
        return json.loads((tmp_path / work / "metrics.json").read_text())

    def at(metrics: dict, tiou: float) -> float:
        return dict(zip(metrics["tious"], metrics["mAP"]))[tiou]

    right, wrong = score_file("right.json", True), score_file("wrong.json", False)
    fused = evaluate("fused", f"eval.video_scores={right}")  # actionformer: sqrt(p * s), top 2
    afsd = evaluate("afsd", f"eval.video_scores={right}", "eval.video_fusion=afsd")  # p * s, top 1
    afsd_wrong = evaluate("afsd_wrong", f"eval.video_scores={wrong}", "eval.video_fusion=afsd")
    for name, metrics in (("proposals", proposals), ("fused", fused), ("afsd", afsd), ("afsd wrong", afsd_wrong)):
        record_property(f"{name} mAP@0.5", round(at(metrics, 0.5), 4))
    assert "sqrt(p * s), top 2 classes" in fused["scored_as"] and "afsd: p * s, top 1 class " in afsd["scored_as"]
    assert at(proposals, 0.5) > 0.6, proposals
    # the right class of each video: each class finds its videos' proposals, ranked as the proposals were
    # (top 1: the same detections relabelled; top 2 adds the other class's, which only its FPs)
    assert at(afsd, 0.5) > 0.6 and at(afsd, 0.5) >= at(proposals, 0.5) - 0.1, (afsd, proposals)
    assert at(fused, 0.5) > 0.6 and at(fused, 0.5) >= at(proposals, 0.5) - 0.1, (fused, proposals)
    # the wrong class: every detection a false positive
    assert at(afsd_wrong, 0.5) < 0.05, afsd_wrong

    # gaf's own video-level classifier on the same annotation and features writes the scores gaf eval reads
    recognizer = tmp_path / "cls.yaml"
    recognizer.write_text(json.dumps({
        "task": "recognition", "name": "cls", "work_dir": str(tmp_path / "cls"),
        "dataset": {"source": "annotations", "annotation_file": dataset["annotation_file"],
                    "feature_dir": dataset["feature_dir"], "train_subset": "validation", "test_subset": "test",
                    "input_dim": dataset["input_dim"], "feature_stride": dataset["feature_stride"],
                    "num_frames": dataset["num_frames"], "clip_len": dataset["max_seq_len"]},
        "model": {"backbone": "none", "gaf": {"enabled": True, "fusion": "attention", "attention_dim": 16,
                                              "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
                  "loss": {"att": 5.0}},
        "train": {"epochs": 30, "batch_size": 4, "lr": 3e-3, "warmup_epochs": 1, "seed": train_seed, "threads": 1},
        "eval": {"num_clips": 1, "topk": [1]}}))
    assert main(["train", str(recognizer), "--no-progress"]) == 0, capsys.readouterr().err
    own = evaluate("own", f"eval.video_scores={tmp_path / 'cls' / 'video_scores.json'}")
    record_property("own classifier top1", json.loads((tmp_path / "cls" / "metrics.json").read_text())["top1"])
    record_property("own scores fused mAP@0.5", round(at(own, 0.5), 4))
    assert "video_scores.json" in own["scored_as"] and at(own, 0.5) > 0.6, own

    # a video of the subset missing from the file, and the checkpoint against a changed config: one line, exit 2
    doc = json.loads(Path(right).read_text())
    first = sorted(truth)[0]
    del doc["results"][f"v_{first}"]
    partial = _write(tmp_path / "partial.json", doc)
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(run / "final.pt"), "--no-progress", "--no-report", "--work-dir",
                 str(tmp_path / "bad"), "--set", f"eval.video_scores={partial}"]) == 2
    err = capsys.readouterr().err
    assert partial in err and repr(first) in err and f"1 of the {len(truth)} evaluated videos" in err
    assert main(["eval", "--ckpt", str(run / "final.pt"), "--no-progress", "--no-report", "--work-dir",
                 str(tmp_path / "bad2"), "--set", "dataset.class_agnostic=false"]) == 2
    assert "trained class-agnostic" in capsys.readouterr().err
