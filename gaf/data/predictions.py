"""Reading ActivityNet results files (``{"results": {video_id: [{"segment", "label", "score"}]}}``).

:func:`read_predictions` checks every detection as
:mod:`gaf.data.annotations` checks ground truth (segments in seconds, finite
and within ±1e9 s, labels, scores, safe video ids, no duplicate keys), through a
fast path for the common exact layout (``gaf score`` reads 42k detections in
about 0.09 s) and the fully checked path for everything else; both give the
same result or the same error. Unlike ground truth, a detection may be
reversed (end < start) or reach before 0 s: detectors emit such segments and
the official ActivityNet evaluation scores them (false positives unless they
overlap ground truth), so they are read as written and
:func:`gaf.metrics.detection.evaluate_detections` counts them in one warning.
Also served as ``gaf.data.annotations.read_predictions``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from gaf.data.annotation_core import (MAX_TIME_S, AnnotationSet, Segment, Video, gc_paused, json_counts, json_object,
                                      json_root, parse_json, parse_label, parse_number, parse_segment, read_text,
                                      safe_video_id)
from gaf.errors import AnnotationError

__all__ = ["read_predictions"]


def read_predictions(path: str | os.PathLike[str], *, labels: list[str] | None = None,
                     label_names: list[str] | None = None, unlabelled: str | None = None) -> AnnotationSet:
    """Read an ActivityNet results JSON ``{"results": {vid: [{"segment", "label", "score"}]}}``.

    Videos and detections keep file order (the evaluator's tie-break). With
    ``labels`` every label must be among them and the set's ``labels`` is
    ``labels``; without, the sorted names found. Durations are None.

    ActionFormer-style outputs are read too: ``"results"`` as a list of rows
    ``{"video-id", "t-start", "t-end", "label", "score"}``, and integer
    labels, which ``label_names`` (class ``k`` = ``label_names[k]``, e.g.
    ``gaf score --label-map``) turns into names; integer labels without it
    are an error (a guessed order would score silently wrong).

    ``unlabelled`` is the label of detections without one (class-agnostic
    proposals, e.g. ``gaf score --proposals``); None: a missing label is an
    error.
    """
    p = Path(path)
    known = set(labels) if labels is not None else None
    text = read_text(p)
    with gc_paused():
        videos = _quick_predictions(p, text, known, unlabelled) if label_names is None else None
        if videos is None:
            root = json_root(p, text)
            if "results" not in root:
                hint = (" (this is a ground-truth file: give it as GT, or read it with read_ground_truth)"
                        if "database" in root else "")
                raise AnnotationError(f"{p}: missing field 'results'{hint}")
            rows = root["results"]
            if isinstance(rows, list):  # ActionFormer: one row per detection
                rows = _rows_by_video(rows, p, unlabelled)
            results = json_object(rows, f"{p}: results", "'results'", "video id")
            videos = {}
            for vid, dets in results.items():
                safe_video_id(vid, f"{p}: results")
                dets = _named(dets, label_names, f"{p}: video {vid!r}")
                videos[vid] = Video(vid, _detections(dets, f"{p}: video {vid!r}", known, unlabelled))
    found = sorted({s.label for v in videos.values() for s in v.segments})
    return AnnotationSet(videos, list(labels) if labels is not None else found, str(p))


def _rows_by_video(rows: list, p: Path, unlabelled: str | None = None) -> dict[str, list[dict]]:
    """ActionFormer's row list ``[{"video-id", "t-start", "t-end", "label", "score"}]`` → ``{vid: [detection]}``."""
    out: dict[str, list[dict]] = {}
    for i, row in enumerate(rows):
        row = json_object(row, f"{p}: results[{i}]", "a result row")
        missing = [k for k in ("video-id", "t-start", "t-end", "label", "score")
                   if k not in row and not (k == "label" and unlabelled is not None)]
        if missing:
            raise AnnotationError(f"{p}: results[{i}]: missing {', '.join(map(repr, missing))} (a list of results "
                                  "needs ActionFormer's rows: video-id, t-start, t-end, label, score)")
        vid = row["video-id"]
        if not isinstance(vid, str):
            raise AnnotationError(f"{p}: results[{i}]: video-id: expected a string, got {_short_repr(vid)}")
        out.setdefault(vid, []).append({"segment": [row["t-start"], row["t-end"]],
                                        "label": row.get("label", unlabelled),
                                        "score": row["score"]})
    return out


def _named(dets: Any, names: list[str] | None, w: str) -> Any:
    """Detections whose integer labels are replaced by ``names[label]``; an integer label without names is
    an error saying which flag gives them."""
    if not isinstance(dets, list):
        return dets
    out = []
    for i, d in enumerate(dets):
        label = d.get("label") if isinstance(d, dict) else None
        if isinstance(label, int) and not isinstance(label, bool):
            if names is None:
                raise AnnotationError(f"{w}: detection {i}: label: integer class id {label}: give the class names "
                                      "(gaf score --label-map FILE, one class per line, line k = class k)")
            if not 0 <= label < len(names):
                raise AnnotationError(f"{w}: detection {i}: label: class id {label} is outside the label map's "
                                      f"{len(names)} classes (0..{len(names) - 1})")
            d = {**d, "label": names[label]}
        out.append(d)
    return out


def _short_repr(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _detections(dets: Any, w: str, known: set[str] | None, unlabelled: str | None = None) -> list[Segment]:
    """One video's detections, each checked (``w`` names the file and video); ``unlabelled`` is the label
    of a detection without one (None: an error)."""
    if not isinstance(dets, list):
        raise AnnotationError(f"{w}: results: expected a list of detections, got {type(dets).__name__}")
    segments = []
    for i, d in enumerate(dets):
        dw = f"{w}: detection {i}"
        d = json_object(d, dw, "a detection")
        # reversed, or before 0 s: read as written and scored as the official code scores them
        s, e = parse_segment(d.get("segment"), f"{dw}: segment", reversed_ok=True, negative_ok=True)
        if "label" not in d and unlabelled is None:
            raise AnnotationError(f"{dw}: label: missing (class-agnostic proposals: gaf score --proposals)")
        label = unlabelled if "label" not in d else parse_label(d["label"], f"{dw}: label")
        if known is not None and label not in known:
            raise AnnotationError(f"{dw}: label: unknown label {label!r} (not among the {len(known)} classes)")
        if "score" not in d:
            raise AnnotationError(f"{dw}: score: missing")
        segments.append(Segment(s, e, label, parse_number(d["score"], f"{dw}: score")))
    return segments


def _quick_detections(dets: Any, known: set[str] | None, label_colons: dict[str, int]) -> list[Segment] | None:
    """:func:`_detections` for a list of exactly ``{"segment": [float, float], "label": str, "score": float}``
    passing its checks, else None. Adds the labels it accepts to ``label_colons`` (label -> its ``:`` count)."""
    if type(dets) is not list:
        return None
    inf = math.inf
    segments: list[Segment] = []
    append = segments.append
    try:
        for d in dets:
            # Unpacking [s, e] of anything but a list gives no two floats (a string's characters, a dict's keys).
            (s, e), label, score = d["segment"], d["label"], d["score"]
            if not (len(d) == 3 and type(s) is float and type(e) is float and 0.0 <= s <= e <= MAX_TIME_S
                    and type(score) is float and -inf < score < inf and type(label) is str):
                return None
            if label not in label_colons:
                if not label.strip() or (known is not None and label not in known):
                    return None
                label_colons[label] = label.count(":")
            append(Segment(s, e, label, score))
    except (KeyError, TypeError, ValueError):  # not a list of objects holding those keys, or no [s, e] pair
        return None
    return segments


def _quick_predictions(p: Path, text: str, known: set[str] | None,
                       unlabelled: str | None = None) -> dict[str, Video] | None:
    """:func:`read_predictions`' videos from a fast pass, or None: then the checked path decides.

    Parses without the duplicate-key hook and builds each video's Segments in
    one loop that accepts only ``{"segment": [float, float], "label": str,
    "score": float}`` passing the same checks as :func:`_detections`; a video
    it does not accept goes through :func:`_detections`, and any error gives
    None (the checked path then raises the same error, after the duplicate
    checks that come first). Duplicate keys: each object member in the text
    takes one ``:`` outside strings, so the file has none when its ``:`` count
    (plus possible ``\\u003a`` escapes) equals the parsed members plus the
    ``:`` in parsed strings; otherwise None.
    """
    try:
        root = parse_json(p, text)
    except AnnotationError:
        return None
    if type(root) is not dict or type(root.get("results")) is not dict:
        return None
    results: dict = root["results"]
    members, colons = len(root) + len(results), "".join(root).count(":") + "".join(results).count(":")
    for key, value in root.items():
        counts = json_counts(value) if key != "results" else (0, 0)
        if counts is None:
            return None
        members, colons = members + counts[0], colons + counts[1]
    label_colons: dict[str, int] = {}  # labels that passed the checks -> their ':' count
    videos: dict[str, Video] = {}
    quick: list[list[Segment]] = []
    try:
        for vid, dets in results.items():
            safe_video_id(vid, f"{p}: results")
            segments = _quick_detections(dets, known, label_colons)
            if segments is not None:
                members += 3 * len(segments)
                quick.append(segments)
                videos[vid] = Video(vid, segments)
                continue
            videos[vid] = Video(vid, _detections(dets, f"{p}: video {vid!r}", known, unlabelled))
            counts = json_counts(dets)
            if counts is None:
                return None
            members, colons = members + counts[0], colons + counts[1]
    except AnnotationError:
        return None
    if any(label_colons.values()):
        colons += sum(label_colons[s.label] for segments in quick for s in segments)
    escaped = text.lower().count("\\u003a") if "\\u" in text else 0
    return videos if text.count(":") + escaped == members + colons else None
