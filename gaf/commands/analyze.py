"""gaf analyze GT PRED: DETAD-style error analysis of any detections (no torch import)."""

from __future__ import annotations

import argparse

HELP = """\
Diagnose a detector's errors as Alwassel et al., "Diagnosing Error in Temporal
Action Detectors" (ECCV 2018, DETAD) do, for any predictions file gaf reads
(gaf eval's, ActionFormer's, anyone's), against any ground truth gaf reads:

  false-positive profile   among each class's top 1G ... 10G predictions (G =
                           its number of instances), the share of true
                           positives, double detections, wrong labels,
                           localization, confusion and background errors
  error impact             the average-mAP gain if each error type were removed
  sensitivity              normalized mAP per bin of instance length, instances
                           of the class per video and coverage (length / video)
  false negatives          the share of each bin's instances never detected

Bins and thresholds follow DETAD for the ground truth's benchmark: THUMOS14
(tIoU 0.5; lengths 3/6/12/18 s) or ActivityNet (tIoU 0.5:0.05:0.95; lengths
30/60/120/180 s). Prints the tables; with --out, writes DIR/analysis.json and
DIR/analysis.png.

examples:
  gaf analyze thumos14-test-212 work_dirs/thumos14_i3d/predictions.json --out analysis/
  gaf analyze anet_anno_action.json results.json --add-prefix v_ --tiou 0.5
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from gaf.commands.score import add_ground_truth_arguments

    p = sub.add_parser("analyze", help="DETAD error analysis of detections (false positives, sensitivity)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gt", metavar="GT", help="ground truth (a file, or a THUMOS14 variant name)")
    p.add_argument("pred", metavar="PRED", help="predictions (ActivityNet results JSON)")
    p.add_argument("--tiou", default=None, help="tIoU threshold(s), as gaf score's --tious (default: the "
                                                "benchmark's: 0.5 THUMOS14, 0.5:0.95:0.05 ActivityNet)")
    p.add_argument("--out", metavar="DIR", help="write analysis.json and analysis.png here")
    add_ground_truth_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import warnings

    from gaf.commands.score import load_for_scoring
    from gaf.metrics.inputs import parse_tious
    from gaf.io import atomic_write_json, refuse_input_as_output
    from gaf.metrics.analysis import analyze_detections, default_tious, protocol_of

    out = Path(args.out) if args.out else None
    if out is not None:
        refuse_input_as_output(out / "analysis.json", [args.gt, args.pred, args.label_map], "--out")
    tious = parse_tious(args.tiou) if args.tiou else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gt, pred, _, _ = load_for_scoring(args)
        protocol = protocol_of(gt)
        tious = tious or default_tious(protocol)
        analysis = analyze_detections(gt, pred, tious, protocol=protocol)
    for w in caught:
        print(f"gaf analyze: warning: {w.message}", file=sys.stderr)
    print(f"ground truth: {gt.source} ({len(gt.videos)} videos); predictions: {pred.source}")
    print(analysis.format())
    if out is not None:
        from gaf.viz import plot_error_analysis

        atomic_write_json(out / "analysis.json", {"ground_truth": gt.source, "predictions": pred.source,
                                                  **analysis.to_json()})
        plot_error_analysis(out / "analysis.png", analysis)
        print(f"wrote {out / 'analysis.json'} and {out / 'analysis.png'}")
    return 0
