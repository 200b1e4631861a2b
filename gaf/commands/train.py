"""gaf train CONFIG: train a GAF detector (features or end to end on frames) or a recognizer."""

from __future__ import annotations

import argparse

from gaf.commands._common import add_progress_argument, add_set_argument

HELP = """\
Train a GAF detector (or the plain detector, model.gaf.enabled=false) on
pre-extracted features; end to end on video frames (I3D + GAF, the paper's
THUMOS14 setting) when the config has `e2e` and `frames` sections; or an
action recognizer when the config says `task: recognition` (top-1 / top-5).
CONFIG is a YAML file or the name of a bundled config (demo, demo_hard, demo_anet,
thumos14_i3d, anet_i3d, anet_tsp: GAF on the SGP detector; thumos14_i3d_afsd,
anet_i3d_afsd: GAF on the paper's AFSD base; thumos14_i3d_rgb, thumos14_i3d_flow,
thumos14_e2e, ablation_ai, ablation_ai_nai, ablation_ai_nai_r; recognition:
ucf101_features, ucf101_i3d, demo_anet_cls, anet_i3d_cls). The ActivityNet configs train
a class-agnostic detector whose proposals take each video's classes from
--set eval.video_scores=FILE (a video-level classifier's scores, e.g. anet_i3d_cls's
video_scores.json; README "ActivityNet v1.3").

GAF's formulation is a config choice (model.gaf.attention scalar|channel,
model.gaf.context local|global|window, model.gaf.output average|enhanced|normalized,
model.loss.nai_form complement|background, model.loss.clf/clf_prior,
model.loss.att (L_att, ours: 0 = the paper's losses), model.gaf.oracle;
docs/method.md); the defaults are the measured ones
(docs/benchmark.md). Every epoch logs λ's health (health/...: mean λ on action
and background steps, AUROC against the ground truth, share of λ < 0.05; and
grad_lambda/...: each loss term's pull on λ) into history.json, the log,
TensorBoard and the report.

Everything is written to one work dir (default work_dirs/<name>): config.yaml,
log.txt, latest.pt (every epoch, atomic), final.pt, history.json, and after the
final evaluation predictions.json, metrics.json and report/report.html.

examples:
  gaf train thumos14_i3d --set dataset.feature_dir=/data/thumos/i3d_features \\
      --set dataset.annotation_file=/data/thumos/annotations/thumos14.json
  gaf train thumos14_e2e --set frames.video_dir=/data/thumos/videos \\
      --set e2e.backbone_weights=/weights/rgb_imagenet.pt     # end to end (GPU)
  gaf train demo --set train.epochs=3 --work-dir work_dirs/try
  gaf train demo --work-dir work_dirs/try --resume     # continue a killed run
  torchrun --nproc_per_node 4 -m gaf train thumos14_i3d ...   # 4 GPUs (DDP)

Under torchrun (one node or many) train.batch_size is the global batch, split
over the processes; NCCL on GPUs, gloo on CPUs; rank 0 writes the work dir,
which must be on a filesystem every node sees for --resume.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector (features or end to end) or a recognizer (task: recognition)", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="config YAML path or bundled config name")
    add_set_argument(p)
    p.add_argument("--work-dir", help="run folder (default: work_dirs/<name> from the config)")
    p.add_argument("--resume", action="store_true", help="continue the run in --work-dir from latest.pt")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="train N more epochs, then stop (continue later with --resume)")
    add_progress_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """One run for either task: the config's ``task`` picks the loader, the trainer and the result table."""
    from gaf.engine.distributed import init_distributed
    from gaf.engine.recognition import is_recognition_config

    if is_recognition_config(args.config):
        from gaf.engine.recognition import format_recognition_metrics as table
        from gaf.engine.recognition import load_recognition_experiment as load
        from gaf.engine.recognition import train_recognizer as trainer
    else:
        from gaf.engine.experiment import load_experiment as load
        from gaf.engine.train import train as trainer
        from gaf.viz import format_metrics_table as table

    cfg = load(args.config, args.overrides)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    result = trainer(cfg, work_dir=cfg.resolved_work_dir(), resume=args.resume, stop_after_epochs=args.stop_after,
                     progress=args.progress)
    if not init_distributed(cfg.train.device).is_main:
        return 0
    if result.metrics is not None:
        print(table(result.metrics))
        if (result.work_dir / "report" / "report.html").exists():
            print(f"report: {result.work_dir / 'report' / 'report.html'}")
    print(f"work dir: {result.work_dir}")
    return 0
