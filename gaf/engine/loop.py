"""The epoch loop shared by detection and recognition training: two stages, one process or many.

Each epoch runs the model's stages in turn (GAF: ``"frame"`` trains the
CVAE, then ``"segment"`` trains everything else; the plain models only
``"segment"``). A stage freezes every parameter outside
``model.stage_parameters(stage)``, steps its own Adam optimiser and
warm-up + schedule, and makes one pass over the training set.

Determinism (what makes resume and multi-process runs exact)
------------------------------------------------------------
* the order of a stage's pass is a permutation drawn from ``(seed, epoch,
  stage)``; training crops come from ``(seed, epoch, index)`` (the datasets'
  ``set_epoch``);
* the CVAE noise of an item comes from ``(seed, epoch, stage, index)``
  (:mod:`gaf.models.noise`), not from the global RNG;
* the global RNGs (dropout) are re-seeded from ``(seed, epoch, rank)`` at
  the start of every epoch.

So a run resumed from ``latest.pt`` (written atomically after every epoch)
redoes an interrupted epoch exactly as the uninterrupted run did it. With
``train.save_every_iters = N``, ``latest.pt`` is also written every N
batches with a ``position`` (epoch, stage, batch, every rank's RNG state and
running loss sums): a resumed run skips the batches already done and ends
with the same weights and logged losses as the uninterrupted one.

Several processes (``torchrun``, see :mod:`gaf.engine.distributed`)
----------------------------------------------------------------
``train.batch_size`` is the *global* batch: each global batch is split into
contiguous parts, one per rank (sizes differ by at most one). Each stage's
loss runs through its own ``DistributedDataParallel`` wrapper, built while
only that stage's parameters require gradients (``find_unused_parameters``
covers terms a config switches off), and loss normalisers are summed over
ranks (:func:`gaf.losses.synchronized_normalizers`). N processes therefore
take the step one process takes on the whole global batch, up to float
summation order. When the epoch's last global batch has fewer items than
there are ranks, it is skipped (another permutation next epoch). Rank 0
logs, shows progress and writes checkpoints, history and TensorBoard
scalars.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from gaf.engine.checkpoint import load_model_state, save_checkpoint
from gaf.engine.distributed import DistContext
from gaf.engine.experiment import TrainConfig
from gaf.engine.runtime import seed_everything
from gaf.io import atomic_write_text
from gaf.errors import ConfigError, TrainingError
from gaf.losses import synchronized_normalizers
from gaf.models.noise import item_seed, sample_seeds

__all__ = ["EMA", "FitResult", "fit", "write_final", "lr_factor", "progress_bar", "prune", "epoch_batches", "STAGES",
           "ProgressLog", "logged_progress", "shows_bars"]

STAGES = ("frame", "segment")

#: ``step_losses(model, batch, stage, progress, device)`` -> loss dict with ``"total"``
StepLosses = Callable[[nn.Module, dict[str, Any], str, float, torch.device], dict[str, torch.Tensor]]


class EMA:
    """Exponential moving average of a model's floating-point state."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.clone() for k, v in state.items()}


def lr_factor(cfg: TrainConfig, iters_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate multiplier per iteration: linear warm-up, then cosine / step / constant."""
    warmup = max(0.0, cfg.warmup_epochs) * iters_per_epoch
    total = max(1, cfg.epochs * iters_per_epoch)

    def factor(it: int) -> float:
        if warmup > 0 and it < warmup:
            return (it + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            epoch = it // max(1, iters_per_epoch)
            return 0.1 ** sum(epoch >= s for s in cfg.step_epochs)
        progress = min(1.0, (it - warmup) / max(1.0, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def progress_bar(iterable, desc: str, enabled: bool, total: int | None = None):
    """A tqdm bar over ``iterable`` when ``enabled`` and stderr is a terminal, else ``iterable`` itself
    (batch jobs log progress lines instead: :class:`ProgressLog`)."""
    if not shows_bars(enabled):
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, total=total)


POSTFIX_KEYS = 4  # losses shown in a progress bar's postfix (all of them go to the log line)


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
                         self.unit, _duration(eta), f", {shown}" if shown else "")


def logged_progress(iterable, logger, desc: str, total: int, *, unit: str = "it"):
    """Yield from ``iterable``, logging a :class:`ProgressLog` line as items complete (for runs whose
    progress bar is off or not on a terminal)."""
    lines = ProgressLog(logger, desc, total, unit=unit)
    for done, item in enumerate(iterable, 1):
        yield item
        lines.update(done)


def shows_bars(progress: bool) -> bool:
    """Whether progress bars will be drawn: asked for, and stderr is a terminal."""
    import sys

    return progress and sys.stderr.isatty()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def prune(work_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` numbered checkpoints (``epoch_NNN.pt``); 0 keeps all."""
    if keep <= 0:
        return
    numbered = sorted(work_dir.glob("epoch_*.pt"))
    for old in numbered[:-keep]:
        old.unlink(missing_ok=True)


def epoch_batches(num_items: int, batch_size: int, *, seed: int, epoch: int, stage: str,
                  world_size: int = 1) -> list[list[int]]:
    """The global batches (dataset indices) of one stage's pass: a permutation of ``(seed, epoch, stage)``.

    With ``world_size > 1`` a last batch smaller than ``world_size`` is dropped.
    """
    generator = torch.Generator().manual_seed(seed * 1000 + epoch * 2 + STAGES.index(stage))
    order = torch.randperm(num_items, generator=generator).tolist()
    batches = [order[i:i + batch_size] for i in range(0, num_items, batch_size)]
    if world_size > 1 and batches and len(batches[-1]) < world_size:
        batches.pop()
    return batches


class _StageLoss(nn.Module):
    """``forward(batch, progress)`` = the stage's loss dict: what DistributedDataParallel wraps."""

    def __init__(self, model: nn.Module, stage: str, step_losses: StepLosses, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.stage = stage
        self._step_losses = step_losses
        self._device = device

    def forward(self, batch: dict[str, Any], progress: float) -> dict[str, torch.Tensor]:
        return self._step_losses(self.model, batch, self.stage, progress, self._device)


@dataclass
class FitResult:
    epochs_done: int
    history: list[dict[str, Any]]
    ema: EMA | None


def fit(model: nn.Module, train_set: torch.utils.data.Dataset, *, stages: Sequence[str],
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]], step_losses: StepLosses, tcfg: TrainConfig,
        work_dir: Path, config_dict: dict[str, Any], meta: dict[str, Any], state: dict[str, Any] | None,
        ctx: DistContext, logger, progress: bool = True, stop_after_epochs: int | None = None,
        monitor: Any = None) -> FitResult:
    """Train ``model`` (already on ``ctx.device``) for the epochs left; see the module docstring.

    ``state``: a ``latest.pt`` payload to resume from (model, optimisers,
    schedulers, EMA, epoch, history) or None. Writes ``latest.pt`` (and
    ``epoch_NNN.pt`` every ``tcfg.checkpoint_every`` epochs) and
    ``history.json`` into ``work_dir`` on rank 0. Returns the epochs done,
    the history and the EMA (None when off); the model holds the last
    weights. ``monitor`` (rank 0 only; e.g.
    :class:`gaf.engine.health.AttentionMonitor`): ``on_batch(stage, it,
    epoch, batch, progress)`` after each step, ``on_epoch_end() -> dict``
    whose entries join the epoch's record, and ``state_dict()`` /
    ``load_state_dict()`` for mid-epoch checkpoints.
    """
    world = ctx.world_size
    if tcfg.batch_size < world:
        raise ConfigError(f"train.batch_size: {tcfg.batch_size} is the global batch and must be at least the "
                          f"number of processes ({world})")
    n_items = len(train_set)
    iters = max(1, len(epoch_batches(n_items, tcfg.batch_size, seed=tcfg.seed, epoch=0, stage=stages[-1],
                                     world_size=world)))
    factor = lr_factor(tcfg, iters)
    optimizers: dict[str, torch.optim.Optimizer] = {}
    schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
    for stage in stages:
        lr = tcfg.frame_lr if (stage == "frame" and tcfg.frame_lr is not None) else tcfg.lr
        optimizers[stage] = torch.optim.Adam(_param_groups(model, stage, lr, tcfg), lr=lr,
                                             weight_decay=tcfg.weight_decay)
        schedulers[stage] = torch.optim.lr_scheduler.LambdaLR(optimizers[stage], factor)
    ema = EMA(model, tcfg.ema_decay) if tcfg.ema else None

    latest = work_dir / "latest.pt"
    start_epoch, history, position = 0, [], None
    if state is not None:
        load_model_state(model, state["model"], str(latest))
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            schedulers[name].load_state_dict(state["schedulers"][name])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, history = int(state["epoch"]), list(state.get("history", []))
        position = state.get("position")
        if position is not None:
            logger.info("resumed from %s in epoch %d, stage %s, after batch %d", latest, start_epoch + 1,
                        stages[int(position["stage"])], int(position["iter"]))
        else:
            logger.info("resumed from %s after epoch %d", latest, start_epoch)

    def checkpoint(epoch_done: int, pos: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "epoch": epoch_done,
            "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in schedulers.items()},
            "config": config_dict,
            "meta": meta,
            "history": history,
            "position": pos,
        }

    writer = _tensorboard(work_dir, logger) if ctx.is_main else None
    show = progress and ctx.is_main
    stop_at = tcfg.epochs if stop_after_epochs is None else min(tcfg.epochs, start_epoch + stop_after_epochs)
    all_params = list(model.parameters())
    fixed = {id(p) for p in all_params if not p.requires_grad}  # e.g. a frozen backbone
    runners: dict[str, nn.Module] = {}
    for epoch in range(start_epoch, stop_at):
        seed_everything(tcfg.seed * 1000 + epoch + 7919 * ctx.rank, deterministic=tcfg.deterministic)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        here = position if position is not None and int(position["epoch"]) == epoch else None
        position = None
        record: dict[str, Any] = dict(here["record"]) if here else {"epoch": epoch + 1}
        tic = time.perf_counter() - (float(here["seconds"]) if here else 0.0)
        mine = _rank_part(here, ctx) if here else None
        if mine is not None:
            _set_rng_state(mine["rng"])
        if here and monitor is not None and here.get("monitor") is not None:
            monitor.load_state_dict(here["monitor"])  # its sampled gradients of the interrupted epoch
        for stage_idx, stage in enumerate(stages):
            if here and stage_idx < int(here["stage"]):
                continue  # done before the interruption: its losses are in ``record``
            start_it = int(here["iter"]) if here and stage_idx == int(here["stage"]) else 0
            trainable = {id(p) for p in model.stage_parameters(stage)}
            for p in all_params:
                p.requires_grad_(id(p) in trainable and id(p) not in fixed)
            if stage not in runners:
                runners[stage] = _runner(model, stage, step_losses, ctx)
            runner = runners[stage]
            batches = [ctx.split(b) for b in epoch_batches(n_items, tcfg.batch_size, seed=tcfg.seed, epoch=epoch,
                                                            stage=stage, world_size=world)]
            loader = DataLoader(train_set, batch_sampler=batches[start_it:], collate_fn=collate,
                                num_workers=tcfg.num_workers)
            model.train()
            sums: dict[str, torch.Tensor] = {}
            steps = 0
            if start_it and mine is not None:
                sums = {k: torch.tensor(v, dtype=torch.float64) for k, v in mine["sums"].items()}
                steps = int(mine["steps"])
            key = STAGES.index(stage)
            desc = f"epoch {epoch + 1}/{tcfg.epochs} {stage}"
            bar = progress_bar(zip(batches[start_it:], loader), desc, show, total=len(batches) - start_it)
            lines = None if hasattr(bar, "set_postfix") or not ctx.is_main else ProgressLog(logger, desc, len(batches))
            for it, (indices, batch) in enumerate(bar, start=start_it):
                frac = (epoch + it / iters) / max(1, tcfg.epochs)
                seeds = [item_seed(tcfg.seed, epoch, key, i) for i in indices]
                with sample_seeds(seeds), synchronized_normalizers(ctx.enabled):
                    losses = runner(batch, frac)
                total = losses["total"]
                if not torch.isfinite(total):
                    videos = batch.get("video_id") if isinstance(batch, dict) else None
                    raise TrainingError(
                        f"epoch {epoch + 1} stage {stage} batch {it + 1}: loss is {total.item()} "
                        f"({', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())})"
                        + (f" on videos {', '.join(map(str, videos))}" if videos else "")
                        + f"; {latest.name} holds the last good state: lower train.lr, or check those files")
                opt = optimizers[stage]
                opt.zero_grad(set_to_none=True)
                total.backward()
                if tcfg.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(model.stage_parameters(stage), tcfg.clip_grad)
                opt.step()
                schedulers[stage].step()
                if ema is not None:
                    ema.update(model)
                if monitor is not None and ctx.is_main:
                    monitor.on_batch(stage, it, epoch, batch, frac)
                steps += 1
                for name, value in losses.items():
                    v = value.detach().double().cpu()
                    sums[name] = sums[name] + v if name in sums else v
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix({k: f"{float(v) / steps:.3f}" for k, v in list(sums.items())[:POSTFIX_KEYS]},
                                    refresh=False)
                done = it + 1
                if lines is not None:
                    lines.update(done, {k: float(v) / steps for k, v in sums.items()})
                if tcfg.save_every_iters > 0 and done % tcfg.save_every_iters == 0 and done < len(batches):
                    # Mid-epoch checkpoint: where we are, and each rank's RNG state and running sums.
                    parts = ctx.gather({"rng": _rng_state(), "sums": {k: float(v) for k, v in sums.items()},
                                        "steps": steps})
                    if parts is not None:
                        pos = {"epoch": epoch, "stage": stage_idx, "iter": done, "record": dict(record),
                               "seconds": time.perf_counter() - tic, "ranks": parts,
                               "monitor": monitor.state_dict() if monitor is not None else None}
                        save_checkpoint(latest, checkpoint(epoch, pos))
            for name, value in _mean_over_ranks(sums, steps, ctx).items():
                record[f"{stage}/{name}"] = value
            record[f"{stage}/lr"] = optimizers[stage].param_groups[0]["lr"]
        for p in all_params:
            p.requires_grad_(id(p) not in fixed)
        if monitor is not None and ctx.is_main:
            record.update(monitor.on_epoch_end())
        record["seconds"] = round(time.perf_counter() - tic, 2)
        history.append(record)
        if ctx.is_main:
            if writer is not None:
                for name, value in record.items():
                    if name != "epoch":
                        writer.add_scalar(name, value, epoch + 1)
                writer.flush()
            logger.info("epoch %d/%d %s", epoch + 1, tcfg.epochs,
                        " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"))
            ckpt = checkpoint(epoch + 1, None)
            save_checkpoint(latest, ckpt)
            if tcfg.checkpoint_every > 0 and (epoch + 1) % tcfg.checkpoint_every == 0:
                save_checkpoint(work_dir / f"epoch_{epoch + 1:03d}.pt", ckpt)
                prune(work_dir, tcfg.keep_checkpoints)
            atomic_write_text(work_dir / "history.json", json.dumps(history, indent=1))

    if writer is not None:
        writer.close()
    epochs_done = history[-1]["epoch"] if history else start_epoch
    if epochs_done < tcfg.epochs:
        logger.info("stopped after epoch %d of %d; continue with --resume", epochs_done, tcfg.epochs)
    return FitResult(epochs_done, history, ema)


def write_final(path: Path, state: dict[str, Any], ctx: DistContext, logger) -> Path:
    """Save the final checkpoint ``path`` on rank 0; every rank returns once it is written."""
    if ctx.is_main:
        save_checkpoint(path, state)
        logger.info("final checkpoint: %s", path)
    ctx.barrier()
    return path


def _param_groups(model: nn.Module, stage: str, lr: float, tcfg: TrainConfig) -> list[dict[str, Any]]:
    """The stage's Adam parameter groups: one at ``lr``, plus the L_clf head at ``train.clf_lr`` when set."""
    params = model.stage_parameters(stage)
    head = getattr(model, "classifier_parameters", None)
    special = {id(p) for p in head()} if (head is not None and tcfg.clf_lr is not None) else set()
    chosen = [p for p in params if id(p) in special]
    if not chosen:
        return [{"params": params, "lr": lr}]
    return [{"params": [p for p in params if id(p) not in special], "lr": lr},
            {"params": chosen, "lr": tcfg.clf_lr}]


def _runner(model: nn.Module, stage: str, step_losses: StepLosses, ctx: DistContext) -> nn.Module:
    """The stage's loss module; wrapped in DDP (built now, while only this stage's parameters train)."""
    module = _StageLoss(model, stage, step_losses, ctx.device)
    if not ctx.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def _rng_state() -> dict[str, torch.Tensor | None]:
    """The global torch RNG states (CPU, and the current CUDA device's when CUDA is up)."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(state: dict[str, torch.Tensor | None]) -> None:
    torch.set_rng_state(state["cpu"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def _rank_part(position: dict[str, Any], ctx: DistContext) -> dict[str, Any]:
    """This rank's share of a mid-epoch ``position`` (rank 0's when the number of processes changed)."""
    parts = position["ranks"]
    return parts[ctx.rank] if len(parts) == ctx.world_size else parts[0]


def _mean_over_ranks(sums: dict[str, torch.Tensor], steps: int, ctx: DistContext) -> dict[str, float]:
    """Per-step means of the logged losses, pooled over all ranks' steps."""
    keys = sorted(sums)
    if not ctx.enabled:
        return {k: float(sums[k]) / max(1, steps) for k in keys}
    packed = torch.tensor([float(sums[k]) for k in keys] + [float(steps)], dtype=torch.float64,
                          device=ctx.device)
    packed = ctx.all_reduce_sum(packed).cpu()
    total_steps = max(1.0, float(packed[-1]))
    return {k: float(packed[i]) / total_steps for i, k in enumerate(keys)}


def _tensorboard(work_dir: Path, logger):
    """A TensorBoard writer into ``work_dir/tb`` when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    logger.info("TensorBoard scalars: tensorboard --logdir %s", work_dir / "tb")
    return SummaryWriter(log_dir=str(work_dir / "tb"))
