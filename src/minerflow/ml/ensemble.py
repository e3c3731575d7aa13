"""Ensembles of estimators of one type: the mean prediction, and the spread as an uncertainty.

Members differ by their seeds and, typically, by their training samples (one per sampling
run). For every output (log r̂, t̂, log p̂) the ensemble reports the member mean

    μ = (1/N) Σ_k v_k,     s = sqrt( Σ_k (v_k − μ)² / (N − 1) )

element by element; ``s`` (the sample standard deviation, 0 for a single member) measures
how much the estimate depends on training randomness and finite samples.

``Ensemble(members)`` returns the subclass that fits the members, so that an ensemble offers
exactly the evaluation methods its members have (and is, for example, used as a ratio
estimator by the limits): :class:`RatioEnsemble` (``evaluate_log_likelihood_ratio``),
:class:`DensityEnsemble` (also ``evaluate_log_likelihood``) or :class:`ScoreEnsemble`.
These return member means, in the members' own shapes; :meth:`Ensemble.evaluate_with_spread`
gives means and spreads.

A saved ensemble is a folder with ``settings.json`` (``estimator_type: ensemble``) and one
sub-folder per member in the members' own format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from minerflow.errors import InputError
from minerflow.io.atomic import atomic_dir, save_json
from minerflow.ml.persistence import FORMAT_VERSION, SETTINGS_FILE, load_estimator, read_settings
from minerflow.ml.training import TrainingHistory, TrainingSettings

__all__ = ["DensityEnsemble", "Ensemble", "EnsembleEstimate", "RatioEnsemble", "ScoreEnsemble"]

_SOURCE = "ensemble"


@dataclass(frozen=True)
class EnsembleEstimate:
    """One output of every member, stacked: ``members`` has shape ``(n_members, ...)``."""

    members: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Member mean, element by element."""
        return self.members.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation across members (``ddof=1``; zeros for one member).

        >>> EnsembleEstimate(np.array([[1.0], [3.0]])).std.tolist()
        [1.4142135623730951]
        """
        if len(self.members) < 2:
            return np.zeros_like(self.mean)
        return self.members.std(axis=0, ddof=1)


def _member_kind(member: object) -> type[Ensemble]:
    if hasattr(member, "evaluate_log_likelihood"):
        return DensityEnsemble
    if hasattr(member, "evaluate_log_likelihood_ratio"):
        return RatioEnsemble
    if hasattr(member, "evaluate_score"):
        return ScoreEnsemble
    raise InputError(_SOURCE, "members", f"estimators, got a {type(member).__name__}")


class Ensemble:
    """Several estimators of one type, trained and evaluated together.

    >>> from minerflow.ml.score import ScoreEstimator
    >>> type(Ensemble([ScoreEstimator(), ScoreEstimator()])).__name__
    'ScoreEnsemble'
    """

    estimator_type = "ensemble"

    def __new__(cls, members: Sequence[Any]) -> Ensemble:
        if cls is Ensemble:
            members = list(members)
            if not members:
                raise InputError(_SOURCE, "members", "at least one estimator")
            cls = _member_kind(members[0])
        return super().__new__(cls)

    def __init__(self, members: Sequence[Any]) -> None:
        members = list(members)
        if not members:
            raise InputError(_SOURCE, "members", "at least one estimator")
        kinds = sorted({type(member).__name__ for member in members})
        if len(kinds) > 1:
            raise InputError(_SOURCE, "members", f"estimators of one type, got {', '.join(kinds)}")
        self.members = members

    def __len__(self) -> int:
        return len(self.members)

    @property
    def member_type(self) -> str:
        """``estimator_type`` of the members."""
        return str(self.members[0].estimator_type)

    @property
    def is_trained(self) -> bool:
        """Whether every member has weights."""
        return all(member.is_trained for member in self.members)

    def to(self, device: str | torch.device | None = "auto") -> Self:
        """Move every member to ``device``."""
        for member in self.members:
            member.to(device)
        return self

    # -- training ---------------------------------------------------------------------------
    def _per_member(self, values: Any, key: str) -> list[Any]:
        if isinstance(values, Sequence) and not isinstance(values, str | Mapping):
            if len(values) != len(self.members):
                raise InputError(
                    _SOURCE, key, f"{len(self.members)} entries (one per member), got {len(values)}"
                )
            return list(values)
        return [values] * len(self.members)

    def train_all(
        self,
        method: str,
        *,
        samples: Sequence[Mapping[str, Any]] | None = None,
        settings: TrainingSettings | Sequence[TrainingSettings] | None = None,
        seeds: Sequence[int] | None = None,
        checkpoint_dir: str | Path | None = None,
        **arrays: Any,
    ) -> list[TrainingHistory]:
        """Train every member with ``method``; returns the members' histories in order.

        ``arrays`` (``x``, ``y``, ``theta``, ``alpha``, …: the members' ``train`` keywords) go
        to every member; ``samples`` optionally gives each member its own arrays (e.g. one
        sampling run each), which take precedence. ``settings`` is one object or one per
        member; member k's seed is ``seeds[k]`` if given, else (one shared settings object)
        ``settings.seed + k``, so members never start from identical weights. With
        ``checkpoint_dir``, member k checkpoints to ``checkpoint_dir/member_k``.
        """
        n = len(self.members)
        per_sample = self._per_member(samples if samples is not None else {}, "samples")
        shared = settings is None or isinstance(settings, TrainingSettings)
        per_settings = [s or TrainingSettings() for s in self._per_member(settings, "settings")]
        if seeds is not None:
            per_seed = [int(seed) for seed in self._per_member(seeds, "seeds")]
        elif shared:
            per_seed = [per_settings[0].seed + k for k in range(n)]
        else:
            per_seed = [s.seed for s in per_settings]
        histories = []
        for k, member in enumerate(self.members):
            folder = None if checkpoint_dir is None else Path(checkpoint_dir) / f"member_{k}"
            histories.append(
                member.train(
                    method,
                    **{**arrays, **per_sample[k]},
                    settings=per_settings[k].replace(seed=per_seed[k]),
                    checkpoint_dir=folder,
                )
            )
        return histories

    # -- evaluation -------------------------------------------------------------------------
    def evaluate_with_spread(
        self, function: str, *args: Any, **kwargs: Any
    ) -> EnsembleEstimate | tuple[EnsembleEstimate | None, ...]:
        """Call ``member.<function>(*args, **kwargs)`` on every member and stack the results.

        A member result that is a tuple (``(log_r, score)``) gives a tuple of estimates, with
        ``None`` where the members return ``None``; an array gives one estimate.

        ``function`` must be one of the members' ``evaluate…`` methods.
        """
        if not function.startswith("evaluate") or not hasattr(self.members[0], function):
            raise InputError(
                _SOURCE, "function", f"an evaluation method of {self.member_type}, got {function!r}"
            )
        results = [getattr(member, function)(*args, **kwargs) for member in self.members]
        if not isinstance(results[0], tuple):
            return EnsembleEstimate(np.stack([np.asarray(r) for r in results]))
        return tuple(
            None if parts[0] is None else EnsembleEstimate(np.stack(parts))
            for parts in zip(*results, strict=True)
        )

    def _mean(self, function: str, *args: Any, **kwargs: Any) -> Any:
        estimate = self.evaluate_with_spread(function, *args, **kwargs)
        if isinstance(estimate, EnsembleEstimate):
            return estimate.mean
        return tuple(None if part is None else part.mean for part in estimate)

    def evaluate_score(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """Member-mean score t̂, same arguments and shape as the members' ``evaluate_score``."""
        return self._mean("evaluate_score", *args, **kwargs)

    # -- saving -----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the ensemble folder atomically: ``settings.json`` and ``member_<k>/``."""
        names = [f"member_{k}" for k in range(len(self.members))]
        target = Path(folder)
        with atomic_dir(target) as tmp:
            for name, member in zip(names, self.members, strict=True):
                member.save(tmp / name)
            save_json(
                tmp / SETTINGS_FILE,
                {
                    "format_version": FORMAT_VERSION,
                    "estimator_type": self.estimator_type,
                    "member_type": self.member_type,
                    "members": names,
                },
            )
        return target

    @classmethod
    def from_folder(cls, folder: Path, settings: Mapping[str, Any], device: Any) -> Ensemble:
        """Load the members listed in an ensemble's ``settings.json`` (used by the registry)."""
        names = settings.get("members")
        if not isinstance(names, list) or not names:
            raise InputError(folder / SETTINGS_FILE, "members", "a non-empty list of folders")
        members = [load_estimator(folder / str(name), device=device) for name in names]
        for name, member in zip(names, members, strict=True):
            if member.estimator_type != settings.get("member_type"):
                raise InputError(
                    folder / str(name),
                    "estimator_type",
                    f"{settings.get('member_type')} like the ensemble, got {member.estimator_type}",
                )
        return Ensemble(members)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device | None = "auto") -> Ensemble:
        """Load an ensemble folder written by :meth:`save`."""
        settings = read_settings(folder)
        if settings["estimator_type"] != cls.estimator_type:
            raise InputError(
                Path(folder) / SETTINGS_FILE,
                "estimator_type",
                f"ensemble, got {settings['estimator_type']}",
            )
        return cls.from_folder(Path(folder), settings, device)


class ScoreEnsemble(Ensemble):
    """Ensemble of local score estimators (SALLY, SALLINO)."""


class RatioEnsemble(Ensemble):
    """Ensemble of likelihood-ratio estimators."""

    def evaluate_log_likelihood_ratio(
        self, *args: Any, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Member means of ``(log r̂, t̂ | None)``; arguments and shapes as the members'."""
        return self._mean("evaluate_log_likelihood_ratio", *args, **kwargs)


class DensityEnsemble(RatioEnsemble):
    """Ensemble of conditional density estimators (NDE, SCANDAL)."""

    def evaluate_log_likelihood(
        self, *args: Any, **kwargs: Any
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Member means of ``(log p̂, t̂ | None)``; arguments and shapes as the members'.

        The mean of log p̂ is the log of the members' geometric-mean density (not normalised);
        use it for likelihood ratios and limits, where the normalisation cancels.
        """
        return self._mean("evaluate_log_likelihood", *args, **kwargs)
