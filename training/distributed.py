"""Multi-process training with torchrun: process-group set-up and data sharding.

``torchrun --nproc_per_node N -m training.train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK;
NCCL is used on CUDA and gloo on the CPU (which is how the tests run it).
"""

from dataclasses import dataclass
import os

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def init_distributed(device_type: str) -> DistributedContext:
    """Join the process group when launched by torchrun; a no-op otherwise."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return DistributedContext()
    backend = 'nccl' if device_type == 'cuda' else 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                              local_rank=int(os.environ.get('LOCAL_RANK', '0')))


def shutdown_distributed(context: DistributedContext) -> None:
    """Leave the process group."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    """Wait for every process (no-op in single-process runs)."""
    if context.enabled:
        dist.barrier()


def epoch_permutation(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """Return the data order of an epoch: it depends on (seed, epoch) only, for resume."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_items, generator=generator)


def shard_for_rank(order: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Every ``world_size``-th index starting at ``rank`` (the tail is padded by wrapping)."""
    if not context.enabled:
        return order
    per_rank = -(-len(order) // context.world_size)
    padded = torch.cat([order, order[:per_rank * context.world_size - len(order)]])
    return padded[context.rank::context.world_size]
