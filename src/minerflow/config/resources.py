"""Batch-job resources per workflow step: CPUs, memory, GPUs, wall time, partition, sbatch extras.

Three layers, later ones win: sensible defaults per step (:data:`STEP_DEFAULTS`), the
``resources:`` section of the input/config file (partial settings per step), and the command
line. The result is a :class:`Resources` whose :meth:`~Resources.sbatch_directives` become the
``#SBATCH`` lines of every job of that step. Resources never change a result, so they are not
part of any output key.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from minerflow.errors import InputError

__all__ = [
    "STEP_DEFAULTS",
    "ResourceSettings",
    "Resources",
    "StepResources",
    "add_resource_arguments",
    "resolve_resources",
    "resource_overrides",
]

# sbatch --mem: an integer with an optional unit (K, M, G, T; MiB without one)
_MEMORY = re.compile(r"^[1-9]\d*[KMGT]?$")
# sbatch --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
_WALLTIME = re.compile(r"^(\d+-\d{1,2}(:\d{1,2}){0,2}|\d+(:\d{1,2}){0,2})$")
# an extra sbatch option: --name or --name=value, one line, no directive smuggled in
_SBATCH_OPTION = re.compile(r"^--[A-Za-z][A-Za-z0-9-]*(=[^\n\r]+)?$")
# sbatch options that the typed fields own; setting them as extras would silently conflict
_OPTIONS = {
    "cpus": "--cpus",
    "memory": "--memory",
    "gpus": "--gpus",
    "gpu_type": "--gpu-type",
    "walltime": "--walltime",
    "partition": "--partition",
    "sbatch_options": "--sbatch-option",
}
_OWNED = {
    "cpus-per-task",
    "mem",
    "gres",
    "gpus",
    "time",
    "partition",
    "output",
    "error",
    "chdir",
    "job-name",
}


def _memory(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("B")
        if not _MEMORY.match(text):
            raise ValueError("a memory size such as 4000, 4G or 512M")
        return text
    return value


def _walltime(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError("a wall time of at least 1 minute")
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if not _WALLTIME.match(text) or text.strip("0:-") == "":
            raise ValueError("a wall time such as 90 (minutes), 01:30:00 or 1-12:00:00")
        return text
    return value


def _sbatch_options(value: Any) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return value
    for item in items:
        if not isinstance(item, str) or not _SBATCH_OPTION.match(item.strip()):
            raise ValueError(f"sbatch options such as --qos=short, got {item!r}")
        name = item.strip()[2:].split("=", 1)[0]
        if name in _OWNED:
            raise ValueError(f"--{name} through its own setting, not as an extra sbatch option")
    return tuple(item.strip() for item in items)


class ResourceSettings(BaseModel):
    """A partial resource request: only the fields given override the layer below."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: Annotated[int, Field(ge=1)] | None = None
    memory: str | None = None
    gpus: Annotated[int, Field(ge=0)] | None = None
    gpu_type: str | None = None
    walltime: str | None = None
    partition: str | None = None
    sbatch_options: tuple[str, ...] | None = None

    _check_memory = field_validator("memory", mode="before")(_memory)
    _check_walltime = field_validator("walltime", mode="before")(_walltime)
    _check_options = field_validator("sbatch_options", mode="before")(_sbatch_options)

    def given(self) -> dict[str, Any]:
        """The fields that were set (the ones that override)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Resources(ResourceSettings):
    """A complete resource request for one job (every field but the optional ones set)."""

    cpus: Annotated[int, Field(ge=1)] = 1
    memory: str = "2G"
    gpus: Annotated[int, Field(ge=0)] = 0
    walltime: str = "01:00:00"
    sbatch_options: tuple[str, ...] = ()

    def merged(self, *layers: ResourceSettings | None) -> Resources:
        """These resources with each layer's given fields on top, in order."""
        data = self.model_dump()
        for layer in layers:
            if layer is not None:
                data |= layer.given()
        return Resources.model_validate(data)

    def sbatch_directives(self) -> list[tuple[str, str] | str]:
        """``#SBATCH`` lines as law's job file factory takes them: ``(key, value)`` or a raw line.

        The partition is not among them: law sets it from the job config's ``partition``.
        """
        lines: list[tuple[str, str] | str] = [
            ("cpus-per-task", str(self.cpus)),
            ("mem", self.memory),
            ("time", self.walltime),
        ]
        if self.gpus:
            kind = f"{self.gpu_type}:" if self.gpu_type else ""
            lines.append(("gres", f"gpu:{kind}{self.gpus}"))
        lines.extend(f"#SBATCH {option}" for option in self.sbatch_options)
        return lines


STEP_DEFAULTS: dict[str, Resources] = {
    "sample": Resources(cpus=1, memory="4G", walltime="01:00:00"),
    "train": Resources(cpus=2, memory="4G", walltime="04:00:00"),
    "evaluate": Resources(cpus=1, memory="4G", walltime="01:00:00"),
    "reference": Resources(cpus=1, memory="4G", walltime="01:00:00"),
    "plot": Resources(cpus=1, memory="2G", walltime="00:30:00"),
    "ml_preparation": Resources(cpus=1, memory="4G", walltime="01:00:00"),
    "ml_training": Resources(cpus=2, memory="8G", walltime="04:00:00"),
    "ml_evaluation": Resources(cpus=1, memory="4G", walltime="01:00:00"),
}
"""Defaults per task step (the ``step`` of the law tasks): trainings get two cores and four
hours, anything else one core and an hour."""


class StepResources(BaseModel):
    """The ``resources:`` section of an input/config file: partial settings per step name.

    ``default`` applies to every step, a named step's settings on top of it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: ResourceSettings | None = None
    sample: ResourceSettings | None = None
    train: ResourceSettings | None = None
    evaluate: ResourceSettings | None = None
    reference: ResourceSettings | None = None
    plot: ResourceSettings | None = None
    ml_preparation: ResourceSettings | None = None
    ml_training: ResourceSettings | None = None
    ml_evaluation: ResourceSettings | None = None

    def for_step(self, step: str) -> ResourceSettings | None:
        """The configured settings of ``step`` (``default`` underneath), None if none."""
        data = self.default.given() if self.default else {}
        own = getattr(self, step, None) if step in type(self).model_fields else None
        if own is not None:
            data |= own.given()
        return ResourceSettings(**data) if data else None


def resolve_resources(
    step: str,
    config: StepResources | Mapping[str, Any] | None = None,
    overrides: ResourceSettings | None = None,
    *,
    source: str = "resources",
) -> Resources:
    """Resources of one step: its default, then the config file's settings, then overrides.

    >>> resolve_resources("train", {"train": {"gpus": 1}}).sbatch_directives()[-1]
    ('gres', 'gpu:1')
    """
    if config is not None and not isinstance(config, StepResources):
        try:
            config = StepResources.model_validate(config)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(["resources", *map(str, err["loc"])])
            raise InputError(source, key, _expected(err)) from None
    base = STEP_DEFAULTS.get(step, Resources())
    return base.merged(config.for_step(step) if config else None, overrides)


def _expected(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return f"a known setting ({', '.join(Resources.model_fields)})"
    message = str(err["msg"]).removeprefix("Value error, ")
    return message[0].lower() + message[1:] if message else "a valid value"


def add_resource_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cpus --memory --gpus --gpu-type --walltime --partition --sbatch-option``: overrides."""
    group = parser.add_argument_group("batch resources (with --workflow slurm)")
    group.add_argument("--cpus", type=int, help="CPU cores per job (sbatch --cpus-per-task)")
    group.add_argument("--memory", help="memory per job, e.g. 8G (sbatch --mem)")
    group.add_argument("--gpus", type=int, help="GPUs per job (sbatch --gres=gpu:N)")
    group.add_argument("--gpu-type", help="GPU type in the gres request, e.g. a100")
    group.add_argument("--walltime", help="wall time per job, e.g. 02:00:00 (sbatch --time)")
    group.add_argument("--partition", help="Slurm partition")
    group.add_argument(
        "--sbatch-option",
        action="append",
        dest="sbatch_options",
        metavar="OPTION",
        help="extra sbatch option, written --sbatch-option=--qos=short (repeatable)",
    )


def resource_overrides(args: argparse.Namespace | Mapping[str, Any]) -> ResourceSettings:
    """The resource options given on the command line (absent ones left unset)."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    data = {k: values.get(k) for k in ResourceSettings.model_fields if values.get(k) is not None}
    try:
        return ResourceSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError("command line", _OPTIONS[str(err["loc"][0])], _expected(err)) from None
