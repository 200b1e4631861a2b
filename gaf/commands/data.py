"""gaf data <action>: a user's own dataset — ``import`` annotations into gaf's JSON, ``check`` a dataset
against a config.

Each action lives in ``gaf/commands/data_<action>.py`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``, as the top-level
commands do (:mod:`gaf.cli`); their top level stays light (no torch).
"""

from __future__ import annotations

import argparse
import importlib

ACTIONS: tuple[str, ...] = ("import", "check")

HELP = """\
Your own videos and labels, from a CSV to a dataset gaf trains on.

  gaf data import   annotations (CSV / TSV, THUMOS14 per-class files,
                    ActivityNet JSON) -> gaf's annotation JSON, durations and
                    fps read from the videos, a seeded train / test split
  gaf data check    a dataset's numbers against a config (lengths, windows,
                    regression ranges, feature files and provenance), the
                    settings they recommend, --write CONFIG_OUT applies them

Run `gaf data <action> --help` for each. Walk-through: docs/your_data.md.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="import annotations, check a dataset against a config", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="data_action", metavar="<action>")
    for name in ACTIONS:
        try:
            module = importlib.import_module(f"gaf.commands.data_{name}")
        except ModuleNotFoundError as exc:  # an action not built into this install
            if exc.name != f"gaf.commands.data_{name}":
                raise
            continue
        module.add_parser(actions)
    p.set_defaults(run=lambda args: _missing_action(p))


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
