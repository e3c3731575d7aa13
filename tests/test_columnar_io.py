"""Columnar I/O: toy parquet and ROOT files, real ROOT files, chunking, routes and bad input."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import skhep_testdata
import uproot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minerflow.errors import InputError
from minerflow.io.columnar import (
    ColumnarSource,
    ParquetChunkWriter,
    available_routes,
    count_rows,
    filter_columns,
    iter_chunks,
    leaf_routes,
    read_ahead,
    read_columns,
    set_ak_column,
    write_parquet,
)
from minerflow.physics.toy_events import generate_events, write_toy_dataset

ROUTES = ["Jet.pt", "Jet.eta", "Lepton.charge", "MET.pt", "weight", "event"]


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """The same 1500 signal events (seed 5) as 3 parquet files and as 3 ROOT files."""
    out = tmp_path_factory.mktemp("toy")
    return {
        fmt: write_toy_dataset(out / fmt, "signal", 1500, 5, fmt, 3) for fmt in ("parquet", "root")
    }


def test_parquet_and_root_hold_the_same_events(toy_files: dict[str, list[Path]]) -> None:
    parquet = read_columns(ColumnarSource("sig", tuple(toy_files["parquet"]), "parquet"), ROUTES)
    root = read_columns(ColumnarSource("sig", tuple(toy_files["root"]), "root"), ROUTES)
    assert len(parquet) == len(root) == 1500
    for route in ROUTES:
        a, b = parquet, root
        for part in route.split("."):
            a, b = a[part], b[part]
        assert ak.all(ak.flatten(a, axis=None) == ak.flatten(b, axis=None)), route
    # the event ids run 1..1500 across the three files
    assert np.array_equal(ak.to_numpy(parquet.event), np.arange(1, 1501))


@pytest.mark.parametrize("fmt", ["parquet", "root"])
def test_only_requested_columns_are_returned(toy_files: dict[str, list[Path]], fmt: str) -> None:
    events = read_columns(ColumnarSource("sig", tuple(toy_files[fmt]), fmt), ["Jet.pt", "run"])
    assert sorted(leaf_routes(events)) == ["Jet.pt", "run"]
    assert str(events.type.content) == "{Jet: var * {pt: float32}, run: uint32}"


@pytest.mark.parametrize("fmt", ["parquet", "root"])
def test_glob_route_expands_to_the_collection(toy_files: dict[str, list[Path]], fmt: str) -> None:
    events = read_columns(ColumnarSource("sig", tuple(toy_files[fmt][:1]), fmt), ["Lepton.*"])
    assert sorted(leaf_routes(events)) == [
        f"Lepton.{f}" for f in ("charge", "eta", "mass", "phi", "pt")
    ]


@pytest.mark.parametrize("fmt", ["parquet", "root"])
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunk_size=st.integers(40, 800))
def test_chunked_equals_unchunked(
    toy_files: dict[str, list[Path]], fmt: str, chunk_size: int
) -> None:
    source = ColumnarSource("sig", tuple(toy_files[fmt]), fmt)
    whole = read_columns(source, ROUTES, chunk_size=10**6)
    chunks = list(iter_chunks(source, ROUTES, chunk_size=chunk_size))
    assert all(len(c.events) <= chunk_size for c in chunks)
    assert ak.to_list(ak.concatenate([c.events for c in chunks])) == ak.to_list(whole)
    # entry ranges tile every file exactly
    for index, path in enumerate(source.files):
        ranges = [(c.entry_start, c.entry_stop) for c in chunks if c.file_index == index]
        assert ranges[0][0] == 0 and ranges[-1][1] == count_rows(path, fmt)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_row_counts(toy_files: dict[str, list[Path]]) -> None:
    for fmt, files in toy_files.items():
        assert [count_rows(f, fmt) for f in files] == [500, 500, 500]


def test_real_root_file_hzz_dimuon_mass_peaks_at_the_z() -> None:
    path = Path(skhep_testdata.data_path("uproot-HZZ.root"))
    source = ColumnarSource("hzz", (path,), "root", tree="events")
    routes = ["Muon.Px", "Muon.Py", "Muon.Pz", "Muon.E", "Muon.Charge", "EventWeight"]
    chunks = list(iter_chunks(source, routes, chunk_size=500))
    assert [len(c.events) for c in chunks] == [500, 500, 500, 500, 421]
    events = ak.concatenate([c.events for c in chunks])
    direct = uproot.open(path)["events"].arrays(["Muon_Px", "EventWeight"])
    assert ak.all(ak.flatten(events.Muon.Px) == ak.flatten(direct.Muon_Px))
    assert ak.all(events.EventWeight == direct.EventWeight)
    mu = events.Muon[(ak.num(events.Muon.Px) == 2) & (ak.sum(events.Muon.Charge, axis=1) == 0)]
    e, px, py, pz = (ak.sum(mu[f], axis=1) for f in ("E", "Px", "Py", "Pz"))
    mass = np.sqrt(np.maximum(ak.to_numpy(e**2 - px**2 - py**2 - pz**2), 0))
    assert len(mass) > 1000
    assert 85 < np.median(mass) < 97


def test_real_root_file_zmumu_flat_branches() -> None:
    path = Path(skhep_testdata.data_path("uproot-Zmumu.root"))
    source = ColumnarSource("zmumu", (path,), "root", tree="events")
    events = read_columns(source, ["Run", "Event", "M"], chunk_size=1000)
    assert len(events) == count_rows(path, "root", "events") == 2304
    assert sorted(leaf_routes(events)) == ["Event", "M", "Run"]
    assert 80 < np.median(ak.to_numpy(events.M)) < 100
    assert "M" in available_routes(path, "root", "events")


def test_missing_column_names_dataset_file_and_column(toy_files: dict[str, list[Path]]) -> None:
    for fmt, files in toy_files.items():
        source = ColumnarSource("my_signal", tuple(files), fmt)
        with pytest.raises(InputError) as err:
            next(iter_chunks(source, ["Jet.pt", "Jet.btag"]))
        message = str(err.value)
        assert "\n" not in message
        assert str(files[0]) in message and "Jet.btag" in message and "my_signal" in message


def test_missing_tree_and_missing_file(tmp_path: Path, toy_files: dict[str, list[Path]]) -> None:
    with pytest.raises(InputError, match="TTree named 'tree'"):
        next(iter_chunks(ColumnarSource("s", (toy_files["root"][0],), "root", "tree"), ["event"]))
    with pytest.raises(InputError, match="event file of dataset 'gone'"):
        next(iter_chunks(ColumnarSource("gone", (tmp_path / "x.parquet",)), ["event"]))
    with pytest.raises(InputError, match="dataset 'empty': files: expected at least one"):
        ColumnarSource("empty", ())


def test_write_parquet_round_trip_and_atomic_writer(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    events = generate_events("background", 50, rng)
    path = write_parquet(tmp_path / "out.parquet", events)
    back = read_columns(ColumnarSource("b", (path,)), ["Jet.pt", "MET.phi", "event"])
    assert ak.to_list(back.Jet.pt) == ak.to_list(events.Jet.pt)
    with ParquetChunkWriter(tmp_path / "chunks.parquet") as writer:
        writer.write(events[:20])
        writer.write(events[20:])
    assert count_rows(tmp_path / "chunks.parquet", "parquet") == 50
    # a failure while writing leaves the previous file untouched and no temporary file behind
    with pytest.raises(RuntimeError), ParquetChunkWriter(tmp_path / "chunks.parquet") as writer:
        writer.write(events[:5])
        raise RuntimeError("interrupted")
    assert count_rows(tmp_path / "chunks.parquet", "parquet") == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunks.parquet", "out.parquet"]


def test_empty_file_gives_one_empty_chunk(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_parquet(tmp_path / "empty.parquet", generate_events("signal", 0, rng))
    chunks = list(iter_chunks(ColumnarSource("e", (path,)), ["Jet.pt", "event"]))
    assert len(chunks) == 1 and len(chunks[0].events) == 0
    assert sorted(leaf_routes(chunks[0].events)) == ["Jet.pt", "event"]


def test_set_and_filter_columns() -> None:
    events = ak.Array([{"a": 1, "b": {"c": [1.0, 2.0]}}, {"a": 2, "b": {"c": []}}])
    events = set_ak_column(events, "model.score", np.array([0.25, 0.75]))
    events = set_ak_column(events, "model.n", 3)
    assert ak.to_list(events.model.score) == [0.25, 0.75]
    assert ak.to_list(events.model.n) == [3, 3]
    kept = filter_columns(events, ["model.score", "b"])
    assert sorted(leaf_routes(kept)) == ["b.c", "model.score"]
    with pytest.raises(InputError, match=r"model\.nope"):
        filter_columns(events, ["model.nope"])


@pytest.mark.parametrize("fmt", ["parquet", "root"])
def test_prefetched_chunks_equal_plain_chunks(toy_files: dict[str, list[Path]], fmt: str) -> None:
    source = ColumnarSource("sig", tuple(toy_files[fmt]), fmt)
    plain = list(iter_chunks(source, ROUTES, chunk_size=300))
    ahead = list(iter_chunks(source, ROUTES, chunk_size=300, prefetch=True))
    assert [(c.file_index, c.entry_start, c.entry_stop) for c in ahead] == [
        (c.file_index, c.entry_start, c.entry_stop) for c in plain
    ]
    assert all(
        ak.to_list(a.events) == ak.to_list(b.events) for a, b in zip(ahead, plain, strict=True)
    )
    # a missing column is still an error naming it, raised in the consumer
    with pytest.raises(InputError, match=r"Jet\.btag"):
        next(iter_chunks(source, ["Jet.btag"], prefetch=True))


def test_read_ahead_keeps_order_raises_in_order_and_stops_early() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def items(fail_at: int | None) -> Iterator[int]:
        try:
            for i in range(1000):
                if i == fail_at:
                    raise ValueError(f"item {i}")
                produced.append(i)
                yield i
        finally:
            closed.set()

    assert list(read_ahead(items(None))) == list(range(1000))
    got: list[int] = []
    with pytest.raises(ValueError, match="item 7"):
        for item in read_ahead(items(7)):
            got.append(item)
    assert got == list(range(7))  # everything before the failure arrived first
    produced.clear()
    closed.clear()
    reader = read_ahead(items(None))
    assert [next(reader), next(reader)] == [0, 1]
    reader.close()  # the consumer stops: the producer stops too, a few items ahead at most
    assert closed.is_set() and len(produced) <= 5


def test_writer_uses_dictionaries_only_where_they_pay(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    events = generate_events("signal", 3000, rng)
    with ParquetChunkWriter(tmp_path / "e.parquet") as writer:
        writer.write(events)
    group = pq.ParquetFile(tmp_path / "e.parquet").metadata.row_group(0)
    encodings = {
        group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)
    }
    dictionary = {path for path, enc in encodings.items() if "RLE_DICTIONARY" in enc}
    # small integers (run, lumi block, charge) yes; floats and 64-bit event ids no
    assert dictionary == {"run", "luminosityBlock", "Lepton.list.element.charge"}
    back = read_columns(ColumnarSource("e", (tmp_path / "e.parquet",)), ["Jet.pt", "event"])
    assert ak.to_list(back.Jet.pt) == ak.to_list(events.Jet.pt)
