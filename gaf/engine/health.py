"""Attention health during training: λ against the ground truth, and what pulls on λ.

:class:`AttentionMonitor` is the ``monitor`` the detection engine hands to
:func:`gaf.engine.loop.fit`. It adds to each epoch's record (hence to
``history.json``, the log, TensorBoard and the report's curves):

* ``health/{train,test}_{action_mean,background_mean,auroc,low_fraction}``
  (:func:`gaf.metrics.attention.attention_health`), measured at the end of
  the epoch in eval mode on at most ``train.health_items`` windows of each
  split (evenly spread over the split, the same ones every epoch);
* ``grad_lambda/<term>``: the L2 norm of the gradient on λ of each weighted
  term of stage "segment" (``ai``, ``nai``, ``clf``, ``rep``; see
  :meth:`gaf.models.gaf_detector.GAFDetector.segment_terms`), over the batch's λ,
  sampled every ``train.grad_probe_every`` iterations and averaged over the
  epoch's samples.

A collapse shows as ``action_mean`` falling towards 0 with ``low_fraction``
towards 1; an attention that stopped separating actions from background as
``auroc`` near 0.5. The probes run on rank 0 only, outside the step (no
parameter gradient, global and per-sample RNG states restored), so a
monitored run takes exactly the steps of an unmonitored one.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from gaf.engine.evaluate import inference_batches
from gaf.metrics.attention import HEALTH_KEYS, attention_health
from gaf.models.gaf_detector import GAFDetector, batch_attention
from gaf.models.gaf import action_mask, step_attention
from gaf.models.noise import item_seed, sample_seeds

__all__ = ["AttentionMonitor", "measure_attention", "attention_gradients", "spread_indices"]


def spread_indices(n: int, k: int) -> list[int]:
    """At most ``k`` indices evenly spread over ``range(n)`` (all of them when ``n <= k``)."""
    if k <= 0 or n <= 0:
        return []
    if n <= k:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


@torch.no_grad()
def measure_attention(model: GAFDetector, dataset: torch.utils.data.Dataset, indices: Sequence[int], *,
                      collate: Callable[[list[dict[str, Any]]], dict[str, Any]], device: torch.device,
                      batch_size: int = 8) -> dict[str, float]:
    """:func:`~gaf.metrics.attention.attention_health` of ``model``'s λ on ``dataset[indices]`` (eval mode).

    Each item's ground-truth segments (steps) give its action mask; λ of
    channel attention is averaged over channels. The model's train/eval
    mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    lams, acts = [], []
    try:
        for chunk in inference_batches(dataset, indices, batch_size):  # whole long test videos: fewer per batch
            batch = collate([dataset[j] for j in chunk])
            attention = batch_attention(model, batch, device)
            if attention is None:
                return {}
            m = batch["mask"].numpy()
            t = action_mask(batch["segments"], m.shape[1]).numpy() > 0.5  # the step centres inside an instance
            lam = step_attention(attention).float().cpu().numpy()
            for b in range(lam.shape[0]):
                lams.append(lam[b][m[b]])
                acts.append(t[b][m[b]])
    finally:
        model.train(was_training)
    return attention_health(lams, acts)


def attention_gradients(model: torch.nn.Module, batch: dict[str, Any], progress: float, device: torch.device
                        ) -> dict[str, float]:
    """L2 norm of ∂(weighted term)/∂λ for each stage-"segment" term of ``batch`` (empty without GAF).

    Parameters get no gradient (``torch.autograd.grad`` on λ only).
    """
    core = getattr(model, "segment_terms", None)
    if core is None:
        return {}
    feats = batch["features"].to(device)
    mask = batch["mask"].to(device)
    segments = [s.to(device) for s in batch["segments"]]
    labels = [lab.to(device) for lab in batch["labels"]]
    with torch.enable_grad():
        _, weighted, lam = core(feats, mask, segments, labels, progress=progress)
        if lam is None or not lam.requires_grad:
            return {}
        out = {}
        names = list(weighted)
        for k, name in enumerate(names):
            term = weighted[name]
            if not term.requires_grad:
                out[name] = 0.0
                continue
            (g,) = torch.autograd.grad(term, lam, retain_graph=k < len(names) - 1, allow_unused=True)
            out[name] = float(g.norm()) if g is not None else 0.0
    return out


class AttentionMonitor:
    """Per-epoch attention health and sampled λ gradients for :func:`gaf.engine.loop.fit` (see module doc).

    ``datasets``: ``{"train": (dataset, collate), "test": (dataset, collate)}``
    (either may be missing). ``health_items`` windows per split (0: no
    health), ``grad_every`` iterations between gradient probes (0: none).
    """

    def __init__(self, model: torch.nn.Module, datasets: dict[str, tuple[Any, Callable]], *, device: torch.device,
                 health_items: int, grad_every: int, seed: int = 0) -> None:
        self.model = model
        self.datasets = datasets
        self.device = device
        self.health_items = health_items
        self.grad_every = grad_every
        self.seed = seed
        self._sums: dict[str, float] = {}
        self._count = 0

    def on_batch(self, stage: str, iteration: int, epoch: int, batch: dict[str, Any], progress: float) -> None:
        """Called after each training step; probes λ's gradients every ``grad_every`` iterations of "segment"."""
        if stage != "segment" or self.grad_every <= 0 or iteration % self.grad_every:
            return
        n = int(batch["features"].shape[0])
        seeds = [item_seed(self.seed, epoch, 99, iteration, b) for b in range(n)]
        with torch.random.fork_rng(devices=[]), sample_seeds(seeds):
            grads = attention_gradients(self.model, batch, progress, self.device)
        for name, value in grads.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._count += 1 if grads else 0

    def state_dict(self) -> dict[str, Any]:
        """The epoch's sampled gradient sums so far (kept in mid-epoch checkpoints)."""
        return {"sums": dict(self._sums), "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sums, self._count = dict(state["sums"]), int(state["count"])

    def on_epoch_end(self) -> dict[str, float]:
        """The epoch's ``health/...`` and ``grad_lambda/...`` entries (then the gradient sums restart)."""
        record: dict[str, float] = {}
        if self.health_items > 0:
            for split, (dataset, collate) in self.datasets.items():
                idx = spread_indices(len(dataset), self.health_items)
                health = measure_attention(self.model, dataset, idx, collate=collate, device=self.device)
                for key in HEALTH_KEYS:
                    if key in health:
                        record[f"health/{split}_{key}"] = round(health[key], 6)
        if self._count:
            for name, total in sorted(self._sums.items()):
                record[f"grad_lambda/{name}"] = total / self._count
        self._sums, self._count = {}, 0
        return record
