"""Memory-bounded evaluation over (θ, event) pairs, shared by the conditional estimators.

Evaluating an estimator on every combination of ``n_theta`` parameter points and ``n_x``
events touches ``n_theta · n_x`` rows; doing that in one tensor would need memory
proportional to the grid. :func:`evaluation_blocks` cuts the work into blocks of at most
``rows`` rows (a few MB for the usual networks) and says where each block's values go in the
``(n_theta, n_x)`` output, or the ``(n_x,)`` output when θ rows are paired with events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from minerflow.errors import InputError
from minerflow.ml.base import EVALUATION_ROWS

__all__ = ["Block", "block_rows", "check_pairing", "evaluation_blocks"]


@dataclass(frozen=True)
class Block:
    """One block: the events ``x`` and θ rows ``theta`` it covers, and its output index."""

    x: slice
    theta: slice
    out: tuple[slice, ...]
    paired: bool

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the block's values: ``(n_theta_block, n_x_block)`` or ``(n_x_block,)``."""
        n_x = self.x.stop - self.x.start
        return (n_x,) if self.paired else (self.theta.stop - self.theta.start, n_x)


def check_pairing(n_theta: int, n_x: int, key: str) -> None:
    """Paired evaluation needs one θ row per event, or a single θ row for all events."""
    if n_theta not in (1, n_x):
        raise InputError("evaluation", key, f"1 or {n_x} rows (one per event), got {n_theta}")


def evaluation_blocks(
    n_x: int, n_theta: int, paired: bool, rows: int = EVALUATION_ROWS
) -> Iterator[Block]:
    """Blocks covering all (θ, x) combinations, or the paired rows, ``rows`` at a time.

    >>> [b.shape for b in evaluation_blocks(n_x=3, n_theta=5, paired=False, rows=6)]
    [(2, 3), (2, 3), (1, 3)]
    """
    if paired:
        for start in range(0, n_x, rows):
            x = slice(start, min(start + rows, n_x))
            yield Block(x, x if n_theta > 1 else slice(0, 1), (x,), True)
        return
    x_rows = max(1, min(n_x, rows))
    t_rows = max(1, rows // x_rows)
    for x_start in range(0, n_x, x_rows):
        x = slice(x_start, min(x_start + x_rows, n_x))
        for t_start in range(0, n_theta, t_rows):
            theta = slice(t_start, min(t_start + t_rows, n_theta))
            yield Block(x, theta, (theta, x), False)


def block_rows(
    block: Block, x: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-aligned ``(x, θ)`` tensors of a block, θ-major for a grid block.

    Row ``i · n_x_block + j`` of a grid block pairs θ row ``i`` with event ``j``, so the
    values reshape to :attr:`Block.shape`.
    """
    xs, thetas = x[block.x], theta[block.theta]
    if block.paired:
        return xs, thetas.expand(len(xs), -1)
    return xs.repeat(len(thetas), 1), thetas.repeat_interleave(len(xs), dim=0)
