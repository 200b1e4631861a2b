"""One module per CLI sub-command; each defines ``add_parser(subparsers)`` and ``run(args) -> int``. Module tops import nothing heavy (no torch), so ``gaf --help`` and ``gaf score`` start fast."""
