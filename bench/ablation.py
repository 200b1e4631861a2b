"""Table IV and GAF's formulations on the embedded benchmark: paired seeds, mean ± std, λ health.

Every variant is the base config (``demo``, or ``demo_hard``: more distractors
and noise) plus a few ``--set`` overrides (see VARIANTS); seed k of every
variant uses the same data and training seed k, so "vs plain" is a paired
difference (variant seed k minus plain seed k), reported as mean ± std over
the seeds. Each run is ``gaf train`` in its own work dir
(``<work-dir>/<base>/<variant>/seed<k>``); a run whose ``metrics.json``
exists is read, not retrained, so an interrupted sweep continues where it
stopped.

Printed per variant: mean ± std of mAP at each tIoU and of the average; the
paired difference of the average against ``plain``; λ's health at the end of
training (test-split AUROC and mean λ on action / background steps) and the
lowest per-epoch mean λ on action steps (a collapse shows there).

    OMP_WAIT_POLICY=PASSIVE python bench/ablation.py --base demo --seeds 3 \\
        --variants plain,no_att,default --jobs 2 [--epochs N] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PLAIN = ["model.gaf.enabled=false", "model.loss.nai=0", "model.loss.rep=0", "model.loss.clf=0",
         "model.loss.cvae=0", "model.loss.att=0"]
# the shipped default without L_att: the paper's losses (the default until L_att was measured best)
NO_ATT = ["model.loss.att=0"]
# the formulation before issue 9 (scalar λ, local head, (F + E)/2, complement L_nai, L_clf from p = 0.5)
LEGACY = ["model.gaf.attention=scalar", "model.gaf.context=local", "model.gaf.output=average",
          "model.loss.nai_form=complement", "model.loss.nai=0.5", "model.loss.clf=0.1",
          "model.loss.clf_prior=false", "model.loss.rep=0.5", "model.loss.att=0"]
# the authors' code: λ per channel, F*λ/Σλ, "no action" on F*(1-λ) weighted 35, no L_clf head (their attention
# head mixes the time axis with a fixed-length Linear layer; the local head is the closest length-free stand-in)
OFFICIAL = ["model.gaf.attention=channel", "model.gaf.context=local", "model.gaf.output=normalized",
            "model.loss.nai_form=background", "model.loss.nai=35", "model.loss.clf=0", "model.loss.rep=0.5",
            "model.loss.att=0"]

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "plain": ("L_ai only: the plain detector (Table IV row 1)", PLAIN),
    "default": ("the shipped demo.yaml as is: scalar λ, global head, (F + E)/2, complement L_nai 0.5, "
                "L_clf 0.1 from the class prior, L_R 0.5, L_att 1.0 (λ supervised by the action mask; ours)", []),
    "no_att": ("the default without L_att: the paper's losses (Table IV row 3, = configs/ablation_ai_nai_r.yaml)",
               NO_ATT),
    "no_att_ai_nai": ("Table IV row 2: Segment-GAF only (F' from F*λ, L_nai, L_clf; no Frame-GAF, no L_R, no L_att) "
                      "= configs/ablation_ai_nai.yaml", NO_ATT + ["model.gaf.fusion=attention", "model.loss.rep=0",
                                                               "model.loss.cvae=0"]),
    "no_att_noclf": ("no_att without the L_clf head", NO_ATT + ["model.loss.clf=0"]),
    "no_att_clf03": ("no_att with L_clf weighted 0.3", NO_ATT + ["model.loss.clf=0.3"]),
    "no_att_nai1": ("no_att with L_nai weighted 1.0", NO_ATT + ["model.loss.nai=1.0"]),
    "no_att_noclf_nai1": ("no_att, no L_clf head, L_nai weighted 1.0",
                          NO_ATT + ["model.loss.clf=0", "model.loss.nai=1.0"]),
    "no_att_wide": ("no_att with a 128-wide attention head", NO_ATT + ["model.gaf.attention_dim=128"]),
    "no_att_channel": ("no_att with channel attention (B, C, T)", NO_ATT + ["model.gaf.attention=channel"]),
    "no_att_channel_noclf": ("no_att, channel attention, no L_clf head",
                             NO_ATT + ["model.gaf.attention=channel", "model.loss.clf=0"]),
    "no_att_enhanced_noclf": ("no_att, F' = E (no averaging with F), no L_clf head",
                              NO_ATT + ["model.gaf.output=enhanced", "model.loss.clf=0"]),
    "no_att_background_noclf": ("no_att, the official L_nai (background form, x35), no L_clf head",
                                NO_ATT + ["model.loss.nai_form=background", "model.loss.nai=35", "model.loss.clf=0"]),
    "default_noclf": ("the default (with L_att) without the L_clf head", ["model.loss.clf=0"]),
    "legacy": ("the formulation before the fix: local head, L_clf from p = 0.5", LEGACY),
    "legacy_noclf": ("legacy without the L_clf head", LEGACY + ["model.loss.clf=0"]),
    "official": ("the authors' formulation: channel λ, F*λ/Σλ, background L_nai x35, no L_clf head", OFFICIAL),
    "oracle": ("λ = the ground-truth action mask (an upper bound; L_att has nothing to train)",
               ["model.gaf.oracle=true", "model.loss.att=0"]),
}


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _check_stored(work: Path, base: str, sets: list[str]) -> None:
    """A finished run is reused only when it trained what the variant asks today (its config.yaml, work dir
    aside, equals the config the overrides give); a run from another definition would mislabel a row."""
    import yaml

    from gaf.config import to_dict
    from gaf.engine.experiment import load_experiment
    from gaf.engine.run import config_differences

    stored = yaml.safe_load((work / "config.yaml").read_text())
    wanted = to_dict(load_experiment(base, sets))
    diffs = [d for d in config_differences(stored, wanted)
             if not d.startswith(("work_dir:", "train.device:", "train.threads:"))]
    if diffs:
        raise SystemExit(f"{work}: trained with another definition of this variant ({'; '.join(diffs[:4])}); "
                         "move it away or use another --work-dir")


def _run(base: str, variant: str, seed: int, root: Path, extra: list[str], threads: int) -> Path:
    work = root / base / variant / f"seed{seed}"
    sets = VARIANTS[variant][1] + [f"train.seed={seed}"] + extra
    if (work / "metrics.json").exists():
        _check_stored(work, base, sets)
        return work
    if work.exists():  # an interrupted run: start it again
        import shutil

        shutil.rmtree(work)
    cmd = [sys.executable, "-m", "gaf", "train", base, "--work-dir", str(work), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    cmd += ["--set", f"train.threads={threads}"]  # not part of the variant's definition: only the order of sums
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    # a run with several threads is then the machine's only work: OpenMP's default (spin a while between
    # parallel regions) is what makes its second thread pay; a sleeping team made 2 threads slower than 1
    if threads > 1:
        env.pop("OMP_WAIT_POLICY", None)
    tic = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(f"  {base}/{variant}/seed{seed}: {time.perf_counter() - tic:.0f} s", flush=True)
    return work


def _read(work: Path) -> dict:
    metrics = json.loads((work / "metrics.json").read_text())
    history = json.loads((work / "history.json").read_text())
    last = history[-1] if history else {}
    action = [h["health/train_action_mean"] for h in history if "health/train_action_mean" in h]
    return {"mAP": metrics["mAP"], "avg": metrics["average_mAP"], "tious": metrics["tious"],
            "auroc": last.get("health/test_auroc", math.nan), "act": last.get("health/test_action_mean", math.nan),
            "bg": last.get("health/test_background_mean", math.nan),
            "min_act": min(action) if action else math.nan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="demo", help="base config (demo | demo_hard | a YAML path)")
    parser.add_argument("--variants", default="plain,legacy,default,oracle",
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (paired across variants)")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs for every run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (2 cores: --jobs 2 gives 1 thread each)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: 2 / jobs)")
    parser.add_argument("--work-dir", default="work_dirs/ablation")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra override for all runs")
    parser.add_argument("--curves", metavar="PNG", help="also plot seed 0's per-epoch test λ health of each variant")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    args = parser.parse_args()
    if args.list:
        for name, (doc, sets) in VARIANTS.items():
            print(f"{name:20s} {doc}\n{'':20s} {' '.join(sets) or '(no overrides)'}")
        return
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; --list shows them")
    if "plain" not in names:
        names.insert(0, "plain")
    extra = list(args.overrides) + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    root = Path(args.work_dir)
    threads = args.threads or max(1, 2 // max(1, args.jobs))

    from gaf.engine.experiment import load_experiment
    from gaf.engine.train import prepare_benchmark

    prepare_benchmark(load_experiment(args.base, extra))  # once, before parallel runs read it
    jobs = [(v, s) for s in range(args.seeds) for v in names]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        works = list(pool.map(lambda job: _run(args.base, job[0], job[1], root, extra, threads), jobs))
    results: dict[str, list[dict]] = {v: [] for v in names}
    for (v, _), work in zip(jobs, works):
        results[v].append(_read(work))

    tious = results["plain"][0]["tious"]
    plain = [r["avg"] for r in results["plain"]]
    print(f"\n{args.base}: mAP (%) at tIoU, mean ± std over {args.seeds} paired seeds"
          + (f", {args.epochs} epochs" if args.epochs else ""))
    w = max(len(v) for v in names)
    head = (f"{'variant':{w}s} | " + " ".join(f"{t:>11.1f}" for t in tious)
            + f" | {'Avg':>11} | {'vs plain':>12} | {'AUROC':>5} {'λ act':>5} {'λ bg':>5} {'min act':>7}")
    print(head)
    print("-" * len(head))
    for v in names:
        rs = results[v]
        cells = []
        for i in range(len(tious)):
            m, s = _mean_std([r["mAP"][i] * 100 for r in rs])
            cells.append(f"{m:5.2f}±{s:4.2f}")
        m, s = _mean_std([r["avg"] * 100 for r in rs])
        dm, ds = _mean_std([(r["avg"] - p) * 100 for r, p in zip(rs, plain)])
        au, _ = _mean_std([r["auroc"] for r in rs])
        act, _ = _mean_std([r["act"] for r in rs])
        bg, _ = _mean_std([r["bg"] for r in rs])
        low = min((r["min_act"] for r in rs), default=math.nan)
        diff = "" if v == "plain" else f"{dm:+5.2f}±{ds:4.2f}"
        print(f"{v:{w}s} | " + " ".join(cells) + f" | {m:5.2f}±{s:4.2f} | {diff:>12} | "
              f"{au:5.3f} {act:5.3f} {bg:5.3f} {low:7.3f}")


    if args.curves:
        histories = {v: json.loads((root / args.base / v / "seed0" / "history.json").read_text()) for v in names}
        print(f"curves: {plot_health_curves(Path(args.curves), histories, title=args.base)}")


def plot_health_curves(path: Path, histories: dict[str, list[dict]], *, title: str) -> Path:
    """Per-epoch test-split λ health (mean on action / background steps, AUROC) of several runs, one figure."""
    from gaf.metrics.attention import ACTION_MEAN_TARGET, AUROC_TARGET
    from gaf.viz import _mpl, _save_figure

    Figure, colormaps, _ = _mpl()
    fig = Figure(figsize=(11, 3.8))
    ax_mean, ax_auc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = colormaps["tab10"]
    for i, (name, history) in enumerate(h for h in histories.items() if any("health/test_auroc" in r for r in h[1])):
        rows = [r for r in history if "health/test_auroc" in r]
        epochs = [r["epoch"] for r in rows]
        ax_mean.plot(epochs, [r["health/test_action_mean"] for r in rows], color=colors(i), label=f"{name}: action")
        ax_mean.plot(epochs, [r["health/test_background_mean"] for r in rows], color=colors(i), ls="--",
                     label=f"{name}: background")
        ax_auc.plot(epochs, [r["health/test_auroc"] for r in rows], color=colors(i), label=name)
    ax_mean.axhline(ACTION_MEAN_TARGET, color="grey", ls=":", lw=1)
    ax_auc.axhline(AUROC_TARGET, color="grey", ls=":", lw=1)
    ax_mean.set(xlabel="epoch", ylabel="mean λ on test steps, in [0, 1]", ylim=(0, 1), title=f"{title}: mean λ")
    ax_auc.set(xlabel="epoch", ylabel="AUROC of λ vs the action mask", ylim=(0.4, 1.0), title=f"{title}: AUROC")
    ax_mean.legend(fontsize=7)
    ax_auc.legend(fontsize=7)
    fig.tight_layout()
    return _save_figure(fig, path)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
