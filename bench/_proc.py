"""Helpers shared by the bench scripts (imported as a sibling module: run the scripts as files)."""

from __future__ import annotations

__all__ = ["status_kb"]


def status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``: Linux only)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")
