"""Input standardisation, fitted on the training sample and stored with the model.

Networks train best on inputs of order one; the means and standard deviations are part of
the model, so evaluation applies exactly the transformation used in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Standardizer"]


@dataclass(frozen=True)
class Standardizer:
    """``z = (v - means) / stds`` per column; a constant column gets ``std = 1``.

    >>> s = Standardizer.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> s.means.tolist(), s.stds.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    """

    means: np.ndarray
    stds: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        """Fit to the columns of a ``(n, d)`` array."""
        values = np.asarray(values, dtype=np.float64)
        stds = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(stds > 1e-12, stds, 1.0))

    @classmethod
    def identity(cls, n_columns: int) -> Standardizer:
        """No scaling (used for models saved without scaling information)."""
        return cls(np.zeros(n_columns), np.ones(n_columns))

    @property
    def n_columns(self) -> int:
        """Number of columns this transformation applies to."""
        return int(self.means.shape[0])

    def transform(self, values: torch.Tensor) -> torch.Tensor:
        """Standardise a tensor (on its own device and dtype)."""
        means = torch.as_tensor(self.means, dtype=values.dtype, device=values.device)
        stds = torch.as_tensor(self.stds, dtype=values.dtype, device=values.device)
        return (values - means) / stds

    def stds_tensor(self, like: torch.Tensor) -> torch.Tensor:
        """The standard deviations as a tensor matching ``like`` (for chain-rule factors)."""
        return torch.as_tensor(self.stds, dtype=like.dtype, device=like.device)
