"""ActivityNet v1.3 / ActionFormer database JSON and BSN's ``anet_anno_action.json`` (readers), ActivityNet
results and ActionFormer-style database JSON (writers). Times in seconds; conventions in
:mod:`gaf.data.annotations`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gaf.data.annotation_core import (AMBIGUOUS, AnnotationSet, Segment, Video, apply_overrun, json_object, json_root,
                                      parse_label, parse_number, parse_positive, parse_segment, parse_times, read_csv,
                                      safe_video_id, short_repr)
from gaf.errors import AnnotationError
from gaf.io import atomic_write_json

__all__ = ["read_activitynet", "read_bsn_anet", "database_to_set", "bsn_to_set", "write_predictions",
           "write_activitynet"]


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
    root = json_root(p)
    if "database" not in root:
        hint = (" (this is a predictions file: give it as PRED, or read it with read_predictions)"
                if "results" in root else "")
        raise AnnotationError(f"{p}: missing field 'database'{hint}")
    aset = database_to_set(root, str(p), require_duration)
    apply_overrun(aset, overrun)
    return aset.subset(subset) if subset is not None else aset


def database_to_set(root: dict, src: str, require_duration: bool) -> AnnotationSet:
    db = json_object(root["database"], f"{src}: database", "'database'", "video id")
    videos: dict[str, Video] = {}
    named: list[tuple[str, Any, str]] = []
    for vid, entry in db.items():
        safe_video_id(vid, f"{src}: database")
        w = f"{src}: video {vid!r}"
        entry = json_object(entry, w, "the video entry")
        duration = parse_positive(entry.get("duration"), f"{w}: duration")
        if duration is None and require_duration:
            raise AnnotationError(f"{w}: duration: missing (required here)")
        fps = parse_positive(entry.get("fps"), f"{w}: fps")
        sub = entry.get("subset")
        if sub is not None and not isinstance(sub, str):
            raise AnnotationError(f"{w}: subset: expected a string, got {short_repr(sub)}")
        anns = entry.get("annotations", [])
        if not isinstance(anns, list):
            raise AnnotationError(f"{w}: annotations: expected a list, got {type(anns).__name__}")
        segments, ambiguous = [], []
        for i, a in enumerate(anns):
            aw = f"{w}: annotations[{i}]"
            a = json_object(a, aw, "an annotation")
            if "segment" not in a:
                raise AnnotationError(f"{aw}.segment: missing")
            s, e = parse_segment(a["segment"], f"{aw}.segment")
            label = parse_label(a.get("label"), f"{aw}.label")
            if label == AMBIGUOUS:
                ambiguous.append((s, e))
                continue
            lid = a.get("label_id")
            if lid is not None and (not isinstance(lid, int) or isinstance(lid, bool) or lid < 0):
                raise AnnotationError(f"{aw}.label_id: expected an integer >= 0, got {short_repr(lid)}")
            named.append((label, lid, aw))
            segments.append(Segment(s, e, label))
        extra = entry.get("ambiguous", [])
        if not isinstance(extra, list):
            raise AnnotationError(f"{w}: ambiguous: expected a list of [start, end], got {short_repr(extra)}")
        ambiguous += [parse_segment(x, f"{w}: ambiguous[{i}]") for i, x in enumerate(extra)]
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
    aset = bsn_to_set(json_root(p), p, Path(video_info) if video_info is not None else None)
    apply_overrun(aset, overrun)
    return aset.subset(subset) if subset is not None else aset


def bsn_to_set(root: dict, p: Path, info_path: Path | None) -> AnnotationSet:
    info_path = info_path or p.with_name("video_info_new.csv")
    subsets: dict[str, str] = {}
    if info_path.is_file():
        header, rows = read_csv(info_path)
        if "video" not in header or "subset" not in header:
            raise AnnotationError(f"{info_path}: header: expected columns 'video' and 'subset', got {header}")
        iv, isub = header.index("video"), header.index("subset")
        subsets = {row[iv]: row[isub] for _, row in rows}
    videos: dict[str, Video] = {}
    for vid, entry in root.items():
        safe_video_id(vid, str(p))
        w = f"{p}: video {vid!r}"
        entry = json_object(entry, w, "the video entry")
        if "duration_second" not in entry:
            raise AnnotationError(f"{w}: duration_second: missing")
        duration = parse_positive(entry["duration_second"], f"{w}: duration_second")
        anns = entry.get("annotations", [])
        if not isinstance(anns, list):
            raise AnnotationError(f"{w}: annotations: expected a list, got {type(anns).__name__}")
        video = Video(vid, [], duration, None, subsets.get(vid))
        for i, a in enumerate(anns):
            aw = f"{w}: annotations[{i}]"
            a = json_object(a, aw, "an annotation")
            s, e = parse_segment(a.get("segment"), f"{aw}.segment")
            label = parse_label(a.get("label"), f"{aw}.label")
            if label == AMBIGUOUS:
                video.ambiguous.append((s, e))
            else:
                video.segments.append(Segment(s, e, label))
        videos[vid] = video
    labels = sorted({s.label for v in videos.values() for s in v.segments})
    return AnnotationSet(videos, labels, str(p))


# ---------------------------------------------------------------- writers
def _atomic_write_json(path: str | os.PathLike[str], doc: Any, indent: int | None) -> Path:
    """gaf.io's atomic JSON writer, its ValueError (NaN / inf, a lone surrogate) as an AnnotationError."""
    try:
        return atomic_write_json(path, doc, indent=indent)
    except ValueError as e:
        raise AnnotationError(f"{path}: cannot write: {e}") from None


def _checked(seg: Segment, where: str, *, prediction: bool = False) -> tuple[float, float]:
    return parse_times(seg.start, seg.end, f"{where}: segment", reversed_ok=prediction, negative_ok=prediction)


def write_predictions(aset: AnnotationSet, path: str | os.PathLike[str], *, version: str = "VERSION 1.3") -> Path:
    """Atomically write ``aset`` as an ActivityNet results JSON (videos and detections in ``aset`` order).

    Every segment needs a finite ``score``. A reversed segment (end < start) or one reaching before 0 s
    is written as it is, as :func:`read_predictions` reads it (the evaluator scores it as the official
    code does). Videos without detections are written as empty lists. Returns the path.
    """
    results: dict[str, list[dict]] = {}
    for vid, video in aset.videos.items():
        safe_video_id(vid, f"{path}")
        items = []
        for i, seg in enumerate(video.segments):
            w = f"{path}: video {vid!r}: detection {i}"
            s, e = _checked(seg, w, prediction=True)  # as read_predictions reads them
            if seg.score is None:
                raise AnnotationError(f"{w}: score: missing (predictions need a score)")
            items.append({"label": parse_label(seg.label, f"{w}: label"), "score": parse_number(seg.score, f"{w}: score"),
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
            entry["duration"] = parse_positive(v.duration, f"{path}: video {vid!r}: duration")
        if v.fps is not None:
            entry["fps"] = parse_positive(v.fps, f"{path}: video {vid!r}: fps")
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
            entry["ambiguous"] = [list(parse_times(s, e, f"{path}: video {vid!r}: ambiguous[{i}]"))
                                  for i, (s, e) in enumerate(v.ambiguous)]
        db[vid] = entry
    doc = {"version": version or aset.variant or "gaf", "labels": list(aset.labels), "database": db}
    return _atomic_write_json(path, doc, indent=1)

