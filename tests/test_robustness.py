"""Hostile inputs: gaf answers every bad input with a GafError naming the file, video and field, or a documented
behaviour; never a raw traceback, a hang or a silently wrong number.

docs/robustness.md lists every bad input tried, what gaf does, and the test covering it. This file holds the
tests the other files did not have, and the property-based ones: the annotation readers fed arbitrary JSON-like
documents, mutations of valid documents and arbitrary bytes; the evaluator fed arbitrary segment values and
scores. Times are in seconds throughout.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import re
import stat
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import VIDEOS_DIR, write_pulse_features
from gaf.cli import main
from gaf.data.annotations import (
    MAX_TIME_S, AnnotationSet, AnnotationWarning, Segment, Video, read_activitynet, read_bsn_anet,
    read_ground_truth, read_predictions, read_thumos_class_files, read_thumos_csv, safe_video_id,
    write_activitynet, write_predictions)
from gaf.data.features import FeatureDataset
from gaf.errors import AnnotationError, DataError, GafError, OutputError
from gaf.io import prepare_output_dir
from gaf.metrics.detection import EvaluationWarning, evaluate_detections
from conftest import TWO, make
from nonroot import gaf_as_nobody, give_to_nobody, nobody_folder

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLIP = VIDEOS_DIR / "v_Basketball_g01_c01.avi"  # 4.7 s, 141 frames


def write(path: Path, doc: Any) -> Path:
    """``doc`` as JSON text (NaN / Infinity literals allowed, as Python writes them), or text / bytes as given."""
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    else:
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def naming(*parts: str) -> str:
    """A regex matching a message that holds every one of ``parts`` (any order)."""
    return "(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts)


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn``'s result, or the GafError it raised, which must carry a message.

    Any other exception propagates: that is the failure these tests look for.
    """
    try:
        return fn(*args, **kwargs)
    except GafError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} raised with an empty message"
        return exc


def check_set(out: AnnotationSet, *, scored: bool) -> None:
    """What a reader promises of every set it returns (module docstring of gaf.data.annotations)."""
    assert isinstance(out, AnnotationSet)
    assert all(isinstance(name, str) and name.strip() for name in out.labels)
    for vid, video in out.videos.items():
        assert safe_video_id(vid, "check") == vid == video.video_id
        for value in (video.duration, video.fps):
            assert value is None or (type(value) is float and 0 < value <= MAX_TIME_S)
        for seg in video.segments:
            assert type(seg.start) is float and type(seg.end) is float
            if scored:  # a reversed or negative prediction is read as written: scored as the official code does
                assert -MAX_TIME_S <= min(seg.start, seg.end) <= max(seg.start, seg.end) <= MAX_TIME_S
            else:
                assert 0.0 <= seg.start <= seg.end <= MAX_TIME_S
            assert isinstance(seg.label, str) and seg.label.strip()
            assert (type(seg.score) is float and math.isfinite(seg.score)) if scored else seg.score is None
        assert all(0.0 <= a <= b <= MAX_TIME_S for a, b in video.ambiguous)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("robustness")


# ================================================================ property-based: annotation readers
_leaf = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.just(10**400)
         | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
         | st.sampled_from(["1.5", " 2 ", "-2", "nan", "inf", "1e999", "1_0", "\u0661\u0662", "Ambiguous", "..",
                            "a/b", "\ud800", "x\udfff", "", " ", "1e12"]))
_key = st.sampled_from(["database", "results", "annotations", "segment", "label", "label_id", "score", "duration",
                        "duration_second", "fps", "subset", "labels", "ambiguous", "v1", "", "..", "\ud800"]) \
    | st.text(max_size=4)
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key, inner, max_size=4),
                     max_leaves=20)
_LABELS = ["Jump", "Throw"]
_vids = st.lists(st.sampled_from(["v1", "video_test_0000004", "v_--0edUL8zmA", "x:1", "ümlaut"]), min_size=1,
                 max_size=3, unique=True)


@st.composite
def _interval(draw: st.DrawFn, upper: float) -> list[float]:
    start = draw(st.floats(0, upper))
    return [start, draw(st.floats(start, upper))]


@st.composite
def gt_docs(draw: st.DrawFn) -> dict:
    """A valid ActivityNet / ActionFormer ground-truth document (database, labels, label_id, fps, duration)."""
    database = {}
    for vid in draw(_vids):
        duration = draw(st.floats(1.0, 1000.0))
        anns = []
        for _ in range(draw(st.integers(0, 3))):
            label = draw(st.sampled_from(_LABELS))
            anns.append({"segment": draw(_interval(duration)), "label": label, "label_id": _LABELS.index(label)})
        database[vid] = {"subset": draw(st.sampled_from(["validation", "test"])), "duration": duration,
                         "fps": draw(st.sampled_from([25.0, 30, 29.97])), "annotations": anns}
    return {"version": "robustness", "labels": list(_LABELS), "database": database}


@st.composite
def pred_docs(draw: st.DrawFn) -> dict:
    """A valid ActivityNet results document."""
    results = {vid: [{"segment": draw(_interval(500.0)), "label": draw(st.sampled_from(_LABELS)),
                      "score": draw(st.floats(0, 1))} for _ in range(draw(st.integers(0, 3)))]
               for vid in draw(_vids)}
    return {"version": "VERSION 1.3", "results": results, "external_data": {"used": False}}


@st.composite
def bsn_docs(draw: st.DrawFn) -> dict:
    """A valid BSN ``anet_anno_action.json`` document."""
    out = {}
    for vid in draw(_vids):
        duration = draw(st.floats(1.0, 1000.0))
        out[vid] = {"duration_second": duration, "duration_frame": 100, "annotations": [
            {"segment": draw(_interval(duration)), "label": draw(st.sampled_from(_LABELS))}
            for _ in range(draw(st.integers(0, 3)))]}
    return out


def _positions(doc: Any) -> list[tuple[Any, Any]]:
    """Every ``(container, key or index)`` in a JSON document."""
    out, stack = [], [doc]
    while stack:
        x = stack.pop()
        items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
        for k, v in items:
            out.append((x, k))
            stack.append(v)
    return out


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy) -> Any:
    """``base``'s document with 1-3 mutations: a key or item dropped, a value replaced by any JSON value, or
    by the same value in another type (a string, a list, an object, null, a bool, a huge or NaN number)."""
    doc = copy.deepcopy(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        places = _positions(doc)
        if not places:
            break
        parent, key = places[draw(st.integers(0, len(places) - 1))]
        op = draw(st.sampled_from(["drop", "replace", "retype"]))
        if op == "drop":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(_json)
        else:
            v = parent[key]
            parent[key] = draw(st.sampled_from([str(v), [v], {"value": v}, None, True, -1, 0, 1e308, 10**400,
                                                math.nan, math.inf, "", [], {}]))
    return doc


_READERS: list[tuple[str, Callable[[Path], AnnotationSet], bool]] = [
    ("read_ground_truth", read_ground_truth, False),
    ("read_activitynet", read_activitynet, False),
    ("read_activitynet(subset, require_duration, overrun=error)",
     lambda p: read_activitynet(p, subset="test", require_duration=True, overrun="error"), False),
    ("read_activitynet(overrun=clip)", lambda p: read_activitynet(p, overrun="clip"), False),
    ("read_bsn_anet", read_bsn_anet, False),
    ("read_predictions", read_predictions, True),
    ("read_predictions(labels)", lambda p: read_predictions(p, labels=list(_LABELS)), True),
]


def _read_everything(path: Path) -> None:
    """Every reader on ``path``: a valid set (checked, and written back without error) or a GafError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        for _, read, scored in _READERS:
            out = outcome(read, path)
            if isinstance(out, GafError):
                continue
            check_set(out, scored=scored)
            back = path.with_suffix(".back.json")
            if scored:
                write_predictions(out, back)
                again = read_predictions(back)
            else:
                write_activitynet(out, back)
                again = read_activitynet(back, overrun="keep")
            assert again.num_segments == out.num_segments and list(again.videos) == list(out.videos)


@FAST
@given(doc=_json)
def test_readers_on_arbitrary_json_documents_return_a_valid_set_or_a_gaf_error(scratch: Path, doc: Any) -> None:
    _read_everything(write(scratch / "any.json", json.dumps(doc)))


@FAST
@given(doc=mutated(gt_docs()) | mutated(pred_docs()) | mutated(bsn_docs()))
def test_readers_on_mutated_valid_documents_return_a_valid_set_or_a_gaf_error(scratch: Path, doc: Any) -> None:
    _read_everything(write(scratch / "mutated.json", json.dumps(doc)))


@st.composite
def _damaged_bytes(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or a valid document's bytes truncated or with a few bytes overwritten."""
    kind = draw(st.sampled_from(["random", "truncated", "flipped"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    data = bytearray(json.dumps(draw(gt_docs() | pred_docs() | bsn_docs())).encode())
    if kind == "truncated":
        return bytes(data[: draw(st.integers(0, max(len(data) - 1, 0)))])
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@FAST
@given(data=_damaged_bytes())
def test_readers_on_arbitrary_bytes_return_a_valid_set_or_a_gaf_error(scratch: Path, data: bytes) -> None:
    _read_everything(write(scratch / "bytes.json", data))
    csv_path = write(scratch / "bytes.csv", data)
    for read in (read_ground_truth, read_thumos_csv):
        out = outcome(read, csv_path)
        if not isinstance(out, GafError):
            check_set(out, scored=False)
    folder = scratch / "classes"
    folder.mkdir(exist_ok=True)
    write(folder / "Jump_test.txt", data)
    out = outcome(read_thumos_class_files, folder, "test")
    if not isinstance(out, GafError):
        check_set(out, scored=False)


# ================================================================ property-based: the evaluator
_time = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**20, 10**20)
         | st.sampled_from([10**400, -0.0, 5e-324, MAX_TIME_S, MAX_TIME_S * (1 + 1e-15), -MAX_TIME_S, 1e308,
                            -1e308, 1.7976931348623157e308, None, "3", b"1", True]))
_score = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([None, "0.5", 10**400, 1e308, -0.0])
_seg_label = st.sampled_from(["a", "b", "c"]) | st.just(["a"])


@st.composite
def _annotation_sets(draw: st.DrawFn, scored: bool) -> AnnotationSet:
    videos = {}
    for vid in draw(st.lists(st.sampled_from(["v1", "v2", "v3"]), min_size=1, max_size=3, unique=True)):
        segments = []
        for _ in range(draw(st.integers(0, 4))):
            a, b = draw(_time), draw(_time)
            if draw(st.booleans()):  # keep many segments ordered, so the evaluation gets past its checks
                with contextlib.suppress(TypeError):
                    a, b = min(a, b), max(a, b)
            segments.append(Segment(a, b, draw(_seg_label), draw(_score) if scored else None))
        videos[vid] = Video(vid, segments)
    return AnnotationSet(videos, ["a", "b"], "pred.json" if scored else "gt.json")


def _check_result(result: Any) -> None:
    if isinstance(result, GafError):
        return
    values = list(result.mAP) + [result.average_mAP] + [x for aps in result.per_class_ap.values() for x in aps]
    assert all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in values), values


@FAST
@given(gt=_annotation_sets(False), pred=_annotation_sets(True),
       tious=st.sampled_from([(0.5,), (0.3, 0.5, 0.7), (0.1, 1.0)]), rules=st.sampled_from(["activitynet", "thumos14"]))
def test_evaluator_on_arbitrary_segments_and_scores_returns_aps_in_0_1_or_a_gaf_error(gt, pred, tious, rules):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        _check_result(outcome(evaluate_detections, gt, pred, tious, rules=rules))


@FAST
@given(segments=st.lists(st.tuples(st.floats(allow_nan=False, allow_infinity=False),
                                   st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["a", "b"]),
                                   st.sampled_from(["v1", "v2"])), min_size=1, max_size=6),
       rules=st.sampled_from(["activitynet", "thumos14"]), data=st.data())
def test_predictions_equal_to_the_ground_truth_score_one_or_are_refused(segments, rules, data):
    """No silently wrong number at any magnitude: a perfect prediction scores AP 1 or is refused (|t| > 1e9 s)."""
    videos: dict[str, list[tuple[float, float, str]]] = {"v1": [], "v2": []}
    for a, b, label, vid in segments:
        if a != b:  # zero-length segments have tIoU 0, even with themselves
            videos[vid].append((min(a, b), max(a, b), label))
    if not any(videos.values()):
        return
    scores = iter(data.draw(st.lists(st.floats(-1e300, 1e300), min_size=len(segments), max_size=len(segments),
                                     unique=True)))
    gt = AnnotationSet({v: Video(v, [Segment(s, e, lab) for s, e, lab in segs]) for v, segs in videos.items()},
                       ["a", "b"], "gt.json")
    pred = AnnotationSet({v: Video(v, [Segment(s, e, lab, next(scores)) for s, e, lab in segs])
                          for v, segs in videos.items()}, ["a", "b"], "pred.json")
    result = outcome(evaluate_detections, gt, pred, (0.5, 0.95), rules=rules)
    in_range = all(abs(x) <= MAX_TIME_S for segs in videos.values() for s, e, _ in segs for x in (s, e))
    if in_range:
        assert not isinstance(result, GafError), result
        assert result.mAP == [1.0, 1.0]
    else:
        assert isinstance(result, AnnotationError) and "1e+09" in str(result)


# ================================================================ gaf score on mutated files
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gt=gt_docs() | mutated(gt_docs()) | mutated(bsn_docs()), pred=pred_docs() | mutated(pred_docs()),
       per_class=st.booleans())
def test_gaf_score_exits_0_1_or_2_on_mutated_files_and_prints_strict_utf8(scratch: Path, gt, pred, per_class):
    gt_path = write(scratch / "score_gt.json", json.dumps(gt))
    pred_path = write(scratch / "score_pred.json", json.dumps(pred))
    out_json = scratch / "scores.json"
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, like a real UTF-8 terminal
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    args = ["score", str(gt_path), str(pred_path), "--json", str(out_json)] + (["--per-class"] if per_class else [])
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
        out.flush()
        err.flush()
    assert code in (0, 1, 2)
    if code == 2:
        message = err.buffer.getvalue().decode()
        assert message.startswith("gaf score: error: ") and len(message.strip().splitlines()) == 1


# ================================================================ annotation files: one bad input each
def _gt(annotations: Any = (), **entry: Any) -> dict:
    video = {"subset": "test", "duration": 10.0, "annotations": list(annotations) if isinstance(annotations, tuple)
             else annotations, **entry}
    return {"database": {"clip_7": video}}


def _pred(detections: Any) -> dict:
    return {"version": "VERSION 1.3", "results": {"clip_7": detections}}


_ANN = {"segment": [1.0, 2.0], "label": "Jump"}
_DET = {"segment": [1.0, 2.0], "label": "Jump", "score": 0.5}
BAD_DOCUMENTS = {
    # id: (reader, document, parts of the message)
    "truncated-json": ("gt", json.dumps(_gt([_ANN]))[:-7], ["invalid JSON at line 1, column"]),
    "empty-file": ("gt", "", ["invalid JSON", "line 1, column 1"]),
    "not-utf8": ("gt", b'{"database": {"\xff": {}}}', ["not UTF-8 text"]),
    "deeply-nested": ("gt", "[" * 100_000 + "]" * 100_000, ["invalid JSON", "recursion"]),
    "integer-over-4300-digits": ("gt", '{"database": {"v": {"duration": ' + "9" * 5000 + "}}}", ["invalid JSON"]),
    "database-is-a-list": ("gt", {"database": [1]}, ["database", "must be a JSON object", "list"]),
    "video-entry-is-a-string": ("gt", {"database": {"clip_7": "x"}}, ["'clip_7'", "video entry", "str"]),
    "annotations-not-a-list": ("gt", _gt({"segment": [1, 2]}), ["'clip_7'", "annotations", "expected a list"]),
    "annotation-is-a-number": ("gt", _gt([3]), ["'clip_7'", "annotations[0]", "JSON object"]),
    "segment-as-string": ("gt", _gt([{"segment": "1-2", "label": "Jump"}]), ["'clip_7'", "segment", "[start, end]"]),
    "segment-missing": ("gt", _gt([{"label": "Jump"}]), ["'clip_7'", "annotations[0].segment", "missing"]),
    "segment-three-numbers": ("gt", _gt([{"segment": [1, 2, 3], "label": "Jump"}]), ["'clip_7'", "[start, end]"]),
    "segment-numeric-string-with-underscore": ("gt", _gt([{"segment": ["1_0", "20"], "label": "Jump"}]),
                                               ["'clip_7'", "segment[0]", "not a number", "'1_0'"]),
    "segment-non-ascii-digits": ("gt", _gt([{"segment": ["\u0661", "2"], "label": "Jump"}]),
                                 ["'clip_7'", "segment[0]", "not a number"]),
    "label-is-a-list": ("gt", _gt([{"segment": [1, 2], "label": ["Jump"]}]), ["'clip_7'", "label", "class name"]),
    "label-empty": ("gt", _gt([{"segment": [1, 2], "label": " "}]), ["'clip_7'", "label", "class name"]),
    "duration-as-list": ("gt", _gt(duration=[10]), ["'clip_7'", "duration", "expected a number", "[10]"]),
    "duration-as-bool": ("gt", _gt(duration=True), ["'clip_7'", "duration", "expected a number"]),
    "duration-zero": ("gt", _gt(duration=0), ["'clip_7'", "duration", "> 0"]),
    "duration-1e12": ("gt", _gt(duration=1e12), ["'clip_7'", "duration", "<= 1e+09"]),
    "duration-1e308": ("gt", _gt(duration=1e308), ["'clip_7'", "duration", "<= 1e+09"]),
    "duration-1e400-literal": ("gt", '{"database": {"clip_7": {"duration": 1e400}}}',
                               ["'clip_7'", "duration", "finite"]),
    "duration-Infinity-literal": ("gt", '{"database": {"clip_7": {"duration": Infinity}}}',
                                  ["'clip_7'", "duration", "finite"]),
    "duration-inf-string": ("gt", _gt(duration="inf"), ["'clip_7'", "duration", "finite"]),
    "duration-huge-integer": ("gt", _gt(duration=10**400), ["'clip_7'", "duration", "number too large"]),
    "fps-1e300": ("gt", _gt(fps=1e300), ["'clip_7'", "fps", "<= 1e+09"]),
    "segment-end-1e12": ("gt", _gt([{"segment": [1, 1e12], "label": "Jump"}], duration=None),
                         ["'clip_7'", "segment", "beyond 1e+09 s"]),
    "subset-is-a-number": ("gt", _gt(subset=3), ["'clip_7'", "subset", "expected a string"]),
    "labels-not-distinct": ("gt", {**_gt([_ANN]), "labels": ["Jump", "Jump"]}, ["labels", "distinct"]),
    "label-not-in-labels": ("gt", {**_gt([_ANN]), "labels": ["Throw"]}, ["annotations[0].label", "'labels' list"]),
    "lone-surrogate-in-label": ("gt", ('{"database": {"clip_7": {"annotations": [{"segment": [1, 2], '
                                       '"label": "\\ud800"}]}}}'),
                                ["['clip_7']['annotations'][0]['label']", "lone UTF-16 surrogate"]),
    "lone-surrogate-video-id": ("gt", '{"database": {"a\\udfff": {}}}', ["key", "database", "lone UTF-16 surrogate"]),
    "unknown-layout": ("gt", {"clip_7": {"duration_second": 5.0}, "v2": {"annotations": []}},
                       ["unknown annotation layout", "'database'", "duration_second"]),
    "bsn-duration-second-missing": ("bsn", {"clip_7": {"duration_second": 5.0}, "v2": {"annotations": []}},
                                    ["'v2'", "duration_second: missing"]),
    "bsn-duration-second-string": ("bsn", {"clip_7": {"duration_second": "long"}},
                                   ["'clip_7'", "duration_second", "not a number"]),
    "bsn-annotations-not-a-list": ("bsn", {"clip_7": {"duration_second": 5.0, "annotations": 7}},
                                   ["'clip_7'", "annotations", "expected a list"]),
    "pred-truncated-json": ("pred", json.dumps(_pred([_DET]))[:-3], ["invalid JSON"]),
    # a list of results is ActionFormer's row format (issue 11): rows without its fields are named
    "pred-results-is-a-list": ("pred", {"results": [_DET]}, ["results[0]", "missing 'video-id'", "ActionFormer"]),
    "pred-detections-not-a-list": ("pred", _pred(_DET), ["'clip_7'", "expected a list of detections", "dict"]),
    "pred-detection-is-a-string": ("pred", _pred(["x"]), ["'clip_7'", "detection 0", "JSON object"]),
    "pred-segment-as-string": ("pred", _pred([{**_DET, "segment": "1 2"}]), ["'clip_7'", "detection 0: segment"]),
    "pred-segment-before-minus-1e9": ("pred", _pred([{**_DET, "segment": [-2e9, 1]}]),
                                      ["'clip_7'", "start -2000000000.0 s is before -1e+09 s"]),
    "pred-segment-end-1e308": ("pred", _pred([{**_DET, "segment": [0, 1e308]}]), ["'clip_7'", "beyond 1e+09 s"]),
    "pred-score-NaN-literal": ("pred", '{"results": {"clip_7": [{"segment": [0, 1], "label": "a", "score": NaN}]}}',
                               ["'clip_7'", "detection 0: score", "finite"]),
    "pred-score-nan-string": ("pred", _pred([{**_DET, "score": "nan"}]), ["'clip_7'", "score", "finite"]),
    "pred-score-as-list": ("pred", _pred([{**_DET, "score": [0.5]}]), ["'clip_7'", "score", "expected a number"]),
    "pred-score-missing": ("pred", _pred([{"segment": [0, 1], "label": "Jump"}]), ["'clip_7'", "score: missing"]),
    "pred-label-is-a-number": ("pred", _pred([{**_DET, "label": 4}]), ["'clip_7'", "label", "class name"]),
    "pred-unsafe-video-id": ("pred", {"results": {"../etc": []}}, ["'../etc'", "unsafe video id"]),
    "pred-duplicate-video-id": ("pred", '{"results": {"clip_7": [], "clip_7": []}}', ["duplicate video id 'clip_7'"]),
    "pred-lone-surrogate-label": ("pred", ('{"results": {"clip_7": [{"segment": [0, 1], "label": "\\ud83d", '
                                           '"score": 1}]}}'), ["lone UTF-16 surrogate", "['clip_7'][0]['label']"]),
}
_READ = {"gt": read_ground_truth, "bsn": read_bsn_anet, "pred": read_predictions}


@pytest.mark.parametrize("case", list(BAD_DOCUMENTS))
def test_bad_annotation_documents_raise_annotation_error_naming_file_video_and_field(tmp_path: Path, case: str):
    reader, doc, parts = BAD_DOCUMENTS[case]
    path = write(tmp_path / "bad.json", doc)
    with pytest.raises(AnnotationError, match=naming(str(path), *parts)):
        _READ[reader](path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_device_is_refused_instead_of_being_read_forever() -> None:
    for read in (read_ground_truth, read_predictions, read_thumos_csv):
        with pytest.raises(AnnotationError, match=naming("/dev/zero", "is a device")):
            read("/dev/zero")


def test_a_paired_surrogate_escape_is_an_ordinary_character(tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", '{"results": {"clip_7": [{"segment": [0, 1], "label": "\\ud83d\\ude00", '
                                      '"score": 1}]}}')
    assert read_predictions(path).labels == ["\U0001F600"]


def test_gaf_score_refuses_a_lone_surrogate_label_instead_of_crashing_on_print(tmp_path: Path, capsys) -> None:
    text = '{"database": {"v": {"subset": "test", "annotations": [{"segment": [0, 1], "label": "\\ud800"}]}}}'
    gt = write(tmp_path / "gt.json", text)
    pred = write(tmp_path / "pred.json", {"results": {"v": [{"segment": [0, 1], "label": "a", "score": 1.0}]}})
    assert main(["score", str(gt), str(pred), "--per-class"]) == 2
    err = capsys.readouterr().err
    assert "gt.json" in err and "lone UTF-16 surrogate" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content, message", [
    ('{"results": {"t1": [{"segment": [0, 1], "label": "a", "score": 0.5}', "invalid JSON"),
    ('{"results": []}', "'results' holds no video"),  # an empty ActionFormer row list
    ('{"results": {"t1": [{"segment": "0-1", "label": "a", "score": 0.5}]}}', "segment"),
    ('{"results": {"t1": [{"segment": [0, 1], "label": "a", "score": NaN}]}}', "finite"),
    ('{"results": {"t1": [{"segment": [0, 1e300], "label": "a", "score": 0.5}]}}', "beyond 1e+09 s"),
    ('{"results": {"../t1": []}}', "unsafe video id"),
], ids=["truncated", "results-list", "segment-string", "score-NaN", "end-1e300", "unsafe-id"])
def test_gaf_score_exits_2_with_one_line_for_bad_predictions(tmp_path: Path, capsys, content: str, message: str):
    gt = write(tmp_path / "gt.json", {"database": {"t1": {"subset": "test", "duration": 60.0, "annotations": [
        {"segment": [0, 10], "label": "a"}]}}})
    bad = write(tmp_path / "bad.json", content)
    assert main(["score", str(gt), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gaf score: error:") and str(bad) in err and message in err
    assert len(err.strip().splitlines()) == 1


# ================================================================ the evaluator on in-memory sets
_GT_SEGMENT = Segment(0.0, 10.0, "a")


def _sets(pred_segment: Segment, gt_segment: Segment = _GT_SEGMENT) -> tuple[AnnotationSet, ...]:
    gt = AnnotationSet({"v": Video("v", [gt_segment])}, ["a"], "gt.json")
    return gt, AnnotationSet({"v": Video("v", [pred_segment])}, ["a"], "pred.json")


@pytest.mark.parametrize("segment, parts", [
    (Segment(0.0, 10.0, "a", math.nan), ["pred.json", "'v'", "score", "finite", "nan"]),
    (Segment(0.0, 10.0, "a", math.inf), ["pred.json", "'v'", "score", "finite"]),
    (Segment(0.0, 10.0, "a", "0.9"), ["pred.json", "'v'", "score", "finite"]),
    (Segment(0.0, math.nan, "a", 0.9), ["pred.json", "'v'", "segment", "not finite"]),
    (Segment(-math.inf, 1.0, "a", 0.9), ["pred.json", "'v'", "segment", "not finite"]),
    (Segment(10**400, 10**401, "a", 0.9), ["pred.json", "'v'", "segment", "not finite"]),
    (Segment("0", 10.0, "a", 0.9), ["pred.json", "'v'", "segment", "not numbers"]),
    (Segment(np.array([0.0, 1.0]), 10.0, "a", 0.9), ["pred.json", "'v'", "segment", "not numbers"]),
    (Segment(0.0, 2e9, "a", 0.9), ["pred.json", "'v'", "segment", "beyond ±1e+09 s"]),
    (Segment(-1e308, 1e308, "a", 0.9), ["pred.json", "'v'", "segment", "beyond ±1e+09 s"]),
    (Segment(0.0, 10.0, ["a"], 0.9), ["pred.json", "'v'", "prediction 0: label", "class name"]),
], ids=["score-nan", "score-inf", "score-string", "end-nan", "start-minus-inf", "int-beyond-float", "start-string",
        "start-array", "end-2e9", "span-2e308", "label-unhashable"])
def test_evaluator_refuses_bad_predicted_values_naming_file_and_video(segment: Segment, parts: list[str]) -> None:
    with pytest.raises(AnnotationError, match=naming(*parts)):
        evaluate_detections(*_sets(segment))


@pytest.mark.parametrize("gt_segment, parts", [
    (Segment(0.0, 1e12, "a"), ["gt.json", "'v'", "ground truth 0", "beyond ±1e+09 s"]),
    (Segment(0.0, math.inf, "a"), ["gt.json", "'v'", "ground truth 0", "not finite"]),
    (Segment(0.0, 10.0, {"a": 1}), ["gt.json", "'v'", "ground truth 0: label", "class name"]),
], ids=["end-1e12", "end-inf", "label-unhashable"])
def test_evaluator_refuses_bad_ground_truth_values(gt_segment: Segment, parts: list[str]) -> None:
    with pytest.raises(AnnotationError, match=naming(*parts)):
        evaluate_detections(*_sets(Segment(0.0, 10.0, "a", 0.5), gt_segment))


def test_huge_but_allowed_times_still_score_a_perfect_prediction_one() -> None:
    """Before the 1e9 s bound, [0, 1.7e308] matched itself with tIoU inf/inf = NaN: AP 0, silently."""
    for start, end in ((0.0, MAX_TIME_S), (-MAX_TIME_S, MAX_TIME_S), (MAX_TIME_S - 1e-6, MAX_TIME_S)):
        for rules in ("activitynet", "thumos14"):
            result = evaluate_detections(*_sets(Segment(start, end, "a", 0.5), Segment(start, end, "a")),
                                         (0.5, 0.95), rules=rules)
            assert result.mAP == [1.0, 1.0], (start, end, rules)


# ================================================================ feature files and the feature dataset

@pytest.mark.parametrize("array, pattern", [
    (np.zeros(10, np.float32), r"2-D \(T, C\).*shape \(10,\)"),
    (np.zeros((10, 6), object), r"floating-point.*dtype object.*never unpickles"),
    (np.zeros((10, 6), np.complex64), r"floating-point.*complex64"),
    (np.zeros((10, 6), [("x", "<f4")]), r"floating-point"),
    (np.zeros((10, 6), bool), r"floating-point.*bool"),
], ids=["1-D", "object", "complex64", "structured", "bool"])
def test_more_malformed_feature_files_are_named(tmp_path: Path, array: np.ndarray, pattern: str) -> None:
    cfg = make(tmp_path, dict(TWO, v_c={"subset": "Test", "array": array, "fps": 25.0}))
    with pytest.raises(DataError, match=pattern) as err:
        FeatureDataset(cfg, "test", training=False)
    assert str(cfg.feature_path("v_c")) in str(err.value) and "'v_c'" in str(err.value)


def test_float64_features_beyond_float32_range_are_refused_when_loaded(tmp_path: Path) -> None:
    big = np.zeros((25, 6), np.float64)
    big[7, 1] = 1e300  # finite as float64, inf once cast to the model's float32
    ds = FeatureDataset(make(tmp_path, dict(TWO, v_b={"subset": "Test", "array": big, "fps": 25.0})), "test",
                        training=False)
    with pytest.raises(DataError, match=r"v_b\.npy.*'v_b'.*float32.*step 7"):
        ds[0]
    with pytest.raises(DataError, match=r"v_b\.npy.*'v_b'.*float32.*step 7"):
        ds.check(progress=False)


def _one_video(**video: Any) -> dict[str, dict]:
    return {"v": {"subset": "Test", "steps": 40, **video}}


@pytest.mark.parametrize("video, overrides, pattern", [
    ({"fps": 1e-320, "duration": 5.0, "segments": [(1.0, 2.0, "Jump")]}, {},
     r"ann\.json: video 'v': fps 1e-320.*inf s per feature step.*not a usable time axis"),
    ({"duration": 5e-324, "segments": [(0.0, 0.0, "Jump")]}, {"resize_length": 16},
     r"ann\.json: video 'v':.*duration 5e-324 s give 0\.0 s per feature step"),
    ({"duration": 1e-310}, {"resize_length": 16}, r"ann\.json: video 'v': duration 1e-310 s.*inf frames per second"),
    ({"fps": 30.0, "duration": 1e12}, {}, r"ann\.json: video 'v': duration: must be <= 1e\+09"),
], ids=["fps-1e-320", "duration-5e-324-resize", "duration-1e-310-resize-no-fps", "duration-1e12"])
def test_time_axes_that_overflow_or_vanish_are_data_errors(tmp_path: Path, video, overrides, pattern) -> None:
    with pytest.raises(GafError, match=pattern):
        FeatureDataset(make(tmp_path, _one_video(**video), **overrides), "test", training=False)


def test_the_largest_allowed_duration_is_bounded_work(tmp_path: Path) -> None:
    """duration 1e9 s with 40 feature steps: nothing is sized by the duration (items, crops, resize). Read at
    the features' own rate, the file is refused as far too short for that duration (see the length tests)."""
    video = {"fps": 30.0, "duration": MAX_TIME_S, "segments": [(1.0, 2.0, "Jump"), (3.0, MAX_TIME_S, "Throw")]}
    with pytest.raises(DataError, match=r"40 feature steps = 5\.73333 s .* annotated duration of 1e\+09 s"):
        FeatureDataset(make(tmp_path, _one_video(**video)), "test", training=False)
    tic = time.perf_counter()
    for overrides in ({"resize_length": 16},):
        for training in (False, True):
            ds = FeatureDataset(make(tmp_path, _one_video(**video), **overrides), "test", training=training)
            items = [ds[i] for i in range(len(ds))]
            assert len(items) == 1 and items[0]["features"].shape[1] in (16, 40)
            assert np.isfinite(items[0]["segments"].numpy()).all()
    assert time.perf_counter() - tic < 5.0


# ================================================================ videos
def _frameless_avi(path: Path) -> Path:
    """An AVI with a video stream and no frame in it."""
    av = pytest.importorskip("av")
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height = 32, 24
    container.start_encoding()
    container.close()
    return path


def test_a_video_without_any_decodable_frame_is_a_data_error(tmp_path: Path) -> None:
    from gaf.data.video import iter_clips, iter_frames, probe

    path = _frameless_avi(tmp_path / "frameless.avi")
    for run in (lambda: probe(path), lambda: list(iter_frames(path)), lambda: list(iter_clips(path))):
        with pytest.raises(DataError, match=naming("frameless.avi", "no decodable video frame")):
            run()


@pytest.mark.skipif(not CLIP.exists(), reason="real clips not available")
def test_gaf_extract_reports_zero_byte_frameless_and_truncated_videos_and_extracts_the_rest(tmp_path: Path,
                                                                                          capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    empty = folder / "empty_clip.mp4"
    empty.write_bytes(b"")
    frameless = _frameless_avi(folder / "frameless_clip.avi")
    data = CLIP.read_bytes()
    truncated = folder / "cut_clip.avi"
    truncated.write_bytes(data[: len(data) // 3])
    text = folder / "notes_clip.mp4"
    text.write_text("not a video\n" * 20)
    (folder / "again").mkdir()
    twin = folder / "again" / CLIP.name  # the same video id as CLIP
    twin.write_bytes(data)
    out = tmp_path / "feats"
    args = ["extract", str(empty), str(frameless), str(truncated), str(text), str(CLIP), str(twin), "--out",
            str(out), "--fps", "5", "--window", "8", "--stride", "4", "--short-side", "64", "--crop", "64",
            "--no-progress"]
    with pytest.warns(UserWarning, match="UNTRAINED"):
        assert main(args) == 1
    printed = capsys.readouterr().out
    assert "1 video(s) extracted" in printed and "5 failed" in printed
    for name, why in (("empty_clip.mp4", "0 bytes"), ("frameless_clip.avi", "no decodable video frame"),
                      ("cut_clip.avi", "truncated"), ("notes_clip.mp4", "cannot open"),
                      (f"again/{CLIP.name}", f"is also the id of {CLIP}")):
        assert re.search(re.escape(name) + r".*" + re.escape(why), printed), (name, why, printed)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{CLIP.stem}.npy", "features.json"])


# ================================================================ gaf train: wrong kinds of path, unreadable files
TINY_MODEL = {"gaf": {"attention_dim": 16, "reduce_dim": 8, "hidden_dim": 16, "latent_dim": 4},
              "detector": {"embed_dim": 32, "num_levels": 4, "head_layers": 1, "stem_layers": 1}}


def _train_config(dataset: dict, folder: Path, **train: Any) -> Path:
    """A tiny detector config on ``dataset`` (one epoch, no evaluation), its work dir ``folder/run``."""
    path = folder / "tiny.yaml"
    path.write_text(json.dumps({"name": "tiny", "dataset": dataset, "model": TINY_MODEL,
                                "work_dir": str(folder / "run"),
                                "train": {"epochs": 1, "batch_size": 4, "eval_at_end": False, "health_items": 0,
                                          "grad_probe_every": 0, **train}}))
    return path


def _one_error_line(err: str, command: str, *parts: str) -> None:
    assert "Traceback" not in err, err
    assert err.startswith(f"gaf {command}: error: ") and len(err.strip().splitlines()) == 1, err
    assert re.search(naming(*parts), err), (parts, err)


def test_output_folders_of_the_wrong_kind_are_output_errors_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    fifo = tmp_path / "a_fifo"
    os.mkfifo(fifo)
    for path, why in ((blocker, "it is a file, not a folder"), (fifo, "it is a FIFO (named pipe), not a folder"),
                      (blocker / "sub", "a part of the path is a file, not a folder")):
        for create in (True, False):
            with pytest.raises(OutputError, match=naming(str(path), "cannot use as the work dir", why)):
                prepare_output_dir(path, "the work dir", create=create)
    if Path("/dev/null").exists():
        with pytest.raises(OutputError, match=naming("/dev/null", "it is a character device, not a folder")):
            prepare_output_dir("/dev/null")
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    later = tmp_path / "new" / "deeper"
    assert prepare_output_dir(later, create=False) == later and not later.parent.exists()  # checked, not made
    assert prepare_output_dir(later) == later and later.is_dir()
    assert blocker.read_text() == "x" and stat.S_ISFIFO(os.stat(fifo).st_mode)  # left as they were


def test_gaf_train_into_a_work_dir_that_is_a_file_is_one_line_error(pulse_dataset: dict, tmp_path: Path,
                                                                    capsys) -> None:
    """Fixed: a FileExistsError traceback."""
    blocker = tmp_path / "taken"
    blocker.write_text("notes\n")
    config = _train_config(pulse_dataset, tmp_path)
    assert main(["train", str(config), "--work-dir", str(blocker), "--no-progress"]) == 2
    _one_error_line(capsys.readouterr().err, "train", str(blocker), "cannot use as the work dir",
                    "it is a file, not a folder")
    assert blocker.read_text() == "notes\n"


def test_gaf_train_refuses_a_config_that_is_not_utf8_in_one_line(tmp_path: Path, capsys) -> None:
    """Fixed: a UnicodeDecodeError traceback."""
    config = tmp_path / "latin1.yaml"
    config.write_bytes("name: d\u00e9mo\ndataset: {}\n".encode("latin-1"))
    assert main(["train", str(config)]) == 2
    _one_error_line(capsys.readouterr().err, "train", str(config), "not UTF-8 text", "at byte 7")
    config.write_bytes("name: demo\n".encode("utf-16"))
    assert main(["train", str(config)]) == 2
    _one_error_line(capsys.readouterr().err, "train", str(config), "not UTF-8 text")


def test_gaf_train_refuses_an_npz_archive_named_npy_naming_the_file(pulse_dataset: dict, tmp_path: Path,
                                                                    capsys) -> None:
    """Fixed: AttributeError: 'NpzFile' object has no attribute 'ndim'."""
    bad = Path(pulse_dataset["feature_dir"]) / "video_validation_003.npy"
    archive = io.BytesIO()
    np.savez(archive, features=np.load(bad))
    bad.write_bytes(archive.getvalue())
    assert main(["train", str(_train_config(pulse_dataset, tmp_path)), "--no-progress"]) == 2
    _one_error_line(capsys.readouterr().err, "train", str(bad), "'video_validation_003'",
                    "a .npz archive (arrays: features), not a .npy array", "numpy.save")
    assert not (tmp_path / "run" / "latest.pt").exists()


def _set_duration(dataset: dict, video: str, duration: float) -> None:
    path = Path(dataset["annotation_file"])
    doc = json.loads(path.read_text())
    doc["database"][video]["duration"] = duration
    path.write_text(json.dumps(doc))


def test_gaf_train_refuses_a_feature_file_far_shorter_than_its_annotated_video(pulse_dataset: dict,
                                                                               tmp_path: Path, capsys) -> None:
    """2 s of features (9 steps at stride 2, window 4, 10 fps) for a video annotated 300 s long. Fixed: trained
    on silently, its instances mapped to steps the file does not have."""
    short = Path(pulse_dataset["feature_dir"]) / "video_validation_002.npy"
    np.save(short, np.load(short)[:9])
    _set_duration(pulse_dataset, "video_validation_002", 300.0)
    assert main(["train", str(_train_config(pulse_dataset, tmp_path)), "--no-progress"]) == 2
    _one_error_line(capsys.readouterr().err, "train", str(short), "'video_validation_002'",
                    "9 feature steps = 2 s (fps 10, dataset.feature_stride 2, num_frames 4)",
                    "annotated duration of 300 s (1499 steps)", "beyond the 4x")
    assert not (tmp_path / "run" / "latest.pt").exists()


@pytest.mark.slow
def test_gaf_train_warns_once_when_features_and_annotation_disagree_on_a_video_length(pulse_dataset: dict,
                                                                                       tmp_path: Path) -> None:
    """Features of 19.4 s (96 steps) for a video annotated 24 s: 19 % off, past the 10 % and the slack of a window
    and two strides, within the 4x that refuses: trained on, with one warning naming the video and both lengths.
    Every other pulse video (19.2 s annotated, 19.4 s of features) stays silent, as real extractions do."""
    _set_duration(pulse_dataset, "video_validation_001", 24.0)
    config = _train_config(pulse_dataset, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", str(config), "--no-progress"]) == 0
    lengths = [str(w.message) for w in caught if "disagree on a video's length" in str(w.message)]
    assert lengths == [f"{pulse_dataset['annotation_file']}: train split: features and annotation disagree on a "
                       "video's length by more than 10%: video 'video_validation_001': 96 feature steps = 19.4 s "
                       "(fps 10, dataset.feature_stride 2, num_frames 4) for an annotated duration of 24 s "
                       "(119 steps); its instances are mapped to feature steps as annotated: check the feature file, "
                       "or dataset.fps / feature_stride / num_frames"]
    assert (tmp_path / "run" / "final.pt").is_file()


# ---------------------------------------------------------------- read-only folders, as a user who is not root
@pytest.fixture()
def nobody_dir() -> Path:
    """A folder uid 65534 can use (tests/nonroot.py: under root these tests run gaf as that user, so CI runs them)."""
    with nobody_folder() as folder:
        yield folder


def test_gaf_train_with_a_work_dir_inside_a_read_only_folder_is_one_line_error_as_non_root(nobody_dir: Path) -> None:
    """Fixed: a PermissionError traceback (the test was skipped as root, so CI never ran it)."""
    config = _train_config(write_pulse_features(nobody_dir / "pulses", num_train=4, num_test=2), nobody_dir)
    locked = nobody_dir / "locked"
    locked.mkdir()
    give_to_nobody(nobody_dir)
    locked.chmod(0o555)
    done = gaf_as_nobody(nobody_dir, "train", str(config), "--work-dir", str(locked / "run"), "--no-progress")
    assert done.returncode == 2, done.stderr
    _one_error_line(done.stderr, "train", str(locked / "run"), "cannot create the work dir", "permission denied")
    assert list(locked.iterdir()) == []


@pytest.mark.slow
def test_gaf_train_resume_in_a_work_dir_made_read_only_is_one_line_error_as_non_root(nobody_dir: Path) -> None:
    """A run stopped after one epoch, its work dir and files then made read-only. Fixed: a PermissionError
    traceback on the lock file (or the log)."""
    config = _train_config(write_pulse_features(nobody_dir / "pulses", num_train=4, num_test=2), nobody_dir,
                           epochs=2)
    run = nobody_dir / "run"
    assert main(["train", str(config), "--stop-after", "1", "--no-progress"]) == 0
    give_to_nobody(nobody_dir)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for path in [*run.iterdir(), run]:
        path.chmod(path.stat().st_mode & ~0o222)
    done = gaf_as_nobody(nobody_dir, "train", str(config), "--resume", "--no-progress")
    assert done.returncode == 2, done.stderr
    _one_error_line(done.stderr, "train", str(run), "cannot write into the work dir", "permission denied")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
