"""Progress on long work: a tqdm bar on a terminal, periodic log lines otherwise.

Used by training (:mod:`gaf.engine.loop`), inference (:mod:`gaf.engine.evaluate`)
and feature extraction (:mod:`gaf.extraction`). Standard library only; tqdm is
imported when a bar is drawn.
"""

from __future__ import annotations

import math
import sys
import time

__all__ = ["progress_bar", "ProgressLog", "logged_progress", "shows_bars", "POSTFIX_KEYS"]

POSTFIX_KEYS = 4  # losses shown in a progress bar's postfix (all of them go to the log line)


def shows_bars(progress: bool) -> bool:
    """Whether progress bars will be drawn: asked for, and stderr is a terminal."""
    return progress and sys.stderr.isatty()


def progress_bar(iterable, desc: str, enabled: bool, total: int | None = None):
    """A tqdm bar over ``iterable`` when ``enabled`` and stderr is a terminal, else ``iterable`` itself
    (batch jobs log progress lines instead: :class:`ProgressLog`)."""
    if not shows_bars(enabled):
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, total=total)


class ProgressLog:
    """Progress lines for logs without a progress bar: ``desc: done/total it, rate, ETA, values``.

    One line every ``every`` items (default: a tenth of ``total``) or ``seconds``
    seconds, whichever comes first, and at the end.
    """

    def __init__(self, logger, desc: str, total: int, *, every: int | None = None, seconds: float = 60.0,
                 unit: str = "it") -> None:
        self.logger, self.desc, self.total, self.unit = logger, desc, max(0, total), unit
        self.every = every or max(1, math.ceil(self.total / 10))
        self.seconds = seconds
        self.start = self.last = time.perf_counter()
        self.done = 0

    def update(self, done: int, values: dict[str, float] | None = None) -> None:
        now = time.perf_counter()
        if not (done % self.every == 0 or done == self.total or now - self.last >= self.seconds):
            return
        self.last, self.done = now, done
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        shown = " ".join(f"{k}={v:.4g}" for k, v in (values or {}).items())
        self.logger.info("%s: %d/%d %s, %.2f %s/s, ETA %s%s", self.desc, done, self.total, self.unit, rate,
                         self.unit, format_duration(eta), f", {shown}" if shown else "")


def logged_progress(iterable, logger, desc: str, total: int, *, unit: str = "it"):
    """Yield from ``iterable``, logging a :class:`ProgressLog` line as items complete (for runs whose
    progress bar is off or not on a terminal)."""
    lines = ProgressLog(logger, desc, total, unit=unit)
    for done, item in enumerate(iterable, 1):
        yield item
        lines.update(done)


def format_duration(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) of a number of seconds; ``?`` when not finite."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
