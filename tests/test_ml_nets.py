"""Dense networks, input scaling and device selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minerflow.errors import InputError
from minerflow.ml.device import cpu_threads, select_device, training_threads
from minerflow.ml.nets import DenseNet, tanh
from minerflow.ml.scaling import Standardizer


def manual_forward(net: DenseNet, inputs: torch.Tensor, activation) -> torch.Tensor:
    hidden = inputs
    for i, linear in enumerate(net.linears):
        if i > 0:
            hidden = activation(hidden)
        hidden = hidden @ linear.weight.T + linear.bias
    return hidden


@pytest.mark.parametrize(
    ("name", "function"),
    [("tanh", torch.tanh), ("sigmoid", torch.sigmoid), ("relu", torch.relu)],
)
def test_layout_and_activation(name: str, function) -> None:
    torch.manual_seed(0)
    net = DenseNet(3, 2, (5, 4), name)
    assert [tuple(l.weight.shape) for l in net.linears] == [(5, 3), (4, 5), (2, 4)]
    assert sorted(net.state_dict()) == sorted(
        f"linears.{i}.{kind}" for i in range(3) for kind in ("weight", "bias")
    )
    inputs = torch.randn(7, 3)
    torch.testing.assert_close(net(inputs), manual_forward(net, inputs, function))


def test_dropout_only_in_training_mode() -> None:
    torch.manual_seed(0)
    net = DenseNet(2, 1, (50,), "tanh", dropout=0.5)
    inputs = torch.randn(20, 2)
    net.eval()
    torch.testing.assert_close(net(inputs), manual_forward(net, inputs, torch.tanh))
    net.train()
    assert not torch.allclose(net(inputs), manual_forward(net, inputs, torch.tanh))


def test_bad_network_options() -> None:
    with pytest.raises(InputError, match=r"activation: expected one of .*tanh.*got 'swish2'"):
        DenseNet(2, 1, (3,), "swish2")
    with pytest.raises(InputError, match="dropout"):
        DenseNet(2, 1, (3,), dropout=1.0)
    with pytest.raises(InputError, match="n_hidden"):
        DenseNet(2, 1, (3, 0))


def test_standardizer(rng: np.random.Generator) -> None:
    values = rng.normal([5.0, -3.0, 1.0], [2.0, 0.1, 0.0], size=(1000, 3))
    scaler = Standardizer.fit(values)
    scaled = scaler.transform(torch.as_tensor(values)).numpy()
    np.testing.assert_allclose(scaled[:, :2].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled[:, :2].std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(scaled[:, 2], 0.0)  # constant column: std treated as 1
    identity = Standardizer.identity(3)
    np.testing.assert_array_equal(identity.transform(torch.as_tensor(values)).numpy(), values)


def test_device_selection() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device(None).type == expected
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="device: expected one of auto, cpu, cuda, mps"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no GPU"):
            select_device("cuda")


def test_threads_for_small_steps_and_restore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINERFLOW_TORCH_THREADS", raising=False)
    assert training_threads(128, 21_000) == 1
    assert training_threads(4096, 21_000) >= 1
    monkeypatch.setenv("MINERFLOW_TORCH_THREADS", "3")
    assert training_threads(128, 21_000) == 3
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@given(values=st.lists(st.floats(-30.0, 30.0, width=32), min_size=1, max_size=50))
@settings(max_examples=50, deadline=None)
def test_tanh_without_autograd_matches_torch_tanh(values: list[float]) -> None:
    x = torch.tensor(values, dtype=torch.float32)
    with torch.no_grad():
        fast = tanh(x)
    torch.testing.assert_close(fast, torch.tanh(x), atol=3e-7, rtol=0.0)
    graded = x.clone().requires_grad_(True)
    tanh(graded).sum().backward()  # with autograd: torch's tanh, exact gradient 1 - tanh²
    torch.testing.assert_close(graded.grad, 1.0 - torch.tanh(x) ** 2)
