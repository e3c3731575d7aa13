"""Columnar event files (parquet, ROOT TTrees) read in chunks as awkward arrays.

Columns are addressed by *routes*: dotted paths such as ``"Jet.pt"`` (the ``pt`` field of the
jagged ``Jet`` collection) or ``"MET.pt"``. Only the requested routes are read, so a model that
uses five columns of a NanoAOD-like file pays for five columns. In ROOT files a route
``"Jet.pt"`` is the branch ``Jet_pt`` (the NanoAOD naming) or a branch literally named
``Jet.pt``; an exact branch name (``"Jet_Px"``) also works. Routes may be glob patterns
(``"Jet.*"``), expanded against the columns the file has.

Outputs are written with :func:`write_parquet` or :class:`ParquetChunkWriter`, both atomic.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import awkward as ak
import numpy as np

from minerflow.errors import InputError
from minerflow.io.atomic import atomic_path

__all__ = [
    "Chunk",
    "ColumnarSource",
    "ParquetChunkWriter",
    "available_routes",
    "count_rows",
    "filter_columns",
    "get_ak_column",
    "has_ak_column",
    "iter_chunks",
    "leaf_routes",
    "read_ahead",
    "read_columns",
    "set_ak_column",
    "write_parquet",
]

Format = Literal["parquet", "root"]
T = TypeVar("T")
_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 1}


# --------------------------------------------------------------------------- routes
def _empty_records(n: int) -> ak.Array:
    return ak.Array(ak.contents.RecordArray([], [], length=n))


def _parts(route: str | Sequence[str]) -> tuple[str, ...]:
    return tuple(route.split(".")) if isinstance(route, str) else tuple(route)


def has_ak_column(events: ak.Array, route: str | Sequence[str]) -> bool:
    """Whether ``events`` holds the column ``route`` (a dotted path of record fields)."""
    array = events
    for part in _parts(route):
        if part not in ak.fields(array):
            return False
        array = array[part]
    return True


def get_ak_column(events: ak.Array, route: str | Sequence[str]) -> ak.Array:
    """The column at ``route``; a missing route raises ``InputError`` listing what exists."""
    if not has_ak_column(events, route):
        known = ", ".join(leaf_routes(events)) or "no columns"
        raise InputError("events", ".".join(_parts(route)), f"an existing column; have {known}")
    array = events
    for part in _parts(route):
        array = array[part]
    return array


def set_ak_column(events: ak.Array, route: str | Sequence[str], value: Any) -> ak.Array:
    """Return ``events`` with ``value`` stored at ``route``, creating parent records as needed.

    Awkward arrays are immutable, so this returns a new array (like columnflow's helper of the
    same name, so ported models keep working). Scalars are broadcast to every event.
    """
    parts = _parts(route)
    if len(parts) == 1:
        return ak.with_field(events, value, parts[0])
    head, rest = parts[0], parts[1:]
    inner = events[head] if head in ak.fields(events) else _empty_records(len(events))
    return ak.with_field(events, set_ak_column(inner, rest, value), head)


def leaf_routes(events: ak.Array) -> list[str]:
    """All leaf columns of ``events`` as dotted routes, in field order."""
    routes: list[str] = []

    def walk(array: ak.Array, prefix: tuple[str, ...]) -> None:
        fields = ak.fields(array)
        if not fields and prefix:
            routes.append(".".join(prefix))
        for field in fields:
            walk(array[field], (*prefix, field))

    walk(events, ())
    return routes


def filter_columns(events: ak.Array, routes: Iterable[str | Sequence[str]]) -> ak.Array:
    """Keep only ``routes`` (a route to a record keeps the whole record); missing -> error."""
    tree: dict[str, Any] = {}
    for route in routes:
        node = tree
        parts = _parts(route)
        for i, part in enumerate(parts):
            if node.get(part) is True:
                break
            node = node.setdefault(part, True if i == len(parts) - 1 else {})
            if node is True:
                break

    def build(array: ak.Array, spec: dict[str, Any], prefix: tuple[str, ...]) -> ak.Array:
        contents = {}
        for field, sub in spec.items():
            route = (*prefix, field)
            if field not in ak.fields(array):
                known = ", ".join(leaf_routes(events)) or "no columns"
                raise InputError("events", ".".join(route), f"an existing column; have {known}")
            contents[field] = array[field] if sub is True else build(array[field], sub, route)
        return ak.zip(contents, depth_limit=1) if contents else _empty_records(len(array))

    return build(events, tree, ())


# --------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class ColumnarSource:
    """A dataset's event files: its name (for messages), files, format and ROOT tree name."""

    name: str
    files: tuple[Path, ...]
    format: Format = "parquet"
    tree: str = "Events"

    def __post_init__(self) -> None:
        if self.format not in ("parquet", "root"):
            raise InputError(f"dataset '{self.name}'", "format", "'parquet' or 'root'")
        if not self.files:
            raise InputError(f"dataset '{self.name}'", "files", "at least one event file")
        object.__setattr__(self, "files", tuple(Path(f) for f in self.files))


@dataclass(frozen=True)
class Chunk:
    """One chunk of events and where it came from (file index and entry range in that file)."""

    events: ak.Array
    file_index: int
    path: Path
    entry_start: int
    entry_stop: int


def _missing_file(source: ColumnarSource | None, path: Path) -> InputError:
    name = f"dataset '{source.name}'" if source else "columnar file"
    return InputError(path, "file", f"an existing event file of {name}")


def _root_tree(path: Path, tree: str, source: ColumnarSource | None) -> Any:
    import uproot

    if not path.exists():
        raise _missing_file(source, path)
    handle = uproot.open(path)
    if tree not in handle:
        trees = ", ".join(sorted({k.split(";")[0] for k in handle.keys(recursive=False)}))
        raise InputError(path, tree, f"a TTree named '{tree}'; the file has {trees or 'none'}")
    return handle[tree]


def _root_branch_routes(ttree: Any) -> dict[str, str]:
    """Map each addressable route of a TTree to its branch name (NanoAOD ``X_y`` -> ``X.y``)."""
    routes: dict[str, str] = {}
    for branch in ttree.keys(recursive=True, full_paths=False):
        routes.setdefault(branch, branch)
        if "_" in branch and "." not in branch:
            collection, field = branch.split("_", 1)
            routes.setdefault(f"{collection}.{field}", branch)
    return routes


def _arrow_leaves(schema: Any, item: str | None = None) -> Iterator[tuple[str, str, Any]]:
    """``(route, parquet column path, arrow type)`` of every leaf of an arrow schema.

    ``item`` names list elements in the paths (a parquet writer names them ``element``
    whatever the arrow schema says); by default the schema's own name.
    """
    import pyarrow as pa

    def walk(dtype: Any, route: tuple[str, ...], path: tuple[str, ...]) -> Iterator[Any]:
        if pa.types.is_struct(dtype):
            for i in range(dtype.num_fields):
                child = dtype.field(i)
                yield from walk(child.type, (*route, child.name), (*path, child.name))
        elif pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
            name = item or dtype.value_field.name
            yield from walk(dtype.value_type, route, (*path, "list", name))
        else:
            yield ".".join(route), ".".join(path), dtype

    for field in schema:
        yield from walk(field.type, (field.name,), (field.name,))


def _arrow_routes(schema: Any) -> dict[str, str]:
    """Map each leaf route of a parquet file's arrow schema to its parquet column path."""
    return {route: path for route, path, _ in _arrow_leaves(schema)}


def _file_routes(
    path: Path, fmt: Format, tree: str, source: ColumnarSource | None
) -> dict[str, str]:
    if fmt == "root":
        return _root_branch_routes(_root_tree(path, tree, source))
    import pyarrow.parquet as pq

    if not path.exists():
        raise _missing_file(source, path)
    return _arrow_routes(pq.ParquetFile(path).schema_arrow)


def available_routes(
    path: str | os.PathLike[str], format: Format, tree: str = "Events"
) -> list[str]:
    """The routes a file offers (for ROOT: branch names and their ``X.y`` forms)."""
    return sorted(_file_routes(Path(path), format, tree, None))


def _resolve(
    requested: Iterable[str], offered: dict[str, str], path: Path, source: ColumnarSource | None
) -> dict[str, str]:
    """Requested routes (patterns expanded) -> file column names; a missing one is an error."""
    resolved: dict[str, str] = {}
    where = f" of dataset '{source.name}'" if source else ""
    for route in requested:
        if any(c in route for c in "*?["):
            matches = [r for r in offered if fnmatch.fnmatchcase(r, route)]
            if not matches:
                raise InputError(path, route, f"columns matching '{route}' in this file{where}")
            for match in matches:
                resolved.setdefault(match, offered[match])
        elif route in offered:
            resolved.setdefault(route, offered[route])
        else:
            near = ", ".join(sorted(offered)[:12])
            raise InputError(
                path, route, f"column '{route}' in this file{where}; it has {near}, ..."
            )
    # a pattern may match both "Jet.pt" and "Jet_pt" (the same branch): keep the dotted route
    by_column: dict[str, str] = {}
    for route, column in resolved.items():
        if column not in by_column or "." in route:
            by_column[column] = route
    return {route: column for column, route in by_column.items()}


def _strip_options(layout: Any, **_: Any) -> Any:
    """Drop option types that hold no missing value (arrow marks every nested field nullable)."""
    complete = layout.is_option and bool(np.all(layout.mask_as_bool(valid_when=True)))
    return ak.transform(_strip_options, layout.project(), highlevel=False) if complete else None


def _assemble(leaves: dict[str, ak.Array], n: int) -> ak.Array:
    """Build one record array from leaf columns keyed by route (same-collection leaves zipped)."""
    tree: dict[str, Any] = {}
    for route, array in leaves.items():
        node = tree
        parts = route.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = array

    def build(spec: dict[str, Any]) -> ak.Array:
        contents = {k: build(v) if isinstance(v, dict) else v for k, v in spec.items()}
        try:
            return ak.zip(contents)
        except ValueError:  # fields of one record with different jaggedness
            return ak.zip(contents, depth_limit=1)

    if not tree:
        return _empty_records(n)
    return ak.zip(
        {k: build(v) if isinstance(v, dict) else v for k, v in tree.items()}, depth_limit=1
    )


def count_rows(path: str | os.PathLike[str], format: Format, tree: str = "Events") -> int:
    """Number of events in one file, from metadata only (nothing is read)."""
    path = Path(path)
    if format == "root":
        return int(_root_tree(path, tree, None).num_entries)
    import pyarrow.parquet as pq

    if not path.exists():
        raise _missing_file(None, path)
    return int(pq.ParquetFile(path).metadata.num_rows)


def _iter_file(
    path: Path,
    fmt: Format,
    tree: str,
    routes: Sequence[str],
    chunk_size: int,
    source: ColumnarSource | None,
) -> Iterator[tuple[ak.Array, int, int]]:
    offered = _file_routes(path, fmt, tree, source)
    columns = _resolve(routes, offered, path, source)
    if fmt == "root":
        ttree = _root_tree(path, tree, source)
        total = int(ttree.num_entries)
        branches = sorted(set(columns.values()))
        for start in range(0, max(total, 1), chunk_size):
            stop = min(start + chunk_size, total)
            raw = ttree.arrays(branches, entry_start=start, entry_stop=stop, library="ak")
            leaves = {route: raw[column] for route, column in columns.items()}
            yield _assemble(leaves, stop - start), start, stop
            if stop >= total:
                break
        return
    import pyarrow.parquet as pq

    # pre_buffer (pyarrow's default) keeps every row group it read cached until the file is
    # closed: memory would grow with the file (~65 MB per 10^6 toy events), not the chunk
    pfile = pq.ParquetFile(path, pre_buffer=False)
    start = 0
    paths = sorted(set(columns.values()))
    if not paths:  # only the row count is wanted
        total = pfile.metadata.num_rows
        for begin in range(0, total, chunk_size):
            stop = min(begin + chunk_size, total)
            yield _assemble({}, stop - begin), begin, stop
        return
    batches = pfile.iter_batches(batch_size=chunk_size, columns=paths, use_threads=True)
    if pfile.metadata.num_rows == 0:  # still one (empty) chunk, so the column types are known
        batches = iter(pfile.read(columns=paths).to_batches() or [pfile.schema_arrow.empty_table()])
    for batch in batches:
        raw = ak.transform(_strip_options, ak.from_arrow(batch))
        leaves = {route: get_ak_column(raw, route) for route in columns}
        stop = start + len(raw)
        yield _assemble(leaves, len(raw)), start, stop
        start = stop


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """Yield ``items``, producing the next one in a background thread meanwhile.

    Decoding parquet/ROOT releases the GIL, so reading chunk i+1 overlaps the work on chunk
    i (on two cores, reading is then nearly free). At most two items wait besides the one
    in use, so memory stays bounded. Errors of the producer are raised here, in order; a
    consumer that stops early stops the producer.
    """
    slots: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                slots.put((item, None))
                if stop.is_set():
                    return
            slots.put((end, None))
        except BaseException as err:  # handed to the consumer, which re-raises it
            slots.put((end, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="minerflow-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, err = slots.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a pending put until the producer sees ``stop``
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.05)
        thread.join()


def iter_chunks(
    source: ColumnarSource,
    routes: Iterable[str],
    chunk_size: int = 100_000,
    *,
    prefetch: bool = False,
) -> Iterator[Chunk]:
    """Yield the dataset's events file by file in chunks of at most ``chunk_size`` events.

    Only ``routes`` are read; a route missing from a file raises ``InputError`` naming the
    dataset, the file and the column before any event of that file is returned. With
    ``prefetch`` the next chunk is read in a background thread (:func:`read_ahead`).
    """
    if chunk_size < 1:
        raise InputError(f"dataset '{source.name}'", "chunk_size", "a positive integer")
    routes = list(dict.fromkeys(routes))

    def chunks() -> Iterator[Chunk]:
        for index, path in enumerate(source.files):
            for events, start, stop in _iter_file(
                path, source.format, source.tree, routes, chunk_size, source
            ):
                yield Chunk(events, index, path, start, stop)

    return read_ahead(chunks()) if prefetch else chunks()


def read_columns(
    source: ColumnarSource, routes: Iterable[str], chunk_size: int = 100_000
) -> ak.Array:
    """All events of ``source`` with only ``routes``, as one array (chunks concatenated)."""
    chunks = [chunk.events for chunk in iter_chunks(source, routes, chunk_size)]
    return chunks[0] if len(chunks) == 1 else ak.concatenate(chunks)


# --------------------------------------------------------------------------- writing
def write_parquet(
    path: str | os.PathLike[str], events: ak.Array, row_group_size: int = 100_000
) -> Path:
    """Write ``events`` to one parquet file atomically (zstd) and return its path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        ak.to_parquet(events, tmp, row_group_size=row_group_size, **_PARQUET_OPTIONS)
    return target


class ParquetChunkWriter:
    """Append chunks to one parquet file that appears (atomically) only when closed cleanly.

    Used for per-fold preparation files and for evaluation outputs that stay row-aligned with
    their input file: chunks are written in order, one row group per chunk.

    >>> # with ParquetChunkWriter(path) as writer: writer.write(chunk_events)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._context = atomic_path(self.path)
        self._writer: Any = None
        self.n_rows = 0

    def __enter__(self) -> ParquetChunkWriter:
        self._tmp = self._context.__enter__()
        return self

    def write(self, events: ak.Array) -> None:
        """Append one chunk; every chunk must have the same columns and types."""
        import pyarrow.parquet as pq

        table = ak.to_arrow_table(events, extensionarray=False)
        if self._writer is None:
            # no dictionary pages for floats (scores, momenta) and 64-bit integers (event
            # ids): pyarrow would build a dictionary per page, find it useless and fall back,
            # which costs more CPU than the rest of the write and makes larger files
            import pyarrow as pa

            wide = (pa.types.is_floating, pa.types.is_int64, pa.types.is_uint64)
            leaves = _arrow_leaves(table.schema, item="element")
            coded = [path for _, path, dtype in leaves if not any(is_(dtype) for is_ in wide)]
            self._writer = pq.ParquetWriter(
                self._tmp, table.schema, use_dictionary=coded, **_PARQUET_OPTIONS
            )
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)
        self.n_rows += len(events)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._writer is not None:
            self._writer.close()
        elif exc_type is None:
            error = InputError(self.path, None, "at least one chunk written before closing")
            self._context.__exit__(InputError, error, None)
            raise error
        self._context.__exit__(exc_type, exc, tb)
