"""The training loop: GAF's two-stage alternation, checkpoints, resume.

Each epoch runs two passes over the training set (paper §IV-B, Fig. 2):

1. **stage "frame"**: Frame-GAF (the CVAE) learns ``L_CVAE`` with the
   attention λ from Segment-GAF detached; everything else is frozen;
2. **stage "segment"**: Segment-GAF and the detector learn
   ``L_d + L_R`` with Frame-GAF frozen (``L_R`` goes through its frozen
   decoder).

With GAF disabled (the plain detector, Table IV's first row) only stage
"segment" runs. Each stage has its own Adam optimiser and warm-up +
schedule. Every epoch ends with an atomic ``latest.pt``; RNGs are re-seeded
from ``(seed, epoch)`` at the start of every epoch, so a run resumed from
``latest.pt`` continues exactly as the uninterrupted run would have.

Work dir layout::

    config.yaml      resolved config        log.txt        the log
    latest.pt        last completed epoch   epoch_NNN.pt   numbered checkpoints
    final.pt         weights for eval (EMA when enabled) + config + metrics
    history.json     per-epoch losses       predictions.json, metrics.json, report/ (after eval)
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from gaf.config import to_dict
from gaf.engine.checkpoint import atomic_write_text, load_checkpoint, load_model_state, save_checkpoint
from gaf.engine.experiment import ExperimentConfig, TrainConfig
from gaf.engine.factory import build_dataset, build_detector, collate_for, detector_config
from gaf.engine.runtime import seed_everything, select_device, setup_logging
from gaf.errors import ConfigError

__all__ = ["train", "TrainResult", "prepare_benchmark", "STAGES", "EMA", "lr_factor", "progress_bar", "prune", "open_run",
           "config_differences"]

STAGES = ("frame", "segment")


@dataclass
class TrainResult:
    work_dir: Path
    epochs_done: int
    final_checkpoint: Path | None
    metrics: dict[str, Any] | None


class EMA:
    """Exponential moving average of a model's floating-point state."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.clone() for k, v in state.items()}


def lr_factor(cfg: TrainConfig, iters_per_epoch: int):
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


def prepare_benchmark(cfg: ExperimentConfig, logger=None) -> None:
    """Generate the embedded benchmark into ``cfg.benchmark.out_dir`` when the config asks for it."""
    if cfg.benchmark is None:
        return
    from gaf.data.synthetic import generate_benchmark

    out = Path(cfg.benchmark.out_dir)
    if logger is not None and not (out / "benchmark.json").exists():
        logger.info("generating the embedded benchmark into %s", out)
    generate_benchmark(out, cfg.benchmark.synthetic)


def config_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += config_differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {a!r} -> {b!r}"]


RESUME_MAY_CHANGE = ("train.epochs:", "work_dir:", "train.device:", "train.num_workers:")


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
    diffs = [d for d in config_differences(dict(state["config"]), config_dict) if not d.startswith(RESUME_MAY_CHANGE)]
    if diffs:
        raise ConfigError(f"{latest}: cannot resume with a different config ({'; '.join(diffs[:6])}); "
                          "use a new --work-dir for a new run")
    return state


def train(
    cfg: ExperimentConfig,
    *,
    work_dir: Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``cfg`` in ``work_dir`` (default ``cfg.resolved_work_dir()``).

    ``resume`` continues from ``work_dir/latest.pt`` (same config required,
    except ``train.epochs`` which may grow). ``stop_after_epochs`` trains
    that many epochs in this call and returns (resume later to finish).
    Evaluates on the test split at the end when ``cfg.train.eval_at_end``.
    """
    work_dir = Path(work_dir) if work_dir is not None else cfg.resolved_work_dir()
    work_dir.mkdir(parents=True, exist_ok=True)
    logger = setup_logging(work_dir)
    tcfg = cfg.train
    device = select_device(tcfg.device)
    config_dict = to_dict(cfg)

    latest = work_dir / "latest.pt"
    state = open_run(work_dir, config_dict, resume=resume)
    atomic_write_text(work_dir / "config.yaml", cfg.to_yaml())

    prepare_benchmark(cfg, logger)
    seed_everything(tcfg.seed, deterministic=tcfg.deterministic)
    train_set = build_dataset(cfg, "train", training=True)
    train_set.check(progress=progress)
    meta = {"in_dim": train_set.input_dim, "num_classes": train_set.num_classes, "labels": list(train_set.labels)}
    model = build_detector(cfg, meta).to(device)
    collate = collate_for(train_set)
    mcfg = detector_config(cfg)
    logger.info("train: %d videos, %d classes, input dim %d, device %s, %d parameters",
                len(train_set), train_set.num_classes, train_set.input_dim, device,
                sum(p.numel() for p in model.parameters()))

    # Stage "frame" trains Frame-GAF's CVAE; without GAF or with L_CVAE off there is nothing to train.
    stages = [s for s in STAGES if s == "segment" or (mcfg.gaf.enabled and mcfg.loss.cvae > 0)]
    iters = max(1, math.ceil(len(train_set) / tcfg.batch_size))
    factor = lr_factor(tcfg, iters)
    optimizers: dict[str, torch.optim.Optimizer] = {}
    schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
    for stage in stages:
        params = model.stage_parameters(stage)
        lr = tcfg.frame_lr if (stage == "frame" and tcfg.frame_lr is not None) else tcfg.lr
        optimizers[stage] = torch.optim.Adam(params, lr=lr, weight_decay=tcfg.weight_decay)
        schedulers[stage] = torch.optim.lr_scheduler.LambdaLR(optimizers[stage], factor)
    ema = EMA(model, tcfg.ema_decay) if tcfg.ema else None

    start_epoch, history = 0, []
    if state is not None:
        load_model_state(model, state["model"], str(latest))
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            schedulers[name].load_state_dict(state["schedulers"][name])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, history = int(state["epoch"]), list(state.get("history", []))
        logger.info("resumed from %s after epoch %d", latest, start_epoch)

    writer = _tensorboard(work_dir, logger)
    stop_at = tcfg.epochs if stop_after_epochs is None else min(tcfg.epochs, start_epoch + stop_after_epochs)
    all_params = list(model.parameters())
    for epoch in range(start_epoch, stop_at):
        seed_everything(tcfg.seed * 1000 + epoch, deterministic=tcfg.deterministic)
        train_set.set_epoch(epoch)
        record: dict[str, Any] = {"epoch": epoch + 1}
        tic = time.perf_counter()
        for stage in stages:
            generator = torch.Generator().manual_seed(tcfg.seed * 1000 + epoch * 2 + STAGES.index(stage))
            loader = DataLoader(train_set, batch_size=tcfg.batch_size, shuffle=True, generator=generator,
                                collate_fn=collate, num_workers=tcfg.num_workers)
            trainable = {id(p) for p in model.stage_parameters(stage)}
            for p in all_params:
                p.requires_grad_(id(p) in trainable)
            model.train()
            sums: dict[str, float] = defaultdict(float)
            steps = 0
            bar = progress_bar(loader, f"epoch {epoch + 1}/{tcfg.epochs} {stage}", progress)
            for it, batch in enumerate(bar):
                feats = batch["features"].to(device)
                mask = batch["mask"].to(device)
                segments = [s.to(device) for s in batch["segments"]]
                labels = [lab.to(device) for lab in batch["labels"]]
                frac = (epoch + it / iters) / max(1, tcfg.epochs)
                losses = model.losses(feats, mask, segments, labels, stage=stage, progress=frac)
                total = losses["total"]
                if not torch.isfinite(total):
                    raise FloatingPointError(
                        f"epoch {epoch + 1} stage {stage}: loss is {total.item()} "
                        f"({', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())}); lower train.lr"
                    )
                opt = optimizers[stage]
                opt.zero_grad(set_to_none=True)
                total.backward()
                if tcfg.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(model.stage_parameters(stage), tcfg.clip_grad)
                opt.step()
                schedulers[stage].step()
                if ema is not None:
                    ema.update(model)
                steps += 1
                for key, value in losses.items():
                    sums[key] += float(value.detach())
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix({k: f"{v / steps:.3f}" for k, v in sums.items()}, refresh=False)
            for key, value in sums.items():
                record[f"{stage}/{key}"] = value / max(1, steps)
            record[f"{stage}/lr"] = optimizers[stage].param_groups[0]["lr"]
        for p in all_params:
            p.requires_grad_(True)
        record["seconds"] = round(time.perf_counter() - tic, 2)
        history.append(record)
        if writer is not None:
            for key, value in record.items():
                if key != "epoch":
                    writer.add_scalar(key, value, epoch + 1)
            writer.flush()
        logger.info("epoch %d/%d %s", epoch + 1, tcfg.epochs,
                    " ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch",)))
        ckpt = {
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in schedulers.items()},
            "config": config_dict,
            "meta": meta,
            "history": history,
        }
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
        return TrainResult(work_dir, epochs_done, None, None)

    if ema is not None:
        model.load_state_dict(ema.state_dict())
    final = work_dir / "final.pt"
    final_state = {"epoch": epochs_done, "model": model.state_dict(), "config": config_dict, "meta": meta,
                   "history": history, "metrics": None}
    metrics = None
    if tcfg.eval_at_end:
        from gaf.engine.evaluate import evaluate_run

        result = evaluate_run([model], [cfg], work_dir=work_dir, device=device, progress=progress, logger=logger)
        metrics = result.to_json()
        final_state["metrics"] = metrics
    save_checkpoint(final, final_state)
    logger.info("final checkpoint: %s", final)
    return TrainResult(work_dir, epochs_done, final, metrics)


def _tensorboard(work_dir: Path, logger):
    """A TensorBoard writer into ``work_dir/tb`` when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    logger.info("TensorBoard scalars: tensorboard --logdir %s", work_dir / "tb")
    return SummaryWriter(log_dir=str(work_dir / "tb"))


def prune(work_dir: Path, keep: int) -> None:
    if keep <= 0:
        return
    numbered = sorted(work_dir.glob("epoch_*.pt"))
    for old in numbered[:-keep]:
        old.unlink(missing_ok=True)


def progress_bar(iterable, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)
