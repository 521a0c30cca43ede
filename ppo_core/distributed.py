"""Data-parallel training over torch.distributed processes, as ``torchrun`` starts them.

Each process (rank) collects its own rollouts from its own env copies; an update treats the union
of the ranks' batches as one global batch, so every rank takes the step a single process would take
on the concatenated data, and all ranks hold identical parameters after it:

- inside ``global_batch()`` a reduction over the batch (ppo_core/masked.py) spans every rank's
  batch: its value is the global one on every rank, and its gradient is this rank's share of the
  global gradient, so that summing gradients over ranks (``sum_gradients``) gives exactly the
  gradient of the global loss, also through whitening, means and ratios of means;
- decisions taken on statistics (PPO's target-KL stop, the β controllers, TRPO's line search) read
  those global values, so every rank decides the same;
- anything that happens on one rank only (evaluation, a non-finite reward from one rank's env)
  reaches the others through an explicit collective, so no rank waits for one that has stopped.

With one process (no ``WORLD_SIZE`` in the environment, or 1) every function here is the identity
and costs nothing: today's single-process numbers, bit for bit.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from ppo_core.errors import ConfigError, DistributedError

T = TypeVar("T")

TIMEOUT = datetime.timedelta(seconds=float(os.environ.get("PPO_CORE_DIST_TIMEOUT_S", 600)))
"""How long a collective waits for a rank that neither answers nor exits (an exited rank is noticed at once)."""

_reducing = False  # inside global_batch(): batch reductions span the ranks
_device = torch.device("cpu")  # where collectives' own tensors live (CUDA for NCCL)
_owned = False  # whether setup() joined the group (and teardown() leaves it)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process logs, evaluates and writes checkpoints and summaries (rank 0)."""
    return rank() == 0


def requested_world_size() -> int:
    """The number of processes the launcher started (``WORLD_SIZE``, set by torchrun), 1 without one."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={value!r} is not a number of processes") from None


def setup(device_name: str) -> str:
    """Join the process group torchrun describes (gloo for the CPU, NCCL for CUDA) unless it is joined
    already; returns the device name this rank trains on (``cuda:LOCAL_RANK`` for CUDA)."""
    global _device, _owned
    if requested_world_size() <= 1 or dist.is_initialized():
        return device_name
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device_name, _device = f"cuda:{local_rank}", torch.device("cuda", local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    _owned = True
    if rank() > 0:  # rank 0 tells the run's story once; the others speak only of trouble
        logging.getLogger().setLevel(logging.WARNING)
    return device_name


def teardown() -> None:
    """Leave the process group ``setup`` joined (one a caller joined itself is the caller's)."""
    global _owned
    if _owned and dist.is_initialized():
        dist.destroy_process_group()
    _owned = False


def _collective(call: Callable[[], T]) -> T:
    """Run a collective; a rank that stopped (or never answers within ``TIMEOUT``) becomes a
    ``DistributedError`` on every rank still running instead of a hang or a backend traceback."""
    try:
        return call()
    except (RuntimeError, dist.DistError) as error:  # DistBackendError, gloo's "Connection closed by peer"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DistributedError(f"rank {rank()} of {world_size()}: another process of this run stopped or "
                               f"stopped answering ({first_line}); stopping too") from None


# ----------------------------------------------------------------------------- global batch reductions
@contextlib.contextmanager
def global_batch() -> Iterator[None]:
    """Batch reductions in this block (ppo_core/masked.py) span every rank's batch."""
    global _reducing
    previous, _reducing = _reducing, world_size() > 1
    try:
        yield
    finally:
        _reducing = previous


def reducing() -> bool:
    return _reducing


def _summed(x: Tensor) -> Tensor:
    """Σ over the ranks of a detached copy of ``x``."""
    total = x.detach().clone()
    _collective(lambda: dist.all_reduce(total))
    return total


def _with_own_gradient(value: Tensor, x: Tensor, scale: float = 1.0) -> Tensor:
    """``value`` to the bit (x − x.detach() is 0), with the gradient of ``scale · x``: this rank's share."""
    return value + (x - x.detach()) * scale if x.requires_grad else value


def global_sum(x: Tensor) -> Tensor:
    """Σ of ``x`` over the ranks, whose gradient is that of this rank's own ``x``: summed over the
    ranks, the gradients are the gradient of the global sum. Outside ``global_batch()``: ``x``."""
    return _with_own_gradient(_summed(x), x) if _reducing else x


def global_sum_and_count(total: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """``global_sum`` of a partial sum and of the number of entries behind it, in one collective."""
    if not _reducing:
        return total, count
    both = _summed(torch.stack([total.detach(), count.to(total.dtype)]))  # (2, ...): counts exact below 2**24
    return _with_own_gradient(both[0], total), both[1]


def mean_over_ranks(x: Tensor) -> Tensor:
    """The mean over the ranks of a per-rank mean of equal-sized data (a pretraining batch's loss, a
    step's mean KL), on every rank; a gradient flows to this rank's own ``x``, as in ``global_sum``."""
    if world_size() == 1:
        return x
    return _with_own_gradient(_summed(x) / world_size(), x, 1.0 / world_size())


def all_true(flag: Tensor) -> bool:
    """Whether ``flag`` (a bool scalar) holds on every rank: one answer for a branch every rank takes."""
    if world_size() == 1:
        return bool(flag)
    value = flag.to(_device, torch.int32).reshape(1)
    _collective(lambda: dist.all_reduce(value, op=dist.ReduceOp.MIN))
    return bool(value)


def sum_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Sum the parameters' gradients over the ranks, in one collective on one flat buffer."""
    if world_size() == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])  # (P,)
    _collective(lambda: dist.all_reduce(flat))
    torch._foreach_copy_(grads, [chunk.view_as(g) for chunk, g in zip(flat.split([g.numel() for g in grads]), grads)])


def sum_over_ranks(v: Tensor) -> Tensor:
    """Σ over the ranks of a tensor without gradient (TRPO's policy gradient and Fisher-vector products)."""
    return v if world_size() == 1 else _summed(v)


def combine_moments(count: float, mean: Any, var: Any) -> tuple[float, Any, Any]:
    """(count, mean, population variance) of the union of every rank's batch, from each rank's own
    (NumPy float64 arrays; Chan et al. 1979, merged in rank order). With one process: the inputs."""
    if world_size() == 1:
        return count, mean, var
    parts = gather_to_all((count, mean, var))
    total_count, total_mean, total_m2 = parts[0][0], parts[0][1], parts[0][2] * parts[0][0]
    for n, m, v in parts[1:]:
        delta = m - total_mean
        combined = total_count + n
        total_mean = total_mean + delta * n / combined
        total_m2 = total_m2 + v * n + delta * delta * total_count * n / combined
        total_count = combined
    return total_count, total_mean, total_m2 / total_count


def combine_equal_moments(count: int, mean: Tensor, var: Tensor) -> tuple[int, Tensor, Tensor]:
    """``combine_moments`` for tensors of ranks with equal counts (every rank steps as many env copies),
    in two all-reduces on the tensors' device and no host sync: the union's mean is the mean of the
    means, its variance the mean of var_r + (mean_r − mean)²."""
    if world_size() == 1:
        return count, mean, var
    size = world_size()
    total_mean = sum_over_ranks(mean) / size
    total_var = sum_over_ranks(var + (mean - total_mean).square()) / size
    return count * size, total_mean, total_var


# ----------------------------------------------------------------------------- objects
def gather_to_all(value: T) -> list[T]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
    if world_size() == 1:
        return [value]
    gathered: list[Any] = [None] * world_size()
    _collective(lambda: dist.all_gather_object(gathered, value))
    return gathered


def gather_to_main(value: T) -> list[T] | None:
    """Every rank's ``value`` in rank order on rank 0; None elsewhere."""
    if world_size() == 1:
        return [value]
    gathered: list[Any] | None = [None] * world_size() if is_main() else None
    _collective(lambda: dist.gather_object(value, gathered, dst=0))
    return gathered


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (e.g. whether the evaluation rank 0 ran says stop)."""
    if world_size() == 1:
        return value
    box = [value]
    _collective(lambda: dist.broadcast_object_list(box, src=0))
    return box[0]


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers into every rank's copy of ``module``."""
    if world_size() == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        with torch.no_grad():
            _collective(lambda: dist.broadcast(tensor.data, src=0))


def stop_together(error: Exception | None) -> None:
    """Raise on every rank if any rank hit ``error`` (with that rank's message), so a rank whose env
    returned a non-finite reward does not leave the others waiting in the next collective."""
    if world_size() == 1:
        if error is not None:
            raise error
        return
    messages = gather_to_all(None if error is None else (type(error).__name__, str(error)))
    for source, message in enumerate(messages):
        if message is not None:
            kind, text = message
            raise _error_class(kind)(text if source == rank() else f"rank {source}: {text}") from None


def _error_class(name: str) -> type[Exception]:
    from ppo_core import errors

    return getattr(errors, name, RuntimeError)
