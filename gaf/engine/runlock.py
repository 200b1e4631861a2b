"""One run per work dir: an exclusive, crash-safe lock on ``<work_dir>/.gaf.lock``.

``gaf train`` (detection and recognition) holds the lock from before it
looks at the work dir until it returns. The lock is an ``flock`` on the
file, so the kernel releases it when the process ends in any way — a crash
or ``kill -9`` leaves no stale lock, only the file, which the next run
takes over. The file names the holder (PID, host, start time, command), so
a second run into a live one fails at once with::

    work_dirs/demo: in use by another gaf run (pid 4242 on node1, since 2026-12-05 10:00:00:
    gaf train demo); wait for it to finish, or choose another --work-dir

On systems without ``fcntl`` (Windows) no lock is taken.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gaf.errors import ConfigError
from gaf.io import output_error, prepare_output_dir

__all__ = ["LOCK_NAME", "hold_work_dir"]

LOCK_NAME = ".gaf.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"pid {info['pid']} on {info['host']}, since {info['since']}: {info['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


@contextmanager
def hold_work_dir(work_dir: str | os.PathLike[str], *, enabled: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of ``work_dir`` (created if needed) for the ``with`` block.

    ConfigError naming the holder when another process holds it; OutputError naming the path when
    ``work_dir`` is a file or device, cannot be created or written into (:func:`gaf.io.prepare_output_dir`).
    ``enabled`` False (e.g. ranks other than 0) makes this a no-op.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        enabled = False
    if not enabled:
        yield
        return
    folder = prepare_output_dir(work_dir, "the work dir")
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # e.g. a lock file left read-only
        raise output_error(path, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{folder}: in use by another gaf run ({_holder(path)}); wait for it to finish, "
                              "or choose another --work-dir") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(["gaf", *sys.argv[1:]]) if sys.argv else "gaf"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released: the file stays (removing it would race a starting run)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
