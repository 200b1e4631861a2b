"""Training step time: GAF's two stages against the plain detector, on random features.

For each bundled config (default ``thumos14_i3d_afsd`` and ``demo``) it builds, with
:func:`gaf.models.gaf_detector.build_model` and random weights:

* ``plain``: the plain detector (``model.gaf.enabled = false``, the AFSD
  baseline; it trains only stage "segment", on all its parameters);
* ``frame``: the GAF model, stage "frame" (Frame-GAF's CVAE, L_CVAE);
* ``segment``: the GAF model, stage "segment" (L_ai + L_nai + L_clf + L_R);
* ``frame+segment``: one step of each stage on the same batch, what one batch
  of an epoch costs (an epoch is a pass of each stage over the training set).

and times one full optimiser step with the function :func:`gaf.engine.loop.fit`
calls, :func:`gaf.engine.loop.train_step`: ``model.losses`` (forward + losses)
inside the per-sample noise block, backward, gradient clipping
(``train.clip_grad``), Adam (``train.lr`` / ``frame_lr``,
``train.weight_decay``) over ``model.stage_parameters(stage)``, the
learning-rate schedule and the EMA update (``thumos14_i3d_afsd`` enables it), the
other parameters frozen as ``fit`` freezes them. Not counted: data loading,
logging.

The batch is ``train.batch_size`` videos of T = ``dataset.max_seq_len`` random
feature steps (all valid), each with 2-5 random ground-truth segments of random
classes. The cases are timed interleaved (repeat r times every case in turn),
after warm-up steps, and the median is reported with the ratio to the plain
detector measured in the same run. Peak memory: on CUDA the max allocated
growth over the resting state (weights, gradients-to-be and Adam state are
already there after warm-up); on CPU the peak resident-memory growth during one
step over the resting process (free heap pages first returned with glibc's
``malloc_trim``), each case in a fresh process (Linux). When the ratio of
minima and the ratio of medians disagree by more than 15 %, other work
disturbed the run and the script says so.

    OMP_WAIT_POLICY=PASSIVE python bench/train.py [--device cpu|cuda] [--repeats 5] [--seq-len N]
                                                  [--configs thumos14_i3d_afsd demo] [--no-memory]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from _proc import release_free_memory, reset_peak_rss, status_kb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = ("plain", "frame", "segment", "frame+segment")
DESCRIPTIONS = {
    "plain": "plain detector (GAF off)",
    "frame": "GAF stage frame",
    "segment": "GAF stage segment",
    "frame+segment": "GAF frame + segment",
}
NUM_CLASSES = 20  # THUMOS14, and the embedded benchmark (its classes)
PROGRESS = 0.5  # training progress fed to the losses (L_R is on; its cost does not depend on the value)


@dataclass
class Case:
    name: str
    model: torch.nn.Module
    stages: list[str]
    optim: object  # gaf.engine.optim.Optimization
    runners: dict[str, torch.nn.Module]
    clip_grad: float

    @property
    def trained_params(self) -> int:
        return sum(p.numel() for s in self.stages for p in self.model.stage_parameters(s))


def seq_len(cfg, cap: int | None) -> int:
    T = int(cfg.dataset.max_seq_len)
    return min(T, cap) if cap else T


def build_case(config: str, case: str, T: int, device: torch.device) -> tuple[Case, object]:
    from gaf.engine.experiment import load_experiment
    from gaf.engine.loop import stage_runner, train_only
    from gaf.engine.optim import Optimization
    from gaf.engine.runtime import seed_everything
    from gaf.engine.train import detection_step_losses
    from gaf.models.gaf_detector import build_model

    cfg = load_experiment(config)
    tcfg = cfg.train
    seed_everything(tcfg.seed, deterministic=tcfg.deterministic)  # as gaf train does (deterministic kernels)
    mcfg = copy.deepcopy(cfg.model)
    if case == "plain":
        mcfg.gaf.enabled = False
    model = build_model(mcfg, in_dim=cfg.dataset.input_dim, num_classes=NUM_CLASSES, max_seq_len=T)
    model = model.to(device).train()
    stages = {"plain": ["segment"], "frame": ["frame"], "segment": ["segment"],
              "frame+segment": ["frame", "segment"]}[case]
    optim = Optimization(model, stages, tcfg, iters_per_epoch=100)  # fit's optimisers, schedules and EMA
    runners = {}
    for stage in stages:
        train_only(model, stage)  # as fit builds a stage's runner
        runners[stage] = stage_runner(model, stage, detection_step_losses, device)
    out = Case(case, model, stages, optim, runners, tcfg.clip_grad)
    if len(stages) == 1:
        train_only(model, stages[0])
    return out, cfg


def make_batch(cfg, T: int, device: torch.device, seed: int = 0) -> dict:
    """``train.batch_size`` videos of T random steps, 2-5 random segments each (steps), random classes."""
    g = torch.Generator().manual_seed(seed)
    B, C = int(cfg.train.batch_size), int(cfg.dataset.input_dim)
    segments, labels = [], []
    for _ in range(B):
        n = int(torch.randint(2, 6, (1,), generator=g))
        length = (0.01 + 0.09 * torch.rand(n, generator=g)) * T  # 1-10 % of the window
        start = torch.rand(n, generator=g) * (T - length)
        segments.append(torch.stack([start, start + length], 1).to(device))
        labels.append(torch.randint(0, NUM_CLASSES, (n,), generator=g).to(device))
    return {"features": torch.randn(B, C, T, generator=g).to(device),
            "mask": torch.ones(B, T, dtype=torch.bool, device=device),
            "segments": segments, "labels": labels}


def train_step(case: Case, batch: dict, step: int) -> None:
    """One optimiser step of each of the case's stages: :func:`gaf.engine.loop.train_step`, what ``fit`` runs."""
    from gaf.engine.loop import train_only
    from gaf.engine.loop import train_step as fit_step
    from gaf.models.noise import item_seed

    B = batch["features"].shape[0]
    for key, stage in enumerate(case.stages):
        if len(case.stages) > 1:
            train_only(case.model, stage)
        fit_step(case.runners[stage], batch, stage=stage, optim=case.optim,
                 params=case.model.stage_parameters(stage), clip_grad=case.clip_grad, progress=PROGRESS,
                 seeds=[item_seed(0, step, key, i) for i in range(B)], where=f"{case.name} step {step}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_config(config: str, cap: int | None, device: torch.device, repeats: int, warmup: int,
                memory: bool) -> dict:
    from gaf.engine.experiment import load_experiment

    cfg = load_experiment(config)
    T = seq_len(cfg, cap)
    batch = make_batch(cfg, T, device)
    cases = [build_case(config, name, T, device)[0] for name in CASES]
    step = 0
    for case in cases:
        for _ in range(warmup):
            train_step(case, batch, step)
            step += 1
    times: dict[str, list[float]] = {c.name: [] for c in cases}
    for _ in range(repeats):  # interleaved: drift on a shared machine hits every case alike
        for case in cases:
            _sync(device)
            tic = time.perf_counter()
            train_step(case, batch, step)
            _sync(device)
            times[case.name].append(time.perf_counter() - tic)
            step += 1
    peaks: dict[str, float | None] = {c.name: None for c in cases}
    if memory and device.type == "cuda":
        for case in cases:
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            train_step(case, batch, step)
            _sync(device)
            peaks[case.name] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    params = {c.name: c.trained_params for c in cases}
    del cases
    if memory and device.type == "cpu":
        for name in CASES:
            peaks[name] = child_peak(config, name, cap)
    return {"config": config, "T": T, "B": int(cfg.train.batch_size), "C": int(cfg.dataset.input_dim),
            "times": times, "peaks": peaks, "params": params}


def child_peak(config: str, case: str, cap: int | None) -> float:
    cmd = [sys.executable, __file__, "--child", config, case] + (["--seq-len", str(cap)] if cap else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def child(config: str, case_name: str, cap: int | None) -> None:
    """Peak RSS growth of one step of ``case_name`` over the resting process (after warm-up)."""
    torch.set_num_threads(2)
    device = torch.device("cpu")
    from gaf.engine.experiment import load_experiment

    T = seq_len(load_experiment(config), cap)
    case, cfg = build_case(config, case_name, T, device)
    batch = make_batch(cfg, T, device)
    for step in range(2):  # Adam state, gradients, allocator warm-up
        train_step(case, batch, step)
    release_free_memory()
    before = reset_peak_rss()
    train_step(case, batch, 2)
    print(json.dumps({"peak_mb": (status_kb("VmHWM") - before) / 1024}))


def print_table(result: dict, repeats: int, cap: int | None, device: torch.device) -> None:
    times, peaks, params = result["times"], result["peaks"], result["params"]
    base = statistics.median(times["plain"])
    shrunk = f" (shrunk by --seq-len {cap})" if cap and cap < _config_len(result["config"]) else ""
    mem_head = "peak CUDA MB" if device.type == "cuda" else "peak RSS MB"
    print(f"\n{result['config']}: batch {result['B']} x {result['C']}-d x T {result['T']}{shrunk}, "
          f"median of {repeats}")
    print(f"| step | trained params | ms / step | min-max ms | vs plain | {mem_head} |")
    print("|---|---|---|---|---|---|")
    for name in CASES:
        t = sorted(times[name])
        med = statistics.median(t)
        mem = "" if peaks[name] is None else f"{peaks[name]:.0f}"
        print(f"| {DESCRIPTIONS[name]} | {params[name] / 1e6:.2f} M | {med * 1e3:.0f} | "
              f"{t[0] * 1e3:.0f}-{t[-1] * 1e3:.0f} | {med / base:.2f}x | {mem} |")
    base_min = min(times["plain"])
    off = [name for name in CASES[1:]
           if abs((min(times[name]) / base_min) / (statistics.median(times[name]) / base) - 1) > 0.15]
    if off:
        print(f"note: for {', '.join(off)} the ratio of minima and the ratio of medians differ by more than 15 %: "
              "other work slowed some steps; rerun on a quieter machine or with more --repeats")


def _config_len(config: str) -> int:
    from gaf.engine.experiment import load_experiment

    return int(load_experiment(config).dataset.max_seq_len)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--configs", nargs="+", default=["thumos14_i3d_afsd", "demo"],
                        help="bundled config names or YAML paths (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="cap T at this many steps (default: each config's dataset.max_seq_len)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per case; the median is reported (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per case first (default: %(default)s)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory column")
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child[0], args.child[1], args.seq_len)
        return 0
    torch.set_num_threads(2)
    # gaf train asks for deterministic kernels (warn_only): the warnings of ops without one are not news here
    warnings.filterwarnings("ignore", message=".*deterministic.*")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"training step time (forward + losses + backward + clip + Adam), device {device} ({where}), "
          f"torch {torch.__version__}; {args.warmup} warm-up steps, median of {args.repeats}, cases interleaved")
    tic = time.perf_counter()
    for config in args.configs:
        result = time_config(config, args.seq_len, device, args.repeats, args.warmup, not args.no_memory)
        print_table(result, args.repeats, args.seq_len, device)
    print(f"\n({time.perf_counter() - tic:.0f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
