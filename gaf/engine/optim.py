"""Optimisation of a two-stage run: one Adam optimiser and learning-rate schedule per stage, and the EMA.

Each stage (:data:`gaf.engine.loop.STAGES`) steps its own Adam over
``model.stage_parameters(stage)`` (``train.frame_lr`` for stage "frame" when
set, else ``train.lr``; the L_clf head at ``train.clf_lr`` when set), with a
linear warm-up then a cosine / step / constant schedule per iteration
(:func:`lr_factor`). ``train.ema`` keeps an exponential moving average of the
whole model's state (:class:`EMA`), which becomes the final weights.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from gaf.engine.experiment import TrainConfig

__all__ = ["EMA", "Optimization", "lr_factor", "one_cpu_thread"]


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the block on one CPU thread (on a CPU ``device``; elsewhere a no-op), then restore the count.

    For the update of a model's many small tensors (gradient clipping, Adam, the EMA): each of their per-tensor
    kernels would wake PyTorch's other threads, which under ``OMP_WAIT_POLICY=PASSIVE`` costs tens of µs a
    kernel, more than the arithmetic (Adam over 185 tensors of a GAF detector, 2 threads: 11 ms, one: 1 ms).
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class EMA:
    """Exponential moving average of a model's floating-point state."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``shadow = decay * shadow + (1 - decay) * value`` for every floating-point entry (one multi-tensor
        op over all of them, as each entry's ``mul_`` then ``add_``); other entries are copied."""
        floats, shadows = [], []
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                floats.append(value.detach())
                shadows.append(self.shadow[key])
            else:
                self.shadow[key].copy_(value)
        if shadows:
            torch._foreach_mul_(shadows, self.decay)
            torch._foreach_add_(shadows, floats, alpha=1.0 - self.decay)

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


class Optimization:
    """The optimisers, schedulers and EMA of one run: ``optimizers[stage]``, ``schedulers[stage]``, ``ema``.

    ``iters_per_epoch`` sets the schedule's time axis (one scheduler step per
    batch of a stage's pass). :meth:`state_dict` / :meth:`load_state_dict`
    carry all of it through ``latest.pt``.
    """

    def __init__(self, model: nn.Module, stages: Sequence[str], tcfg: TrainConfig, iters_per_epoch: int) -> None:
        factor = lr_factor(tcfg, iters_per_epoch)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        for stage in stages:
            lr = tcfg.frame_lr if (stage == "frame" and tcfg.frame_lr is not None) else tcfg.lr
            self.optimizers[stage] = _adam(param_groups(model, stage, lr, tcfg), lr, tcfg.weight_decay)
            self.schedulers[stage] = torch.optim.lr_scheduler.LambdaLR(self.optimizers[stage], factor)
        self.model = model
        self.ema = EMA(model, tcfg.ema_decay) if tcfg.ema else None

    def step(self, stage: str) -> None:
        """Adam on the stage's gradients, one scheduler step, then the EMA update."""
        self.optimizers[stage].step()
        self.schedulers[stage].step()
        if self.ema is not None:
            self.ema.update(self.model)

    def lr(self, stage: str) -> float:
        """The stage's current learning rate (its first parameter group's)."""
        return self.optimizers[stage].param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        """``{"optimizers", "schedulers", "ema"}`` as ``latest.pt`` stores them."""
        return {"optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
                "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
                "ema": self.ema.state_dict() if self.ema is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            self.schedulers[name].load_state_dict(state["schedulers"][name])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])


def _adam(groups: list[dict[str, Any]], lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with fused kernels (one per tensor for the whole update instead of a dozen; the same algorithm)
    where this PyTorch has them for the parameters' device (CPU: PyTorch >= 2.4), else PyTorch's default."""
    try:
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # no fused kernel for this device in this PyTorch
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)


def param_groups(model: nn.Module, stage: str, lr: float, tcfg: TrainConfig) -> list[dict[str, Any]]:
    """The stage's Adam parameter groups: one at ``lr``, plus the L_clf head at ``train.clf_lr`` when set."""
    params = model.stage_parameters(stage)
    head = getattr(model, "classifier_parameters", None)
    special = {id(p) for p in head()} if (head is not None and tcfg.clf_lr is not None) else set()
    chosen = [p for p in params if id(p) in special]
    if not chosen:
        return [{"params": params, "lr": lr}]
    return [{"params": [p for p in params if id(p) not in special], "lr": lr},
            {"params": chosen, "lr": tcfg.clf_lr}]
