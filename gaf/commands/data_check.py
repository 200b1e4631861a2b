"""gaf data check CONFIG: a feature dataset's numbers against a config, and the settings they recommend."""

from __future__ import annotations

import argparse
import sys

from gaf.commands._common import add_set_argument

HELP = """\
Check a feature dataset against a detection config, reading only the
annotation and each feature file's shape (no values, no model, no GPU).

Per subset (dataset.train_subset and test_subset): videos, durations,
instances per video, instance lengths in seconds and in feature steps (a step
lasts feature_stride / fps s, or duration / resize_length), the share of each
video covered by actions; videos longer than dataset.max_seq_len and the
evaluation windows they need; instances no pyramid level can regress
(model.detector regression ranges and center_sample_radius), shorter than a
step, or beyond the top level's range.

Problems, each with a count and the first names: missing or unreadable
feature files, files whose length disagrees with duration x fps /
feature_stride, .npy files with no annotated video, labels with instances in
one subset only, settings that disagree with the folder's features.json.
Provenance: how gaf extract made the features (features.json: streams, fps,
window, stride, crop, weights sha256); a folder mixing extractions is refused.

Recommended: dataset.max_seq_len, model.detector.num_levels and
regression_range_base, each with its reason; --write CONFIG_OUT writes the
config with them.

Exit status: 0 (problems are warnings), 1 with --strict when there is a
problem, 2 when the annotation file or the feature folder is missing (or the
config is invalid, or the folder mixes extractions).

examples:
  gaf data check demo
  gaf data check my_dataset.yaml --set dataset.fps=25
  gaf data check my_dataset.yaml --write my_dataset_tuned.yaml
  gaf data check my_dataset.yaml --strict   # in a script: 1 when anything is off
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="a dataset's numbers against a config, the settings they recommend",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG", help="config YAML path or bundled name (e.g. demo)")
    add_set_argument(p)
    p.add_argument("--write", metavar="CONFIG_OUT",
                   help="write the config (YAML, every key) with the recommended values applied")
    p.add_argument("--force", action="store_true", help="with --write: replace an existing CONFIG_OUT")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when any problem is found")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gaf.engine.experiment import load_experiment, resolve_config_path
    from gaf.engine.recognition import is_recognition_config
    from gaf.errors import ConfigError, OutputError
    from gaf.io import refuse_input_as_output

    if is_recognition_config(args.config):
        raise ConfigError(f"{args.config}: a recognition config (task: recognition); gaf data check checks the "
                          "feature datasets of detection configs")
    if args.write:
        refuse_input_as_output(args.write, [resolve_config_path(args.config)], "--write")
        if Path(args.write).exists() and not args.force:
            raise OutputError(f"--write {args.write}: exists; pass --force to replace it")
    cfg = load_experiment(args.config, args.overrides)
    if cfg.dataset is None or cfg.e2e is not None:
        raise ConfigError(f"{args.config}: gaf data check reads feature datasets (a 'dataset' section); this "
                          "config trains end to end on frames")
    if cfg.benchmark is not None:  # as gaf train does: the embedded benchmark is generated on first use
        from gaf.engine.train import prepare_benchmark

        if not (Path(cfg.benchmark.out_dir) / "benchmark.json").exists():
            print(f"generating the embedded benchmark into {cfg.benchmark.out_dir}", file=sys.stderr)
        prepare_benchmark(cfg)
    from gaf.data.check import check_dataset, recommended_config

    report = check_dataset(cfg.dataset, cfg.model.detector, config_name=str(args.config))
    print(report.format())
    if args.write:
        from gaf.config import dump_yaml, to_dict
        from gaf.engine.experiment import experiment_from_dict
        from gaf.io import atomic_write_text

        tuned = recommended_config(to_dict(cfg), report.recommendations)
        experiment_from_dict(tuned, where="the recommended config")  # it loads, or nothing is written
        atomic_write_text(args.write, dump_yaml(tuned))
        print(f"wrote {args.write} (the config with the recommended values)")
    return 1 if args.strict and report.problems else 0
