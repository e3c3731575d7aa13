"""Fisher information: MadMiner's reference matrices, exact identities, and the toy's truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from minerflow.errors import InputError
from minerflow.io.madminer_file import read_event_file
from minerflow.physics import toy
from minerflow.physics.fisher import (
    cell_information,
    histogram_information,
    linearized_contour,
    profile_information,
    project_information,
    rate_information,
    score_information,
    truth_information,
)
from minerflow.physics.sampling import partitions
from minerflow.physics.weighted_events import MorphedEvents
from toy_quadrature import quadrature_events

LUMINOSITY = 1e4
SM = np.zeros(2)


@pytest.fixture(scope="module")
def all_events(reference_file: Path) -> MorphedEvents:
    """Every event of the reference file with k-factors (MadMiner's FisherInformation input)."""
    return MorphedEvents.from_event_file(read_event_file(reference_file))


def _psd(matrix: np.ndarray, tolerance: float = 1e-10) -> bool:
    return bool(np.linalg.eigvalsh(matrix).min() >= -tolerance * np.abs(matrix).max())


def test_reference_matrices_of_madminer(all_events: MorphedEvents) -> None:
    # MadMiner 0.9.6 on dummy_data.h5 at θ = (0, 0), L = 1e4 pb⁻¹ (notes sec. 5.2)
    cases = {
        "truth": (
            truth_information(all_events, SM, LUMINOSITY),
            [[7.277685, 0.041602], [0.041602, 6.501139]],
        ),
        "rate": (
            rate_information(all_events, SM, LUMINOSITY),
            [[1.421815, -0.081916], [-0.081916, 0.004719]],
        ),
        # input.yml's fisher_information: pt_j1, bins [30, 100, 200, 400] (+ under/overflow)
        "histo": (
            histogram_information(
                all_events, SM, LUMINOSITY, ["pt_j1"], [30.0, 100.0, 200.0, 400.0]
            ),
            [[3.551073, 0.160078], [0.160078, 0.047829]],
        ),
        "histo 10": (
            histogram_information(all_events, SM, LUMINOSITY, ["pt_j1"], 10, (30.0, 400.0)),
            [[3.880183, 0.096755], [0.096755, 0.195352]],
        ),
    }
    for name, (ours, reference) in cases.items():
        np.testing.assert_allclose(ours, reference, atol=2e-6, err_msg=name)


def test_cell_information_by_hand() -> None:
    sigma = np.array([2.0, 0.0, -1.0, 4.0])
    gradients = np.array([[1.0, 0.0], [5.0, 5.0], [7.0, 7.0], [2.0, 2.0]])
    # cells with σ ≤ 0 carry nothing: 10 (1/2 [1,0][1,0]ᵀ + 1/4 [2,2][2,2]ᵀ)
    np.testing.assert_allclose(
        cell_information(sigma, gradients, 10.0), [[15.0, 10.0], [10.0, 10.0]], rtol=1e-12
    )


def test_one_bin_is_the_rate_and_refining_bins_never_loses_information(
    all_events: MorphedEvents,
) -> None:
    rate = rate_information(all_events, SM, LUMINOSITY)
    one_bin = histogram_information(all_events, SM, LUMINOSITY, ["pt_j1"], [-1e9, 1e9])
    np.testing.assert_allclose(one_bin, rate, rtol=1e-12)  # under/overflow are empty here
    truth = truth_information(all_events, SM, LUMINOSITY)
    coarse = histogram_information(all_events, SM, LUMINOSITY, ["pt_j1"], [100.0, 300.0])
    fine = histogram_information(all_events, SM, LUMINOSITY, ["pt_j1"], [50.0, 100.0, 200.0, 300.0])
    two_d = histogram_information(
        all_events,
        SM,
        LUMINOSITY,
        ["pt_j1", "delta_phi_jj"],
        [[50.0, 100.0, 200.0, 300.0], [-1.0, 0.0, 1.0]],
    )
    for smaller, larger in ((rate, coarse), (coarse, fine), (fine, two_d), (two_d, truth)):
        assert _psd(larger - smaller)


def test_adaptive_histogram_information_covers_every_event(all_events: MorphedEvents) -> None:
    info = histogram_information(all_events, SM, LUMINOSITY, ["pt_j1"], 10)
    assert _psd(info - rate_information(all_events, SM, LUMINOSITY))
    assert _psd(truth_information(all_events, SM, LUMINOSITY) - info)


class _JointScore:
    """Returns each event's joint score t(x,z) = ∇dσ_e/dσ_e − ∇σ/σ, looked up by its x."""

    def __init__(self, events: MorphedEvents, theta: np.ndarray) -> None:
        sigma = events.weights(theta[None])[0]
        grad = events.weight_gradients(theta[None])[0].T
        t = grad / sigma[:, None] - grad.sum(0) / sigma.sum()
        self.by_x = {
            row.tobytes(): score for row, score in zip(events.observations, t, strict=True)
        }

    def evaluate_score(self, x: np.ndarray) -> np.ndarray:
        return np.array([self.by_x[row.tobytes()] for row in np.asarray(x)])


def test_score_information_with_the_joint_score_is_the_truth(reference_file: Path) -> None:
    # n Σ ŵ t tᵀ + rate = L Σ ∇dσ∇dσᵀ/dσ − L∇σ∇σᵀ/σ + L∇σ∇σᵀ/σ: exactly the truth information
    events = read_event_file(reference_file)
    test = MorphedEvents.from_event_file(events, partitions(events.n_events, 0.2, 0.2)["test"])
    theta = np.array([0.5, -1.0])
    estimator = _JointScore(test, theta)
    info = score_information(estimator, test, theta, LUMINOSITY, batch_size=100)
    np.testing.assert_allclose(info, truth_information(test, theta, LUMINOSITY), rtol=1e-9)
    kinematic = score_information(estimator, test, theta, LUMINOSITY, include_rate=False)
    np.testing.assert_allclose(
        kinematic + rate_information(test, theta, LUMINOSITY), info, rtol=1e-9
    )


@pytest.fixture(scope="module")
def quadrature() -> MorphedEvents:
    return quadrature_events()


@pytest.mark.parametrize("theta", [(0.0, 0.0), (0.3, -0.2)])
def test_truth_information_is_the_curvature_of_the_exact_expected_likelihood(
    quadrature: MorphedEvents, theta: tuple[float, float]
) -> None:
    # on quadrature "events" the truth information is the observables' information; it must
    # equal minus the Hessian of the toy's exact Asimov log-likelihood at θ_true = θ
    theta = np.asarray(theta)
    info = truth_information(quadrature, theta, toy.DEFAULT_LUMINOSITY)
    scale = np.abs(info).max()
    exact = toy.fisher_information(theta, toy.DEFAULT_LUMINOSITY)
    np.testing.assert_allclose(info, exact, rtol=1e-6, atol=1e-9 * scale)
    h = 1e-3
    shifts = theta + np.array([[a, b] for a in (-h, 0, h) for b in (-h, 0, h)])
    llr = toy.expected_log_likelihood_ratio(shifts, theta, toy.DEFAULT_LUMINOSITY).reshape(3, 3)
    d00 = llr[2, 1] - 2 * llr[1, 1] + llr[0, 1]
    d11 = llr[1, 2] - 2 * llr[1, 1] + llr[1, 0]
    d01 = (llr[2, 2] - llr[2, 0] - llr[0, 2] + llr[0, 0]) / 4
    hessian = np.array([[d00, d01], [d01, d11]]) / h**2
    np.testing.assert_allclose(info, -hessian, rtol=1e-4, atol=1e-4 * scale)


def test_truth_information_of_toy_events_estimates_the_joint_information(tmp_path: Path) -> None:
    # weighted events carry the parton-level (joint) information; 30k events: a few % MC error
    events = read_event_file(toy.write_event_file(tmp_path / "toy.h5", n_events=30_000, seed=5))
    info = truth_information(MorphedEvents.from_event_file(events), SM, toy.DEFAULT_LUMINOSITY)
    joint = toy.DEFAULT_TOY.joint_fisher_information(SM, toy.DEFAULT_LUMINOSITY)
    np.testing.assert_allclose(info, joint, rtol=0.05, atol=0.03 * np.abs(joint).max())
    assert _psd(joint - toy.fisher_information(SM, toy.DEFAULT_LUMINOSITY))


def test_linearized_contour_is_the_chi2_ellipse() -> None:
    info = np.array([[4.0, 1.0], [1.0, 2.0]])
    centre = np.array([0.3, -0.1])
    points = linearized_contour(info, centre, confidence_level=0.95, n_points=50)
    d = points - centre
    q = np.einsum("ni,ij,nj->n", d, info, d)
    np.testing.assert_allclose(q, -2 * np.log(0.05), rtol=1e-12)  # χ²₂ quantile
    np.testing.assert_allclose(q, stats.chi2.ppf(0.95, 2), rtol=1e-12)
    with pytest.raises(InputError, match="positive-definite"):
        linearized_contour(np.array([[1.0, 1.0], [1.0, 1.0]]), centre)


def test_project_and_profile() -> None:
    info = np.array([[4.0, 2.0, 0.0], [2.0, 3.0, 1.0], [0.0, 1.0, 2.0]])
    assert project_information(info, [0, 2]).tolist() == [[4.0, 0.0], [0.0, 2.0]]
    # profiling parameter 1 and 2 out of 0: 4 - [2, 0] [[3, 1], [1, 2]]⁻¹ [2, 0]ᵀ = 4 - 8/5
    assert profile_information(info, [0])[0, 0] == pytest.approx(4 - 8 / 5, rel=1e-12)
    # profiled information equals the inverse of the covariance's sub-block
    sub = np.linalg.inv(np.linalg.inv(info)[np.ix_([0, 1], [0, 1])])
    np.testing.assert_allclose(profile_information(info, [0, 1]), sub, rtol=1e-12)
