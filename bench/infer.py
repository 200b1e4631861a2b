"""Inference cost vs video length: model forward + decoding + Soft-NMS per video.

Builds the THUMOS14 I3D model (bundled config ``thumos14_i3d_afsd``: 2048-d input,
embed 512, 6 levels, GAF on) with random weights, feeds one video of T random
feature steps, and times forward + candidate decoding + per-class Gaussian
Soft-NMS for T = 576, 1152, 2304, 4608. Cost should grow about linearly with T:
the table prints time ratios against the shortest T next to the T ratio.
Peak memory: CUDA max allocated on GPU; on CPU the peak resident-memory growth
over the resting process during one run of that T (a fresh process per T, Linux).

    OMP_WAIT_POLICY=PASSIVE python bench/infer.py [--device cpu|cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from _proc import reset_peak_rss, status_kb

LENGTHS = (576, 1152, 2304, 4608)


def build(config: str, T: int, device: torch.device):
    from gaf.engine.experiment import load_experiment
    from gaf.models.gaf_detector import build_model

    cfg = load_experiment(config)
    torch.manual_seed(0)
    model = build_model(cfg.model, in_dim=cfg.dataset.input_dim, num_classes=20, max_seq_len=T).to(device).eval()
    return model, cfg


def run_once(model, cfg, x, mask):
    from gaf.engine.evaluate import postprocess_video

    with torch.no_grad():
        pred = model.predict(x, mask, pre_nms_top_k=cfg.eval.pre_nms_top_k, score_threshold=cfg.eval.score_threshold)[0]
        postprocess_video(pred["segments"], pred["scores"], pred["labels"], cfg.eval)


def time_length(config: str, T: int, device: torch.device, repeats: int) -> float:
    model, cfg = build(config, T, device)
    x = torch.randn(1, cfg.dataset.input_dim, T, device=device)
    mask = torch.ones(1, T, dtype=torch.bool, device=device)
    run_once(model, cfg, x, mask)  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        run_once(model, cfg, x, mask)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def parameters_and_flops(config: str, lengths: tuple[int, ...] = LENGTHS) -> tuple[int, dict[str, float]]:
    """The model's parameter count (every parameter, training-only parts included) and the floating-point
    operations of one forward + decoding per video of each length T (``torch.utils.flop_counter``: matrix
    products, convolutions and attention; 2 per multiply-add), keyed by ``str(T)``."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    # the CPU's fused attention kernel (GAF's global context on a CPU) has no formula in torch's table: the
    # attention's two products, as torch counts them on a GPU
    cpu_attention = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
                     lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)}
    flops = {}
    for T in lengths:
        model, cfg = build(config, T, torch.device("cpu"))
        x = torch.randn(1, cfg.dataset.input_dim, T)
        mask = torch.ones(1, T, dtype=torch.bool)
        with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter, torch.no_grad():
            model.predict(x, mask, pre_nms_top_k=cfg.eval.pre_nms_top_k, score_threshold=cfg.eval.score_threshold)
        flops[str(T)] = float(counter.get_total_flops())
    return sum(p.numel() for p in model.parameters()), flops


def peak_memory_mb(config: str, T: int, device: torch.device) -> float:
    if device.type == "cuda":
        model, cfg = build(config, T, device)
        x = torch.randn(1, cfg.dataset.input_dim, T, device=device)
        mask = torch.ones(1, T, dtype=torch.bool, device=device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run_once(model, cfg, x, mask)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    out = subprocess.run([sys.executable, __file__, "--child", str(T), "--config", config],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def child(config: str, T: int) -> None:
    torch.set_num_threads(2)
    model, cfg = build(config, T, torch.device("cpu"))
    x = torch.randn(1, cfg.dataset.input_dim, T)
    mask = torch.ones(1, T, dtype=torch.bool)
    run_once(model, cfg, x, mask)  # allocator warm-up
    before = reset_peak_rss()  # then the peak growth over the current RSS
    run_once(model, cfg, x, mask)
    print(json.dumps({"peak_mb": (status_kb("VmHWM") - before) / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default="thumos14_i3d_afsd")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.config, args.child)
        return
    torch.set_num_threads(2)
    device = torch.device(args.device)
    print(f"inference per video, config {args.config}, device {device}, torch threads {torch.get_num_threads()}")
    rows = []
    for T in LENGTHS:
        rows.append((T, time_length(args.config, T, device, args.repeats), peak_memory_mb(args.config, T, device)))
    base_T, base_t, _ = rows[0]
    print(f"{'T (steps)':>10} {'time (ms)':>10} {'T ratio':>8} {'time ratio':>11} {'ms/1k steps':>12} {'peak MB':>8}")
    for T, t, mem in rows:
        print(f"{T:>10} {t * 1e3:>10.1f} {T / base_T:>8.1f} {t / base_t:>11.2f} {t * 1e6 / T:>12.1f} {mem:>8.1f}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
