"""Specification of gaf.data.annotations: JSON formats, the real benchmark files, order, validation.

THUMOS14 CSVs, class files and variants: tests/data/test_data_thumos14.py; UCF101 splits: tests/data/test_data_ucf101.py.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHARED, THUMOS_DIR
from gaf.data.annotations import (
    THUMOS14_CLASSES, AnnotationSet, AnnotationWarning, Segment, Video, normalize_subset, read_activitynet,
    read_bsn_anet, read_ground_truth, read_predictions, safe_video_id, write_activitynet, write_predictions)
from gaf.errors import AnnotationError

ANET_DIR = SHARED / "activitynet"
needs_data = pytest.mark.skipif(not (THUMOS_DIR / "thumos14.json").is_file(), reason="shared data not present")


def write(path: Path, doc) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def raises_naming(*parts: str):
    """pytest.raises(AnnotationError) whose message contains every one of ``parts``."""
    return pytest.raises(AnnotationError, match="(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts))


def gt_doc(annotations, *, vid="vid_a", duration=10.0, **extra) -> dict:
    return {"database": {vid: {"subset": "test", "duration": duration, "annotations": annotations, **extra}}}


def pred_doc(detections, *, vid="vid_a") -> dict:
    return {"version": "VERSION 1.3", "results": {vid: detections}, "external_data": {}}


# ---------------------------------------------------------------- the real files
@needs_data
def test_thumos14_json_has_412_videos_and_6365_segments_with_label_ids_in_alphabetical_order():
    with pytest.warns(AnnotationWarning, match="30 segment"):
        aset = read_activitynet(THUMOS_DIR / "thumos14.json")
    assert (len(aset.videos), aset.num_segments) == (412, 6365)
    assert aset.subsets() == {"Test": 212, "Validation": 200}
    assert aset.labels == list(THUMOS14_CLASSES)
    assert Counter(v.fps for v in aset.videos.values()) == {30.0: 381, 29.97: 18, 25.0: 11, 24.0: 2}
    first = aset.videos["video_test_0000004"]
    assert (first.duration, first.segments[0]) == (33.83, Segment(0.2, 1.1, "CricketBowling"))


@needs_data
def test_thumos_gt_json_reads_string_times_410_videos_6318_segments_without_durations():
    aset = read_ground_truth(THUMOS_DIR / "thumos_gt.json")
    assert (len(aset.videos), aset.num_segments, aset.subsets()) == (410, 6318, {"test": 210, "train": 200})
    assert all(v.duration is None for v in aset.videos.values())
    assert aset.videos["video_test_0000896"].segments[0] == Segment(18.6, 24.8, "HighJump")
    assert len(aset.subset("TRAIN").videos) == 200 and len(aset.subset("training").videos) == 200


@needs_data
def test_activitynet_bsn_file_joins_subsets_from_video_info():
    aset = read_ground_truth(ANET_DIR / "anet_anno_action.json")  # no warning: overruns < 1 s
    assert len(aset.videos) == 19228 and len(aset.labels) == 200
    assert aset.subsets() == {"training": 9649, "validation": 4728, "testing": 4851}
    assert read_bsn_anet(ANET_DIR / "anet_anno_action.json", subset="val").num_segments == 7293
    assert aset.subset("train").num_segments == 14859 and aset.subset("test").num_segments == 0
    assert aset.labels == sorted(line.strip() for line in (ANET_DIR / "action_name.txt").read_text().splitlines())


@needs_data
def test_sample_activitynet_submission_reads_as_predictions_in_file_order():
    labels = (ANET_DIR / "action_name.txt").read_text().split("\n")
    preds = read_predictions(ANET_DIR / "sample_detection_prediction.json", labels=[x for x in labels if x])
    assert (len(preds.videos), preds.num_segments) == (4926, 7654)
    raw = json.loads((ANET_DIR / "sample_detection_prediction.json").read_text())["results"]
    assert list(preds.videos) == list(raw)
    assert all(s.score is not None for v in preds.videos.values() for s in v.segments)
    assert "Mooping floor" in preds.labels


# ---------------------------------------------------------------- THUMOS14 variants
# ---------------------------------------------------------------- order, subsets, round trips
def test_predictions_keep_file_order_of_videos_and_detections(tmp_path):
    doc = {"results": {"zz": [{"segment": [3, 4], "label": "b", "score": 0.5},
                              {"segment": [1, 2], "label": "a", "score": 0.5}],
                       "aa": [{"segment": ["0", "0"], "label": "a", "score": "0.9"}]}}
    preds = read_predictions(write(tmp_path / "p.json", doc))
    assert list(preds.videos) == ["zz", "aa"] and preds.labels == ["a", "b"]
    assert preds.videos["zz"].segments == [Segment(3, 4, "b", 0.5), Segment(1, 2, "a", 0.5)]
    arrays = preds.to_arrays()
    assert arrays["video"].tolist() == [0, 0, 1] and arrays["label"].tolist() == [1, 0, 0]
    assert arrays["start"].tolist() == [3, 1, 0] and arrays["score"].tolist() == [0.5, 0.5, 0.9]


def test_subset_aliases_match_case_insensitively():
    assert normalize_subset(" Val ") == "validation" and normalize_subset("TRAIN") == "training"
    assert normalize_subset("testing") == normalize_subset("Test") == "testing"
    aset = AnnotationSet({"a": Video("a", subset="Validation"), "b": Video("b", subset="test")}, [])
    assert list(aset.subset("val").videos) == ["a"] and list(aset.subset("TESTING").videos) == ["b"]
    with raises_naming("<memory>", "'train'", "Validation, test"):
        aset.subset("train")


def test_predictions_round_trip_exactly(tmp_path):
    preds = AnnotationSet({"v2": Video("v2", [Segment(0.1 + 0.2, 1 / 3, "Jump", 0.7000000000000001),
                                              Segment(2.0, 2.0, "Throw", 1e-300)]),
                           "v1": Video("v1", [])}, ["Jump", "Throw"], "mem")
    path = write_predictions(preds, tmp_path / "out" / "predictions.json")
    back = read_predictions(path, labels=["Jump", "Throw"])
    assert back.videos == preds.videos and back.labels == preds.labels
    assert [p.name for p in path.parent.iterdir()] == ["predictions.json"]  # no temp file left behind


def test_database_round_trip_keeps_unused_labels_ambiguous_and_missing_fields(tmp_path):
    aset = AnnotationSet({"b": Video("b", [Segment(1.25, 2.5, "Throw")], 30.0, 29.97, "test", [(3.0, 4.0)]),
                          "a": Video("a", [], None, None, None)}, ["Jump", "Throw", "Run"], "mem", "my-variant")
    path = write_activitynet(aset, tmp_path / "annotations.json")
    raw = json.loads(path.read_text())
    ann = raw["database"]["b"]["annotations"][0]
    assert raw["version"] == "my-variant" and ann["label_id"] == 1
    assert ann["segment(frames)"] == [round(1.25 * 29.97, 6), round(2.5 * 29.97, 6)]
    back = read_activitynet(path)
    assert back.videos == aset.videos and back.labels == aset.labels and list(back.videos) == ["b", "a"]


def test_failed_write_leaves_the_old_file_untouched(tmp_path):
    path = write(tmp_path / "p.json", "old")
    bad = AnnotationSet({"v": Video("v", [Segment(0, 1, "a", math.nan)])}, ["a"])
    with raises_naming("p.json", "'v'", "score", "finite"):
        write_predictions(bad, path)
    no_score = AnnotationSet({"v": Video("v", [Segment(0, 1, "a")])}, ["a"])
    with raises_naming("p.json", "'v'", "detection 0", "score"):
        write_predictions(no_score, path)
    assert path.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_label_order_follows_label_id_else_sorted_names(tmp_path):
    anns = [{"segment": [0, 1], "label": "Zeta", "label_id": 0}, {"segment": [1, 2], "label": "Alpha", "label_id": 1}]
    assert read_activitynet(write(tmp_path / "a.json", gt_doc(anns))).labels == ["Zeta", "Alpha"]
    for a in anns:
        del a["label_id"]
    assert read_activitynet(write(tmp_path / "b.json", gt_doc(anns))).labels == ["Alpha", "Zeta"]


# ---------------------------------------------------------------- validation errors
def test_malformed_or_truncated_json_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "gt.json", '{"database": {\n  "v": {"annotations": [\n')
    with raises_naming("gt.json", "invalid JSON", "line 3, column"):
        read_activitynet(path)
    with raises_naming("p.json", "top level must be a JSON object"):
        read_predictions(write(tmp_path / "p.json", [1, 2]))
    with raises_naming("missing.json", "not found"):
        read_ground_truth(tmp_path / "missing.json")


def test_missing_database_or_results_says_which_reader_to_use(tmp_path):
    with raises_naming("p.json", "'database'", "read_predictions"):
        read_activitynet(write(tmp_path / "p.json", pred_doc([])))
    with raises_naming("g.json", "'results'", "read_ground_truth"):
        read_predictions(write(tmp_path / "g.json", gt_doc([])))
    with raises_naming("p.json", "predictions file"):
        read_ground_truth(tmp_path / "p.json")


@pytest.mark.parametrize("segment, field, problem", [
    ([5, 2], "annotations[0].segment", "end 2.0 < start 5.0"), ([-1, 2], "annotations[0].segment", "< 0"),
    (["abc", 2], "annotations[0].segment[0]", "not a number"), ([1, True], "annotations[0].segment[1]", "number"),
    ([1], "annotations[0].segment", "[start, end]"), ("1-2", "annotations[0].segment", "[start, end]"),
    ([1, "Infinity"], "annotations[0].segment[1]", "finite")])
def test_bad_ground_truth_segment_names_file_video_and_field(tmp_path, segment, field, problem):
    path = write(tmp_path / "gt.json", gt_doc([{"segment": segment, "label": "Jump"}], vid="clip_7"))
    with raises_naming("gt.json", "'clip_7'", field, problem):
        read_activitynet(path)


def test_nan_literal_in_json_is_rejected(tmp_path):
    path = write(tmp_path / "p.json", '{"results": {"v9": [{"segment": [0, NaN], "label": "a", "score": 1}]}}')
    with raises_naming("p.json", "'v9'", "detection 0: segment[1]", "finite"):
        read_predictions(path)


def test_segments_past_the_duration_warn_by_default_and_obey_the_overrun_policy(tmp_path):
    anns = [{"segment": [2, 10.9], "label": "a"}, {"segment": [9, 14], "label": "a"},
            {"segment": [12, 13], "label": "a"}]
    path = write(tmp_path / "gt.json", gt_doc(anns, vid="long_one", duration=10.0))
    with pytest.warns(AnnotationWarning, match=r"2 segment\(s\) in 1 video.*long_one"):
        assert read_activitynet(path).num_segments == 3
    with raises_naming("gt.json", "'long_one'", "segment 1", "duration 10.0"):
        read_activitynet(path, overrun="error")
    clipped = read_activitynet(path, overrun="clip").videos["long_one"].segments
    assert clipped == [Segment(2, 10, "a"), Segment(9, 10, "a")]  # within-tolerance end clamped too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_ground_truth(path, overrun="keep")


def test_missing_duration_is_an_error_only_when_required(tmp_path):
    path = write(tmp_path / "gt.json", {"database": {"v3": {"annotations": []}}})
    assert read_activitynet(path).videos["v3"].duration is None
    with raises_naming("gt.json", "'v3'", "duration", "missing"):
        read_activitynet(path, require_duration=True)
    with raises_naming("gt.json", "'v3'", "duration", "> 0"):
        read_activitynet(write(path, gt_doc([], vid="v3", duration=0)))


def test_duplicate_ids_are_found_even_when_strings_hold_colons(tmp_path):
    """read_predictions proves 'no duplicate keys' by counting ':' outside strings; colons and
    escaped colons inside labels, ids and the version must not fool it."""
    det = '{"segment": [0.5, 1.5], "label": "a:b\\u003a", "score": 0.9}'
    dup = '{"version": "v:1 \\u003a", "results": {"x:1": [' + det + '], "x:1": [' + det + ']}}'
    with raises_naming("p.json", "duplicate video id 'x:1'"):
        read_predictions(write(tmp_path / "p.json", dup))
    fine = '{"version": "v:1", "results": {"x:1": [' + det + '], "y\\u003a2": [' + det + ']}}'
    got = read_predictions(write(tmp_path / "q.json", fine))
    assert list(got.videos) == ["x:1", "y:2"] and got.videos["x:1"].segments[0].label == "a:b:"


def test_duplicate_keys_are_errors_naming_the_duplicate(tmp_path):
    dup_video = '{"database": {"v1": {"annotations": []}, "v1": {"annotations": []}}}'
    with raises_naming("gt.json", "duplicate video id 'v1'"):
        read_activitynet(write(tmp_path / "gt.json", dup_video))
    with raises_naming("p.json", "duplicate video id 'v2'"):
        read_predictions(write(tmp_path / "p.json", '{"results": {"v2": [], "v2": []}}'))
    dup_field = '{"results": {"v5": [{"segment": [0, 1], "label": "a", "score": 1, "score": 2}]}}'
    with raises_naming("p.json", "'v5'", "detection 0", "duplicate key 'score'"):
        read_predictions(write(tmp_path / "p.json", dup_field))


@pytest.mark.parametrize("vid", ["a/b", "a\\b", ".", "..", "..hidden", "", "a\x00b"])
def test_video_ids_that_would_escape_a_folder_are_rejected(tmp_path, vid):
    with raises_naming("gt.json", "unsafe video id"):
        read_activitynet(write(tmp_path / "gt.json", gt_doc([], vid=vid)))
    with raises_naming("p.json", "unsafe video id"):
        read_predictions(write(tmp_path / "p.json", pred_doc([], vid=vid)))
    with raises_naming("out.json", "unsafe video id"):
        write_predictions(AnnotationSet({vid: Video(vid)}, []), tmp_path / "out.json")
    assert safe_video_id("v_--0edUL8zmA.x", "here") == "v_--0edUL8zmA.x"
    with raises_naming("here", "string"):
        safe_video_id(7, "here")


def test_prediction_checks_reversed_segments_labels_and_scores(tmp_path):
    det = {"segment": [3, 3], "label": "Jump", "score": 0.2}
    assert read_predictions(write(tmp_path / "p.json", pred_doc([det]))).num_segments == 1  # zero length is fine
    # end < start, or before 0 s, is read as written: the evaluator scores it as the official code does
    odd = [[3, 2.5], [-5.0, -2.91], [3, -2.5], [-1, 4]]
    outside = read_predictions(write(tmp_path / "p.json", pred_doc([{**det, "segment": s} for s in odd])))
    assert [[s.start, s.end] for v in outside.videos.values() for s in v.segments] == odd
    back = read_predictions(write_predictions(outside, tmp_path / "back.json"))  # written back as read
    assert [[s.start, s.end] for v in back.videos.values() for s in v.segments] == odd
    cases = [({"segment": [-2e9, 1]}, "segment", "start -2000000000.0 s is before -1e+09 s"),
             ({"label": "Fly"}, "label", "unknown label 'Fly'"),
             ({"score": None}, "score", "number"), ({"score": True}, "score", "number"),
             ({"label": 3}, "label", "class name")]
    for change, field, problem in cases:
        path = write(tmp_path / "p.json", pred_doc([det, {**det, **change}], vid="vid_x"))
        with raises_naming("p.json", "'vid_x'", f"detection 1: {field}", problem):
            read_predictions(path, labels=["Jump"])
    path = write(tmp_path / "p.json", pred_doc([{"segment": [0, 1], "label": "Jump"}], vid="vid_x"))
    with raises_naming("p.json", "'vid_x'", "score: missing"):
        read_predictions(path)


@pytest.mark.parametrize("anns, problem", [
    ([("a", 0), ("a", 1)], "annotations[1].label_id: 'a' has id 1 here but 0"),
    ([("a", 0), ("b", 0)], "annotations[1].label_id: 0 is 'b' here but 'a'"),
    ([("a", 0), ("b", None)], "label_id: missing"), ([("a", 0), ("b", 2)], "no annotation has id 1"),
    ([("a", -1)], "integer >= 0"), ([("a", 1.5)], "integer >= 0")])
def test_inconsistent_label_ids_are_errors(tmp_path, anns, problem):
    doc = gt_doc([{"segment": [0, 1], "label": name, **({} if lid is None else {"label_id": lid})}
                  for name, lid in anns], vid="v8")
    with raises_naming("gt.json", problem):
        read_activitynet(write(tmp_path / "gt.json", doc))


def test_modules_import_no_torch_or_numpy_and_reexport_moved_names_in_any_import_order():
    for first in ("gaf.data.annotations", "gaf.data.thumos14", "gaf.data.ucf101"):
        code = (f"import sys, {first}; import gaf.data.thumos14 as t, gaf.data.ucf101 as u; "
                "from gaf.data.annotations import thumos14_ground_truth, read_thumos_csv, read_ucf101_split; "
                "assert thumos14_ground_truth is t.thumos14_ground_truth and read_ucf101_split is u.read_ucf101_split; "
                "sys.exit('torch' in sys.modules or 'numpy' in sys.modules)")
        assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0, first


# ---------------------------------------------------------------- any input: success or AnnotationError
_leaf = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True, allow_infinity=True)
         | st.text(max_size=6) | st.sampled_from(["1.5", "-2", "nan", "Ambiguous", "..", "a/b"]))
_key = st.sampled_from(["database", "results", "annotations", "segment", "label", "label_id", "score", "duration",
                        "fps", "subset", "labels", "ambiguous", "v", "", ".."]) | st.text(max_size=4)
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key, inner, max_size=4),
                     max_leaves=16)
_number = st.integers(-5, 50) | st.floats(-5, 50) | st.sampled_from(["3", "x", None, True])
_ann = st.fixed_dictionaries({}, optional={"segment": st.lists(_number, max_size=3) | _json,
                                           "label": st.sampled_from(["a", "b", "Ambiguous", ""]) | _json,
                                           "label_id": st.integers(-1, 3) | _json, "score": _number})
_entry = st.fixed_dictionaries({}, optional={"annotations": st.lists(_ann, max_size=3) | _json, "duration": _number,
                                             "fps": _number, "subset": _json, "ambiguous": _json,
                                             "duration_second": _number})
_docs = (_json | st.fixed_dictionaries({"database": st.dictionaries(_key, _entry | _json, max_size=3)},
                                       optional={"labels": _json})
         | st.fixed_dictionaries({"results": st.dictionaries(_key, st.lists(_ann, max_size=3) | _json, max_size=3)})
         | st.dictionaries(_key, _entry, max_size=3))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_docs, truncate=st.integers(0, 3))
def test_any_json_input_reads_or_raises_annotation_error(scratch, doc, truncate):
    text = json.dumps(doc)
    path = write(scratch / "doc.json", text[: len(text) - truncate] if truncate else text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        for read in (read_activitynet, read_predictions, read_ground_truth,
                     lambda p: read_predictions(p, labels=["a"]), lambda p: read_activitynet(p, subset="test")):
            try:
                out = read(path)
            except AnnotationError:
                continue
            assert isinstance(out, AnnotationSet)
            assert all(0 <= s.start <= s.end for v in out.videos.values() for s in v.segments)
