"""Annotation and prediction formats, read into one typed in-memory form.

All times are in **seconds**. A ground-truth file and a predictions file read
into the same :class:`AnnotationSet`; predictions carry a ``score`` on every
segment, ground truth has ``score=None``.

Formats read here: ActivityNet v1.3 / ActionFormer database JSON
(:func:`read_activitynet`), BSN's ``anet_anno_action.json``
(:func:`read_bsn_anet`), ActivityNet results JSON (:func:`read_predictions`).
:func:`read_ground_truth` detects the layout and also dispatches to the
THUMOS14 CSVs and official per-class files of :mod:`gaf.data.thumos14`, which
holds the named THUMOS14 ground-truth variants too; UCF101 split lists are read
by :mod:`gaf.data.ucf101`. Their public names are re-exported from this module
(``from gaf.data.annotations import thumos14_ground_truth`` works).

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
* **Validity.** ``0 <= start <= end <= MAX_TIME_S`` (finite); numeric
  strings are accepted (``thumos_gt.json`` writes times as strings) when they
  are plain decimal numbers (``"12.5"``, ``"1e3"``; not ``"1_0"`` or
  non-ASCII digits). Durations, fps and frame counts are ``> 0`` and at most
  :data:`MAX_TIME_S`: a value beyond it (e.g. ``1e12`` s, about 32,000
  years) is an error, never a reason to allocate or loop. Strings holding a
  lone UTF-16 surrogate (``"\\ud800"`` in the JSON text: not valid Unicode,
  cannot be printed or written back) are refused wherever they are. A
  segment ending more than :data:`DURATION_TOLERANCE_S` after the video's duration is an *overrun*:
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

import contextlib
import csv
import gc
import importlib
import json
import math
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gaf.errors import AnnotationError
from gaf.io import atomic_write_bytes

__all__ = [
    "Segment", "Video", "AnnotationSet", "AnnotationError", "AnnotationWarning", "DURATION_TOLERANCE_S",
    "AMBIGUOUS", "MAX_TIME_S", "normalize_subset", "safe_video_id", "read_activitynet", "read_bsn_anet",
    "read_predictions", "read_ground_truth", "read_thumos_csv", "read_thumos_class_files", "write_predictions",
    "write_activitynet", "read_ucf101_split", "THUMOS14_CLASSES", "THUMOS14_VARIANTS", "thumos14_ground_truth",
    "apply_thumos14_variant", "find_thumos14_dir",
]

DURATION_TOLERANCE_S = 1.0
"""Seconds a segment may end after the video's duration before it counts as an overrun."""
AMBIGUOUS = "Ambiguous"
MAX_TIME_S = 1e9
"""Largest time, duration (seconds), fps or frame count gaf accepts: 1e9 s is about 32 years.

Beyond it a value is a unit mistake or hostile; rejecting it keeps every
later computation (steps, tIoU unions, search keys) finite and bounded."""
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a \uD800-\uDFFF escape in JSON text
_SURROGATE = re.compile("[\ud800-\udfff]")
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
    ``labels_numbered``: the file fixed the class ids (a top-level ``labels``
    list or ``label_id`` on every annotation), so integer labels of
    predictions can be mapped through ``labels``.
    """

    videos: dict[str, Video]
    labels: list[str]
    source: str = "<memory>"
    variant: str | None = None
    labels_numbered: bool = False  # the file fixed the ids (a 'labels' list or label_id): labels[k] is class k

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
        return AnnotationSet(videos, list(self.labels), self.source, self.variant, self.labels_numbered)

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
    ids holding ``/``, ``\\``, NUL or a lone UTF-16 surrogate (not valid text).
    """
    if not isinstance(video_id, str):
        raise AnnotationError(f"{where}: video id must be a string, got {type(video_id).__name__}")
    if (not video_id or video_id in (".", "..") or video_id.startswith("..")
            or any(c in video_id for c in ("/", "\\", "\x00")) or _SURROGATE.search(video_id)):
        raise AnnotationError(f"{where}: video {video_id!r}: unsafe video id (it names a file: no '/', '\\', "
                              "NUL, surrogate, '.', '..', leading '..' or empty id)")
    return video_id


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _int(text: str) -> int | None:
    """``int(text)``, or None when ``text`` is not an integer."""
    try:
        return int(text)
    except ValueError:
        return None


def _num(x: Any, where: str) -> float:
    """A finite float from a JSON number or a plain decimal string (``"12.5"``, ``" 1e3"``)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        try:
            value = float(x)
        except OverflowError:
            raise AnnotationError(f"{where}: number too large: {_short(x)}") from None
    elif isinstance(x, str):
        text = x.strip()
        try:
            value = float(text)  # also takes "1_0", "inf", non-ASCII digits: only decimals pass below
        except ValueError:
            raise AnnotationError(f"{where}: not a number: {_short(x)}") from None
        if math.isfinite(value) and not _DECIMAL.fullmatch(text):
            raise AnnotationError(f"{where}: not a number: {_short(x)} (expected a decimal like '12.5')")
    else:
        raise AnnotationError(f"{where}: expected a number, got {_short(x)}")
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: must be finite, got {_short(x)}")
    return value


def _positive(x: Any, where: str) -> float | None:
    """None, or a float in ``(0, MAX_TIME_S]`` (a duration in s, an fps, a frame count)."""
    if x is None:
        return None
    value = _num(x, where)
    if value <= 0:
        raise AnnotationError(f"{where}: must be > 0, got {_short(x)}")
    if value > MAX_TIME_S:
        raise AnnotationError(f"{where}: must be <= {MAX_TIME_S:g}, got {_short(x)} (not plausible for a video)")
    return value


def _times(start: Any, end: Any, where: str, *, reversed_ok: bool = False) -> tuple[float, float]:
    """``(start, end)`` in seconds with ``0 <= start <= end <= MAX_TIME_S`` (``end < start`` allowed with
    ``reversed_ok``: a prediction that the evaluator scores as a false positive, as the official code does)."""
    s, e = _num(start, f"{where}[0]"), _num(end, f"{where}[1]")
    if e < s and not reversed_ok:
        raise AnnotationError(f"{where}: end {e} < start {s} (reversed segment)")
    if min(s, e) < 0:
        raise AnnotationError(f"{where}: start {s} < 0 (before the video starts)" if s < 0 else
                              f"{where}: end {e} < 0 (before the video starts)")
    if max(s, e) > MAX_TIME_S:
        raise AnnotationError(f"{where}: end {e} s is beyond {MAX_TIME_S:g} s (about 32 years; times are seconds)")
    return s, e


def _segment(obj: Any, where: str, *, reversed_ok: bool = False) -> tuple[float, float]:
    if obj is None:
        raise AnnotationError(f"{where}: missing")
    if not isinstance(obj, (list, tuple)) or len(obj) != 2:
        raise AnnotationError(f"{where}: expected [start, end] in seconds, got {_short(obj)}")
    return _times(obj[0], obj[1], where, reversed_ok=reversed_ok)


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
            f"duration {aset.videos[vid].duration} s); kept as written (to clip or refuse them: gaf score --overrun clip|error, or overrun='clip'|'error' in Python)"),
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


def _refuse_device(path: Path) -> None:
    """AnnotationError when ``path`` is a character or block device (``/dev/zero`` would be read forever).

    Pipes stay allowed (``gaf score <(zcat gt.json.gz) pred.json``)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # the read that follows reports it
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise AnnotationError(f"{path}: is a device, not an annotation file")


def _read_text(path: Path) -> str:
    _refuse_device(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({e.strerror or e})") from None


def _parse(path: Path, text: str, hook: Any = None) -> Any:
    """``text`` parsed; with :func:`_pairs_hook`, objects that had duplicate keys are :class:`_DupDict`.

    A string holding a lone surrogate (only a ``\\uD800``-``\\uDFFF`` escape
    makes one) is refused here, naming where it is (see :func:`_lone_surrogate`).
    """
    try:
        root = json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer literal over Python's digit limit
        raise AnnotationError(f"{path}: invalid JSON: {e}") from None
    if _SURROGATE_ESCAPE.search(text):  # rare: escaped astral characters (pairs) or a lone surrogate
        where = _lone_surrogate(root)
        if where is not None:
            raise AnnotationError(f"{path}: {where}: string holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF "
                                  "escape without its pair): not valid Unicode text")
    return root


def _lone_surrogate(value: Any) -> str | None:
    """Where (``database['v'].annotations[0].label``, ``key 'x' in results``) a parsed JSON value holds a
    string with a lone surrogate, or None. Iterative: any depth the parser accepted."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        x, at = stack.pop()
        if isinstance(x, str):
            if _SURROGATE.search(x):
                return at or "top level"
        elif isinstance(x, dict):
            for k, v in x.items():
                if _SURROGATE.search(k):
                    return f"key {_short(k)} in {at or 'the top-level object'}"
                stack.append((v, f"{at}[{k!r}]" if at else k))
        elif isinstance(x, list):
            stack += [(v, f"{at}[{i}]") for i, v in enumerate(x)]
    return None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a reader builds many small acyclic containers.

    It would otherwise run every few hundred allocations and re-scan them (a
    fifth of the time of reading a large results file); reference counting
    still frees everything.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_json(path: Path, text: str | None = None) -> Any:
    """``path`` (or its ``text``, already read) parsed with the duplicate-key hook."""
    text = _read_text(path) if text is None else text
    with _gc_paused():
        return _parse(path, text, _pairs_hook)


def _json_counts(value: Any, max_depth: int = 64) -> tuple[int, int] | None:
    """``(object members, ':' in its strings and keys)`` of a parsed JSON value; None if nested over ``max_depth``."""
    members = colons = 0
    stack = [(value, 0)]
    while stack:
        x, depth = stack.pop()
        if type(x) is str:
            colons += x.count(":")
        elif type(x) is dict or type(x) is list:
            if depth >= max_depth:
                return None
            if type(x) is dict:
                members += len(x)
                colons += "".join(x).count(":")
                x = x.values()
            stack += [(v, depth + 1) for v in x if type(v) is not float]
    return members, colons


def _root(path: Path, text: str | None = None) -> dict:
    root = _load_json(path, text)
    if not isinstance(root, dict):
        raise AnnotationError(f"{path}: top level must be a JSON object, got {type(root).__name__}")
    return _obj(root, str(path), "the top-level object")


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) of a comma-separated file; rows must match the header's width."""
    _refuse_device(path)
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
        hint = (" (this is a predictions file: give it as PRED, or read it with read_predictions)"
                if "results" in root else "")
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
    numbered = root.get("labels") is not None or any(lid is not None for _, lid, _ in named)
    return AnnotationSet(videos, _label_list(named, root.get("labels"), src), src, labels_numbered=numbered)


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


# ---------------------------------------------------------------- writers
def _atomic_write_json(path: str | os.PathLike[str], doc: Any, indent: int | None) -> Path:
    p = Path(path)
    try:
        data = json.dumps(doc, indent=indent, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except ValueError as e:  # NaN / inf, or a lone surrogate in a string
        raise AnnotationError(f"{p}: cannot write: {e}") from None
    return atomic_write_bytes(p, data)


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


def read_ground_truth(path: str | os.PathLike[str], *, subset: str | None = None, variant: str | None = None,
                      overrun: str = "warn") -> AnnotationSet:
    """Read ground truth in any supported layout, detected from the path and content.

    A folder: THUMOS14 per-class files
    (:func:`~gaf.data.thumos14.read_thumos_class_files`; ``subset`` picks
    val/test, needed when both are there). ``.csv``:
    :func:`~gaf.data.thumos14.read_thumos_csv`. JSON with ``database``:
    :func:`read_activitynet`; a bare ``{vid: {"duration_second", ...}}``
    object: :func:`read_bsn_anet`. ``variant`` (a
    :data:`~gaf.data.thumos14.THUMOS14_VARIANTS` name) then shapes the set
    and checks its counts (:func:`~gaf.data.thumos14.apply_thumos14_variant`).
    """
    from gaf.data.thumos14 import _variant_spec, apply_thumos14_variant, read_thumos_class_files, read_thumos_csv

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


# ---------------------------------------------------------------- re-exports
# The THUMOS14, UCF101 and predictions readers live in their own modules, which import the types and helpers
# above. Their public names are served from here on first access (PEP 562), so existing imports
# keep working whichever module a program imports first.
_MOVED = {name: "gaf.data.thumos14" for name in (
    "read_thumos_csv", "read_thumos_class_files", "THUMOS14_CLASSES", "THUMOS14_VARIANTS", "thumos14_ground_truth",
    "apply_thumos14_variant", "find_thumos14_dir")}
_MOVED["read_ucf101_split"] = "gaf.data.ucf101"
_MOVED["read_predictions"] = "gaf.data.predictions"

if TYPE_CHECKING:
    from gaf.data.thumos14 import (THUMOS14_CLASSES, THUMOS14_VARIANTS, apply_thumos14_variant, find_thumos14_dir,
                                   read_thumos_class_files, read_thumos_csv, thumos14_ground_truth)
    from gaf.data.predictions import read_predictions
    from gaf.data.ucf101 import read_ucf101_split


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MOVED))
