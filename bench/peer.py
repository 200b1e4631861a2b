"""gaf's detectors side by side with the real ActionFormer, on one benchmark, in one run.

The benchmarks (``--benchmarks``, default ``compressed``) are gaf's embedded generator, generated once into the
benchmark's folder. Three are THUMOS14-like, at THUMOS14's size: all 200 validation (training) and 212 test
videos on the real THUMOS14 timing, 128-d features every 8 frames at 30 fps:

* ``compressed`` (``<work-dir>/data``): THUMOS14's timing compressed by 4
  (``time_scale`` 0.25, videos cut at 120 s): most videos fit one 576-step
  window, as the demo's;
* ``real`` (``<work-dir>/real/data``): THUMOS14's real durations
  (``time_scale`` 1.0, no video cut: up to 1,673 s, 6,275 steps), instances
  4 times longer in steps than in ``compressed``;
* ``hard`` (``<work-dir>/hard/data``): ``compressed`` with ``demo_hard``'s
  difficulty: twice the action-like distractor bursts (12 a minute at 0.7 of
  an action's strength) and 40 % more noise (``noise_std`` 1.4).

One is ActivityNet-like, run the way the field runs ActivityNet v1.3:

* ``anet`` (``<work-dir>/anet/data``): the benchmark of ``gaf/configs/demo_anet.yaml``, exactly as its
  ``benchmark:`` section defines it (real ActivityNet v1.3 timing and class hierarchy, 600 training / 300
  validation videos, 200 classes, 64-d features at 15 fps, stride 16). Every detector is class-agnostic
  (one class, ``action``), every video resized (linear interpolation) to 192 steps, and the classes come
  from video-level class scores: gaf's own classifier (``demo_anet_cls.yaml`` on this data, trained with
  seed k, ``<work-dir>/anet/runs/classifier/seed<k>``) writes ``video_scores.json``
  (``{"results": {video: [K]}, "class": [K names]}``), and that one file is fused into every system of seed
  k: ActionFormer's proposals by its own ``postprocess_results`` (``ext_score_file``), gaf's by
  ``eval.video_scores`` (``eval.video_fusion: actionformer``); both take each video's top-2 classes, scored
  sqrt(proposal x class). Every system is also scored without fusion, as class-agnostic proposals (every
  ground-truth label collapsed to ``action``).

Each benchmark has its own configs and runs under its folder; a default is
chosen on the THUMOS-like ones together (docs/performance.md).

Systems (``--systems``, default all):

* ``actionformer``: the registry's ``actionformer`` package (1.5.0), installed
  with its C++ NMS extension into its own virtualenv under
  ``<work-dir>/actionformer-venv`` (not a gaf dependency; torch pinned as in
  constraints-dev.txt), run by ``bench/_actionformer_peer.py``: its dataset,
  ``LocPointTransformer`` model, AdamW, warm-up + cosine schedule, decoding
  and Soft-NMS; its THUMOS14 recipe on the THUMOS-like benchmarks, its ActivityNet recipe
  (``configs/anet_tsp.yaml``: windowed attention of 7 steps, absolute position encoding, label smoothing
  0.1, regression loss weight 2, Soft-NMS sigma 0.75, ``--max-per-video`` proposals; see the driver) on ``anet``;
* ``conv``, ``transformer``, ``sgp``: gaf's plain detector (GAF off, L_ai
  only) on each pyramid (``sgp``: TriDet's SGP pyramid with the regression
  head, what ``thumos14_i3d`` ships); ``conv+gaf``, ``transformer+gaf``, ``sgp+gaf``: the same with
  GAF (the benchmark's config's formulation — ``demo.yaml``'s, ``demo_anet.yaml``'s — and two-stage schedule);
* ``sgpt``, ``sgpt+gaf``: ``sgp`` / ``sgp+gaf`` with TriDet's Trident boundary head (the TriDet-class
  detector; the tables of record before 2026-12-07's evening);
* ``sgp+gafw``: ``sgp+gaf`` with GAF's context attention restricted to 129
  steps around each step (``model.gaf.context: window``, cost linear in T)
  instead of the whole window; ``sgp+gafl``: ``sgp+gaf`` with linear attention over the whole window
  (``model.gaf.context: linear``, cost linear in T); ``maxpool``, ``maxpool+gafw``: TemporalMaxer's
  parameter-free max-pooling pyramid (``model.detector.backbone: maxpool``)
  with the regression head (TemporalMaxer's), without GAF and with the windowed GAF;
* ``sgp+gaf@k200`` (``anet`` only, not in the default): ``sgp+gaf`` detecting the 200 classes itself
  (not class-agnostic, no video-level scores).

Same budget for all systems of a benchmark, width 128 everywhere (ActionFormer's embedding, FPN and head
widths, gaf's ``embed_dim``), at most ``--max-per-video`` detections per video (default 100; ActionFormer's
THUMOS14 recipe keeps 200), every system's test predictions scored by
gaf's evaluator (ActivityNet's procedure):

* THUMOS-like: ``--epochs`` epochs (default 7; a GAF epoch is a pass of each of its two stages) at batch 2,
  peak learning rate 1e-3 after a one-epoch warm-up then cosine, training windows of 576 steps
  (ActionFormer's ``max_seq_len``); mAP at tIoU 0.3:0.1:0.7.
* ``anet``: ActionFormer's ActivityNet schedule: ``--epochs`` epochs (default 15: its 10 + 5 of warm-up)
  at batch 16, peak learning rate 1e-3 after 5 warm-up epochs then cosine, weight decay 0.05, 192 steps
  (``max_seq_len`` = ``dataset.resize_length``), 6 pyramid levels; gaf's Soft-NMS sigma 0.75 (demo_anet's,
  ActionFormer's); mAP at tIoU 0.5:0.05:0.95. The recipe's only change: widths 256 -> 128 (a 2-core CPU).
  gaf's runs train without the attention-health probes (``train.health_items`` / ``grad_probe_every`` 0) so
  their epoch seconds time training alone.

Phases (``--phases``, default both):

* ``accuracy``: every system trained with ``--seeds`` seeds (seed k is the
  training seed of every system and of ``anet``'s classifier; the data are the same), ``--jobs`` runs at a
  time, each on one thread. A run whose result exists is read, one whose
  training finished is scored, neither is retrained; a stored gaf run whose
  checkpoint no longer loads into today's model (the architecture changed
  since) stops the bench instead of being tabled beside new runs.
  Printed: mean ± std of the average mAP and of mAP@0.5 (``anet``: mAP@0.5, @0.75, @0.95 and the average),
  and the difference to ActionFormer and GAF's gain over the same detector, paired by seed. ``anet`` adds
  the proposals table (no fusion), the classifier's top-1 per seed, and each run's own timers: seconds per
  training iteration (training seconds over batches: ActionFormer's loop, gaf's epoch ``seconds`` of
  history.json; a GAF batch passes both stages) and seconds of inference per validation video (feature
  loading, forward, decoding, Soft-NMS, one thread; ActionFormer's one video a batch, gaf's
  ``eval.batch_size``), against ActionFormer's (> 1: gaf is faster). With ``--jobs`` above 1 runs share
  the cores and these times with each other.
* ``speed``: one system after the other, 2 threads, nothing else running:
  median seconds per training iteration (forward, losses, backward, clipping,
  optimiser step; a batch of 2 windows of 576 steps — ActionFormer pads every
  training batch to that length — and for GAF systems one step of each
  stage, what a batch of an epoch costs), the peak resident-memory growth of
  one training iteration, and the median seconds of inference of one video of
  T random feature steps (forward, decoding, Soft-NMS) for T = 576, 1152, 2304,
  4608. Ratios are against ActionFormer (> 1: gaf is faster).

    OMP_WAIT_POLICY=PASSIVE python bench/peer.py [--work-dir work_dirs/peer] [--benchmarks compressed,real,hard,anet]
        [--seeds 3] [--epochs N] [--jobs 2] [--max-per-video 100] [--systems actionformer,conv,...] [--phases accuracy,speed] [--set KEY=VALUE ...]
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
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import PLAIN, _mean_std  # noqa: E402  (a sibling bench script: plain overrides, mean ± std)

ACTIONFORMER = "actionformer==1.5.0"
AF_DEPENDENCIES = ["numpy", "pyyaml", "tqdm", "pandas", "scipy", "joblib", "h5py", "setuptools", "wheel"]
SGP = ["model.detector.backbone=sgp", "model.detector.boundary_head=regression"]
SGP_TRIDENT = ["model.detector.backbone=sgp", "model.detector.boundary_head=trident"]
TRANSFORMER = ["model.detector.backbone=transformer"]
MAXPOOL = ["model.detector.backbone=maxpool", "model.detector.boundary_head=regression"]
WINDOW_CONTEXT = ["model.gaf.context=window"]
LINEAR_CONTEXT = ["model.gaf.context=linear"]
K200 = "@k200"  # a system name's suffix on ``anet``: the detector of the 200 classes, no video-level scores
SYSTEMS: dict[str, tuple[str, list[str] | None]] = {
    "actionformer": ("ActionFormer (registry package 1.5.0)", None),
    "conv": ("gaf conv (AFSD base), no GAF", PLAIN),
    "conv+gaf": ("gaf conv + GAF", []),
    "transformer": ("gaf transformer, no GAF", PLAIN + TRANSFORMER),
    "transformer+gaf": ("gaf transformer + GAF", TRANSFORMER),
    "sgp": ("gaf SGP, no GAF", PLAIN + SGP),
    "sgp+gaf": ("gaf SGP + GAF", SGP),
    "sgp+gafw": ("gaf SGP + GAF, windowed context", SGP + WINDOW_CONTEXT),
    "sgp+gafl": ("gaf SGP + GAF, linear-attention context", SGP + LINEAR_CONTEXT),
    "sgpt": ("gaf SGP + Trident, no GAF", PLAIN + SGP_TRIDENT),
    "sgpt+gaf": ("gaf SGP + Trident + GAF", SGP_TRIDENT),
    "maxpool": ("gaf max-pool pyramid, no GAF", PLAIN + MAXPOOL),
    "maxpool+gafw": ("gaf max-pool pyramid + GAF, windowed context", MAXPOOL + WINDOW_CONTEXT),
    f"sgp+gaf{K200}": ("gaf SGP + GAF, 200 classes, no fusion", SGP + ["dataset.class_agnostic=false"]),
}
DEFAULT_SYSTEMS = [s for s in SYSTEMS if not s.endswith(K200)]
LENGTHS = (576, 1152, 2304, 4608)
WIDTH, LR, MAX_PER_VIDEO = 128, 1e-3, 100  # MAX_PER_VIDEO: --max-per-video's default


class Benchmark(NamedTuple):
    """One benchmark (the module docstring): its data, the gaf config its gaf systems start from, the budget
    and the protocol every system of it shares. (A NamedTuple: the tests load this script without
    registering it as a module, which a dataclass needs.)"""

    folder: str  # under the work dir ("": the work dir itself, where the first tables of record were trained)
    synthetic: dict  # generator settings over ``data_config``'s benchmark (no data_config: gaf.data.synthetic.DEMO)
    data_config: str | None = None
    base: str = "demo"  # the bundled config of the gaf systems
    sets: tuple[str, ...] = ()  # gaf overrides of every gaf system of the benchmark
    epochs: int = 7  # --epochs' default
    warmup: int = 1  # warm-up epochs, then cosine
    batch: int = 2
    window: int = 576  # training window in steps (ActionFormer's max_seq_len)
    test_subset: str = "test"  # scored; the other subset trains
    tious: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    shown: tuple[float, ...] = (0.5,)  # the tIoUs tabled beside the average
    activitynet: bool = False  # class-agnostic, the classes from gaf's classifier's video-level scores


THUMOS14_SIZE = {"seed": 0, "num_train_videos": 200, "num_test_videos": 212, "feature_dim": 128, "feature_stride": 8}
THUMOS_SETS = ("dataset.input_dim=128", "dataset.feature_stride=8")
ANET_WINDOW = 192  # ActionFormer's ActivityNet recipe: every video resized to 192 steps
ANET_SETS = ("dataset.class_agnostic=true", f"dataset.resize_length={ANET_WINDOW}", "dataset.resize_mode=linear",
             "model.detector.num_levels=6", "train.weight_decay=0.05", "eval.nms_sigma=0.75",
             "eval.video_fusion=actionformer", "train.health_items=0", "train.grad_probe_every=0")
BENCHMARKS: dict[str, Benchmark] = {
    "compressed": Benchmark("", THUMOS14_SIZE, sets=THUMOS_SETS),
    "real": Benchmark("real", {**THUMOS14_SIZE, "time_scale": 1.0, "max_duration": 1800.0}, sets=THUMOS_SETS),
    "hard": Benchmark("hard", {**THUMOS14_SIZE, "distractor_rate": 12.0, "distractor_strength": 0.7, "noise_std": 1.4},
                      sets=THUMOS_SETS),
    "anet": Benchmark("anet", {}, data_config="demo_anet", base="demo_anet", sets=ANET_SETS, epochs=15, warmup=5,
                      batch=16, window=ANET_WINDOW, test_subset="validation",
                      tious=tuple(round(0.5 + 0.05 * i, 2) for i in range(10)), shown=(0.5, 0.75, 0.95),
                      activitynet=True),
}
CLASSIFIER = "demo_anet_cls"  # gaf's video-level classifier on ``anet`` (the bundled config, as it is today)


# --- the benchmark, the configs, the ActionFormer environment ---------------------------------------------------

def benchmark_root(work: Path, benchmark: str) -> Path:
    """The folder of one benchmark's data, configs and runs."""
    return work / BENCHMARKS[benchmark].folder


def prepare_data(root: Path, bench: Benchmark) -> Path:
    from dataclasses import replace

    from gaf.data.synthetic import DEMO, generate_benchmark
    from gaf.engine.experiment import load_experiment

    start = load_experiment(bench.data_config).benchmark.synthetic if bench.data_config else DEMO
    generate_benchmark(root / "data", replace(start, **bench.synthetic))
    return root / "data"


def data_sets(root: Path) -> list[str]:
    """The overrides that point a bundled config at the benchmark's generated data (its real path: a work dir
    whose ``data`` links to another's shares that one's data and stored classifier runs)."""
    data = (root / "data").resolve()
    return [f"dataset.annotation_file={data / 'annotations.json'}", f"dataset.feature_dir={data / 'features'}"]


def write_config(out: Path, cfg) -> Path:
    """``cfg`` (a loaded experiment) without its embedded benchmark (the data are the benchmark's), as YAML."""
    import yaml

    from gaf.config import to_dict

    cfg.benchmark = None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return out


def gaf_config(root: Path, bench: Benchmark, system: str, epochs: int, extra: list[str], cap: int) -> Path:
    """The benchmark's config (``demo.yaml``, ``demo_anet.yaml``) on its data at its budget, with the system's
    overrides and ``extra`` (``--set``), written to ``<root>/configs``."""
    from gaf.engine.experiment import load_experiment

    sets = [*data_sets(root), *bench.sets, f"dataset.max_seq_len={bench.window}", f"train.epochs={epochs}",
            f"train.warmup_epochs={bench.warmup}", f"train.batch_size={bench.batch}", f"train.lr={LR}",
            f"model.detector.embed_dim={WIDTH}", f"eval.max_per_video={cap}", *SYSTEMS[system][1],
            *extra]
    cfg = load_experiment(bench.base, sets)
    cfg.name = f"peer_{system}"
    return write_config(config_path(root, system), cfg)


def classifier_config(root: Path) -> Path:
    """``demo_anet_cls.yaml`` on the benchmark's data, written to ``<root>/configs/classifier.yaml``."""
    from gaf.engine.recognition import load_recognition_experiment

    cfg = load_recognition_experiment(CLASSIFIER, data_sets(root))
    cfg.name = "peer_classifier"
    return write_config(root / "configs" / "classifier.yaml", cfg)


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
    """A system's name in file and folder names (``conv+gaf`` -> ``conv_gaf``, ``sgp+gaf@k200`` ->
    ``sgp_gaf_k200``)."""
    return system.replace("+", "_").replace("@", "_")


def has_gaf(system: str) -> bool:
    """Whether ``system`` trains GAF (``sgp+gaf``, ``sgp+gafw``, ...)."""
    return "+gaf" in system


def without_gaf(system: str) -> str:
    """The same detector without GAF (``sgp+gafw`` -> ``sgp``)."""
    return system.split("+")[0]


def fuses_scores(bench: Benchmark, system: str) -> bool:
    """Whether ``system``'s proposals take their classes from the video-level scores (``anet``, class-agnostic)."""
    return bench.activitynet and not system.endswith(K200)


def config_path(work: Path, system: str) -> Path:
    return work / "configs" / f"{slug(system)}.yaml"


def run_dir(work: Path, system: str, seed: int) -> Path:
    return work / "runs" / slug(system) / f"seed{seed}"


def classifier_dir(root: Path, seed: int) -> Path:
    return root / "runs" / "classifier" / f"seed{seed}"


def train_classifier(root: Path, seed: int) -> dict:
    """``anet``'s video-level classifier of seed ``seed`` (trained once): its ``video_scores.json`` on the
    validation videos, fused into every system of the seed, and its top-1."""
    out = classifier_dir(root, seed)
    if (out / "video_scores.json").exists():
        check_classifier(root, out, seed)
    else:
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "gaf", "train", str(root / "configs" / "classifier.yaml"), "--no-progress",
               "--work-dir", str(out), "--set", f"train.seed={seed}", "--set", "train.threads=1"]
        run_logged(cmd, out.parent / f"seed{seed}.log", f"classifier seed {seed}")
    top1 = 100 * json.loads((out / "metrics.json").read_text())["top1"]
    print(f"{out}: top-1 {top1:.2f} %", flush=True)
    return {"seed": seed, "top1": top1}


def check_classifier(root: Path, out: Path, seed: int) -> None:
    """A stored classifier run is reused only if it trained today's ``demo_anet_cls.yaml`` (its config.yaml,
    work dir and threads aside, equals ``<root>/configs/classifier.yaml`` at its seed): its scores are fused
    into every run of its seed, so a changed classifier stops the bench rather than be tabled as today's."""
    import yaml

    from gaf.engine.run import config_differences

    wanted = yaml.safe_load((root / "configs" / "classifier.yaml").read_text())
    wanted["train"]["seed"] = seed
    diffs = [d for d in config_differences(yaml.safe_load((out / "config.yaml").read_text()), wanted)
             if not d.startswith(("work_dir:", "train.device:", "train.threads:"))]
    if diffs:
        raise SystemExit(f"{out}: trained from another {CLASSIFIER}.yaml than today's ({'; '.join(diffs[:4])}); "
                         f"its scores are fused into every run of seed {seed}: move {root / 'runs'} away to train "
                         "them again")


def train_one(work: Path, bench: Benchmark, system: str, seed: int, epochs: int, af_python: Path | None,
              cap: int) -> dict:
    out = run_dir(work, system, seed)
    result = out / "result.json"
    if result.exists():
        if system != "actionformer":
            check_current(out)
        return json.loads(result.read_text())
    tic = time.perf_counter()
    finished = out / ("train.json" if system == "actionformer" else "metrics.json")  # written after predictions
    if not finished.exists():
        train_run(work, bench, system, seed, epochs, af_python, out, cap)
    res = score_run(work, bench, system, seed, out)
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


def train_run(work: Path, bench: Benchmark, system: str, seed: int, epochs: int, af_python: Path | None,
              out: Path, cap: int) -> None:
    """Train (and predict on the test split) in a fresh ``out``: an interrupted run starts again."""
    shutil.rmtree(out, ignore_errors=True)
    scores = classifier_dir(work, seed) / "video_scores.json"
    if system == "actionformer":
        cmd = [str(af_python), str(Path(__file__).parent / "_actionformer_peer.py"), "train", "--data",
               str(work / "data"), "--out", str(out), "--seed", str(seed), "--recipe",
               "anet" if bench.activitynet else "thumos", "--epochs", str(epochs), "--warmup-epochs",
               str(bench.warmup), "--batch-size", str(bench.batch), "--lr", str(LR), "--width", str(WIDTH),
               "--max-seq-len", str(bench.window), "--max-per-video", str(cap), "--threads", "1"]
        cmd += ["--video-scores", str(scores)] if fuses_scores(bench, system) else []
    else:
        cmd = [sys.executable, "-m", "gaf", "train", str(config_path(work, system)), "--no-progress", "--work-dir", str(out),
               "--set", f"train.seed={seed}", "--set", "train.threads=1"]
        cmd += ["--set", f"eval.video_scores={scores}"] if fuses_scores(bench, system) else []
    run_logged(cmd, out.parent / f"seed{seed}.log", f"{system} seed {seed}")


def run_logged(cmd: list[str], log: Path, what: str) -> None:
    """``cmd`` on one thread, its output in ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); see {log}")


def score_run(work: Path, bench: Benchmark, system: str, seed: int, out: Path) -> dict:
    """The run's test predictions scored by gaf's evaluator (the same for every system). ``anet``: its fused
    predictions (``predictions.json``; a ``@k200`` system's own classes) and its class-agnostic proposals
    (``proposals.json``, scored against the ground truth with every label collapsed to ``action``), and the
    run's own timers: seconds per training iteration and of inference per video."""
    data = work / "data" / "annotations.json"
    res = {"system": system, "seed": seed, **mAP(data, out / "predictions.json", bench)}
    if not bench.activitynet:
        return res
    if system == "actionformer":
        timers = json.loads((out / "train.json").read_text())
        res["train_iter_s"] = timers["train_seconds"] / timers["iterations"]
        res["infer_video_s"] = timers["infer_seconds"] / timers["videos"]
    else:
        res["train_iter_s"] = gaf_train_iter_s(out)
        res["infer_video_s"] = gaf_proposals(out)
    if fuses_scores(bench, system):
        res["proposals"] = mAP(data, out / "proposals.json", bench, proposals=True)
    return res


def mAP(annotations: Path, predictions: Path, bench: Benchmark, proposals: bool = False) -> dict:
    """The average mAP and the mAP at each of ``bench.shown`` (%) of ``predictions`` on the test subset by
    gaf's evaluator; ``proposals``: class-agnostic, against every ground-truth label collapsed to ``action``."""
    import gaf
    from gaf.data.annotations import read_ground_truth
    from gaf.engine.video_scores import as_proposals

    gt = as_proposals(read_ground_truth(annotations, subset=bench.test_subset)) if proposals else annotations
    scored = gaf.score(gt, predictions, list(bench.tious), subset=bench.test_subset)
    at = dict(zip(scored.tious, scored.mAP))
    return {"average_mAP": 100 * scored.average_mAP, **{f"mAP@{t}": 100 * at[t] for t in bench.shown}}


def gaf_train_iter_s(out: Path) -> float:
    """Seconds per training iteration of a gaf run: its epochs' ``seconds`` (history.json) over its batches
    (the ``done/total it`` of its log's progress lines; a GAF batch passes both stages)."""
    import re

    seconds = sum(float(h["seconds"]) for h in json.loads((out / "history.json").read_text()))
    per_epoch = [int(n) for n in re.findall(r"epoch 1/\d+ segment: \d+/(\d+) it", (out / "log.txt").read_text())]
    epochs = len(json.loads((out / "history.json").read_text()))
    return seconds / (epochs * max(per_epoch))


def gaf_proposals(out: Path) -> float:
    """A gaf run's inference on the test split, timed on one thread (feature loading, forward, decoding,
    Soft-NMS): the seconds per video. Its detections (``gaf eval`` without ``eval.video_scores``: a
    class-agnostic run's proposals) are written to ``proposals.json``."""
    import torch

    from gaf.data.activitynet import write_predictions
    from gaf.engine.evaluate import run_inference
    from gaf.engine.factory import build_dataset
    from gaf.engine.loading import load_detector
    from gaf.engine.runtime import cpu_threads

    model, cfg = load_detector(out / "final.pt", device=torch.device("cpu"))
    dataset = build_dataset(cfg, "test", training=False)
    with cpu_threads(1):
        tic = time.perf_counter()
        inference = run_inference([model], [dataset], cfg.eval, list(dataset.labels), device=torch.device("cpu"),
                                  progress=False)
        seconds = time.perf_counter() - tic
    write_predictions(inference.predictions, out / "proposals.json")
    return seconds / len(dataset.video_ids)


def _format(values: list[float]) -> str:
    """``mean ± std`` (sample std), the value alone for one seed, ``-`` for none."""
    if not values:
        return "-"
    mean, std = _mean_std(values)
    return f"{mean:.2f}" if len(values) == 1 else f"{mean:.2f} ± {std:.2f}"


def accuracy_table(results: dict[str, list[dict]], bench: Benchmark, classifier: list[dict]) -> None:
    seeds = {r["seed"] for rs in results.values() for r in rs}
    tious = f"{bench.tious[0]}:{round(bench.tious[1] - bench.tious[0], 2)}:{bench.tious[-1]}"
    print(f"\naccuracy: mean ± std over {len(seeds)} seed(s); mAP in %, tIoU {tious}, gaf's evaluator")
    if bench.activitynet:
        print("classes: each video's top-2 classes of gaf's classifier (sqrt fusion, the same scores for every "
              f"system of a seed; a {K200} system's: its own); classifier top-1 by seed: "
              + ", ".join(f"{c['seed']}: {c['top1']:.2f} %" for c in sorted(classifier, key=lambda c: c["seed"])))
    columns = [f"mAP@{t}" for t in bench.shown]
    columns = ["average_mAP", *columns] if not bench.activitynet else [*columns, "average_mAP"]
    timers = ["train_iter_s", "infer_video_s"] if bench.activitynet else []
    names = {"average_mAP": "average mAP", "train_iter_s": "train s / iteration (x)",
             "infer_video_s": "inference s / video (x)"}
    head = [names.get(c, c) for c in columns]
    print(f"| system | {' | '.join(head)} | average mAP vs ActionFormer (paired by seed) "
          "| GAF's gain over the same detector (paired) |" + "".join(f" {names[t]} |" for t in timers))
    print("|---|" + "---|" * (len(columns) + 2 + len(timers)))
    _rows(results, bench, columns, timers, lambda r: r)
    proposals = {s: rs for s, rs in results.items() if any("proposals" in r for r in rs)}
    if proposals:
        print("\nwithout fusion: class-agnostic proposals (every ground-truth label collapsed to 'action')")
        print(f"| system | {' | '.join(head)} | average mAP vs ActionFormer (paired by seed) "
              "| GAF's gain over the same detector (paired) |")
        print("|---|" + "---|" * (len(columns) + 2))
        _rows(proposals, bench, columns, [], lambda r: r["proposals"])


def _rows(results: dict[str, list[dict]], bench: Benchmark, columns: list[str], timers: list[str], pick) -> None:
    """The table's rows: ``pick(result)``'s columns, the paired differences of the average mAP, the timers
    (mean over seeds; (x): ActionFormer's over this one's)."""
    by_seed = {system: {r["seed"]: pick(r)["average_mAP"] for r in rs} for system, rs in results.items()}

    def paired(system: str, baseline: str) -> str:
        mine, theirs = by_seed.get(system, {}), by_seed.get(baseline, {})
        diff = [mine[seed] - theirs[seed] for seed in sorted(mine) if seed in theirs]
        return _format(diff) if diff and system != baseline else ""

    def timer(system: str, key: str) -> str:
        mean = statistics.mean(r[key] for r in results[system])
        theirs = [r[key] for r in results.get("actionformer", [])]
        ratio = f" ({statistics.mean(theirs) / mean:.2f}x)" if theirs and system != "actionformer" else ""
        return f"{mean:.4f}{ratio}"

    for system, rs in results.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        same_classes = fuses_scores(bench, system) == fuses_scores(bench, without_gaf(system))
        gain = paired(system, without_gaf(system)) if has_gaf(system) and same_classes else ""
        cells = [_format([pick(r)[c] for r in rs]) for c in columns]
        print(f"| {SYSTEMS[system][0]} | {' | '.join(cells)} | {paired(system, 'actionformer')} | {gain} |"
              + "".join(f" {timer(system, t)} |" for t in timers))


# --- speed ---------------------------------------------------------------------------------------------------------

SPEED = BENCHMARKS["compressed"]  # the speed phase times on its configs (speed does not depend on the data)


def speed_gaf(work: Path, system: str, iterations: int, repeats: int) -> dict:
    import torch

    import infer
    import train as train_bench

    torch.set_num_threads(2)
    cfg_path = str(config_path(work, system))
    case_name = "frame+segment" if has_gaf(system) else "plain"
    device = torch.device("cpu")
    case, cfg = train_bench.build_case(cfg_path, case_name, SPEED.window, device)
    batch = train_bench.make_batch(cfg, SPEED.window, device)
    for step in range(3):
        train_bench.train_step(case, batch, step)
    times = []
    for step in range(3, 3 + iterations):
        tic = time.perf_counter()
        train_bench.train_step(case, batch, step)
        times.append(time.perf_counter() - tic)
    del case
    peak = train_bench.child_peak(cfg_path, case_name, SPEED.window)
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
               str(work / "data"), "--out", str(out), "--batch-size", str(SPEED.batch), "--width", str(WIDTH),
               "--max-seq-len", str(SPEED.window), "--threads", "2", "--iterations", str(iterations),
               "--repeats", str(repeats), "--lengths", *map(str, LENGTHS)]
    else:
        cmd = [sys.executable, __file__, "--speed-child", system, "--work-dir", str(work),
               "--iterations", str(iterations), "--repeats", str(repeats)]
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def speed_table(speeds: dict[str, dict], iterations: int, repeats: int) -> None:
    af = speeds.get("actionformer")
    print(f"\nspeed (CPU, 2 threads): training s / iteration (median of {iterations}; batch {SPEED.batch} x "
          f"{SPEED.window} steps), peak RSS growth of one iteration, inference s / video (median of {repeats}); "
          "(x): ActionFormer's time over this one; parameters (millions, all of the model's) and GFLOPs of one "
          "inference forward per video (torch.utils.flop_counter: matrix products, convolutions, attention)")
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
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                   help=f"comma-separated, of {', '.join(SYSTEMS)} (default: all but {K200}; {K200}: anet only)")
    p.add_argument("--benchmarks", default="compressed",
                   help=f"accuracy: comma-separated, of {', '.join(BENCHMARKS)} (default: %(default)s)")
    p.add_argument("--phases", default="accuracy,speed", help="accuracy, speed or both (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="accuracy: training seeds 0..n-1 (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None,
                   help="accuracy: epochs of every system (default: the benchmark's, 7; anet: 15)")
    p.add_argument("--jobs", type=int, default=2, help="accuracy: runs at a time, one thread each (default: %(default)s)")
    p.add_argument("--max-per-video", type=int, default=MAX_PER_VIDEO,
                   help="accuracy: detections kept per test video by every system (default: %(default)s)")
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
    roots = {b: benchmark_root(work, b) for b in dict.fromkeys(benchmarks + (["compressed"] * ("speed" in phases)))}
    runs = {b: [s for s in systems if not s.endswith(K200) or BENCHMARKS[b].activitynet] for b in roots}
    epochs = {b: args.epochs or BENCHMARKS[b].epochs for b in roots}
    short = [b for b in benchmarks if epochs[b] <= BENCHMARKS[b].warmup]
    if short:
        p.error(f"--epochs {args.epochs}: {short[0]} warms up for {BENCHMARKS[short[0]].warmup} epochs: give more")
    for benchmark, root in roots.items():
        prepare_data(root, BENCHMARKS[benchmark])
        if BENCHMARKS[benchmark].activitynet:
            classifier_config(root)
        for system in runs[benchmark]:
            if system != "actionformer":
                gaf_config(root, BENCHMARKS[benchmark], system, epochs[benchmark], args.overrides, args.max_per_video)
    af_python = actionformer_python(work) if "actionformer" in systems else None
    if "accuracy" in phases:
        seeds = range(args.seeds)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            # anet's video-level scores first: every system of a seed fuses its classifier's
            scored = [(b, k) for b in benchmarks if BENCHMARKS[b].activitynet for k in seeds]
            classifiers = dict(zip(scored, pool.map(lambda job: train_classifier(roots[job[0]], job[1]), scored)))
            jobs = [(b, s, k) for b in benchmarks for k in seeds for s in runs[b]]
            done = list(pool.map(lambda job: train_one(roots[job[0]], BENCHMARKS[job[0]], job[1], job[2],
                                                       epochs[job[0]], af_python, args.max_per_video), jobs))
        for benchmark in benchmarks:
            results: dict[str, list[dict]] = {s: [] for s in runs[benchmark]}
            for (b, _, _), r in zip(jobs, done):
                if b == benchmark:
                    results[r["system"]].append(r)
            print(f"\nbenchmark: {benchmark}")
            accuracy_table(results, BENCHMARKS[benchmark], [c for (b, _), c in classifiers.items() if b == benchmark])
    if "speed" in phases:
        speeds = {s: speed_one(work, s, af_python, args.iterations, args.repeats) for s in runs["compressed"]}
        speed_table(speeds, args.iterations, args.repeats)
    print(f"\n({(time.perf_counter() - tic) / 60:.1f} min; work folder {work})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
