"""Turn a flat list of parameter points on a rectangular grid into plottable 2-D arrays.

Limits and rates come as ``thetas`` of shape ``(n_grid, 2)`` (MadMiner flattens
``meshgrid(..., indexing="ij")``, first parameter slowest) with one value per point. Plots need
the two axes and a ``(n_y, n_x)`` array; this module rebuilds them for any point order.
"""

from __future__ import annotations

import numpy as np

from minerflow.errors import InputError

__all__ = ["grid_image"]


def grid_image(
    thetas: np.ndarray, values: np.ndarray, *, source: str = "grid"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_axis, y_axis, image)`` with ``image[j, i]`` the value at ``(x_i, y_j)``.

    ``thetas`` must fill a rectangular grid exactly once per point, in any order.

    >>> x, y, z = grid_image(np.array([[0, 0], [0, 1], [2, 0], [2, 1.0]]), np.arange(4.0))
    >>> x.tolist(), y.tolist(), z.tolist()
    ([0.0, 2.0], [0.0, 1.0], [[0.0, 2.0], [1.0, 3.0]])
    """
    thetas = np.asarray(thetas, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if thetas.ndim != 2 or thetas.shape[1] != 2:
        raise InputError(source, "thetas", f"shape (n_grid, 2), got {thetas.shape}")
    if values.shape != (thetas.shape[0],):
        raise InputError(source, "values", f"shape ({thetas.shape[0]},), got {values.shape}")
    x_axis, x_index = np.unique(thetas[:, 0], return_inverse=True)
    y_axis, y_index = np.unique(thetas[:, 1], return_inverse=True)
    if x_axis.size * y_axis.size != thetas.shape[0]:
        raise InputError(
            source,
            "thetas",
            f"a full rectangular grid, got {thetas.shape[0]} points on "
            f"{x_axis.size}×{y_axis.size} distinct values",
        )
    flat = y_index * x_axis.size + x_index
    if np.unique(flat).size != flat.size:
        raise InputError(source, "thetas", "each grid point exactly once")
    image = np.empty(x_axis.size * y_axis.size)
    image[flat] = values
    return x_axis, y_axis, image.reshape(y_axis.size, x_axis.size)
