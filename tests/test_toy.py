"""The toy simulator against exact answers: independent integrals, closed forms, statistics."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from minerflow.errors import InputError
from minerflow.io.madminer_file import k_factors, read_event_file
from minerflow.physics import toy
from minerflow.physics.morphing import Morpher, find_components, morphing_matrix
from minerflow.physics.toy import DEFAULT_TOY as TOY

THETAS = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.5, -0.7], [-1.0, 1.0]])
theta_values = st.floats(-1.5, 1.5, allow_nan=False)


def _grid(region: tuple[tuple[float, float], ...], resolutions: tuple[int, ...]) -> np.ndarray:
    axes = [np.linspace(lo, hi, n) for (lo, hi), n in zip(region, resolutions, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))


def _random_x(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack([30.0 + rng.exponential(80.0, n) - 5.0, rng.uniform(0, np.pi, n)])


@pytest.fixture(scope="module")
def events() -> toy.ToyEvents:
    return TOY.generate(60_000, seed=11)


@pytest.fixture(scope="module")
def event_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy.write_event_file(tmp_path_factory.mktemp("toy") / "toy.h5", n_events=6_000, seed=5)


# ---------------------------------------------------------------- exactness of the likelihood


def test_density_integrates_to_one_over_observables() -> None:
    norms = TOY.integrate_observed(THETAS)
    np.testing.assert_allclose(norms, 1.0, rtol=0, atol=1e-12)


def test_quadrature_is_converged(rng: np.random.Generator) -> None:
    """Finer panels and more nodes change log p by < 1e-10 and E[log r] by < 1e-9 (rel.)."""
    fine = dataclasses.replace(
        TOY, quadrature_step=0.02, quadrature_order=12, phi_quadrature_order=64
    )
    x = np.vstack([_random_x(rng, 200), [[20.0, 0.0], [1500.0, np.pi]]])
    np.testing.assert_allclose(
        TOY.log_likelihood(x, THETAS), fine.log_likelihood(x, THETAS), rtol=0, atol=1e-10
    )
    grid = _grid(((-1, 1), (-1, 1)), (5, 5))
    np.testing.assert_allclose(
        TOY.expected_log_likelihood_ratio(grid, [0.2, -0.1], 1e4),
        fine.expected_log_likelihood_ratio(grid, [0.2, -0.1], 1e4),
        rtol=1e-9,
    )


def test_cross_section_equals_integral_of_joint_density() -> None:
    """σ(θ) in closed form against a plain linear-grid integral of dσ(z|θ)."""
    p_nodes, p_weights = np.polynomial.legendre.leggauss(8)
    edges = np.arange(30.0, 30.0 + 60 * TOY.pt_decay + 1e-9, 5.0)
    p = (0.5 * (edges[:-1] + edges[1:]))[:, None] + 2.5 * p_nodes
    w_p = np.broadcast_to(2.5 * p_weights, p.shape).ravel()
    phi, w_phi = np.polynomial.legendre.leggauss(64)
    phi, w_phi = 0.5 * np.pi * (phi + 1), 0.5 * np.pi * w_phi
    z = np.column_stack([np.repeat(p.ravel(), phi.size), np.tile(phi, p.size)])
    integral = TOY.joint_density(z, THETAS) @ np.outer(w_p, w_phi).ravel()
    np.testing.assert_allclose(integral, TOY.cross_section(THETAS), rtol=1e-10)
    assert TOY.cross_section([[0.0, 0.0]])[0] == pytest.approx(TOY.sm_cross_section, rel=1e-14)


def _folded_gaussian(x: np.ndarray, mean: np.ndarray, width: float) -> np.ndarray:
    """Density of fold(mean + width ε) on [0, π]: the reflected Gaussian images, summed."""
    images = [s * mean + 2 * np.pi * k for s in (1, -1) for k in range(-2, 3)]
    return sum(stats.norm.pdf(x, loc=m, scale=width) for m in images)


def test_likelihood_equals_direct_convolution_of_joint_density() -> None:
    """p(x|θ) = ∫ p(z|θ) N(x_pT; p, (rp)²) R(x_Δφ; φ) dz, on an independent linear z grid."""
    x = np.array([[27.0, 0.05], [45.0, 1.0], [120.0, 3.1], [300.0, 2.2]])
    p_nodes, p_weights = np.polynomial.legendre.leggauss(6)
    edges = np.arange(30.0, 1300.0 + 1e-9, 0.5)
    p = ((0.5 * (edges[:-1] + edges[1:]))[:, None] + 0.25 * p_nodes).ravel()
    w_p = np.tile(0.25 * p_weights, edges.size - 1)
    phi, w_phi = np.polynomial.legendre.leggauss(160)
    phi, w_phi = 0.5 * np.pi * (phi + 1), 0.5 * np.pi * w_phi
    z = np.column_stack([np.repeat(p, phi.size), np.tile(phi, p.size)])
    theta = np.array([[0.4, -0.8]])
    joint = (TOY.joint_density(z, theta)[0] / TOY.cross_section(theta)[0]).reshape(p.size, -1)
    for xi, expected in zip(x, np.exp(TOY.log_likelihood(x, theta)[0]), strict=True):
        pt_kernel = stats.norm.pdf(xi[0], loc=p, scale=TOY.pt_resolution * p)
        phi_kernel = _folded_gaussian(xi[1], phi, TOY.phi_resolution)
        direct = (w_p * pt_kernel) @ joint @ (w_phi * phi_kernel)
        assert direct == pytest.approx(expected, rel=1e-8)


def test_likelihood_vanishes_outside_the_angular_range() -> None:
    x = np.array([[80.0, -0.1], [80.0, np.pi + 0.1], [80.0, 1.0]])
    log_p = TOY.log_likelihood(x, THETAS[:2])
    assert np.isneginf(log_p[:, :2]).all() and np.isfinite(log_p[:, 2]).all()


# ---------------------------------------------------------------- score and ratios


@settings(max_examples=25, deadline=None)
@given(theta0=theta_values, theta1=theta_values)
def test_score_equals_finite_differences_of_log_likelihood(theta0: float, theta1: float) -> None:
    x = _random_x(np.random.default_rng(3), 50)
    theta, h = np.array([theta0, theta1]), 1e-5
    shifted = theta + h * np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
    log_p = TOY.log_likelihood(x, shifted)
    numeric = np.stack([log_p[0] - log_p[1], log_p[2] - log_p[3]], axis=-1) / (2 * h)
    np.testing.assert_allclose(TOY.score(x, theta)[0], numeric, rtol=1e-6, atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(theta0=theta_values, theta1=theta_values)
def test_joint_score_equals_finite_differences_of_joint_density(
    theta0: float, theta1: float
) -> None:
    z = np.column_stack([30 + np.random.default_rng(4).exponential(60, 50), np.linspace(0, 3, 50)])
    theta, h = np.array([theta0, theta1]), 1e-5
    shifted = theta + h * np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
    log_p = np.log(TOY.joint_density(z, shifted) / TOY.cross_section(shifted)[:, None])
    numeric = np.stack([log_p[0] - log_p[1], log_p[2] - log_p[3]], axis=-1) / (2 * h)
    np.testing.assert_allclose(TOY.joint_score(z, theta)[0], numeric, rtol=1e-6, atol=1e-7)


def test_log_ratio_is_antisymmetric_and_transitive(rng: np.random.Generator) -> None:
    x = _random_x(rng, 100)
    a, b, c = rng.uniform(-1, 1, (3, 4, 2))
    ab = toy.log_likelihood_ratio(x, a, b)
    np.testing.assert_allclose(ab, -toy.log_likelihood_ratio(x, b, a), atol=1e-12)
    bc = toy.log_likelihood_ratio(x, b, c)
    np.testing.assert_allclose(ab + bc, toy.log_likelihood_ratio(x, a, c), atol=1e-11)
    np.testing.assert_allclose(ab, toy.log_likelihood(x, a) - toy.log_likelihood(x, b), atol=1e-12)


def test_paired_forms_equal_the_diagonal_of_all_combinations(rng: np.random.Generator) -> None:
    x, z = _random_x(rng, 30), _random_x(rng, 30) + np.array([5.0, 0.0])
    theta0, theta1 = rng.uniform(-1, 1, (2, 30, 2))
    diag = np.arange(30)
    pairs = [
        (TOY.log_likelihood(x, theta0), TOY.log_likelihood(x, theta0, False)),
        (TOY.score(x, theta0), TOY.score(x, theta0, False)),
        (
            TOY.log_likelihood_ratio(x, theta0, theta1),
            TOY.log_likelihood_ratio(x, theta0, theta1, False),
        ),
        (TOY.joint_log_ratio(z, theta0, theta1), TOY.joint_log_ratio(z, theta0, theta1, False)),
        (TOY.joint_score(z, theta0), TOY.joint_score(z, theta0, False)),
    ]
    for full, paired in pairs:
        np.testing.assert_allclose(full[diag, diag], paired, rtol=1e-12, atol=1e-12)


def test_joint_quantities_differ_from_the_observed_ones(events: toy.ToyEvents) -> None:
    """Smearing loses information: t(x,z) ≠ t(x), and I(z) − I(x) is positive definite."""
    z, x = events.latent[:2000], events.observations[:2000]
    t_joint, t_obs = TOY.joint_score(z, [0.0, 0.0])[0], TOY.score(x, [0.0, 0.0])[0]
    assert np.mean(np.abs(t_joint - t_obs)) > 0.1 * np.mean(np.abs(t_obs))
    gap = TOY.joint_fisher_information([0, 0], 1e4) - toy.fisher_information([0, 0], 1e4)
    assert np.linalg.eigvalsh(gap).min() > 0


# ---------------------------------------------------------------- expected likelihood, Fisher


@pytest.mark.parametrize("include_xsec", [True, False])
@pytest.mark.parametrize("theta_true", [(0.0, 0.0), (0.3, -0.2)])
def test_expected_log_likelihood_is_maximal_with_fisher_curvature(
    include_xsec: bool, theta_true: tuple[float, float]
) -> None:
    lumi = toy.DEFAULT_LUMINOSITY
    grid = _grid(((-1, 1), (-1, 1)), (9, 9)) + theta_true
    llr = toy.expected_log_likelihood_ratio(grid, theta_true, lumi, include_xsec)
    assert llr.max() == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(grid[np.argmax(llr)], theta_true)
    h = 1e-3
    steps = h * np.array(
        [[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [1, -1], [-1, 1], [-1, -1]]
    )
    e = toy.expected_log_likelihood_ratio(
        np.asarray(theta_true) + steps, theta_true, lumi, include_xsec
    )
    hessian = (
        np.array(
            [
                [e[1] + e[2] - 2 * e[0], (e[5] - e[6] - e[7] + e[8]) / 4],
                [(e[5] - e[6] - e[7] + e[8]) / 4, e[3] + e[4] - 2 * e[0]],
            ]
        )
        / h**2
    )
    info = toy.fisher_information(theta_true, lumi, include_xsec)
    np.testing.assert_allclose(-hessian, info, rtol=1e-5, atol=1e-5 * np.abs(info).max())


def test_rate_term_is_the_poisson_log_likelihood_ratio() -> None:
    """With θ_true = SM and L = 10⁴ pb⁻¹, n = 30 events: an integer, so scipy's pmf applies."""
    lumi = 1e4
    with_rate = toy.expected_log_likelihood_ratio(THETAS, [0.0, 0.0], lumi)
    kinematic = toy.expected_log_likelihood_ratio(THETAS, [0.0, 0.0], lumi, include_xsec=False)
    mu = lumi * toy.cross_section(THETAS)
    expected = stats.poisson.logpmf(30, mu) - stats.poisson.logpmf(30, 30.0)
    np.testing.assert_allclose(with_rate - kinematic, expected, rtol=1e-9)


def test_default_limit_setting_contains_the_expected_95_percent_region() -> None:
    grid = _grid(toy.DEFAULT_LIMIT_REGION, toy.DEFAULT_LIMIT_RESOLUTIONS)
    for include_xsec in (True, False):
        p = toy.expected_p_values(
            grid, toy.DEFAULT_THETA_TRUE, toy.DEFAULT_LUMINOSITY, include_xsec
        ).reshape(toy.DEFAULT_LIMIT_RESOLUTIONS)
        inside = p > 0.05
        border = np.concatenate([inside[0], inside[-1], inside[:, 0], inside[:, -1]])
        assert not border.any(), "95% CL region touches the grid border"
        assert inside.sum() >= 25, f"95% CL region spans only {inside.sum()} grid cells"


def test_joint_fisher_information_matches_weighted_events(events: toy.ToyEvents) -> None:
    """MadMiner's truth information L Σ ∇w ∇wᵀ / w (k-factored events) estimates I(z)."""
    header = TOY.header(events.signal_events)
    morpher = header.morpher()
    k = k_factors(header, events.sampling_benchmarks)[:, None]
    w = (events.weights * k) @ morpher.weights([0.0, 0.0])[0]
    grad = (events.weights * k) @ morpher.weight_gradients([0.0, 0.0])[0].T
    estimate = 1e4 * np.einsum("ni,nj->ij", grad / w[:, None], grad)
    np.testing.assert_allclose(
        estimate, TOY.joint_fisher_information([0, 0], 1e4), rtol=0.03, atol=0.5
    )


# ---------------------------------------------------------------- event generation


def test_rejection_envelope_bounds_the_acceptance_ratio(rng: np.random.Generator) -> None:
    p = TOY.pt_min + np.concatenate([np.linspace(0, 50, 2001), np.geomspace(50, 5e4, 2000)])
    z = np.column_stack([np.repeat(p, 181), np.tile(np.linspace(0, np.pi, 181), p.size)])
    for theta in np.vstack([TOY.benchmark_values, rng.uniform(-3, 3, (6, 2))]):
        decay, bound = TOY._proposal(np.concatenate([[1.0], theta]))
        kappa = 1 / TOY.pt_decay - 1 / decay
        ratio = TOY.squared_amplitude(z, theta)[0] * np.exp(-kappa * (z[:, 0] - TOY.pt_min))
        assert ratio.max() <= bound
        assert ratio.max() > 0.2 * bound  # not so loose that sampling crawls


def _bin_probabilities(
    theta: np.ndarray, pt_edges: np.ndarray, phi_edges: np.ndarray
) -> np.ndarray:
    """∫ p(x|θ) dx over each bin: Gauss–Legendre on panels 3 % wide in pT, 8 nodes per Δφ bin."""
    nodes, node_weights = np.polynomial.legendre.leggauss(8)
    half_phi = 0.5 * np.diff(phi_edges)[:, None]
    phi = ((0.5 * (phi_edges[:-1] + phi_edges[1:]))[:, None] + half_phi * nodes).ravel()
    w_phi = (half_phi * node_weights).ravel()
    probs = np.empty((pt_edges.size - 1, phi_edges.size - 1))
    for i, (a, b) in enumerate(itertools.pairwise(pt_edges)):
        panels = np.geomspace(a, b, int(np.ceil(np.log(b / a) / 0.03)) + 1)
        half = 0.5 * np.diff(panels)[:, None]
        pt = ((0.5 * (panels[:-1] + panels[1:]))[:, None] + half * nodes).ravel()
        w_pt = (half * node_weights).ravel()
        grid = np.column_stack([np.repeat(pt, phi.size), np.tile(phi, pt.size)])
        density = np.exp(TOY.log_likelihood(grid, theta)[0]).reshape(pt.size, phi.size)
        probs[i] = ((w_pt @ density) * w_phi).reshape(phi_edges.size - 1, -1).sum(axis=1)
    return probs


def _chi2_p_value(x: np.ndarray, theta: np.ndarray, weights: np.ndarray | None = None) -> float:
    """p-value of a 2-D histogram of x (10 × 4 bins) against the exact bin probabilities."""
    inner = np.quantile(x[:, 0], np.linspace(0.1, 0.9, 9))
    pt_edges = np.concatenate([[10.0], inner, [TOY.pt_min + 60 * TOY.pt_decay]])
    phi_edges = np.linspace(0, np.pi, 5)
    probs = _bin_probabilities(theta, pt_edges, phi_edges)
    assert probs.sum() == pytest.approx(1.0, abs=1e-9)
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], [pt_edges, phi_edges], weights=weights)
    expected = counts.sum() * probs
    if weights is None:
        variance = expected
    else:
        variance, _, _ = np.histogram2d(x[:, 0], x[:, 1], [pt_edges, phi_edges], weights=weights**2)
    chi2 = ((counts - expected) ** 2 / variance).sum()
    return float(stats.chi2.sf(chi2, counts.size - 1))


@pytest.mark.parametrize("benchmark", [0, 2, 5])
def test_generated_events_follow_the_exact_likelihood(
    events: toy.ToyEvents, benchmark: int
) -> None:
    """Each run's unweighted events are distributed as p(x|θ_b) (χ² test, seeded)."""
    x = events.observations[events.sampling_benchmarks == benchmark]
    assert _chi2_p_value(x, TOY.benchmark_values[benchmark]) > 1e-3


def test_reweighted_events_follow_the_exact_likelihood(events: toy.ToyEvents) -> None:
    """Run 0 (SM) reweighted to another benchmark is distributed as p(x|θ_b')."""
    run = events.sampling_benchmarks == 0
    x, w = events.observations[run], events.weights[run, 4]
    assert _chi2_p_value(x, TOY.benchmark_values[4], weights=w) > 1e-3


def test_each_run_weights_sum_to_the_cross_sections(events: toy.ToyEvents) -> None:
    xs = toy.cross_section(np.asarray(TOY.benchmark_values))
    for b in range(len(xs)):
        run = events.weights[events.sampling_benchmarks == b]
        assert run[:, b].sum() == pytest.approx(xs[b], rel=1e-12)
        variance = (run**2).sum(axis=0) - run.sum(axis=0) ** 2 / len(run)
        error = np.sqrt(np.maximum(variance, 0.0))
        assert (np.abs(run.sum(axis=0) - xs) <= 5 * error + 1e-15).all()


def test_events_are_shuffled_with_latent_and_observed_aligned(events: toy.ToyEvents) -> None:
    ids = events.sampling_benchmarks
    assert np.bincount(ids).tolist() == events.signal_events.tolist() == [10_000] * 6
    assert len(np.unique(ids[:12])) > 1
    relative_shift = events.observations[:, 0] / events.latent[:, 0] - 1
    assert np.std(relative_shift) == pytest.approx(TOY.pt_resolution, rel=0.02)
    assert (events.latent[:, 0] >= TOY.pt_min).all()
    assert ((events.observations[:, 1] >= 0) & (events.observations[:, 1] <= np.pi)).all()


def test_generation_is_deterministic_by_seed() -> None:
    a, b, c = TOY.generate(600, seed=3), TOY.generate(600, seed=3), TOY.generate(600, seed=4)
    for field in ("latent", "observations", "weights", "sampling_benchmarks"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.observations, c.observations)


def test_a_million_events_generate_fast_and_estimate_cross_sections() -> None:
    start = time.perf_counter()
    big = TOY.generate(1_000_000, seed=2)
    elapsed = time.perf_counter() - start
    print(f"\ntoy: 1e6 events generated in {elapsed:.2f} s")
    header = TOY.header(big.signal_events)
    combined = (big.weights * k_factors(header, big.sampling_benchmarks)[:, None]).sum(axis=0)
    np.testing.assert_allclose(
        combined, toy.cross_section(np.asarray(TOY.benchmark_values)), rtol=3e-3
    )


# ---------------------------------------------------------------- joint quantities from weights


def test_morphed_file_weights_reproduce_squared_amplitudes(
    event_file: Path, rng: np.random.Generator
) -> None:
    """w(θ)·w_i = σ(θ_b)/N_b · D(z_i|θ)/D(z_i|θ_b) at random θ: morphing is exact here."""
    events = TOY.generate(6_000, seed=5)
    data = read_event_file(event_file)
    weights = data.weights()
    np.testing.assert_array_equal(data.observations(), events.observations)
    thetas = rng.uniform(-2, 2, (5, 2))
    morphed = data.header.morpher().weights(thetas) @ weights.T
    ids = data.sampling_benchmarks()
    values = np.asarray(TOY.benchmark_values)
    own = TOY.squared_amplitude(events.latent, values)[ids, np.arange(ids.size)]
    scale = toy.cross_section(values)[ids] / events.signal_events[ids] / own
    expected = scale * TOY.squared_amplitude(events.latent, thetas)
    np.testing.assert_allclose(morphed, expected, rtol=1e-10)


def test_joint_ratio_and_score_from_weights_equal_analytic(
    event_file: Path, rng: np.random.Generator
) -> None:
    """r(x,z) and t(x,z) as the sampling step computes them (morphed weights) vs analytic."""
    z = TOY.generate(6_000, seed=5).latent
    data = read_event_file(event_file)
    morpher, weights = data.header.morpher(), data.weights()
    theta0, theta1 = rng.uniform(-1, 1, 2), np.zeros(2)
    dsigma0 = weights @ morpher.weights(theta0)[0]
    dsigma1 = weights @ morpher.weights(theta1)[0]
    xs0, xs1 = toy.cross_section(theta0)[0], toy.cross_section(theta1)[0]
    r_xz = (dsigma0 / xs0) / (dsigma1 / xs1)
    np.testing.assert_allclose(np.log(r_xz), TOY.joint_log_ratio(z, theta0, theta1)[0], atol=1e-10)
    gradient = weights @ morpher.weight_gradients(theta0)[0].T
    t_xz = gradient / dsigma0[:, None] - TOY.cross_section_gradient(theta0)[0] / xs0
    np.testing.assert_allclose(t_xz, TOY.joint_score(z, theta0)[0], rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- the written file


def test_written_file_has_the_reference_layout(event_file: Path, reference_file: Path) -> None:
    def layout(path: Path) -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        with h5py.File(path, "r") as handle:
            handle.visititems(
                lambda name, obj: (
                    found.__setitem__(name, (obj.dtype.str, obj.ndim))
                    if isinstance(obj, h5py.Dataset)
                    else None
                )
            )
        return found

    assert layout(event_file) == layout(reference_file)


def test_written_file_header(event_file: Path) -> None:
    header = read_event_file(event_file).header
    assert header.parameter_names == toy.PARAMETER_NAMES
    assert header.observable_names == toy.OBSERVABLE_NAMES
    assert header.benchmark_names == toy.BENCHMARK_NAMES
    assert header.reference_benchmark_index == 0
    np.testing.assert_array_equal(header.morphing_components, find_components([2, 2]))
    np.testing.assert_allclose(
        header.morphing_matrix, morphing_matrix(find_components([2, 2]), toy.BENCHMARK_VALUES)
    )
    assert header.signal_events.tolist() == [1_000] * 6 and header.n_events == 6_000
    assert [p.val_range for p in header.parameters] == [(-1.0, 1.0)] * 2
    assert np.linalg.cond(Morpher(header.morphing_components, header.morphing_matrix).matrix) < 10


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "key"),
    [
        (lambda: toy.cross_section(np.zeros((3, 3))), "thetas"),
        (lambda: toy.log_likelihood(np.zeros((4, 3)), [0, 0]), "x"),
        (lambda: toy.score(np.ones((4, 2)), np.zeros((3, 2)), False), "thetas"),
        (lambda: toy.expected_log_likelihood_ratio(THETAS, [0, 0], -1.0), "luminosity"),
        (lambda: toy.expected_log_likelihood_ratio(THETAS, THETAS, 1.0), "theta_true"),
        (lambda: TOY.generate(3, seed=0), "n_events"),
        (lambda: toy.ToySimulator(pt_resolution=1.5), "pt_resolution"),
        (lambda: toy.ToySimulator(incoherent_fraction=0.0), "incoherent_fraction"),
        (lambda: toy.ToySimulator(benchmark_values=((1.0, 0.0),) * 6), "benchmark_values"),
    ],
)
def test_bad_input_names_the_key(call, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=f"toy simulator: {key}: expected"):
        call()
