"""Annotation and prediction formats, read into one typed in-memory form.

All times are in **seconds**. A ground-truth file and a predictions file read
into the same :class:`AnnotationSet`; predictions carry a ``score`` on every
segment, ground truth has ``score=None``.

Formats read: ActivityNet v1.3 / ActionFormer database JSON
(:func:`read_activitynet`), BSN's ``anet_anno_action.json``
(:func:`read_bsn_anet`), ActivityNet results JSON (:func:`read_predictions`),
the THUMOS14 CSVs and official per-class files (:func:`read_thumos_csv`,
:func:`read_thumos_class_files`), all dispatched by :func:`read_ground_truth`;
named THUMOS14 ground-truth variants (:data:`THUMOS14_VARIANTS`,
:func:`thumos14_ground_truth`); UCF101 split lists (:func:`read_ucf101_split`).

Conventions, the same in every reader:

* **Order.** ``AnnotationSet.videos`` iterates in file order and each video's
  ``segments`` are in file order (CSV: order of first appearance). The
  evaluator breaks score ties by this order; :meth:`AnnotationSet.to_arrays`
  flattens it.
* **Subsets** compare case-insensitively, with ``val``/``validation``,
  ``train``/``training`` and ``test``/``testing`` the same
  (:func:`normalize_subset`). ``Video.subset`` keeps the spelling of the file.
* **Ambiguous.** A segment labelled ``Ambiguous`` (THUMOS14's "don't care"
  intervals) goes to ``Video.ambiguous``, never to ``segments`` or ``labels``.
* **Validity.** ``0 <= start <= end``, finite; numeric strings are accepted
  (``thumos_gt.json`` writes times as strings). A segment ending more than
  :data:`DURATION_TOLERANCE_S` after the video's duration is an *overrun*:
  ActivityNet's own files overrun by up to 0.85 s (frame rounding), which the
  tolerance absorbs; THUMOS14's files hold 30 segments in 5 videos
  (video_test_0000270/0000814/0001081, video_validation_0000364/0000856) that
  lie wholly after the video's end, by up to 537 s. The benchmark is scored on
  them as written, so the readers' ``overrun`` policy defaults to ``"warn"``
  (keep, one :class:`AnnotationWarning` per file); ``"keep"``, ``"clip"`` (clamp
  to the duration, drop segments starting at or after it) and ``"error"`` are
  the alternatives.
* **Errors** are :class:`AnnotationError` naming the file, the video and the
  field. Video ids must be usable as file names (:func:`safe_video_id`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from gaf.errors import AnnotationError, DataError

__all__ = [
    "Segment", "Video", "AnnotationSet", "AnnotationError", "AnnotationWarning", "DURATION_TOLERANCE_S",
    "AMBIGUOUS", "normalize_subset", "safe_video_id", "read_activitynet", "read_bsn_anet", "read_predictions",
    "read_ground_truth", "read_thumos_csv", "read_thumos_class_files", "write_predictions", "write_activitynet",
    "read_ucf101_split", "THUMOS14_CLASSES", "THUMOS14_VARIANTS", "thumos14_ground_truth",
    "apply_thumos14_variant", "find_thumos14_dir",
]

DURATION_TOLERANCE_S = 1.0
"""Seconds a segment may end after the video's duration before it counts as an overrun."""
AMBIGUOUS = "Ambiguous"
OVERRUN_POLICIES = ("warn", "keep", "clip", "error")
_SUBSET_ALIASES = {"val": "validation", "train": "training", "test": "testing"}


class AnnotationWarning(UserWarning):
    """A ground-truth file loaded, but holds something suspicious (segments past the video's end)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One action instance (ground truth) or detection (prediction).

    ``start`` / ``end`` in seconds, ``start <= end``. ``score`` is ``None``
    for ground truth and a float for predictions.
    """

    start: float
    end: float
    label: str
    score: float | None = None


@dataclass(slots=True)
class Video:
    """One video's annotation.

    ``duration`` in seconds (``None`` when the format has none), ``fps`` in
    frames per second (``None`` when unknown), ``subset`` as written in the
    file (e.g. ``"validation"``, ``"Test"``), normalised by
    :meth:`AnnotationSet.subset`. ``ambiguous`` holds the THUMOS14
    ``Ambiguous`` intervals (seconds) when the ground-truth variant keeps
    them; they are never in ``segments``.
    """

    video_id: str
    segments: list[Segment] = field(default_factory=list)
    duration: float | None = None
    fps: float | None = None
    subset: str | None = None
    ambiguous: list[tuple[float, float]] = field(default_factory=list)


@dataclass(slots=True)
class AnnotationSet:
    """A set of videos with segments, plus the class list.

    ``labels`` is the ordered class list (index = label id, background not
    included). ``source`` names the file(s) it was read from, for error
    messages and reports. ``variant`` names the ground-truth version when gaf
    built it (e.g. THUMOS14's ``"thumos14-test-212"``), else ``None``.
    ``videos`` iterates in file order (see the module docstring).
    """

    videos: dict[str, Video]
    labels: list[str]
    source: str = "<memory>"
    variant: str | None = None

    @property
    def label_index(self) -> dict[str, int]:
        """``{label: id}``, ids 0..K-1 in ``labels`` order."""
        return {name: i for i, name in enumerate(self.labels)}

    @property
    def num_segments(self) -> int:
        return sum(len(v.segments) for v in self.videos.values())

    @property
    def num_ambiguous(self) -> int:
        return sum(len(v.ambiguous) for v in self.videos.values())

    def subsets(self) -> dict[str, int]:
        """``{subset as written: number of videos}``, in order of first appearance."""
        out: dict[str, int] = {}
        for v in self.videos.values():
            out[str(v.subset)] = out.get(str(v.subset), 0) + 1
        return out

    def subset(self, name: str) -> AnnotationSet:
        """The videos whose subset matches ``name`` (aliases as :func:`normalize_subset`), in file order."""
        want = normalize_subset(name)
        videos = {k: v for k, v in self.videos.items() if normalize_subset(v.subset) == want}
        if not videos:
            found = ", ".join(self.subsets()) or "none"
            raise AnnotationError(f"{self.source}: no video has subset {name!r} (field 'subset'); "
                                  f"subsets in the file: {found}")
        return AnnotationSet(videos, list(self.labels), self.source, self.variant)

    def overruns(self, tolerance: float = DURATION_TOLERANCE_S) -> list[tuple[str, int, Segment]]:
        """``(video_id, index, segment)`` of segments ending > ``tolerance`` s after their video's duration."""
        return [(vid, i, s) for vid, v in self.videos.items() if v.duration is not None
                for i, s in enumerate(v.segments) if s.end > v.duration + tolerance]

    def to_arrays(self) -> dict[str, Any]:
        """Every segment flattened in file order, as NumPy arrays of length N.

        ``video`` (int64, index into ``list(videos)``), ``start`` / ``end``
        (float64 seconds), ``label`` (int64 index into ``labels``), ``score``
        (float64; NaN for ground truth). Ranking by ``-score`` with a stable
        sort reproduces the file-order tie-break.
        """
        import numpy as np

        index = self.label_index
        vids, rows = [], []
        for k, (vid, v) in enumerate(self.videos.items()):
            for i, s in enumerate(v.segments):
                if s.label not in index:
                    raise AnnotationError(f"{self.source}: video {vid!r}: segment {i}: label: "
                                          f"{s.label!r} is not in the class list")
                vids.append(k)
                rows.append((s.start, s.end, index[s.label], math.nan if s.score is None else s.score))
        table = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
        return {"video": np.asarray(vids, dtype=np.int64), "start": table[:, 0].copy(), "end": table[:, 1].copy(),
                "label": table[:, 2].astype(np.int64), "score": table[:, 3].copy()}


# ---------------------------------------------------------------- checks
def normalize_subset(name: str | None) -> str | None:
    """Lower-case ``name`` and map ``val``→``validation``, ``train``→``training``, ``test``→``testing``."""
    if name is None:
        return None
    key = str(name).strip().lower()
    return _SUBSET_ALIASES.get(key, key)


def safe_video_id(video_id: Any, where: str) -> str:
    """Return ``video_id`` if it is safe as a file name, else raise AnnotationError naming ``where``.

    Refused: non-strings, ``""``, ``"."``, ``".."``, ids starting with ``..``,
    ids holding ``/``, ``\\`` or NUL.
    """
    if not isinstance(video_id, str):
        raise AnnotationError(f"{where}: video id must be a string, got {type(video_id).__name__}")
    if (not video_id or video_id in (".", "..") or video_id.startswith("..")
            or any(c in video_id for c in ("/", "\\", "\x00"))):
        raise AnnotationError(f"{where}: video {video_id!r}: unsafe video id (it names a file: no '/', '\\', "
                              "NUL, '.', '..', leading '..' or empty id)")
    return video_id


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(x: Any, where: str) -> float:
    """A finite float from a JSON number or a numeric string."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        try:
            value = float(x)
        except OverflowError:
            raise AnnotationError(f"{where}: number too large: {_short(x)}") from None
    elif isinstance(x, str):
        try:
            value = float(x.strip())
        except ValueError:
            raise AnnotationError(f"{where}: not a number: {_short(x)}") from None
    else:
        raise AnnotationError(f"{where}: expected a number, got {_short(x)}")
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: must be finite, got {_short(x)}")
    return value


def _positive(x: Any, where: str) -> float | None:
    if x is None:
        return None
    value = _num(x, where)
    if value <= 0:
        raise AnnotationError(f"{where}: must be > 0, got {_short(x)}")
    return value


def _times(start: Any, end: Any, where: str) -> tuple[float, float]:
    s, e = _num(start, f"{where}[0]"), _num(end, f"{where}[1]")
    if e < s:
        raise AnnotationError(f"{where}: end {e} < start {s} (reversed segment)")
    if s < 0:
        raise AnnotationError(f"{where}: start {s} < 0 (before the video starts)")
    return s, e


def _segment(obj: Any, where: str) -> tuple[float, float]:
    if obj is None:
        raise AnnotationError(f"{where}: missing")
    if not isinstance(obj, (list, tuple)) or len(obj) != 2:
        raise AnnotationError(f"{where}: expected [start, end] in seconds, got {_short(obj)}")
    return _times(obj[0], obj[1], where)


def _label(x: Any, where: str) -> str:
    if not isinstance(x, str) or not x.strip():
        raise AnnotationError(f"{where}: expected a non-empty class name, got {_short(x)}")
    return x


def _obj(x: Any, where: str, what: str, key: str = "key") -> dict:
    """``x`` if it is a JSON object without duplicate keys (``key`` names what its keys are)."""
    if not isinstance(x, dict):
        raise AnnotationError(f"{where}: {what} must be a JSON object, got {type(x).__name__}")
    if isinstance(x, _DupDict):
        raise AnnotationError(f"{where}: duplicate {key} {x.dups[0]!r} in {what}")
    return x


def _apply_overrun(aset: AnnotationSet, policy: str, tolerance: float = DURATION_TOLERANCE_S) -> None:
    """Check segments against durations; ``policy`` in :data:`OVERRUN_POLICIES` (module docstring)."""
    if policy not in OVERRUN_POLICIES:
        raise ValueError(f"overrun must be one of {OVERRUN_POLICIES}, got {policy!r}")
    if policy == "keep":
        return
    bad = aset.overruns(tolerance)
    if not bad:
        return
    if policy == "error":
        vid, i, s = bad[0]
        raise AnnotationError(f"{aset.source}: video {vid!r}: segment {i} ({s.label}): end {s.end} s is after the "
                              f"video's duration {aset.videos[vid].duration} s (+{tolerance} s tolerance)")
    if policy == "warn":
        vid, i, s = max(bad, key=lambda b: b[2].end - (aset.videos[b[0]].duration or 0.0))
        warnings.warn(AnnotationWarning(
            f"{aset.source}: {len(bad)} segment(s) in {len({b[0] for b in bad})} video(s) end more than "
            f"{tolerance} s after the video's duration (worst: video {vid!r} segment [{s.start}, {s.end}] s, "
            f"duration {aset.videos[vid].duration} s); kept as written (overrun='clip' or 'error' to change)"),
            stacklevel=3)
        return
    for v in aset.videos.values():  # clip
        if v.duration is not None and any(s.end > v.duration for s in v.segments):
            v.segments = [Segment(s.start, min(s.end, v.duration), s.label, s.score)
                          for s in v.segments if s.start < v.duration]


# ---------------------------------------------------------------- JSON readers
class _DupDict(dict):
    """A JSON object that had duplicate keys (``dups``); readers refuse it where they look."""

    __slots__ = ("dups",)


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        out = _DupDict(out)
        out.dups = [k for k, _ in pairs if k in seen or seen.add(k)]
    return out


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({e.strerror or e})") from None


def _load_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text, object_pairs_hook=_pairs_hook)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer literal over Python's digit limit
        raise AnnotationError(f"{path}: invalid JSON: {e}") from None


def _root(path: Path) -> dict:
    root = _load_json(path)
    if not isinstance(root, dict):
        raise AnnotationError(f"{path}: top level must be a JSON object, got {type(root).__name__}")
    return _obj(root, str(path), "the top-level object")


def read_activitynet(path: str | os.PathLike[str], *, subset: str | None = None, require_duration: bool = False,
                     overrun: str = "warn") -> AnnotationSet:
    """Read an ActivityNet v1.3 / ActionFormer ground-truth JSON (``{"database": {vid: entry}}``).

    Entry fields: ``subset``, ``duration`` (s, needed only with
    ``require_duration``), ``fps``, ``annotations`` (list of ``{"segment":
    [s, e], "label", optional "label_id"}``; missing = none). Labels: a
    top-level ``"labels"`` list when present (gaf writes one), else ordered by
    ``label_id`` when every annotation has one (ids must map one-to-one to
    names, 0..K-1), else sorted names. Labels come from the whole file, so
    ``subset`` filtering keeps the ids.
    """
    p = Path(path)
    root = _root(p)
    if "database" not in root:
        hint = " (this is a predictions file: read it with read_predictions)" if "results" in root else ""
        raise AnnotationError(f"{p}: missing field 'database'{hint}")
    aset = _from_database(root, str(p), require_duration)
    _apply_overrun(aset, overrun)
    return aset.subset(subset) if subset is not None else aset


def _from_database(root: dict, src: str, require_duration: bool) -> AnnotationSet:
    db = _obj(root["database"], f"{src}: database", "'database'", "video id")
    videos: dict[str, Video] = {}
    named: list[tuple[str, Any, str]] = []
    for vid, entry in db.items():
        safe_video_id(vid, f"{src}: database")
        w = f"{src}: video {vid!r}"
        entry = _obj(entry, w, "the video entry")
        duration = _positive(entry.get("duration"), f"{w}: duration")
        if duration is None and require_duration:
            raise AnnotationError(f"{w}: duration: missing (required here)")
        fps = _positive(entry.get("fps"), f"{w}: fps")
        sub = entry.get("subset")
        if sub is not None and not isinstance(sub, str):
            raise AnnotationError(f"{w}: subset: expected a string, got {_short(sub)}")
        anns = entry.get("annotations", [])
        if not isinstance(anns, list):
            raise AnnotationError(f"{w}: annotations: expected a list, got {type(anns).__name__}")
        segments, ambiguous = [], []
        for i, a in enumerate(anns):
            aw = f"{w}: annotations[{i}]"
            a = _obj(a, aw, "an annotation")
            if "segment" not in a:
                raise AnnotationError(f"{aw}.segment: missing")
            s, e = _segment(a["segment"], f"{aw}.segment")
            label = _label(a.get("label"), f"{aw}.label")
            if label == AMBIGUOUS:
                ambiguous.append((s, e))
                continue
            lid = a.get("label_id")
            if lid is not None and (not isinstance(lid, int) or isinstance(lid, bool) or lid < 0):
                raise AnnotationError(f"{aw}.label_id: expected an integer >= 0, got {_short(lid)}")
            named.append((label, lid, aw))
            segments.append(Segment(s, e, label))
        extra = entry.get("ambiguous", [])
        if not isinstance(extra, list):
            raise AnnotationError(f"{w}: ambiguous: expected a list of [start, end], got {_short(extra)}")
        ambiguous += [_segment(x, f"{w}: ambiguous[{i}]") for i, x in enumerate(extra)]
        videos[vid] = Video(vid, segments, duration, fps, sub, ambiguous)
    return AnnotationSet(videos, _label_list(named, root.get("labels"), src), src)


def _label_list(named: list[tuple[str, Any, str]], declared: Any, src: str) -> list[str]:
    """Class list from a declared ``labels`` list, from ``label_id``s, or sorted names."""
    by_id: dict[int, str] = {}
    by_label: dict[str, int] = {}
    if declared is not None:
        if (not isinstance(declared, list) or not all(isinstance(x, str) and x.strip() for x in declared)
                or len(set(declared)) != len(declared)):
            raise AnnotationError(f"{src}: labels: expected a list of distinct class names")
        by_label = {name: i for i, name in enumerate(declared)}
    with_id = sum(lid is not None for _, lid, _ in named)
    if 0 < with_id < len(named):
        aw = next(aw for _, lid, aw in named if lid is None)
        raise AnnotationError(f"{aw}.label_id: missing (other annotations in the file have one)")
    for label, lid, aw in named:
        if declared is not None and label not in by_label:
            raise AnnotationError(f"{aw}.label: {label!r} is not in the file's 'labels' list")
        if lid is None:
            continue
        if by_id.setdefault(lid, label) != label:
            raise AnnotationError(f"{aw}.label_id: {lid} is {label!r} here but {by_id[lid]!r} elsewhere")
        if by_label.setdefault(label, lid) != lid:
            raise AnnotationError(f"{aw}.label_id: {label!r} has id {lid} here but {by_label[label]} elsewhere")
    if declared is not None:
        return list(declared)
    if not by_id:
        return sorted({label for label, _, _ in named})
    missing = next((i for i in range(len(by_id)) if i not in by_id), None)
    if missing is not None:
        raise AnnotationError(f"{src}: label_id: no annotation has id {missing} (ids must be 0..K-1; add a "
                              "top-level 'labels' list to name every class)")
    return [by_id[i] for i in range(len(by_id))]


def read_bsn_anet(path: str | os.PathLike[str], *, subset: str | None = None,
                  video_info: str | os.PathLike[str] | None = None, overrun: str = "warn") -> AnnotationSet:
    """Read BSN's ActivityNet layout ``{vid: {"duration_second", "annotations", ...}}``.

    Subsets come from ``video_info`` (default: ``video_info_new.csv`` beside
    the file, columns ``video,...,subset``); without it ``subset`` is None.
    Labels are the sorted names. ``fps`` is left None (the file has none).
    """
    p = Path(path)
    aset = _from_bsn(_root(p), p, Path(video_info) if video_info is not None else None)
    _apply_overrun(aset, overrun)
    return aset.subset(subset) if subset is not None else aset


def _from_bsn(root: dict, p: Path, info_path: Path | None) -> AnnotationSet:
    info_path = info_path or p.with_name("video_info_new.csv")
    subsets: dict[str, str] = {}
    if info_path.is_file():
        header, rows = _read_csv(info_path)
        if "video" not in header or "subset" not in header:
            raise AnnotationError(f"{info_path}: header: expected columns 'video' and 'subset', got {header}")
        iv, isub = header.index("video"), header.index("subset")
        subsets = {row[iv]: row[isub] for _, row in rows}
    videos: dict[str, Video] = {}
    for vid, entry in root.items():
        safe_video_id(vid, str(p))
        w = f"{p}: video {vid!r}"
        entry = _obj(entry, w, "the video entry")
        if "duration_second" not in entry:
            raise AnnotationError(f"{w}: duration_second: missing")
        duration = _positive(entry["duration_second"], f"{w}: duration_second")
        anns = entry.get("annotations", [])
        if not isinstance(anns, list):
            raise AnnotationError(f"{w}: annotations: expected a list, got {type(anns).__name__}")
        video = Video(vid, [], duration, None, subsets.get(vid))
        for i, a in enumerate(anns):
            aw = f"{w}: annotations[{i}]"
            a = _obj(a, aw, "an annotation")
            s, e = _segment(a.get("segment"), f"{aw}.segment")
            label = _label(a.get("label"), f"{aw}.label")
            if label == AMBIGUOUS:
                video.ambiguous.append((s, e))
            else:
                video.segments.append(Segment(s, e, label))
        videos[vid] = video
    labels = sorted({s.label for v in videos.values() for s in v.segments})
    return AnnotationSet(videos, labels, str(p))


def read_predictions(path: str | os.PathLike[str], *, labels: list[str] | None = None) -> AnnotationSet:
    """Read an ActivityNet results JSON ``{"results": {vid: [{"segment", "label", "score"}]}}``.

    Videos and detections keep file order (the evaluator's tie-break). With
    ``labels`` every label must be among them and the set's ``labels`` is
    ``labels``; without, the sorted names found. Durations are None.
    """
    p = Path(path)
    root = _root(p)
    if "results" not in root:
        hint = " (this is a ground-truth file: read it with read_ground_truth)" if "database" in root else ""
        raise AnnotationError(f"{p}: missing field 'results'{hint}")
    results = _obj(root["results"], f"{p}: results", "'results'", "video id")
    known = set(labels) if labels is not None else None
    videos: dict[str, Video] = {}
    for vid, dets in results.items():
        safe_video_id(vid, f"{p}: results")
        w = f"{p}: video {vid!r}"
        if not isinstance(dets, list):
            raise AnnotationError(f"{w}: results: expected a list of detections, got {type(dets).__name__}")
        segments = []
        for i, d in enumerate(dets):
            dw = f"{w}: detection {i}"
            d = _obj(d, dw, "a detection")
            s, e = _segment(d.get("segment"), f"{dw}: segment")
            label = _label(d.get("label"), f"{dw}: label")
            if known is not None and label not in known:
                raise AnnotationError(f"{dw}: label: unknown label {label!r} (not among the {len(known)} classes)")
            if "score" not in d:
                raise AnnotationError(f"{dw}: score: missing")
            segments.append(Segment(s, e, label, _num(d["score"], f"{dw}: score")))
        videos[vid] = Video(vid, segments)
    found = sorted({s.label for v in videos.values() for s in v.segments})
    return AnnotationSet(videos, list(labels) if labels is not None else found, str(p))


# ---------------------------------------------------------------- writers
def _atomic_write_json(path: str | os.PathLike[str], doc: Any, indent: int | None) -> Path:
    p = Path(path)
    try:
        data = json.dumps(doc, indent=indent, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except ValueError as e:  # NaN / inf, or a lone surrogate in a string
        raise AnnotationError(f"{p}: cannot write: {e}") from None
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _checked(seg: Segment, where: str) -> tuple[float, float]:
    return _times(seg.start, seg.end, f"{where}: segment")


def write_predictions(aset: AnnotationSet, path: str | os.PathLike[str], *, version: str = "VERSION 1.3") -> Path:
    """Atomically write ``aset`` as an ActivityNet results JSON (videos and detections in ``aset`` order).

    Every segment needs a finite ``score``. Videos without detections are
    written as empty lists. Returns the path.
    """
    results: dict[str, list[dict]] = {}
    for vid, video in aset.videos.items():
        safe_video_id(vid, f"{path}")
        items = []
        for i, seg in enumerate(video.segments):
            w = f"{path}: video {vid!r}: detection {i}"
            s, e = _checked(seg, w)
            if seg.score is None:
                raise AnnotationError(f"{w}: score: missing (predictions need a score)")
            items.append({"label": _label(seg.label, f"{w}: label"), "score": _num(seg.score, f"{w}: score"),
                          "segment": [s, e]})
        results[vid] = items
    doc = {"version": version, "results": results,
           "external_data": {"used": False, "details": f"written by gaf from {aset.source}"}}
    return _atomic_write_json(path, doc, indent=None)


def write_activitynet(aset: AnnotationSet, path: str | os.PathLike[str], *, version: str | None = None) -> Path:
    """Atomically write ``aset`` as an ActionFormer-style database JSON.

    Per video: ``subset``, ``duration``, ``fps`` (when known), ``annotations``
    with ``label``, ``segment`` (s), ``segment(frames)`` (when fps is known)
    and ``label_id`` (index in ``aset.labels``), plus ``ambiguous`` when the
    video has Ambiguous intervals. A top-level ``labels`` list keeps classes
    without instances. ``version`` defaults to ``aset.variant`` or ``"gaf"``.
    """
    index = aset.label_index
    db: dict[str, dict] = {}
    for vid, v in aset.videos.items():
        safe_video_id(vid, f"{path}")
        entry: dict[str, Any] = {}
        if v.subset is not None:
            entry["subset"] = v.subset
        if v.duration is not None:
            entry["duration"] = _positive(v.duration, f"{path}: video {vid!r}: duration")
        if v.fps is not None:
            entry["fps"] = _positive(v.fps, f"{path}: video {vid!r}: fps")
        anns = []
        for i, seg in enumerate(v.segments):
            w = f"{path}: video {vid!r}: annotations[{i}]"
            s, e = _checked(seg, w)
            if seg.label not in index:
                raise AnnotationError(f"{w}.label: {seg.label!r} is not in the set's labels")
            ann: dict[str, Any] = {"label": seg.label, "segment": [s, e]}
            if v.fps is not None:
                ann["segment(frames)"] = [round(s * v.fps, 6), round(e * v.fps, 6)]
            ann["label_id"] = index[seg.label]
            anns.append(ann)
        entry["annotations"] = anns
        if v.ambiguous:
            entry["ambiguous"] = [list(_times(s, e, f"{path}: video {vid!r}: ambiguous[{i}]"))
                                  for i, (s, e) in enumerate(v.ambiguous)]
        db[vid] = entry
    doc = {"version": version or aset.variant or "gaf", "labels": list(aset.labels), "database": db}
    return _atomic_write_json(path, doc, indent=1)


# ---------------------------------------------------------------- THUMOS14 files
def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) of a comma-separated file; rows must match the header's width."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [c.strip() for c in next(reader, [])]
            rows = []
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise AnnotationError(f"{path}: line {reader.line_num}: {len(row)} columns, the header has "
                                          f"{len(header)} ({','.join(header)})")
                rows.append((reader.line_num, [c.strip() for c in row]))
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise AnnotationError(f"{path}: unreadable CSV ({e})") from None
    return header, rows


def _read_video_info(folder: Path) -> dict[str, tuple[float, float]]:
    """``{video: (duration s, fps)}`` from every ``*_video_info.csv`` in ``folder`` (duration = count / fps)."""
    out: dict[str, tuple[float, float]] = {}
    for f in sorted(folder.glob("*_video_info.csv")):
        header, rows = _read_csv(f)
        if header[:1] != ["video"] or "fps" not in header or "count" not in header:
            raise AnnotationError(f"{f}: header: expected video,fps,sample_fps,count,sample_count, got {header}")
        ifps, icount = header.index("fps"), header.index("count")
        for line, row in rows:
            w = f"{f}: line {line}: video {row[0]!r}"
            fps = _positive(row[ifps], f"{w}: fps")
            count = _positive(row[icount], f"{w}: count")
            out[safe_video_id(row[0], f"{f}: line {line}")] = (count / fps, fps)
    return out


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _subset_of(video_id: str, path: Path) -> str | None:
    for key, name in (("validation", "validation"), ("test", "test")):
        if video_id.startswith(f"video_{key}_"):
            return name
    stem = path.name.lower()
    return "validation" if stem.startswith("val") else "test" if stem.startswith("test") else None


def read_thumos_csv(path: str | os.PathLike[str], *, overrun: str = "warn") -> AnnotationSet:
    """Read a THUMOS14 ground-truth CSV, either layout.

    * ``video,type,type_idx,start,end,startFrame,endFrame`` (AFSD's
      ``*_Annotation*.csv``): durations and fps from the ``*_video_info.csv``
      files beside it, when present (videos not listed get None).
    * ``video-name,t-init,t-end,...,video-duration,frame-rate,...,label-idx``
      (``thumos14_test_groundtruth.csv``): ``label-idx`` indexes the 20
      classes in ``Class Index_Detection.txt`` order, -1 = Ambiguous.

    Videos in order of first appearance; subset from the video id
    (``video_validation_*`` / ``video_test_*``). Labels: sorted names found.
    """
    p = Path(path)
    header, rows = _read_csv(p)
    videos: dict[str, Video] = {}
    if header[:5] == ["video", "type", "type_idx", "start", "end"]:
        info = _read_video_info(p.parent)
        type_ids: dict[str, str] = {}
        for line, row in rows:
            w = f"{p}: line {line}: video {row[0]!r}"
            vid = safe_video_id(row[0], f"{p}: line {line}")
            label = _label(row[1], f"{w}: type")
            if type_ids.setdefault(label, row[2]) != row[2]:
                raise AnnotationError(f"{w}: type_idx: {label!r} has {row[2]} here but {type_ids[label]} before")
            _add(videos, vid, info.get(vid, (None, None)), p, label, _times(row[3], row[4], f"{w}: start/end"))
    elif header[:3] == ["video-name", "t-init", "t-end"] and "label-idx" in header:
        classes = _thumos14_class_names(p.parent)
        col = {name: header.index(name) for name in ("video-duration", "frame-rate", "label-idx")}
        for line, row in rows:
            w = f"{p}: line {line}: video {row[0]!r}"
            vid = safe_video_id(row[0], f"{p}: line {line}")
            meta = (_positive(row[col["video-duration"]], f"{w}: video-duration"),
                    _positive(row[col["frame-rate"]], f"{w}: frame-rate"))
            idx = _int(row[col["label-idx"]])
            if idx is not None and -1 <= idx < len(classes):
                label = AMBIGUOUS if idx == -1 else classes[idx]
            else:
                raise AnnotationError(f"{w}: label-idx: expected -1..{len(classes) - 1}, got {row[col['label-idx']]!r}")
            if vid in videos and (videos[vid].duration, videos[vid].fps) != meta:
                raise AnnotationError(f"{w}: video-duration/frame-rate: {meta} differ from an earlier row's "
                                      f"{(videos[vid].duration, videos[vid].fps)}")
            _add(videos, vid, meta, p, label, _times(row[1], row[2], f"{w}: t-init/t-end"))
    else:
        raise AnnotationError(f"{p}: header: unknown THUMOS14 CSV layout {','.join(header)!r} (expected "
                              "video,type,type_idx,start,end,... or video-name,t-init,t-end,...,label-idx)")
    labels = sorted({s.label for v in videos.values() for s in v.segments})
    aset = AnnotationSet(videos, labels, str(p))
    _apply_overrun(aset, overrun)
    return aset


def _add(videos: dict[str, Video], vid: str, meta: tuple[float | None, float | None], path: Path, label: str,
         times: tuple[float, float]) -> None:
    video = videos.get(vid)
    if video is None:
        video = videos[vid] = Video(vid, [], meta[0], meta[1], _subset_of(vid, path))
    if label == AMBIGUOUS:
        video.ambiguous.append(times)
    else:
        video.segments.append(Segment(times[0], times[1], label))


def read_thumos_class_files(folder: str | os.PathLike[str], split: str, *, overrun: str = "warn") -> AnnotationSet:
    """Read THUMOS14's official per-class files ``<Class>_<split>.txt`` (lines ``video start end``).

    ``split`` is ``"val"`` or ``"test"`` (aliases as :func:`normalize_subset`).
    ``Ambiguous_<split>.txt`` fills ``Video.ambiguous``. Videos sorted by id,
    segments by (start, end, label); durations and fps from
    ``*_video_info.csv`` in the folder when present. Labels: sorted class names.
    """
    root = Path(folder)
    short = {"validation": "val", "testing": "test"}.get(normalize_subset(split) or "")
    if short is None:
        raise AnnotationError(f"{root}: split must be 'val' or 'test', got {split!r}")
    files = sorted(root.glob(f"*_{short}.txt"))
    if not files:
        raise AnnotationError(f"{root}: no '<Class>_{short}.txt' files")
    info = _read_video_info(root)
    videos: dict[str, Video] = {}
    for f in files:
        label = f.name[: -len(f"_{short}.txt")]
        for line, text in enumerate(_read_text(f).splitlines(), 1):
            parts = text.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise AnnotationError(f"{f}: line {line}: expected 'video start end', got {text.strip()!r}")
            vid = safe_video_id(parts[0], f"{f}: line {line}")
            _add(videos, vid, info.get(vid, (None, None)), f, label,
                 _times(parts[1], parts[2], f"{f}: line {line}: video {vid!r}: start/end"))
    for v in videos.values():
        v.segments.sort(key=lambda s: (s.start, s.end, s.label))
        v.ambiguous.sort()
    ordered = {vid: videos[vid] for vid in sorted(videos)}
    aset = AnnotationSet(ordered, sorted({s.label for v in ordered.values() for s in v.segments}), str(root))
    _apply_overrun(aset, overrun)
    return aset


def read_ground_truth(path: str | os.PathLike[str], *, subset: str | None = None, variant: str | None = None,
                      overrun: str = "warn") -> AnnotationSet:
    """Read ground truth in any supported layout, detected from the path and content.

    A folder: THUMOS14 per-class files (``subset`` picks val/test; needed
    when both are there). ``.csv``: :func:`read_thumos_csv`. JSON with
    ``database``: :func:`read_activitynet`; a bare ``{vid: {"duration_second",
    ...}}`` object: :func:`read_bsn_anet`. ``variant`` (a
    :data:`THUMOS14_VARIANTS` name) then shapes the set and checks its counts.
    """
    p = Path(path)
    if p.is_dir():
        splits = [s for s in ("val", "test") if any(p.glob(f"*_{s}.txt"))]
        if subset is None and variant is not None:
            subset = _variant_spec(variant)[0].split
        if subset is None and len(splits) != 1:
            raise AnnotationError(f"{p}: holds class files for {splits or 'no split'}: pass subset='val' or 'test'")
        aset = read_thumos_class_files(p, subset or splits[0], overrun=overrun)
    elif p.suffix.lower() == ".csv":
        aset = read_thumos_csv(p, overrun=overrun)
        aset = aset.subset(subset) if subset is not None else aset
    else:
        root = _root(p)
        if "database" in root:
            aset = _from_database(root, str(p), False)
        elif "results" in root:
            raise AnnotationError(f"{p}: has 'results', not 'database': this is a predictions file")
        elif root and all(isinstance(e, dict) and "duration_second" in e for e in root.values()):
            aset = _from_bsn(root, p, None)
        else:
            raise AnnotationError(f"{p}: unknown annotation layout: expected a 'database' field (ActivityNet / "
                                  "ActionFormer) or BSN's {video: {duration_second, annotations}}")
        _apply_overrun(aset, overrun)
        aset = aset.subset(subset) if subset is not None else aset
    return apply_thumos14_variant(aset, variant) if variant is not None else aset


def read_ucf101_split(folder: str | os.PathLike[str], split: int = 1
                      ) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """UCF101's official split lists: ``(classes, train, test)``.

    ``classInd.txt`` (``<1-based id> <Class>``), ``trainlist0N.txt`` (``path
    id``), ``testlist0N.txt`` (``path``; label from the class folder). Returns
    0-based label ids; every path's folder must name its class.
    """
    root = Path(folder)

    def lines(name: str) -> Iterable[tuple[str, int, list[str]]]:
        f = root / name
        for n, line in enumerate(_read_text(f).splitlines(), 1):
            if line.strip():
                yield f"{f}: line {n}", n, line.split()

    classes: list[str] = []
    for where, _, parts in lines("classInd.txt"):
        if len(parts) != 2 or parts[0] != str(len(classes) + 1):
            raise AnnotationError(f"{where}: expected '{len(classes) + 1} <ClassName>', got {' '.join(parts)!r}")
        classes.append(parts[1])
    index = {name: i for i, name in enumerate(classes)}

    def clip(where: str, parts: list[str], with_label: bool) -> tuple[str, int]:
        if len(parts) != (2 if with_label else 1):
            raise AnnotationError(f"{where}: expected '<Class>/<clip>.avi{' <id>' if with_label else ''}', "
                                  f"got {' '.join(parts)!r}")
        path = parts[0]
        folder_name = path.split("/")[0]
        if path.startswith("/") or ".." in path.split("/") or folder_name not in index or "/" not in path:
            raise AnnotationError(f"{where}: path: {path!r} is not '<Class>/<clip>' with a class of classInd.txt")
        label = index[folder_name]
        if with_label and _int(parts[1]) != label + 1:
            raise AnnotationError(f"{where}: label: {parts[1]} but the folder {folder_name!r} is class {label + 1}")
        return path, label

    train = [clip(w, parts, True) for w, _, parts in lines(f"trainlist0{split}.txt")]
    test = [clip(w, parts, False) for w, _, parts in lines(f"testlist0{split}.txt")]
    return classes, train, test


# ---------------------------------------------------------------- THUMOS14 ground-truth variants
THUMOS14_CLASSES: tuple[str, ...] = (
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling", "CricketShot",
    "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault",
    "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking")
"""The 20 detection classes; this order (alphabetical = UCF101 id order) is the label-id order of every source."""

_NODUP = "-nodup"


@dataclass(frozen=True, slots=True)
class _VariantSpec:
    split: str  # "test" | "validation"
    num_videos: int
    source: str  # file in the THUMOS14 folder that thumos14_ground_truth builds it from
    keep_ambiguous: bool
    exclude: frozenset[str] = frozenset()


_VARIANT_SPECS = {
    "thumos14-test-212": _VariantSpec("test", 212, "thumos14_test_groundtruth.csv", False),
    "thumos14-test-213-ambiguous": _VariantSpec("test", 213, "thumos14_test_groundtruth.csv", True),
    "thumos14-test-210": _VariantSpec("test", 210, "thumos14_test_groundtruth.csv", False,
                                      frozenset({"video_test_0000270", "video_test_0001496"})),
    "thumos14-val-200": _VariantSpec("validation", 200, "val_Annotation.csv", False),
    "thumos14-val-200-ambiguous": _VariantSpec("validation", 200, "val_Annotation.csv", True),
}
_NODUP_NOTE = "; minus the Diving copy of each CliffDiving instance"
THUMOS14_VARIANTS: dict[str, str] = {
    "thumos14-test-212": "THUMOS14 test, Ambiguous dropped: 212 videos, 3358 instances (= test_Annotation_ours.csv, "
                         "thumos14.json Test); each CliffDiving instance is also labelled Diving, as in every "
                         "source file",
    "thumos14-test-213-ambiguous": "THUMOS14 test, all 213 videos: 3358 instances + 99 Ambiguous intervals kept "
                                   "apart in Video.ambiguous",
    "thumos14-test-210": "THUMOS14 test without video_test_0000270 and video_test_0001496 (wrong annotations): "
                         "210 videos, 3311 instances (= thumos_gt.json test)",
    "thumos14-val-200": "THUMOS14 validation (the usual training set), Ambiguous dropped: 200 videos, 3007 "
                        "instances (= val_Annotation_ours.csv, thumos14.json Validation)",
    "thumos14-val-200-ambiguous": "THUMOS14 validation: 200 videos, 3007 instances + 89 Ambiguous intervals",
    "thumos14-test-212-nodup": "as thumos14-test-212, 3141 instances" + _NODUP_NOTE,
    "thumos14-test-213-ambiguous-nodup": "as thumos14-test-213-ambiguous, 3141 instances" + _NODUP_NOTE,
    "thumos14-test-210-nodup": "as thumos14-test-210, 3094 instances" + _NODUP_NOTE,
    "thumos14-val-200-nodup": "as thumos14-val-200, 2864 instances" + _NODUP_NOTE,
    "thumos14-val-200-ambiguous-nodup": "as thumos14-val-200-ambiguous, 2864 instances" + _NODUP_NOTE,
}
"""Named THUMOS14 ground-truth versions (name → one line). Every source file labels each CliffDiving
instance a second time as Diving (as the official THUMOS14 Diving lists do); ``-nodup`` removes the copies."""


def _variant_spec(name: str) -> tuple[_VariantSpec, bool]:
    if name not in THUMOS14_VARIANTS:
        raise AnnotationError(f"unknown THUMOS14 ground-truth variant {name!r}; known: {', '.join(THUMOS14_VARIANTS)}")
    nodup = name.endswith(_NODUP)
    return _VARIANT_SPECS[name[: -len(_NODUP)] if nodup else name], nodup


def _thumos14_class_names(folder: Path) -> list[str]:
    """Class names in ``Class Index_Detection.txt`` order when the file is in ``folder``, else the built-in list."""
    f = folder / "Class Index_Detection.txt"
    if not f.is_file():
        return list(THUMOS14_CLASSES)
    names = []
    for n, line in enumerate(_read_text(f).splitlines(), 1):
        parts = line.split()
        if parts and (len(parts) != 2 or not parts[0].isdigit()):
            raise AnnotationError(f"{f}: line {n}: expected '<id> <ClassName>', got {line.strip()!r}")
        names += parts[1:]
    return names


def apply_thumos14_variant(aset: AnnotationSet, variant: str) -> AnnotationSet:
    """Shape THUMOS14 ground truth into ``variant`` and check it has the promised number of videos.

    Keeps the variant's split, drops its excluded videos, keeps or clears
    ``ambiguous``, drops videos left with nothing, removes Diving copies of
    CliffDiving instances for ``-nodup``; labels become
    :data:`THUMOS14_CLASSES`. Raises AnnotationError when the source cannot
    give the variant (e.g. a file without Ambiguous rows for ``-213-ambiguous``).
    """
    spec, nodup = _variant_spec(variant)
    unknown = sorted({s.label for v in aset.videos.values() for s in v.segments} - set(THUMOS14_CLASSES))
    if unknown:
        raise AnnotationError(f"{aset.source}: label: {unknown[0]!r} is not a THUMOS14 class (variant {variant!r})")
    videos: dict[str, Video] = {}
    for vid, v in aset.subset(spec.split).videos.items():
        segments = list(v.segments)
        if nodup:
            cliff = {(s.start, s.end) for s in segments if s.label == "CliffDiving"}
            segments = [s for s in segments if not (s.label == "Diving" and (s.start, s.end) in cliff)]
        ambiguous = list(v.ambiguous) if spec.keep_ambiguous else []
        if vid not in spec.exclude and (segments or ambiguous):
            videos[vid] = Video(vid, segments, v.duration, v.fps, v.subset, ambiguous)
    if len(videos) != spec.num_videos:
        raise AnnotationError(f"{aset.source}: variant {variant!r} needs {spec.num_videos} videos, this source gives "
                              f"{len(videos)} (build it with thumos14_ground_truth(), from {spec.source})")
    return AnnotationSet(videos, list(THUMOS14_CLASSES), aset.source, variant)


def find_thumos14_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the THUMOS14 annotation files.

    ``data_dir`` when given; else ``$GAF_THUMOS14_DIR``; else
    ``../shared/data/thumos14`` from the working directory, then from the
    repository that holds this package. Raises DataError if none has them.
    """
    marker = "thumos14_test_groundtruth.csv"
    if data_dir is not None:
        candidates = [Path(data_dir)]
    elif os.environ.get("GAF_THUMOS14_DIR"):
        candidates = [Path(os.environ["GAF_THUMOS14_DIR"])]
    else:
        candidates = [Path.cwd().parent / "shared" / "data" / "thumos14",
                      Path(__file__).resolve().parents[3] / "shared" / "data" / "thumos14"]
    for c in candidates:
        if (c / marker).is_file():
            return c
    raise DataError(f"THUMOS14 annotation folder not found (looked for {marker} in "
                    f"{', '.join(str(c) for c in candidates)}): pass data_dir or set GAF_THUMOS14_DIR")


def thumos14_ground_truth(split: str | None = None, variant: str | None = None, *,
                          data_dir: str | os.PathLike[str] | None = None, overrun: str = "warn") -> AnnotationSet:
    """Build a named THUMOS14 ground-truth variant from the annotation folder (:func:`find_thumos14_dir`).

    ``variant`` defaults to ``thumos14-test-212`` (``split="test"`` or None)
    or ``thumos14-val-200`` (``split="val"``); ``split``, when given, must
    agree with the variant. Test variants read
    ``thumos14_test_groundtruth.csv`` (durations and fps for all 213 videos),
    validation variants ``val_Annotation.csv`` with ``val_video_info.csv``.
    """
    if variant is None:
        variant = "thumos14-val-200" if normalize_subset(split) == "validation" else "thumos14-test-212"
    spec, _ = _variant_spec(variant)
    if split is not None and normalize_subset(split) != normalize_subset(spec.split):
        raise AnnotationError(f"variant {variant!r} is a {spec.split} variant, but split={split!r}")
    folder = find_thumos14_dir(data_dir)
    return apply_thumos14_variant(read_thumos_csv(folder / spec.source, overrun=overrun), variant)
