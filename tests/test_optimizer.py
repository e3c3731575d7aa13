"""FlatAdam against torch's own Adam: same trajectory, resumable state, clear refusals."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minerflow.ml.optimizer import FlatAdam


def _net(seed: int, width: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 2))


def _steps(model: nn.Module, optimizer: object, n: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(16, 3, generator=generator)
        target = torch.randn(16, 2, generator=generator)
        optimizer.zero_grad()  # type: ignore[attr-defined]
        ((model(x) - target) ** 2).mean().backward()
        optimizer.step()  # type: ignore[attr-defined]


@settings(max_examples=25, deadline=None)
@given(
    lr=st.floats(1e-4, 5e-2),
    amsgrad=st.booleans(),
    width=st.integers(1, 12),
    seed=st.integers(0, 1000),
)
def test_follows_torch_adam(lr: float, amsgrad: bool, width: int, seed: int) -> None:
    ours, theirs = _net(seed, width), _net(seed, width)
    _steps(ours, FlatAdam(ours.parameters(), lr=lr, amsgrad=amsgrad), 12, seed)
    reference = torch.optim.Adam(theirs.parameters(), lr=lr, amsgrad=amsgrad, foreach=False)
    _steps(theirs, reference, 12, seed)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_parameters_and_gradients_are_views_of_the_flat_buffers() -> None:
    model = _net(0, 4)
    optimizer = FlatAdam(model.parameters(), lr=0.1)
    _steps(model, optimizer, 1, 0)
    assert optimizer.grad.abs().sum() > 0
    first = next(model.parameters())
    assert first.data_ptr() == optimizer.values.data_ptr()
    assert first.grad is not None and first.grad.data_ptr() == optimizer.grad.data_ptr()
    before = optimizer.values.clone()
    optimizer.step()
    assert not torch.equal(before, torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    optimizer.zero_grad()
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_frozen_parameters_are_left_alone() -> None:
    model = _net(0, 4)
    frozen = model[0].weight
    frozen.requires_grad_(False)
    kept = frozen.detach().clone()
    optimizer = FlatAdam(model.parameters(), lr=0.1)
    assert optimizer.values.numel() == sum(p.numel() for p in model.parameters()) - kept.numel()
    _steps(model, optimizer, 3, 0)
    assert torch.equal(frozen, kept)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_state_dict_resumes_the_same_trajectory(amsgrad: bool) -> None:
    straight = _net(1, 5)
    optimizer = FlatAdam(straight.parameters(), lr=0.01, amsgrad=amsgrad)
    _steps(straight, optimizer, 4, 7)
    saved_model = {k: v.clone() for k, v in straight.state_dict().items()}
    saved = optimizer.state_dict()
    _steps(straight, optimizer, 4, 8)

    resumed = _net(2, 5)  # other initial weights: everything comes from the saved state
    resumed_optimizer = FlatAdam(resumed.parameters(), lr=0.5, amsgrad=amsgrad)
    resumed.load_state_dict(saved_model)
    resumed_optimizer.load_state_dict(saved)
    _steps(resumed, resumed_optimizer, 4, 8)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_refuses_foreign_state_and_mixed_parameters() -> None:
    model = _net(0, 3)
    optimizer = FlatAdam(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not the state of a FlatAdam"):
        optimizer.load_state_dict(torch.optim.Adam(_net(0, 3).parameters()).state_dict())
    with pytest.raises(ValueError, match="amsgrad"):
        optimizer.load_state_dict(
            FlatAdam(_net(0, 3).parameters(), lr=0.1, amsgrad=True).state_dict()
        )
    mixed = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    with pytest.raises(ValueError, match="one device with one dtype"):
        FlatAdam(mixed, lr=0.1)
    with pytest.raises(ValueError, match="at least one parameter"):
        FlatAdam([nn.Parameter(torch.zeros(2), requires_grad=False)], lr=0.1)
