"""gaf's detectors side by side with the real ActionFormer, on one benchmark, in one run.

The benchmarks (``--benchmarks``, default ``compressed``) are gaf's embedded
THUMOS14-like generator at THUMOS14's size: all 200 validation (training) and
212 test videos on the real THUMOS14 timing, 128-d features every 8 frames at
30 fps, generated once into the benchmark's folder:

* ``compressed`` (``<work-dir>/data``): THUMOS14's timing compressed by 4
  (``time_scale`` 0.25, videos cut at 120 s): most videos fit one 576-step
  window, as the demo's;
* ``real`` (``<work-dir>/real/data``): THUMOS14's real durations
  (``time_scale`` 1.0, no video cut: up to 1,673 s, 6,275 steps), instances
  4 times longer in steps than in ``compressed``;
* ``hard`` (``<work-dir>/hard/data``): ``compressed`` with ``demo_hard``'s
  difficulty: twice the action-like distractor bursts (12 a minute at 0.7 of
  an action's strength) and 40 % more noise (``noise_std`` 1.4).

Each benchmark has its own configs and runs under its folder; a default is
chosen on all of them together (docs/performance.md).

Systems (``--systems``, default all):

* ``actionformer``: the registry's ``actionformer`` package (1.5.0), installed
  with its C++ NMS extension into its own virtualenv under
  ``<work-dir>/actionformer-venv`` (not a gaf dependency; torch pinned as in
  constraints-dev.txt), run by ``bench/_actionformer_peer.py``: its dataset,
  ``LocPointTransformer`` model, AdamW, warm-up + cosine schedule, decoding
  and Soft-NMS;
* ``conv``, ``transformer``, ``sgp``: gaf's plain detector (GAF off, L_ai
  only) on each pyramid (``sgp`` with the Trident head: the TriDet-class
  detector); ``conv+gaf``, ``transformer+gaf``, ``sgp+gaf``: the same with
  GAF (``demo.yaml``'s formulation and two-stage schedule);
* ``sgp+gafw``: ``sgp+gaf`` with GAF's context attention restricted to 129
  steps around each step (``model.gaf.context: window``, cost linear in T)
  instead of the whole window; ``maxpool``, ``maxpool+gafw``: TemporalMaxer's
  parameter-free max-pooling pyramid (``model.detector.backbone: maxpool``)
  with the Trident head, without GAF and with the windowed GAF.

Same budget for all: ``--epochs`` epochs (default 7; a GAF epoch is a pass of
each of its two stages) at batch 2, peak learning rate 1e-3 after a one-epoch
warm-up then cosine, width 128 everywhere (ActionFormer's embedding, FPN and
head widths, gaf's ``embed_dim``), training windows of 576 steps (ActionFormer's
``max_seq_len``), at most 100 detections per video. Every system's test
predictions are scored by gaf's evaluator (ActivityNet's procedure) at tIoU
0.3:0.1:0.7.

Phases (``--phases``, default both):

* ``accuracy``: every system trained with ``--seeds`` seeds (seed k is the
  training seed of every system; the data are the same), ``--jobs`` runs at a
  time, each on one thread. A run whose result exists is read, one whose
  training finished is scored, neither is retrained; a stored gaf run whose
  checkpoint no longer loads into today's model (the architecture changed
  since) stops the bench instead of being tabled beside new runs.
  Printed: mean ± std of the average mAP and of mAP@0.5, and the difference to
  ActionFormer.
* ``speed``: one system after the other, 2 threads, nothing else running:
  median seconds per training iteration (forward, losses, backward, clipping,
  optimiser step; a batch of 2 windows of 576 steps — ActionFormer pads every
  training batch to that length — and for GAF systems one step of each
  stage, what a batch of an epoch costs), the peak resident-memory growth of
  one training iteration, and the median seconds of inference of one video of
  T random feature steps (forward, decoding, Soft-NMS) for T = 576, 1152, 2304,
  4608. Ratios are against ActionFormer (> 1: gaf is faster).

    OMP_WAIT_POLICY=PASSIVE python bench/peer.py [--work-dir work_dirs/peer] [--benchmarks compressed,real,hard]
        [--seeds 3] [--epochs 7] [--jobs 2] [--systems actionformer,conv,...] [--phases accuracy,speed] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import PLAIN, _mean_std  # noqa: E402  (a sibling bench script: plain overrides, mean ± std)

ACTIONFORMER = "actionformer==1.5.0"
AF_DEPENDENCIES = ["numpy", "pyyaml", "tqdm", "pandas", "scipy", "joblib", "h5py", "setuptools", "wheel"]
SGP = ["model.detector.backbone=sgp", "model.detector.boundary_head=trident"]
TRANSFORMER = ["model.detector.backbone=transformer"]
MAXPOOL = ["model.detector.backbone=maxpool", "model.detector.boundary_head=trident"]
WINDOW_CONTEXT = ["model.gaf.context=window"]
SYSTEMS: dict[str, tuple[str, list[str] | None]] = {
    "actionformer": ("ActionFormer (registry package 1.5.0)", None),
    "conv": ("gaf conv (AFSD base), no GAF", PLAIN),
    "conv+gaf": ("gaf conv + GAF", []),
    "transformer": ("gaf transformer, no GAF", PLAIN + TRANSFORMER),
    "transformer+gaf": ("gaf transformer + GAF", TRANSFORMER),
    "sgp": ("gaf SGP + Trident, no GAF", PLAIN + SGP),
    "sgp+gaf": ("gaf SGP + Trident + GAF", SGP),
    "sgp+gafw": ("gaf SGP + Trident + GAF, windowed context", SGP + WINDOW_CONTEXT),
    "maxpool": ("gaf max-pool pyramid + Trident, no GAF", PLAIN + MAXPOOL),
    "maxpool+gafw": ("gaf max-pool pyramid + Trident + GAF, windowed context", MAXPOOL + WINDOW_CONTEXT),
}
LENGTHS = (576, 1152, 2304, 4608)
# generator settings per benchmark, on top of THUMOS14's size (see the module docstring)
THUMOS14_SIZE = {"seed": 0, "num_train_videos": 200, "num_test_videos": 212, "feature_dim": 128, "feature_stride": 8}
BENCHMARKS: dict[str, dict] = {
    "compressed": {},
    "real": {"time_scale": 1.0, "max_duration": 1800.0},
    "hard": {"distractor_rate": 12.0, "distractor_strength": 0.7, "noise_std": 1.4},
}
WIDTH, WINDOW, BATCH, LR, MAX_PER_VIDEO = 128, 576, 2, 1e-3, 100


# --- the benchmark, the configs, the ActionFormer environment ---------------------------------------------------

def benchmark_root(work: Path, benchmark: str) -> Path:
    """The folder of one benchmark's data, configs and runs (``compressed`` keeps the work folder itself, where
    the first tables of record were trained)."""
    return work if benchmark == "compressed" else work / benchmark


def prepare_data(root: Path, benchmark: str) -> Path:
    from dataclasses import replace

    from gaf.data.synthetic import DEMO, generate_benchmark

    cfg = replace(DEMO, **THUMOS14_SIZE, **BENCHMARKS[benchmark])
    generate_benchmark(root / "data", cfg)
    return root / "data"


def gaf_config(work: Path, system: str, epochs: int, extra: list[str]) -> Path:
    """``demo.yaml`` on the peer benchmark with the system's overrides and ``extra`` (``--set``), written to
    ``<work>/configs``."""
    from gaf.config import to_dict
    from gaf.engine.experiment import load_experiment

    data = work / "data"
    sets = [f"dataset.annotation_file={data / 'annotations.json'}", f"dataset.feature_dir={data / 'features'}",
            "dataset.input_dim=128", "dataset.feature_stride=8", f"dataset.max_seq_len={WINDOW}",
            f"train.epochs={epochs}", f"train.batch_size={BATCH}", f"train.lr={LR}",
            f"model.detector.embed_dim={WIDTH}", f"eval.max_per_video={MAX_PER_VIDEO}", *SYSTEMS[system][1],
            *extra]
    cfg = load_experiment("demo", sets)
    cfg.benchmark = None
    cfg.name = f"peer_{system}"
    import yaml

    out = config_path(work, system)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return out


def actionformer_python(work: Path) -> Path:
    """The python of ``<work>/actionformer-venv``, created (and ActionFormer built) on first use."""
    venv = work / "actionformer-venv"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import torch, nms_1d_cpu, actionformer.modeling, actionformer.datasets"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing {ACTIONFORMER} into {venv} (a few minutes, once) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["-c", str(REPO / "constraints-dev.txt"), "torch", *AF_DEPENDENCIES], check=True)
    # its declared torchvision / tensorboard are not used by the modules the bench imports (and torchvision
    # would pull another torch); the C++ NMS extension builds against the venv's torch
    subprocess.run(pip + ["--no-deps", "--no-build-isolation", ACTIONFORMER], check=True)
    subprocess.run(check, check=True)
    return python


# --- accuracy ----------------------------------------------------------------------------------------------------

def slug(system: str) -> str:
    """A system's name in file and folder names (``conv+gaf`` -> ``conv_gaf``)."""
    return system.replace("+", "_")


def has_gaf(system: str) -> bool:
    """Whether ``system`` trains GAF (``sgp+gaf``, ``sgp+gafw``, ...)."""
    return "+gaf" in system


def without_gaf(system: str) -> str:
    """The same detector without GAF (``sgp+gafw`` -> ``sgp``)."""
    return system.split("+")[0]


def config_path(work: Path, system: str) -> Path:
    return work / "configs" / f"{slug(system)}.yaml"


def run_dir(work: Path, system: str, seed: int) -> Path:
    return work / "runs" / slug(system) / f"seed{seed}"


def train_one(work: Path, system: str, seed: int, epochs: int, af_python: Path | None) -> dict:
    out = run_dir(work, system, seed)
    result = out / "result.json"
    if result.exists():
        if system != "actionformer":
            check_current(out)
        return json.loads(result.read_text())
    tic = time.perf_counter()
    finished = out / ("train.json" if system == "actionformer" else "metrics.json")  # written after predictions
    if not finished.exists():
        train_run(work, system, seed, epochs, af_python, out)
    res = score_run(work, system, seed, out)
    res["wall_s"] = time.perf_counter() - tic
    result.write_text(json.dumps(res))
    print(f"{out}: average mAP {res['average_mAP']:.2f}, mAP@0.5 {res['mAP@0.5']:.2f} "
          f"({res['wall_s'] / 60:.1f} min)", flush=True)
    return res


def check_current(out: Path) -> None:
    """A stored gaf run is reused only if its final checkpoint still loads into today's model: a run trained
    before a change of the architecture would otherwise be tabled beside runs of the new one."""
    import torch

    from gaf.engine.loading import load_detector
    from gaf.errors import CheckpointError

    try:
        load_detector(out / "final.pt", config=None, overrides=[], device=torch.device("cpu"))
    except CheckpointError as err:
        raise SystemExit(f"{out}: trained by an earlier model than today's, not comparable ({err}); "
                         "move the run away to train it again") from None


def train_run(work: Path, system: str, seed: int, epochs: int, af_python: Path | None, out: Path) -> None:
    """Train (and predict on the test split) in a fresh ``out``: an interrupted run starts again."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    log = out.parent / f"seed{seed}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    if system == "actionformer":
        cmd = [str(af_python), str(Path(__file__).parent / "_actionformer_peer.py"), "train", "--data",
               str(work / "data"), "--out", str(out), "--seed", str(seed), "--epochs", str(epochs),
               "--batch-size", str(BATCH), "--lr", str(LR), "--width", str(WIDTH), "--max-seq-len", str(WINDOW),
               "--max-per-video", str(MAX_PER_VIDEO), "--threads", "1"]
    else:
        cmd = [sys.executable, "-m", "gaf", "train", str(config_path(work, system)), "--no-progress", "--work-dir", str(out),
               "--set", f"train.seed={seed}", "--set", "train.threads=1"]
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{system} seed {seed} failed (exit {proc.returncode}); see {log}")


def score_run(work: Path, system: str, seed: int, out: Path) -> dict:
    """The run's test predictions scored by gaf's evaluator (the same for every system)."""
    import gaf

    scored = gaf.score(work / "data" / "annotations.json", out / "predictions.json", [0.3, 0.4, 0.5, 0.6, 0.7],
                       subset="test")
    return {"system": system, "seed": seed, "average_mAP": 100 * scored.average_mAP,
            "mAP@0.5": 100 * dict(zip(scored.tious, scored.mAP))[0.5]}


def _format(values: list[float]) -> str:
    """``mean ± std`` (sample std), the value alone for one seed, ``-`` for none."""
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} ± {std:.2f}"


def accuracy_table(results: dict[str, list[dict]]) -> None:
    seeds = {r["seed"] for rs in results.values() for r in rs}
    print(f"\naccuracy: mean ± std over {len(seeds)} seed(s); mAP in %, tIoU 0.3:0.1:0.7, gaf's evaluator")
    print("| system | average mAP | mAP@0.5 | average mAP vs ActionFormer (paired by seed) "
          "| GAF's gain over the same detector (paired) |")
    print("|---|---|---|---|---|")
    by_seed = {system: {r["seed"]: r["average_mAP"] for r in rs} for system, rs in results.items()}

    def paired(system: str, baseline: str) -> str:
        mine, theirs = by_seed.get(system, {}), by_seed.get(baseline, {})
        diff = [mine[seed] - theirs[seed] for seed in sorted(mine) if seed in theirs]
        return _format(diff) if diff and system != baseline else ""

    for system, rs in results.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        gain = paired(system, without_gaf(system)) if has_gaf(system) else ""
        print(f"| {SYSTEMS[system][0]} | {_format([r['average_mAP'] for r in rs])} | "
              f"{_format([r['mAP@0.5'] for r in rs])} | {paired(system, 'actionformer')} | {gain} |")


# --- speed ---------------------------------------------------------------------------------------------------------

def speed_gaf(work: Path, system: str, iterations: int, repeats: int) -> dict:
    import torch

    import infer
    import train as train_bench

    torch.set_num_threads(2)
    cfg_path = str(config_path(work, system))
    case_name = "frame+segment" if has_gaf(system) else "plain"
    device = torch.device("cpu")
    case, cfg = train_bench.build_case(cfg_path, case_name, WINDOW, device)
    batch = train_bench.make_batch(cfg, WINDOW, device)
    for step in range(3):
        train_bench.train_step(case, batch, step)
    times = []
    for step in range(3, 3 + iterations):
        tic = time.perf_counter()
        train_bench.train_step(case, batch, step)
        times.append(time.perf_counter() - tic)
    del case
    peak = train_bench.child_peak(cfg_path, case_name, WINDOW)
    infer_s = {str(T): infer.time_length(cfg_path, T, device, repeats) for T in LENGTHS}
    params, flops = infer.parameters_and_flops(cfg_path, LENGTHS)
    return {"train_iter_s": statistics.median(times), "train_peak_mb": peak, "infer_s": infer_s,
            "params": params, "flops": flops}


def speed_one(work: Path, system: str, af_python: Path | None, iterations: int, repeats: int) -> dict:
    out = work / "speed" / f"{slug(system)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    if system == "actionformer":
        cmd = [str(af_python), str(Path(__file__).parent / "_actionformer_peer.py"), "speed", "--data",
               str(work / "data"), "--out", str(out), "--batch-size", str(BATCH), "--width", str(WIDTH),
               "--max-seq-len", str(WINDOW), "--threads", "2", "--iterations", str(iterations),
               "--repeats", str(repeats), "--lengths", *map(str, LENGTHS)]
    else:
        cmd = [sys.executable, __file__, "--speed-child", system, "--work-dir", str(work),
               "--iterations", str(iterations), "--repeats", str(repeats)]
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def speed_table(speeds: dict[str, dict], iterations: int, repeats: int) -> None:
    af = speeds.get("actionformer")
    print(f"\nspeed (CPU, 2 threads): training s / iteration (median of {iterations}; batch {BATCH} x {WINDOW} steps), "
          f"peak RSS growth of one iteration, inference s / video (median of {repeats}); (x): ActionFormer's time "
          "over this one; parameters (millions, all of the model's) and GFLOPs of one inference forward per video "
          "(torch.utils.flop_counter: matrix products, convolutions, attention)")
    head = " | ".join(f"T={T}" for T in LENGTHS)
    flops_head = " | ".join(f"GFLOPs T={T}" for T in (LENGTHS[2], LENGTHS[-1]))
    print(f"| system | params (M) | train s/it | train peak MB | {head} | T=4608 / T=576 | {flops_head} |")
    print("|---|---|---|---|" + "---|" * len(LENGTHS) + "---|---|---|")
    for system, s in speeds.items():
        def ratio(mine: float, theirs: float | None) -> str:
            return "" if theirs is None or system == "actionformer" else f" ({theirs / mine:.2f}x)"
        cells = [f"{s['infer_s'][str(T)]:.3f}{ratio(s['infer_s'][str(T)], af and af['infer_s'][str(T)])}"
                 for T in LENGTHS]
        growth = s["infer_s"][str(LENGTHS[-1])] / s["infer_s"][str(LENGTHS[0])]
        flops = " | ".join(f"{s['flops'][str(T)] / 1e9:.2f}" for T in (LENGTHS[2], LENGTHS[-1]))
        print(f"| {SYSTEMS[system][0]} | {s['params'] / 1e6:.2f} | "
              f"{s['train_iter_s']:.3f}{ratio(s['train_iter_s'], af and af['train_iter_s'])}"
              f" | {s['train_peak_mb']:.0f} | " + " | ".join(cells) + f" | {growth:.1f} | {flops} |")


# --- main ------------------------------------------------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, default=REPO / "work_dirs" / "peer")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated (default: all)")
    p.add_argument("--benchmarks", default="compressed",
                   help=f"accuracy: comma-separated, of {', '.join(BENCHMARKS)} (default: %(default)s)")
    p.add_argument("--phases", default="accuracy,speed", help="accuracy, speed or both (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="accuracy: training seeds 0..n-1 (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=7, help="accuracy: epochs of every system (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="accuracy: runs at a time, one thread each (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=10, help="speed: timed training iterations (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="speed: timed inferences per T (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every gaf system, e.g. --set model.detector.norm=layer (use its own "
                        "--work-dir: results there are read, not retrained)")
    p.add_argument("--speed-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    work = args.work_dir.resolve()
    if args.speed_child:
        res = speed_gaf(work, args.speed_child, args.iterations, args.repeats)
        (work / "speed" / f"{slug(args.speed_child)}.json").write_text(json.dumps(res))
        return 0
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        p.error(f"--systems: unknown {', '.join(unknown)} (known: {', '.join(SYSTEMS)})")
    benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown or not benchmarks:
        p.error(f"--benchmarks: unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(BENCHMARKS)})")
    phases = {s.strip() for s in args.phases.split(",") if s.strip()}
    if not phases or phases - {"accuracy", "speed"}:
        p.error(f"--phases: {args.phases!r}: give accuracy, speed or both")
    tic = time.perf_counter()
    # the speed phase times on the compressed benchmark's configs (speed does not depend on the data)
    roots = {b: benchmark_root(work, b) for b in dict.fromkeys(benchmarks + (["compressed"] * ("speed" in phases)))}
    for benchmark, root in roots.items():
        prepare_data(root, benchmark)
        for system in systems:
            if system != "actionformer":
                gaf_config(root, system, args.epochs, args.overrides)
    af_python = actionformer_python(work) if "actionformer" in systems else None
    if "accuracy" in phases:
        jobs = [(b, s, k) for b in benchmarks for k in range(args.seeds) for s in systems]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            done = list(pool.map(lambda job: train_one(roots[job[0]], job[1], job[2], args.epochs, af_python), jobs))
        for benchmark in benchmarks:
            results: dict[str, list[dict]] = {s: [] for s in systems}
            for (b, _, _), r in zip(jobs, done):
                if b == benchmark:
                    results[r["system"]].append(r)
            print(f"\nbenchmark: {benchmark}")
            accuracy_table(results)
    if "speed" in phases:
        speeds = {s: speed_one(work, s, af_python, args.iterations, args.repeats) for s in systems}
        speed_table(speeds, args.iterations, args.repeats)
    print(f"\n({(time.perf_counter() - tic) / 60:.1f} min; work folder {work})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
