"""Reductions over the entries a mask keeps: every loss and statistic of a batch whose steps carry
padding (a completion's tokens after EOS) goes through these, and a batch without padding passes
``mask=None`` and gets the plain reductions, the same numbers to the bit.

Inside ``ppo_core.distributed.global_batch()`` (an update of a data-parallel run) a reduction over
the batch dimension (dim 0, or all dims) spans every rank's batch: the mean of the concatenated
data, on every rank. Reductions within a sample (e.g. over a completion's tokens) stay local."""

import math

import torch
from torch import Tensor

from ppo_core.distributed import global_sum, global_sum_and_count, reducing

Dim = int | tuple[int, ...] | None


def _valid(x: Tensor, mask: Tensor) -> Tensor:
    """The mask as a bool tensor of x's shape (a broadcast view, no copy)."""
    return mask.bool().expand_as(x)


def _spans_ranks(x: Tensor, dim: Dim) -> bool:
    """Whether this reduction of x is over the batch of a data-parallel update."""
    if not reducing():
        return False
    dims = range(x.ndim) if dim is None else dim if isinstance(dim, tuple) else (dim,)
    return any(d % max(x.ndim, 1) == 0 for d in dims)


def _local_sum(x: Tensor, mask: Tensor | None, dim: Dim, keepdim: bool) -> Tensor:
    if mask is not None:
        x = torch.where(_valid(x, mask), x, 0.0)
    return x.sum(dim=dim, keepdim=keepdim)


def _count(x: Tensor, mask: Tensor | None, dim: Dim, keepdim: bool) -> Tensor:
    """The number of valid entries the reduction sees (mask None: all of them)."""
    ones = torch.ones((), dtype=torch.int64, device=x.device).expand_as(x) if mask is None else _valid(x, mask)
    return ones.sum(dim=dim, keepdim=keepdim)


def masked_sum(x: Tensor, mask: Tensor | None = None, dim: Dim = None, keepdim: bool = False) -> Tensor:
    """Sum of the entries of x where mask is 1/True; values at masked-out entries (even NaN) never leak."""
    total = _local_sum(x, mask, dim, keepdim)
    return global_sum(total) if _spans_ranks(x, dim) else total


def masked_mean(x: Tensor, mask: Tensor | None = None, dim: Dim = None, keepdim: bool = False) -> Tensor:
    """Mean of the entries of x where mask is 1/True; a slice with no valid entry gives 0, not NaN.
    Without a mask it is ``x.mean``, which on CPU is the same sum-then-divide as the masked path."""
    if _spans_ranks(x, dim):
        total, count = global_sum_and_count(_local_sum(x, mask, dim, keepdim), _count(x, mask, dim, keepdim))
        return total / count.clamp(min=1)
    if mask is None:
        return x.mean(dim=dim, keepdim=keepdim)
    valid = _valid(x, mask)
    count = valid.sum(dim=dim, keepdim=keepdim).clamp(min=1)
    return _local_sum(x, valid, dim, keepdim) / count


def masked_var(
    x: Tensor, mask: Tensor | None = None, dim: Dim = None, correction: int = 1, keepdim: bool = False
) -> Tensor:
    """Variance of the entries of x where mask is 1/True, with `correction` as in torch.var.

    The divisor (count - correction) is clamped to at least 1, so a slice with fewer valid entries than
    correction + 1 gives 0 rather than NaN. Without a mask it is the same two-pass arithmetic, so a mask
    that is all True and no mask give the same numbers to the bit.
    """
    if _spans_ranks(x, dim):
        x = x if mask is None else torch.where(_valid(x, mask), x, 0.0)
        total, count = global_sum_and_count(x.sum(dim=dim, keepdim=True), _count(x, mask, dim, keepdim=True))
        mean = total / count.clamp(min=1)
        centered = x - mean if mask is None else torch.where(_valid(x, mask), x - mean, 0.0)
        var = global_sum((centered**2).sum(dim=dim, keepdim=True)) / (count - correction).clamp(min=1)
        return var if keepdim else var.squeeze() if dim is None else var.squeeze(dim)
    if mask is None:
        dims = dim if isinstance(dim, tuple) else (dim,)
        count = x.numel() if dim is None else math.prod(x.shape[d] for d in dims)
        centered = x - x.sum(dim=dim, keepdim=True) / max(count, 1)
        divisor = max(count - correction, 1)
    else:
        valid = _valid(x, mask)
        x = torch.where(valid, x, 0.0)
        count = valid.sum(dim=dim, keepdim=True)
        mean = x.sum(dim=dim, keepdim=True) / count.clamp(min=1)
        centered = torch.where(valid, x - mean, 0.0)
        divisor = (count - correction).clamp(min=1)
    var = (centered**2).sum(dim=dim, keepdim=True) / divisor
    if keepdim:
        return var
    return var.squeeze() if dim is None else var.squeeze(dim)
