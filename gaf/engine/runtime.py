"""Run-time plumbing shared by training, evaluation and extraction:
device choice, seeding, logging to the work dir."""

from __future__ import annotations

import logging
import os
import random
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gaf.errors import ConfigError

__all__ = ["select_device", "seed_everything", "cpu_threads", "setup_logging", "LOGGER_NAME"]

LOGGER_NAME = "gaf"


def select_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine (use cpu or auto)")
    return device


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``threads`` inside the block (0: leave torch's setting), the caller's
    setting restored after it (``train.threads``)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` also ask torch for
    deterministic kernels (warn-only, so ops without one still run)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # deterministic mode also fills every new tensor's memory with NaN (thousands of fills per training step),
        # a guard against kernels reading memory they did not write; ours do not, and the fills cost time
        torch.utils.deterministic.fill_uninitialized_memory = False
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True


FILE_ONLY = {"file_only": True}


def setup_logging(work_dir: Path | None, *, filename: str = "log.txt", console: bool = True) -> logging.Logger:
    """The ``gaf`` logger: INFO to stderr and (when ``work_dir``) appended to ``work_dir/filename``.

    A record logged with ``extra=FILE_ONLY`` goes to the file only (e.g. the mAP table, which the
    command prints itself: it shows once on the terminal).
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        stream.addFilter(lambda record: not getattr(record, "file_only", False))
        logger.addHandler(stream)
    if work_dir is not None:
        from gaf.io import output_error, prepare_output_dir

        prepare_output_dir(work_dir, "the work dir")
        try:
            fh = logging.FileHandler(work_dir / filename, encoding="utf-8")
        except OSError as exc:  # e.g. a log file left read-only
            raise output_error(work_dir / filename, exc) from None
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger
