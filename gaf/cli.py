"""The ``gaf`` command line: ``gaf <command> [options]``.

Each sub-command lives in ``gaf/commands/<name>.py`` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``. Command modules are
imported here, so their top level must stay light (no torch): ``gaf score``
and ``gaf --help`` start in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import Sequence

from gaf import __version__
from gaf.errors import GafError
from gaf.io import install_sigterm_handler

# Order is the order shown by ``gaf --help``.
COMMANDS: tuple[str, ...] = ("demo", "train", "eval", "score", "analyze", "extract", "detect", "classify", "weights", "data",
                             "config", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaf",
        description=(
            "gaf: generative attention (GAF) for temporal action detection and "
            "action recognition. Run `gaf <command> --help` for each command."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gaf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"gaf.commands.{name}")
        except ModuleNotFoundError as exc:  # command not built into this install
            if exc.name != f"gaf.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    ok = False
    previous = install_sigterm_handler()  # SIGTERM → SystemExit(143): temp files removed, locks released
    try:
        code = int(args.run(args) or 0)
        ok = True
        return code
    except GafError as exc:
        print(f"gaf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gaf {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if "torch.distributed" in sys.modules:  # leave a torchrun process group cleanly (all ranks done)
            from gaf.engine.distributed import shutdown_distributed

            shutdown_distributed(wait=ok)


if __name__ == "__main__":
    raise SystemExit(main())
