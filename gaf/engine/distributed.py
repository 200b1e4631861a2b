"""Multi-process runs under ``torchrun``: process group, device per rank, sharding, gathering.

``torchrun --nproc_per_node N -m gaf train|eval|extract ...`` starts N
processes with ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` /
``MASTER_ADDR`` / ``MASTER_PORT`` in their environment. :func:`init_distributed`
reads them (a plain ``gaf ...`` has none and runs as one process), joins
the process group (NCCL when the run uses CUDA, gloo on CPU) and picks the
rank's device (``cuda:LOCAL_RANK``). Everything else in gaf asks the
returned :class:`DistContext`:

* training (:mod:`gaf.engine.loop`): each global batch of
  ``train.batch_size`` items is split over the ranks
  (:meth:`DistContext.split`), gradients are averaged by
  ``DistributedDataParallel``, and loss normalisers (positives, valid steps,
  samples) are summed over ranks (:func:`gaf.losses.loss_normalizer`), so N
  processes compute the same update as one process with the whole batch;
* rank 0 alone logs to the console and the work dir, shows progress bars and
  writes checkpoints, predictions and reports;
* evaluation and extraction shard whole videos over ranks
  (:meth:`DistContext.shard`) and gather the results on rank 0
  (:meth:`DistContext.gather`).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist

from gaf.engine.runtime import select_device
from gaf.errors import ConfigError

__all__ = ["DistContext", "init_distributed", "shutdown_distributed", "env_world_size"]

T = TypeVar("T")


def env_world_size() -> int:
    """``WORLD_SIZE`` of the environment (1 outside ``torchrun``)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r}: expected an integer (set by torchrun)") from None


@dataclass
class DistContext:
    """Where this process stands in the run: ``rank`` of ``world_size``, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True when several processes take part (a process group is up)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``world_size``-th one from ``rank`` on."""
        return list(items[self.rank::self.world_size])

    def split(self, batch: Sequence[T]) -> list[T]:
        """This rank's contiguous part of a global ``batch`` (sizes differ by at most one)."""
        n, w = len(batch), self.world_size
        lo = self.rank * n // w
        hi = (self.rank + 1) * n // w
        return list(batch[lo:hi])

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` (picklable), in rank order, on rank 0; None on the others."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of ``values`` over ranks (a new tensor; ``values`` itself when alone)."""
        if not self.enabled:
            return values
        out = values.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


_CONTEXT: DistContext | None = None


def init_distributed(device: str = "auto", *, timeout_s: float = 1800.0) -> DistContext:
    """The run's :class:`DistContext`, joining the process group on the first call under ``torchrun``.

    ``device``: ``auto`` / ``cpu`` / ``cuda`` (``cuda:N`` is refused with
    several processes: each rank takes ``cuda:LOCAL_RANK``). Calling it again
    returns the same context.
    """
    global _CONTEXT
    world = env_world_size()
    if world == 1:
        return DistContext(device=select_device(device))
    if _CONTEXT is not None:
        return _CONTEXT
    try:
        local_rank = int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    except (KeyError, ValueError):
        raise ConfigError("WORLD_SIZE > 1 but RANK / LOCAL_RANK are missing: launch with torchrun") from None
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if ":" in device:
            raise ConfigError(f"device {device!r}: with {world} processes each rank uses cuda:LOCAL_RANK; "
                              "pass device cuda or auto")
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: CUDA is not available on this machine (use cpu or auto)")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank}: this node has {torch.cuda.device_count()} GPU(s); "
                              "start at most that many processes per node (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        dev = select_device("cpu" if device == "auto" else device)
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": dev} if backend == "nccl" else {}))
    _CONTEXT = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                           device=dev)
    return _CONTEXT


def shutdown_distributed(*, wait: bool = True) -> None:
    """Leave the process group (after every rank got here when ``wait``); a no-op without one."""
    global _CONTEXT
    _CONTEXT = None
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
