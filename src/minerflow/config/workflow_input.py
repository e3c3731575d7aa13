"""Typed model of the workflow input file (the MadMiner workflow's ``input.yml``, accepted as is).

The file is validated up front so that a typo fails in a second with one line naming the key,
not an hour later inside a training job. Frozen pydantic models reject unknown keys; every
validation problem becomes a :class:`~minerflow.errors.ConfigError`
``"<file>: <dotted.key.path>: expected ..."``. Our own settings (``sampling``, ``training``,
``evaluation``) are optional sections whose defaults are the seed workflow's (its MLproject).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from minerflow.config.resources import StepResources
from minerflow.errors import ConfigError

if TYPE_CHECKING:
    from minerflow.io.madminer_file import EventFileHeader
    from minerflow.physics.parameters import ThetaSpec as PhysicsThetaSpec

__all__ = [
    "DENSITY_METHODS",
    "LOCAL_METHODS",
    "METHODS",
    "RATIO_METHODS",
    "STEPS",
    "AsymptoticLimits",
    "EvaluationSettings",
    "FisherInformationSettings",
    "MethodSection",
    "PlottingSettings",
    "PriorSpec",
    "SamplingSettings",
    "ThetaSpec",
    "TrainingSettings",
    "WorkflowInput",
    "default_input_path",
    "load_workflow_input",
    "parse_overrides",
]

Method = Literal[
    "carl", "rolr", "alice", "alices", "rascal", "cascal", "sally", "sallino", "nde", "scandal"
]
METHODS: tuple[str, ...] = get_args(Method)
RATIO_METHODS = frozenset({"carl", "rolr", "alice", "alices", "rascal", "cascal"})
LOCAL_METHODS = frozenset({"sally", "sallino"})
DENSITY_METHODS = frozenset({"nde", "scandal"})
STEPS = ("sampling", "training", "evaluation", "plotting")
Step = Literal["sampling", "training", "evaluation", "plotting"]

_THETA_KEY = re.compile(r"^theta_(\d+)$")


class _KeyedValueError(ValueError):
    """A ValueError from a model validator that knows the sub-key it is about."""

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(expected)
        self.key = key


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


def _one_or_many(value: Any) -> Any:
    """Let a scalar stand for a one-element list (``histogram_vars: pt_j1``)."""
    return [value] if isinstance(value, str | bool | int | float) else value


class PriorSpec(_Model):
    """Prior of one parameter for random morphing points: gaussian(mean, std) or flat(lo, hi)."""

    prior_shape: Literal["gaussian", "flat"]
    prior_param_0: float
    prior_param_1: float

    @model_validator(mode="after")
    def _check_width(self) -> PriorSpec:
        if self.prior_shape == "gaussian" and self.prior_param_1 <= 0:
            raise _KeyedValueError("prior_param_1", "a positive standard deviation")
        if self.prior_shape == "flat" and self.prior_param_1 <= self.prior_param_0:
            raise _KeyedValueError("prior_param_1", "an upper bound above prior_param_0")
        return self


class ThetaSpec(_Model):
    """One θ role (``theta_0`` / ``theta_1``) of a method: how its parameter points are chosen.

    ``sampling_arg`` depends on ``sampling_method``: a benchmark name (``benchmark``), a list of
    names (``benchmarks``), a point (``morphing_point``), a list of points (``morphing_points``);
    ``random_morphing_points`` takes ``sampling_number`` and one ``prior`` entry per parameter.
    """

    sampling_method: Literal[
        "benchmark", "benchmarks", "morphing_point", "morphing_points", "random_morphing_points"
    ]
    sampling_arg: Any = None
    sampling_number: PositiveInt | None = None
    prior: tuple[dict[str, PriorSpec], ...] | None = None

    @model_validator(mode="after")
    def _check_arguments(self) -> ThetaSpec:
        method, arg = self.sampling_method, self.sampling_arg
        if method == "random_morphing_points":
            if self.sampling_number is None:
                raise _KeyedValueError("sampling_number", "a positive number of points")
            if not self.prior:
                raise _KeyedValueError("prior", "a list with one prior per parameter")
            for i, entry in enumerate(self.prior):
                if len(entry) != 1:
                    raise _KeyedValueError(
                        f"prior[{i}]", "one key per entry, like 'parameter_0: {prior_shape: ...}'"
                    )
                (name,) = entry
                if name != f"parameter_{i}":
                    raise _KeyedValueError(f"prior[{i}].{name}", f"the key parameter_{i}")
            if arg is not None:
                raise _KeyedValueError("sampling_arg", "no sampling_arg for random_morphing_points")
            return self
        for key in ("sampling_number", "prior"):
            if getattr(self, key) is not None:
                raise _KeyedValueError(key, f"no {key} for sampling_method '{method}'")
        if method == "benchmark" and not isinstance(arg, str):
            raise _KeyedValueError("sampling_arg", "a benchmark name")
        if method == "benchmarks" and not _is_list_of(arg, str):
            raise _KeyedValueError("sampling_arg", "a non-empty list of benchmark names")
        if method == "morphing_point" and not _is_point(arg):
            raise _KeyedValueError("sampling_arg", "a parameter point, a list of numbers")
        if method == "morphing_points" and not (
            _is_list_of(arg, list) and all(_is_point(p) for p in arg)
        ):
            raise _KeyedValueError("sampling_arg", "a non-empty list of parameter points")
        return self

    @property
    def priors(self) -> tuple[tuple[str, PriorSpec], ...]:
        """The priors as ``(name, spec)`` pairs in parameter order."""
        return tuple(next(iter(entry.items())) for entry in self.prior or ())

    def to_spec(self) -> PhysicsThetaSpec:
        """Convert to the parameter-point spec of :mod:`minerflow.physics.parameters`."""
        from minerflow.physics import parameters as p

        arg = self.sampling_arg
        match self.sampling_method:
            case "benchmark":
                return p.Benchmark(arg)
            case "benchmarks":
                return p.Benchmarks(tuple(arg))
            case "morphing_point":
                return p.MorphingPoint(tuple(float(v) for v in arg))
            case "morphing_points":
                return p.MorphingPoints(tuple(tuple(float(v) for v in pt) for pt in arg))
        priors = tuple(
            p.Prior(s.prior_shape, s.prior_param_0, s.prior_param_1) for _, s in self.priors
        )
        assert self.sampling_number is not None  # checked by the validator
        return p.RandomMorphingPoints(self.sampling_number, priors)


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, kind) for v in value)


def _is_point(value: Any) -> bool:
    return _is_list_of(value, int | float) and not any(isinstance(v, bool) for v in value)


class MethodSection(_Model):
    """The θ specs of one method (``alice: {theta_0: ..., theta_1: ...}``)."""

    theta_0: ThetaSpec | None = None
    theta_1: ThetaSpec | None = None


class LimitRegion(_Model):
    """Bounds of one parameter axis of the limit grid."""

    min: float
    max: float

    @model_validator(mode="after")
    def _check_order(self) -> LimitRegion:
        if self.max <= self.min:
            raise _KeyedValueError("max", f"a value above min ({self.min})")
        return self


class AsymptoticLimits(_Model):
    """The parameter grid for expected limits and the assumed true point.

    ``luminosity`` (pb⁻¹) is our optional addition; without it ``evaluation.luminosity`` is used.
    """

    region: dict[str, LimitRegion]
    resolutions: tuple[Annotated[int, Field(ge=2)], ...]
    theta_true: tuple[float, ...]
    luminosity: PositiveFloat | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> AsymptoticLimits:
        n = len(self.region)
        if n == 0:
            raise _KeyedValueError("region", "one 'theta_i: {min, max}' entry per parameter")
        for i, key in enumerate(self.region):
            match = _THETA_KEY.match(key)
            if not match or int(match.group(1)) != i:
                raise _KeyedValueError(f"region.{key}", f"theta_{i} (keys theta_0, theta_1, ...)")
        if len(self.resolutions) != n:
            raise _KeyedValueError("resolutions", f"{n} grid sizes, one per region axis")
        if len(self.theta_true) != n:
            raise _KeyedValueError("theta_true", f"a point with {n} values, one per region axis")
        return self

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        """``(min, max)`` of every parameter axis in order."""
        return tuple((r.min, r.max) for r in self.region.values())


class FisherInformationSettings(_Model):
    """Fisher information of the full kinematics and of a histogram of one observable."""

    enabled: bool = Field(default=True, alias="bool")
    observable: str | None = None
    histogram_bins: tuple[float, ...] | None = None
    histogram_range: tuple[float, float] | None = None
    theta_true: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _check_bins(self) -> FisherInformationSettings:
        bins = self.histogram_bins
        if bins is not None and (len(bins) < 2 or any(b >= a for b, a in pairwise(bins))):
            raise _KeyedValueError("histogram_bins", "at least two strictly increasing bin edges")
        if self.histogram_range is not None and self.histogram_range[1] <= self.histogram_range[0]:
            raise _KeyedValueError("histogram_range", "[low, high] with high > low")
        if self.enabled and self.observable is None:
            raise _KeyedValueError("observable", "an observable name when bool is true")
        return self


class PlottingSettings(_Model):
    """Which figures the plot step draws (every method named here must be in ``methods``)."""

    all_methods: bool = True
    all_methods_pvalue: Method | None = None
    all_methods_separate: bool = True
    correlations: bool = True
    correlations_methods: tuple[Method, ...] = ()
    rates: bool = True
    # minerflow's own key: the files each figure is written as (PNG to look at, PDF for papers)
    formats: Annotated[tuple[Literal["png", "pdf", "svg"], ...], Field(min_length=1)] = (
        "png",
        "pdf",
    )

    _one_format = field_validator("formats", mode="before")(_one_or_many)


class SamplingSettings(_Model):
    """Our sampling settings (the seed's command-line options); defaults are the seed's."""

    n_samples_train: PositiveInt = 1000
    n_sampling_runs: PositiveInt = 1
    test_split: Fraction = 0.5
    nuisance: bool = False
    seed: Annotated[int, Field(ge=0)] = 1234


class TrainingSettings(_Model):
    """Our training settings (the seed's options plus network shape); defaults are the seed's."""

    alpha: Annotated[float, Field(ge=0)] = 10.0
    batch_size: PositiveInt = 100
    num_epochs: PositiveInt = 2
    valid_split: Fraction = 0.3
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    n_hidden: tuple[PositiveInt, ...] = (100, 100, 100)
    activation: Literal["tanh", "relu", "sigmoid"] = "tanh"
    lr: PositiveFloat = 1e-3

    _one_hidden = field_validator("n_hidden", mode="before")(_one_or_many)


class EvaluationSettings(_Model):
    """Our evaluation settings; defaults are the seed's (L = 10⁴ pb⁻¹, 100 test events)."""

    luminosity: PositiveFloat = 1e4
    n_samples_test: PositiveInt = 100


class WorkflowInput(_Model):
    """The whole workflow input file; construct it with :func:`load_workflow_input`."""

    estimator: Literal["parameterized", "double_parameterized", "quadratic"] = "parameterized"
    methods: tuple[Method, ...]
    asymptotic_limits: AsymptoticLimits
    include_xsec: tuple[bool, ...] = (True, False)
    histogram_vars: tuple[str, ...] = ()
    fisher_information: FisherInformationSettings = FisherInformationSettings(bool=False)
    plotting: PlottingSettings = PlottingSettings()
    sampling: SamplingSettings = SamplingSettings()
    training: TrainingSettings = TrainingSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    resources: StepResources = StepResources()
    carl: MethodSection | None = None
    rolr: MethodSection | None = None
    alice: MethodSection | None = None
    alices: MethodSection | None = None
    rascal: MethodSection | None = None
    cascal: MethodSection | None = None
    sally: MethodSection | None = None
    sallino: MethodSection | None = None
    nde: MethodSection | None = None
    scandal: MethodSection | None = None

    _source: str = PrivateAttr(default="<input>")

    _lists = field_validator("methods", "include_xsec", "histogram_vars", mode="before")(
        _one_or_many
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> WorkflowInput:
        if not self.methods:
            raise _KeyedValueError("methods", "at least one method")
        if len(set(self.methods)) != len(self.methods):
            raise _KeyedValueError("methods", "each method once")
        if not self.include_xsec:
            raise _KeyedValueError("include_xsec", "a non-empty list of booleans")
        for method in self.methods:
            section = getattr(self, method)
            if section is None or section.theta_0 is None:
                raise _KeyedValueError(f"{method}.theta_0", f"a theta_0 section for '{method}'")
            if method in RATIO_METHODS and section.theta_1 is None:
                raise _KeyedValueError(
                    f"{method}.theta_1", f"a theta_1 section (ratio method '{method}')"
                )
            if method not in RATIO_METHODS and section.theta_1 is not None:
                raise _KeyedValueError(
                    f"{method}.theta_1", f"no theta_1 ('{method}' uses one parameter point)"
                )
        pvalue = self.plotting.all_methods_pvalue
        if pvalue is not None and pvalue not in self.methods:
            raise _KeyedValueError(
                "plotting.all_methods_pvalue", f"one of the listed methods {list(self.methods)}"
            )
        for i, method in enumerate(self.plotting.correlations_methods):
            if method not in self.methods:
                raise _KeyedValueError(
                    f"plotting.correlations_methods[{i}]",
                    f"one of the listed methods {list(self.methods)}, got '{method}'",
                )
        return self

    @property
    def source(self) -> str:
        """The file this input came from (used in error messages)."""
        return self._source

    @property
    def luminosity(self) -> float:
        """Limit luminosity: ``asymptotic_limits.luminosity``, else ``evaluation.luminosity``."""
        return self.asymptotic_limits.luminosity or self.evaluation.luminosity

    @property
    def n_parameters(self) -> int:
        """Number of physics parameters implied by the limit region."""
        return len(self.asymptotic_limits.region)

    def theta_specs(self, method: str) -> tuple[ThetaSpec, ...]:
        """``(theta_0,)`` or ``(theta_0, theta_1)`` of a listed method."""
        if method not in self.methods:
            raise ConfigError(self._source, "methods", f"'{method}' to be listed")
        section = getattr(self, method)
        return tuple(t for t in (section.theta_0, section.theta_1) if t is not None)

    def validate_against(self, header: EventFileHeader) -> None:
        """Check what depends on the event file: parameter counts, benchmarks, observables.

        Raises :class:`ConfigError` naming the input-file key that does not match the file.
        """
        n_p = header.n_parameters
        names = tuple(header.parameter_names)

        def fail(key: str, expected: str) -> None:
            raise ConfigError(self._source, key, expected)

        for method in self.methods:
            for role, spec in zip(("theta_0", "theta_1"), self.theta_specs(method), strict=False):
                key = f"{method}.{role}"
                arg = spec.sampling_arg
                if spec.sampling_method == "random_morphing_points":
                    if len(spec.priors) != n_p:
                        fail(f"{key}.prior", f"{n_p} priors, one per parameter {list(names)}")
                elif spec.sampling_method in ("benchmark", "benchmarks"):
                    for name in [arg] if isinstance(arg, str) else arg:
                        if name not in header.benchmark_names:
                            fail(
                                f"{key}.sampling_arg",
                                f"a benchmark of the event file {list(header.benchmark_names)}, "
                                f"got '{name}'",
                            )
                else:
                    points = [arg] if spec.sampling_method == "morphing_point" else arg
                    if any(len(pt) != n_p for pt in points):
                        fail(f"{key}.sampling_arg", f"points with {n_p} values {list(names)}")
        if self.n_parameters != n_p:
            fail("asymptotic_limits.region", f"{n_p} axes (one per parameter)")
        fisher = self.fisher_information
        if fisher.theta_true is not None and len(fisher.theta_true) != n_p:
            fail("fisher_information.theta_true", f"a point with {n_p} values")
        observables = list(header.observable_names)
        if fisher.enabled and fisher.observable not in observables:
            fail("fisher_information.observable", f"one of the observables {observables}")
        for i, var in enumerate(self.histogram_vars):
            if var not in observables:
                fail(f"histogram_vars[{i}]", f"one of the observables {observables}, got '{var}'")

    def canonical_dict(self) -> dict[str, Any]:
        """Every setting that can change a result, as plain JSON data.

        Sections of unused methods and the batch-job ``resources`` are left out, so neither
        changes an output folder's key.
        """
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        data.pop("resources", None)
        for method in METHODS:
            if method not in self.methods:
                data.pop(method, None)
        return data

    def step_config(self, step: Step, method: str | None = None) -> dict[str, Any]:
        """The settings that determine one step's result (for one method, or all listed ones).

        Sampling depends on the θ specs and ``sampling``; training adds the estimator and
        ``training``; evaluation adds limits, Fisher and evaluation settings; plotting
        depends on everything. Output folders are keyed by :meth:`step_hash` of this.
        """
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}, expected one of {STEPS}")
        full = self.canonical_dict()
        methods = [method] if method is not None else list(self.methods)
        if method is not None:
            self.theta_specs(method)  # raises for an unlisted method
        data: dict[str, Any] = {"methods": {m: full[m] for m in methods}}
        data["sampling"] = full["sampling"]
        if step == "sampling":
            return data
        data |= {"estimator": full["estimator"], "training": full["training"]}
        if step == "training":
            return data
        for key in ("asymptotic_limits", "include_xsec", "histogram_vars", "fisher_information"):
            data[key] = full[key]
        data["evaluation"] = full["evaluation"]
        data["luminosity"] = self.luminosity
        if step == "evaluation":
            return data
        return full

    def step_hash(self, step: Step, method: str | None = None, length: int = 10) -> str:
        """Short, stable sha256 hex digest of :meth:`step_config`."""
        return stable_hash(self.step_config(step, method), length)


def stable_hash(data: Any, length: int = 10) -> str:
    """sha256 of the canonical JSON form of ``data`` (sorted keys), first ``length`` hex digits."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def default_input_path() -> Path:
    """The built-in input (seed-equivalent, tuned to the toy simulator)."""
    return Path(str(resources.files("minerflow") / "data" / "default_input.yml"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys instead of keeping the last one."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(path, None, "an existing input file") from None
    except OSError as exc:
        raise ConfigError(path, None, f"a readable input file ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise ConfigError(path, where, f"valid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(path, None, "a YAML mapping of settings at the top level")
    return data


def parse_overrides(overrides: Sequence[str]) -> list[tuple[tuple[str, ...], Any]]:
    """Parse ``key.path=value`` strings; the value is read as YAML (``5``, ``[alice, sally]``)."""
    parsed = []
    for text in overrides:
        key, sep, raw = text.partition("=")
        parts = tuple(key.strip().split("."))
        if not sep or not all(parts):
            raise ConfigError("--set", text, "key.path=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError("--set", key, f"a YAML value, got {raw!r}") from None
        parsed.append((parts, value))
    return parsed


def _apply_override(data: dict[str, Any], parts: tuple[str, ...], value: Any, text: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError("--set", text, f"'{'.'.join(parts[:depth])}' to be a section")
        node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError("--set", text, f"'{'.'.join(parts[:-1])}' to be a section")


def load_workflow_input(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> WorkflowInput:
    """Read, override and validate a workflow input file (``None``: the built-in default).

    >>> load_workflow_input(None, ["training.alpha=5"]).training.alpha
    5.0
    """
    source = Path(path) if path is not None else default_input_path()
    data = _read_yaml(source)
    overridden = []
    for parts, value in parse_overrides(overrides):
        _apply_override(data, parts, value, ".".join(parts))
        overridden.append(".".join(parts))
    try:
        model = WorkflowInput.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, source, overridden) from None
    model._source = str(source)
    return model


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _config_error(exc: ValidationError, source: Path, overridden: Sequence[str]) -> ConfigError:
    """Turn the first pydantic error into one line; say how many more there were."""
    errors = exc.errors()
    err = errors[0]
    loc = list(err["loc"])
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, _KeyedValueError):
        loc += error.key.split(".")
    key = _dotted(loc)
    expected = _expected_text(err, loc)
    if len(errors) > 1:
        expected += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    hit = next(
        (o for o in overridden if key == o or key.startswith(o + ".") or o.startswith(key + ".")),
        None,
    )
    where: str | Path = f"{source} (--set {hit})" if hit else source
    return ConfigError(where, key, expected)


def _expected_text(err: Mapping[str, Any], loc: Sequence[str | int]) -> str:
    kind, msg = err["type"], str(err["msg"])
    if kind == "missing":
        return "a value (this key is required)"
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{guess[0]}'? " if guess else ""
        return f"a known key ({hint}known: {', '.join(known)})" if known else "no such key"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    text = msg.removeprefix("Input should be ").split(", unable to")[0]
    text = text.replace("a valid ", "a ").replace("dictionary", "mapping").replace("tuple", "list")
    if kind in ("model_type", "dict_type"):
        text = "a mapping of settings"
    return f"{text}, got {err['input']!r}"


def _known_keys(loc: Sequence[str | int]) -> list[str]:
    """The allowed keys of the model found at ``loc`` (best effort, for error hints)."""
    model: Any = WorkflowInput
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            field = next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
