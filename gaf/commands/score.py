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
               from it are ignored (with a warning). Segments ending before
               0 s, starting after their video's end or reversed are scored by
               the same tIoU (false positives unless they overlap ground
               truth), with one warning counting each kind.
  thumos14     the THUMOS'14 challenge toolkit: each instance takes its best
               free detection if tIoU > threshold; unmatched detections touching
               an Ambiguous interval are dropped; AP not interpolated. Ambiguous
               intervals need a ground truth that keeps them, e.g.
               --variant thumos14-test-213-ambiguous.

Subset: ground truth with several subsets (training/validation/testing) is
cut to --subset; without it, to the subset holding most predicted videos.

Proposals (--proposals): class-agnostic proposals (labels optional and
ignored) scored as the ActivityNet proposal task's eval_proposal.py does:
average recall (mean over tIoU 0.5:0.05:0.95) at an average number of
proposals per video AN = 1..--max-proposals (each video keeping its share of
its best proposals), AR@1/5/10/50/100 and the area under the AR-AN curve (%).

examples:
  gaf score ../shared/data/thumos14/thumos14.json predictions.json
  gaf score activity_net.v1-3.min.json results.json --subset validation --tious 0.5:0.95:0.05
  gaf score thumos14-test-213-ambiguous predictions.json --rules thumos14 --per-class --json scores.json
  gaf score anet_anno_action.json bmn_proposals.json --proposals --subset validation
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="mAP of a predictions JSON against ground truth (no model needed)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gt", metavar="GT", help="ground-truth file or folder, or a THUMOS14 variant name (formats above)")
    p.add_argument("pred", metavar="PRED", help="predictions: ActivityNet results JSON")
    p.add_argument("--tious", default=None,
                   help="tIoU thresholds: a comma list, or start:stop:step with stop included (default: the "
                        "ground truth's protocol: ActivityNet 0.5:0.95:0.05, THUMOS14 and others 0.3:0.7:0.1)")
    p.add_argument("--rules", choices=RULES, default="activitynet", help="matching and AP rules (default: %(default)s)")
    p.add_argument("--per-class", action="store_true", help="also print the AP of every class")
    p.add_argument("--json", metavar="OUT.json", help="also write the scores as JSON (atomically)")
    p.add_argument("--proposals", action="store_true",
                   help="score PRED as class-agnostic proposals: AR@AN and the AR-AN area (default tIoUs "
                        "0.5:0.95:0.05)")
    p.add_argument("--max-proposals", type=float, default=100.0, metavar="AN",
                   help="with --proposals: the largest average number of proposals per video (default: %(default)g)")
    add_ground_truth_arguments(p)
    p.set_defaults(run=run)


def add_ground_truth_arguments(p: argparse.ArgumentParser) -> None:
    """The options that pick the ground truth and read the predictions (shared by gaf score and gaf analyze)."""
    from gaf.data.annotations import THUMOS14_VARIANTS

    variants = "; ".join(f"{name}: {text}" for name, text in THUMOS14_VARIANTS.items())
    p.add_argument("--subset", help="score on this subset of GT (test/testing, val/validation, train/training, "
                                    "or 'all'; default: the subset holding most predicted videos)")
    p.add_argument("--variant", choices=list(THUMOS14_VARIANTS), metavar="NAME",
                   help=f"shape THUMOS14 ground truth into a named variant and check its counts. {variants}")
    p.add_argument("--label-map", metavar="FILE",
                   help="class names for integer labels in PRED (ActionFormer's outputs): one per line, line k = "
                        "class k")
    p.add_argument("--overrun", choices=("warn", "clip", "error"), default="warn",
                   help="ground-truth segments ending after their video's duration: keep with a warning, clip "
                        "them to the duration, or refuse the file (default: %(default)s)")
    prefix = p.add_mutually_exclusive_group()
    prefix.add_argument("--add-prefix", metavar="P", help="prepend P to every predicted video id (e.g. v_)")
    prefix.add_argument("--strip-prefix", metavar="P", help="remove P from the start of predicted video ids")


def load_for_scoring(args: argparse.Namespace):
    """``(gt, pred, subset, note)`` for GT and PRED with the options of :func:`add_ground_truth_arguments`
    (:func:`gaf.metrics.inputs.resolve_scoring_inputs`). Warnings are raised, not printed: callers collect
    them."""
    from gaf.metrics.inputs import resolve_scoring_inputs

    got = resolve_scoring_inputs(args.gt, args.pred, subset=args.subset, variant=args.variant,
                                 label_map=args.label_map, overrun=args.overrun, add_prefix=args.add_prefix,
                                 strip_prefix=args.strip_prefix, proposals=getattr(args, "proposals", False))
    return got.gt, got.pred, got.subset, got.note


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from gaf.errors import ConfigError
    from gaf.io import refuse_input_as_output
    from gaf.metrics.detection import evaluate_detections
    from gaf.metrics.inputs import ACTIVITYNET_TIOUS, parse_tious, protocol_tious

    refuse_input_as_output(args.json, [args.gt, args.pred, args.label_map], "--json")
    tious = parse_tious(args.tious) if args.tious else None
    if args.proposals and args.rules != "activitynet":
        raise ConfigError("--proposals scores recall as the ActivityNet proposal task does; --rules does not apply")
    if not (0 < args.max_proposals < 1e6):
        raise ConfigError(f"--max-proposals: expected a number of proposals per video > 0, got {args.max_proposals:g}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gt, pred, subset, note = load_for_scoring(args)
        protocol = ""
        if args.proposals:
            from gaf.metrics.proposals import evaluate_proposals

            if tious is None:
                tious, protocol = parse_tious(ACTIVITYNET_TIOUS), f"{ACTIVITYNET_TIOUS}, the proposal task's"
            result = evaluate_proposals(gt, pred, tious, max_avg_proposals=args.max_proposals)
        else:
            if tious is None:
                tious, protocol = protocol_tious(gt)
            result = evaluate_detections(gt, pred, tious, rules=args.rules)
    for w in caught:
        print(f"gaf score: warning: {w.message}", file=sys.stderr)

    subsets = ", ".join(gt.subsets())
    line = (f"ground truth: {gt.source}, subset {subset if subset else subsets}"
            + (f" ({note})" if note else "") + f"; {len(gt.videos)} videos, {gt.num_segments} instances"
            + ("" if args.proposals else f", {len(result.per_class_ap)} classes"))
    if gt.variant:
        line += f"; variant {gt.variant}"
    if gt.num_ambiguous:
        line += f"; {gt.num_ambiguous} Ambiguous intervals"
    print(line)
    if protocol:
        print(f"tIoU thresholds: {protocol} (--tious to change)")
    if args.proposals:
        print(f"proposals: {pred.source}; {len(pred.videos)} videos, {pred.num_segments} proposals "
              f"({result.num_videos} ground-truth videos with instances scored)")
        print(result.format())
        _write_scores(args.json, {**result.to_json(), "ground_truth": gt.source, "predictions": pred.source,
                                  "subset": subset})
        return 0
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
    _write_scores(args.json, {**result.to_json(), "predictions": pred.source, "subset": subset})
    return 0


def _write_scores(path: str | None, doc: dict) -> None:
    """``doc`` to ``path`` (atomically) and a line saying so; nothing without a path."""
    if path:
        from gaf.io import atomic_write_json

        atomic_write_json(path, doc)
        print(f"scores written to {path}")
