"""gaf score GT PRED: mAP of a predictions file against ground truth (NumPy only, no torch)."""

from __future__ import annotations

import argparse

RULES = ("activitynet", "thumos14")  # = gaf.metrics.detection.RULES (kept here so --help does not import NumPy)

HELP = """\
Score detections: mAP at each tIoU threshold, their average, and with
--per-class the AP of every class (the paper's Table III). Prints which
ground truth it used (file, subset, videos, instances, variant).

GT, the ground truth, is any of:
  - ActivityNet v1.3 / ActionFormer JSON: {"database": {video: {"subset",
    "duration", "annotations": [{"segment": [start, end], "label"}]}}}
    (times in seconds; e.g. THUMOS14's thumos14.json, activity_net.v1-3.min.json)
  - BSN's anet_anno_action.json, a THUMOS14 CSV (test_Annotation.csv,
    thumos14_test_groundtruth.csv) or a folder of THUMOS14 per-class files
    (<Class>_test.txt)
  - the name of a THUMOS14 ground-truth variant (see --variant), built from
    the THUMOS14 annotation folder ($GAF_THUMOS14_DIR or ../shared/data/thumos14)

PRED, the predictions, is an ActivityNet results JSON:
  {"results": {video: [{"segment": [start, end], "label": ..., "score": ...}]}}
as written by `gaf eval` / `gaf detect` and by most detectors.

Rules (--rules):
  activitynet  (default) the ActivityNet official evaluation, numerically: per
               class, detections by score (ties: file order) each take the
               unmatched instance of highest tIoU >= threshold; interpolated AP;
               mAP over the classes of the ground truth. Detections for videos
               absent from the ground truth are false positives; labels absent
               from it are ignored (with a warning).
  thumos14     the THUMOS'14 challenge toolkit: each instance takes its best
               free detection if tIoU > threshold; unmatched detections touching
               an Ambiguous interval are dropped; AP not interpolated. Ambiguous
               intervals need a ground truth that keeps them, e.g.
               --variant thumos14-test-213-ambiguous.

Subset: ground truth with several subsets (training/validation/testing) is
cut to --subset; without it, to the subset holding most predicted videos.

examples:
  gaf score ../shared/data/thumos14/thumos14.json predictions.json
  gaf score activity_net.v1-3.min.json results.json --subset validation --tious 0.5:0.95:0.05
  gaf score thumos14-test-213-ambiguous predictions.json --rules thumos14 --per-class --json scores.json
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from gaf.data.annotations import THUMOS14_VARIANTS

    variants = "; ".join(f"{name}: {text}" for name, text in THUMOS14_VARIANTS.items())
    p = sub.add_parser("score", help="mAP of a predictions JSON against ground truth (no model needed)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gt", metavar="GT", help="ground-truth file or folder, or a THUMOS14 variant name (formats above)")
    p.add_argument("pred", metavar="PRED", help="predictions: ActivityNet results JSON")
    p.add_argument("--tious", default="0.3,0.4,0.5,0.6,0.7",
                   help="tIoU thresholds: a comma list, or start:stop:step with stop included "
                        "(ActivityNet: 0.5:0.95:0.05; default: %(default)s)")
    p.add_argument("--subset", help="score on this subset of GT (test/testing, val/validation, train/training; "
                                    "default: the subset holding most predicted videos)")
    p.add_argument("--variant", choices=list(THUMOS14_VARIANTS), metavar="NAME",
                   help=f"shape THUMOS14 ground truth into a named variant and check its counts. {variants}")
    p.add_argument("--rules", choices=RULES, default="activitynet", help="matching and AP rules (default: %(default)s)")
    p.add_argument("--per-class", action="store_true", help="also print the AP of every class")
    p.add_argument("--json", metavar="OUT.json", help="also write the scores as JSON (atomically)")
    p.set_defaults(run=run)


def parse_tious(text: str) -> list[float]:
    """``"0.3,0.5"`` → [0.3, 0.5]; ``"0.5:0.95:0.05"`` → 0.5, 0.55, ..., 0.95 (stop included)."""
    from gaf.errors import ConfigError

    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            return [round(start + k * step, 10) for k in range(count)]
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--tious: expected a comma list like 0.3,0.5,0.7 or start:stop:step like 0.5:0.95:0.05, "
                          f"got {text!r}") from None


def _write_json_atomic(path: str, doc: dict) -> None:
    from pathlib import Path

    from gaf.errors import DataError
    from gaf.io import atomic_write_json

    target = Path(path)
    try:
        atomic_write_json(target, doc)
    except OSError as e:
        raise DataError(f"{target}: cannot write the scores: {e.strerror or e}") from None


def _pick_subset(gt, pred) -> tuple[str | None, str]:
    """The subset of ``gt`` holding most predicted videos, and a note saying why (None: one subset only)."""
    from gaf.errors import AnnotationError

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


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings
    from pathlib import Path

    from gaf.data.annotations import THUMOS14_VARIANTS, read_ground_truth, thumos14_ground_truth
    from gaf.data.predictions import read_predictions
    from gaf.errors import ConfigError
    from gaf.metrics.detection import evaluate_detections

    tious = parse_tious(args.tious)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = read_predictions(args.pred)
        note = ""
        if not Path(args.gt).exists() and args.gt in THUMOS14_VARIANTS:
            if args.variant is not None and args.variant != args.gt:
                raise ConfigError(f"GT is the variant {args.gt!r} but --variant says {args.variant!r}")
            gt = thumos14_ground_truth(variant=args.gt)
            subset = "per variant"
        else:
            subset = args.subset
            if subset is None and args.variant is None:
                gt = read_ground_truth(args.gt)
                subset, note = _pick_subset(gt, pred)
                gt = gt.subset(subset) if subset is not None else gt
            else:
                gt = read_ground_truth(args.gt, subset=subset, variant=args.variant)
        result = evaluate_detections(gt, pred, tious, rules=args.rules)
    for w in caught:
        print(f"gaf score: warning: {w.message}", file=sys.stderr)

    subsets = ", ".join(gt.subsets())
    line = (f"ground truth: {gt.source}, subset {subset if subset else subsets}"
            + (f" ({note})" if note else "")
            + f"; {len(gt.videos)} videos, {gt.num_segments} instances, {len(result.per_class_ap)} classes")
    if gt.variant:
        line += f"; variant {gt.variant}"
    if gt.num_ambiguous:
        line += f"; {gt.num_ambiguous} Ambiguous intervals"
    print(line)
    print(f"predictions: {pred.source}; {len(pred.videos)} videos, {pred.num_segments} detections"
          + (f" ({result.num_ignored_predictions} ignored: label not in the ground truth)"
             if result.num_ignored_predictions else ""))
    if args.rules == "thumos14":
        removed = result.num_removed_ambiguous or []
        print("rules: thumos14 (THUMOS'14 toolkit: ground truth picks its best detection, tIoU > threshold, "
              "non-interpolated AP); "
              + (f"detections dropped for touching Ambiguous intervals per tIoU: {removed}" if gt.num_ambiguous
                 else "this ground truth has no Ambiguous intervals (try --variant thumos14-test-213-ambiguous)"))
    else:
        print("rules: activitynet (ActivityNet official evaluation: interpolated AP, tIoU >= threshold)")
    print(result.format_table(per_class=args.per_class))
    if args.json:
        doc = result.to_json()
        doc.update({"predictions": pred.source, "subset": subset})
        _write_json_atomic(args.json, doc)
        print(f"scores written to {args.json}")
    return 0
