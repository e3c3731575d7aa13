"""Checks on the arrays handed to estimators: shapes, matching lengths, finite values.

Each problem becomes a one-line :class:`InputError` naming the array, so a mistake in a
sample folder is reported before any training time is spent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from minerflow.errors import InputError

__all__ = ["ArrayLike", "as_column", "as_matrix"]

ArrayLike = np.ndarray | str | os.PathLike[str]


def _load(array: ArrayLike, name: str, source: str) -> np.ndarray:
    if isinstance(array, str | os.PathLike):
        path = Path(array)
        if not path.is_file():
            raise InputError(path, name, "an existing .npy file")
        array = np.load(path)
    try:
        return np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(source, name, f"a numeric array ({error})") from None


def _check_finite(values: np.ndarray, name: str, source: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(source, name, f"finite values, found {int(bad.sum())} NaN/inf")


def as_matrix(
    array: ArrayLike,
    name: str,
    *,
    n_rows: int | None = None,
    n_columns: int | None = None,
    source: str = "input",
) -> np.ndarray:
    """A finite float64 ``(n_rows, n_columns)`` array; 1-D input counts as one column.

    >>> as_matrix([1.0, 2.0], "theta").shape
    (2, 1)
    """
    values = _load(array, name, source)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise InputError(source, name, f"a 2-D array, got shape {values.shape}")
    if n_rows is not None and values.shape[0] != n_rows:
        raise InputError(source, name, f"{n_rows} rows like x, got {values.shape[0]}")
    if n_columns is not None and values.shape[1] != n_columns:
        raise InputError(source, name, f"{n_columns} columns, got {values.shape[1]}")
    if values.shape[0] == 0:
        raise InputError(source, name, "at least one row")
    _check_finite(values, name, source)
    return values


def as_column(array: ArrayLike, name: str, *, n_rows: int, source: str = "input") -> np.ndarray:
    """A finite float64 vector of length ``n_rows`` (``(n,)`` or ``(n, 1)`` accepted)."""
    return as_matrix(array, name, n_rows=n_rows, n_columns=1, source=source)[:, 0]
