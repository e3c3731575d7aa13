"""The training loop shared by every neural estimator.

Design, for speed on a few CPU cores as much as on a GPU: all training arrays are moved to
the device once; each epoch permutes them with one gather and then takes contiguous slices
as batches (no per-sample Dataset or DataLoader, no worker processes). Loss terms are
accumulated on the device, so the host synchronises only every few dozen steps.

Early stopping keeps a *copy* of the best weights and restores it at the end. After every
completed epoch an optional checkpoint (model, optimiser, RNG states, history) is written
atomically; training with the same checkpoint folder resumes from there and ends with the
same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from minerflow.errors import InputError, MinerflowError
from minerflow.io.atomic import atomic_path
from minerflow.ml.device import cpu_threads, training_threads
from minerflow.ml.optimizer import STATE_FORMAT, FlatAdam

__all__ = [
    "CHECKPOINT_NAME",
    "EpochCallback",
    "Objective",
    "TrainingDivergedError",
    "TrainingHistory",
    "TrainingSettings",
    "fit",
    "learning_rate",
    "split_rows",
    "torch_seed",
]

CHECKPOINT_NAME = "checkpoint.pt"
OPTIMIZERS = ("adam", "amsgrad")
LR_SCHEDULES = ("exponential", "cosine", "constant")
# Host synchronisations (NaN check, progress bar) happen once per this many steps.
SYNC_EVERY = 50
VALIDATION_CHUNK = 16384

# objective(batch, training) -> tensor of loss terms, shape (n_terms,)
Objective = Callable[[Mapping[str, torch.Tensor], bool], torch.Tensor]
# callback(epoch, history) after each completed epoch
EpochCallback = Callable[[int, "TrainingHistory"], None]


class TrainingDivergedError(MinerflowError):
    """The loss became NaN or infinite; the message says when and which term."""


@dataclass(frozen=True)
class TrainingSettings:
    """How to train; frozen, validated at construction, unknown options rejected.

    The defaults are tuned for time to quality on the toy (ALICES, 3x100 tanh, 70k rows):
    batch 256 with a per-step cosine decay from 2e-3 reaches the log r̂ accuracy of
    MadMiner's defaults (batch 128, 1e-3 -> 1e-4 per epoch) in about half the steps.

    ``lr_schedule="exponential"`` decays the learning rate per epoch from ``lr`` to
    ``lr_final`` (``lr_e = lr (lr_final/lr)^(e/(E-1))``, as MadMiner); ``"cosine"`` decays it
    per step along half a cosine. ``patience=None`` never stops early but still restores the
    best weights when ``early_stopping`` is on. ``progress=None`` shows a bar on a terminal.
    """

    n_epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    lr_final: float = 1e-5
    lr_schedule: str = "cosine"
    optimizer: str = "amsgrad"
    validation_split: float = 0.25
    early_stopping: bool = True
    patience: int | None = None
    clip_gradient: float | None = None
    seed: int = 0
    device: str = "auto"
    progress: bool | None = None

    def __post_init__(self) -> None:
        def bad(key: str, expected: str) -> InputError:
            return InputError("training settings", key, f"{expected}, got {getattr(self, key)!r}")

        for key in ("n_epochs", "batch_size", "seed"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < (key != "seed"):
                raise bad(key, "a positive integer" if key != "seed" else "a non-negative integer")
        for key in ("lr", "lr_final"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or not 0.0 < value < math.inf:
                raise bad(key, "a positive number")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", f"one of {', '.join(LR_SCHEDULES)}")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {', '.join(OPTIMIZERS)}")
        if not isinstance(self.validation_split, int | float) or not 0 <= self.validation_split < 1:
            raise bad("validation_split", "a fraction in [0, 1)")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise bad("patience", "a positive integer or None")
        if self.clip_gradient is not None and not (
            isinstance(self.clip_gradient, int | float) and self.clip_gradient > 0
        ):
            raise bad("clip_gradient", "a positive number or None")
        if not isinstance(self.early_stopping, bool):
            raise bad("early_stopping", "true or false")
        if self.progress is not None and not isinstance(self.progress, bool):
            raise bad("progress", "true, false or None")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> TrainingSettings:
        """Build settings from a mapping (a config file, CLI flags); unknown keys are errors."""
        known = [f.name for f in dataclasses.fields(cls)]
        for key in options:
            if key not in known:
                raise InputError("training settings", key, f"one of {', '.join(known)}")
        return cls(**options)

    def replace(self, **changes: Any) -> TrainingSettings:
        """A copy with some options changed (validated again)."""
        return self.from_mapping({**dataclasses.asdict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (stored with saved models)."""
        return dataclasses.asdict(self)


@dataclass
class TrainingHistory:
    """Per-epoch values of every loss term and the weighted total, train and validation.

    ``train["total"][e]`` is epoch ``e``'s mean training loss; ``validation`` has the same keys
    (empty lists without a validation split); ``learning_rate[e]`` is the rate at the start of
    epoch ``e``. ``best_epoch`` (0-based) is the epoch whose
    weights the model holds when early stopping is on.
    """

    term_names: tuple[str, ...]
    train: dict[str, list[float]] = field(default_factory=dict)
    validation: dict[str, list[float]] = field(default_factory=dict)
    learning_rate: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    wall_time: float = 0.0

    def __post_init__(self) -> None:
        for store in (self.train, self.validation):
            for key in (*self.term_names, "total"):
                store.setdefault(key, [])

    @property
    def n_epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.train["total"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (checkpoints, MLflow logging)."""
        return {**dataclasses.asdict(self), "term_names": list(self.term_names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingHistory:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "term_names": tuple(data["term_names"])})


def learning_rate(settings: TrainingSettings, epoch: int, fraction: float = 0.0) -> float:
    """Learning rate at ``epoch`` (0-based) plus ``fraction`` of the next one."""
    lr, lr_final, n = settings.lr, settings.lr_final, settings.n_epochs
    if settings.lr_schedule == "constant":
        return lr
    if settings.lr_schedule == "exponential":
        return lr * (lr_final / lr) ** (epoch / max(n - 1, 1))
    progress = min((epoch + fraction) / n, 1.0)
    return lr_final + 0.5 * (lr - lr_final) * (1.0 + math.cos(math.pi * progress))


@contextlib.contextmanager
def torch_seed(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch for weight initialisation and dropout; the caller's RNG state is restored."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _digest(
    identity: Mapping[str, Any], settings: TrainingSettings, arrays: Mapping[str, np.ndarray]
) -> str:
    """Fingerprint of everything that determines the result, to refuse foreign checkpoints."""
    digest = hashlib.blake2b(digest_size=16)
    relevant = {k: v for k, v in settings.to_dict().items() if k not in ("device", "progress")}
    digest.update(
        json.dumps([identity, relevant, STATE_FORMAT], sort_keys=True, default=str).encode()
    )
    for key in sorted(arrays):
        values = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}{values.shape}{values.dtype}".encode())
        digest.update(values.data)
    return digest.hexdigest()


def split_rows(n_rows: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted training and validation row indices: a seeded random ``validation_split`` share."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_val = int(validation_split * n_rows)
    if n_rows - n_val < 1:
        raise InputError("training data", "x", f"more rows than the validation split, got {n_rows}")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _adam(model: nn.Module, settings: TrainingSettings) -> FlatAdam:
    """Adam (or AMSGrad) over the model's trainable parameters in one flat buffer."""
    return FlatAdam(model.parameters(), lr=settings.lr, amsgrad=settings.optimizer == "amsgrad")


def _progress_enabled(settings: TrainingSettings) -> bool:
    return settings.progress if settings.progress is not None else sys.stderr.isatty()


class _Run:
    """State of one training run: data on the device, optimiser, best weights, history."""

    def __init__(
        self,
        model: nn.Module,
        arrays: Mapping[str, np.ndarray],
        term_names: tuple[str, ...],
        term_weights: tuple[float, ...],
        settings: TrainingSettings,
        device: torch.device,
    ) -> None:
        self.model = model
        self.settings = settings
        self.device = device
        n_rows = len(next(iter(arrays.values())))
        train_rows, val_rows = split_rows(n_rows, settings.validation_split, settings.seed)
        n_val = len(val_rows)

        def to_device(rows: np.ndarray) -> dict[str, torch.Tensor]:
            return {
                key: torch.as_tensor(values[rows], dtype=torch.float32, device=device)
                for key, values in arrays.items()
            }

        self.train = to_device(train_rows)
        self.validation = to_device(val_rows) if n_val else None
        self.n_train = n_rows - n_val
        self.weights = torch.tensor(term_weights, dtype=torch.float32, device=device)
        self.shuffle = torch.Generator().manual_seed(settings.seed + 1)
        self.optimizer = _adam(model, settings)
        self.history = TrainingHistory(term_names)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_loss = math.inf
        self.bad_epochs = 0

    # -- checkpoints ----------------------------------------------------------------------
    def state(self, fingerprint: str) -> dict[str, Any]:
        return {
            "fingerprint": fingerprint,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": self.history.to_dict(),
            "best_state": self.best_state,
            "best_loss": self.best_loss,
            "bad_epochs": self.bad_epochs,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "shuffle_rng": self.shuffle.get_state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = TrainingHistory.from_dict(state["history"])
        self.best_state = state["best_state"]
        self.best_loss = state["best_loss"]
        self.bad_epochs = state["bad_epochs"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.shuffle.set_state(state["shuffle_rng"])

    # -- one epoch ------------------------------------------------------------------------
    def train_epoch(self, epoch: int, objective: Objective, bar: Any) -> torch.Tensor:
        settings, model, optimizer = self.settings, self.model, self.optimizer
        model.train()
        order = torch.randperm(self.n_train, generator=self.shuffle).to(self.device)
        data = {key: values.index_select(0, order) for key, values in self.train.items()}
        sums = torch.zeros_like(self.weights)
        size = settings.batch_size
        n_steps = math.ceil(self.n_train / size)
        per_step_lr = settings.lr_schedule == "cosine"
        for step in range(n_steps):
            if per_step_lr:
                optimizer.lr = learning_rate(settings, epoch, step / n_steps)
            start = step * size
            batch = {key: values[start : start + size] for key, values in data.items()}
            terms = objective(batch, True)
            loss = torch.dot(terms, self.weights)
            optimizer.zero_grad()
            loss.backward()
            if settings.clip_gradient is not None:  # the flat gradient: one norm, one scaling
                nn.utils.clip_grad_norm_(optimizer.grad, settings.clip_gradient)
            optimizer.step()
            sums.add_(terms.detach(), alpha=min(size, self.n_train - start))
            if (step + 1) % SYNC_EVERY == 0 or step + 1 == n_steps:
                seen = min((step + 1) * size, self.n_train)
                running = float(torch.dot(sums, self.weights)) / seen
                if not math.isfinite(running):
                    self.diverged(epoch, sums)
                if bar is not None:
                    bar.update((step % SYNC_EVERY) + 1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{running:.4g}", refresh=False)
        return sums / self.n_train

    def validate(self, objective: Objective) -> torch.Tensor | None:
        if self.validation is None:
            return None
        self.model.eval()
        n_val = len(next(iter(self.validation.values())))
        sums = torch.zeros_like(self.weights)
        with torch.no_grad():
            for start in range(0, n_val, VALIDATION_CHUNK):
                chunk = {k: v[start : start + VALIDATION_CHUNK] for k, v in self.validation.items()}
                sums.add_(objective(chunk, False), alpha=min(VALIDATION_CHUNK, n_val - start))
        return sums / n_val

    def diverged(self, epoch: int, terms: torch.Tensor) -> None:
        names = self.history.term_names
        bad = [n for n, v in zip(names, terms.tolist(), strict=True) if not math.isfinite(v)]
        raise TrainingDivergedError(
            f"training diverged: loss term {', '.join(bad) or 'total'} is not finite in epoch "
            f"{epoch + 1}; lower lr, set clip_gradient, or check the inputs"
        )

    def record(self, epoch: int, train_terms: torch.Tensor, val_terms: torch.Tensor | None) -> None:
        """Append the epoch to the history and keep a copy of the best weights so far."""
        history = self.history
        for store, terms in ((history.train, train_terms), (history.validation, val_terms)):
            if terms is None:
                continue
            values = terms.tolist()
            if not all(math.isfinite(v) for v in values):
                self.diverged(epoch, terms)
            for name, value in zip(history.term_names, values, strict=True):
                store[name].append(value)
            store["total"].append(float(np.dot(values, self.weights.tolist())))
        history.learning_rate.append(learning_rate(self.settings, epoch))
        monitored = (history.validation if val_terms is not None else history.train)["total"][-1]
        if monitored < self.best_loss:
            self.best_loss = monitored
            history.best_epoch = epoch
            self.bad_epochs = 0
            if self.settings.early_stopping:
                self.best_state = {
                    k: v.detach().clone() for k, v in self.model.state_dict().items()
                }
        else:
            self.bad_epochs += 1
            patience = self.settings.patience
            if (
                self.settings.early_stopping
                and patience is not None
                and self.bad_epochs >= patience
            ):
                history.stopped_early = True


def fit(
    model: nn.Module,
    objective: Objective,
    arrays: Mapping[str, np.ndarray],
    *,
    term_names: tuple[str, ...],
    term_weights: tuple[float, ...],
    settings: TrainingSettings,
    device: torch.device,
    checkpoint_dir: str | Path | None = None,
    identity: Mapping[str, Any] | None = None,
    callback: EpochCallback | None = None,
) -> TrainingHistory:
    """Train ``model`` (already on ``device``) by minimising ``Σ_k weight_k · term_k``.

    ``arrays`` are equal-length numpy arrays keyed by the names the objective reads; they are
    split into training and validation rows once (seeded), copied to the device as float32,
    and batches are contiguous slices of a per-epoch permutation. ``identity`` describes the
    estimator and method, and goes into the checkpoint fingerprint with the settings and a
    digest of the data, so a checkpoint is only resumed by the very same training.
    ``callback(epoch, history)`` runs after every epoch (e.g. to log metrics); its time is
    not counted in ``history.wall_time``.
    """
    started = time.perf_counter()
    run = _Run(model, arrays, term_names, term_weights, settings, device)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    fingerprint = _digest(identity or {}, settings, arrays) if checkpoint is not None else ""
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("fingerprint") != fingerprint:
            raise InputError(
                checkpoint,
                "fingerprint",
                "a checkpoint of this same training (data, method, "
                "settings); remove it or use another checkpoint folder",
            )
        run.restore(state)
    first_epoch = run.history.n_epochs
    elapsed = run.history.wall_time
    n_steps = math.ceil(run.n_train / settings.batch_size)
    bar = None
    stack = contextlib.ExitStack()
    if _progress_enabled(settings):
        from tqdm.auto import tqdm

        bar = tqdm(
            total=settings.n_epochs * n_steps,
            initial=first_epoch * n_steps,
            unit="batch",
            desc="training",
            leave=False,
            dynamic_ncols=True,
        )
    n_weights = sum(p.numel() for p in model.parameters())
    threads = training_threads(settings.batch_size, n_weights) if device.type == "cpu" else None
    try:
        if threads is not None:
            stack.enter_context(cpu_threads(threads))
        for epoch in range(first_epoch, settings.n_epochs):
            if run.history.stopped_early:
                break
            run.optimizer.lr = learning_rate(settings, epoch)
            train_terms = run.train_epoch(epoch, objective, bar)
            run.record(epoch, train_terms, run.validate(objective))
            if bar is not None:
                postfix = {"epoch": epoch + 1, "train": f"{run.history.train['total'][-1]:.4g}"}
                if run.validation is not None:
                    postfix["val"] = f"{run.history.validation['total'][-1]:.4g}"
                bar.set_postfix(postfix)
            run.history.wall_time = elapsed + time.perf_counter() - started
            if checkpoint is not None:
                with atomic_path(checkpoint) as tmp:
                    torch.save(run.state(fingerprint), tmp)
            if callback is not None:
                paused = time.perf_counter()
                callback(epoch, run.history)
                started += time.perf_counter() - paused
    finally:
        stack.close()
        if bar is not None:
            bar.close()
    if settings.early_stopping and run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    run.history.wall_time = elapsed + time.perf_counter() - started
    return run.history
