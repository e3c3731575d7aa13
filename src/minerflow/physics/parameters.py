"""Parameter-point specs of ``input.yml``: which θ a sample is drawn at.

A spec is one of five frozen records (a named benchmark, several benchmarks, one or several
explicit morphing points, random points from a prior per parameter). :func:`resolve_thetas`
turns a spec into a ``(n_sets, n_p)`` array using an event file's header, and
:func:`spec_from_mapping` parses the YAML form (``sampling_method`` + arguments).

Decisions where MadMiner is lenient: ``sampling_number`` ≤ 0 or missing is an error (MadMiner
silently uses one point per sample); asking for more points than samples is an error.
Morphing points outside a parameter's ``val_range`` are allowed, since morphing is exact for
any θ, but warn (:class:`ThetaOutsideRangeWarning`): far outside the range the morphing weights
grow and the event weights become noisy.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from minerflow.errors import InputError

if TYPE_CHECKING:
    from minerflow.io.madminer_file import EventFileHeader

__all__ = [
    "SAMPLING_METHODS",
    "Benchmark",
    "Benchmarks",
    "MorphingPoint",
    "MorphingPoints",
    "Prior",
    "RandomMorphingPoints",
    "ThetaOutsideRangeWarning",
    "ThetaSpec",
    "n_samples_per_set",
    "n_sets",
    "resolve_thetas",
    "spec_from_mapping",
]

_SPEC = "theta spec"
_PRIOR_SHAPES = ("gaussian", "flat")


class ThetaOutsideRangeWarning(UserWarning):
    """A parameter point lies outside the header's ``val_range`` of a parameter."""


def _is_number(value: Any) -> bool:
    """A finite real number (numpy scalars included, booleans excluded)."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(value)
    )


def _is_list(values: Any) -> bool:
    return isinstance(values, Sequence | np.ndarray) and not isinstance(values, str | bytes)


def _check_prior(shape: Any, p0: Any, p1: Any, source: str, key: str) -> None:
    if shape not in _PRIOR_SHAPES:
        raise InputError(source, key, f"prior_shape 'gaussian' or 'flat', got {shape!r}")
    for name, value in (("prior_param_0", p0), ("prior_param_1", p1)):
        if not _is_number(value):
            raise InputError(source, f"{key}.{name}", f"a finite number, got {value!r}")
    if shape == "gaussian" and not p1 > 0:
        raise InputError(source, key, f"a gaussian prior with std prior_param_1 > 0, got {p1}")
    if shape == "flat" and not p0 < p1:
        raise InputError(source, key, f"a flat prior with min < max, got [{p0}, {p1}]")


def _check_point(values: Any, source: str, key: str, n_parameters: int | None) -> None:
    if not _is_list(values) or np.ndim(values) != 1:
        raise InputError(source, key, f"a list of numbers, got {values!r}")
    if not all(_is_number(value) for value in values):
        raise InputError(source, key, f"finite numbers, got {list(values)!r}")
    if n_parameters is not None and len(values) != n_parameters:
        raise InputError(
            source, key, f"{n_parameters} values (one per parameter), got {len(values)}"
        )
    if len(values) == 0:
        raise InputError(source, key, "at least one value")


def _check_names(names: Any, source: str, key: str) -> None:
    if not _is_list(names) or len(names) == 0:
        raise InputError(source, key, f"a non-empty list of benchmark names, got {names!r}")
    if not all(isinstance(n, str) and n for n in names):
        raise InputError(source, key, f"benchmark names as strings, got {list(names)!r}")


@dataclass(frozen=True)
class Prior:
    """Prior of one parameter: ``gaussian`` (p0 = mean, p1 = std > 0) or ``flat`` (min, max)."""

    shape: Literal["gaussian", "flat"]
    p0: float
    p1: float

    def __post_init__(self) -> None:
        _check_prior(self.shape, self.p0, self.p1, _SPEC, "prior")

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws from this prior."""
        if self.shape == "gaussian":
            return rng.normal(self.p0, self.p1, size=n)
        return rng.uniform(self.p0, self.p1, size=n)


@dataclass(frozen=True)
class Benchmark:
    """The θ of one named benchmark of the event file (e.g. ``sm``)."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(_SPEC, "sampling_arg", f"a benchmark name, got {self.name!r}")


@dataclass(frozen=True)
class Benchmarks:
    """The θ of several named benchmarks, one set each."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_names(self.names, _SPEC, "sampling_arg")
        object.__setattr__(self, "names", tuple(self.names))


@dataclass(frozen=True)
class MorphingPoint:
    """One explicit parameter point (needs morphing unless it is a benchmark)."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_point(self.values, _SPEC, "sampling_arg", None)
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))


@dataclass(frozen=True)
class MorphingPoints:
    """Several explicit parameter points, one set each."""

    values: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if not _is_list(self.values) or len(self.values) == 0:
            raise InputError(
                _SPEC, "sampling_arg", f"a non-empty list of points, got {self.values!r}"
            )
        for i, point in enumerate(self.values):
            _check_point(point, _SPEC, f"sampling_arg[{i}]", len(self.values[0]))
        object.__setattr__(
            self, "values", tuple(tuple(float(v) for v in point) for point in self.values)
        )


@dataclass(frozen=True)
class RandomMorphingPoints:
    """``n`` points drawn afresh from ``priors`` (one per parameter) at each resolution."""

    n: int
    priors: tuple[Prior, ...]

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise InputError(_SPEC, "sampling_number", f"a positive integer, got {self.n!r}")
        if not self.priors or not all(isinstance(p, Prior) for p in self.priors):
            raise InputError(_SPEC, "prior", f"a non-empty list of priors, got {self.priors!r}")
        object.__setattr__(self, "priors", tuple(self.priors))


ThetaSpec = Benchmark | Benchmarks | MorphingPoint | MorphingPoints | RandomMorphingPoints


def n_sets(spec: ThetaSpec) -> int:
    """Number of parameter points (sets) a spec resolves to."""
    if isinstance(spec, Benchmark | MorphingPoint):
        return 1
    if isinstance(spec, Benchmarks):
        return len(spec.names)
    if isinstance(spec, MorphingPoints):
        return len(spec.values)
    if isinstance(spec, RandomMorphingPoints):
        return spec.n
    raise InputError(_SPEC, None, f"a parameter-point spec, got {type(spec).__name__}")


def n_samples_per_set(spec: ThetaSpec, n_samples: int) -> np.ndarray:
    """Samples to draw at each point: ``n_samples`` split as evenly as possible.

    The first ``n_samples mod n_sets`` points get one more, so the counts sum to exactly
    ``n_samples`` (MadMiner rounds ``n / n_sets`` per point and may miss the total).
    """
    count = n_sets(spec)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
        raise InputError(_SPEC, "n_samples", f"an integer, got {n_samples!r}")
    if n_samples < count:
        raise InputError(
            _SPEC,
            "n_samples",
            f"at least {count} samples for {count} parameter points, got {n_samples}",
        )
    base, extra = divmod(int(n_samples), count)
    counts = np.full(count, base, dtype=np.int64)
    counts[:extra] += 1
    return counts


def resolve_thetas(
    spec: ThetaSpec,
    header: EventFileHeader,
    n_samples: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The parameter points of ``spec`` as a ``(n_sets, n_p)`` float64 array.

    Benchmark names map to the header's values (only physics benchmarks have a θ); random
    points are drawn from the priors with ``rng`` (required for them, so results are
    reproducible). With ``n_samples`` given, a spec with more points than samples is an error.
    """
    n_p = header.n_parameters
    if n_samples is not None:
        n_samples_per_set(spec, n_samples)
    if isinstance(spec, Benchmark | Benchmarks):
        names = (spec.name,) if isinstance(spec, Benchmark) else spec.names
        physics = header.physics_benchmark_names
        for name in names:
            if name not in physics:
                known = ", ".join(physics)
                raise InputError(
                    header.source,
                    "benchmarks/names",
                    f"a physics benchmark ({known}); got {name!r}",
                )
        return np.array(
            [header.benchmark_values[header.benchmark_index(n)] for n in names], dtype=np.float64
        )
    if isinstance(spec, MorphingPoint | MorphingPoints):
        points = (spec.values,) if isinstance(spec, MorphingPoint) else spec.values
        if len(points[0]) != n_p:
            raise InputError(
                header.source,
                "parameters/names",
                f"morphing points with {n_p} values ({', '.join(header.parameter_names)}), "
                f"got {len(points[0])}",
            )
        thetas = np.array(points, dtype=np.float64)
        _warn_outside_range(thetas, header)
        return thetas
    if isinstance(spec, RandomMorphingPoints):
        if len(spec.priors) != n_p:
            raise InputError(
                header.source,
                "parameters/names",
                f"{n_p} priors (one per parameter: {', '.join(header.parameter_names)}), "
                f"got {len(spec.priors)}",
            )
        if rng is None:
            raise InputError(_SPEC, "random_morphing_points", "a random generator (seed)")
        thetas = np.column_stack([prior.draw(spec.n, rng) for prior in spec.priors])
        _warn_outside_range(thetas, header)
        return thetas.astype(np.float64)
    raise InputError(_SPEC, None, f"a parameter-point spec, got {type(spec).__name__}")


def _warn_outside_range(thetas: np.ndarray, header: EventFileHeader) -> None:
    ranges = np.array([p.val_range for p in header.parameters], dtype=np.float64)
    outside = (thetas < ranges[:, 0]) | (thetas > ranges[:, 1])
    if outside.any():
        p = int(np.flatnonzero(outside.any(axis=0))[0])
        warnings.warn(
            f"{int(outside.any(axis=1).sum())} of {len(thetas)} parameter points lie outside "
            f"the morphing range of {header.parameters[p].name} "
            f"[{ranges[p, 0]:g}, {ranges[p, 1]:g}]: "
            "morphed weights there have large variance",
            ThetaOutsideRangeWarning,
            stacklevel=3,
        )


SAMPLING_METHODS = (
    "benchmark",
    "benchmarks",
    "morphing_point",
    "morphing_points",
    "random_morphing_points",
)
_ALLOWED_KEYS = {
    "benchmark": {"sampling_method", "sampling_arg"},
    "benchmarks": {"sampling_method", "sampling_arg"},
    "morphing_point": {"sampling_method", "sampling_arg"},
    "morphing_points": {"sampling_method", "sampling_arg"},
    "random_morphing_points": {"sampling_method", "sampling_number", "prior"},
}


def spec_from_mapping(
    mapping: Mapping[str, Any], n_parameters: int, source: str, key: str
) -> ThetaSpec:
    """Parse one θ spec in its ``input.yml`` form (e.g. the value of ``alice.theta_0``).

    ``{"sampling_method": "benchmark", "sampling_arg": "sm"}``; ``benchmarks`` with a list of
    names; ``morphing_point`` with a list of ``n_parameters`` floats; ``morphing_points`` with a
    list of such lists; ``random_morphing_points`` with ``sampling_number`` and ``prior``, a
    list with one ``{"parameter_<i>": {"prior_shape", "prior_param_0", "prior_param_1"}}`` per
    parameter, in parameter order. Errors name ``source`` and the key path below ``key``.
    """
    if not isinstance(mapping, Mapping):
        raise InputError(source, key, f"a mapping with sampling_method, got {mapping!r}")
    method = mapping.get("sampling_method")
    if method not in SAMPLING_METHODS:
        raise InputError(
            source,
            f"{key}.sampling_method",
            f"one of {', '.join(SAMPLING_METHODS)}; got {method!r}",
        )
    unknown = sorted(set(mapping) - _ALLOWED_KEYS[method])
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED_KEYS[method]))
        raise InputError(source, f"{key}.{unknown[0]}", f"only {allowed} for {method}")
    if method == "random_morphing_points":
        return _random_from_mapping(mapping, n_parameters, source, key)
    if "sampling_arg" not in mapping:
        raise InputError(source, f"{key}.sampling_arg", f"an argument for {method} (missing)")
    arg = mapping["sampling_arg"]
    arg_key = f"{key}.sampling_arg"
    if method == "benchmark":
        if not isinstance(arg, str) or not arg:
            raise InputError(source, arg_key, f"a benchmark name, got {arg!r}")
        return Benchmark(arg)
    if method == "benchmarks":
        _check_names(arg, source, arg_key)
        return Benchmarks(tuple(arg))
    if method == "morphing_point":
        _check_point(arg, source, arg_key, n_parameters)
        return MorphingPoint(tuple(arg))
    if not _is_list(arg) or len(arg) == 0:
        raise InputError(source, arg_key, f"a non-empty list of points, got {arg!r}")
    for i, point in enumerate(arg):
        _check_point(point, source, f"{arg_key}[{i}]", n_parameters)
    return MorphingPoints(tuple(tuple(p) for p in arg))


def _random_from_mapping(
    mapping: Mapping[str, Any], n_parameters: int, source: str, key: str
) -> RandomMorphingPoints:
    number = mapping.get("sampling_number")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InputError(source, f"{key}.sampling_number", f"a positive integer, got {number!r}")
    priors = mapping.get("prior")
    if not _is_list(priors):
        raise InputError(source, f"{key}.prior", f"a list of {n_parameters} priors, got {priors!r}")
    if len(priors) != n_parameters:
        raise InputError(
            source,
            f"{key}.prior",
            f"{n_parameters} priors (one per parameter), got {len(priors)}",
        )
    parsed = []
    for i, entry in enumerate(priors):
        entry_key = f"{key}.prior[{i}]"
        name = f"parameter_{i}"
        if not isinstance(entry, Mapping) or list(entry) != [name]:
            keys = list(entry) if isinstance(entry, Mapping) else entry
            raise InputError(
                source, entry_key, f"a mapping with the single key {name}, got {keys!r}"
            )
        body = entry[name]
        body_key = f"{entry_key}.{name}"
        fields = ("prior_shape", "prior_param_0", "prior_param_1")
        if not isinstance(body, Mapping) or sorted(body) != sorted(fields):
            keys = sorted(body) if isinstance(body, Mapping) else body
            raise InputError(
                source, body_key, f"exactly the keys {', '.join(fields)}, got {keys!r}"
            )
        shape, p0, p1 = (body[f] for f in fields)
        _check_prior(shape, p0, p1, source, body_key)
        parsed.append(Prior(shape, float(p0), float(p1)))
    return RandomMorphingPoints(number, tuple(parsed))
