"""MadMiner HDF5 event files: read lazily (header now, events in slices), write atomically.

The layout is MadMiner's (``parameters``, ``benchmarks``, ``morphing``, ``observables``,
``samples``, ``sample_summary`` and the optional ``systematics``, ``nuisance_parameters``,
``finite_differences`` groups; strings are fixed-width ASCII ``S256``), so files from a
MadGraph/Pythia/Delphes workflow load unchanged and files we write load in MadMiner.
Per-event arrays can be far larger than memory, so :class:`EventFile` reads only the header
when opened and then exactly the rows a step asks for, each checked for non-finite values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from minerflow.errors import InputError
from minerflow.io.atomic import atomic_path

if TYPE_CHECKING:
    from minerflow.physics.morphing import Morpher

__all__ = [
    "EventChunk",
    "EventFile",
    "EventFileHeader",
    "FiniteDifferences",
    "NuisanceParameter",
    "Parameter",
    "Systematic",
    "k_factors",
    "read_event_file",
    "write_event_file",
]

_NONE = "None"  # MadMiner's placeholder for "no value" in string datasets
_STRING_DTYPE = "S256"
_ABSENT = ("doesn't exist", "component not found")
_KINDS = {
    "SOU": "strings",
    "iu": "integers",
    "iub": "integers or booleans",
    "fiu": "numbers",
    "f": "a float",
}


@dataclass(frozen=True)
class Parameter:
    """A theory parameter θ_p and where it lives in the MadGraph param card."""

    name: str
    lha_block: str
    lha_id: int
    max_power: int
    val_range: tuple[float, float]
    transform: str | None


@dataclass(frozen=True)
class Systematic:
    """One entry of the ``systematics`` group: a normalisation, scale or PDF uncertainty."""

    name: str
    type: str
    value: str
    scale: str | None


@dataclass(frozen=True)
class NuisanceParameter:
    """One nuisance parameter ν: its systematic and the benchmarks at ν = +1 (and −1)."""

    name: str
    systematic: str
    benchmark_positive: str
    benchmark_negative: str | None


@dataclass(frozen=True)
class FiniteDifferences:
    """Benchmarks shifted by ``epsilon`` in each parameter, for gradients without morphing."""

    base_benchmarks: tuple[str, ...]
    shifted_benchmarks: tuple[tuple[str, ...], ...]  # (n_base, n_p)
    epsilon: float


def _frozen(array: np.ndarray | None, dtype: Any) -> np.ndarray | None:
    if array is None:
        return None
    out = np.array(array, dtype=dtype)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class EventFileHeader:
    """Everything in an event file except the per-event arrays (small, read eagerly).

    Physics benchmarks come first; nuisance benchmarks (``is_nuisance``) are extra weight
    columns after them, as MadMiner writes them. ``morphing_matrix`` maps components to the
    physics benchmarks: ``w_b(θ) = Σ_k M[k,b] c_k(θ)``. ``source`` names the file in errors.
    """

    parameters: tuple[Parameter, ...]
    benchmark_names: tuple[str, ...]
    benchmark_values: np.ndarray
    benchmark_is_nuisance: np.ndarray
    benchmark_is_reference: np.ndarray
    morphing_components: np.ndarray | None
    morphing_matrix: np.ndarray | None
    observable_names: tuple[str, ...]
    observable_definitions: tuple[str | None, ...]
    signal_events: np.ndarray | None
    background_events: int
    n_events: int
    systematics: tuple[Systematic, ...] = ()
    nuisance_parameters: tuple[NuisanceParameter, ...] = ()
    finite_differences: FiniteDifferences | None = None
    source: str = field(default="event file header", compare=False)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "benchmark_values", _frozen(self.benchmark_values, np.float64))
        setattr_(self, "benchmark_is_nuisance", _frozen(self.benchmark_is_nuisance, bool))
        setattr_(self, "benchmark_is_reference", _frozen(self.benchmark_is_reference, bool))
        setattr_(self, "morphing_components", _frozen(self.morphing_components, np.int64))
        setattr_(self, "morphing_matrix", _frozen(self.morphing_matrix, np.float64))
        setattr_(self, "signal_events", _frozen(self.signal_events, np.int64))
        self._check()

    def _fail(self, key: str, expected: str) -> InputError:
        return InputError(self.source, key, expected)

    def _check(self) -> None:
        """Raise InputError unless every header array agrees with every other one."""
        n_p, n_b = len(self.parameters), len(self.benchmark_names)
        if n_p == 0:
            raise self._fail("parameters/names", "at least one parameter")
        if self.benchmark_values.shape != (n_b, n_p):
            raise self._fail(
                "benchmarks/values",
                f"shape ({n_b}, {n_p}) (benchmarks x parameters), "
                f"got {self.benchmark_values.shape}",
            )
        for key, flags in (
            ("benchmarks/is_nuisance", self.benchmark_is_nuisance),
            ("benchmarks/is_reference", self.benchmark_is_reference),
        ):
            if flags.shape != (n_b,):
                raise self._fail(key, f"shape ({n_b},) (one per benchmark), got {flags.shape}")
        n_phys = self.n_physics_benchmarks
        if n_phys == 0 or self.benchmark_is_nuisance[:n_phys].any():
            raise self._fail(
                "benchmarks/is_nuisance",
                "physics benchmarks first and nuisance benchmarks after them",
            )
        if self.benchmark_is_reference.sum() > 1:
            raise self._fail("benchmarks/is_reference", "at most one reference benchmark")
        if len(set(self.benchmark_names)) != n_b:
            raise self._fail("benchmarks/names", "unique benchmark names")
        if (self.morphing_components is None) != (self.morphing_matrix is None):
            raise self._fail("morphing", "both components and morphing_matrix, or neither")
        if self.morphing_components is not None and self.morphing_matrix is not None:
            n_c = self.morphing_components.shape[0]
            if self.morphing_components.ndim != 2 or self.morphing_components.shape[1] != n_p:
                raise self._fail(
                    "morphing/components",
                    f"shape (n_components, {n_p}), got {self.morphing_components.shape}",
                )
            if self.morphing_matrix.shape != (n_c, n_phys):
                raise self._fail(
                    "morphing/morphing_matrix",
                    f"shape ({n_c}, {n_phys}) (components x physics benchmarks), "
                    f"got {self.morphing_matrix.shape}",
                )
        if len(self.observable_definitions) != len(self.observable_names):
            raise self._fail(
                "observables/definitions",
                f"{len(self.observable_names)} definitions (one per observable name), "
                f"got {len(self.observable_definitions)}",
            )
        if self.signal_events is not None and self.signal_events.shape not in ((n_phys,), (n_b,)):
            raise self._fail(
                "sample_summary/signal_events",
                f"shape ({n_phys},) (one per benchmark), got {self.signal_events.shape}",
            )
        if self.n_events < 0 or self.background_events < 0:
            raise self._fail("sample_summary/background_events", "a non-negative event count")

    @property
    def n_parameters(self) -> int:
        """Number of theory parameters θ."""
        return len(self.parameters)

    @property
    def n_benchmarks(self) -> int:
        """Number of weight columns (physics and nuisance benchmarks)."""
        return len(self.benchmark_names)

    @property
    def n_physics_benchmarks(self) -> int:
        """Number of physics benchmarks: the weight columns that morphing combines."""
        return int((~self.benchmark_is_nuisance).sum())

    @property
    def n_observables(self) -> int:
        """Number of observables (columns of ``x``)."""
        return len(self.observable_names)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the theory parameters, in column order of θ."""
        return tuple(p.name for p in self.parameters)

    @property
    def physics_benchmark_names(self) -> tuple[str, ...]:
        """Names of the physics benchmarks, in weight-column order."""
        return self.benchmark_names[: self.n_physics_benchmarks]

    @property
    def has_morphing(self) -> bool:
        """Whether weights at arbitrary θ are available (the file has a morphing group)."""
        return self.morphing_matrix is not None

    def benchmark_index(self, name: str) -> int:
        """Weight-column index of the benchmark ``name``; InputError lists the known names."""
        try:
            return self.benchmark_names.index(name)
        except ValueError:
            known = ", ".join(self.benchmark_names)
            raise self._fail("benchmarks/names", f"one of {known}; got {name!r}") from None

    @property
    def reference_benchmark_index(self) -> int | None:
        """Index of the benchmark flagged ``is_reference`` (MadMiner's SM), or None."""
        flagged = np.flatnonzero(self.benchmark_is_reference)
        return int(flagged[0]) if flagged.size else None

    def morpher(self) -> Morpher:
        """The :class:`~minerflow.physics.morphing.Morpher` of this file's morphing group."""
        from minerflow.physics.morphing import Morpher

        if self.morphing_components is None or self.morphing_matrix is None:
            raise self._fail("morphing", "a morphing group (components, morphing_matrix)")
        return Morpher(self.morphing_components, self.morphing_matrix)


@dataclass(frozen=True, eq=False)
class EventChunk:
    """Rows ``[start, stop)`` of the per-event arrays."""

    start: int
    stop: int
    observations: np.ndarray
    weights: np.ndarray
    sampling_benchmarks: np.ndarray

    def __len__(self) -> int:
        return self.stop - self.start


def _open(path: Path) -> h5py.File:
    """Open ``path`` read-only, turning every failure into a one-line InputError."""
    if not path.exists():
        raise InputError(path, None, "an existing MadMiner event file (no such file)")
    if not path.is_file():
        raise InputError(path, None, "a MadMiner HDF5 file, found a directory")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as exc:
        raise InputError(path, None, f"a readable HDF5 file ({_reason(exc)})") from None
    if not is_hdf5:
        raise InputError(path, None, "an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(
            path, None, f"a complete HDF5 file (truncated or corrupt: {_reason(exc)})"
        ) from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc.args[0] if exc.args else exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


class _Reader:
    """Header datasets of one open file, with errors that name the file and dataset."""

    def __init__(self, handle: h5py.File, path: Path) -> None:
        self.handle = handle
        self.path = path

    def _lookup(self, key: str, kind: type, what: str, required: bool) -> Any:
        try:
            obj = self.handle[key]
        except KeyError as exc:
            # h5py reports damaged metadata as KeyError too; only these texts mean "absent"
            if not any(text in str(exc) for text in _ABSENT):
                raise InputError(self.path, key, f"{what} (corrupt file: {_reason(exc)})") from None
            if required:
                raise InputError(self.path, key, f"{what} (missing)") from None
            return None
        except (OSError, RuntimeError) as exc:
            raise InputError(self.path, key, f"{what} (corrupt file: {_reason(exc)})") from None
        if not isinstance(obj, kind):
            found = "a group" if isinstance(obj, h5py.Group) else "a dataset"
            raise InputError(self.path, key, f"{what}, found {found}")
        return obj

    def group(self, name: str, required: bool = True) -> h5py.Group | None:
        return self._lookup(name, h5py.Group, "an HDF5 group", required)

    def dataset(self, key: str, required: bool = True) -> h5py.Dataset | None:
        return self._lookup(key, h5py.Dataset, "a dataset", required)

    def array(self, key: str, kind: str, ndim: int) -> np.ndarray:
        ds = self.dataset(key)
        assert ds is not None
        if ds.dtype.kind not in kind:
            raise InputError(self.path, key, f"{_KINDS[kind]}, got dtype {ds.dtype}")
        if ds.ndim != ndim:
            raise InputError(self.path, key, f"a {ndim}-d dataset, got shape {ds.shape}")
        try:
            return np.asarray(ds[()])
        except (OSError, RuntimeError) as exc:
            raise InputError(self.path, key, f"readable data ({_reason(exc)})") from None

    def optional_array(self, key: str, kind: str, ndim: int) -> np.ndarray | None:
        return None if self.dataset(key, required=False) is None else self.array(key, kind, ndim)

    def strings(self, key: str, ndim: int = 1) -> np.ndarray:
        raw = self.array(key, "SOU", ndim)
        try:
            return np.vectorize(_decode, otypes=[object])(raw) if raw.size else raw.astype(object)
        except UnicodeDecodeError:
            raise InputError(self.path, key, "ASCII strings") from None


def _decode(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _optional(text: str) -> str | None:
    return None if text == _NONE else text


def _read_header(reader: _Reader) -> EventFileHeader:
    path = reader.path
    for name in ("parameters", "benchmarks", "observables", "samples"):
        reader.group(name)
    names = reader.strings("parameters/names")
    n_p = len(names)

    def per_parameter(key: str, kind: str, ndim: int = 1) -> np.ndarray:
        values = reader.strings(key) if kind == "S" else reader.array(key, kind, ndim)
        expected = (n_p, 2) if ndim == 2 else (n_p,)
        if values.shape != expected:
            raise InputError(path, key, f"shape {expected} (one per parameter), got {values.shape}")
        return values

    parameters = tuple(
        Parameter(
            name=str(name),
            lha_block=str(block),
            lha_id=int(lha_id),
            max_power=int(power),
            val_range=(float(rng[0]), float(rng[1])),
            transform=_optional(str(transform)),
        )
        for name, block, lha_id, power, rng, transform in zip(
            names,
            per_parameter("parameters/lha_blocks", "S"),
            per_parameter("parameters/lha_ids", "iu"),
            per_parameter("parameters/max_power", "iu"),
            per_parameter("parameters/val_ranges", "fiu", 2),
            per_parameter("parameters/transforms", "S"),
            strict=True,
        )
    )

    bench_names = tuple(str(n) for n in reader.strings("benchmarks/names"))
    n_b = len(bench_names)
    flags = {}
    for key in ("benchmarks/is_nuisance", "benchmarks/is_reference"):
        values = reader.optional_array(key, "iub", 1)
        flags[key] = np.zeros(n_b, dtype=bool) if values is None else values.astype(bool)

    morphing = reader.group("morphing", required=False)
    components = matrix = None
    if morphing is not None:
        components = reader.array("morphing/components", "iu", 2)
        matrix = reader.array("morphing/morphing_matrix", "fiu", 2)

    obs_names = tuple(str(n) for n in reader.strings("observables/names"))
    definitions = tuple(_optional(str(d)) for d in reader.strings("observables/definitions"))

    signal_events = None
    background_events = 0
    if reader.group("sample_summary", required=False) is not None:
        signal_events = reader.optional_array("sample_summary/signal_events", "iu", 1)
        background = reader.optional_array("sample_summary/background_events", "iu", 0)
        background_events = 0 if background is None else int(background)

    header = EventFileHeader(
        parameters=parameters,
        benchmark_names=bench_names,
        benchmark_values=reader.array("benchmarks/values", "fiu", 2),
        benchmark_is_nuisance=flags["benchmarks/is_nuisance"],
        benchmark_is_reference=flags["benchmarks/is_reference"],
        morphing_components=components,
        morphing_matrix=matrix,
        observable_names=obs_names,
        observable_definitions=definitions,
        signal_events=signal_events,
        background_events=background_events,
        n_events=_check_sample_shapes(reader, n_b, len(obs_names)),
        systematics=_read_systematics(reader),
        nuisance_parameters=_read_nuisance_parameters(reader),
        finite_differences=_read_finite_differences(reader),
        source=str(path),
    )
    return header


def _check_sample_shapes(reader: _Reader, n_benchmarks: int, n_observables: int) -> int:
    """Check the per-event datasets' shapes and dtypes (no data read); return N."""
    path = reader.path
    weights = reader.dataset("samples/weights")
    observations = reader.dataset("samples/observations")
    sampling = reader.dataset("samples/sampling_benchmarks")
    assert weights is not None and observations is not None and sampling is not None
    for key, ds in (("samples/weights", weights), ("samples/observations", observations)):
        if ds.ndim != 2 or ds.dtype.kind not in "fiu":
            raise InputError(path, key, f"a 2-d numeric dataset, got {ds.dtype} {ds.shape}")
    n_events = weights.shape[0]
    if weights.shape[1] != n_benchmarks:
        raise InputError(
            path,
            "samples/weights",
            f"{n_benchmarks} columns (one per benchmark in benchmarks/names), "
            f"got shape {weights.shape}",
        )
    if observations.shape[0] != n_events:
        raise InputError(
            path,
            "samples/observations",
            f"{n_events} rows (as samples/weights), got shape {observations.shape}",
        )
    if observations.shape[1] != n_observables:
        raise InputError(
            path,
            "samples/observations",
            f"{n_observables} columns (one per name in observables/names), "
            f"got shape {observations.shape}",
        )
    if sampling.shape != (n_events,) or sampling.dtype.kind not in "iu":
        raise InputError(
            path,
            "samples/sampling_benchmarks",
            f"{n_events} integers (one per event), got {sampling.dtype} {sampling.shape}",
        )
    return int(n_events)


def _read_systematics(reader: _Reader) -> tuple[Systematic, ...]:
    if reader.group("systematics", required=False) is None:
        return ()
    cols = [reader.strings(f"systematics/{k}") for k in ("names", "types", "values", "scales")]
    _same_length(reader.path, "systematics", cols)
    return tuple(
        Systematic(name=n, type=t, value=v, scale=_optional(s))
        for n, t, v, s in zip(*cols, strict=True)
    )


def _read_nuisance_parameters(reader: _Reader) -> tuple[NuisanceParameter, ...]:
    if reader.group("nuisance_parameters", required=False) is None:
        return ()
    keys = ("names", "systematics", "benchmark_positive", "benchmark_negative")
    cols = [reader.strings(f"nuisance_parameters/{k}") for k in keys]
    _same_length(reader.path, "nuisance_parameters", cols)
    return tuple(
        NuisanceParameter(
            name=n, systematic=s, benchmark_positive=p, benchmark_negative=_optional(m)
        )
        for n, s, p, m in zip(*cols, strict=True)
    )


def _read_finite_differences(reader: _Reader) -> FiniteDifferences | None:
    if reader.group("finite_differences", required=False) is None:
        return None
    base = reader.strings("finite_differences/base_benchmarks")
    shifted = reader.strings("finite_differences/shifted_benchmarks", ndim=2)
    if shifted.shape[0] != base.shape[0]:
        raise InputError(
            reader.path,
            "finite_differences/shifted_benchmarks",
            f"{base.shape[0]} rows (one per base benchmark), got shape {shifted.shape}",
        )
    epsilon = reader.array("finite_differences/epsilon", "f", 0)
    return FiniteDifferences(
        base_benchmarks=tuple(base.tolist()),
        shifted_benchmarks=tuple(tuple(row) for row in shifted.tolist()),
        epsilon=float(epsilon),
    )


def _same_length(path: Path, group: str, columns: Sequence[np.ndarray]) -> None:
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise InputError(path, group, f"datasets of equal length, got lengths {sorted(lengths)}")


class EventFile:
    """A MadMiner event file opened lazily: the header at once, events only when asked.

    Each accessor opens the file, reads the requested rows with an HDF5 partial read and
    closes it again, so an ``EventFile`` is cheap to pass to worker processes. Weights of the
    physics benchmarks are returned by default (what morphing combines); pass
    ``include_nuisance=True`` for every column. Rows with NaN or ±inf raise InputError naming
    the row range; negative weights (NLO) are legal and returned as they are.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with _open(self.path) as handle:
            try:
                self.header = _read_header(_Reader(handle, self.path))
            except (OSError, RuntimeError) as exc:
                raise InputError(
                    self.path, None, f"a readable HDF5 file (corrupt: {_reason(exc)})"
                ) from None

    def __repr__(self) -> str:
        return f"EventFile({str(self.path)!r}, n_events={self.header.n_events})"

    @property
    def n_events(self) -> int:
        """Number of events (rows of the per-event arrays)."""
        return self.header.n_events

    def _bounds(self, start: int, stop: int | None) -> tuple[int, int]:
        n = self.header.n_events
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise InputError(
                self.path, "samples", f"a row range within [0, {n}], got [{start}, {stop})"
            )
        return int(start), int(stop)

    def observations(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Observables ``x`` of rows ``[start, stop)``: ``(n, n_x)`` float64."""
        start, stop = self._bounds(start, stop)
        with _open(self.path) as handle:
            return self._observations(handle, start, stop)

    def weights(
        self, start: int = 0, stop: int | None = None, *, include_nuisance: bool = False
    ) -> np.ndarray:
        """Benchmark weights of rows ``[start, stop)``: ``(n, n_b_phys)`` (or all columns)."""
        start, stop = self._bounds(start, stop)
        with _open(self.path) as handle:
            return self._weights(handle, start, stop, include_nuisance)

    def sampling_benchmarks(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Index of the benchmark each event was generated at, ``-1`` = background: ``(n,)``."""
        start, stop = self._bounds(start, stop)
        with _open(self.path) as handle:
            return self._sampling_benchmarks(handle, start, stop)

    def iter_chunks(
        self,
        chunk_size: int = 100_000,
        start: int = 0,
        stop: int | None = None,
        *,
        include_nuisance: bool = False,
    ) -> Iterator[EventChunk]:
        """Consecutive chunks of at most ``chunk_size`` rows covering ``[start, stop)``."""
        if chunk_size < 1:
            raise InputError(self.path, "chunk_size", f"a positive integer, got {chunk_size}")
        start, stop = self._bounds(start, stop)
        with _open(self.path) as handle:
            for lo in range(start, stop, chunk_size):
                hi = min(lo + chunk_size, stop)
                yield EventChunk(
                    start=lo,
                    stop=hi,
                    observations=self._observations(handle, lo, hi),
                    weights=self._weights(handle, lo, hi, include_nuisance),
                    sampling_benchmarks=self._sampling_benchmarks(handle, lo, hi),
                )

    def _slice(self, handle: h5py.File, key: str, start: int, stop: int, cols: int | None) -> Any:
        dataset = handle[key]
        try:
            return dataset[start:stop] if cols is None else dataset[start:stop, :cols]
        except (OSError, RuntimeError) as exc:
            raise InputError(
                self.path, key, f"readable rows {start}-{stop} (corrupt: {_reason(exc)})"
            ) from None

    def _finite(self, key: str, values: np.ndarray, start: int, stop: int) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1)) + start
            raise InputError(
                self.path,
                key,
                f"finite values in rows {start}-{stop}, found {int(bad.sum())} NaN/inf "
                f"in {rows.size} rows (first at row {int(rows[0])})",
            )
        return values

    def _observations(self, handle: h5py.File, start: int, stop: int) -> np.ndarray:
        raw = self._slice(handle, "samples/observations", start, stop, None)
        return self._finite("samples/observations", raw, start, stop)

    def _weights(
        self, handle: h5py.File, start: int, stop: int, include_nuisance: bool
    ) -> np.ndarray:
        cols = None if include_nuisance else self.header.n_physics_benchmarks
        raw = self._slice(handle, "samples/weights", start, stop, cols)
        return self._finite("samples/weights", raw, start, stop)

    def _sampling_benchmarks(self, handle: h5py.File, start: int, stop: int) -> np.ndarray:
        key = "samples/sampling_benchmarks"
        ids = np.asarray(self._slice(handle, key, start, stop, None), dtype=np.int64)
        n_phys = self.header.n_physics_benchmarks
        if ids.size and (ids.min() < -1 or ids.max() >= n_phys):
            raise InputError(
                self.path,
                key,
                f"benchmark indices in [-1, {n_phys - 1}] in rows {start}-{stop}, "
                f"got values from {int(ids.min())} to {int(ids.max())}",
            )
        return ids


def read_event_file(path: str | os.PathLike[str]) -> EventFile:
    """Open a MadMiner event file: read and check its header, leave the events on disk."""
    return EventFile(path)


def _encode(values: Sequence[str | None], source: str, key: str) -> np.ndarray:
    """Strings as MadMiner's fixed-width ASCII ``S256`` (None becomes the text ``None``)."""
    out = []
    for value in values:
        text = _NONE if value is None else str(value)
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise InputError(source, key, f"ASCII text, got {text!r}") from None
        if len(raw) > 256:
            raise InputError(source, key, f"at most 256 characters, got {len(raw)}")
        out.append(raw)
    return np.array(out, dtype=_STRING_DTYPE).reshape(np.shape(values) if values else (0,))


def _header_datasets(header: EventFileHeader, source: str) -> dict[str, np.ndarray]:
    """Every header dataset by its HDF5 path, with MadMiner's dtypes."""
    params = header.parameters
    data: dict[str, np.ndarray] = {
        "parameters/names": _encode([p.name for p in params], source, "parameters/names"),
        "parameters/lha_blocks": _encode([p.lha_block for p in params], source, "lha_blocks"),
        "parameters/lha_ids": np.array([p.lha_id for p in params], dtype=np.int64),
        "parameters/max_power": np.array([p.max_power for p in params], dtype=np.int64),
        "parameters/transforms": _encode([p.transform for p in params], source, "transforms"),
        "parameters/val_ranges": np.array([p.val_range for p in params], dtype=np.float64),
        "benchmarks/names": _encode(header.benchmark_names, source, "benchmarks/names"),
        "benchmarks/values": np.asarray(header.benchmark_values, dtype=np.float64),
        "benchmarks/is_nuisance": header.benchmark_is_nuisance.astype(np.int64),
        "benchmarks/is_reference": header.benchmark_is_reference.astype(np.int64),
        "observables/names": _encode(header.observable_names, source, "observables/names"),
        "observables/definitions": _encode(
            header.observable_definitions, source, "observables/definitions"
        ),
    }
    if header.morphing_components is not None and header.morphing_matrix is not None:
        data["morphing/components"] = header.morphing_components
        data["morphing/morphing_matrix"] = header.morphing_matrix
    if header.signal_events is not None:
        data["sample_summary/signal_events"] = header.signal_events
        data["sample_summary/background_events"] = np.array(header.background_events, np.int64)
    if header.systematics:
        for key, attr in (("names", "name"), ("types", "type"), ("values", "value")):
            data[f"systematics/{key}"] = _encode(
                [getattr(s, attr) for s in header.systematics], source, f"systematics/{key}"
            )
        data["systematics/scales"] = _encode(
            [s.scale for s in header.systematics], source, "systematics/scales"
        )
    if header.nuisance_parameters:
        nps = header.nuisance_parameters
        for key, attr in (
            ("names", "name"),
            ("systematics", "systematic"),
            ("benchmark_positive", "benchmark_positive"),
            ("benchmark_negative", "benchmark_negative"),
        ):
            data[f"nuisance_parameters/{key}"] = _encode(
                [getattr(n, attr) for n in nps], source, f"nuisance_parameters/{key}"
            )
    if header.finite_differences is not None:
        fd = header.finite_differences
        data["finite_differences/base_benchmarks"] = _encode(
            fd.base_benchmarks, source, "finite_differences/base_benchmarks"
        )
        shifted = _encode(
            [name for row in fd.shifted_benchmarks for name in row],
            source,
            "finite_differences/shifted_benchmarks",
        )
        data["finite_differences/shifted_benchmarks"] = shifted.reshape(
            len(fd.shifted_benchmarks), -1
        )
        data["finite_differences/epsilon"] = np.array(fd.epsilon, dtype=np.float64)
    return data


def write_event_file(
    path: str | os.PathLike[str],
    header: EventFileHeader,
    observations: np.ndarray,
    weights: np.ndarray,
    sampling_benchmarks: np.ndarray,
) -> Path:
    """Write a complete MadMiner event file atomically and return its path.

    ``weights`` holds every benchmark column (physics, then nuisance); ``sampling_benchmarks``
    is -1 for background events. Shapes must agree with ``header`` (including ``n_events``)
    and the per-event arrays must be finite; otherwise InputError and nothing is written.
    """
    target = Path(path)
    source = str(target)
    x = np.asarray(observations, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    ids = np.asarray(sampling_benchmarks)
    n = header.n_events
    expected = {
        "samples/observations": (x, (n, header.n_observables)),
        "samples/weights": (w, (n, header.n_benchmarks)),
        "samples/sampling_benchmarks": (ids, (n,)),
    }
    for key, (array, shape) in expected.items():
        if array.shape != shape:
            raise InputError(source, key, f"shape {shape} (from the header), got {array.shape}")
    for key, array in (("samples/observations", x), ("samples/weights", w)):
        if not np.isfinite(array).all():
            rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
            raise InputError(
                source, key, f"finite values, found NaN/inf in {rows.size} rows (first {rows[0]})"
            )
    if ids.size and ids.dtype.kind not in "iu":
        raise InputError(source, "samples/sampling_benchmarks", f"integers, got {ids.dtype}")
    datasets = _header_datasets(header, source)
    datasets["samples/observations"] = x
    datasets["samples/weights"] = w
    datasets["samples/sampling_benchmarks"] = ids.astype(np.int64)
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as handle:
        for key, array in datasets.items():
            handle.create_dataset(key, data=array)
    return target


def k_factors(header: EventFileHeader, sampling_benchmarks: np.ndarray) -> np.ndarray:
    """Per-event factor that makes concatenated MadGraph runs estimate one cross section.

    Every MadGraph run's weights, reweighted to any benchmark, sum to the full cross section
    on their own. When runs generated at several benchmarks are concatenated in one file,
    ``Σ_i w_i`` counts σ once per run, so each event of a run at benchmark b is scaled by
    ``k_b = n_b / Σ_b' n_b'`` (``n_b`` = ``sample_summary/signal_events``): the combination is
    then the event-count weighted mean of the runs' estimates. Background events (index -1)
    keep ``k = 1``. This is MadMiner's sample-summary correction (PR #313), used whenever all
    events are combined. A file without a sample summary is taken as one normalised sample
    (all factors 1).
    """
    ids = np.asarray(sampling_benchmarks, dtype=np.int64)
    factors = np.ones(ids.shape, dtype=np.float64)
    if header.signal_events is None:
        return factors
    counts = header.signal_events.astype(np.float64)
    total = counts.sum()
    signal = ids >= 0
    if signal.any():
        if ids.max() >= counts.size or total <= 0:
            raise InputError(
                header.source,
                "sample_summary/signal_events",
                f"a positive event count for every sampling benchmark up to {int(ids.max())}",
            )
        factors[signal] = counts[ids[signal]] / total
    return factors
