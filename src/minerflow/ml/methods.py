"""The inference methods a user can name: their loss terms and the arrays they need.

A method belongs to a *family* that says which estimator trains it: ``ratio``
(r̂(x|θ) against a fixed reference, :class:`~minerflow.ml.ratio.ParameterizedRatioEstimator`),
``double_ratio`` (r̂(x|θ0, θ1), the ``…2`` variants), ``score`` (t̂(x) at a reference point)
and ``density`` (p̂(x|θ), registered by :mod:`minerflow.ml.density`). Adding a method is one
:func:`register_method` call with its terms.

Loss terms read the network's predictions (``log_r``, ``score``, ``score0``, ``score1``,
``log_p``) and the batch arrays, named like the sample files (``y``, ``r_xz``, ``t_xz``, …).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from minerflow.errors import InputError
from minerflow.ml import losses

__all__ = [
    "FAMILIES",
    "METHODS",
    "PLUGIN_MODULES",
    "LossTerm",
    "Method",
    "get_method",
    "method_names",
    "register_method",
]

FAMILIES = ("ratio", "double_ratio", "score", "density")
# Modules that register methods when imported (density estimators need zuko, imported late).
PLUGIN_MODULES = ("minerflow.ml.density",)

Tensors = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class LossTerm:
    """One summand of a method's loss; its weight is 1, or α when ``weighted_by_alpha``."""

    name: str
    compute: Callable[[Tensors, Tensors], torch.Tensor]
    weighted_by_alpha: bool = False
    needs_score: bool = False


@dataclass(frozen=True)
class Method:
    """A named method: family, loss terms and the training arrays it cannot do without."""

    name: str
    family: str
    terms: tuple[LossTerm, ...]
    requires: tuple[str, ...]

    @property
    def needs_score(self) -> bool:
        """Whether training differentiates the network output with respect to θ."""
        return any(term.needs_score for term in self.terms)

    @property
    def term_names(self) -> tuple[str, ...]:
        """Names of the loss terms, in order (the keys of the training history)."""
        return tuple(term.name for term in self.terms)

    def weights(self, alpha: float) -> tuple[float, ...]:
        """Weight of each term for a given α."""
        return tuple(alpha if term.weighted_by_alpha else 1.0 for term in self.terms)

    def check_arrays(self, arrays: Mapping[str, object | None]) -> None:
        """Raise an :class:`InputError` naming the first required array that is missing."""
        for key in self.requires:
            if arrays.get(key) is None:
                needs = ", ".join(self.requires)
                raise InputError(
                    f"method {self.name}", key, f"a {key} array ({self.name} needs {needs})"
                )


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry (a new name, or a deliberate redefinition)."""
    if method.family not in FAMILIES:
        raise ValueError(f"unknown method family {method.family!r}")
    METHODS[method.name] = method
    return method


def method_names(family: str | None = None) -> tuple[str, ...]:
    """Registered method names, optionally of one family, sorted."""
    return tuple(sorted(n for n, m in METHODS.items() if family in (None, m.family)))


def _import_plugins() -> None:
    """Import the modules that register further methods (those that exist yet)."""
    for module in PLUGIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def get_method(name: str, family: str | None = None) -> Method:
    """Look a method up; unknown names (or the wrong family) list the valid choices."""
    if name not in METHODS:
        _import_plugins()
    method = METHODS.get(name)
    if method is None or family not in (None, method.family):
        _import_plugins()  # so that the list of choices includes every family's methods
        known = ", ".join(method_names(family))
        raise InputError("training", "method", f"one of {known}, got {name!r}")
    return method


# --- loss terms --------------------------------------------------------------------------

XE = LossTerm("xe", lambda p, b: losses.cross_entropy(p["log_r"], b["y"]))
IMPROVED_XE = LossTerm(
    "improved_xe", lambda p, b: losses.improved_cross_entropy(p["log_r"], b["r_xz"])
)
MSE_R = LossTerm("mse_r", lambda p, b: losses.ratio_mse(p["log_r"], b["y"], b["r_xz"]))
SCORE_NUM = LossTerm(
    "mse_score",
    lambda p, b: losses.masked_score_mse(p["score"], b["t_xz"], 1.0 - b["y"]),
    weighted_by_alpha=True,
    needs_score=True,
)
SCORE_BOTH = LossTerm(
    "mse_score",
    lambda p, b: (
        losses.masked_score_mse(p["score0"], b["t_xz0"], 1.0 - b["y"])
        + losses.masked_score_mse(p["score1"], b["t_xz1"], b["y"])
    ),
    weighted_by_alpha=True,
    needs_score=True,
)
LOCAL_SCORE = LossTerm("mse_score", lambda p, b: losses.local_score_mse(p["score"], b["t_xz"]))

_RATIO_TERMS: dict[str, tuple[tuple[LossTerm, ...], tuple[str, ...]]] = {
    "carl": ((XE,), ()),
    "rolr": ((MSE_R,), ("r_xz",)),
    "alice": ((IMPROVED_XE,), ("r_xz",)),
    "cascal": ((XE, SCORE_NUM), ("t_xz",)),
    "rascal": ((MSE_R, SCORE_NUM), ("r_xz", "t_xz")),
    "alices": ((IMPROVED_XE, SCORE_NUM), ("r_xz", "t_xz")),
}

for _name, (_terms, _extra) in _RATIO_TERMS.items():
    register_method(Method(_name, "ratio", _terms, ("x", "y", "theta", *_extra)))
    _double_terms = tuple(SCORE_BOTH if term is SCORE_NUM else term for term in _terms)
    _double_extra = tuple(key for key in _extra if key == "r_xz")
    if "t_xz" in _extra:
        _double_extra += ("t_xz0", "t_xz1")
    register_method(
        Method(
            f"{_name}2",
            "double_ratio",
            _double_terms,
            ("x", "y", "theta0", "theta1", *_double_extra),
        )
    )

for _name in ("sally", "sallino"):
    register_method(Method(_name, "score", (LOCAL_SCORE,), ("x", "t_xz")))
