"""ActionFormer's side of bench/peer.py: run by the python of the bench's own ActionFormer virtualenv.

Imports only the registry's ``actionformer`` package, torch, numpy and bench/_proc.py (gaf is not installed
there). Two
commands, each writing one JSON file:

* ``train``: ActionFormer's own dataset, model (``LocPointTransformer``, ``convTransformer`` backbone),
  AdamW optimiser and warm-up + cosine schedule, trained for ``--epochs`` epochs at ``--batch-size``; then
  its own inference (decoding, Soft-NMS) on the test split, written as an ActivityNet results JSON that
  bench/peer.py scores with gaf's evaluator (the same evaluator for every system).
* ``speed``: median seconds per training iteration (optimiser step included) on the benchmark's batches,
  the peak resident-memory growth of training, and the median seconds of inference (forward, decoding,
  Soft-NMS) of one video of T random feature steps for each ``--lengths``.

Its own training loop, not ``actionformer.utils.train_one_epoch``: that one calls
``torch.cuda.synchronize()``, which fails on a CPU build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _proc import release_free_memory, reset_peak_rss, status_kb  # bench/, beside this file


def config(args) -> dict:
    """ActionFormer's THUMOS14 recipe at the bench's sizes (widths, epochs, batch, lr as gaf's runs). The
    point buffer (``max_buffer_len_factor`` x ``max_seq_len`` points, 6x by default) is made long enough for
    the longest video it is fed: the speed test's longest ``--lengths``, and the benchmark's longest test video
    (ActionFormer runs a test video whole, padded up to a multiple of its largest stride: the ``real``
    benchmark's reach 6,275 steps; one ``max_seq_len`` more covers the padding)."""
    from actionformer.core.config import DEFAULTS, _merge, _update_config

    bench = json.loads((Path(args.data) / "benchmark.json").read_text())["config"]
    labels = json.loads((Path(args.data) / "annotations.json").read_text())
    num_classes = len({a["label"] for v in labels["database"].values() for a in v["annotations"]})
    cfg = {
        "dataset_name": "thumos", "train_split": ["validation"], "val_split": ["test"],
        "dataset": {"json_file": str(Path(args.data) / "annotations.json"),
                    "feat_folder": str(Path(args.data) / "features"), "file_prefix": None, "file_ext": ".npy",
                    "num_classes": num_classes, "input_dim": bench["feature_dim"],
                    "feat_stride": bench["feature_stride"], "num_frames": bench["num_frames"],
                    "default_fps": None, "trunc_thresh": 0.5, "crop_ratio": [0.9, 1.0],
                    "max_seq_len": args.max_seq_len},
        "model": {"backbone_type": "convTransformer", "fpn_type": "identity", "backbone_arch": [2, 2, 5],
                  "n_mha_win_size": 19, "embd_dim": args.width, "fpn_dim": args.width, "head_dim": args.width,
                  "max_buffer_len_factor": max(6.0, max(args.lengths) / args.max_seq_len,
                                               longest_video(Path(args.data)) / args.max_seq_len + 1.0), "use_abs_pe": False, "use_rel_pe": False},
        "opt": {"type": "AdamW", "learning_rate": args.lr, "weight_decay": 0.05, "epochs": args.epochs - 1,
                "warmup": True, "warmup_epochs": 1, "schedule_type": "cosine"},
        "loader": {"batch_size": args.batch_size, "num_workers": 0},
        "train_cfg": {"init_loss_norm": 100, "clip_grad_l2norm": 1.0, "cls_prior_prob": 0.01,
                      "center_sample": "radius", "center_sample_radius": 1.5, "droppath": 0.1},
        "test_cfg": {"voting_thresh": 0.7, "pre_nms_topk": 2000, "max_seg_num": args.max_per_video,
                     "min_score": 0.001, "multiclass_nms": True, "nms_sigma": 0.5, "iou_threshold": 0.1},
    }
    import copy

    defaults = copy.deepcopy(DEFAULTS)
    _merge(defaults, cfg)
    return _update_config(cfg)


def longest_video(data: Path) -> int:
    """Steps of the longest feature file of the benchmark (read from the .npy headers)."""
    return max(np.load(path, mmap_mode="r").shape[0] for path in (data / "features").glob("*.npy"))


def loader_of(dataset, training: bool, generator, batch_size: int):
    """ActionFormer's loader (its collate function), in the main process: its make_data_loader asks for
    persistent workers, which need worker processes."""
    from actionformer.datasets.datasets import trivial_batch_collator

    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=0,
                                       collate_fn=trivial_batch_collator, shuffle=training, drop_last=training,
                                       generator=generator)


def build(cfg: dict, seed: int):
    from actionformer.datasets import make_dataset
    from actionformer.modeling import make_meta_arch
    from actionformer.utils import fix_random_seed, make_optimizer, make_scheduler

    rng = fix_random_seed(seed, include_cuda=False)
    train_set = make_dataset(cfg["dataset_name"], True, cfg["train_split"], **cfg["dataset"])
    cfg["model"]["train_cfg"]["head_empty_cls"] = train_set.get_attributes()["empty_label_ids"]
    loader = loader_of(train_set, True, rng, cfg["loader"]["batch_size"])
    model = make_meta_arch(cfg["model_name"], **cfg["model"])
    optimizer = make_optimizer(model, cfg["opt"])
    scheduler = make_scheduler(optimizer, cfg["opt"], len(loader))
    return train_set, loader, model, optimizer, scheduler


def step(model, optimizer, scheduler, batch, clip: float) -> float:
    optimizer.zero_grad(set_to_none=True)
    losses = model(batch)
    losses["final_loss"].backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    scheduler.step()
    return float(losses["final_loss"].detach())


def predict(cfg: dict, model, label_names: dict[int, str], max_per_video: int) -> dict:
    from actionformer.datasets import make_dataset

    test_set = make_dataset(cfg["dataset_name"], False, cfg["val_split"], **cfg["dataset"])
    loader = loader_of(test_set, False, None, 1)
    model.eval()
    results: dict[str, list] = {}
    with torch.no_grad():
        for batch in loader:
            for out in model(batch):
                rows = results.setdefault(out["video_id"], [])
                for (s, e), score, label in zip(out["segments"].tolist(), out["scores"].tolist(),
                                                out["labels"].tolist()):
                    rows.append({"label": label_names[int(label)], "score": float(score), "segment": [s, e]})
    for vid in results:
        results[vid] = sorted(results[vid], key=lambda r: -r["score"])[:max_per_video]
    return {"version": "ActionFormer (registry package actionformer 1.5.0)", "results": results,
            "external_data": {}}


def train(args) -> None:
    cfg = config(args)
    train_set, loader, model, optimizer, scheduler = build(cfg, args.seed)
    clip = cfg["train_cfg"]["clip_grad_l2norm"]
    total = cfg["opt"]["epochs"] + cfg["opt"]["warmup_epochs"]
    tic = time.perf_counter()
    losses = []
    for epoch in range(total):
        model.train()
        for batch in loader:
            losses.append(step(model, optimizer, scheduler, batch, clip))
        print(f"actionformer epoch {epoch + 1}/{total}: mean loss {np.mean(losses[-len(loader):]):.4f}", flush=True)
    train_s = time.perf_counter() - tic
    names = {i: name for name, i in train_set.label_dict.items()}
    preds = predict(cfg, model, names, args.max_per_video)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(preds))
    (out / "train.json").write_text(json.dumps({"train_seconds": train_s, "epochs": total,
                                                "iterations": len(losses), "last_loss": losses[-1]}))


def speed(args) -> None:
    cfg = config(args)
    _, loader, model, optimizer, scheduler = build(cfg, 0)
    clip = cfg["train_cfg"]["clip_grad_l2norm"]
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == args.warmup + args.iterations:
            break
    model.train()
    for batch in batches[:args.warmup]:
        step(model, optimizer, scheduler, batch, clip)
    times = []
    for batch in batches[args.warmup:]:
        tic = time.perf_counter()
        step(model, optimizer, scheduler, batch, clip)
        times.append(time.perf_counter() - tic)
    # peak resident-memory growth of one step over the resting process, as bench/train.py measures gaf's
    release_free_memory()
    rest = reset_peak_rss()
    step(model, optimizer, scheduler, batches[0], clip)
    train_peak_mb = (status_kb("VmHWM") - rest) / 1024
    model.eval()
    C = cfg["dataset"]["input_dim"]
    from torch.utils.flop_counter import FlopCounterMode

    infer, flops = {}, {}
    g = torch.Generator().manual_seed(0)
    for T in args.lengths:
        item = {"video_id": "speed", "feats": torch.randn(C, T, generator=g), "segments": None, "labels": None,
                "fps": 30.0, "duration": T * cfg["dataset"]["feat_stride"] / 30.0,
                "feat_stride": cfg["dataset"]["feat_stride"], "feat_num_frames": cfg["dataset"]["num_frames"]}
        with torch.no_grad():
            model([item])  # warm-up
            runs = []
            for _ in range(args.repeats):
                tic = time.perf_counter()
                model([item])
                runs.append(time.perf_counter() - tic)
        infer[str(T)] = statistics.median(runs)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model([item])
        flops[str(T)] = float(counter.get_total_flops())
    Path(args.out).write_text(json.dumps({"train_iter_s": statistics.median(times), "train_iter_min_s": min(times),
                                          "train_peak_mb": train_peak_mb, "infer_s": infer, "flops": flops,
                                          "params": sum(p.numel() for p in model.parameters())}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["train", "speed"])
    p.add_argument("--data", required=True, help="the benchmark folder (annotations.json, features/)")
    p.add_argument("--out", required=True, help="train: a folder; speed: a JSON file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=7)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--max-seq-len", type=int, default=576)
    p.add_argument("--max-per-video", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--lengths", type=int, nargs="+", default=[576, 1152, 2304, 4608])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    (train if args.command == "train" else speed)(args)


if __name__ == "__main__":
    main()
