"""A 1-D Gaussian model with a latent variable, whose ratio and score are known exactly.

z ~ N(θ, 1) and x ~ N(z, σ²), so p(x|θ) = N(θ, 1 + σ²). Against θ_ref = 0:
log r(x|θ) = (θx - θ²/2) / (1 + σ²) and t(x|θ) = (x - θ) / (1 + σ²), while the joint
quantities r(x,z) = exp(θz - θ²/2) and t(x,z) = z - θ differ event by event (as in physics).
"""

from __future__ import annotations

import numpy as np

SMEAR = 0.5
VARIANCE = 1.0 + SMEAR**2


def log_r(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Exact log p(x|θ)/p(x|0) (broadcasting)."""
    return (theta * x - 0.5 * theta**2) / VARIANCE


def score(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Exact ∂/∂θ log p(x|θ)."""
    return (x - theta) / VARIANCE


def ratio_sample(
    n: int, rng: np.random.Generator, theta_range: float = 1.0
) -> dict[str, np.ndarray]:
    """A ratio sample: half from θ ~ U(±theta_range) (y=0), half from θ_ref = 0 (y=1)."""
    theta = rng.uniform(-theta_range, theta_range, size=n)
    y = (np.arange(n) % 2).astype(float)
    z = rng.normal(np.where(y == 0, theta, 0.0), 1.0)
    x = rng.normal(z, SMEAR)
    return {
        "x": x[:, None],
        "y": y,
        "theta": theta[:, None],
        "r_xz": np.exp(theta * z - 0.5 * theta**2),
        "t_xz": (z - theta)[:, None],
    }


def local_sample(n: int, rng: np.random.Generator, theta: float = 0.0) -> dict[str, np.ndarray]:
    """A local sample at θ: x and the joint score t(x,z|θ)."""
    z = rng.normal(theta, 1.0, size=n)
    x = rng.normal(z, SMEAR)
    return {"x": x[:, None], "t_xz": (z - theta)[:, None]}
