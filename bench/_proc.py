"""Helpers shared by the bench scripts (imported as a sibling module: run the scripts as files)."""

from __future__ import annotations

__all__ = ["status_kb", "release_free_memory", "reset_peak_rss"]


def status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``: Linux only)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def release_free_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``), so the resting RSS is live memory."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the growth is then over a process that may keep freed memory


def reset_peak_rss() -> int:
    """Reset the peak-RSS mark (Linux: 5 into ``/proc/self/clear_refs``); return the current RSS in kB."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return status_kb("VmRSS")
