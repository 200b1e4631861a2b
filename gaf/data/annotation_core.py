"""The bottom of gaf's annotation formats: the in-memory types (:class:`Segment`, :class:`Video`,
:class:`AnnotationSet`), constants, the value checks every reader applies, and the JSON / CSV reading
helpers. Format modules (:mod:`gaf.data.activitynet`, :mod:`gaf.data.thumos14`, :mod:`gaf.data.predictions`,
:mod:`gaf.data.ucf101`) import from here and never from each other's private names; :mod:`gaf.data.annotations`
is the face on top (conventions in its docstring). Standard library only.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import math
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaf.errors import AnnotationError

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


def short_repr(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_int(text: str) -> int | None:
    """``int(text)``, or None when ``text`` is not an integer."""
    try:
        return int(text)
    except ValueError:
        return None


def parse_number(x: Any, where: str) -> float:
    """A finite float from a JSON number or a plain decimal string (``"12.5"``, ``" 1e3"``)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        try:
            value = float(x)
        except OverflowError:
            raise AnnotationError(f"{where}: number too large: {short_repr(x)}") from None
    elif isinstance(x, str):
        text = x.strip()
        try:
            value = float(text)  # also takes "1_0", "inf", non-ASCII digits: only decimals pass below
        except ValueError:
            raise AnnotationError(f"{where}: not a number: {short_repr(x)}") from None
        if math.isfinite(value) and not _DECIMAL.fullmatch(text):
            raise AnnotationError(f"{where}: not a number: {short_repr(x)} (expected a decimal like '12.5')")
    else:
        raise AnnotationError(f"{where}: expected a number, got {short_repr(x)}")
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: must be finite, got {short_repr(x)}")
    return value


def parse_positive(x: Any, where: str) -> float | None:
    """None, or a float in ``(0, MAX_TIME_S]`` (a duration in s, an fps, a frame count)."""
    if x is None:
        return None
    value = parse_number(x, where)
    if value <= 0:
        raise AnnotationError(f"{where}: must be > 0, got {short_repr(x)}")
    if value > MAX_TIME_S:
        raise AnnotationError(f"{where}: must be <= {MAX_TIME_S:g}, got {short_repr(x)} (not plausible for a video)")
    return value


def parse_times(start: Any, end: Any, where: str, *, reversed_ok: bool = False,
                negative_ok: bool = False) -> tuple[float, float]:
    """``(start, end)`` in seconds with ``0 <= start <= end <= MAX_TIME_S``. A prediction may be reversed
    (``end < start``, with ``reversed_ok``) or reach before 0 s (down to ``-MAX_TIME_S``, with
    ``negative_ok``): the evaluator scores such segments as the official ActivityNet code does."""
    s, e = parse_number(start, f"{where}[0]"), parse_number(end, f"{where}[1]")
    if e < s and not reversed_ok:
        raise AnnotationError(f"{where}: end {e} < start {s} (reversed segment)")
    if min(s, e) < 0 and not negative_ok:
        raise AnnotationError(f"{where}: start {s} < 0 (before the video starts)" if s < 0 else
                              f"{where}: end {e} < 0 (before the video starts)")
    if max(s, e) > MAX_TIME_S:
        raise AnnotationError(f"{where}: end {e} s is beyond {MAX_TIME_S:g} s (about 32 years; times are seconds)")
    if min(s, e) < -MAX_TIME_S:
        raise AnnotationError(f"{where}: start {s} s is before -{MAX_TIME_S:g} s (about 32 years; times are seconds)"
                              if s < -MAX_TIME_S else f"{where}: end {e} s is before -{MAX_TIME_S:g} s (about 32 "
                              "years; times are seconds)")
    return s, e


def parse_segment(obj: Any, where: str, *, reversed_ok: bool = False, negative_ok: bool = False) -> tuple[float, float]:
    if obj is None:
        raise AnnotationError(f"{where}: missing")
    if not isinstance(obj, (list, tuple)) or len(obj) != 2:
        raise AnnotationError(f"{where}: expected [start, end] in seconds, got {short_repr(obj)}")
    return parse_times(obj[0], obj[1], where, reversed_ok=reversed_ok, negative_ok=negative_ok)


def parse_label(x: Any, where: str) -> str:
    if not isinstance(x, str) or not x.strip():
        raise AnnotationError(f"{where}: expected a non-empty class name, got {short_repr(x)}")
    return x


def json_object(x: Any, where: str, what: str, key: str = "key") -> dict:
    """``x`` if it is a JSON object without duplicate keys (``key`` names what its keys are)."""
    if not isinstance(x, dict):
        raise AnnotationError(f"{where}: {what} must be a JSON object, got {type(x).__name__}")
    if isinstance(x, _DupDict):
        raise AnnotationError(f"{where}: duplicate {key} {x.dups[0]!r} in {what}")
    return x


def apply_overrun(aset: AnnotationSet, policy: str, tolerance: float = DURATION_TOLERANCE_S) -> None:
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


def read_text(path: Path) -> str:
    _refuse_device(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({e.strerror or e})") from None


def parse_json(path: Path, text: str, hook: Any = None) -> Any:
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
                    return f"key {short_repr(k)} in {at or 'the top-level object'}"
                stack.append((v, f"{at}[{k!r}]" if at else k))
        elif isinstance(x, list):
            stack += [(v, f"{at}[{i}]") for i, v in enumerate(x)]
    return None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
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


def load_json(path: Path, text: str | None = None) -> Any:
    """``path`` (or its ``text``, already read) parsed with the duplicate-key hook."""
    text = read_text(path) if text is None else text
    with gc_paused():
        return parse_json(path, text, _pairs_hook)


def json_counts(value: Any, max_depth: int = 64) -> tuple[int, int] | None:
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


def json_root(path: Path, text: str | None = None) -> dict:
    root = load_json(path, text)
    if not isinstance(root, dict):
        raise AnnotationError(f"{path}: top level must be a JSON object, got {type(root).__name__}")
    return json_object(root, str(path), "the top-level object")


def read_csv(path: Path, delimiter: str = ",") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) of a ``delimiter``-separated file (default: comma; ``"\\t"`` for TSV);
    blank rows skipped, cells stripped; rows must match the header's width."""
    _refuse_device(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
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


