"""One replica of data-parallel training (`aql train --workers N`).

Every replica draws the same global batch (the sampler's generator is seeded alike everywhere) and learns from
its own contiguous 1/N of it; before each optimiser step the gradients are averaged over the replicas. Since
every loss is a mean over rows, each step is the single-process step on the whole global batch, up to the
rounding of the sum. Replica 0, the leader, writes the run folder, evaluates and saves the checkpoints (ordinary
ones: they load without Ray or torch.distributed); the others only compute.

torch.distributed is started by whoever starts the processes: Ray Train's TorchTrainer in
`aql_agent.distributed.train_parallel` (gloo on CPUs, NCCL on GPUs). Nothing here imports Ray.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from aql_agent.learners import Batch, Learner

LEADER = 0


class Replica:
    """This process's place among `world_size` replicas, and the collective operations training needs."""

    def __init__(self, rank: int, world_size: int, device: str = "cpu"):
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)

    @property
    def leader(self) -> bool:
        return self.rank == LEADER

    def shard(self, batch: Batch) -> Batch:
        """This replica's contiguous part of the global batch."""
        size = len(batch.observations) // self.world_size
        part = slice(self.rank * size, (self.rank + 1) * size)
        return Batch(*(None if field is None else field[part] for field in batch))

    def attach(self, learner: Learner) -> None:
        """Average gradients over the replicas before every step of every optimiser of `learner`."""
        for optimizer in learner.optimizers.values():
            optimizer.register_step_pre_hook(self._average_gradients)

    def _average_gradients(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:  # the same on every replica: they run the same graph
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # one collective call per step, not one per tensor
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def mean_metrics(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """Per-step metric sums of every replica -> their mean over steps and replicas (the global batch's)."""
        names = list(sums)  # the same learner everywhere: the same names in the same order
        values = torch.tensor([sums[name] for name in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return {name: float(value) / (count * self.world_size) for name, value in zip(names, values.tolist())}

    def share(self, state: dict[str, Any] | None) -> dict[str, Any]:
        """The leader's `state` (tensors and plain values) on every replica. Sent as `torch.save` bytes and read
        back with `weights_only=True`: no pickle between the processes."""
        data = torch.zeros(0, dtype=torch.uint8)
        if self.leader:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            data = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        dist.broadcast(size, LEADER)
        payload = data.to(self.device) if self.leader else torch.empty(int(size), dtype=torch.uint8, device=self.device)
        dist.broadcast(payload, LEADER)
        return torch.load(io.BytesIO(payload.cpu().numpy().tobytes()), weights_only=True)

    def reseed(self, seed: int, start: int) -> None:
        """Give every replica but the leader its own torch random stream (noise in the learners' updates would
        otherwise repeat across the parts of the batch); derived from (seed, rank, start step)."""
        if not self.leader:
            torch.manual_seed(int(np.random.SeedSequence([seed, self.rank, start]).generate_state(1)[0]))
