"""gaf config show CONFIG [--set k=v ...]: the fully resolved config, every key with its default."""

from __future__ import annotations

import argparse

from gaf.commands._common import add_set_argument

HELP = """\
Print the config that `gaf train CONFIG` would run, fully resolved: every key
of every section, including those the file leaves at their defaults. A value
that differs from the key's default carries "# default: ..."; a key with a
valid range carries "# must be ...". Nothing is trained or written.

examples:
  gaf config show demo
  gaf config show thumos14_i3d --set train.epochs=30 --set model.loss.att=0
  gaf config show ucf101_features
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show a fully resolved config (every key, its default)", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("show",), help="what to do (show)")
    p.add_argument("config", help="config YAML path or bundled name (gaf config show demo)")
    add_set_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gaf.config import describe
    from gaf.engine.experiment import load_experiment
    from gaf.engine.recognition import is_recognition_config, load_recognition_experiment

    loader = load_recognition_experiment if is_recognition_config(args.config) else load_experiment
    print(describe(loader(args.config, args.overrides)))
    return 0
