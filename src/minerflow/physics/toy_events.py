"""Toy columnar datasets (signal and background events) for the MLModel workflow.

Events look like a small NanoAOD: jagged ``Jet`` and ``Lepton`` collections with
``pt/eta/phi/mass`` (leptons also ``charge``), ``MET.pt/phi``, an event ``weight`` and the
identity columns ``run``, ``luminosityBlock``, ``event``. Signal (a ttH-like topology) has
more, harder and more central jets, more leptons and larger MET than background, so a
classifier can learn to separate them, but the classes overlap (not a trivial cut).

Files are written in parquet or ROOT (a TTree with NanoAOD branch names ``Jet_pt``,
``nJet``, ...), any size, chunk by chunk, from a seed: the same seed gives the same events.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from minerflow.errors import InputError
from minerflow.io.atomic import atomic_path, save_json
from minerflow.io.columnar import ParquetChunkWriter

__all__ = [
    "TOY_PROCESSES",
    "ToyProcess",
    "generate_events",
    "write_toy_analysis",
    "write_toy_dataset",
]


@dataclass(frozen=True)
class ToyProcess:
    """Distribution parameters of one toy process (GeV; cross section in pb)."""

    name: str
    id: int
    xsec: float
    mean_jets: float
    jet_pt_scale: float
    jet_eta_width: float
    mean_leptons: float
    lepton_pt_scale: float
    met_scale: float


TOY_PROCESSES: dict[str, ToyProcess] = {
    "signal": ToyProcess("signal", 1, 0.5, 6.0, 75.0, 0.7, 1.4, 45.0, 60.0),
    "background": ToyProcess("background", 2, 50.0, 3.5, 45.0, 1.0, 0.7, 30.0, 35.0),
}
_CHUNK = 200_000
_LEPTON_MASSES = np.array([0.000511, 0.10566])


def _objects(
    rng: np.random.Generator, n: int, mean: float, pt_min: float, pt_scale: float,
    eta_max: float, eta_width: float,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
    counts = rng.poisson(mean, n)
    total = int(counts.sum())
    fields = {
        "pt": (pt_min + rng.exponential(pt_scale, total)).astype(np.float32),
        "eta": (eta_max * np.tanh(rng.normal(0.0, eta_width, total))).astype(np.float32),
        "phi": rng.uniform(-np.pi, np.pi, total).astype(np.float32),
    }
    return counts, fields


def generate_events(
    process: str | ToyProcess,
    n_events: int,
    rng: np.random.Generator,
    first_event: int = 0,
    luminosity: float = 1.0e5,
    n_generated: int | None = None,
) -> ak.Array:
    """Simulate ``n_events`` toy events of ``process``.

    ``first_event`` is the index of the first event in the dataset (ids continue across
    calls); ``weight = xsec * luminosity / n_generated`` times a log-normal spread of 20 %,
    so the weights of a full dataset sum to about ``xsec * luminosity`` (``luminosity`` in
    pb^-1, default 100 fb^-1).
    """
    proc = TOY_PROCESSES[process] if isinstance(process, str) else process
    if n_events < 0:
        raise InputError(f"toy process '{proc.name}'", "n_events", "a non-negative integer")
    n = n_events
    jet_counts, jets = _objects(
        rng, n, proc.mean_jets, 25.0, proc.jet_pt_scale, 2.5, proc.jet_eta_width
    )
    jets["mass"] = (jets["pt"] * rng.uniform(0.05, 0.2, len(jets["pt"]))).astype(np.float32)
    lep_counts, leps = _objects(rng, n, proc.mean_leptons, 10.0, proc.lepton_pt_scale, 2.4, 0.9)
    flavour = rng.integers(0, 2, len(leps["pt"]))
    leps["mass"] = _LEPTON_MASSES[flavour].astype(np.float32)
    leps["charge"] = rng.choice(np.array([-1, 1], dtype=np.int32), len(leps["pt"]))

    def collection(counts: np.ndarray, fields: dict[str, np.ndarray]) -> ak.Array:
        array = ak.unflatten(ak.zip(fields), counts)
        return array[ak.argsort(array.pt, ascending=False)]

    index = np.arange(first_event, first_event + n, dtype=np.int64)
    norm = proc.xsec * luminosity / float(n_generated or max(n, 1))
    weight = norm * rng.lognormal(-0.02, 0.2, n)
    return ak.zip(
        {
            "run": np.full(n, proc.id, dtype=np.uint32),
            "luminosityBlock": (index // 1000 + 1).astype(np.uint32),
            "event": (index + 1).astype(np.uint64),
            "Jet": collection(jet_counts, jets),
            "Lepton": collection(lep_counts, leps),
            "MET": ak.zip(
                {
                    "pt": rng.exponential(proc.met_scale, n).astype(np.float32),
                    "phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
                }
            ),
            "weight": weight.astype(np.float32),
        },
        depth_limit=1,
    )


def _file_chunks(
    proc: ToyProcess, n_total: int, n_files: int, seed: int, file_index: int
) -> Iterator[ak.Array]:
    """The events of one file, in chunks, from a generator seeded by (seed, process, file)."""
    bounds = np.linspace(0, n_total, n_files + 1).astype(np.int64)
    begin, end = int(bounds[file_index]), int(bounds[file_index + 1])
    rng = np.random.default_rng([seed, proc.id, file_index])
    for start in range(begin, max(end, begin + 1), _CHUNK):
        stop = min(start + _CHUNK, end)
        yield generate_events(proc, stop - start, rng, first_event=start, n_generated=n_total)


def _write_root(path: Path, chunks: Iterator[ak.Array], tree: str) -> None:
    import uproot

    with atomic_path(path) as tmp, uproot.recreate(tmp) as handle:
        ttree = None
        for events in chunks:
            branches = {field: events[field] for field in ak.fields(events)}
            if ttree is None:
                types = {name: array.type.content for name, array in branches.items()}
                ttree = handle.mktree(
                    tree, types, counter_name=lambda name: f"n{name}",
                    field_name=lambda outer, inner: f"{outer}_{inner}",
                )  # fmt: skip
            ttree.extend(branches)


def write_toy_dataset(
    directory: str | os.PathLike[str],
    process: str,
    n_events: int,
    seed: int,
    format: str = "parquet",
    n_files: int = 1,
    tree: str = "Events",
) -> list[Path]:
    """Write ``n_events`` events of ``process`` into ``n_files`` files; return their paths.

    Files are named ``<process>_<i>.parquet`` or ``.root`` and written atomically. The events
    do not depend on the format: parquet and ROOT files with the same seed hold the same values.
    """
    if process not in TOY_PROCESSES:
        raise InputError("toy", "process", f"one of {', '.join(TOY_PROCESSES)}")
    if format not in ("parquet", "root") or n_files < 1:
        raise InputError("toy", "format/n_files", "'parquet' or 'root' and n_files >= 1")
    proc = TOY_PROCESSES[process]
    out = Path(directory)
    paths = []
    for index in range(n_files):
        path = out / f"{process}_{index}.{format}"
        chunks = _file_chunks(proc, n_events, n_files, seed, index)
        if format == "root":
            _write_root(path, chunks, tree)
        else:
            with ParquetChunkWriter(path) as writer:
                for events in chunks:
                    writer.write(events)
        paths.append(path)
    return paths


def write_toy_analysis(
    directory: str | os.PathLike[str],
    n_events: int | Sequence[int] = 10_000,
    seed: int = 1,
    format: str = "parquet",
    n_files: int = 2,
    ml_modules: Sequence[str] = (),
) -> Path:
    """Write signal and background datasets and an ``analysis.yml`` describing them.

    ``n_events`` is per dataset (one number, or ``(n_signal, n_background)``). Returns the
    path of the analysis config, which :func:`minerflow.config.analysis.load_analysis` reads.
    """
    import yaml

    out = Path(directory)
    counts = (n_events, n_events) if isinstance(n_events, int) else tuple(n_events)
    datasets, processes = [], []
    for (name, proc), count in zip(TOY_PROCESSES.items(), counts, strict=True):
        write_toy_dataset(out / "data", name, count, seed, format, n_files)
        processes.append({"name": name, "id": proc.id, "xsec": proc.xsec, "label": name})
        datasets.append(
            {"name": name, "process": name, "format": format,
             "files": [f"data/{name}_*.{format}"], "aux": {"n_events": count}}
        )  # fmt: skip
    variables = [
        {"name": "n_jet", "binning": [10, -0.5, 9.5], "x_title": "Number of jets"},
        {"name": "jet1_pt", "expression": "Jet.pt", "binning": [40, 0, 400], "unit": "GeV"},
        {"name": "met", "expression": "MET.pt", "binning": [40, 0, 400], "unit": "GeV"},
    ]
    config = {
        "version": 1, "analysis": "toy_analysis", "config": "toy",
        "campaign": {"name": "toy", "ecm": 13.0}, "ml_modules": list(ml_modules),
        "processes": processes, "datasets": datasets, "variables": variables,
    }  # fmt: skip
    path = out / "analysis.yml"
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    save_json(out / "toy_events.json", {"seed": seed, "n_events": list(counts), "format": format})
    return path
