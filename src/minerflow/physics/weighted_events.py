"""Weighted Monte-Carlo events whose weights at any θ come from morphing, with nuisance effects.

These are the inputs of the limits (:mod:`minerflow.physics.limits`) and the Fisher
information (:mod:`minerflow.physics.fisher`): an event's weight at θ is
``dσ_i(θ) = Σ_b w_b(θ) w_i,b`` (morphing weights ``w_b(θ)``, benchmark weights ``w_i,b``), and
nuisance parameters ν rescale it by ``exp(Σ_j a_ij ν_j + b_ij ν_j²)`` (MadMiner's nuisance
morphing, arXiv:1907.10621, sec. 3.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from minerflow.errors import InputError

if TYPE_CHECKING:
    from minerflow.io.madminer_file import EventFile, EventFileHeader
    from minerflow.physics.sampling import Partition

__all__ = ["MorphedEvents", "Morphing", "NuisanceEffects", "select_columns"]

# Errors keep the source of the limits code these events were written for.
_SOURCE = "limits"


class Morphing(Protocol):
    """Anything that gives morphing weights and their θ-gradients (e.g. ``Morpher``)."""

    def weights(self, thetas: np.ndarray) -> np.ndarray: ...

    def weight_gradients(self, thetas: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class NuisanceEffects:
    """Per-event effect of nuisance parameters ν on the weights (MadMiner's nuisance morphing).

    ``dσ_i(θ, ν) = dσ_i(θ) · exp(Σ_j a_ij ν_j + b_ij ν_j²)``: ``linear`` holds a, ``quadratic``
    holds b, both ``(n_events, n_nuisance)``. Each ν_j has a Gaussian constraint N(0, 1).
    """

    names: tuple[str, ...]
    linear: np.ndarray
    quadratic: np.ndarray

    def __post_init__(self) -> None:
        shape = (self.linear.shape[0], len(self.names))
        if self.linear.shape != shape or self.quadratic.shape != shape:
            raise InputError(_SOURCE, "nuisance", f"coefficients of shape {shape}")

    @classmethod
    def from_weights(
        cls,
        names: Sequence[str],
        reference: np.ndarray,
        positive: np.ndarray,
        negative: np.ndarray,
    ) -> NuisanceEffects:
        """Coefficients from weights at ν_j = 0 (``reference``, (n,)), +1 and −1 ((n, n_ν)).

        With both shifts ``a = ½ log(w₊/w₋)``, ``b = ½ log(w₊w₋/w₀²)`` (the exponent through
        the three points); where a column of ``negative`` is NaN, ``a = log(w₊/w₀)``, ``b = 0``.
        Undefined values (zero weights) become 0 and all are clipped to [−10, 10].
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.log(positive / reference[:, None])
            down = np.log(negative / reference[:, None])
            two_sided = ~np.isnan(negative).all(axis=0)
            linear = np.where(two_sided, 0.5 * (up - down), up)
            quadratic = np.where(two_sided, 0.5 * (up + down), 0.0)
        clean = [np.clip(np.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0), -10, 10)
                 for c in (linear, quadratic)]  # fmt: skip
        return cls(tuple(names), clean[0], clean[1])

    def log_factors(self, nu: np.ndarray) -> np.ndarray:
        """``Σ_j a_ij ν_kj + b_ij ν_kj²`` for every ν row and event: ``(n_nu, n_events)``."""
        nu = np.atleast_2d(nu)
        return nu @ self.linear.T + (nu**2) @ self.quadratic.T


@dataclass(frozen=True, eq=False)
class MorphedEvents:
    """Weighted Monte-Carlo events whose weight at any θ comes from morphing.

    ``benchmark_weights`` are already corrected (k-factors, partition fraction), so that
    ``Σ_i dσ_i(θ)`` estimates the total cross section σ(θ) in pb.
    """

    observations: np.ndarray
    benchmark_weights: np.ndarray
    morpher: Morphing
    observable_names: tuple[str, ...] = ()
    nuisance: NuisanceEffects | None = None

    def __post_init__(self) -> None:
        x, w = self.observations, self.benchmark_weights
        if x.ndim != 2 or w.ndim != 2 or len(x) != len(w):
            raise InputError(_SOURCE, "events", f"(n, n_x) and (n, n_b), got {x.shape}, {w.shape}")
        if self.observable_names and len(self.observable_names) != x.shape[1]:
            raise InputError(_SOURCE, "observable_names", f"{x.shape[1]} names")
        if self.nuisance is not None and len(self.nuisance.linear) != len(x):
            raise InputError(_SOURCE, "nuisance", f"coefficients for {len(x)} events")

    @classmethod
    def from_event_file(
        cls, event_file: EventFile, partition: Partition | None = None
    ) -> MorphedEvents:
        """The events of ``partition`` (default: all), weights × k-factors × correction factor.

        With partitions that tile the file (:func:`minerflow.physics.sampling.partitions`), the
        test partition gives both the Asimov data and σ(θ), the training partition the templates.
        """
        from minerflow.io.madminer_file import k_factors

        header = event_file.header
        start, stop = (0, event_file.n_events)
        factor = 1.0
        if partition is not None:
            start, stop, factor = partition.start, partition.stop, partition.correction_factor
        weights = event_file.weights(start, stop, include_nuisance=bool(header.nuisance_parameters))
        ids = event_file.sampling_benchmarks(start, stop)
        weights *= (factor * k_factors(header, ids))[:, None]
        n_phys = header.n_physics_benchmarks
        return cls(
            observations=event_file.observations(start, stop),
            benchmark_weights=weights[:, :n_phys],
            morpher=header.morpher(),
            observable_names=tuple(header.observable_names),
            nuisance=_file_nuisance(header, weights) if header.nuisance_parameters else None,
        )

    def __len__(self) -> int:
        return len(self.observations)

    def weights(self, thetas: np.ndarray) -> np.ndarray:
        """Event weights ``dσ_i(θ)``: ``(n_theta, n_events)``."""
        return self.morpher.weights(np.atleast_2d(thetas)) @ self.benchmark_weights.T

    def weight_gradients(self, thetas: np.ndarray) -> np.ndarray:
        """``∇_θ dσ_i(θ)``: ``(n_theta, n_p, n_events)``."""
        return self.morpher.weight_gradients(np.atleast_2d(thetas)) @ self.benchmark_weights.T

    def cross_sections(self, thetas: np.ndarray) -> np.ndarray:
        """``σ(θ) = Σ_i dσ_i(θ)`` without forming per-event weights: ``(n_theta,)``."""
        return self.morpher.weights(np.atleast_2d(thetas)) @ self.benchmark_weights.sum(axis=0)

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The observables called ``names``, ``(n_events, len(names))``."""
        return select_columns(self.observations, self.observable_names, names)


def select_columns(x: np.ndarray, known: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """The columns of ``x`` (observables called ``known``) named ``names``, in that order."""
    index = []
    for name in names:
        if name not in known:
            raise InputError(_SOURCE, "observables", f"one of {list(known)}, got {name!r}")
        index.append(list(known).index(name))
    return x[:, index]


def _file_nuisance(header: EventFileHeader, weights: np.ndarray) -> NuisanceEffects:
    """Nuisance coefficients from a file's nuisance benchmarks (weights at the reference θ)."""
    reference = weights[:, header.reference_benchmark_index or 0]
    nps = header.nuisance_parameters
    positive = np.column_stack(
        [weights[:, header.benchmark_index(n.benchmark_positive)] for n in nps]
    )
    negative = np.column_stack([
        weights[:, header.benchmark_index(n.benchmark_negative)]
        if n.benchmark_negative is not None else np.full(len(weights), np.nan)
        for n in nps
    ])  # fmt: skip
    return NuisanceEffects.from_weights([n.name for n in nps], reference, positive, negative)
