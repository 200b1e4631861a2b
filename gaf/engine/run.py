"""One training run's setup and ending, shared by detection and recognition.

:func:`start_run` takes a work dir for one run (its lock), opens the log,
decides between a new run and a resumed one (:func:`open_run`), writes
``config.yaml`` and seeds the RNGs; :func:`finish_run` takes
:func:`gaf.engine.loop.fit`'s result to the final weights (the EMA when on),
evaluates them and writes ``final.pt`` with the metrics. What lies between
(building the data and the model, the loop) is the task's own:
:func:`gaf.engine.train.train`, :func:`gaf.engine.recognition.train_recognizer`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from gaf.config import to_dict
from gaf.engine.checkpoint import load_checkpoint, save_checkpoint
from gaf.engine.distributed import DistContext
from gaf.engine.loop import FitResult
from gaf.engine.runlock import hold_work_dir
from gaf.engine.runtime import cpu_threads, seed_everything, setup_logging
from gaf.errors import ConfigError
from gaf.io import atomic_write_text

__all__ = ["Run", "TrainResult", "start_run", "finish_run", "open_run", "config_differences", "write_final",
           "RESUME_MAY_CHANGE"]

#: keys a resumed run may change (prefixes of :func:`config_differences` lines)
RESUME_MAY_CHANGE = ("train.epochs:", "work_dir:", "train.device:", "train.num_workers:", "train.threads:",
                     "train.save_every_iters:")


@dataclass
class TrainResult:
    """What a training call returns: ``final_checkpoint`` and ``metrics`` are None when it stopped early
    (``stop_after_epochs``); ``metrics`` also when ``train.eval_at_end`` is off or on ranks other than 0."""

    work_dir: Path
    epochs_done: int
    final_checkpoint: Path | None
    metrics: dict[str, Any] | None


@dataclass
class Run:
    """A run in progress: its (locked) work dir, process group, logger, config as a dict, and the
    ``latest.pt`` payload it resumes from (None for a new run)."""

    work_dir: Path
    ctx: DistContext
    logger: logging.Logger
    config_dict: dict[str, Any]
    state: dict[str, Any] | None

    @property
    def device(self) -> torch.device:
        return self.ctx.device


def config_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """``"key.path: old -> new"`` for every leaf where two nested config dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += config_differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {a!r} -> {b!r}"]


def open_run(work_dir: Path, config_dict: dict[str, Any], *, resume: bool) -> dict[str, Any] | None:
    """The ``latest.pt`` state to resume from (``resume``), or None for a new run.

    A new run refuses a work dir that already holds one; a resumed run must
    have the same config except the keys in :data:`RESUME_MAY_CHANGE`.
    """
    latest = work_dir / "latest.pt"
    if not resume:
        if latest.exists():
            raise ConfigError(f"{work_dir}: already holds a run (latest.pt); pass --resume to continue it "
                              "or choose another --work-dir")
        return None
    if not latest.exists():
        raise ConfigError(f"{work_dir}: --resume given but there is no latest.pt to resume from")
    state = load_checkpoint(latest)
    stored = dict(state["config"])
    stored.setdefault("task", config_dict.get("task"))  # runs started before configs named their task
    diffs = [d for d in config_differences(stored, config_dict) if not d.startswith(RESUME_MAY_CHANGE)]
    if diffs:
        raise ConfigError(f"{latest}: cannot resume with a different config ({'; '.join(diffs[:6])}); "
                          "use a new --work-dir for a new run")
    return state


@contextmanager
def start_run(cfg: Any, work_dir: Path, ctx: DistContext, *, resume: bool,
              prepare: Callable[[logging.Logger], None] | None = None) -> Iterator[Run]:
    """Hold ``work_dir`` for this run (one run per work dir), open ``log.txt`` (rank 0), check a resume
    (:func:`open_run`), write ``config.yaml`` and run ``prepare(logger)`` on rank 0 (e.g. generate the
    embedded benchmark), then seed every RNG from ``cfg.train.seed``. Every rank waits for rank 0."""
    with hold_work_dir(work_dir, enabled=ctx.is_main):
        logger = setup_logging(work_dir if ctx.is_main else None, console=ctx.is_main)
        config_dict = to_dict(cfg)
        state = open_run(work_dir, config_dict, resume=resume)
        ctx.barrier()  # every rank has checked the work dir before rank 0 writes into it
        if ctx.is_main:
            atomic_write_text(work_dir / "config.yaml", cfg.to_yaml())
            if prepare is not None:
                prepare(logger)
        ctx.barrier()
        seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
        with cpu_threads(cfg.train.threads):
            yield Run(work_dir, ctx, logger, config_dict, state)


def finish_run(run: Run, model: torch.nn.Module, result: FitResult, *, epochs: int, meta: dict[str, Any],
               evaluate: Callable[[], dict[str, Any] | None] | None = None) -> TrainResult:
    """The end of a run after :func:`gaf.engine.loop.fit`.

    Stopped before ``epochs``: nothing more (resume later). Otherwise the
    model takes the EMA weights when the EMA is on, ``evaluate()`` scores it
    (its metrics, or None) and ``final.pt`` is written on rank 0 with the
    weights, config, meta, history and metrics.
    """
    if result.epochs_done < epochs:
        return TrainResult(run.work_dir, result.epochs_done, None, None)
    if result.ema is not None:
        model.load_state_dict(result.ema.state_dict())
    metrics = evaluate() if evaluate is not None else None
    final_state = {"epoch": result.epochs_done, "model": model.state_dict(), "config": run.config_dict,
                   "meta": meta, "history": result.history, "metrics": metrics}
    final = write_final(run.work_dir / "final.pt", final_state, run.ctx, run.logger)
    return TrainResult(run.work_dir, result.epochs_done, final, metrics)


def write_final(path: Path, state: dict[str, Any], ctx: DistContext, logger) -> Path:
    """Save the final checkpoint ``path`` on rank 0; every rank returns once it is written."""
    if ctx.is_main:
        save_checkpoint(path, state)
        logger.info("final checkpoint: %s", path)
    ctx.barrier()
    return path
