"""Loss functions on hand-computable cases, and the method registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minerflow.errors import InputError
from minerflow.ml import losses
from minerflow.ml.methods import METHODS, get_method, method_names


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_cross_entropy_hand_values() -> None:
    # log r = log 3 -> s = 1/4: y=1 costs -log(1/4), y=0 costs -log(3/4).
    log_r = t(math.log(3.0), math.log(3.0), 0.0)
    y = t(1.0, 0.0, 1.0)
    expected = (math.log(4.0) - math.log(0.75) + math.log(2.0)) / 3
    assert losses.cross_entropy(log_r, y).item() == pytest.approx(expected, rel=1e-12)


def test_improved_cross_entropy_uses_soft_labels() -> None:
    # r(x,z) = 3 -> s(x,z) = 1/4; the loss is minimal (entropy) when log r̂ = log 3.
    r_xz = t(3.0)
    at_truth = losses.improved_cross_entropy(t(math.log(3.0)), r_xz).item()
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert at_truth == pytest.approx(entropy, rel=1e-12)
    assert losses.improved_cross_entropy(t(0.0), r_xz).item() > at_truth


def test_ratio_mse_hand_values_and_masked_means() -> None:
    # y=0 rows compare 1/r: (1-1)^2 = 0 and (1/2-1/4)^2 = 1/16 -> mean 1/32.
    # y=1 row compares r: (2-1)^2 = 1 -> mean 1.
    log_r = t(0.0, math.log(2.0), math.log(2.0))
    value = losses.ratio_mse(log_r, t(0.0, 0.0, 1.0), t(1.0, 4.0, 1.0)).item()
    assert value == pytest.approx(1.0 + 1.0 / 32.0, rel=1e-12)
    # Extra perfectly predicted y=0 rows do not dilute the y=1 term (averaged over its rows).
    more = losses.ratio_mse(
        t(0.0, math.log(2.0), math.log(2.0), 0.0, 0.0),
        t(0.0, 0.0, 1.0, 0.0, 0.0),
        t(1.0, 4.0, 1.0, 1.0, 1.0),
    ).item()
    assert more == pytest.approx(1.0 + 1.0 / 64.0, rel=1e-12)


def test_ratio_mse_clips_extremes() -> None:
    value = losses.ratio_mse(t(50.0), t(1.0), t(1.0)).item()
    assert value == pytest.approx((math.exp(10.0) - 1.0) ** 2, rel=1e-9)


def test_masked_score_mse_averages_over_selected_rows_and_components() -> None:
    score = torch.tensor([[1.0, 2.0], [0.0, 0.0], [5.0, 5.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]], dtype=torch.float64)
    mask = t(1.0, 0.0, 1.0)
    # row 0: (1 + 4)/2 = 2.5, row 2: 0 -> mean 1.25; row 1 is masked out.
    assert losses.masked_score_mse(score, target, mask).item() == pytest.approx(1.25)
    assert losses.masked_score_mse(score, target, t(0.0, 0.0, 0.0)).item() == 0.0


def test_local_score_mse() -> None:
    score = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    assert losses.local_score_mse(score, torch.zeros_like(score)).item() == pytest.approx(7.5)


@settings(max_examples=50, deadline=None)
@given(
    log_r=st.floats(-200, 200),
    r_xz=st.floats(0.0, 1e30),
    y=st.sampled_from([0.0, 1.0]),
)
def test_losses_and_gradients_stay_finite(log_r: float, r_xz: float, y: float) -> None:
    value = torch.tensor([log_r], dtype=torch.float64, requires_grad=True)
    total = (
        losses.cross_entropy(value, t(y))
        + losses.improved_cross_entropy(value, t(r_xz))
        + losses.ratio_mse(value, t(y), t(r_xz))
    )
    (gradient,) = torch.autograd.grad(total, value)
    assert math.isfinite(total.item()) and math.isfinite(gradient.item())


def test_registry_lists_terms_requirements_and_weights() -> None:
    alices = get_method("alices", "ratio")
    assert alices.term_names == ("improved_xe", "mse_score")
    assert alices.weights(10.0) == (1.0, 10.0)
    assert alices.requires == ("x", "y", "theta", "r_xz", "t_xz")
    assert get_method("carl").requires == ("x", "y", "theta")
    assert get_method("rascal2").requires[-2:] == ("t_xz0", "t_xz1")
    assert get_method("carl2").requires == ("x", "y", "theta0", "theta1")
    assert set(method_names("ratio")) == {"carl", "rolr", "alice", "alices", "rascal", "cascal"}
    assert set(method_names("score")) == {"sally", "sallino"}
    assert all(
        m.needs_score == ("t_xz" in m.requires) for m in METHODS.values() if m.family == "ratio"
    )


def test_unknown_method_lists_known_ones() -> None:
    with pytest.raises(InputError, match=r"method: expected one of .*alices.*got 'alicia'"):
        get_method("alicia")
    with pytest.raises(InputError, match=r"one of sallino, sally, got 'alices'"):
        get_method("alices", "score")


def test_missing_array_names_method_and_array() -> None:
    method = get_method("alices")
    arrays = {"x": np.ones(3), "y": np.ones(3), "theta": np.ones(3), "r_xz": np.ones(3)}
    with pytest.raises(InputError) as error:
        method.check_arrays(arrays)
    message = str(error.value)
    assert message.startswith("method alices: t_xz: expected")
    assert "\n" not in message
