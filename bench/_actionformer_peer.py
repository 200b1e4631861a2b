"""ActionFormer's side of bench/peer.py: run by the python of the bench's own ActionFormer virtualenv.

Imports only the registry's ``actionformer`` package, torch, numpy and bench/_proc.py (gaf is not installed
there). Two
commands, each writing one JSON file:

* ``train``: ActionFormer's own dataset, model (``LocPointTransformer``, ``convTransformer`` backbone),
  AdamW optimiser and warm-up + cosine schedule, trained for ``--epochs`` epochs (``--warmup-epochs`` of
  them warm-up) at ``--batch-size``; then its own inference (decoding, Soft-NMS) on the test split, written
  as an ActivityNet results JSON that bench/peer.py scores with gaf's evaluator (the same evaluator for every
  system). ``train.json`` holds the seconds of training and of inference, the iterations and the videos.
  ``--recipe`` picks ActionFormer's recipe: ``thumos`` (its THUMOS14 config, at the bench's sizes) or
  ``anet`` (its ActivityNet config ``configs/anet_tsp.yaml``: class-agnostic, every video resized to
  ``--max-seq-len`` steps); with ``--video-scores`` (a ``{"results": {video: [K]}, "class": [K names]}``
  file) its proposals are fused by its own ``postprocess_results`` (top-2 classes, ``sqrt(p * s)``) into
  ``predictions.json``, the proposals themselves in ``proposals.json``.
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
    """ActionFormer's config of ``--recipe`` at the bench's sizes, over its defaults."""
    from actionformer.core.config import DEFAULTS, _merge, _update_config

    bench = json.loads((Path(args.data) / "benchmark.json").read_text())["config"]
    cfg = (anet_recipe if args.recipe == "anet" else thumos_recipe)(args, bench)
    import copy

    defaults = copy.deepcopy(DEFAULTS)
    _merge(defaults, cfg)
    return _update_config(cfg)


def thumos_recipe(args, bench: dict) -> dict:
    """ActionFormer's THUMOS14 recipe at the bench's sizes (widths, epochs, batch, lr as gaf's runs). The
    point buffer (``max_buffer_len_factor`` x ``max_seq_len`` points, 6x by default) is made long enough for
    the longest video it is fed: the speed test's longest ``--lengths``, and the benchmark's longest test video
    (ActionFormer runs a test video whole, padded up to a multiple of its largest stride: the ``real``
    benchmark's reach 6,275 steps; one ``max_seq_len`` more covers the padding)."""
    labels = json.loads((Path(args.data) / "annotations.json").read_text())
    num_classes = len({a["label"] for v in labels["database"].values() for a in v["annotations"]})
    return {
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
        "opt": {"type": "AdamW", "learning_rate": args.lr, "weight_decay": 0.05,
                "epochs": args.epochs - args.warmup_epochs, "warmup": True, "warmup_epochs": args.warmup_epochs,
                "schedule_type": "cosine"},
        "loader": {"batch_size": args.batch_size, "num_workers": 0},
        "train_cfg": {"init_loss_norm": 100, "clip_grad_l2norm": 1.0, "cls_prior_prob": 0.01,
                      "center_sample": "radius", "center_sample_radius": 1.5, "droppath": 0.1},
        "test_cfg": {"voting_thresh": 0.7, "pre_nms_topk": 2000, "max_seg_num": args.max_per_video,
                     "min_score": 0.001, "multiclass_nms": True, "nms_sigma": 0.5, "iou_threshold": 0.1},
    }


def anet_recipe(args, bench: dict) -> dict:
    """ActionFormer's ActivityNet recipe (its ``configs/anet_tsp.yaml``), value for value, but for the widths
    (``--width``: 256 there) and what bench/peer.py passes (epochs, warm-up, batch, lr, ``max_seq_len``: the
    recipe's 15 = 5 + 10, 16, 1e-3, 192): one class (proposals; classes come from the video-level scores),
    features resized (``force_upsampling``, linear interpolation) to ``max_seq_len`` steps, a 6-level
    pyramid with windowed attention (7 steps; global on the last level) and absolute position encoding, the
    point buffer exactly ``max_seq_len`` long, label smoothing 0.1, regression loss weight 2, Soft-NMS
    sigma 0.75 over the proposals (no per-class NMS), at most ``--max-per-video`` proposals."""
    return {
        "dataset_name": "anet", "train_split": ["training"], "val_split": ["validation"],
        "dataset": {"json_file": str(Path(args.data) / "annotations.json"),
                    "feat_folder": str(Path(args.data) / "features"), "file_prefix": None, "file_ext": ".npy",
                    "num_classes": 1, "input_dim": bench["feature_dim"], "feat_stride": bench["feature_stride"],
                    "num_frames": bench["num_frames"], "default_fps": bench["fps"], "trunc_thresh": 0.5,
                    "crop_ratio": [0.9, 1.0], "max_seq_len": args.max_seq_len, "force_upsampling": True},
        "model": {"backbone_type": "convTransformer", "fpn_type": "identity", "backbone_arch": [2, 2, 5],
                  "max_buffer_len_factor": 1.0, "n_mha_win_size": [7, 7, 7, 7, 7, -1], "n_head": 4,
                  "embd_dim": args.width, "fpn_dim": args.width, "head_dim": args.width, "use_abs_pe": True},
        "opt": {"type": "AdamW", "learning_rate": args.lr, "weight_decay": 0.05,
                "epochs": args.epochs - args.warmup_epochs, "warmup": True, "warmup_epochs": args.warmup_epochs,
                "schedule_type": "cosine"},
        "loader": {"batch_size": args.batch_size, "num_workers": 0},
        "train_cfg": {"init_loss_norm": 200, "clip_grad_l2norm": 1.0, "cls_prior_prob": 0.01,
                      "center_sample": "radius", "center_sample_radius": 1.5, "label_smoothing": 0.1,
                      "droppath": 0.1, "loss_weight": 2.0},
        "test_cfg": {"voting_thresh": 0.9, "pre_nms_topk": 2000, "max_seg_num": args.max_per_video,
                     "min_score": 0.001, "multiclass_nms": False, "nms_sigma": 0.75, "duration_thresh": 0.001},
    }


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


def predict(cfg: dict, model) -> tuple[dict, float, int]:
    """ActionFormer's inference on the test split, one video a batch as its ``valid_one_epoch``: its results
    arrays (``video-id``, ``t-start``, ``t-end`` in seconds, ``label`` ids, ``score``), the seconds it took
    (feature loading, forward, decoding, Soft-NMS) and the number of videos."""
    from actionformer.datasets import make_dataset

    test_set = make_dataset(cfg["dataset_name"], False, cfg["val_split"], **cfg["dataset"])
    loader = loader_of(test_set, False, None, 1)
    model.eval()
    results: dict[str, list] = {"video-id": [], "t-start": [], "t-end": [], "label": [], "score": []}
    tic = time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            for out in model(batch):
                results["video-id"].extend([out["video_id"]] * len(out["scores"]))
                results["t-start"].extend(out["segments"][:, 0].tolist())
                results["t-end"].extend(out["segments"][:, 1].tolist())
                results["label"].extend(out["labels"].tolist())
                results["score"].extend(out["scores"].tolist())
    seconds = time.perf_counter() - tic
    arrays = {k: v if k == "video-id" else np.asarray(v) for k, v in results.items()}
    return arrays, seconds, len(test_set)


def results_json(results: dict, names, max_per_video: int) -> dict:
    """Results arrays as an ActivityNet results JSON: label ids named by ``names[id]``, at most
    ``max_per_video`` detections a video, best first."""
    videos: dict[str, list] = {}
    for vid, s, e, label, score in zip(results["video-id"], results["t-start"].tolist(), results["t-end"].tolist(),
                                       results["label"].tolist(), results["score"].tolist()):
        videos.setdefault(vid, []).append({"label": names[int(label)], "score": float(score), "segment": [s, e]})
    for vid in videos:
        videos[vid] = sorted(videos[vid], key=lambda r: -r["score"])[:max_per_video]
    return {"version": "ActionFormer (registry package actionformer 1.5.0)", "results": videos,
            "external_data": {}}


def fused(results: dict, video_scores: str) -> tuple[dict, list[str]]:
    """ActionFormer's own score fusion (``postprocess_results``: each proposal takes its video's top-2
    classes of ``video_scores``, scored ``sqrt(proposal x class)``), and the file's class names that its
    label ids index."""
    from actionformer.utils import postprocess_results

    return postprocess_results(results, video_scores), json.loads(Path(video_scores).read_text())["class"]


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
    results, infer_s, videos = predict(cfg, model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.video_scores:
        (out / "proposals.json").write_text(json.dumps(results_json(results, ["action"], args.max_per_video)))
        results, names = fused(results, args.video_scores)
    else:
        names = {i: name for name, i in train_set.label_dict.items()}
    (out / "predictions.json").write_text(json.dumps(results_json(results, names, args.max_per_video)))
    (out / "train.json").write_text(json.dumps({"train_seconds": train_s, "epochs": total,
                                                "iterations": len(losses), "last_loss": losses[-1],
                                                "infer_seconds": infer_s, "videos": videos}))


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
    p.add_argument("--recipe", choices=["thumos", "anet"], default="thumos")
    p.add_argument("--epochs", type=int, default=7)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--max-seq-len", type=int, default=576)
    p.add_argument("--max-per-video", type=int, default=100)
    p.add_argument("--video-scores", default=None, help="train: fuse the proposals with these video-level scores")
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
