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

import os
from pathlib import Path

from gaf.data.activitynet import (bsn_to_set, database_to_set, read_activitynet, read_bsn_anet, write_activitynet,
                                  write_predictions)
from gaf.data.annotation_core import (AMBIGUOUS, DURATION_TOLERANCE_S, MAX_TIME_S, AnnotationSet, AnnotationWarning,
                                      Segment, Video, apply_overrun, json_root, normalize_subset, safe_video_id)
from gaf.data.predictions import read_predictions
from gaf.data.thumos14 import (THUMOS14_CLASSES, THUMOS14_VARIANTS, apply_thumos14_variant, find_thumos14_dir,
                               read_thumos_class_files, read_thumos_csv, thumos14_ground_truth, variant_split)
from gaf.data.ucf101 import read_ucf101_split
from gaf.errors import AnnotationError

__all__ = [
    "Segment", "Video", "AnnotationSet", "AnnotationError", "AnnotationWarning", "DURATION_TOLERANCE_S",
    "AMBIGUOUS", "MAX_TIME_S", "normalize_subset", "safe_video_id", "read_activitynet", "read_bsn_anet",
    "read_predictions", "read_ground_truth", "read_thumos_csv", "read_thumos_class_files", "write_predictions",
    "write_activitynet", "read_ucf101_split", "THUMOS14_CLASSES", "THUMOS14_VARIANTS", "thumos14_ground_truth",
    "apply_thumos14_variant", "find_thumos14_dir",
]


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
    p = Path(path)
    if p.is_dir():
        splits = [s for s in ("val", "test") if any(p.glob(f"*_{s}.txt"))]
        if subset is None and variant is not None:
            subset = variant_split(variant)
        if subset is None and len(splits) != 1:
            raise AnnotationError(f"{p}: holds class files for {splits or 'no split'}: pass subset='val' or 'test'")
        aset = read_thumos_class_files(p, subset or splits[0], overrun=overrun)
    elif p.suffix.lower() == ".csv":
        aset = read_thumos_csv(p, overrun=overrun)
        aset = aset.subset(subset) if subset is not None else aset
    else:
        root = json_root(p)
        if "database" in root:
            aset = database_to_set(root, str(p), False)
        elif "results" in root:
            raise AnnotationError(f"{p}: has 'results', not 'database': this is a predictions file")
        elif root and all(isinstance(e, dict) and "duration_second" in e for e in root.values()):
            aset = bsn_to_set(root, p, None)
        else:
            raise AnnotationError(f"{p}: unknown annotation layout: expected a 'database' field (ActivityNet / "
                                  "ActionFormer) or BSN's {video: {duration_second, annotations}}")
        apply_overrun(aset, overrun)
        aset = aset.subset(subset) if subset is not None else aset
    return apply_thumos14_variant(aset, variant) if variant is not None else aset
