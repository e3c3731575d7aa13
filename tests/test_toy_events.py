"""Toy columnar datasets: reproducible from a seed, ordered objects, sensible weights."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np

from minerflow.io.columnar import ColumnarSource, read_columns
from minerflow.physics.toy_events import TOY_PROCESSES, generate_events, write_toy_dataset


def test_same_seed_same_events(tmp_path: Path) -> None:
    a = write_toy_dataset(tmp_path / "a", "background", 700, seed=4, n_files=2)
    b = write_toy_dataset(tmp_path / "b", "background", 700, seed=4, n_files=2)
    c = write_toy_dataset(tmp_path / "c", "background", 700, seed=5, n_files=2)
    routes = ["Jet.pt", "Lepton.charge", "weight", "event"]
    ea, eb, ec = (read_columns(ColumnarSource("x", tuple(p)), routes) for p in (a, b, c))
    assert ak.to_list(ea) == ak.to_list(eb)
    assert ak.to_list(ea.weight) != ak.to_list(ec.weight)


def test_weights_sum_to_cross_section_times_luminosity() -> None:
    rng = np.random.default_rng(7)
    for name, proc in TOY_PROCESSES.items():
        events = generate_events(name, 20_000, rng)
        total = float(ak.sum(events.weight))
        assert abs(total / (proc.xsec * 1e5) - 1) < 0.01, name
        assert ak.all(events.Jet.pt[:, :-1] >= events.Jet.pt[:, 1:])  # leading object first
        assert ak.all(events.Jet.pt >= 25) and ak.all(abs(events.Jet.eta) < 2.5)


def test_signal_has_more_and_harder_jets() -> None:
    rng = np.random.default_rng(8)
    sig, bkg = generate_events("signal", 5000, rng), generate_events("background", 5000, rng)
    assert ak.mean(ak.num(sig.Jet.pt, axis=1)) > ak.mean(ak.num(bkg.Jet.pt, axis=1)) + 2
    assert ak.mean(ak.sum(sig.Jet.pt, axis=1)) > 1.5 * ak.mean(ak.sum(bkg.Jet.pt, axis=1))
