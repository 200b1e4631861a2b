"""gaf eval [CONFIG] --ckpt CKPT: evaluate a trained detector."""

from __future__ import annotations

import argparse

from gaf.commands._common import add_progress_argument, add_set_argument

HELP = """\
Evaluate a checkpoint on the test split of its dataset. Detection: inference,
Soft-NMS, mAP at eval.tious (ActivityNet rules), report, ActivityNet results
JSON. Recognition checkpoints: top-1 / top-5 with multi-clip averaging, and
every test video's class probabilities in video_scores.json (CUHK's
ActivityNet classifier layout; --scores-out to write them elsewhere), which a
detection config's eval.video_scores reads.

CONFIG is optional: without it, the config stored in the checkpoint is used.
With --fuse, a second checkpoint (e.g. the flow model next to an RGB model)
runs on the same videos and the two models' outputs (class probabilities and
offsets) are averaged before decoding, as the paper does at test time. The
second model uses the config stored in its checkpoint with the same --set
overrides applied.

A class-agnostic checkpoint (trained with dataset.class_agnostic=true) is
scored as proposals (every ground-truth label collapsed to "action") unless
eval.video_scores names a JSON of video-level class scores ({"results":
{video_id: [K scores]}, "class": [K names]}, CUHK's ActivityNet layout):
each proposal then takes its video's top eval.video_score_topk classes,
scored sqrt(p * s) (eval.video_fusion=actionformer, top 2) or p * s (afsd,
top 1).

examples:
  gaf eval --ckpt work_dirs/demo/final.pt
  gaf eval thumos14_i3d_rgb --ckpt rgb/final.pt --fuse flow/final.pt --out fused.json
  gaf eval --ckpt work_dirs/demo_anet_cls/final.pt --scores-out anet_video_scores.json
  torchrun --nproc_per_node 4 -m gaf eval --ckpt final.pt   # videos shared over 4 processes
  gaf eval --ckpt anet/final.pt --set eval.video_scores=cuhk_val_simp_share.json
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint (mAP + report, or top-1/top-5)", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="config YAML path or bundled name (default: the checkpoint's)")
    p.add_argument("--ckpt", required=True, help="checkpoint (final.pt, latest.pt or epoch_N.pt)")
    p.add_argument("--fuse", metavar="CKPT2", help="second-stream checkpoint whose outputs are averaged in")
    p.add_argument("--out", help="predictions JSON path (default: <work dir>/predictions.json)")
    p.add_argument("--scores-out", metavar="FILE",
                   help="recognition: video-level class scores JSON (default: <work dir>/video_scores.json)")
    p.add_argument("--work-dir", help="where to write metrics and report (default: eval_<ckpt stem> beside the checkpoint)")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the HTML report")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    add_set_argument(p)
    add_progress_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gaf.engine.checkpoint import load_checkpoint
    from gaf.engine.evaluate import evaluate_run
    from gaf.engine.loading import load_detector
    from gaf.engine.recognition import is_recognition_checkpoint, is_recognition_config
    from gaf.engine.distributed import init_distributed
    from gaf.engine.runtime import setup_logging
    from gaf.errors import ConfigError
    from gaf.io import refuse_input_as_output

    refuse_input_as_output(args.out, [args.ckpt, args.fuse, args.config], "--out")
    refuse_input_as_output(args.scores_out, [args.ckpt, args.fuse, args.config, args.out], "--scores-out")
    if (args.config and is_recognition_config(args.config)) or is_recognition_checkpoint(args.ckpt):
        return _evaluate_recognizer(args)
    if args.scores_out:
        raise ConfigError("--scores-out: video-level class scores come from recognition checkpoints; "
                          f"{args.ckpt} holds a detector")

    ctx = init_distributed(args.device)
    device = ctx.device
    model, cfg = load_detector(args.ckpt, config=args.config, overrides=args.overrides, device=device)
    models, cfgs = [model], [cfg]
    if args.fuse:
        model2, cfg2 = load_detector(args.fuse, config=None, overrides=args.overrides, device=device)
        models.append(model2)
        cfgs.append(cfg2)
    annotations = [c.dataset.annotation_file if c.dataset is not None else c.frames.annotation_file for c in cfgs]
    refuse_input_as_output(args.out, annotations, "--out")  # before any inference
    ckpt = Path(args.ckpt)
    work_dir = Path(args.work_dir) if args.work_dir else ckpt.parent / f"eval_{ckpt.stem}{'_fused' if args.fuse else ''}"
    logger = setup_logging(work_dir if ctx.is_main else None, filename="eval_log.txt", console=ctx.is_main)
    history, run_info = None, {"checkpoint": str(ckpt), "device": str(device)}
    if args.fuse:
        run_info["fused with"] = str(args.fuse)
    if args.report and ctx.is_main:
        state = load_checkpoint(ckpt)
        run_info["epoch"] = state.get("epoch", "?")
        stored = state.get("history")
        if not args.fuse:  # a fused report has no single training history
            history = list(stored) if isinstance(stored, list) and stored else None
        del state
    result = evaluate_run(models, cfgs, work_dir=work_dir, device=device, progress=args.progress, logger=logger,
                          predictions_path=Path(args.out) if args.out else None, report=args.report, ctx=ctx,
                          history=history, run_info=run_info)
    if result is None:  # not rank 0: rank 0 scores and prints
        return 0
    print(result.format_table())
    print(f"predictions: {args.out or work_dir / 'predictions.json'}")
    if args.report:
        print(f"report: {work_dir / 'report' / 'report.html'}")
    return 0


def _evaluate_recognizer(args: argparse.Namespace) -> int:
    """``gaf eval [CONFIG] --ckpt CKPT`` for a recognition checkpoint: top-1 / top-5, mean class accuracy."""
    from pathlib import Path

    from gaf.engine.distributed import init_distributed
    from gaf.engine.recognition import evaluate_recognizer, load_recognizer
    from gaf.engine.runtime import setup_logging
    from gaf.io import refuse_input_as_output

    ctx = init_distributed(args.device)
    if not ctx.is_main:  # recognition is scored on rank 0 alone (test sets are small)
        return 0
    model, cfg = load_recognizer(args.ckpt, config=args.config, overrides=args.overrides, device=ctx.device)
    out = Path(args.out) if args.out else None
    scores_out = Path(args.scores_out) if args.scores_out else None
    annotations = [cfg.dataset.annotation_file] if cfg.dataset.source == "annotations" else []
    refuse_input_as_output(out, annotations, "--out")  # before anything is written
    refuse_input_as_output(scores_out, annotations, "--scores-out")
    ckpt = Path(args.ckpt)
    work_dir = Path(args.work_dir) if args.work_dir else ckpt.parent / f"eval_{ckpt.stem}{'_fused' if args.fuse else ''}"
    logger = setup_logging(work_dir, filename="eval_log.txt")
    # a second stream (e.g. flow next to RGB): its stored config, the same overrides
    fuse = [load_recognizer(args.fuse, overrides=args.overrides, device=ctx.device)] if args.fuse else []
    result = evaluate_recognizer(model, cfg, device=ctx.device, progress=args.progress, logger=logger,
                                 work_dir=work_dir, predictions_path=out, scores_path=scores_out, fuse=fuse)
    print(result.format_table())
    print(f"predictions: {out or work_dir / 'predictions.json'}")
    print(f"video scores: {scores_out or work_dir / 'video_scores.json'}")
    return 0
