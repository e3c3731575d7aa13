"""Parameter-point specs: parsing input.yml, resolving to θ arrays, precise errors."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from minerflow.errors import InputError
from minerflow.io.madminer_file import EventFileHeader, read_event_file
from minerflow.physics.parameters import (
    Benchmark,
    Benchmarks,
    MorphingPoint,
    MorphingPoints,
    Prior,
    RandomMorphingPoints,
    ThetaOutsideRangeWarning,
    n_samples_per_set,
    n_sets,
    resolve_thetas,
    spec_from_mapping,
)

GAUSS_01 = Prior("gaussian", 0.0, 1.0)


@pytest.fixture(scope="module")
def header(reference_file: Path) -> EventFileHeader:
    return read_event_file(reference_file).header


def _random_mapping(n: Any = 20, shapes: tuple[str, ...] = ("gaussian", "gaussian")) -> dict:
    return {
        "sampling_method": "random_morphing_points",
        "sampling_number": n,
        "prior": [
            {
                f"parameter_{i}": {
                    "prior_shape": shape,
                    "prior_param_0": 0.0,
                    "prior_param_1": 1.0,
                }
            }
            for i, shape in enumerate(shapes)
        ],
    }


def test_every_theta_spec_of_input_yml(reference_input_file: Path, header, rng) -> None:
    config = yaml.safe_load(reference_input_file.read_text())
    specs = {
        f"{method}.{role}": spec_from_mapping(
            mapping, 2, str(reference_input_file), f"{method}.{role}"
        )
        for method in config["methods"]
        for role, mapping in config[method].items()
        if role.startswith("theta_")
    }
    assert sorted(specs) == [
        "alice.theta_0",
        "alice.theta_1",
        "alices.theta_0",
        "alices.theta_1",
        "sally.theta_0",
    ]
    expected_random = RandomMorphingPoints(20, (GAUSS_01, GAUSS_01))
    assert specs["alice.theta_0"] == specs["alices.theta_0"] == expected_random
    assert specs["alice.theta_1"] == specs["sally.theta_0"] == Benchmark("sm")
    for spec in specs.values():
        thetas = resolve_thetas(spec, header, 1000, rng)
        assert thetas.dtype == np.float64 and thetas.shape == (n_sets(spec), 2)
    np.testing.assert_array_equal(resolve_thetas(Benchmark("sm"), header), [[0.0, 0.0]])


def test_explicit_forms(header) -> None:
    def parse(mapping: dict) -> Any:
        return spec_from_mapping(mapping, 2, "input.yml", "m.theta_0")

    spec = parse({"sampling_method": "benchmarks", "sampling_arg": ["w", "sm"]})
    assert spec == Benchmarks(("w", "sm"))
    np.testing.assert_array_equal(resolve_thetas(spec, header), [[10.0, 0.0], [0.0, 0.0]])
    spec = parse({"sampling_method": "morphing_point", "sampling_arg": [1, -2.5]})
    assert spec == MorphingPoint((1.0, -2.5))
    np.testing.assert_array_equal(resolve_thetas(spec, header), [[1.0, -2.5]])
    spec = parse({"sampling_method": "morphing_points", "sampling_arg": [[1, 2], [3.5, 4]]})
    assert spec == MorphingPoints(((1.0, 2.0), (3.5, 4.0)))
    np.testing.assert_array_equal(resolve_thetas(spec, header, 10), [[1, 2], [3.5, 4]])


@pytest.mark.parametrize(
    ("mapping", "key", "fragment"),
    [
        ({"sampling_method": "grid"}, "t.sampling_method", "one of benchmark, benchmarks"),
        ({"sampling_arg": "sm"}, "t.sampling_method", "got None"),
        (
            {"sampling_method": "benchmark", "sampling_arg": "sm", "sampling_number": 3},
            "t.sampling_number",
            "only sampling_arg, sampling_method for benchmark",
        ),
        ({"sampling_method": "benchmark"}, "t.sampling_arg", "(missing)"),
        ({"sampling_method": "benchmark", "sampling_arg": 3}, "t.sampling_arg", "a benchmark name"),
        (
            {"sampling_method": "benchmarks", "sampling_arg": "sm"},
            "t.sampling_arg",
            "non-empty list",
        ),
        (
            {"sampling_method": "morphing_point", "sampling_arg": [1.0]},
            "t.sampling_arg",
            "2 values (one per parameter), got 1",
        ),
        (
            {"sampling_method": "morphing_point", "sampling_arg": [1.0, "x"]},
            "t.sampling_arg",
            "finite numbers",
        ),
        (
            {"sampling_method": "morphing_points", "sampling_arg": [[1, 2], [1, 2, 3]]},
            "t.sampling_arg[1]",
            "2 values",
        ),
        (_random_mapping(0), "t.sampling_number", "a positive integer, got 0"),
        (_random_mapping(None), "t.sampling_number", "a positive integer, got None"),
        (_random_mapping(True), "t.sampling_number", "a positive integer, got True"),
        (_random_mapping(shapes=("gaussian",)), "t.prior", "2 priors (one per parameter), got 1"),
        (
            _random_mapping(shapes=("gaussian", "uniform")),
            "t.prior[1].parameter_1",
            "prior_shape 'gaussian' or 'flat', got 'uniform'",
        ),
    ],
)
def test_mapping_errors(mapping: dict, key: str, fragment: str) -> None:
    with pytest.raises(InputError) as excinfo:
        spec_from_mapping(mapping, 2, "input.yml", "t")
    message = str(excinfo.value)
    assert message.startswith(f"input.yml: {key}: expected "), message
    assert fragment in message


def test_prior_entry_errors() -> None:
    swapped = _random_mapping()
    swapped["prior"].reverse()
    with pytest.raises(InputError, match=r"t\.prior\[0\]: expected a mapping with the single key"):
        spec_from_mapping(swapped, 2, "input.yml", "t")
    bad_std = _random_mapping()
    bad_std["prior"][0]["parameter_0"]["prior_param_1"] = 0.0
    with pytest.raises(InputError, match="std prior_param_1 > 0"):
        spec_from_mapping(bad_std, 2, "input.yml", "t")
    bad_flat = _random_mapping(shapes=("flat", "flat"))
    bad_flat["prior"][1]["parameter_1"]["prior_param_0"] = 2.0
    with pytest.raises(InputError, match=r"t\.prior\[1\]\.parameter_1: expected a flat prior"):
        spec_from_mapping(bad_flat, 2, "input.yml", "t")
    missing = _random_mapping()
    del missing["prior"][0]["parameter_0"]["prior_param_0"]
    with pytest.raises(InputError, match="exactly the keys prior_shape"):
        spec_from_mapping(missing, 2, "input.yml", "t")


def test_record_validation() -> None:
    with pytest.raises(InputError, match="prior_shape 'gaussian' or 'flat'"):
        Prior("uniform", 0.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="std prior_param_1 > 0"):
        Prior("gaussian", 0.0, -1.0)
    with pytest.raises(InputError, match="min < max"):
        Prior("flat", 1.0, 1.0)
    with pytest.raises(InputError, match="sampling_number: expected a positive integer"):
        RandomMorphingPoints(0, (GAUSS_01,))
    with pytest.raises(InputError, match="non-empty list of priors"):
        RandomMorphingPoints(3, ())


def test_resolution_errors(header, rng) -> None:
    with pytest.raises(InputError) as excinfo:
        resolve_thetas(Benchmark("bsm"), header)
    message = str(excinfo.value)
    assert message.startswith(f"{header.source}: benchmarks/names: expected a physics benchmark")
    assert "sm, w, morphing_basis_vector_2" in message and "'bsm'" in message
    with pytest.raises(InputError, match=r"2 priors \(one per parameter: CWL2, CPWL2\), got 3"):
        resolve_thetas(RandomMorphingPoints(5, (GAUSS_01,) * 3), header, None, rng)
    with pytest.raises(InputError, match="morphing points with 2 values"):
        resolve_thetas(MorphingPoint((1.0, 2.0, 3.0)), header)
    with pytest.raises(InputError, match="a random generator"):
        resolve_thetas(RandomMorphingPoints(5, (GAUSS_01, GAUSS_01)), header)
    with pytest.raises(InputError, match="at least 20 samples for 20 parameter points, got 10"):
        resolve_thetas(RandomMorphingPoints(20, (GAUSS_01, GAUSS_01)), header, 10, rng)


def test_nuisance_benchmark_has_no_theta(header) -> None:
    with_nuisance = dataclasses.replace(
        header,
        benchmark_names=(*header.benchmark_names, "pdf_nuisance_param_0_benchmark_0"),
        benchmark_values=np.vstack([header.benchmark_values, np.zeros((1, 2))]),
        benchmark_is_nuisance=np.append(header.benchmark_is_nuisance, True),
        benchmark_is_reference=np.append(header.benchmark_is_reference, False),
    )
    with pytest.raises(InputError, match="expected a physics benchmark"):
        resolve_thetas(Benchmark("pdf_nuisance_param_0_benchmark_0"), with_nuisance)


def test_random_points_deterministic_and_distributed(header) -> None:
    spec = RandomMorphingPoints(4000, (Prior("gaussian", 1.0, 2.0), Prior("flat", -3.0, 5.0)))
    first = resolve_thetas(spec, header, None, np.random.default_rng(7))
    again = resolve_thetas(spec, header, None, np.random.default_rng(7))
    other = resolve_thetas(spec, header, None, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (4000, 2)
    # gaussian column: mean 1, std 2 (5 standard errors); flat column: inside [-3, 5], mean 1
    assert abs(first[:, 0].mean() - 1.0) < 5 * 2.0 / np.sqrt(4000)
    assert abs(first[:, 0].std() - 2.0) < 0.15
    assert first[:, 1].min() >= -3.0 and first[:, 1].max() <= 5.0
    assert abs(first[:, 1].mean() - 1.0) < 5 * 8.0 / np.sqrt(12 * 4000)


def test_points_outside_range_warn(header, rng) -> None:
    with pytest.warns(ThetaOutsideRangeWarning, match=r"outside the morphing range of CPWL2"):
        resolve_thetas(MorphingPoint((0.0, 12.0)), header)
    with pytest.warns(ThetaOutsideRangeWarning, match="CWL2"):
        resolve_thetas(RandomMorphingPoints(5, (Prior("flat", 20, 30), GAUSS_01)), header, 5, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_thetas(MorphingPoints(((10.0, -10.0), (0.0, 0.0))), header)


@given(n_points=st.integers(1, 50), n_samples=st.integers(1, 10_000))
def test_samples_per_set_sum_exactly(n_points: int, n_samples: int) -> None:
    spec = RandomMorphingPoints(n_points, (GAUSS_01,))
    if n_samples < n_points:
        with pytest.raises(InputError, match="at least"):
            n_samples_per_set(spec, n_samples)
        return
    counts = n_samples_per_set(spec, n_samples)
    assert counts.shape == (n_points,) and counts.sum() == n_samples
    assert counts.max() - counts.min() <= 1 and counts.min() >= 1


def test_samples_per_set_other_specs() -> None:
    assert n_samples_per_set(Benchmark("sm"), 7).tolist() == [7]
    assert n_samples_per_set(Benchmarks(("sm", "w", "x")), 7).tolist() == [3, 2, 2]
    assert n_samples_per_set(MorphingPoints(((0.0,), (1.0,))), 5).tolist() == [3, 2]


def test_numpy_inputs_accepted(header) -> None:
    point = MorphingPoint(np.array([1.0, 2.0]))
    assert point == MorphingPoint((1.0, 2.0))
    points = MorphingPoints(np.array([[0, 1], [2, 3]], dtype=np.int64))
    np.testing.assert_array_equal(resolve_thetas(points, header), [[0, 1], [2, 3]])
    with pytest.raises(InputError, match="finite numbers"):
        MorphingPoint((1.0, float("nan")))
    with pytest.raises(InputError, match="a list of numbers"):
        MorphingPoint(np.zeros((2, 2)))
