"""The optimisation step's machinery: the EMA's multi-tensor update, fused Adam, the one-thread update."""

from __future__ import annotations

import torch
from torch import nn

from gaf.engine.experiment import TrainConfig
from gaf.engine.optim import EMA, Optimization, one_cpu_thread


def test_ema_update_is_decay_times_shadow_plus_the_rest_times_the_value_and_copies_integers():
    model = nn.BatchNorm1d(3)  # floating weights and buffers, and an integer buffer (num_batches_tracked)
    ema = EMA(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        model.weight.add_(1.0)
        model.num_batches_tracked.add_(5)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], 0.9 * before["weight"] + 0.1 * model.weight.detach())
    torch.testing.assert_close(ema.shadow["bias"], before["bias"])
    assert int(ema.shadow["num_batches_tracked"]) == 5


def test_one_cpu_thread_runs_the_block_on_one_thread_and_restores_the_count():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_cpu_thread(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        try:
            with one_cpu_thread(torch.device("cpu")):
                raise RuntimeError("inside")
        except RuntimeError:
            pass
        assert torch.get_num_threads() == 2  # restored when the block raises too
        with one_cpu_thread(torch.device("cuda")):  # another device: nothing changes (no GPU needed)
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_fused_adam_steps_as_the_textbook_adam():
    """Optimization's Adam (fused kernels) gives Adam's update with L2 weight decay (hand-computed first step)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    model.stage_parameters = lambda stage: list(model.parameters())  # what Optimization asks of a GAF model
    cfg = TrainConfig(lr=0.1, weight_decay=0.01, warmup_epochs=0, schedule="constant", ema=False)
    optim = Optimization(model, ["segment"], cfg, iters_per_epoch=1)
    assert all(group["fused"] for group in optim.optimizers["segment"].param_groups)
    w0 = model.weight.detach().clone()
    model.weight.grad = torch.full_like(w0, 0.5)
    model.bias.grad = torch.zeros_like(model.bias)
    optim.step("segment")
    g = 0.5 + 0.01 * w0  # L2 decay folded into the gradient
    m, v = 0.1 * g, 0.001 * g * g  # first moments, beta1 0.9 / beta2 0.999
    expected = w0 - 0.1 * (m / 0.1) / ((v / 0.001).sqrt() + 1e-8)
    torch.testing.assert_close(model.weight.detach(), expected, atol=1e-6, rtol=1e-5)
