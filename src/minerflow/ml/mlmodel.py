"""The columnflow-style ``MLModel`` API: user models on columnar data with k-fold training.

A physicist subclasses :class:`MLModel`, implements the hooks of the columnflow guide
(``sandbox``, ``datasets``, ``uses``, ``produces``, ``open_model``, ``train``, ``evaluate``)
and derives configured models with ``MyModel.derive("name", cls_dict={...})``. A columnflow
model ports by changing its imports: ``from minerflow.ml.mlmodel import MLModel,
maybe_import`` and ``from minerflow.ml.columnar_ops import set_ak_column``.

What differs from columnflow, on purpose:

* ``folds`` defaults to 3 (columnflow: 2): each fold model then trains on two thirds of the
  events instead of half, at the cost of one more training.
* Every setting (a public data attribute of the model's class bodies or ``derive`` dicts,
  and every runtime ``parameters`` override) is part of the output path in readable form
  plus a short hash (``name/folds=3__epochs=5__1a2b3c4d``) and of the MLflow parameters;
  settings listed in ``insignificant_settings`` are left out of both.
* Out-of-fold evaluation is enforced by the framework (:func:`minerflow.ml.folds.
  evaluate_out_of_fold`): ``evaluate`` always receives exactly one model, the one that never
  saw the events it is given.
* A misspelled model or module name is an error listing the known ones; ``maybe_import``
  defers the import and fails clearly on first use instead of returning a silent mock.
"""

from __future__ import annotations

import abc
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import re
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from minerflow.errors import InputError, MinerflowError

if TYPE_CHECKING:
    import awkward as ak
    import order as od

__all__ = [
    "MLModel",
    "MissingModuleError",
    "build_model",
    "expand_module_names",
    "get_model_cls",
    "known_models",
    "load_ml_modules",
    "maybe_import",
    "parse_settings",
    "read_training_events",
]


# --------------------------------------------------------------------------- maybe_import
class MissingModuleError(MinerflowError, ImportError):
    """A module that ``maybe_import`` deferred is needed now but is not installed here."""


class _LazyModule(types.ModuleType):
    """Stands in for a module until an attribute is used, then imports it (or fails clearly)."""

    def __init__(self, name: str, requested_by: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_requested_by"] = requested_by
        self.__dict__["_lazy_module"] = None

    def _lazy_load(self) -> types.ModuleType:
        module = self.__dict__["_lazy_module"]
        if module is None:
            try:
                module = importlib.import_module(self.__name__)
            except ImportError as err:
                raise MissingModuleError(
                    f"{self.__dict__['_lazy_requested_by']}: {self.__name__}: expected module "
                    f"'{self.__name__}' installed in this environment ({sys.executable}); "
                    "run the model in its sandbox or install it"
                ) from err
            self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return getattr(self._lazy_load(), attr)

    def __repr__(self) -> str:
        state = "loaded" if self.__dict__["_lazy_module"] is not None else "not yet imported"
        return f"<lazy module '{self.__name__}' ({state})>"


def maybe_import(name: str) -> Any:
    """Return module ``name``, imported only when first used.

    Model modules are imported on the host to build the task graph, where heavy libraries
    (torch, tensorflow) may be missing; ``torch = maybe_import("torch")`` at module level
    costs nothing, and using ``torch.nn`` where torch is not installed raises
    :class:`MissingModuleError` naming the module and the environment. A module that is
    already imported is returned as is.

    >>> maybe_import("json").dumps([1])
    '[1]'
    """
    if name in sys.modules:
        return sys.modules[name]
    caller = inspect.currentframe()
    requested_by = "maybe_import"
    if caller is not None and caller.f_back is not None:
        requested_by = str(caller.f_back.f_globals.get("__name__", requested_by))
    return _LazyModule(name, requested_by)


# --------------------------------------------------------------------------- settings
def _canonical(value: Any, where: str) -> Any:
    """The JSON form of a setting value (tuples/sets -> lists); anything else is an error."""
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(where, None, "a finite number")
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalar
        return _canonical(value.item(), where)
    if isinstance(value, list | tuple):
        return [_canonical(v, where) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_canonical(v, where) for v in value), key=repr)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, where) for k, v in sorted(value.items())}
    raise InputError(
        where, None, f"a JSON-like setting (number, string, list, dict), got {value!r}"
    )


# MLModel's bookkeeping attributes: they name or file the model but never change its results
_BOOKKEEPING = frozenset({"cls_name", "insignificant_settings", "store_name"})


def _is_setting(name: str, value: Any) -> bool:
    """Configuration values, as opposed to code (methods, classes, descriptors) or privates."""
    if name.startswith("_") or name in _BOOKKEEPING:
        return False
    # functions, properties, class/static methods and cached properties all define __get__
    descriptor = hasattr(type(value), "__get__")
    return not descriptor and not callable(value) and not isinstance(value, types.ModuleType)


def _setting_names(cls: type) -> tuple[str, ...]:
    """The names of every setting defined below ``MLModel`` in ``cls``'s hierarchy.

    Class bodies and ``derive`` dicts count alike, so changing ``epochs = 25`` in code moves
    the outputs as much as ``derive(cls_dict={"epochs": 25})`` would. ``MLModel``'s own
    defaults (``fold_seed``, ``evaluation_rule``, ...) count only where a subclass sets them.
    """
    framework = set(MLModel.__mro__)
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        if klass not in framework:
            names.update((k, None) for k, v in vars(klass).items() if _is_setting(k, v))
    return tuple(name for name in names if _is_setting(name, getattr(cls, name)))


def _readable(value: Any) -> str | None:
    """A short path-safe rendering of a setting, or None if it only goes into the hash."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        text = re.sub(r"[^A-Za-z0-9._+-]", "-", value)
        return text[:24] if text else None
    if isinstance(value, list) and 0 < len(value) <= 6:
        parts = [_readable(v) for v in value]
        if all(
            p is not None and not isinstance(v, list | dict)
            for p, v in zip(parts, value, strict=True)
        ):
            return "_".join(p for p in parts if p is not None)[:40]
    return None


def parse_settings(text: str) -> dict[str, Any]:
    """Parse command-line settings ``"epochs=5,layers=64;64,flag"`` into a dict.

    ``,`` separates entries, ``;`` makes a list, a bare key means ``True``; each value is a
    YAML scalar, so ``5`` is an int and ``5.0`` a float (not all floats, as in columnflow).

    >>> parse_settings("epochs=5,lr=1e-3,layers=64;64,shuffle")
    {'epochs': 5, 'lr': 0.001, 'layers': [64, 64], 'shuffle': True}
    """
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not key.isidentifier():
            raise InputError("--ml-model-settings", key or item, "key=value with a Python name")
        if not sep:
            settings[key] = True
            continue
        values = [_yaml_scalar(v.strip()) for v in raw.split(";")]
        settings[key] = values if ";" in raw else values[0]
    return settings


def _yaml_scalar(text: str) -> Any:
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", text):  # YAML 1.1 misses "1e-3"
        return float(text)
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def _coerce(name: str, value: Any, default: Any, model: str) -> Any:
    """Bring an override to the type of the class default (an integral 5.0 for an int -> 5)."""
    where = f"model '{model}'"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InputError(where, name, f"true or false, got {value!r}")
        return value
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    return value


# --------------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[MLModel]] = {}


def known_models() -> list[str]:
    """Names of every registered model class (defined or derived), sorted."""
    return sorted(_REGISTRY)


def _unknown(kind: str, name: str, known: Sequence[str], source: str) -> InputError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    listing = ", ".join(known) if known else "none registered"
    return InputError(source, name, f"a known {kind}{hint}; known: {listing}")


def get_model_cls(name: str) -> type[MLModel]:
    """The model class registered under ``name``; an unknown name lists the known ones."""
    if name not in _REGISTRY:
        raise _unknown("ml model", name, known_models(), "--ml-model")
    return _REGISTRY[name]


def expand_module_names(names: Iterable[str] | str) -> list[str]:
    """Split a law.cfg-style ``ml_modules`` value and expand braces.

    >>> expand_module_names("ana.ml.{a,b}, other.models")
    ['ana.ml.a', 'ana.ml.b', 'other.models']
    """
    items = [names] if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in items:
        for part in re.split(r",\s*(?![^{]*\})", item):
            part = part.strip()
            match = re.fullmatch(r"(.*)\{([^}]*)\}(.*)", part)
            if match:
                head, alts, tail = match.groups()
                out.extend(f"{head}{alt.strip()}{tail}" for alt in alts.split(","))
            elif part:
                out.append(part)
    return out


def _import_file(path: str) -> types.ModuleType:
    """Import a model file given by path (``ml_modules: examples/toy_classifier.py``)."""
    from pathlib import Path

    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise InputError("ml_modules", path, "an existing Python file or an importable module")
    name = f"minerflow_ml_{file.stem}"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(file):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_ml_modules(names: Iterable[str] | str) -> list[types.ModuleType]:
    """Import the modules that define models (the ``ml_modules`` option), registering them.

    Entries are module names (brace expansion as in law.cfg) or paths to ``.py`` files.
    A module that does not exist raises ``InputError`` naming it and the search path
    tried; a module that exists but imports a missing library names that library.
    """
    modules = []
    for name in expand_module_names(names):
        if name.endswith(".py"):
            modules.append(_import_file(name))
            continue
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as err:
            missing = err.name or ""
            if name == missing or name.startswith(f"{missing}."):
                tried = ", ".join(p or "." for p in sys.path[:6])
                raise InputError(
                    "ml_modules",
                    name,
                    f"an importable module; not found on sys.path ({tried}, ...)",
                ) from err
            raise InputError(
                "ml_modules", name,
                f"a module whose imports are installed; it imports missing '{missing}' "
                "(use maybe_import for libraries only the sandbox has)",
            ) from err  # fmt: skip
    return modules


# --------------------------------------------------------------------------- the model
class MLModel(abc.ABC):
    """Base class of user models: hooks from the columnflow guide, settings via ``derive``.

    Every public data attribute a subclass defines (class body or ``derive(cls_dict=...)``)
    is a setting. The framework's own, all settable the same way:

    * ``folds`` (3): k of the k-fold split; fold f's model trains on all folds but f and
      predicts the events of fold f.
    * ``evaluation_rule`` (``"average"``): how events of datasets not used in training are
      predicted: ``"average"`` (mean of the k models' floating-point outputs), ``"fold"``
      (route by fold index, as for training events) or an int (that one fold's model).
    * ``fold_id_columns`` (``run, luminosityBlock, event``): the event identity hashed into
      the fold index; ``fold_seed`` (0) changes the assignment.
    * ``insignificant_settings`` (empty): settings that do not change results (log levels,
      worker counts) and so stay out of output paths and the hash.
    """

    cls_name: ClassVar[str] = "MLModel"
    folds: ClassVar[int] = 3
    evaluation_rule: ClassVar[str | int] = "average"
    fold_id_columns: ClassVar[tuple[str, ...]] = ("run", "luminosityBlock", "event")
    fold_seed: ClassVar[int] = 0
    store_name: ClassVar[str | None] = None
    insignificant_settings: ClassVar[frozenset[str]] = frozenset()
    _setting_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "cls_name" not in cls.__dict__:
            cls.cls_name = cls.__name__
        name = cls.cls_name
        cls._setting_names = _setting_names(cls)
        for key in cls._setting_names:
            if key not in cls.insignificant_settings:
                _canonical(getattr(cls, key), f"model '{name}' setting '{key}'")
        previous = _REGISTRY.get(name)
        if previous is not None and (previous.__module__, previous.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise InputError(
                f"module '{cls.__module__}'", name,
                f"a unique model name; '{name}' is already defined in '{previous.__module__}'",
            )  # fmt: skip
        _REGISTRY[name] = cls

    @classmethod
    def derive(
        cls,
        cls_name: str,
        bases: tuple[type, ...] = (),
        cls_dict: Mapping[str, Any] | None = None,
        module: str | None = None,
    ) -> type[MLModel]:
        """Create and register a configured subclass named ``cls_name``.

        Every ``cls_dict`` entry becomes a class attribute (``self.epochs``); the data
        entries, like the data attributes of the class bodies, are the model's settings,
        which enter its output path and MLflow params. Values take the type of the class
        default (``5.0`` for an int setting is ``5``).
        """
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", cls_name):
            raise InputError("derive", cls_name, "a model name of letters, digits, _ . -")
        body = dict(cls_dict or {})
        for key, value in body.items():
            default = getattr(cls, key, None)
            if _is_setting(key, value) and default is not None:
                body[key] = _coerce(key, value, default, cls_name)
        if module is None:
            frame = inspect.currentframe()
            caller = frame.f_back if frame is not None else None
            module = caller.f_globals.get("__name__", cls.__module__) if caller else cls.__module__
        body.update(cls_name=cls_name, __module__=module, __qualname__=cls_name)
        return type(cls)(cls_name, (cls, *bases), body)

    # ------------------------------------------------------------------ instance
    def __init__(
        self,
        analysis_inst: od.Analysis | None = None,
        *,
        configs: Sequence[str | od.Config] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        """Bind the model to an analysis (and its configs) and apply runtime ``parameters``.

        ``parameters`` override settings for this instance (``--ml-model-settings``); an
        unknown key is an error listing the settings the model has.
        """
        self.parameters: dict[str, Any] = {}
        for key, value in (parameters or {}).items():
            if not hasattr(type(self), key) or not _is_setting(key, getattr(type(self), key)):
                known = ", ".join(sorted(self.settings)) or "none"
                raise InputError(f"model '{self.cls_name}'", key, f"a known setting ({known})")
            value = _coerce(key, value, getattr(type(self), key), self.cls_name)
            _canonical(value, f"model '{self.cls_name}' setting '{key}'")
            self.parameters[key] = value
            setattr(self, key, value)
        if not isinstance(self.folds, int) or self.folds < 2:
            raise InputError(
                f"model '{self.cls_name}'", "folds", f"an int >= 2, got {self.folds!r}"
            )
        self.analysis_inst = analysis_inst
        self.config_insts: list[od.Config] = []
        if analysis_inst is not None:
            wanted = list(configs) if configs is not None else list(analysis_inst.configs)
            self.config_insts = [
                c if not isinstance(c, str) else analysis_inst.get_config(c) for c in wanted
            ]
            self.setup()

    @property
    def config_inst(self) -> od.Config:
        """The model's config when it has exactly one (as in the guide's ``setup``)."""
        if len(self.config_insts) != 1:
            names = ", ".join(c.name for c in self.config_insts) or "none"
            raise InputError(f"model '{self.cls_name}'", "config_inst", f"one config, has {names}")
        return self.config_insts[0]

    # ------------------------------------------------------------------ settings
    @property
    def settings(self) -> dict[str, Any]:
        """Every setting: ``folds``, the class-body and derived ones, then runtime overrides."""
        defined = {name: getattr(self, name) for name in self._setting_names}
        return {"folds": self.folds, **defined, **self.parameters}

    @property
    def significant_settings(self) -> dict[str, Any]:
        """Settings that change results, in JSON form, sorted by name."""
        return {
            k: _canonical(v, f"model '{self.cls_name}' setting '{k}'")
            for k, v in sorted(self.settings.items())
            if k not in self.insignificant_settings
        }

    @property
    def settings_hash(self) -> str:
        """8 hex digits of sha256 over the canonical JSON of the significant settings."""
        text = json.dumps(self.significant_settings, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def settings_repr(self) -> str:
        """Readable path part: ``folds=3__epochs=5__<hash>`` (long values only in the hash)."""
        parts = []
        length = 0
        for key, value in self.significant_settings.items():
            text = _readable(value)
            if text is None or length > 120:
                continue
            parts.append(f"{key}={text}")
            length += len(parts[-1]) + 2
        return "__".join([*parts, self.settings_hash])

    @property
    def path_parts(self) -> tuple[str, str]:
        """``(cls_name, settings_repr)``: the two directory levels of this model's outputs."""
        return self.cls_name, self.settings_repr

    def mlflow_params(self) -> dict[str, str]:
        """Parameters to log with every run: model name, hash and each significant setting."""
        params = {"ml_model": self.cls_name, "settings_hash": self.settings_hash}
        for key, value in self.significant_settings.items():
            text = value if isinstance(value, str) else json.dumps(value)
            params[key] = text[:6000]
        return params

    def __str__(self) -> str:
        return "/".join(self.path_parts)

    def __repr__(self) -> str:
        return f"<MLModel {self}>"

    # ------------------------------------------------------------------ column sets
    @property
    def used_datasets(self) -> dict[od.Config, set[od.Dataset]]:
        """Training datasets per config."""
        return {c: set(self.datasets(c)) for c in self.config_insts}

    @property
    def used_columns(self) -> dict[od.Config, set[str]]:
        """Input columns per config (``uses``) as route strings."""
        return {c: {str(r) for r in self.uses(c)} for c in self.config_insts}

    @property
    def produced_columns(self) -> dict[od.Config, set[str]]:
        """Kept output columns per config (``produces``) as route strings."""
        return {c: {str(r) for r in self.produces(c)} for c in self.config_insts}

    # ------------------------------------------------------------------ abstract hooks
    @abc.abstractmethod
    def sandbox(self, task: Any) -> str | None:
        """Environment for ``train``/``evaluate``: ``None`` (this one) or ``"venv::req.txt"``."""

    @abc.abstractmethod
    def datasets(self, config_inst: od.Config) -> set[od.Dataset]:
        """The datasets the model trains on."""

    @abc.abstractmethod
    def uses(self, config_inst: od.Config) -> set[str]:
        """Columns read for training and evaluation (inputs, targets, weights)."""

    @abc.abstractmethod
    def produces(self, config_inst: od.Config) -> set[str]:
        """Columns kept from what ``evaluate`` returns; everything else is dropped."""

    @abc.abstractmethod
    def open_model(self, target: Any) -> Any:
        """Load one fold's trained model from the target ``output`` returned."""

    @abc.abstractmethod
    def train(self, task: Any, input: Any, output: Any) -> None:
        """Train fold ``task.fold``'s model on the events of every other fold; save to output."""

    @abc.abstractmethod
    def evaluate(
        self,
        task: Any,
        events: ak.Array,
        models: list[Any],
        fold_indices: ak.Array,
        events_used_in_training: bool = False,
    ) -> ak.Array:
        """Return ``events`` with the produced columns added (one row per input event).

        The framework calls this with the events of one fold and ``models`` holding the one
        model that never saw them; ``fold_indices`` are positions in ``models`` (all 0), so
        both ``models[0]`` and columnflow's ``models[f]`` for ``fold_indices == f`` work.
        """

    # ------------------------------------------------------------------ optional hooks
    def output(self, task: Any) -> Any:
        """Fold ``task.fold``'s model directory, ``mlmodel_f{fold}of{folds}``."""
        return task.target(f"mlmodel_f{task.fold}of{self.folds}", dir=True)

    def setup(self) -> None:
        """Called once the configs are set, e.g. to ``config_inst.add_variable`` the outputs."""
        return None

    def requires(self, task: Any) -> Any:
        """Extra tasks training needs; their outputs arrive as ``input["model"]``."""
        return {}

    def training_configs(self, requested_configs: Sequence[str]) -> list[str]:
        """Configs used for training (default: the requested ones)."""
        return list(requested_configs)

    def training_calibrators(
        self, config_inst: od.Config, requested_calibrators: Sequence[str]
    ) -> list[str]:
        """Calibrators used for training (default: the requested ones)."""
        return list(requested_calibrators)

    def training_selector(
        self, config_inst: od.Config, requested_selector: str | None
    ) -> str | None:
        """Selector used for training (default: the requested one)."""
        return requested_selector

    def training_producers(
        self, config_inst: od.Config, requested_producers: Sequence[str]
    ) -> list[str]:
        """Producers used for training (default: the requested ones)."""
        return list(requested_producers)

    def evaluation_producers(
        self, config_inst: od.Config, requested_producers: Sequence[str]
    ) -> list[str]:
        """Producers used for evaluation (default: the requested ones)."""
        return list(requested_producers)


def build_model(
    name: str,
    analysis_inst: od.Analysis | None = None,
    configs: Sequence[str] | None = None,
    parameters: Mapping[str, Any] | str | None = None,
    ml_modules: Iterable[str] = (),
) -> MLModel:
    """Import ``ml_modules``, look up ``name`` and instantiate it (``parameters`` may be text)."""
    load_ml_modules(ml_modules)
    settings = parse_settings(parameters) if isinstance(parameters, str) else parameters
    return get_model_cls(name)(analysis_inst, configs=configs, parameters=settings)


def read_training_events(
    input: Mapping[str, Any],
    config_name: str,
    dataset_name: str,
    routes: Iterable[str] | None = None,
) -> ak.Array:
    """All training events of one dataset from ``train``'s ``input`` (its fold files joined).

    ``input["events"][config][dataset]`` is the list of per-fold parquet files (targets with a
    ``path`` or plain paths) of the folds this model trains on; ``routes`` defaults to every
    column in them.
    """
    from pathlib import Path

    from minerflow.io.columnar import ColumnarSource, available_routes, read_columns

    try:
        entries = input["events"][config_name][dataset_name]
    except KeyError as err:
        raise InputError(
            "train input", f"events.{config_name}.{dataset_name}", "a training dataset"
        ) from err
    paths = tuple(Path(getattr(entry, "path", entry)) for entry in entries)
    wanted = list(routes) if routes is not None else available_routes(paths[0], "parquet")
    return read_columns(ColumnarSource(dataset_name, paths, "parquet"), wanted)
