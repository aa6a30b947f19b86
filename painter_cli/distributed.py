"""Process-group set-up from the torchrun environment; a world of one takes the same code path.

``init()`` reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (set by torchrun), starts the process group
(nccl on CUDA, gloo on CPU) when the world has more than one process, and returns a ``DistInfo``.
The helpers below are no-ops (or identities) without a process group.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def init(device: str = "auto") -> DistInfo:
    """Join the torchrun process group (if any) and pick this process's device.

    ``device``: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        from painter_cli.errors import PainterError

        raise PainterError("run.device is cuda but no CUDA device is available")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        log.debug("process group %s: rank %d of %d", backend, rank, world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor | float:
    """The mean over ranks of a tensor (returns a new tensor) or of a float (returns a float)."""
    if not is_dist():
        return value
    is_float = not isinstance(value, torch.Tensor)
    t = torch.tensor(float(value), dtype=torch.float64) if is_float else value.detach().clone()
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t = t / dist.get_world_size()
    return float(t.item()) if is_float else t


def broadcast_object(obj):
    """``obj`` from rank 0 on every rank."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
