"""Asymptotic limits: grid, χ² p-values, every mode against an exact or independent answer.

Reference numbers (MadMiner 0.9.6 on ``dummy_data.h5``, notes sec. 5.1) are reproduced where
our semantics match. Where we differ on purpose the test says so:

* partitions tile the file and use the exact inverse fraction (MadMiner drops one event at
  each boundary and uses the nominal 1/test_split);
* the Asimov count ``n = L σ(θ_true)`` is not rounded (Cowan et al. 1007.1727);
* histogram binning has a bounded MC uncertainty per bin, not 25 fixed quantile bins.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st
from scipy import optimize, special, stats

from minerflow.errors import InputError
from minerflow.io.madminer_file import (
    NuisanceParameter,
    Systematic,
    k_factors,
    read_event_file,
    write_event_file,
)
from minerflow.physics import toy
from minerflow.physics.histograms import bin_index, bin_sums, bin_volumes, log_probabilities
from minerflow.physics.limits import expected_limits, observed_limits, p_values, theta_grid
from minerflow.physics.profiling import log_poisson
from minerflow.physics.sampling import partitions
from minerflow.physics.weighted_events import MorphedEvents, NuisanceEffects
from toy_quadrature import quadrature_events

LUMINOSITY = 1e4  # pb⁻¹, the workflow's default evaluation luminosity


@pytest.fixture(scope="module")
def settings(reference_input_file: Path) -> dict:
    """Grid and θ_true of the seed ``input.yml``."""
    config = yaml.safe_load(reference_input_file.read_text())["asymptotic_limits"]
    ranges = [(v["min"], v["max"]) for v in config["region"].values()]
    return {"grid": theta_grid(ranges, config["resolutions"]), "theta_true": config["theta_true"]}


@pytest.fixture(scope="module")
def dummy(reference_file: Path) -> dict[str, MorphedEvents]:
    """Train and test partitions of the reference file (test_split = validation_split = 0.2)."""
    events = read_event_file(reference_file)
    parts = partitions(events.n_events, 0.2, 0.2)
    return {name: MorphedEvents.from_event_file(events, parts[name]) for name in ("train", "test")}


def test_grid_first_parameter_slowest_as_madminer(settings: dict) -> None:
    grid = settings["grid"]
    assert grid.shape == (625, 2)
    np.testing.assert_allclose(
        grid[[312, 311, 313, 337, 0]],
        [[0, 0], [0, -5 / 3], [0, 5 / 3], [5 / 3, 0], [-20, -20]],
        atol=1e-12,
    )


def test_log_poisson_and_chi2_p_values_by_hand() -> None:
    mu = np.array([0.5, 3.0, 12.0])
    np.testing.assert_allclose(log_poisson(4, mu), stats.poisson.logpmf(4, mu), rtol=1e-12)
    assert log_poisson(2.5, np.array([0.0, -1.0])).tolist() == [-np.inf, -np.inf]
    llr = np.array([-0.3, 0.7, -2.0])
    delta, p, best = p_values(llr, dof=2)
    assert best == 1 and delta.tolist() == [-1.0, 0.0, -2.7]
    np.testing.assert_allclose(p, np.exp(delta), rtol=1e-12)  # χ²₂ survival: e^{-q/2}
    _, p1, _ = p_values(llr, dof=1)  # χ²₁ survival: erfc(sqrt(q/2))
    np.testing.assert_allclose(p1, special.erfc(np.sqrt(-delta)), rtol=1e-12)
    assert p1[0] == pytest.approx(0.157299207050285, rel=1e-12)


def test_rate_reproduces_madminer_with_its_partition_and_rounded_count(
    reference_file: Path, settings: dict
) -> None:
    # MadMiner: test rows [round(0.8 N) + 1, N) with factor 1/0.2, observed count round(10.358)
    events = read_event_file(reference_file)
    start = round(0.8 * events.n_events) + 1
    weights = (
        events.weights(start)
        * (5.0 * k_factors(events.header, events.sampling_benchmarks(start)))[:, None]
    )
    madminer_test = MorphedEvents(events.observations(start), weights, events.header.morpher())
    result = observed_limits(
        "rate", np.zeros((0, 2)), madminer_test, settings["grid"], LUMINOSITY, n_observed=10
    )
    np.testing.assert_allclose(
        result.rate[[312, 311, 0]], [-2.084813, -2.734703, -1490.350448], atol=2e-6
    )
    np.testing.assert_allclose(
        result.p_values[[311, 313, 337]], [0.522103, 0.099112, 0.905120], atol=2e-6
    )
    assert result.best_fit_index == 312 and int((result.p_values > 0.05).sum()) == 7
    assert np.all(result.kinematic == 0)


def test_expected_rate_is_the_continuous_asimov_poisson(dummy: dict, settings: dict) -> None:
    test = dummy["test"]
    result = expected_limits("rate", test, settings["grid"], settings["theta_true"], LUMINOSITY)
    n = LUMINOSITY * test.cross_sections(np.zeros((1, 2)))[0]
    assert result.n_events == pytest.approx(n, rel=1e-12)
    assert n == pytest.approx(10.36, abs=0.01)  # MadMiner: 10.358 from its partition
    mu = LUMINOSITY * test.cross_sections(settings["grid"])
    # the Poisson pmf continued to real n: n log μ − μ − log Γ(n + 1)
    expected = n * np.log(mu) - mu - np.log(math.gamma(n + 1))
    np.testing.assert_allclose(result.rate, expected, rtol=1e-10)
    assert result.best_fit_index == 312
    np.testing.assert_array_equal(result.best_fit, [0.0, 0.0])
    assert int((result.p_values > 0.05).sum()) == 7  # as MadMiner's reference
    assert result.log_likelihood_ratio.max() == 0.0


def _independent_histogram_term(result, data: MorphedEvents, templates, observables, k) -> float:
    """n Σ_i w_i log f(bin(x_i)|θ_k) from numpy's histogramdd with the result's edges."""
    edges = result.histograms[k].edges
    theta = result.grid[k : k + 1]
    clip = [np.clip(templates.columns(observables)[:, a], e[0], e[-1]) for a, e in enumerate(edges)]
    counts, _ = np.histogramdd(
        np.column_stack(clip), bins=edges, weights=templates.weights(theta)[0]
    )
    p = np.clip(counts, 0, None) / np.clip(counts, 0, None).sum() + 1e-12
    density = (p / p.sum()) / bin_volumes(edges)
    w = data.weights(np.zeros((1, 2)))[0]
    index = bin_index(data.columns(observables), edges)
    return float(result.n_events * (np.log(density.ravel())[index] @ (w / w.sum())))


@pytest.mark.parametrize("observables", [["pt_j1"], ["pt_j1", "delta_phi_jj"]])
@pytest.mark.parametrize("include_xsec", [True, False])
def test_histo_mode_on_the_reference_file_with_input_yml_settings(
    dummy: dict, settings: dict, observables: list[str], include_xsec: bool
) -> None:
    result = expected_limits(
        "histo",
        dummy["test"],
        settings["grid"],
        settings["theta_true"],
        LUMINOSITY,
        templates=dummy["train"],
        observables=observables,
        include_xsec=include_xsec,
    )
    assert len(result.histograms) == 625
    for k in (0, 311, 312, 337, 624):
        assert result.kinematic[k] == pytest.approx(
            _independent_histogram_term(result, dummy["test"], dummy["train"], observables, k),
            rel=1e-10,
        )
    # one binning for the grid; every filled bin meets the default 20 % bound for the binning
    # weights (grid average of dσ_i(θ)/σ(θ)), so per-θ histograms stay close to it
    assert all(
        all(np.array_equal(a, b) for a, b in zip(h.edges, result.histograms[0].edges, strict=True))
        for h in result.histograms
    )
    sigma = dummy["train"].cross_sections(settings["grid"])
    mean_w = dummy["train"].weights(settings["grid"]) / sigma[:, None]
    index = bin_index(dummy["train"].columns(observables), result.histograms[0].edges)
    n_bins = result.histograms[0].sum_weights.size
    s, s2 = bin_sums(index, n_bins, mean_w.mean(0)), bin_sums(index, n_bins, mean_w.mean(0) ** 2)
    assert np.all(np.sqrt(s2[s2 > 0]) <= 0.2 * s[s2 > 0] * (1 + 1e-12))
    assert result.best_fit_index == 312  # as MadMiner's reference for both histo settings
    assert np.all(result.rate == 0) != include_xsec
    # MadMiner's 25 fixed bins give p[311] = 0.047 (xsec) / 0.090 (no xsec) for pt_j1; our
    # bounded binning differs on purpose, but must still exclude the far corner of the grid
    assert result.p_values[0] < (1e-6 if include_xsec else 1e-2)


class _Identity:
    """A score "estimator" returning the observables: sally mode must equal histo mode."""

    def evaluate_score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)


def test_sally_of_the_observables_equals_histo(dummy: dict, settings: dict) -> None:
    common = {"templates": dummy["train"], "include_xsec": True}
    grid, true = settings["grid"], settings["theta_true"]
    histo = expected_limits(
        "histo",
        dummy["test"],
        grid,
        true,
        LUMINOSITY,
        observables=["pt_j1", "delta_phi_jj"],
        **common,
    )
    sally = expected_limits(
        "sally", dummy["test"], grid, true, LUMINOSITY, estimator=_Identity(), **common
    )
    np.testing.assert_array_equal(sally.kinematic, histo.kinematic)
    np.testing.assert_array_equal(sally.p_values, histo.p_values)


def test_sallino_projects_the_score_on_the_direction_to_each_point(dummy: dict) -> None:
    grid = theta_grid([(-10, 10), (-10, 10)], 5)
    result = expected_limits(
        "sallino",
        dummy["test"],
        grid,
        [0, 0],
        LUMINOSITY,
        templates=dummy["train"],
        estimator=_Identity(),
        theta_ref=[0.0, 0.0],
    )
    data_w = dummy["test"].weights(np.zeros((1, 2)))[0]
    data_w = data_w / data_w.sum()
    for k, theta in enumerate(grid):
        norm = np.linalg.norm(theta)
        direction = theta / norm if norm > 1e-6 else np.array([1.0, 0.0])
        h = result.histograms[k]
        np.testing.assert_allclose(
            h.sum_weights,
            bin_sums(
                bin_index(dummy["train"].observations @ direction, h.edges),
                len(h.sum_weights),
                dummy["train"].weights(theta[None])[0],
            ),
            rtol=1e-12,
        )
        template_bins = bin_index(dummy["train"].observations @ direction, h.edges)
        reference = bin_sums(
            template_bins, len(h.sum_weights), dummy["train"].weights(np.zeros((1, 2)))[0]
        )
        log_ratio = log_probabilities(h.sum_weights) - log_probabilities(reference)
        data_bins = bin_index(dummy["test"].observations @ direction, h.edges)
        expected = result.n_events * (log_ratio[data_bins] @ data_w)
        assert result.kinematic[k] == pytest.approx(expected, rel=1e-10, abs=1e-10)


class _HistogramDensity:
    """A density "estimator" that looks up the histograms of a histo result (one per θ)."""

    def __init__(self, result) -> None:
        self.by_theta = {tuple(t): h for t, h in zip(result.grid, result.histograms, strict=True)}
        self.observable = 0

    def evaluate_log_likelihood(self, x: np.ndarray, thetas: np.ndarray) -> tuple[np.ndarray, None]:
        values = x[:, self.observable]
        return np.stack([self.by_theta[tuple(t)].log_density(values) for t in thetas]), None


class _HistogramRatio(_HistogramDensity):
    """The same as a likelihood ratio to θ_ref = (0, 0): the reference must drop out."""

    def evaluate_log_likelihood_ratio(self, x, thetas, test_all_combinations=True):
        log_p, _ = self.evaluate_log_likelihood(x, thetas)
        return log_p - self.evaluate_log_likelihood(x, np.zeros((1, 2)))[0], None


def test_ml_mode_with_density_or_ratio_equals_the_histograms_it_wraps(dummy: dict) -> None:
    grid = theta_grid([(-20, 20), (-20, 20)], 9)
    kw = {"templates": dummy["train"], "include_xsec": False}
    histo = expected_limits(
        "histo", dummy["test"], grid, [0, 0], LUMINOSITY, observables=["pt_j1"], **kw
    )
    density = expected_limits(
        "ml", dummy["test"], grid, [0, 0], LUMINOSITY, estimator=_HistogramDensity(histo), **kw
    )
    ratio = expected_limits(
        "ml", dummy["test"], grid, [0, 0], LUMINOSITY, estimator=_HistogramRatio(histo), **kw
    )
    np.testing.assert_allclose(density.kinematic, histo.kinematic, rtol=1e-12)
    np.testing.assert_allclose(ratio.log_likelihood_ratio, histo.log_likelihood_ratio, atol=1e-9)
    np.testing.assert_allclose(ratio.p_values, histo.p_values, atol=1e-12)


@pytest.mark.parametrize("mode", ["histo", "sallino", "ml"])
def test_batching_gives_the_same_result(dummy: dict, mode: str) -> None:
    grid = theta_grid([(-20, 20), (-20, 20)], 7)
    kw = {"templates": dummy["train"], "observables": ["pt_j1"], "estimator": _Identity()}
    if mode == "ml":
        kw["estimator"] = _HistogramDensity(
            expected_limits("histo", dummy["test"], grid, [0, 0], LUMINOSITY, **kw)
        )
    whole = expected_limits(mode, dummy["test"], grid, [0, 0], LUMINOSITY, **kw)
    small = expected_limits(
        mode, dummy["test"], grid, [0, 0], LUMINOSITY, max_batch_pairs=300, **kw
    )
    np.testing.assert_allclose(small.kinematic, whole.kinematic, rtol=1e-12)
    np.testing.assert_allclose(small.p_values, whole.p_values, rtol=1e-10, atol=1e-14)
    assert small.best_fit_index == whole.best_fit_index


@pytest.fixture(scope="module")
def quadrature() -> MorphedEvents:
    return quadrature_events()


def test_truth_mode_equals_the_exact_expected_likelihood(quadrature: MorphedEvents) -> None:
    # Asimov "events" on quadrature nodes: truth mode is then the toy's exact Asimov integral,
    # computed here through morphing + toy.log_likelihood, there through its quadratic forms
    grid = theta_grid(toy.DEFAULT_LIMIT_REGION, (11, 9))
    true = np.array([0.1, -0.2])
    result = expected_limits(
        "truth",
        quadrature,
        grid,
        true,
        toy.DEFAULT_LUMINOSITY,
        log_likelihood=toy.log_likelihood,
        max_batch_pairs=1 << 22,
    )
    for include_xsec, ours in ((False, result.kinematic), (True, result.log_likelihood_ratio)):
        exact = toy.expected_log_likelihood_ratio(grid, true, toy.DEFAULT_LUMINOSITY, include_xsec)
        np.testing.assert_allclose(ours - ours.max(), exact - exact.max(), atol=1e-6, rtol=1e-7)
    exact_p = toy.expected_p_values(grid, true, toy.DEFAULT_LUMINOSITY)
    np.testing.assert_allclose(result.p_values, exact_p, atol=1e-7)


def test_truth_mode_on_toy_events_finds_the_exact_regions(tmp_path: Path) -> None:
    path = toy.write_event_file(tmp_path / "toy.h5", n_events=30_000, seed=3)
    events = read_event_file(path)
    test = MorphedEvents.from_event_file(events, partitions(events.n_events, 0.5, 0.0)["test"])
    grid = theta_grid(toy.DEFAULT_LIMIT_REGION, toy.DEFAULT_LIMIT_RESOLUTIONS)
    result = expected_limits(
        "truth",
        test,
        grid,
        toy.DEFAULT_THETA_TRUE,
        toy.DEFAULT_LUMINOSITY,
        log_likelihood=toy.log_likelihood,
    )
    exact = toy.expected_p_values(grid, toy.DEFAULT_THETA_TRUE, toy.DEFAULT_LUMINOSITY)
    for cl in (0.68, 0.95):
        ours, truth = result.allowed(cl), exact > 1 - cl
        assert truth.sum() >= 9  # the region spans several cells
        assert (ours & truth).sum() / (ours | truth).sum() >= 0.8


def test_observed_limits_use_equal_weights_and_scale_by_n_observed(quadrature) -> None:
    x = np.array([[60.0, 0.5], [120.0, 2.0], [45.0, 1.0]])
    grid = theta_grid([(-1, 1), (-1, 1)], 3)
    result = observed_limits(
        "truth",
        x,
        quadrature,
        grid,
        toy.DEFAULT_LUMINOSITY,
        n_observed=6,
        log_likelihood=toy.log_likelihood,
    )
    log_p = toy.log_likelihood(x, grid)
    np.testing.assert_allclose(result.kinematic, 2.0 * log_p.sum(axis=1), rtol=1e-12)
    mu = toy.DEFAULT_LUMINOSITY * quadrature.cross_sections(grid)
    np.testing.assert_allclose(result.rate, stats.poisson.logpmf(6, mu), rtol=1e-10)


@given(counts=st.lists(st.integers(1, 4), min_size=3, max_size=3))
@settings_hypothesis(max_examples=15, deadline=None)
def test_multiplicity_equals_repeating_the_rows(quadrature, counts: list[int]) -> None:
    x = np.array([[60.0, 0.5], [120.0, 2.0], [45.0, 1.0]])
    grid = theta_grid([(-1, 1), (-1, 1)], 3)
    options = {"log_likelihood": toy.log_likelihood}
    lumi = toy.DEFAULT_LUMINOSITY
    repeated = observed_limits(
        "truth", np.repeat(x, counts, axis=0), quadrature, grid, lumi, **options
    )
    counted = observed_limits("truth", x, quadrature, grid, lumi, multiplicity=counts, **options)
    np.testing.assert_allclose(counted.kinematic, repeated.kinematic, rtol=1e-12)
    np.testing.assert_allclose(counted.rate, repeated.rate, rtol=1e-12)
    with pytest.raises(InputError, match="multiplicity: expected 3 positive counts"):
        observed_limits("truth", x, quadrature, grid, lumi, multiplicity=[1, 0, 2], **options)


def test_bad_settings_are_one_line_errors(dummy: dict) -> None:
    grid = theta_grid([(-1, 1), (-1, 1)], 2)
    test = dummy["test"]
    cases = [
        ({"mode": "magic"}, "mode: expected one of"),
        ({"mode": "rate", "include_xsec": False}, "include_xsec"),
        ({"mode": "histo"}, "observables: expected at least one"),
        ({"mode": "histo", "observables": ["m_jj"]}, "observables: expected one of"),
        ({"mode": "ml"}, "estimator: expected a ratio or density"),
        ({"mode": "sally", "estimator": object()}, "estimator: expected a score"),
        ({"mode": "truth"}, "log_likelihood"),
    ]
    for kwargs, message in cases:
        mode = kwargs.pop("mode")
        with pytest.raises(InputError, match=message):
            expected_limits(mode, test, grid, [0, 0], LUMINOSITY, **kwargs)
    with pytest.raises(InputError, match="luminosity"):
        expected_limits("rate", test, grid, [0, 0], -1.0)
    with pytest.raises(InputError, match="resolutions"):
        theta_grid([(-1, 1)], [3, 3])


def test_nuisance_coefficients_through_the_shifted_weights() -> None:
    reference = np.array([1.0, 2.0, 0.0])
    a, b = np.array([0.2, -0.5, 0.1]), np.array([0.05, 0.3, 0.0])
    up, down = reference * np.exp(a + b), reference * np.exp(-a + b)
    effects = NuisanceEffects.from_weights(
        ["two", "one"],
        reference,
        np.column_stack([up, up]),
        np.column_stack([down, np.full(3, np.nan)]),
    )
    np.testing.assert_allclose(effects.linear[:2, 0], a[:2], rtol=1e-12)
    np.testing.assert_allclose(effects.quadratic[:2, 0], b[:2], rtol=1e-12)
    np.testing.assert_allclose(effects.linear[:2, 1], (a + b)[:2], rtol=1e-12)  # log(w₊/w₀)
    assert effects.quadratic[:, 1].tolist() == [0.0, 0.0, 0.0]
    assert effects.linear[2].tolist() == [0.0, 0.0]  # zero reference weight: no effect
    np.testing.assert_allclose(
        effects.log_factors(np.array([[2.0, -1.0]]))[0, :2],
        (2 * a + 4 * b - (a + b))[:2],
        rtol=1e-12,
    )


def _with_norm_systematic(reference_file: Path, tmp_path: Path, size: float) -> Path:
    """The reference file plus one normalisation nuisance benchmark: w₊ = (1 + size) w_sm."""
    source = read_event_file(reference_file)
    header = source.header
    name = "norm_nuisance_param_0_benchmark_0"
    extended = dataclasses.replace(
        header,
        benchmark_names=(*header.benchmark_names, name),
        benchmark_values=np.vstack([header.benchmark_values, np.zeros((1, 2))]),
        benchmark_is_nuisance=np.append(header.benchmark_is_nuisance, True),
        benchmark_is_reference=np.append(header.benchmark_is_reference, False),
        systematics=(Systematic("norm", "norm", str(size), None),),
        nuisance_parameters=(NuisanceParameter("nuisance_param_0", "norm", name, None),),
    )
    weights = source.weights()
    weights = np.column_stack([weights, (1 + size) * weights[:, 0]])
    path = tmp_path / "with_nuisance.h5"
    write_event_file(path, extended, source.observations(), weights, source.sampling_benchmarks())
    return path


def test_profiled_rate_equals_a_one_dimensional_fit(reference_file: Path, tmp_path: Path) -> None:
    events = read_event_file(_with_norm_systematic(reference_file, tmp_path, 0.1))
    test = MorphedEvents.from_event_file(events, partitions(events.n_events, 0.2, 0.2)["test"])
    assert test.nuisance is not None and test.nuisance.names == ("nuisance_param_0",)
    np.testing.assert_allclose(test.nuisance.linear, np.log(1.1), rtol=1e-12)
    grid = theta_grid([(-20, 20), (-20, 20)], 9)
    profiled = expected_limits("rate", test, grid, [0, 0], LUMINOSITY)
    nominal = expected_limits("rate", test, grid, [0, 0], LUMINOSITY, profile_nuisance=False)
    assert nominal.nuisance_values is None and np.all(nominal.constraint == 0)
    a, n = np.log(1.1), profiled.n_events
    for k, mu in enumerate(LUMINOSITY * test.cross_sections(grid)):
        # d/dν [n log(μ e^{aν}) − μ e^{aν} − ν²/2] = a (n − μ e^{aν}) − ν = 0
        nu = optimize.brentq(lambda v, mu=mu: a * (n - mu * np.exp(a * v)) - v, -50, 50)
        total = n * (np.log(mu) + a * nu) - mu * np.exp(a * nu) - math.lgamma(n + 1) - 0.5 * nu**2
        assert profiled.nuisance_values[k, 0] == pytest.approx(nu, abs=1e-6)
        assert profiled.rate[k] + profiled.constraint[k] == pytest.approx(total, abs=1e-8)
    assert profiled.best_fit_index == nominal.best_fit_index == 40
    assert np.all(profiled.p_values >= nominal.p_values - 1e-12)  # profiling only widens
    assert np.any(profiled.test_statistic < nominal.test_statistic - 1.0)


def test_profiled_histogram_with_a_shape_systematic(dummy: dict) -> None:
    def with_shape(events: MorphedEvents) -> MorphedEvents:
        pt = events.columns(["pt_j1"])[:, 0]
        linear = 0.3 * np.tanh((pt - 150.0) / 100.0)[:, None]
        effects = NuisanceEffects(("shape",), linear, np.full_like(linear, 0.05))
        return dataclasses.replace(events, nuisance=effects)

    test, train = with_shape(dummy["test"]), with_shape(dummy["train"])
    grid = theta_grid([(-20, 20), (-20, 20)], 5)
    result = expected_limits(
        "histo", test, grid, [0, 0], LUMINOSITY, templates=train, observables=["pt_j1"]
    )
    edges = result.histograms[0].edges[0]
    w_true = test.weights(np.zeros((1, 2)))[0]
    mass, _ = np.histogram(
        np.clip(test.columns(["pt_j1"])[:, 0], edges[0], edges[-1]),
        edges,
        weights=w_true / w_true.sum(),
    )
    pt_train = np.clip(train.columns(["pt_j1"])[:, 0], edges[0], edges[-1])
    volume = bin_volumes([edges])
    n = result.n_events

    def profiled(theta: np.ndarray, nu: float) -> float:
        factor = lambda e: np.exp(e.nuisance.log_factors(np.array([[nu]]))[0])  # noqa: E731
        mu = LUMINOSITY * np.sum(test.weights(theta[None])[0] * factor(test))
        counts, _ = np.histogram(
            pt_train, edges, weights=train.weights(theta[None])[0] * factor(train)
        )
        p = np.clip(counts, 0, None) / np.clip(counts, 0, None).sum() + 1e-12
        kinematic = n * np.sum(mass * (np.log(p / p.sum()) - np.log(volume)))
        rate = n * np.log(mu) - mu - math.lgamma(n + 1)
        return kinematic + rate - 0.5 * nu**2

    for k in (0, 7, 12, 18, 24):
        fit = optimize.minimize_scalar(
            lambda v, k=k: -profiled(grid[k], v),
            bounds=(-5, 5),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert result.nuisance_values[k, 0] == pytest.approx(fit.x, abs=1e-4)
        total = result.kinematic[k] + result.rate[k] + result.constraint[k]
        assert total == pytest.approx(-fit.fun, abs=1e-7)
    with pytest.raises(InputError, match="profile_nuisance: expected False for mode 'ml'"):
        expected_limits("ml", test, grid, [0, 0], LUMINOSITY, estimator=_Identity())
