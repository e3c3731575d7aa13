"""The analysis configuration: datasets, processes and variables as ``order`` objects.

columnflow models receive ``order`` objects (``config_inst.get_dataset(...)``,
``config_inst.add_variable(...)``), so minerflow builds the same objects, either from a YAML
file validated by pydantic (schema below) or from a Python file that defines
``analysis_inst``. Datasets point to event files (parquet or ROOT TTrees); file patterns are
resolved when the files are needed, so a config can name files that a later step writes.

YAML layout (``version: 1``)::

    version: 1
    analysis: toy_analysis          # order.Analysis name
    config: toy                     # the (single) order.Config name
    campaign: {name: toy, ecm: 13}  # optional
    ml_modules: [examples.toy_model]  # modules that define MLModels (imported on demand)
    processes:
      - {name: signal, id: 1, label: "ttH", color: "#e41a1c", xsec: 0.5}
      - {name: background, id: 2, processes: [{name: tt, id: 21}]}   # children nest
    datasets:
      - {name: signal, process: signal, files: ["data/signal_*.parquet"], format: parquet}
      - {name: bkg_root, process: background, files: [bkg.root], format: root, tree: Events}
    variables:
      - {name: jet1_pt, expression: "Jet.pt", binning: [40, 0, 400], unit: GeV}

Relative file patterns are relative to the config file. The Python form is any module file
that assigns an ``order.Analysis`` holding one or more configs to ``analysis_inst``; datasets
then carry ``aux={"files": [...], "format": ..., "tree": ...}``.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import order as od
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from minerflow.errors import ConfigError, InputError
from minerflow.io.columnar import ColumnarSource

__all__ = [
    "AnalysisFile",
    "DatasetSpec",
    "ProcessSpec",
    "VariableSpec",
    "dataset_files",
    "dataset_source",
    "load_analysis",
    "ml_modules",
    "single_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProcessSpec(_Strict):
    """A physics process; ``xsec`` in pb at the campaign energy; children nest."""

    name: str
    id: int | Literal["+"] = "+"
    label: str | None = None
    color: str | tuple[int, int, int] | None = None
    xsec: float | None = None
    is_data: bool = False
    processes: tuple[ProcessSpec, ...] = ()
    aux: dict[str, Any] = Field(default_factory=dict)


class DatasetSpec(_Strict):
    """A dataset: one or more event files of one format, belonging to one or more processes."""

    name: str
    id: int | Literal["+"] = "+"
    process: str | None = None
    processes: tuple[str, ...] = ()
    files: tuple[str, ...]
    format: Literal["parquet", "root"] = "parquet"
    tree: str = "Events"
    is_data: bool = False
    aux: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_process_field(self) -> DatasetSpec:
        if self.process and self.processes:
            raise ValueError("give either 'process' or 'processes', not both")
        if not self.files:
            raise ValueError("'files' must name at least one file or pattern")
        return self

    @property
    def process_names(self) -> tuple[str, ...]:
        """The processes this dataset belongs to."""
        return (self.process,) if self.process else self.processes


class VariableSpec(_Strict):
    """A plotting variable (``order.Variable``); ``binning`` is ``[n, lo, hi]`` or edges."""

    name: str
    expression: str | None = None
    binning: tuple[float, ...] = (1, 0.0, 1.0)
    x_title: str = ""
    unit: str = "1"
    null_value: float | None = None
    y_log: bool = False
    aux: dict[str, Any] = Field(default_factory=dict)


class CampaignSpec(_Strict):
    """The data-taking period; only its name and energy (TeV) matter here."""

    name: str = "default"
    ecm: float = 13.0


class AnalysisFile(_Strict):
    """The validated content of an analysis YAML file (schema version 1)."""

    version: Literal[1] = 1
    analysis: str
    config: str = "default"
    campaign: CampaignSpec = CampaignSpec()
    ml_modules: tuple[str, ...] = ()
    processes: tuple[ProcessSpec, ...] = ()
    datasets: tuple[DatasetSpec, ...] = ()
    variables: tuple[VariableSpec, ...] = ()
    aux: dict[str, Any] = Field(default_factory=dict)


def _loc(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def _process(spec: ProcessSpec, ecm: float) -> od.Process:
    color = spec.color
    if isinstance(color, str) and color.startswith("#") and len(color) == 7:
        color = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    kwargs: dict[str, Any] = {"is_data": spec.is_data, "aux": dict(spec.aux)}
    if spec.label is not None:
        kwargs["label"] = spec.label
    if color is not None:
        kwargs["color"] = color
    if spec.xsec is not None:
        kwargs["xsecs"] = {ecm: spec.xsec}
    process = od.Process(spec.name, spec.id, **kwargs)
    for child in spec.processes:
        process.add_process(_process(child, ecm))
    return process


def _build(spec: AnalysisFile, base_dir: Path, source: Path) -> od.Analysis:
    analysis = od.Analysis(spec.analysis, 1)
    campaign = od.Campaign(spec.campaign.name, 1, ecm=spec.campaign.ecm)
    config = analysis.add_config(campaign=campaign, name=spec.config, id=1)
    for pspec in spec.processes:
        config.add_process(_process(pspec, spec.campaign.ecm))
    for dspec in spec.datasets:
        processes = []
        for name in dspec.process_names:
            if not config.has_process(name, deep=True):
                known = ", ".join(p.name for p, _, _ in config.walk_processes()) or "none"
                raise ConfigError(source, f"datasets.{dspec.name}.process", f"one of {known}")
            processes.append(config.get_process(name, deep=True))
        patterns = [str(p) if Path(p).is_absolute() else str(base_dir / p) for p in dspec.files]
        aux = {**dspec.aux, "files": patterns, "format": dspec.format, "tree": dspec.tree}
        aux["config_file"] = str(source)
        dataset = od.Dataset(
            dspec.name, dspec.id, campaign=campaign, processes=processes,
            keys=patterns, is_data=dspec.is_data, aux=aux,
        )  # fmt: skip
        config.add_dataset(dataset)
    for vspec in spec.variables:
        config.add_variable(
            name=vspec.name, expression=vspec.expression or vspec.name,
            binning=_binning(vspec.binning), x_title=vspec.x_title or vspec.name,
            unit=vspec.unit, null_value=vspec.null_value, y_log=vspec.y_log, aux=dict(vspec.aux),
        )  # fmt: skip
    analysis.set_aux("ml_modules", list(spec.ml_modules))
    analysis.set_aux("config_file", str(source))
    for key, value in spec.aux.items():
        analysis.set_aux(key, value)
    return analysis


def _binning(values: Sequence[float]) -> tuple[int, float, float] | list[float]:
    if len(values) == 3 and float(values[0]).is_integer() and values[1] < values[2]:
        return (int(values[0]), float(values[1]), float(values[2]))
    return [float(v) for v in values]


def load_analysis(path: str | os.PathLike[str]) -> od.Analysis:
    """Load an analysis config: ``.yml``/``.yaml`` (validated) or ``.py`` (``analysis_inst``).

    Every problem raises ``ConfigError`` naming the file, the key and what was expected.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(source, None, "an analysis config file (.yml, .yaml or .py)")
    if source.suffix == ".py":
        return _load_python(source)
    try:
        raw = yaml.safe_load(source.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(source, None, f"valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(raw, dict):
        raise ConfigError(source, None, "a mapping with 'analysis', 'datasets', ...")
    try:
        spec = AnalysisFile.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(source, _loc(first), first["msg"]) from err
    names = [d.name for d in spec.datasets]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(source, "datasets", f"unique dataset names, '{dup[0]}' repeats")
    return _build(spec, source.parent.resolve(), source)


def _load_python(source: Path) -> od.Analysis:
    module_spec = importlib.util.spec_from_file_location(
        f"_minerflow_analysis_{source.stem}", source
    )
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(source, None, "an importable Python file")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    analysis = getattr(module, "analysis_inst", None)
    if not isinstance(analysis, od.Analysis):
        raise ConfigError(source, "analysis_inst", "an order.Analysis assigned to 'analysis_inst'")
    if not analysis.has_aux("config_file"):
        analysis.set_aux("config_file", str(source))
    return analysis


def single_config(analysis_inst: od.Analysis, name: str | None = None) -> od.Config:
    """The config called ``name``, or the only one; an unknown name lists the known ones."""
    names = list(analysis_inst.configs.names())
    if name is None and len(names) == 1:
        return analysis_inst.get_config(names[0])
    if name in names:
        return analysis_inst.get_config(name)
    source = analysis_inst.get_aux("config_file", f"analysis '{analysis_inst.name}'")
    wanted = f"'{name}'" if name else "a config name"
    raise ConfigError(source, "config", f"{wanted} among {', '.join(names) or 'none'}")


def ml_modules(analysis_inst: od.Analysis) -> list[str]:
    """The modules the analysis names as holding its MLModels (``ml_modules``)."""
    return list(analysis_inst.get_aux("ml_modules", []))


def dataset_files(dataset_inst: od.Dataset) -> list[Path]:
    """The dataset's event files: its patterns expanded (sorted within each pattern).

    A dataset whose patterns match no file raises ``InputError`` naming it and the patterns.
    """
    patterns = list(dataset_inst.get_aux("files", dataset_inst.keys))
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        files.extend(Path(m) for m in matches if Path(m).is_file())
    if not files:
        where = dataset_inst.get_aux("config_file", "analysis config")
        raise InputError(
            where, f"datasets.{dataset_inst.name}.files",
            f"event files for dataset '{dataset_inst.name}', none match {patterns}",
        )  # fmt: skip
    return list(dict.fromkeys(files))


def dataset_source(dataset_inst: od.Dataset) -> ColumnarSource:
    """The dataset as an I/O source (files, format, tree) for :mod:`minerflow.io.columnar`."""
    return ColumnarSource(
        name=dataset_inst.name,
        files=tuple(dataset_files(dataset_inst)),
        format=dataset_inst.get_aux("format", "parquet"),
        tree=dataset_inst.get_aux("tree", "Events"),
    )
