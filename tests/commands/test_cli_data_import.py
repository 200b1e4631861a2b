"""Specification of `gaf data import SRC --out ANNOTATION.json`: tables in seconds or frames, header aliases, the
seeded split, every bad-row kind named by line, --skip-bad, durations from real videos, and the real THUMOS14
and ActivityNet annotations; what is written reads back through read_ground_truth."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import SHARED, THUMOS_DIR, VIDEOS_DIR
from gaf.cli import main
from gaf.data.annotations import read_ground_truth

ANET_JSON = SHARED / "activitynet" / "anet_anno_action.json"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_import(capsys, *args: object) -> tuple[int, str, str]:
    code = main(["data", "import", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def segments_of(path: Path) -> dict[str, list[tuple[float, float, str]]]:
    aset = read_ground_truth(path, overrun="keep")
    return {vid: [(s.start, s.end, s.label) for s in v.segments] for vid, v in aset.videos.items()}


# ---------------------------------------------------------------- tables
def test_a_csv_in_seconds_becomes_gaf_json_that_reads_back_the_same(tmp_path, capsys) -> None:
    src = write(tmp_path / "labels.csv", "video,start,end,label,subset,duration,fps\n"
                                         "cooking_1,1.5,4.0,cut,training,60,30\n"
                                         "cooking_1,10,12.25,stir,training,60,30\n"
                                         "cooking_2,0,3,cut,validation,20.5,25\n")
    out = tmp_path / "ann.json"
    code, stdout, _ = run_import(capsys, src, "--out", out)
    assert code == 0
    assert segments_of(out) == {"cooking_1": [(1.5, 4.0, "cut"), (10.0, 12.25, "stir")],
                                "cooking_2": [(0.0, 3.0, "cut")]}
    aset = read_ground_truth(out)
    assert aset.labels == ["cut", "stir"] and aset.subsets() == {"training": 1, "validation": 1}
    assert (aset.videos["cooking_2"].duration, aset.videos["cooking_2"].fps) == (20.5, 25.0)
    db = json.loads(out.read_text())["database"]
    assert db["cooking_1"]["annotations"][1]["label_id"] == 1
    assert "2 videos, 3 instances, 2 classes" in stdout
    assert "training: 1 video, 2 instances" in stdout and "validation: 1 video, 1 instance" in stdout
    assert f"wrote {out}" in stdout
    assert (f"gaf data check CONFIG --set dataset.annotation_file={out} --set dataset.train_subset=training "
            "--set dataset.test_subset=validation") in stdout


def test_header_aliases_are_read_whatever_their_case(tmp_path, capsys) -> None:
    src = write(tmp_path / "a.csv", "Video_Name,T_Start,End_Time,Class,Split,Notes\n"
                                    "v1,1,2,jump,train,ignored\nv2,3,4,run,val,\n")
    out = tmp_path / "ann.json"
    assert run_import(capsys, src, "--out", out)[0] == 0
    assert segments_of(out) == {"v1": [(1.0, 2.0, "jump")], "v2": [(3.0, 4.0, "run")]}
    assert read_ground_truth(out).subsets() == {"train": 1, "val": 1}
    src = write(tmp_path / "b.csv", "vid,start_time,t_end,action\nv1,1,2,jump\n")
    assert run_import(capsys, src, "--out", tmp_path / "b.json")[0] == 0
    src = write(tmp_path / "c.csv", "video_id,label_name,t_start,t_end\nv1,jump,1,2\n")
    assert run_import(capsys, src, "--out", tmp_path / "c.json")[0] == 0
    assert segments_of(tmp_path / "c.json") == {"v1": [(1.0, 2.0, "jump")]}


def test_a_missing_column_names_the_accepted_names(tmp_path, capsys) -> None:
    src = write(tmp_path / "a.csv", "video,begin,end,label\nv1,1,2,a\n")
    code, _, err = run_import(capsys, src, "--out", tmp_path / "o.json")
    assert code == 2 and "no start column" in err and "t_start" in err and not (tmp_path / "o.json").exists()


def test_a_tsv_in_frames_is_converted_with_fps(tmp_path, capsys) -> None:
    src = write(tmp_path / "labels.txt", "video\tstart\tend\tlabel\tsubset\nv1\t30\t90\tjump\ttraining\n"
                                         "v2\t15\t45\trun\tvalidation\n")  # delimiter sniffed from the header
    out = tmp_path / "ann.json"
    code, stdout, _ = run_import(capsys, src, "--out", out, "--units", "frames", "--fps", 30)
    assert code == 0 and "TSV, times in frames" in stdout
    assert segments_of(out) == {"v1": [(1.0, 3.0, "jump")], "v2": [(0.5, 1.5, "run")]}
    assert {v.fps for v in read_ground_truth(out).videos.values()} == {30.0}
    tsv = write(tmp_path / "f.tsv", "video\tstart\tend\tlabel\tfps\tsubset\nv1\t50\t100\tjump\t25\ttraining\n")
    assert run_import(capsys, tsv, "--out", tmp_path / "f.json", "--units", "frames")[0] == 0  # the fps column
    assert segments_of(tmp_path / "f.json") == {"v1": [(2.0, 4.0, "jump")]}


def test_frames_without_any_frame_rate_are_refused(tmp_path, capsys) -> None:
    src = write(tmp_path / "a.csv", "video,start,end,label\nv1,30,90,jump\n")
    code, _, err = run_import(capsys, src, "--out", tmp_path / "o.json", "--units", "frames")
    assert code == 2 and "line 2" in err and "--fps" in err


def test_without_durations_the_last_end_time_is_used_with_a_warning(tmp_path, capsys) -> None:
    src = write(tmp_path / "a.csv", "video,start,end,label,subset\nv1,1,2,a,training\nv1,5,7.5,b,training\n"
                                    "v2,0,1,a,validation\n")
    out = tmp_path / "o.json"
    code, _, err = run_import(capsys, src, "--out", out, "--fps", 25)
    assert code == 0 and "2 video(s) have no known duration" in err and "--videos" in err
    videos = read_ground_truth(out).videos
    assert (videos["v1"].duration, videos["v2"].duration, videos["v1"].fps) == (7.5, 1.0, 25.0)


# ---------------------------------------------------------------- split
def test_the_seeded_split_is_reproducible_and_fills_both_subsets(tmp_path, capsys) -> None:
    rows = "".join(f"clip_{i:02d},1,2,{'ab'[i % 2]}\n" for i in range(20))
    src = write(tmp_path / "a.csv", "video,start,end,label\n" + rows)

    def subsets(name: str, *extra: object) -> dict[str, str]:
        assert run_import(capsys, src, "--out", tmp_path / name, *extra)[0] == 0
        return {vid: v.subset for vid, v in read_ground_truth(tmp_path / name).videos.items()}

    first, again = subsets("a.json"), subsets("b.json", "--seed", 0, "--split", 0.8)
    assert first == again
    assert sorted(first.values()).count("training") == 16 and sorted(first.values()).count("validation") == 4
    other = subsets("c.json", "--seed", 1)
    assert other != first and list(other.values()).count("training") == 16
    named = subsets("d.json", "--split", 0.5, "--train-subset", "train", "--test-subset", "test")
    assert list(named.values()).count("train") == 10 and list(named.values()).count("test") == 10


def test_the_file_subsets_are_kept_unless_split_is_given(tmp_path, capsys) -> None:
    src = write(tmp_path / "a.csv", "video,start,end,label,subset\n"
                + "".join(f"v{i},1,2,a,validation\n" for i in range(10)))
    assert run_import(capsys, src, "--out", tmp_path / "a.json")[0] == 0
    assert read_ground_truth(tmp_path / "a.json").subsets() == {"validation": 10}
    assert run_import(capsys, src, "--out", tmp_path / "b.json", "--split", 0.7)[0] == 0
    assert read_ground_truth(tmp_path / "b.json").subsets() == {"training": 7, "validation": 3}
    code, _, err = run_import(capsys, src, "--out", tmp_path / "c.json", "--train-subset", "train")
    assert code == 2 and "--split" in err
    code, _, err = run_import(capsys, src, "--out", tmp_path / "c.json", "--split", 1.5)
    assert code == 2 and "--split" in err and not (tmp_path / "c.json").exists()


# ---------------------------------------------------------------- bad rows
BAD_ROWS = [  # (header, bad row at line 3, what the message names)
    ("video,start,end,label", "v1,5,5,a", ["column 'end'", "end 5 s <= start 5 s"]),
    ("video,start,end,label", "v1,9,4,a", ["column 'end'", "<= start"]),
    ("video,start,end,label", "v1,-1,2,a", ["column 'start'", "negative time"]),
    ("video,start,end,label,duration", "v1,3,11.5,a,10", ["column 'end'", "after the video's duration 10 s"]),
    ("video,start,end,label", "v1,0,1,a", ["duplicate of line 2"]),
    ("video,start,end,label", "v1,1,2, ", ["column 'label'", "empty label"]),
    ("video,start,end,label", "v1,abc,2,a", ["column 'start'", "not a number: 'abc'"]),
    ("video,start,end,label", "v1,1,nan,a", ["column 'end'", "not a number"]),
    ("video,start,end,label,fps", "v1,1,2,a,-3", ["column 'fps'", "must be > 0"]),
    ("video,start,end,label,subset", "v1,1,2,a,validation", ["column 'subset'", "'training' on an earlier row"]),
    ("video,start,end,label", "../etc,1,2,a", ["column 'video'", "unsafe video id"]),
]


@pytest.mark.parametrize("header, row, names", BAD_ROWS, ids=[r[1] for r in BAD_ROWS])
def test_a_bad_row_is_named_by_line_and_nothing_is_written(tmp_path, capsys, header, row, names) -> None:
    first = {"video,start,end,label": "v1,0,1,a", "video,start,end,label,duration": "v1,0,1,a,10",
             "video,start,end,label,fps": "v1,0,1,a,30", "video,start,end,label,subset": "v1,0,1,a,training"}[header]
    src = write(tmp_path / "a.csv", f"{header}\n{first}\n{row}\n")
    out = tmp_path / "o.json"
    code, _, err = run_import(capsys, src, "--out", out)
    assert code == 2 and not out.exists()
    error = err.strip().splitlines()[-1]
    assert error.startswith(f"gaf data: error: {src}: 1 bad row(s), nothing written") and "--skip-bad" in error
    for text in [f"{src}: line 3", *names]:
        assert text in error, (text, error)


def test_an_end_within_the_tolerance_of_the_duration_is_good(tmp_path, capsys) -> None:
    src = write(tmp_path / "a.csv", "video,start,end,label,duration\nv1,3,10.9,a,10\n")
    assert run_import(capsys, src, "--out", tmp_path / "o.json")[0] == 0  # DURATION_TOLERANCE_S: 1 s
    assert segments_of(tmp_path / "o.json") == {"v1": [(3.0, 10.9, "a")]}


def test_skip_bad_drops_the_bad_rows_and_counts_each_kind(tmp_path, capsys) -> None:
    src = write(tmp_path / "a.csv", "video,start,end,label,duration\n"
                                    "v1,0,1,a,10\n"  # 2 good
                                    "v1,4,2,a,10\n"  # 3 end <= start
                                    "v1,0,1,a,10\n"  # 4 duplicate
                                    "v2,x,1,b,10\n"  # 5 bad number
                                    "v2,1,2,b,10\n"  # 6 good
                                    "v2,6,8,b,10\n"  # 7 good
                                    "v2,5,12,b,10\n"  # 8 past the end
                                    "v3,1,3,,10\n"  # 9 empty label: v3 has no good row left
                                    "v1,3,1,b,10\n")  # 10 end <= start
    out = tmp_path / "o.json"
    code, stdout, err = run_import(capsys, src, "--out", out, "--skip-bad", "--split", 0.5)
    assert code == 0
    assert "dropped 6 bad row(s) (--skip-bad):" in stdout
    for line in ("bad number: 1 (line 5)", "empty label: 1 (line 9)", "end <= start: 2 (lines 3, 10)",
                 "past the video's end: 1 (line 8)", "duplicate: 1 (line 4)"):
        assert f"  {line}\n" in stdout, line
    assert err.count("bad row:") == 6
    assert segments_of(out) == {"v1": [(0.0, 1.0, "a")], "v2": [(1.0, 2.0, "b"), (6.0, 8.0, "b")]}
    assert "2 videos, 3 instances, 2 classes" in stdout


def test_an_existing_output_needs_force_and_the_input_is_never_the_output(tmp_path, capsys) -> None:
    src = write(tmp_path / "a.csv", "video,start,end,label\nv1,0,1,a\n")
    out = write(tmp_path / "o.json", "old")
    code, _, err = run_import(capsys, src, "--out", out)
    assert code == 2 and f"--out {out}: exists; --force overwrites it" in err and out.read_text() == "old"
    assert run_import(capsys, src, "--out", out, "--force")[0] == 0 and "database" in out.read_text()
    code, _, err = run_import(capsys, src, "--out", src, "--force")
    assert code == 2 and "is also an input" in err and src.read_text().startswith("video,")


# ---------------------------------------------------------------- real videos
def _clips() -> dict[str, dict[str, str]]:
    """clips.csv (measured with PyAV when the folder was made): {video id: row}."""
    assert (VIDEOS_DIR / "clips.csv").is_file(), f"the real clips are missing: {VIDEOS_DIR}"
    with open(VIDEOS_DIR / "clips.csv", newline="") as f:
        return {Path(row["file"]).stem: row for row in csv.DictReader(f)}


def test_durations_and_fps_come_from_the_real_videos(tmp_path, capsys) -> None:
    clips = _clips()
    src = write(tmp_path / "a.csv", "video,start,end,label\nv_Basketball_g01_c01,0.5,4,basketball\n"
                                    "abseiling_k400,1,9.5,abseil\ncleaning_pool_mmaction2_test,2,8,clean\n")
    out = tmp_path / "o.json"
    code, _, err = run_import(capsys, src, "--out", out, "--videos", VIDEOS_DIR)
    assert code == 0 and "duration" not in err
    videos = read_ground_truth(out).videos
    assert len(videos) == 3
    for vid, v in videos.items():
        assert v.duration == pytest.approx(float(clips[vid]["duration_s"]), abs=0.01)
        assert v.fps == pytest.approx(float(clips[vid]["fps"]), abs=0.01)


def test_with_videos_an_unknown_video_or_an_end_past_the_clip_is_bad(tmp_path, capsys) -> None:
    _clips()
    src = write(tmp_path / "a.csv", "video,start,end,label\nv_Basketball_g01_c01,0.5,4,basketball\n"
                                    "no_such_clip,1,2,basketball\nv_Basketball_g01_c01,1,6,basketball\n")
    code, _, err = run_import(capsys, src, "--out", tmp_path / "o.json", "--videos", VIDEOS_DIR)
    assert code == 2 and not (tmp_path / "o.json").exists()
    assert f"{src}: line 3: column 'video': video 'no_such_clip': no file no_such_clip.<ext> in {VIDEOS_DIR}" in err
    assert f"{src}: line 4: column 'end'" in err and "after the video's duration 4.7" in err


def test_keep_empty_adds_the_unannotated_videos_of_the_folder(tmp_path, capsys) -> None:
    clips = _clips()  # every clip in clips.csv is a video file of the folder
    src = write(tmp_path / "a.csv", "video,start,end,label\nv_Basketball_g01_c01,0.5,4,basketball\n"
                                    "abseiling_k400,1,9.5,abseil\n")
    code, _, err = run_import(capsys, src, "--out", tmp_path / "a.json", "--videos", VIDEOS_DIR)
    assert code == 0 and f"{len(clips) - 2} video(s) in {VIDEOS_DIR} have no annotation" in err
    assert len(read_ground_truth(tmp_path / "a.json").videos) == 2
    code, stdout, _ = run_import(capsys, src, "--out", tmp_path / "b.json", "--videos", VIDEOS_DIR, "--keep-empty")
    videos = read_ground_truth(tmp_path / "b.json").videos
    assert code == 0 and set(videos) == set(clips) and sum(len(v.segments) for v in videos.values()) == 2
    assert all(v.duration and v.fps for v in videos.values())
    assert set(v.subset for v in videos.values()) == {"training", "validation"}


# ---------------------------------------------------------------- THUMOS14 and ActivityNet
def test_a_thumos14_class_file_folder_imports_with_its_counts(tmp_path, capsys) -> None:
    with open(THUMOS_DIR / "test_Annotation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(THUMOS_DIR / "test_video_info.csv", newline="") as f:
        duration = {r["video"]: float(r["count"]) / float(r["fps"]) for r in csv.DictReader(f)}
    folder = tmp_path / "thumos"
    folder.mkdir()
    for label in {r["type"] for r in rows}:
        lines = [f"{r['video']} {r['start']} {r['end']}" for r in rows if r["type"] == label]
        write(folder / f"{label}_test.txt", "\n".join(lines) + "\n")
    shutil.copy(THUMOS_DIR / "test_video_info.csv", folder)
    actions = [r for r in rows if r["type"] != "Ambiguous"]
    past = [r for r in actions if r["video"] in duration and float(r["end"]) > duration[r["video"]] + 1.0]
    assert len(past) > 0  # THUMOS14 holds segments after their video's end

    out = tmp_path / "thumos.json"
    code, _, err = run_import(capsys, folder, "--out", out)
    assert code == 2 and f"{len(past)} bad row(s), nothing written" in err and not out.exists()
    code, stdout, _ = run_import(capsys, folder, "--out", out, "--skip-bad")
    assert code == 0 and f"past the video's end: {len(past)}" in stdout
    aset = read_ground_truth(out)
    assert len(aset.videos) == len({r["video"] for r in rows})
    assert aset.num_segments == len(actions) - len(past)
    assert aset.num_ambiguous == len(rows) - len(actions)
    assert aset.labels == sorted({r["type"] for r in actions}) and aset.subsets() == {"test": len(aset.videos)}
    kept = sorted((r["video"], float(r["start"]), float(r["end"]), r["type"]) for r in actions if r not in past)
    assert sorted((vid, s.start, s.end, s.label) for vid, v in aset.videos.items() for s in v.segments) == kept


def test_bsn_activitynet_json_imports_with_its_counts(tmp_path, capsys) -> None:
    source = json.loads(ANET_JSON.read_text())
    with open(ANET_JSON.with_name("video_info_new.csv"), newline="") as f:
        subset = {r["video"]: r["subset"] for r in csv.DictReader(f)}
    kept: dict[str, list[tuple[float, float, str]]] = {}
    dropped = 0
    for vid, entry in source.items():
        good: list[tuple[float, float, str]] = []
        for a in entry["annotations"]:
            key = (float(a["segment"][0]), float(a["segment"][1]), a["label"])
            if key[1] <= key[0] or key in good:
                dropped += 1
            else:
                good.append(key)
        if good or not entry["annotations"]:  # a video whose every instance is bad goes with them
            kept[vid] = good

    out = tmp_path / "anet.json"
    code, stdout, _ = run_import(capsys, ANET_JSON, "--out", out, "--skip-bad")
    assert code == 0 and f"dropped {dropped} bad row(s)" in stdout
    aset = read_ground_truth(out)
    assert {vid: [(s.start, s.end, s.label) for s in v.segments] for vid, v in aset.videos.items()} == kept
    counts: dict[str, int] = {}
    for vid in kept:
        counts[subset[vid]] = counts.get(subset[vid], 0) + 1
    assert aset.subsets() == counts and len(aset.labels) == 200
    assert all(v.duration == source[vid]["duration_second"] for vid, v in aset.videos.items())
    assert "--set dataset.train_subset=training --set dataset.test_subset=validation" in stdout


def test_an_actionformer_json_keeps_its_class_ids(tmp_path, capsys) -> None:
    source = json.loads((THUMOS_DIR / "thumos14.json").read_text())["database"]
    out = tmp_path / "t.json"
    code, stdout, _ = run_import(capsys, THUMOS_DIR / "thumos14.json", "--out", out, "--skip-bad")
    assert code == 0
    ids = {a["label"]: a["label_id"] for e in source.values() for a in e["annotations"]}
    written = json.loads(out.read_text())
    assert {label: written["labels"].index(label) for label in ids} == ids
    assert set(written["database"]) <= set(source)


def test_help_names_the_formats_and_examples(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["data", "import", "--help"])
    text = capsys.readouterr().out
    for word in ("video_id", "t_start", "--units", "--videos", "--split", "--skip-bad", "--keep-empty", "--force",
                 "examples:", "gaf data import labels.csv --out data/annotations.json --videos data/videos"):
        assert word in text, word
