"""MadMiner event files: the reference file loads, round trips are exact, bad files fail clearly."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from minerflow.errors import InputError
from minerflow.io.madminer_file import (
    EventFile,
    EventFileHeader,
    FiniteDifferences,
    NuisanceParameter,
    Parameter,
    Systematic,
    k_factors,
    read_event_file,
    write_event_file,
)
from minerflow.physics.morphing import find_components, morphing_matrix


def _datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file, read with plain h5py (independent of our reader)."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return out


def _assert_same_datasets(a: Path, b: Path) -> None:
    left, right = _datasets(a), _datasets(b)
    assert sorted(left) == sorted(right)
    for key in left:
        la, ra = np.asarray(left[key]), np.asarray(right[key])
        assert la.dtype == ra.dtype, key
        assert la.shape == ra.shape, key
        assert np.array_equal(la, ra), key


def _small_header(
    n_events: int = 8, *, nuisance: bool = False, extras: bool = False
) -> EventFileHeader:
    """A one-parameter header with a quadratic morphing basis at θ = 0, 1, 2."""
    components = find_components([2])
    values = np.array([[0.0], [1.0], [2.0]])
    names: tuple[str, ...] = ("sm", "b1", "b2")
    is_nuisance = [False, False, False]
    if nuisance:
        names += ("sys_nuisance_param_0_benchmark_0",)
        values = np.vstack([values, [[0.0]]])
        is_nuisance.append(True)
    return EventFileHeader(
        parameters=(Parameter("theta", "dim6", 7, 2, (-3.0, 3.0), "2*theta"),),
        benchmark_names=names,
        benchmark_values=values,
        benchmark_is_nuisance=np.array(is_nuisance),
        benchmark_is_reference=np.arange(len(names)) == 0,
        morphing_components=components,
        morphing_matrix=morphing_matrix(components, values[:3]),
        observable_names=("pt_j1", "m_jj"),
        observable_definitions=("j[0].pt", None),
        signal_events=np.array([n_events - 3, 2, 1]),
        background_events=0,
        n_events=n_events,
        systematics=(Systematic("sys", "norm", "0.1", None),) if extras else (),
        nuisance_parameters=(
            (NuisanceParameter("sys_nuisance_param_0", "sys", names[-1], None),) if extras else ()
        ),
        finite_differences=(FiniteDifferences(("sm",), (("b1",),), 0.01) if extras else None),
    )


def _events(header: EventFileHeader, rng: np.random.Generator):
    n = header.n_events
    x = rng.normal(size=(n, header.n_observables))
    w = rng.exponential(size=(n, header.n_benchmarks))
    w[1, 2] = -0.5  # NLO-like negative weight: legal
    ids = np.zeros(n, dtype=np.int64)
    ids[-3:] = [1, 1, 2]
    return x, w, ids


@pytest.fixture
def small_file(tmp_path: Path, rng: np.random.Generator) -> Path:
    header = _small_header()
    return write_event_file(tmp_path / "small.h5", header, *_events(header, rng))


def _one_line_error(excinfo: pytest.ExceptionInfo[InputError], path: Path, key: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: expected "), message
    return message


# --- the reference file -------------------------------------------------------------------


def test_reference_file_header(reference_file: Path) -> None:
    header = read_event_file(reference_file).header
    assert header.parameter_names == ("CWL2", "CPWL2")
    assert header.parameters[0] == Parameter("CWL2", "dim6", 2, 2, (-10.0, 10.0), "16.52*theta")
    assert header.parameters[1].lha_id == 5
    assert header.benchmark_names[:2] == ("sm", "w")
    assert header.n_benchmarks == header.n_physics_benchmarks == 6
    assert header.benchmark_index("w") == 1
    assert header.reference_benchmark_index == 0
    np.testing.assert_array_equal(header.benchmark_values[1], [10.0, 0.0])
    assert header.observable_names == ("pt_j1", "delta_phi_jj")
    assert header.observable_definitions[0] == "j[0].pt"
    assert header.signal_events.tolist() == [911, 980, 973, 989, 981, 987]
    assert header.background_events == 0
    assert header.n_events == 5821 == header.signal_events.sum()
    assert header.systematics == () and header.finite_differences is None
    assert header.morpher().n_components == 6


def test_reference_file_events(reference_file: Path) -> None:
    events = read_event_file(reference_file)
    raw = _datasets(reference_file)
    np.testing.assert_array_equal(events.observations(), raw["samples/observations"])
    np.testing.assert_array_equal(events.weights(), raw["samples/weights"])
    np.testing.assert_array_equal(events.sampling_benchmarks(), raw["samples/sampling_benchmarks"])
    np.testing.assert_array_equal(events.weights(100, 250), raw["samples/weights"][100:250])


def test_reference_round_trip_is_exact(reference_file: Path, tmp_path: Path) -> None:
    events = read_event_file(reference_file)
    out = write_event_file(
        tmp_path / "copy.h5",
        events.header,
        events.observations(),
        events.weights(include_nuisance=True),
        events.sampling_benchmarks(),
    )
    _assert_same_datasets(reference_file, out)
    again = read_event_file(out)
    second = write_event_file(
        tmp_path / "copy2.h5",
        again.header,
        again.observations(),
        again.weights(include_nuisance=True),
        again.sampling_benchmarks(),
    )
    _assert_same_datasets(out, second)
    assert again.header.parameters == events.header.parameters
    assert again.header.observable_definitions == events.header.observable_definitions


def test_k_factors_reference(reference_file: Path) -> None:
    """MadMiner's corrected SM cross section of the sample is 0.001006 pb (raw: 0.00603)."""
    events = read_event_file(reference_file)
    ids = events.sampling_benchmarks()
    factors = k_factors(events.header, ids)
    np.testing.assert_allclose(factors[ids == 0], 911 / 5821)
    sigma_sm = float(factors @ events.weights()[:, 0])
    assert sigma_sm == pytest.approx(0.0010059528924, rel=1e-9)


def test_k_factors_by_hand(tmp_path: Path, rng: np.random.Generator) -> None:
    header = dataclasses.replace(_small_header(5), signal_events=np.array([1, 3, 0]))
    ids = np.array([0, 1, 1, 1, -1])
    np.testing.assert_allclose(k_factors(header, ids), [0.25, 0.75, 0.75, 0.75, 1.0])
    no_summary = dataclasses.replace(header, signal_events=None)
    np.testing.assert_array_equal(k_factors(no_summary, ids), np.ones(5))


# --- our own files ------------------------------------------------------------------------


def test_optional_groups_and_nuisance_columns_round_trip(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    header = _small_header(nuisance=True, extras=True)
    x, w, ids = _events(header, rng)
    path = write_event_file(tmp_path / "nuis.h5", header, x, w, ids)
    events = read_event_file(path)
    back = events.header
    assert back.systematics == header.systematics
    assert back.nuisance_parameters == header.nuisance_parameters
    assert back.finite_differences == header.finite_differences
    assert back.observable_definitions == ("j[0].pt", None)
    assert back.n_benchmarks == 4 and back.n_physics_benchmarks == 3
    assert back.benchmark_is_nuisance.tolist() == [False, False, False, True]
    np.testing.assert_array_equal(events.weights(), w[:, :3])
    np.testing.assert_array_equal(events.weights(include_nuisance=True), w)
    assert events.weights()[1, 2] == -0.5  # negative weights are kept
    raw = _datasets(path)
    assert raw["systematics/scales"].tolist() == [b"None"]
    assert raw["observables/definitions"].dtype == np.dtype("S256")
    copy = write_event_file(tmp_path / "nuis2.h5", back, x, w, ids)
    _assert_same_datasets(path, copy)


def test_partial_reads_and_chunks(small_file: Path) -> None:
    events = read_event_file(small_file)
    full_x, full_w = events.observations(), events.weights()
    chunks = list(events.iter_chunks(chunk_size=3, start=1))
    assert [(c.start, c.stop) for c in chunks] == [(1, 4), (4, 7), (7, 8)]
    np.testing.assert_array_equal(np.vstack([c.observations for c in chunks]), full_x[1:])
    np.testing.assert_array_equal(np.vstack([c.weights for c in chunks]), full_w[1:])
    assert chunks[-1].sampling_benchmarks.tolist() == [2]
    np.testing.assert_array_equal(events.observations(2, 5), full_x[2:5])
    assert events.weights(4, 4).shape == (0, 3)
    with pytest.raises(InputError, match=r"row range within \[0, 8\]"):
        events.weights(5, 9)
    with pytest.raises(InputError, match="chunk_size"):
        next(events.iter_chunks(chunk_size=0))


def test_header_helpers_errors(small_file: Path) -> None:
    header = read_event_file(small_file).header
    with pytest.raises(InputError) as excinfo:
        header.benchmark_index("bsm")
    message = _one_line_error(excinfo, small_file, "benchmarks/names")
    assert "sm, b1, b2" in message and "'bsm'" in message
    bare = dataclasses.replace(header, morphing_components=None, morphing_matrix=None)
    assert not bare.has_morphing
    with pytest.raises(InputError, match="morphing: expected a morphing group"):
        bare.morpher()


# --- bad files ----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.h5"
    with pytest.raises(InputError, match="no such file") as excinfo:
        read_event_file(path)
    assert str(excinfo.value).startswith(str(path))


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("not an hdf5 file\n" * 100)
    with pytest.raises(InputError, match="an HDF5 file"):
        read_event_file(path)
    with pytest.raises(InputError, match="found a directory"):
        read_event_file(tmp_path)


def test_truncated_file(small_file: Path, tmp_path: Path) -> None:
    data = small_file.read_bytes()
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as excinfo:
        read_event_file(path)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("fraction", np.linspace(0.01, 0.99, 12).round(2).tolist())
def test_corrupt_bytes_give_input_errors(small_file: Path, tmp_path: Path, fraction: float) -> None:
    """Damaged metadata anywhere: a one-line InputError, never an h5py traceback.

    Damage inside a data block may still decode to valid numbers (HDF5 has no checksums
    here), so a clean read is allowed; any other exception type fails the test.
    """
    data = bytearray(small_file.read_bytes())
    at = int(len(data) * fraction)
    data[at : at + 400] = b"\xff" * 400
    path = tmp_path / "corrupt.h5"
    path.write_bytes(bytes(data))
    try:
        events = read_event_file(path)
        events.observations(), events.weights(), events.sampling_benchmarks()
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)


def _broken_copy(small_file: Path, tmp_path: Path, edit) -> Path:
    path = tmp_path / "broken.h5"
    shutil.copy(small_file, path)
    with h5py.File(path, "r+") as handle:
        edit(handle)
    return path


def _replace(key: str, data: np.ndarray):
    def edit(handle: h5py.File) -> None:
        del handle[key]
        handle.create_dataset(key, data=data)

    return edit


@pytest.mark.parametrize(
    ("edit", "key", "fragment"),
    [
        (lambda h: h.__delitem__("samples"), "samples", "an HDF5 group (missing)"),
        (lambda h: h.__delitem__("parameters"), "parameters", "an HDF5 group (missing)"),
        (
            lambda h: h.__delitem__("benchmarks/values"),
            "benchmarks/values",
            "a dataset (missing)",
        ),
        (
            lambda h: h.__delitem__("samples/sampling_benchmarks"),
            "samples/sampling_benchmarks",
            "a dataset (missing)",
        ),
        (
            _replace("samples/weights", np.ones((8, 2))),
            "samples/weights",
            "3 columns (one per benchmark",
        ),
        (
            _replace("samples/observations", np.ones((7, 2))),
            "samples/observations",
            "8 rows (as samples/weights)",
        ),
        (
            _replace("samples/observations", np.ones((8, 3))),
            "samples/observations",
            "2 columns (one per name in observables/names)",
        ),
        (
            _replace("morphing/morphing_matrix", np.eye(3)[:, :2]),
            "morphing/morphing_matrix",
            "shape (3, 3) (components x physics benchmarks)",
        ),
        (
            _replace("morphing/components", np.zeros((3, 2), dtype=np.int64)),
            "morphing/components",
            "shape (n_components, 1)",
        ),
        (
            _replace("benchmarks/values", np.zeros((2, 1))),
            "benchmarks/values",
            "shape (3, 1)",
        ),
        (
            _replace("parameters/lha_ids", np.array([1, 2])),
            "parameters/lha_ids",
            "shape (1,) (one per parameter)",
        ),
        (
            _replace("observables/definitions", np.array([b"a"], dtype="S256")),
            "observables/definitions",
            "2 definitions",
        ),
        (
            _replace("parameters/names", np.array([3])),
            "parameters/names",
            "strings, got dtype int64",
        ),
        (
            _replace("samples/weights", np.array(["a"] * 8, dtype="S3")),
            "samples/weights",
            "a 2-d numeric dataset",
        ),
    ],
)
def test_malformed_files(small_file: Path, tmp_path: Path, edit, key: str, fragment: str) -> None:
    path = _broken_copy(small_file, tmp_path, edit)
    with pytest.raises(InputError) as excinfo:
        read_event_file(path)
    assert fragment in _one_line_error(excinfo, path, key)


def test_nan_weights_named_by_row_range(small_file: Path, tmp_path: Path) -> None:
    def poison(handle: h5py.File) -> None:
        handle["samples/weights"][5, 1] = np.nan
        handle["samples/observations"][6, 0] = np.inf

    path = _broken_copy(small_file, tmp_path, poison)
    events = read_event_file(path)  # the header alone is fine: events are read lazily
    assert events.weights(0, 5).shape == (5, 3)
    with pytest.raises(InputError) as excinfo:
        events.weights()
    message = _one_line_error(excinfo, path, "samples/weights")
    assert "rows 0-8" in message and "first at row 5" in message
    chunks = events.iter_chunks(chunk_size=4)
    next(chunks)
    with pytest.raises(
        InputError, match=r"samples/observations: expected finite values in rows 4-8"
    ):
        next(chunks)


def test_sampling_benchmark_out_of_range(small_file: Path, tmp_path: Path) -> None:
    path = _broken_copy(
        small_file, tmp_path, _replace("samples/sampling_benchmarks", np.full(8, 3))
    )
    with pytest.raises(InputError, match=r"benchmark indices in \[-1, 2\]"):
        read_event_file(path).sampling_benchmarks()


def test_invalid_headers() -> None:
    header = _small_header()
    with pytest.raises(InputError, match="physics benchmarks first"):
        dataclasses.replace(header, benchmark_is_nuisance=np.array([True, False, False]))
    with pytest.raises(InputError, match="at most one reference"):
        dataclasses.replace(header, benchmark_is_reference=np.ones(3, dtype=bool))
    with pytest.raises(InputError, match="unique benchmark names"):
        dataclasses.replace(header, benchmark_names=("sm", "sm", "b2"))
    with pytest.raises(InputError, match="both components and morphing_matrix"):
        dataclasses.replace(header, morphing_matrix=None)
    with pytest.raises(InputError, match="sample_summary/signal_events"):
        dataclasses.replace(header, signal_events=np.array([1, 2]))


def test_write_rejects_bad_events(tmp_path: Path, rng: np.random.Generator) -> None:
    header = _small_header()
    x, w, ids = _events(header, rng)
    path = tmp_path / "out.h5"
    with pytest.raises(InputError, match=r"samples/weights: expected shape \(8, 3\)"):
        write_event_file(path, header, x, w[:, :2], ids)
    with pytest.raises(InputError, match="ASCII text"):
        write_event_file(path, dataclasses.replace(header, observable_names=("pₜ", "m")), x, w, ids)
    with pytest.raises(InputError, match="at most 256 characters"):
        write_event_file(
            path, dataclasses.replace(header, observable_names=("p" * 300, "m")), x, w, ids
        )
    w[2, 0] = np.nan
    with pytest.raises(InputError, match="samples/weights: expected finite values"):
        write_event_file(path, header, x, w, ids)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_event_file_constructor_equals_reader(small_file: Path) -> None:
    direct = EventFile(small_file)
    assert direct.n_events == read_event_file(small_file).n_events == 8
    assert "small.h5" in repr(direct)
