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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from gaf.engine.checkpoint import load_model_state, save_checkpoint
from gaf.engine.distributed import DistContext
from gaf.engine.experiment import TrainConfig
from gaf.engine.optim import EMA, Optimization, one_cpu_thread
from gaf.engine.runtime import seed_everything
from gaf.errors import ConfigError, TrainingError
from gaf.io import atomic_write_text
from gaf.losses import synchronized_normalizers
from gaf.models.noise import item_seed, sample_seeds
from gaf.progress import POSTFIX_KEYS, ProgressLog, progress_bar

__all__ = ["FitResult", "ResumePosition", "fit", "train_step", "stage_runner", "train_only", "prune",
           "epoch_batches", "STAGES"]

STAGES = ("frame", "segment")

#: ``step_losses(model, batch, stage, progress, device)`` -> loss dict with ``"total"``
StepLosses = Callable[[nn.Module, dict[str, Any], str, float, torch.device], dict[str, torch.Tensor]]


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


def train_only(model: nn.Module, stage: str | None, fixed: set[int] = frozenset()) -> None:
    """Let only ``stage``'s parameters require gradients (all of them for ``stage=None``); parameters
    whose id is in ``fixed`` (e.g. a frozen backbone) never do."""
    trainable = None if stage is None else {id(p) for p in model.stage_parameters(stage)}
    for p in model.parameters():
        p.requires_grad_((trainable is None or id(p) in trainable) and id(p) not in fixed)


def train_step(runner: nn.Module, batch: dict[str, Any], *, stage: str, optim: Optimization,
               params: Sequence[nn.Parameter], clip_grad: float, seeds: Sequence[int], progress: float,
               distributed: bool = False, where: str = "") -> dict[str, torch.Tensor]:
    """One optimiser step of ``stage``: the losses (per-item CVAE noise ``seeds``), backward, gradient
    clipping of ``params`` at ``clip_grad`` (0: off), Adam, the scheduler and the EMA. Returns the losses.

    A non-finite total raises :class:`~gaf.errors.TrainingError` before any
    weight changes; ``where`` (e.g. "epoch 3 stage segment batch 7") starts its message.
    """
    with sample_seeds(list(seeds)), synchronized_normalizers(distributed):
        losses = runner(batch, progress)
    total = losses["total"]
    if not torch.isfinite(total):
        videos = batch.get("video_id") if isinstance(batch, dict) else None
        raise TrainingError(f"{where}: loss is {total.item()} "
                            f"({', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())})"
                            + (f" on videos {', '.join(map(str, videos))}" if videos else ""))
    optim.optimizers[stage].zero_grad(set_to_none=True)
    total.backward()
    with one_cpu_thread(total.device):  # many small tensors: one thread is faster (one_cpu_thread)
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        optim.step(stage)
    return losses


@dataclass
class ResumePosition:
    """Where a mid-epoch ``latest.pt`` stopped (``train.save_every_iters``): ``epoch`` (0-based), ``stage``
    (index into the run's stages), ``iter`` (batches of that stage done), the epoch's ``record`` so far,
    its ``seconds`` so far, each rank's RNG state and running loss sums (``ranks``), the monitor's state."""

    epoch: int
    stage: int
    iter: int
    record: dict[str, Any]
    seconds: float
    ranks: list[dict[str, Any]]
    monitor: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ResumePosition:
        return cls(int(doc["epoch"]), int(doc["stage"]), int(doc["iter"]), dict(doc["record"]),
                   float(doc["seconds"]), list(doc["ranks"]), doc.get("monitor"))

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "stage": self.stage, "iter": self.iter, "record": dict(self.record),
                "seconds": self.seconds, "ranks": self.ranks, "monitor": self.monitor}

    def rank_part(self, ctx: DistContext) -> dict[str, Any]:
        """This rank's share (rank 0's when the number of processes changed)."""
        return self.ranks[ctx.rank] if len(self.ranks) == ctx.world_size else self.ranks[0]


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
    if tcfg.batch_size < ctx.world_size:
        raise ConfigError(f"train.batch_size: {tcfg.batch_size} is the global batch and must be at least the "
                          f"number of processes ({ctx.world_size})")
    loop = _EpochLoop(model, train_set, stages=list(stages), collate=collate, step_losses=step_losses, tcfg=tcfg,
                      work_dir=work_dir, config_dict=config_dict, meta=meta, ctx=ctx, logger=logger,
                      show=progress and ctx.is_main, monitor=monitor)
    if state is not None:
        loop.restore(state)
    stop_at = tcfg.epochs if stop_after_epochs is None else min(tcfg.epochs, loop.start_epoch + stop_after_epochs)
    try:
        for epoch in range(loop.start_epoch, stop_at):
            loop.run_epoch(epoch)
    finally:
        if loop.writer is not None:
            loop.writer.close()
    epochs_done = loop.history[-1]["epoch"] if loop.history else loop.start_epoch
    if epochs_done < tcfg.epochs:
        logger.info("stopped after epoch %d of %d; continue with --resume", epochs_done, tcfg.epochs)
    return FitResult(epochs_done, loop.history, loop.optim.ema)


@dataclass
class _StagePass:
    """Running sums of one stage's pass over the training set (per-step means go to the epoch's record)."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        self.steps += 1
        for name, value in losses.items():
            v = value.detach().double().cpu()
            self.sums[name] = self.sums[name] + v if name in self.sums else v

    def means(self) -> dict[str, float]:
        return {k: float(v) / max(1, self.steps) for k, v in self.sums.items()}


class _EpochLoop:
    """:func:`fit`'s state across epochs: the optimisers, the history, the per-stage runners."""

    def __init__(self, model: nn.Module, train_set, *, stages: list[str], collate, step_losses: StepLosses,
                 tcfg: TrainConfig, work_dir: Path, config_dict: dict[str, Any], meta: dict[str, Any],
                 ctx: DistContext, logger, show: bool, monitor: Any) -> None:
        self.model, self.train_set, self.stages, self.collate = model, train_set, stages, collate
        self.step_losses, self.tcfg, self.ctx, self.logger, self.show = step_losses, tcfg, ctx, logger, show
        self.work_dir, self.config_dict, self.meta, self.monitor = work_dir, config_dict, meta, monitor
        self.latest = work_dir / "latest.pt"
        self.n_items = len(train_set)
        self.iters = max(1, len(epoch_batches(self.n_items, tcfg.batch_size, seed=tcfg.seed, epoch=0,
                                              stage=stages[-1], world_size=ctx.world_size)))
        self.optim = Optimization(model, stages, tcfg, self.iters)
        self.fixed = {id(p) for p in model.parameters() if not p.requires_grad}  # e.g. a frozen backbone
        self.runners: dict[str, nn.Module] = {}
        self.start_epoch, self.history = 0, []
        self.position: ResumePosition | None = None
        self.writer = _tensorboard(work_dir, logger) if ctx.is_main else None

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a ``latest.pt`` payload (at an epoch's end, or mid-epoch with a ``position``)."""
        load_model_state(self.model, state["model"], str(self.latest))
        self.optim.load_state_dict(state)
        self.start_epoch, self.history = int(state["epoch"]), list(state.get("history", []))
        if state.get("position") is not None:
            self.position = ResumePosition.from_dict(state["position"])
            self.logger.info("resumed from %s in epoch %d, stage %s, after batch %d", self.latest,
                             self.start_epoch + 1, self.stages[self.position.stage], self.position.iter)
        else:
            self.logger.info("resumed from %s after epoch %d", self.latest, self.start_epoch)

    def checkpoint(self, epoch_done: int, position: ResumePosition | None) -> dict[str, Any]:
        return {"epoch": epoch_done, "model": self.model.state_dict(), **self.optim.state_dict(),
                "config": self.config_dict, "meta": self.meta, "history": self.history,
                "position": position.to_dict() if position is not None else None}

    def run_epoch(self, epoch: int) -> None:
        tcfg, ctx = self.tcfg, self.ctx
        seed_everything(tcfg.seed * 1000 + epoch + 7919 * ctx.rank, deterministic=tcfg.deterministic)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        here = self.position if self.position is not None and self.position.epoch == epoch else None
        self.position = None
        record: dict[str, Any] = dict(here.record) if here else {"epoch": epoch + 1}
        tic = time.perf_counter() - (here.seconds if here else 0.0)
        if here is not None:
            _set_rng_state(here.rank_part(ctx)["rng"])
            if self.monitor is not None and here.monitor is not None:
                self.monitor.load_state_dict(here.monitor)  # its sampled gradients of the interrupted epoch
        for stage_idx, stage in enumerate(self.stages):
            if here and stage_idx < here.stage:
                continue  # done before the interruption: its losses are in ``record``
            resume_at = here if here and stage_idx == here.stage else None
            self.run_stage(epoch, stage_idx, record, tic, resume_at)
        train_only(self.model, None, self.fixed)
        if self.monitor is not None and ctx.is_main:
            record.update(self.monitor.on_epoch_end())
        record["seconds"] = round(time.perf_counter() - tic, 2)
        self.history.append(record)
        if ctx.is_main:
            self.end_epoch(epoch, record)

    def run_stage(self, epoch: int, stage_idx: int, record: dict[str, Any], tic: float,
                  here: ResumePosition | None) -> None:
        """One pass of ``stages[stage_idx]`` over the training set (from ``here.iter`` when resuming)."""
        tcfg, ctx, stage = self.tcfg, self.ctx, self.stages[stage_idx]
        start_it = here.iter if here else 0
        train_only(self.model, stage, self.fixed)
        if stage not in self.runners:  # DDP wrappers are built while only this stage's parameters train
            self.runners[stage] = stage_runner(self.model, stage, self.step_losses, ctx.device, ctx)
        batches = [ctx.split(b) for b in epoch_batches(self.n_items, tcfg.batch_size, seed=tcfg.seed, epoch=epoch,
                                                        stage=stage, world_size=ctx.world_size)]
        loader = DataLoader(self.train_set, batch_sampler=batches[start_it:], collate_fn=self.collate,
                            num_workers=tcfg.num_workers)
        self.model.train()
        running = _StagePass()
        if here is not None:
            mine = here.rank_part(ctx)
            running = _StagePass({k: torch.tensor(v, dtype=torch.float64) for k, v in mine["sums"].items()},
                                 int(mine["steps"]))
        key = STAGES.index(stage)
        desc = f"epoch {epoch + 1}/{tcfg.epochs} {stage}"
        bar = progress_bar(zip(batches[start_it:], loader), desc, self.show, total=len(batches) - start_it)
        lines = None if hasattr(bar, "set_postfix") or not ctx.is_main else ProgressLog(self.logger, desc, len(batches))
        params = self.model.stage_parameters(stage)
        for it, (indices, batch) in enumerate(bar, start=start_it):
            frac = (epoch + it / self.iters) / max(1, tcfg.epochs)
            try:
                losses = train_step(self.runners[stage], batch, stage=stage, optim=self.optim, params=params,
                                    clip_grad=tcfg.clip_grad, progress=frac, distributed=ctx.enabled,
                                    seeds=[item_seed(tcfg.seed, epoch, key, i) for i in indices],
                                    where=f"epoch {epoch + 1} stage {stage} batch {it + 1}")
            except TrainingError as err:
                raise TrainingError(f"{err}; {self.latest.name} holds the last good state: lower train.lr, "
                                    "or check those files") from None
            if self.monitor is not None and ctx.is_main:
                self.monitor.on_batch(stage, it, epoch, batch, frac)
            running.add(losses)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({k: f"{v:.3f}" for k, v in list(running.means().items())[:POSTFIX_KEYS]},
                                refresh=False)
            done = it + 1
            if lines is not None:
                lines.update(done, running.means())
            if tcfg.save_every_iters > 0 and done % tcfg.save_every_iters == 0 and done < len(batches):
                self.save_mid_epoch(epoch, stage_idx, done, record, tic, running)
        for name, value in _mean_over_ranks(running.sums, running.steps, ctx).items():
            record[f"{stage}/{name}"] = value
        record[f"{stage}/lr"] = self.optim.lr(stage)

    def save_mid_epoch(self, epoch: int, stage_idx: int, done: int, record: dict[str, Any], tic: float,
                       running: _StagePass) -> None:
        """``latest.pt`` within an epoch: where we are, and each rank's RNG state and running sums."""
        parts = self.ctx.gather({"rng": _rng_state(), "sums": {k: float(v) for k, v in running.sums.items()},
                                 "steps": running.steps})
        if parts is not None:
            position = ResumePosition(epoch, stage_idx, done, dict(record), time.perf_counter() - tic, parts,
                                      self.monitor.state_dict() if self.monitor is not None else None)
            save_checkpoint(self.latest, self.checkpoint(epoch, position))

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """Rank 0: TensorBoard scalars, the epoch's log line, ``latest.pt`` / ``epoch_NNN.pt``, history.json."""
        tcfg = self.tcfg
        if self.writer is not None:
            for name, value in record.items():
                if name != "epoch":
                    self.writer.add_scalar(name, value, epoch + 1)
            self.writer.flush()
        self.logger.info("epoch %d/%d %s", epoch + 1, tcfg.epochs,
                         " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"))
        ckpt = self.checkpoint(epoch + 1, None)
        save_checkpoint(self.latest, ckpt)
        if tcfg.checkpoint_every > 0 and (epoch + 1) % tcfg.checkpoint_every == 0:
            save_checkpoint(self.work_dir / f"epoch_{epoch + 1:03d}.pt", ckpt)
            prune(self.work_dir, tcfg.keep_checkpoints)
        atomic_write_text(self.work_dir / "history.json", json.dumps(self.history, indent=1))


def stage_runner(model: nn.Module, stage: str, step_losses: StepLosses, device: torch.device,
                 ctx: DistContext | None = None) -> nn.Module:
    """The stage's loss module, ``runner(batch, progress) -> losses``; wrapped in DDP under several processes
    (build it while only this stage's parameters require gradients: :func:`train_only`)."""
    module = _StageLoss(model, stage, step_losses, device)
    if ctx is None or not ctx.enabled:
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
