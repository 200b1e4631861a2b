"""Specification of gaf.data.thumos14: the THUMOS14 CSVs and class files, named ground-truth variants."""

from __future__ import annotations

import re
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import THUMOS_DIR
from gaf.data.annotations import AnnotationSet, AnnotationWarning, Segment, Video, read_ground_truth
from gaf.data.thumos14 import (THUMOS14_CLASSES, THUMOS14_VARIANTS, apply_thumos14_variant, find_thumos14_dir,
                               read_thumos_class_files, read_thumos_csv, thumos14_ground_truth)
from gaf.errors import AnnotationError, DataError

needs_data = pytest.mark.skipif(not (THUMOS_DIR / "thumos14.json").is_file(), reason="shared data not present")


def write(path: Path, doc: str) -> Path:
    path.write_text(doc)
    return path


def raises_naming(*parts: str):
    """pytest.raises(AnnotationError) whose message contains every one of ``parts``."""
    return pytest.raises(AnnotationError, match="(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts))


@contextmanager
def keep_overruns():
    """Silence the overrun warning the real THUMOS14 files raise (asserted in tests/data/test_annotations.py)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        yield


# ---------------------------------------------------------------- the real files
@needs_data
@pytest.mark.parametrize("name, videos, segments, ambiguous", [
    ("val_Annotation.csv", 200, 3007, 89), ("val_Annotation_ours.csv", 200, 3007, 0),
    ("test_Annotation.csv", 213, 3358, 99), ("test_Annotation_ours.csv", 212, 3358, 0),
    ("thumos14_test_groundtruth.csv", 213, 3358, 99)])
def test_thumos14_csvs_load_with_their_counts_and_keep_ambiguous_apart(name, videos, segments, ambiguous):
    with keep_overruns():
        aset = read_ground_truth(THUMOS_DIR / name)
    assert (len(aset.videos), aset.num_segments, aset.num_ambiguous) == (videos, segments, ambiguous)
    assert aset.labels == list(THUMOS14_CLASSES)
    missing_duration = {v.video_id for v in aset.videos.values() if v.duration is None}
    # video_test_0001292 holds only Ambiguous rows and is absent from test_video_info.csv
    assert missing_duration == ({"video_test_0001292"} if name == "test_Annotation.csv" else set())


@needs_data
def test_csv_durations_come_from_video_info_as_count_over_fps():
    with keep_overruns():
        aset = read_thumos_csv(THUMOS_DIR / "val_Annotation.csv")
    video = aset.videos["video_validation_0000051"]
    assert (video.fps, video.duration, video.subset) == (30.0, pytest.approx(5091 / 30), "validation")


@needs_data
@pytest.mark.parametrize("name", ["thumos14.json", "thumos_gt.json", "val_Annotation.csv", "test_Annotation.csv",
                                  "thumos14_test_groundtruth.csv"])
def test_every_thumos14_source_also_labels_each_cliffdiving_instance_as_diving(name):
    with keep_overruns():
        aset = read_ground_truth(THUMOS_DIR / name)
    for video in aset.videos.values():
        cliff = Counter((s.start, s.end) for s in video.segments if s.label == "CliffDiving")
        diving = Counter((s.start, s.end) for s in video.segments if s.label == "Diving")
        assert cliff - diving == Counter(), video.video_id


# ---------------------------------------------------------------- variants
@needs_data
@pytest.mark.parametrize("variant, videos, segments, ambiguous", [
    ("thumos14-test-212", 212, 3358, 0), ("thumos14-test-213-ambiguous", 213, 3358, 99),
    ("thumos14-test-210", 210, 3311, 0), ("thumos14-val-200", 200, 3007, 0),
    ("thumos14-val-200-ambiguous", 200, 3007, 89), ("thumos14-test-212-nodup", 212, 3141, 0),
    ("thumos14-test-210-nodup", 210, 3094, 0), ("thumos14-val-200-nodup", 200, 2864, 0)])
def test_named_thumos14_variants_have_their_promised_counts(variant, videos, segments, ambiguous):
    with keep_overruns():
        aset = thumos14_ground_truth(variant=variant, data_dir=THUMOS_DIR)
    assert (len(aset.videos), aset.num_segments, aset.num_ambiguous) == (videos, segments, ambiguous)
    assert aset.variant == variant and variant in THUMOS14_VARIANTS
    assert aset.labels == list(THUMOS14_CLASSES)


@needs_data
def test_variant_210_is_exactly_thumos_gt_json_and_212_is_exactly_thumos14_json_test():
    with keep_overruns():
        v210 = thumos14_ground_truth(variant="thumos14-test-210", data_dir=THUMOS_DIR)
        v212 = thumos14_ground_truth("test", data_dir=THUMOS_DIR)
        gt = read_ground_truth(THUMOS_DIR / "thumos_gt.json", subset="test")
        ours = read_ground_truth(THUMOS_DIR / "thumos14.json", variant="thumos14-test-212")

    def bag(a: AnnotationSet):
        return Counter((vid, s.start, s.end, s.label) for vid, v in a.videos.items() for s in v.segments)
    assert bag(v210) == bag(gt) and bag(v212) == bag(ours)
    assert v212.variant == ours.variant == "thumos14-test-212"


@needs_data
def test_variant_that_the_source_cannot_give_is_an_error_naming_the_file():
    with keep_overruns(), raises_naming("thumos14.json", "thumos14-test-213-ambiguous", "213", "212"):
        read_ground_truth(THUMOS_DIR / "thumos14.json", variant="thumos14-test-213-ambiguous")
    with raises_naming("unknown THUMOS14 ground-truth variant", "thumos14-test-212"):
        thumos14_ground_truth(variant="thumos14-test-999", data_dir=THUMOS_DIR)
    with raises_naming("test variant", "split='val'"):
        thumos14_ground_truth("val", "thumos14-test-212", data_dir=THUMOS_DIR)


def test_missing_thumos14_folder_is_a_data_error(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="GAF_THUMOS14_DIR"):
        find_thumos14_dir(tmp_path)
    monkeypatch.setenv("GAF_THUMOS14_DIR", str(tmp_path))
    (tmp_path / "thumos14_test_groundtruth.csv").write_text("x")
    assert find_thumos14_dir() == tmp_path


def test_nodup_removes_only_diving_copies_of_cliffdiving():
    video = Video("video_test_1", [Segment(1, 2, "CliffDiving"), Segment(1, 2, "Diving"), Segment(5, 6, "Diving")],
                  subset="test")
    sets = {vid: Video(vid, [Segment(0, 1, "Shotput")], subset="test") for vid in
            [f"video_test_{i}" for i in range(2, 213)]}
    aset = AnnotationSet({"video_test_1": video, **sets}, ["CliffDiving", "Diving", "Shotput"])
    out = apply_thumos14_variant(aset, "thumos14-test-212-nodup")
    assert out.videos["video_test_1"].segments == [Segment(1, 2, "CliffDiving"), Segment(5, 6, "Diving")]


@needs_data
def test_class_file_folder_reads_like_the_csv(tmp_path):
    with keep_overruns():
        ref = read_thumos_csv(THUMOS_DIR / "test_Annotation.csv")
    lines: dict[str, list[str]] = {}
    for vid, v in ref.videos.items():
        for s in v.segments:
            lines.setdefault(s.label, []).append(f"{vid} {s.start} {s.end}")
        lines.setdefault("Ambiguous", []).extend(f"{vid}  {s} {e}" for s, e in v.ambiguous)
    for label, rows in lines.items():
        (tmp_path / f"{label}_test.txt").write_text("\n".join(rows) + "\n")
    with keep_overruns():
        got = read_ground_truth(tmp_path)
        assert read_thumos_class_files(tmp_path, "testing").num_segments == 3358
    assert list(got.videos) == sorted(ref.videos) and got.labels == ref.labels
    for vid, v in ref.videos.items():
        assert sorted(got.videos[vid].segments, key=repr) == sorted(v.segments, key=repr)
        assert sorted(got.videos[vid].ambiguous) == sorted(v.ambiguous)
    (tmp_path / "Diving_val.txt").write_text("video_validation_1 1 2\n")
    with raises_naming(str(tmp_path), "subset"):
        read_ground_truth(tmp_path)
    assert len(read_ground_truth(tmp_path, subset="val").videos) == 1


# ---------------------------------------------------------------- validation errors
def test_thumos_csv_errors_name_file_line_and_field(tmp_path):
    head = "video,type,type_idx,start,end,startFrame,endFrame\n"
    with raises_naming("a.csv", "line 2", "4 columns"):
        read_thumos_csv(write(tmp_path / "a.csv", head + "video_test_1,Diving,26,1.0\n"))
    with raises_naming("a.csv", "line 3", "video_test_2", "start/end[0]", "not a number"):
        read_thumos_csv(write(tmp_path / "a.csv", head + "video_test_1,Diving,26,1,2,3,4\n"
                                                         "video_test_2,Diving,26,x,2,3,4\n"))
    with raises_naming("a.csv", "line 3", "type_idx"):
        read_thumos_csv(write(tmp_path / "a.csv", head + "video_test_1,Diving,26,1,2,3,4\n"
                                                         "video_test_1,Diving,9,3,4,5,6\n"))
    tgt = "video-name,t-init,t-end,f-init,f-end,video-duration,frame-rate,video-frames,label-idx\n"
    with raises_naming("b.csv", "line 2", "video_test_9", "label-idx", "-1..19"):
        read_thumos_csv(write(tmp_path / "b.csv", tgt + "video_test_9,1,2,30,60,100,30,3000,20\n"))
    with raises_naming("c.csv", "unknown THUMOS14 CSV layout"):
        read_ground_truth(write(tmp_path / "c.csv", "a,b\n1,2\n"))
