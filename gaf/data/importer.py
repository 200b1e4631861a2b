"""A user's annotations into gaf's annotation set (:func:`import_annotations`), checked row by row.

Sources:

* a CSV / TSV table, one row per action instance (delimiter from the
  extension, else sniffed from the header line). Header names are read
  case-insensitively, ``-`` and spaces as ``_``; :data:`COLUMN_ALIASES` lists
  the names of each column: ``video``, ``start``, ``end``, ``label``, and
  optionally ``subset``, ``duration`` (s) and ``fps``. Times are seconds, or
  frame numbers (``units="frames"``) divided by the frame rate.
* what :func:`gaf.data.annotations.read_ground_truth` reads: THUMOS14's CSVs,
  a folder of THUMOS14 per-class files ``<Class>_val.txt`` /
  ``<Class>_test.txt`` (both splits when both are there), an ActivityNet /
  ActionFormer database JSON, BSN's ``anet_anno_action.json``.

Durations (s) and fps come from the videos (``videos_dir``: ``<dir>/<video
id>.<ext>``, read with :func:`gaf.data.video.probe`), else from the source
(a ``duration`` / ``fps`` column, the JSON's fields), else ``fps`` given here
and the duration set to the video's last annotated end time (with a note).

Every instance is checked; one that fails is a :class:`BadRow` naming its
file and line (table) or video and segment (other sources): a bad number,
an empty label, an unsafe video id, a negative time, ``end <= start``,
fields of a video that differ between its rows, a video not in
``videos_dir``, an end more than :data:`DURATION_TOLERANCE_S` after the
video's duration, an exact duplicate. The result holds the good rows and
the bad ones; the caller writes it (``write_activitynet``) or refuses.

Subsets: the source's, or a seeded split of whole videos
(:func:`split_videos`). Standard library only; probing imports PyAV.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from gaf.data.annotation_core import (AMBIGUOUS, DURATION_TOLERANCE_S, MAX_TIME_S, AnnotationSet, Segment, Video,
                                      normalize_subset, parse_number, read_csv, read_text, safe_video_id, short_repr)
from gaf.errors import AnnotationError, ConfigError, DataError

__all__ = ["COLUMN_ALIASES", "BAD_KINDS", "BadRow", "ImportResult", "import_annotations", "split_videos",
           "find_videos", "sniff_delimiter", "bad_rows_summary", "bad_rows_error", "train_test_subsets"]

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "video": ("video", "video_id", "video_name", "vid", "videoid"),
    "start": ("start", "t_start", "start_time", "t_init"),
    "end": ("end", "t_end", "end_time"),
    "label": ("label", "class", "action", "label_name", "class_name"),
    "subset": ("subset", "split"),
    "duration": ("duration", "video_duration", "duration_s"),
    "fps": ("fps", "frame_rate"),
}
"""Accepted header names of each column (after lower-casing, ``-`` and spaces as ``_``)."""
REQUIRED = ("video", "start", "end", "label")
DEFAULT_TRAIN_SHARE = 0.8
DEFAULT_SUBSETS = ("training", "validation")
UNITS = ("seconds", "frames")
NOT_VIDEO_SUFFIXES = frozenset({".txt", ".csv", ".tsv", ".json", ".md", ".npy", ".npz", ".yaml", ".yml", ".pkl",
                                ".pt", ".pth", ".tmp", ".part", ".srt", ".vtt", ".log"})
"""Files in ``videos_dir`` that are never videos (every other non-hidden file may be one)."""

BAD_NUMBER, EMPTY_LABEL, BAD_VIDEO_ID = "bad number", "empty label", "bad video id"
NEGATIVE, NOT_AFTER_START, CONFLICT = "negative time", "end <= start", "conflicting video fields"
UNKNOWN_VIDEO, PAST_END, DUPLICATE = "unknown video", "past the video's end", "duplicate"
BAD_KINDS = (BAD_NUMBER, EMPTY_LABEL, BAD_VIDEO_ID, NEGATIVE, NOT_AFTER_START, CONFLICT, UNKNOWN_VIDEO, PAST_END,
             DUPLICATE)


@dataclass(frozen=True, slots=True)
class BadRow:
    """One instance (row) the import refuses.

    ``kind``: one of :data:`BAD_KINDS`. ``where``: file and line (and
    column) of a table row, file, video and segment otherwise. ``line``: the
    table's line number (1 = header), None for other sources.
    """

    kind: str
    where: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(slots=True)
class ImportResult:
    """What :func:`import_annotations` read.

    ``aset``: the good instances, every video with a subset, and a duration
    (s) and fps where known. ``layout``: what the source was read as.
    ``bad``: the refused instances, in source order. ``notes``: what the user
    should know (guessed durations, videos left out). ``split``: the (train,
    test) subset names when a split assigned them, else None.
    """

    aset: AnnotationSet
    layout: str
    bad: list[BadRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    split: tuple[str, str] | None = None


@dataclass(slots=True)
class _Instance:
    where: str
    line: int | None
    start: float  # seconds
    end: float
    label: str
    columns: tuple[str, str] | None = None  # a table's start / end column names


@dataclass(slots=True)
class _Draft:
    """A video being built: its instances (unchecked) and fields, ``where`` = its first row."""

    where: str
    instances: list[_Instance] = field(default_factory=list)
    ambiguous: list[tuple[float, float]] = field(default_factory=list)
    subset: str | None = None
    duration: float | None = None  # s
    fps: float | None = None


# ---------------------------------------------------------------- helpers
def sniff_delimiter(path: Path, header_line: str) -> str:
    """``"\\t"``, ``","`` or ``";"``: the extension's (``.tsv`` / ``.tab``: tab, ``.csv``: comma) when the header
    line holds it, else the one the header line holds most of (comma when none)."""
    by_ext = {".tsv": "\t", ".tab": "\t", ".csv": ","}.get(path.suffix.lower())
    if by_ext is not None and by_ext in header_line:
        return by_ext
    counts = {d: header_line.count(d) for d in ("\t", ",", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _header_key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _map_header(path: Path, header: list[str]) -> dict[str, int]:
    """``{column: index}`` for the columns of :data:`COLUMN_ALIASES` found in ``header``."""
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        key = _header_key(name)
        for column, aliases in COLUMN_ALIASES.items():
            if key in aliases:
                if column in found:
                    raise AnnotationError(f"{path}: header: columns {header[found[column]]!r} and {name!r} both "
                                          f"give the {column}; keep one")
                found[column] = i
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        names = "; ".join(f"{c}: {', '.join(COLUMN_ALIASES[c])}" for c in missing)
        raise AnnotationError(f"{path}: header: no {' / '.join(missing)} column (accepted names: {names}); the "
                              f"header is {', '.join(header) or 'empty'}")
    return found


def _number(cell: str) -> tuple[float | None, str | None]:
    """``(value, None)`` for a plain decimal in ``[-MAX_TIME_S, MAX_TIME_S]``, else ``(None, reason)``."""
    if not cell:
        return None, "empty (expected a number)"
    try:
        value = parse_number(cell, "")
    except AnnotationError:
        return None, f"not a number: {short_repr(cell)} (expected a decimal like 12.5)"
    if abs(value) > MAX_TIME_S:
        return None, f"{cell} is beyond {MAX_TIME_S:g} (not plausible for a video)"
    return value, None


def find_videos(folder: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """``{video id: [files]}`` of ``folder`` (not recursive): regular, non-hidden files whose extension is not in
    :data:`NOT_VIDEO_SUFFIXES`, the id being the name without its extension. DataError if not a folder."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: --videos: not a folder" if root.exists() else f"{root}: --videos: folder not found")
    out: dict[str, list[Path]] = {}
    for f in sorted(root.iterdir()):
        if f.name.startswith(".") or f.suffix.lower() in NOT_VIDEO_SUFFIXES or not f.is_file():
            continue
        out.setdefault(f.stem, []).append(f)
    return out


def _probe(files: list[Path], vid: str) -> tuple[float, float]:
    """``(duration s, fps)`` of the one video file of ``vid``; DataError when it is ambiguous or unreadable."""
    from gaf.data.video import probe

    if len(files) > 1:
        raise DataError(f"video {vid!r}: several files in the folder: {', '.join(f.name for f in files)}; keep one")
    info = probe(files[0])
    if not (0 < info.duration <= MAX_TIME_S and 0 < info.fps <= MAX_TIME_S):
        raise DataError(f"{files[0]}: duration {info.duration} s / fps {info.fps}: not plausible for a video")
    return info.duration, info.fps


def split_videos(video_ids: list[str], train_share: float, seed: int,
                 names: tuple[str, str] = DEFAULT_SUBSETS) -> dict[str, str]:
    """``{video id: subset}``: whole videos, ``round(train_share * N)`` of them (at least one of each when
    N >= 2) to ``names[0]``, the rest to ``names[1]``. The ids are sorted, then shuffled by
    ``random.Random(seed)``: the same ids and seed give the same split."""
    if not 0 < train_share < 1:
        raise ConfigError(f"--split: the training share must be between 0 and 1 (exclusive), got {train_share:g}")
    ids = sorted(video_ids)
    random.Random(seed).shuffle(ids)
    n_train = math.floor(train_share * len(ids) + 0.5)
    if len(ids) >= 2:
        n_train = min(max(n_train, 1), len(ids) - 1)
    return {vid: names[0] if i < n_train else names[1] for i, vid in enumerate(ids)}


def train_test_subsets(subsets: list[str]) -> tuple[str | None, str | None]:
    """The (train, test) pair among ``subsets`` by their usual roles: training before validation before
    testing (aliases as :func:`normalize_subset`); ``(None, None)`` unless two of them are there."""
    rank = {"training": 0, "validation": 1, "testing": 2}
    known = sorted((rank[normalize_subset(s) or ""], s) for s in subsets if (normalize_subset(s) or "") in rank)
    return (known[0][1], known[1][1]) if len(known) > 1 else (None, None)


def bad_rows_summary(bad: list[BadRow], first: int = 5) -> list[str]:
    """One line per kind: ``"end <= start: 2 (lines 4, 9)"``, the first ``first`` places of each."""
    out = []
    for kind in BAD_KINDS:
        rows = [b for b in bad if b.kind == kind]
        if not rows:
            continue
        lines = [b.line for b in rows if b.line is not None]
        if lines:
            shown = ", ".join(str(n) for n in lines[:first]) + (", ..." if len(lines) > first else "")
            out.append(f"{kind}: {len(rows)} (line{'s' if len(lines) > 1 else ''} {shown})")
        else:
            out.append(f"{kind}: {len(rows)} (first: {rows[0].where})")
    return out


def bad_rows_error(bad: list[BadRow], source: str) -> AnnotationError:
    """The one-line error for bad rows when nothing may be written."""
    return AnnotationError(f"{source}: {len(bad)} bad row(s), nothing written: {'; '.join(bad_rows_summary(bad))}. "
                           f"First: {bad[0]}. Fix them, or --skip-bad to drop them")


# ---------------------------------------------------------------- readers
def _read_table(path: Path, units: str, fps: float | None, probed: _Probe, bad: list[BadRow]
                ) -> tuple[dict[str, _Draft], bool, str]:
    """Drafts of a CSV / TSV table (times converted to s), whether it has a subset column, its delimiter."""
    delimiter = sniff_delimiter(path, next((x for x in _head(path).splitlines() if x.strip()), ""))
    header, rows = read_csv(path, delimiter)
    col = _map_header(path, header)
    parsed = []
    for line, cells in rows:
        where = f"{path}: line {line}"
        row: dict[str, float] = {}  # start, end (s or frames), duration (s), fps: the cells given
        for name in ("start", "end", "duration", "fps"):
            if name not in col or (name in ("duration", "fps") and not cells[col[name]]):
                continue
            value, reason = _number(cells[col[name]])
            if value is not None and value <= 0 and name in ("duration", "fps"):
                reason = f"must be > 0, got {cells[col[name]]}"
            if reason is not None:
                bad.append(BadRow(BAD_NUMBER, f"{where}: column {header[col[name]]!r}", reason, line))
                break
            row[name] = value  # type: ignore[assignment]  # value is a float when reason is None
        else:
            vid, label = cells[col["video"]], cells[col["label"]]
            if not label:
                bad.append(BadRow(EMPTY_LABEL, f"{where}: column {header[col['label']]!r}", "empty label", line))
                continue
            try:
                safe_video_id(vid, where)
            except AnnotationError as e:
                bad.append(BadRow(BAD_VIDEO_ID, f"{where}: column {header[col['video']]!r}",
                                  str(e).removeprefix(f"{where}: "), line))
                continue
            subset = cells[col["subset"]] if "subset" in col else None
            parsed.append((line, where, vid, label, subset or None, row))
    probed.load(list(dict.fromkeys(p[2] for p in parsed)))
    drafts: dict[str, _Draft] = {}
    for line, where, vid, label, subset, row in parsed:
        if vid in probed.missing:
            bad.append(BadRow(UNKNOWN_VIDEO, f"{where}: column {header[col['video']]!r}",
                              f"video {vid!r}: no file {vid}.<ext> in {probed.folder}", line))
            continue
        got = probed.info.get(vid)
        start, end = row["start"], row["end"]
        if units == "frames":
            rate = fps or row.get("fps") or (got[1] if got else None)
            if rate is None:
                raise AnnotationError(f"{where}: video {vid!r}: times are frames (--units frames) but the frame rate "
                                      "is unknown: pass --fps F, add an fps column or --videos DIR")
            start, end = start / rate, end / rate
        fields = {"subset": subset, "duration": row.get("duration"), "fps": row.get("fps")}
        draft = drafts.setdefault(vid, _Draft(where))
        clash = next((k for k, v in fields.items() if v is not None and getattr(draft, k) not in (None, v)), None)
        if clash is not None:
            bad.append(BadRow(CONFLICT, f"{where}: column {header[col[clash]]!r}",
                              f"video {vid!r}: {clash} {fields[clash]!r} here, {getattr(draft, clash)!r} on an "
                              "earlier row", line))
            continue
        for k, v in fields.items():  # a blank cell leaves the video's value from its other rows
            if v is not None:
                setattr(draft, k, v)
        draft.instances.append(_Instance(where, line, start, end, label, (header[col["start"]], header[col["end"]])))
    return drafts, "subset" in col, delimiter


def _read_known(path: Path) -> tuple[AnnotationSet, str]:
    """A source :func:`read_ground_truth` reads (both splits of a class-file folder), and its layout's name."""
    from gaf.data.annotations import read_ground_truth

    if path.is_dir():
        splits = [s for s in ("val", "test") if any(path.glob(f"*_{s}.txt"))]
        if not splits:
            raise AnnotationError(f"{path}: a folder, but with no THUMOS14 '<Class>_val.txt' / '<Class>_test.txt' "
                                  "files; give a CSV / TSV or JSON file")
        sets = [read_ground_truth(path, subset=s, overrun="keep") for s in splits]
        videos: dict[str, Video] = {}
        for s in sets:
            for vid, v in s.videos.items():
                if vid in videos:
                    raise AnnotationError(f"{path}: video {vid!r} is in both the val and the test class files")
                videos[vid] = v
        labels = sorted({label for s in sets for label in s.labels})
        return AnnotationSet(videos, labels, str(path)), f"THUMOS14 class files ({', '.join(splits)})"
    aset = read_ground_truth(path, overrun="keep")
    layout = ("THUMOS14 CSV" if path.suffix.lower() == ".csv" else "ActivityNet / ActionFormer JSON"
              if '"database"' in read_text(path) else "BSN anet_anno_action JSON")
    return aset, layout


def _head(path: Path) -> str:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return f.read(4096)


def _is_thumos_csv(path: Path) -> bool:
    head = _head(path).splitlines()[:1]
    return path.suffix.lower() == ".csv" and bool(head) and (
        head[0].startswith("video,type,type_idx,start,end") or head[0].startswith("video-name,t-init,t-end"))


def _drafts_of(aset: AnnotationSet, probed: _Probe, bad: list[BadRow]) -> dict[str, _Draft]:
    probed.load(list(aset.videos))
    drafts: dict[str, _Draft] = {}
    for vid, v in aset.videos.items():
        where = f"{aset.source}: video {vid!r}"
        if vid in probed.missing:
            bad.append(BadRow(UNKNOWN_VIDEO, where, f"no file {vid}.<ext> in {probed.folder} "
                                                    f"({len(v.segments)} instance(s) dropped with it)"))
            continue
        instances = [_Instance(f"{where}: segment {i} ({s.label} [{s.start}, {s.end}] s)", None, s.start, s.end,
                               s.label) for i, s in enumerate(v.segments)]
        drafts[vid] = _Draft(where, instances, list(v.ambiguous), v.subset, v.duration, v.fps)
    return drafts


class _Probe:
    """Durations and fps of the videos in a folder (none without one), probed once per id."""

    def __init__(self, folder: str | os.PathLike[str] | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.files = find_videos(self.folder) if self.folder is not None else {}
        self.info: dict[str, tuple[float, float]] = {}
        self.missing: set[str] = set()

    def load(self, ids: list[str]) -> None:
        if self.folder is None:
            return
        for vid in ids:
            if vid in self.files:
                self.info[vid] = _probe(self.files[vid], vid)
            else:
                self.missing.add(vid)


# ---------------------------------------------------------------- checks
def _check(drafts: dict[str, _Draft], bad: list[BadRow], tolerance: float) -> None:
    """Drop (into ``bad``) instances with a negative time, ``end <= start``, an end past the duration, or
    repeating an earlier one of the same video."""
    for vid, d in drafts.items():
        seen: dict[tuple[float, float, str], _Instance] = {}
        good = []
        for x in d.instances:
            column = None  # the index of the column at fault in x.columns
            if x.start < 0 or x.end < 0:
                kind, reason = NEGATIVE, f"negative time: start {x.start:g} s, end {x.end:g} s"
                column = 0 if x.start < 0 else 1
            elif x.end <= x.start:
                kind, reason, column = NOT_AFTER_START, f"end {x.end:g} s <= start {x.start:g} s", 1
            elif d.duration is not None and x.end > d.duration + tolerance:
                named = f"video {vid!r}: " if x.line is not None else ""  # a table's where has no video id
                kind, reason, column = PAST_END, (f"{named}end {x.end:g} s is after the video's duration "
                                                  f"{d.duration:g} s (+{tolerance:g} s tolerance)"), 1
            elif (x.start, x.end, x.label) in seen:
                first = seen[(x.start, x.end, x.label)]
                kind, reason = DUPLICATE, (f"duplicate of line {first.line}" if first.line is not None else
                                           f"duplicate of {first.where.rsplit(': ', 1)[-1]}")
            else:
                seen[(x.start, x.end, x.label)] = x
                good.append(x)
                continue
            where = x.where if column is None or x.columns is None else f"{x.where}: column {x.columns[column]!r}"
            bad.append(BadRow(kind, where, reason, x.line))
        d.instances = good


# ---------------------------------------------------------------- import
def import_annotations(src: str | os.PathLike[str], *, videos_dir: str | os.PathLike[str] | None = None,
                       units: str = "seconds", fps: float | None = None, train_share: float | None = None,
                       seed: int = 0, train_subset: str | None = None, test_subset: str | None = None,
                       keep_empty: bool = False, tolerance: float = DURATION_TOLERANCE_S) -> ImportResult:
    """Read ``src`` (a table, a THUMOS14 class-file folder or CSV, an ActivityNet / BSN JSON), check every
    instance and return the good ones as an :class:`ImportResult` (nothing is written here).

    ``units``: ``"seconds"`` or ``"frames"`` (tables only; frames are divided by ``fps``, else the row's fps,
    else the video's). ``fps`` (frames / s): also the fps of videos with none. ``videos_dir``: durations and
    fps from ``<videos_dir>/<video id>.<ext>``; an annotated video without a file is bad; ``keep_empty``
    adds its videos with no annotation. Subsets: the source's; with ``train_share`` (or when the source has
    none, share :data:`DEFAULT_TRAIN_SHARE`) a seeded split (:func:`split_videos`) into ``train_subset`` /
    ``test_subset`` (default ``training`` / ``validation``). ``tolerance``: seconds an instance may end
    after its video's duration.
    """
    path = Path(src)
    if units not in UNITS:
        raise ConfigError(f"--units: expected one of {', '.join(UNITS)}, got {units!r}")
    if fps is not None and not 0 < fps <= MAX_TIME_S:
        raise ConfigError(f"--fps: expected a frame rate > 0, got {fps:g}")
    if keep_empty and videos_dir is None:
        raise ConfigError("--keep-empty keeps the videos of --videos DIR that have no annotation: give --videos")
    if not path.exists():
        raise AnnotationError(f"{path}: file not found")
    probed = _Probe(videos_dir)
    bad: list[BadRow] = []
    notes: list[str] = []
    if path.is_dir() or path.suffix.lower() == ".json" or _is_thumos_csv(path):
        if units != "seconds":
            raise ConfigError(f"--units frames: applies to a CSV / TSV table; {path} holds seconds")
        aset, layout = _read_known(path)
        drafts, labels, subset_column = _drafts_of(aset, probed, bad), list(aset.labels), False
    else:
        drafts, subset_column, delimiter = _read_table(path, units, fps, probed, bad)
        layout = ("TSV" if delimiter == "\t" else "CSV") + f", times in {units}"
        labels = None
    for vid, (duration, rate) in probed.info.items():
        if vid in drafts:
            drafts[vid].duration, drafts[vid].fps = duration, rate
    annotated = {vid for vid, d in drafts.items() if d.instances or d.ambiguous}
    _check(drafts, bad, tolerance)
    for vid in [vid for vid in annotated if not drafts[vid].instances and not drafts[vid].ambiguous]:
        del drafts[vid]  # every row of it was bad (a folder video comes back with --keep-empty)
    bad.sort(key=lambda b: (b.line is None, b.line or 0))
    if not keep_empty and probed.folder is not None:
        unused = sum(vid not in drafts for vid in probed.files)
        if unused:
            notes.append(f"{unused} video(s) in {probed.folder} have no annotation and were left out "
                         "(--keep-empty keeps them as background-only videos)")
    if keep_empty:
        extra = sorted(vid for vid in probed.files if vid not in drafts)
        probed.load(extra)
        for vid in extra:
            drafts[vid] = _Draft(f"{probed.folder}: video {vid!r} (no annotation, --keep-empty)",
                                 duration=probed.info[vid][0], fps=probed.info[vid][1])
    if not any(d.instances for d in drafts.values()):
        raise AnnotationError(f"{path}: no good annotation row to import" + (f" ({len(bad)} bad)" if bad else ""))
    split = _assign_subsets(drafts, train_share, seed, train_subset, test_subset, subset_column)
    if split is not None and len(drafts) < 2:
        notes.append(f"only one video: it is in {split[0]!r}, and {split[1]!r} is empty")
    guessed = [vid for vid, d in drafts.items() if d.duration is None and (d.instances or d.ambiguous)]
    for vid in guessed:
        d = drafts[vid]
        d.duration = max([x.end for x in d.instances] + [e for _, e in d.ambiguous])
    if guessed:
        notes.append(f"{len(guessed)} video(s) have no known duration (e.g. {guessed[0]!r}): set to their last "
                     "annotated end time, which may be early; --videos DIR reads the true durations")
    videos: dict[str, Video] = {}
    for vid, d in drafts.items():
        segments = [Segment(x.start, x.end, x.label) for x in d.instances if x.label != AMBIGUOUS]
        ambiguous = d.ambiguous + [(x.start, x.end) for x in d.instances if x.label == AMBIGUOUS]
        videos[vid] = Video(vid, segments, d.duration, d.fps if d.fps is not None else fps, d.subset, ambiguous)
    if labels is None:
        labels = sorted({s.label for v in videos.values() for s in v.segments})
    return ImportResult(AnnotationSet(videos, labels, str(path), labels_numbered=True), layout, bad, notes, split)


def _assign_subsets(drafts: dict[str, _Draft], train_share: float | None, seed: int, train_subset: str | None,
                    test_subset: str | None, subset_column: bool) -> tuple[str, str] | None:
    """Fill each draft's subset (module docstring); the (train, test) names when a split did it."""
    lacking = [vid for vid, d in drafts.items() if d.subset is None]
    if train_share is None and not lacking:
        if train_subset is not None or test_subset is not None:
            raise ConfigError("--train-subset / --test-subset name the subsets of a split, but the source has its "
                              "own subsets; add --split SHARE to split the videos anew")
        return None
    if train_share is None and len(lacking) < len(drafts):
        d = drafts[lacking[0]]
        what = "its subset cell is empty" if subset_column else "the source gives none"
        raise AnnotationError(f"{d.where}: video {lacking[0]!r} has no subset ({what}) while other videos have one; "
                              "fill it in, or --split SHARE to split all videos anew")
    names = (train_subset or DEFAULT_SUBSETS[0], test_subset or DEFAULT_SUBSETS[1])
    if normalize_subset(names[0]) == normalize_subset(names[1]):
        raise ConfigError(f"--train-subset and --test-subset must differ, got {names[0]!r} and {names[1]!r}")
    for vid, subset in split_videos(list(drafts), train_share or DEFAULT_TRAIN_SHARE, seed, names).items():
        drafts[vid].subset = subset
    return names
