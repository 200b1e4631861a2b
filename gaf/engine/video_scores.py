"""Video-level class scores fused with class-agnostic proposals: ActivityNet as the field runs it.

On ActivityNet v1.3 a video holds one class, and the field's detectors (AFSD, ActionFormer, TriDet) find
*where* the actions are with a class-agnostic detector (``dataset.class_agnostic: true``) and take *which*
action from a video-level classifier, CUHK's (``cuhk_val_simp_share.json``)::

    {"results": {video_id: [K scores]}, "class": [K class names]}

(``"classes"`` is read too; ids with or without ActivityNet's ``v_`` prefix, matched against the
annotation's either way). :func:`read_video_scores` reads and checks such a file for the videos evaluated;
:func:`fuse_video_scores` turns one video's proposals into classed detections; :func:`fuse_predictions`
does it for every video of an :class:`~gaf.data.annotations.AnnotationSet`. ``gaf eval`` applies it when
``eval.video_scores`` is set (:func:`gaf.engine.evaluate.evaluate_run`); without it a class-agnostic
detector is scored as proposals, every ground-truth label collapsed to ``"action"``
(:func:`as_proposals`).

The two rules (``eval.video_fusion``), for proposal score ``p`` and class score ``s_c``:

* ``afsd``: ``p · s_c``, the top 1 class (AFSD's ActivityNet test);
* ``actionformer``: ``sqrt(p · s_c)``, the top 2 classes (ActionFormer's ``libs/utils/postprocessing.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from gaf.data.annotation_core import read_text
from gaf.data.annotations import AnnotationSet, Segment, Video
from gaf.data.split import AGNOSTIC_LABEL
from gaf.errors import AnnotationError, ConfigError, DataError

__all__ = ["DEFAULT_TOPK", "VideoScores", "read_video_scores", "fuse_video_scores", "fuse_predictions",
           "as_proposals"]

#: classes per proposal when ``eval.video_score_topk`` is null, per rule (``eval.video_fusion``)
DEFAULT_TOPK = {"afsd": 1, "actionformer": 2}

_KEY = "eval.video_scores"


@dataclass(frozen=True)
class VideoScores:
    """A video-level class score file, checked and matched to the evaluated videos.

    ``path``: the file; ``classes``: its ``K`` class names, in its order; ``scores``: the annotation's video
    id → its ``(K,)`` float64 scores (finite, ``>= 0``), for every video evaluated.
    """

    path: str
    classes: list[str]
    scores: dict[str, np.ndarray]


def _strip_prefix(video_id: str) -> str:
    return video_id[2:] if video_id.startswith("v_") else video_id


def read_video_scores(path: str | os.PathLike[str], video_ids: Sequence[str],
                      class_names: Sequence[str]) -> VideoScores:
    """The score file ``path`` for the videos ``video_ids`` (the evaluated subset) of a ground truth with
    classes ``class_names``.

    Refused, each with a one-line error naming the file (and the video): a missing or unreadable file, not
    JSON, no ``"results"`` object, no ``"class"`` / ``"classes"`` list (or a duplicate name in it), class names
    not in ``class_names``, a row that is not ``K`` numbers, a non-finite or negative score, and a video of
    ``video_ids`` without a row (the first one and the count; ids are matched with and without ``v_``).
    """
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "not found"
        raise DataError(f"{p}: video score file {what} ({_KEY})")
    text = read_text(p)  # the annotation readers' read (UTF-8 with or without BOM; errors name the file)
    try:
        root = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{p}: not a JSON file ({_KEY}): {e.msg} at line {e.lineno}, column {e.colno}"
                              ) from None
    except (ValueError, RecursionError) as e:
        raise AnnotationError(f"{p}: cannot read the video score file ({_KEY}): {e}") from None
    layout = '{"results": {video_id: [K scores]}, "class": [K names]}'
    if not isinstance(root, dict) or not isinstance(root.get("results"), dict):
        raise AnnotationError(f'{p}: no "results" object of video scores ({_KEY} expects {layout})')
    classes = root.get("class", root.get("classes"))
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise AnnotationError(f'{p}: no "class" list naming the scored classes ({_KEY} expects {layout})')
    if len(set(classes)) != len(classes):
        dup = next(c for i, c in enumerate(classes) if c in classes[:i])
        raise AnnotationError(f'{p}: class {dup!r} named twice in the "class" list ({_KEY})')
    known = set(class_names)
    unknown = [c for c in classes if c not in known]
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        shown = ", ".join(repr(c) for c in unknown[:5]) + more
        raise AnnotationError(f"{p}: {len(unknown)} of its {len(classes)} classes are not the ground truth's "
                              f"classes: {shown} ({_KEY})")
    K = len(classes)
    rows: dict[str, np.ndarray] = {}
    for vid, row in root["results"].items():
        if not isinstance(row, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                for x in row):
            raise AnnotationError(f"{p}: video {vid!r}: expected a list of {K} numbers (one per class), got "
                                  f"{type(row).__name__} ({_KEY})")
        if len(row) != K:
            raise AnnotationError(f"{p}: video {vid!r}: {len(row)} scores, but the file names K = {K} classes "
                                  f"({_KEY})")
        scores = np.asarray(row, dtype=np.float64)
        bad = ~np.isfinite(scores) | (scores < 0)
        if bad.any():
            k = int(np.argmax(bad))
            raise AnnotationError(f"{p}: video {vid!r}: score {row[k]} of class {classes[k]!r}: scores must be "
                                  f"finite and >= 0 ({_KEY})")
        rows[vid] = scores
    stripped: dict[str, str] = {}
    for vid in rows:
        stripped.setdefault(_strip_prefix(vid), vid)
    matched: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for vid in video_ids:
        key = vid if vid in rows else stripped.get(_strip_prefix(vid))
        if key is None:
            missing.append(vid)
        else:
            matched[vid] = rows[key]
    if missing:
        raise DataError(f"{p}: no scores for video {missing[0]!r} ({len(missing)} of the {len(video_ids)} "
                        f"evaluated videos missing; ids are matched with and without 'v_') ({_KEY})")
    return VideoScores(str(p), list(classes), matched)


def fuse_video_scores(segments: np.ndarray, scores: np.ndarray, class_scores: np.ndarray, *,
                      rule: str = "actionformer", topk: int | None = None,
                      max_keep: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One video's class-agnostic proposals as classed detections.

    ``segments`` ``(N, 2)`` (seconds, or any unit: copied as they are), ``scores`` ``(N,)`` the proposals'
    class-agnostic scores ``p``, ``class_scores`` ``(K,)`` the video's class scores ``s``. Each proposal
    becomes ``k = min(topk, K)`` detections, one per top-``k`` class ``c`` of the video (``topk`` None:
    :data:`DEFAULT_TOPK` of ``rule``), scored ``p · s_c`` (``rule="afsd"``) or ``sqrt(p · s_c)``
    (``"actionformer"``). Returns ``(segments (M, 2), scores (M,), labels (M,) int64)``, labels indexing
    ``class_scores``, the best ``M = min(N · k, max_keep)`` by fused score, highest first (ties: the
    higher-ranked class, then the proposal's order).
    """
    if rule not in DEFAULT_TOPK:
        raise ConfigError(f"eval.video_fusion: one of {' | '.join(DEFAULT_TOPK)}, got {rule!r}")
    k = DEFAULT_TOPK[rule] if topk is None else int(topk)
    if k < 1:
        raise ConfigError(f"eval.video_score_topk: must be >= 1, got {k}")
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    s = np.asarray(class_scores, dtype=np.float64).reshape(-1)
    if len(p) != len(segments):
        raise ValueError(f"fuse_video_scores: {len(segments)} segments but {len(p)} scores")
    top = np.argsort(-s, kind="stable")[: min(k, len(s))]  # (k,) the video's best classes, best first
    fused = s[top][:, None] * p[None, :]  # (k, N), class-major as ActionFormer's K x N
    if rule == "actionformer":
        fused = np.sqrt(fused)
    fused = fused.reshape(-1)
    labels = np.repeat(top, len(p)).astype(np.int64)
    order = np.argsort(-fused, kind="stable")
    if max_keep is not None:
        order = order[:max_keep]
    return np.tile(segments, (len(top), 1))[order], fused[order], labels[order]


def fuse_predictions(predictions: AnnotationSet, video_scores: VideoScores, class_names: Sequence[str], *,
                     rule: str = "actionformer", topk: int | None = None,
                     max_keep: int | None = None) -> AnnotationSet:
    """Every video's proposals of ``predictions`` (labels ignored) through :func:`fuse_video_scores` with its
    row of ``video_scores``; the result's class list is ``class_names`` (the ground truth's)."""
    videos: dict[str, Video] = {}
    for vid, video in predictions.videos.items():
        row = video_scores.scores.get(vid)
        if row is None:
            raise DataError(f"{video_scores.path}: no scores for video {vid!r} ({_KEY})")
        segs = np.array([(seg.start, seg.end) for seg in video.segments], dtype=np.float64).reshape(-1, 2)
        p = np.array([seg.score if seg.score is not None else math.nan for seg in video.segments], dtype=np.float64)
        segs, fused, labels = fuse_video_scores(segs, p, row, rule=rule, topk=topk, max_keep=max_keep)
        found = [Segment(float(a), float(b), video_scores.classes[int(c)], float(x))
                 for (a, b), x, c in zip(segs.tolist(), fused.tolist(), labels.tolist())]
        videos[vid] = dataclasses.replace(video, segments=found)
    return AnnotationSet(videos=videos, labels=list(class_names), source=predictions.source)


def as_proposals(annotations: AnnotationSet, label: str = AGNOSTIC_LABEL) -> AnnotationSet:
    """``annotations`` with every segment's label ``label`` and that one class: a ground truth to score
    class-agnostic proposals against."""
    videos = {vid: dataclasses.replace(v, segments=[dataclasses.replace(s, label=label) for s in v.segments])
              for vid, v in annotations.videos.items()}
    return dataclasses.replace(annotations, videos=videos, labels=[label], labels_numbered=False)
