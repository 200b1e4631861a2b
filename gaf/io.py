"""Safe, atomic file writes (no torch import: used by ``gaf score`` and the readers).

Everything gaf writes — checkpoints, predictions, metrics, reports, plots,
feature indexes, weights — goes through :func:`atomic_write_bytes`:

* the data goes to a temporary file ``.<name>.<pid>.<random>.tmp`` in the
  target's folder, is flushed to disk and renamed over the target, so a
  crash or kill mid-write leaves the previous file intact and no
  half-written file under the final name;
* the new file gets the mode the umask gives (0644 under the usual 022), or
  the replaced file's own mode; never the temporary file's 0600;
* a symlink is written *through* (its target is replaced, the link stays);
  a character device or FIFO (``/dev/null``, ``/dev/stdout``, a pipe) is
  written into directly, never replaced by a regular file; a folder, block
  device or socket is refused;
* a SIGTERM mid-write (the CLI turns it into ``SystemExit(143)``, see
  :func:`install_sigterm_handler`) removes the temporary file; temporary
  files a killed process left (its PID no longer alive) are removed by the
  next write to the same target;
* OS failures (no space left, read-only file system, permission denied, a
  parent that is a file) become one-line :class:`~gaf.errors.OutputError`
  messages naming the path.

:func:`refuse_input_as_output` lets a command refuse an output path that is
one of its own inputs before it computes anything; :func:`prepare_output_dir`
makes (or checks) the folder a command writes into — a work dir, an ``--out``
folder — before any work, and turns every way it can be unusable (a file or
device in its place, permission denied, a read-only file system) into one
:class:`~gaf.errors.OutputError` naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable

from gaf.errors import OutputError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_save_npy", "sha256_file",
           "refuse_input_as_output", "prepare_output_dir", "output_error", "install_sigterm_handler",
           "default_file_mode"]

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENAMETOOLONG: "file name too long",
}


def _reason(exc: OSError) -> str:
    return _REASONS.get(exc.errno or 0) or (exc.strerror or str(exc))


def _failure(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write: {_reason(exc)}")


def output_error(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """The one-line OutputError for an OS failure ``exc`` writing ``path`` (``<path>: cannot write: <reason>``)."""
    return _failure(Path(path), exc)


def _kind_of(mode: int) -> str:
    """What a non-folder file system entry is, in words."""
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a folder"


def _not_writable(folder: Path) -> str | None:
    """Why this process cannot create files in the existing folder ``folder``, or None when it can."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def prepare_output_dir(path: str | os.PathLike[str], what: str = "the output folder", *,
                       create: bool = True) -> Path:
    """The folder ``path``, created with its parents when missing, ready to be written into; returns it.

    OutputError naming ``path`` (``what`` names the folder's role, e.g. "the work dir") when something
    other than a folder is there (a file, a device such as ``/dev/null``, a FIFO: left untouched), when
    it cannot be created (a parent is a file, permission denied, read-only file system), or when this
    process may not create files in it. A link to a folder is a folder. ``create=False`` checks the same
    without creating anything (a missing ``path`` then needs its nearest existing parent to be a folder
    this process can write into), for a command that creates the folder only once its inputs are checked.
    """
    path = Path(path)
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # a parent is a file (ENOTDIR), a parent not searchable (EACCES), a loop...
        raise OutputError(f"{path}: cannot use as {what}: {_reason(exc)}") from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path}: cannot use as {what}: it is {_kind_of(st.st_mode)}, not a folder")
    if st is None and not create:  # (a parent that is a file made os.stat fail above)
        parent = next((p for p in path.absolute().parents if p.exists()), Path("/"))
        why = _not_writable(parent)
        if why:
            raise OutputError(f"{path}: cannot create {what}: {why}")
        return path
    if st is None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create {what}: {_reason(exc)}") from None
    why = _not_writable(path)
    if why:
        raise OutputError(f"{path}: cannot write into {what}: {why}")
    return path


def default_file_mode() -> int:
    """``0o666`` less the process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(folder: Path, name: str) -> None:
    """Remove ``.<name>.<pid>.*.tmp`` files of processes that no longer run."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(\d+)\.[^.]+\.tmp$")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _write_into(path: Path, target: Path, data: bytes) -> None:
    """Write into an existing character device or FIFO as it is (no temp file, no rename)."""
    try:
        with open(target, "wb", buffering=0) as fh:
            view = memoryview(data)
            while view:
                view = view[fh.write(view):]
    except OSError as exc:
        raise _failure(path, exc) from None


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` safely (see the module docstring); returns ``Path(path)``."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    mode = default_file_mode()
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _failure(path, exc) from None
    if st is not None:
        kind = st.st_mode
        if stat.S_ISDIR(kind):
            raise OutputError(f"{path}: is a folder, not a file; give a file name")
        if stat.S_ISCHR(kind) or stat.S_ISFIFO(kind):
            _write_into(path, target, data)
            return path
        if not stat.S_ISREG(kind):
            what = "a block device" if stat.S_ISBLK(kind) else "a socket" if stat.S_ISSOCK(kind) else "not a file"
            raise OutputError(f"{path}: is {what}, not a regular file; refusing to write there")
        mode = stat.S_IMODE(kind)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _failure(path, exc) from None
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot write: {folder} is a file, not a folder")
    _remove_stale_temps(folder, target.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _failure(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:  # SIGTERM (SystemExit), Ctrl-C, disk full...: no orphan temp file
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _failure(path, exc) from None
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


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(os.path.realpath(a)) == Path(os.path.realpath(b))


def refuse_input_as_output(output: str | os.PathLike[str] | None, inputs: Iterable[Any], option: str) -> None:
    """OutputError when ``output`` (given as ``option``, e.g. ``--json``) is one of ``inputs`` (paths; None
    skipped). Devices such as ``/dev/null`` are never inputs of a command, so they pass."""
    if output is None:
        return
    out = Path(output)
    for item in inputs:
        if item is None or str(item) == "":
            continue
        if _same_file(out, Path(item)):
            raise OutputError(f"{option} {output}: is also an input of this command ({item}); "
                              "it would be overwritten: write the output elsewhere")


def install_sigterm_handler() -> Any:
    """Turn SIGTERM into ``SystemExit(143)`` in the main thread, so ``finally`` blocks run (temp files
    are removed, locks released). Returns the previous handler (None when not in the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def _terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, _terminate)
