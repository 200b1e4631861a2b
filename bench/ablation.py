"""Table IV on the embedded benchmark: L_ai only (plain detector), + L_nai, + L_R.

Trains the three bundled ablation configs (``ablation_ai``, ``ablation_ai_nai``,
``ablation_ai_nai_r``: same data, detector, epochs and seed; they differ only
in the model.gaf / model.loss switches) and prints mAP at each tIoU and the
average, with each row's gain over the plain detector measured in the same run.

    OMP_WAIT_POLICY=PASSIVE python bench/ablation.py [--epochs N] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

ROWS = (
    ("ablation_ai", "L_ai", "", ""),
    ("ablation_ai_nai", "L_ai", "L_nai", ""),
    ("ablation_ai_nai_r", "L_ai", "L_nai", "L_R"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs for all three")
    parser.add_argument("--work-dir", default="work_dirs/ablation")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(2)

    from gaf.engine.experiment import load_experiment
    from gaf.engine.train import train

    overrides = list(args.overrides) + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    results = []
    for name, *terms in ROWS:
        cfg = load_experiment(name, overrides)
        work = Path(args.work_dir) / name
        if work.exists():
            import shutil

            shutil.rmtree(work)
        tic = time.perf_counter()
        res = train(cfg, work_dir=work, progress=False)
        results.append((terms, res.metrics, time.perf_counter() - tic))

    tious = results[0][1]["tious"]
    base = results[0][1]["average_mAP"]
    head = f"{'L_ai':>5} {'L_nai':>6} {'L_R':>4} | " + " ".join(f"{t:>6.2f}" for t in tious) + f" | {'Avg':>6} {'vs plain':>8} {'train s':>8}"
    print("Table IV layout, embedded benchmark, mAP (%) at tIoU")
    print(head)
    print("-" * len(head))
    for (ai, nai, r), m, sec in results:
        marks = " ".join(f"{('✓' if t else ''):>{w}}" for t, w in ((ai, 5), (nai, 6), (r, 4)))
        cells = " ".join(f"{v * 100:>6.2f}" for v in m["mAP"])
        print(f"{marks} | {cells} | {m['average_mAP'] * 100:>6.2f} {m['average_mAP'] / base:>7.2f}x {sec:>8.0f}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
