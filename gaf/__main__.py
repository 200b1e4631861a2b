"""``python -m gaf`` (and ``torchrun -m gaf``) runs the command-line interface."""

from gaf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
