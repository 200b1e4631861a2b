"""Atomic file writes (no torch import: used by ``gaf score`` and the readers).

Everything gaf writes — checkpoints, predictions, metrics, reports, plots,
feature indexes — goes through :func:`atomic_write_bytes`: the data is written
to a temporary file in the target's folder, flushed to disk, then renamed over
the target. A crash or kill mid-write leaves the previous file intact and no
half-written file under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_npy", "sha256_file"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], doc: Any, *, indent: int | None = 1) -> Path:
    """Write ``doc`` as strict JSON (no NaN / Infinity; ValueError otherwise) atomically."""
    data = json.dumps(doc, indent=indent, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, data + "\n")


def atomic_save_npy(path: str | os.PathLike[str], array: Any) -> Path:
    """Write ``array`` (a NumPy array, dtype kept) as a ``.npy`` file atomically."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file at ``path`` (read in 1 MiB blocks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
