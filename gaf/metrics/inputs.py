"""What gets scored: a ground truth and predictions resolved as ``gaf score`` resolves them.

Shared by ``gaf score``, ``gaf analyze`` and the Python API's ``gaf.score`` /
``gaf.analyze``: either side may be an :class:`~gaf.data.annotations.AnnotationSet`
already in memory or a file (the ground truth also a THUMOS14 variant name).
Predictions with integer class ids are named by a label map or by the
ground truth's own ids; video ids may be re-prefixed; a ground truth with
several subsets is cut to the one asked for, or to the one holding most
predicted videos; mismatched ``v_`` prefixes and split-less ground truths
that predictions barely cover are refused. Warnings are raised (``warnings``),
never printed: callers collect them. NumPy only (no torch).
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from gaf.data.annotations import AnnotationSet, THUMOS14_VARIANTS, Video, read_ground_truth, thumos14_ground_truth
from gaf.data.predictions import read_predictions
from gaf.errors import AnnotationError, ConfigError

__all__ = ["ScoringInputs", "resolve_scoring_inputs", "protocol_tious", "read_label_map", "parse_tious", "MAX_TIOUS",
           "ACTIVITYNET_TIOUS", "THUMOS14_TIOUS"]

Source = Union[AnnotationSet, str, "os.PathLike[str]"]

ACTIVITYNET_TIOUS = "0.5:0.95:0.05"  # start:stop:step, stop included
THUMOS14_TIOUS = "0.3:0.7:0.1"
MAX_TIOUS = 200  # more thresholds than any protocol uses (ActivityNet: 10) is a typo in the step


def parse_tious(text: str) -> list[float]:
    """``"0.3,0.5"`` → [0.3, 0.5]; ``"0.5:0.95:0.05"`` → 0.5, 0.55, ..., 0.95.

    A range stops at ``stop`` (included when it falls on the step grid,
    never passed: ``0.1:0.9:0.3`` → 0.1, 0.4, 0.7). Thresholds must be in
    (0, 1], strictly increasing, at most :data:`MAX_TIOUS` of them.
    """
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if not (math.isfinite(start) and math.isfinite(stop) and math.isfinite(step)) or step <= 0 or stop < start:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
        else:
            tious = [float(x) for x in text.split(",") if x.strip()]
            count = len(tious)
    except ValueError:
        raise ConfigError(f"--tious: expected a comma list like 0.3,0.5,0.7 or start:stop:step like 0.5:0.95:0.05, "
                          f"got {text!r}") from None
    if not 1 <= count <= MAX_TIOUS:
        raise ConfigError(f"--tious {text}: {count} thresholds; give 1 to {MAX_TIOUS} (is the step right?)")
    if ":" in text:
        tious = [round(start + k * step, 10) for k in range(count)]
    if any(not 0.0 < t <= 1.0 for t in tious):
        raise ConfigError(f"--tious {text}: each threshold must be in (0, 1], got {tious}")
    if any(b <= a for a, b in zip(tious, tious[1:])):
        raise ConfigError(f"--tious {text}: thresholds must be strictly increasing, got {tious}")
    return tious


@dataclass
class ScoringInputs:
    """``gt`` and ``pred`` as scored; ``subset``: the subset scored (None: the whole file; "per variant"
    for a THUMOS14 variant); ``note``: why that subset was picked (empty when it was asked for)."""

    gt: AnnotationSet
    pred: AnnotationSet
    subset: str | None
    note: str


def protocol_tious(gt: AnnotationSet) -> tuple[list[float], str]:
    """The thresholds of the ground truth's benchmark (:func:`gaf.metrics.analysis.protocol_of`) and a line
    saying which."""
    from gaf.metrics.analysis import protocol_of

    if protocol_of(gt) == "activitynet":
        return parse_tious(ACTIVITYNET_TIOUS), (f"{ACTIVITYNET_TIOUS}, ActivityNet's (this ground truth has "
                                               f"{len(gt.labels)} classes and ActivityNet-style video ids)")
    return parse_tious(THUMOS14_TIOUS), f"{THUMOS14_TIOUS}, THUMOS14's (the default for other ground truths)"


def resolve_scoring_inputs(gt: Source, pred: Source, *, subset: str | None = None, variant: str | None = None,
                           label_map: str | os.PathLike[str] | Sequence[str] | None = None, overrun: str = "warn",
                           add_prefix: str | None = None, strip_prefix: str | None = None,
                           proposals: bool = False) -> ScoringInputs:
    """The ground truth and predictions to score (see the module docstring).

    ``subset``: a subset name, ``"all"`` (every video), or None (the subset
    holding most predicted videos). ``label_map``: class names for integer
    labels (a file, one per line, or a list). ``proposals``: predictions
    without labels are class-agnostic proposals.
    """
    names = read_label_map(label_map)
    if isinstance(pred, AnnotationSet):
        predictions = pred
    else:
        predictions = _read_pred(str(pred), gt, names, proposals)
    predictions = _renamed(predictions, add_prefix, strip_prefix)
    if not predictions.videos:
        raise ConfigError(f"{predictions.source}: 'results' holds no video: there is no detection to score")
    if isinstance(gt, AnnotationSet):
        if variant is not None:
            raise ConfigError("variant: applies to a THUMOS14 ground-truth file or name, not an AnnotationSet")
        return _pick(gt, predictions, subset, read=None)
    gt = str(gt)
    if not Path(gt).exists() and gt not in THUMOS14_VARIANTS and gt.lower().startswith("thumos"):
        close = difflib.get_close_matches(gt, list(THUMOS14_VARIANTS), n=1)
        raise ConfigError(f"GT {gt}: no such file, and not a THUMOS14 variant"
                          + (f" (did you mean {close[0]}?)" if close else "")
                          + f"; variants: {', '.join(THUMOS14_VARIANTS)}")
    if not Path(gt).exists() and gt in THUMOS14_VARIANTS:
        if variant is not None and variant != gt:
            raise ConfigError(f"GT is the variant {gt!r} but --variant says {variant!r}")
        return ScoringInputs(thumos14_ground_truth(variant=gt), predictions, "per variant", "")
    if variant is not None and subset not in (None, "all"):
        return ScoringInputs(read_ground_truth(gt, subset=subset, variant=variant, overrun=overrun), predictions,
                             subset, "")
    if variant is not None or subset == "all":  # every video, whatever its subset: asked for explicitly
        return ScoringInputs(read_ground_truth(gt, variant=variant, overrun=overrun), predictions, subset, "")
    if subset is not None:
        return ScoringInputs(read_ground_truth(gt, subset=subset, overrun=overrun), predictions, subset, "")
    return _pick(read_ground_truth(gt, overrun=overrun), predictions, None, read=gt)


def _pick(gt: AnnotationSet, pred: AnnotationSet, subset: str | None, read: str | None) -> ScoringInputs:
    """An in-memory ground truth cut to ``subset`` ("all": whole), or to the best-covered subset (None)."""
    if subset == "all":
        return ScoringInputs(gt, pred, subset, "")
    if subset is not None:
        return ScoringInputs(gt.subset(subset), pred, subset, "")
    _check_id_prefix(gt, pred)
    subset, note = _pick_subset(gt, pred)
    gt = gt.subset(subset) if subset is not None else gt
    _refuse_unknown_splits(gt, pred)
    return ScoringInputs(gt, pred, subset, note)


def _read_pred(path: str, gt: Source, names: list[str] | None, proposals: bool) -> AnnotationSet:
    """PRED, its integer class ids (ActionFormer) named by the label map, else by the ground truth's own ids
    when its file fixes them (a 'labels' list or label_id); never by a guessed order."""
    unlabelled = "proposal" if proposals else None
    try:
        return read_predictions(path, label_names=names, unlabelled=unlabelled)
    except AnnotationError as exc:
        if names is not None or "integer class id" not in str(exc):
            raise
        if isinstance(gt, AnnotationSet):
            truth = gt
        elif str(gt) in THUMOS14_VARIANTS or not Path(gt).exists():
            raise
        else:
            truth = read_ground_truth(gt)
        if not truth.labels_numbered:
            raise
    warnings.warn(f"integer labels of {path} named by the class ids of {truth.source}", UserWarning, stacklevel=3)
    return read_predictions(path, label_names=truth.labels, unlabelled=unlabelled)


def read_label_map(source: str | os.PathLike[str] | Sequence[str] | None) -> list[str] | None:
    """Class names: a list as given, or one per non-empty line of a file (line k = class k); None: none."""
    if source is None:
        return None
    if not isinstance(source, (str, os.PathLike)):
        return [str(name) for name in source]
    try:
        names = [line.strip() for line in Path(source).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--label-map {source}: cannot read it ({exc})") from None
    if not names:
        raise ConfigError(f"--label-map {source}: no class name in it (one per line, line k = class k)")
    return names


def _renamed(pred, add: str | None, strip: str | None):
    """``pred`` with ``add`` prepended to / ``strip`` removed from its video ids (unchanged without either)."""
    if not add and not strip:
        return pred
    def new(vid: str) -> str:
        return add + vid if add else (vid[len(strip):] if strip and vid.startswith(strip) else vid)

    videos = {new(vid): Video(new(vid), v.segments, duration=v.duration, fps=v.fps, subset=v.subset)
              for vid, v in pred.videos.items()}
    return AnnotationSet(videos, pred.labels, pred.source)


def _check_id_prefix(gt, pred, prefix: str = "v_") -> None:
    """ConfigError with the flag to use when the predicted ids match the ground truth's far better once the
    ``v_`` prefix (ActivityNet's ``v_<youtube id>``) is added or removed."""
    def hits(ids) -> int:
        return sum(vid in gt.videos for vid in ids)

    as_given = hits(pred.videos)
    options = {"--add-prefix": hits(prefix + v for v in pred.videos),
               "--strip-prefix": hits(v[len(prefix):] for v in pred.videos if v.startswith(prefix))}
    flag, best = max(options.items(), key=lambda kv: kv[1])
    if best > as_given and best >= 0.5 * len(pred.videos):
        how = "lack" if flag == "--add-prefix" else "carry"
        raise ConfigError(f"{pred.source}: {as_given} of its {len(pred.videos)} video ids are in the ground truth "
                          f"({gt.source}); they {how} the {prefix!r} prefix of the ground truth's ids, and "
                          f"{best} match with {flag} {prefix}: pass {flag} {prefix}")


def _refuse_unknown_splits(gt, pred) -> None:
    """A ground truth without subset information of which the predictions cover under half the videos is
    probably every split of a dataset (e.g. BSN's ActivityNet file without video_info_new.csv): scoring
    it would count every other split's instances as missed."""
    if set(gt.subsets()) != {"None"} or not gt.videos:
        return
    covered = sum(vid in gt.videos for vid in pred.videos)
    if covered < 0.5 * len(gt.videos):
        raise ConfigError(f"{gt.source}: its {len(gt.videos)} videos carry no subset (split) and the predictions "
                          f"cover {covered} of them: every other video's instances would count as missed. Give the "
                          "split information (for BSN's ActivityNet file, video_info_new.csv beside it), or pass "
                          "--subset all to score all of them anyway")


def _pick_subset(gt, pred) -> tuple[str | None, str]:
    """The subset of ``gt`` holding most predicted videos, and a note saying why (None: one subset only)."""
    subsets = gt.subsets()
    if len(subsets) <= 1:
        return None, ""
    wanted = set(pred.videos)
    hits: dict[str, int] = {}
    for vid, v in gt.videos.items():
        key = str(v.subset)
        hits[key] = hits.get(key, 0) + (vid in wanted)
    best = max(hits, key=lambda k: hits[k])
    if hits[best] == 0:
        raise AnnotationError(f"{gt.source}: no predicted video is in the ground truth (subsets: "
                              f"{', '.join(f'{k} ({n} videos)' for k, n in subsets.items())}); pass --subset")
    others = ", ".join(f"{k}: {hits[k]}" for k in hits if k != best and hits[k])
    note = (f"chosen as it holds {hits[best]} of the {len(wanted)} predicted videos"
            + (f"; other subsets hold {others}" if others else "") + "; --subset to change")
    return best, note
