"""Base classes of minerflow's law tasks: keyed output folders, atomic outputs, locks, summary.

Every task writes one folder ``<workdir>/<step>/<version>/<key>``. The key shows the few
parameters a person looks for (``method=alices__run=0``) and ends in a short hash of *every*
parameter that determines the result, so a changed parameter gives a new folder and an
unchanged one is reused. A task is complete when its folder exists; the folder is built under
a temporary name and renamed when done, so a killed run leaves no half-written result. An
``fcntl`` lock per folder makes a second run on the same work dir wait for the first and then
reuse its result. Each folder holds ``task.json`` (parameters, timing, the run that made it),
from which :func:`collect_records` tells what ran and what was reused for the summary.

Subclasses set ``step`` (and optionally ``readable_keys``) and implement :meth:`build`; for
branching, :class:`MinerflowWorkflow` puts ``law.LocalWorkflow`` first among the bases, so
local execution is the default and a Slurm mix-in can be added later.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

# Our law.cfg (local scheduler, quiet logs, [luigi_minerflow] defaults) unless the user chose
# one. It must be set before law is first imported, which is why this runs at import time;
# when law is already loaded (``law run``), the user's law.cfg is in charge.
os.environ.setdefault("LAW_CONFIG_FILE", str(resources.files("minerflow") / "data" / "law.cfg"))

import law
import luigi
import luigi.interface
import luigi.worker

from minerflow.config.workflow_input import stable_hash
from minerflow.forking import frozen_for_fork
from minerflow.io.atomic import atomic_dir
from minerflow.io.locks import file_lock
from minerflow.tracking.runs import warm_up_model_logging

__all__ = [
    "META_FILE",
    "RUN_TOKEN_ENV",
    "MinerflowTask",
    "MinerflowWorkflow",
    "Preload",
    "TaskRecord",
    "build_locally",
    "collect_records",
    "folder_key",
    "format_summary",
    "law_config_path",
    "new_run_token",
    "one_thread_in_forked_worker",
    "output_lock",
    "preload_for_workers",
    "run_token",
    "walk_tasks",
]

META_FILE = "task.json"
RUN_TOKEN_ENV = "MINERFLOW_RUN_TOKEN"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+,-]+")
_LAW_PARAMS = frozenset(name for name, _ in law.LocalWorkflow.get_params())


def law_config_path() -> Path:
    """The law.cfg shipped with minerflow (``LAW_CONFIG_FILE`` points here by default)."""
    return Path(str(resources.files("minerflow") / "data" / "law.cfg"))


_MAIN_PID = os.getpid()


def one_thread_in_forked_worker() -> None:
    """Use one torch thread in a worker process that luigi forked (``--workers`` > 1).

    An OpenMP thread pool started in the parent does not survive ``fork``: the child's first
    parallel torch operation then waits forever. N workers share the cores anyway, so a
    forked worker computing on one thread is also the fastest choice.
    """
    torch = sys.modules.get("torch")
    if torch is not None and os.getpid() != _MAIN_PID:
        torch.set_num_threads(1)


Preload = str | Callable[[], None]


def preload_for_workers(modules: Iterable[Preload] = ()) -> None:
    """Load ``modules`` in this process, and do their first use, before luigi forks workers.

    luigi forks one process per task, and a forked worker inherits the modules already loaded
    here; whatever a task loads itself, every task loads again. Some libraries also load more
    on first use: MLflow's first model logging maps every installed package to its modules
    (0.6 s), and the first figure drawn in a format loads fonts and backend code. Those happen
    here too, for ``mlflow.pytorch`` and matplotlib's ``backend_agg`` / ``backend_pdf``. An
    entry may also be a function, called at that point of the sequence (e.g. to start a
    process that should inherit what was loaded before it).
    """
    import importlib

    from minerflow.tracking.store import import_mlflow

    for item in modules:
        if callable(item):
            item()
            continue
        if item.partition(".")[0] == "mlflow":
            import_mlflow()  # first: it quiets MLflow's logging
        importlib.import_module(item)
        warm_up = _FIRST_USE.get(item)
        if warm_up is not None:
            warm_up()


def _warm_up_drawing(fmt: str) -> None:
    from minerflow.plotting.style import warm_up_drawing

    warm_up_drawing((fmt,))


_FIRST_USE: dict[str, Callable[[], None]] = {
    "mlflow.pytorch": warm_up_model_logging,
    "matplotlib.backends.backend_agg": functools.partial(_warm_up_drawing, "png"),
    "matplotlib.backends.backend_pdf": functools.partial(_warm_up_drawing, "pdf"),
}


class _PreloadingWorker(luigi.worker.Worker):
    """A luigi worker that loads the ``preload`` modules, one at a time, while it waits.

    It waits when no further task can start, and loads a module only while no finished task
    is waiting to be handled, so the loading overlaps the running tasks instead of holding
    back the next ones: the first tasks (sampling, reference results) need none of it, and
    every task forked after a module is loaded starts with it. List the modules in the order
    the tasks need them (training, evaluation, figures).
    """

    def __init__(self, *args: Any, preload: Sequence[Preload], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = list(preload)

    def _handle_next_task(self) -> None:
        while self._pending and self._task_result_queue.empty():
            preload_for_workers(self._pending[:1])
            del self._pending[0]
        super()._handle_next_task()

    def _run_task(self, task_id: str) -> None:
        with frozen_for_fork():  # luigi forks the task's process in here
            super()._run_task(task_id)


class _PreloadingFactory(luigi.interface._WorkerSchedulerFactory):
    def __init__(self, preload: Sequence[Preload]) -> None:
        self.preload = preload

    def create_worker(
        self, scheduler: Any, worker_processes: int, assistant: bool = False
    ) -> luigi.worker.Worker:
        return _PreloadingWorker(
            scheduler=scheduler,
            worker_processes=worker_processes,
            assistant=assistant,
            preload=self.preload,
        )


def build_locally(
    tasks: Iterable[luigi.Task],
    workers: int,
    preload: Sequence[Preload] = (),
    **options: Any,
) -> Any:
    """``luigi.build`` on the local scheduler. With several workers, the ``preload`` modules
    (:func:`preload_for_workers`) are loaded while the first tasks run, whenever the worker
    waits for them; with one, tasks run in this process and only the functions among them
    are called, first. ``options`` go to ``luigi.build`` (``detailed_summary``, ...)."""
    if workers == 1:
        preload_for_workers([item for item in preload if callable(item)])
    factory = _PreloadingFactory(preload) if workers > 1 else None
    return luigi.build(
        list(tasks),
        worker_scheduler_factory=factory,
        workers=workers,
        local_scheduler=True,
        **options,
    )


def run_token() -> str:
    """Id of the current invocation; worker processes inherit it through the environment."""
    token = os.environ.get(RUN_TOKEN_ENV)
    if not token:
        token = new_run_token()
    return token


def new_run_token() -> str:
    """Start a new invocation: outputs made from now on count as "ran", older ones as "reused"."""
    token = uuid.uuid4().hex
    os.environ[RUN_TOKEN_ENV] = token
    return token


def _readable(value: Any) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list | tuple):
        text = ",".join(_readable(v) for v in value)
    else:
        text = str(value)
    return _UNSAFE.sub("-", text).strip("-")[:40] or "-"


def folder_key(readable: Mapping[str, Any], key_data: Mapping[str, Any], length: int = 10) -> str:
    """``name=value__...__<hash>``: readable parameters, then a hash of everything.

    >>> folder_key({"method": "alices", "run": 0}, {"method": "alices", "run": 0, "alpha": 10})
    'method=alices__run=0__2943798e81'
    """
    parts = [f"{_UNSAFE.sub('-', str(k))}={_readable(v)}" for k, v in readable.items()]
    return "__".join([*parts, stable_hash(dict(key_data), length)])


def output_lock(folder: Path) -> contextlib.AbstractContextManager[bool]:
    """An exclusive lock for ``folder`` (a hidden sibling file); waits if another process has it.

    The kernel releases it when the holder dies, so a ``kill -9`` never leaves a stale lock.
    """
    return file_lock(folder.parent / f".{folder.name}.lock")


def _remove_leftovers(folder: Path) -> None:
    """Delete temporary siblings an interrupted build of ``folder`` left (lock held)."""
    for pattern in (f".{folder.name}.*.tmp", f".{folder.name}.*.old"):
        for path in folder.parent.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


class MinerflowTask(law.Task):
    """A task with one output folder under ``<workdir>/<step>/<version>/``.

    Subclasses set ``step``, list the parameters shown in the folder name in
    ``readable_keys``, override :meth:`key_data` when the result depends on more than the
    task's parameters (input-file settings, an event file's checksum), and write their files
    into the folder passed to :meth:`build`.
    """

    exclude_index = True
    task_namespace = "minerflow"
    step: ClassVar[str] = ""
    readable_keys: ClassVar[tuple[str, ...]] = ()

    workdir = luigi.Parameter(
        default="work",
        config_path={"section": "minerflow", "name": "workdir"},
        description="folder holding every output and the MLflow store; default: work",
    )
    version = luigi.Parameter(
        default="v1",
        config_path={"section": "minerflow", "name": "version"},
        description="output version; bump it to recompute everything (default from law.cfg)",
    )

    _key_cache: dict[str, Any] | None = None

    def key_data(self) -> dict[str, Any]:
        """Everything that determines the output (hashed into the folder name).

        Default: the task's significant parameters except ``workdir``, ``version`` and law's
        own; for a workflow branch also its ``branch_data``. Extend it, don't replace it.
        """
        data: dict[str, Any] = {"task": self.get_task_family()}
        for name, param in self.get_params():
            if param.significant and name not in _LAW_PARAMS | {"workdir", "version"}:
                data[name] = param.serialize(getattr(self, name))
        if isinstance(self, law.BaseWorkflow) and self.is_branch():
            data["branch_data"] = self.branch_data
        return data

    def readable_data(self) -> dict[str, Any]:
        """The few values shown in the folder name (``readable_keys`` looked up in key_data)."""
        key = self._cached_key_data()
        branch = key.get("branch_data")
        return {
            k: key[k] if k in key else branch[k]
            for k in self.readable_keys
            if k in key or (isinstance(branch, Mapping) and k in branch)
        }

    def _cached_key_data(self) -> dict[str, Any]:
        if self._key_cache is None:
            self._key_cache = self.key_data()
        return self._key_cache

    def output_dir(self) -> Path:
        """``<workdir>/<step>/<version>/<readable>__<hash>`` (absolute)."""
        if not self.step:
            raise TypeError(f"{type(self).__name__} must set the class attribute 'step'")
        key = folder_key(self.readable_data(), self._cached_key_data())
        return Path(str(self.workdir)).resolve() / self.step / str(self.version) / key

    def output(self) -> law.LocalDirectoryTarget:
        """The output folder; it exists only once complete."""
        return law.LocalDirectoryTarget(str(self.output_dir()))

    def build(self, out: Path) -> None:
        """Write the outputs into ``out`` (a temporary folder renamed when this returns)."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def run(self) -> None:
        """Build the folder atomically under a lock; reuse it if another run finished it."""
        out = self.output_dir()
        with output_lock(out):
            if out.exists():
                return
            one_thread_in_forked_worker()
            _remove_leftovers(out)
            started = time.time()
            with atomic_dir(out) as tmp:
                self.build(tmp)
                meta = {
                    "task": self.get_task_family(),
                    "task_id": self.task_id,
                    "step": self.step,
                    "version": str(self.version),
                    "key": self._cached_key_data(),
                    "run_token": run_token(),
                    "started": started,
                    "finished": time.time(),
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                }
                text = json.dumps(meta, indent=2, default=str) + "\n"
                (tmp / META_FILE).write_text(text)


class MinerflowWorkflow(law.LocalWorkflow, MinerflowTask):
    """A branching task (one branch per method × run, per model, ...), local by default.

    Implement ``create_branch_map`` returning a list of plain-data dicts; each branch gets
    its own folder keyed by its ``branch_data`` (name readable ones in ``readable_keys``).
    """

    exclude_index = True


@dataclass(frozen=True)
class TaskRecord:
    """What happened to one task's output in this invocation."""

    task: str
    step: str
    output_dir: Path
    status: Literal["ran", "reused", "missing"]
    started: float | None = None
    finished: float | None = None

    @property
    def seconds(self) -> float | None:
        """Build time of the output, if it was built in this invocation."""
        if self.status != "ran" or self.started is None or self.finished is None:
            return None
        return self.finished - self.started


def walk_tasks(tasks: Iterable[luigi.Task]) -> Iterator[luigi.Task]:
    """``tasks`` and everything they require (a workflow's branches included), depth first in
    the order required, each once."""
    seen: set[str] = set()
    stack = list(reversed(list(tasks)))
    while stack:
        task = stack.pop()
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        yield task
        if isinstance(task, law.BaseWorkflow) and task.is_workflow():
            stack.extend(task.get_branch_tasks().values())
        stack.extend(reversed(luigi.task.flatten(task.requires())))


def collect_records(tasks: Iterable[luigi.Task], token: str | None = None) -> list[TaskRecord]:
    """Records of every :class:`MinerflowTask` output reachable from ``tasks``.

    "ran" when its ``task.json`` carries this invocation's run token, "reused" otherwise,
    "missing" when the folder does not exist (the task failed or was not reached).
    """
    token = token or run_token()
    records = []
    for task in walk_tasks(tasks):
        if not isinstance(task, MinerflowTask):
            continue
        if isinstance(task, law.BaseWorkflow) and task.is_workflow():
            continue
        out = task.output_dir()
        try:
            meta = json.loads((out / META_FILE).read_text())
        except FileNotFoundError:
            records.append(TaskRecord(task.get_task_family(), task.step, out, "missing"))
            continue
        status: Literal["ran", "reused"] = "ran" if meta.get("run_token") == token else "reused"
        records.append(
            TaskRecord(
                task.get_task_family(),
                task.step,
                out,
                status,
                meta.get("started"),
                meta.get("finished"),
            )
        )
    return sorted(records, key=lambda r: (r.step, str(r.output_dir)))


def format_summary(records: Iterable[TaskRecord], wall_seconds: float | None = None) -> str:
    """A short table: per step, how many outputs ran / were reused / are missing, wall time.

    A step's wall time runs from the first start to the last finish among its new outputs
    (parallel branches overlap, so it is less than the sum of their times).
    """
    by_step: dict[str, list[TaskRecord]] = {}
    for record in records:
        by_step.setdefault(record.step, []).append(record)
    width = max([12, *(len(step) + 1 for step in by_step)])
    lines = [f"{'step':<{width}} {'ran':>4} {'reused':>7} {'missing':>8} {'wall s':>8}"]
    for step, group in by_step.items():
        ran = [r for r in group if r.status == "ran"]
        counts = {s: sum(r.status == s for r in group) for s in ("ran", "reused", "missing")}
        wall = (
            max(r.finished or 0.0 for r in ran) - min(r.started or 0.0 for r in ran) if ran else 0.0
        )
        lines.append(
            f"{step:<{width}} {counts['ran']:>4} {counts['reused']:>7} {counts['missing']:>8} "
            f"{wall:>8.1f}"
        )
    if wall_seconds is not None:
        lines.append(f"total wall time {wall_seconds:.1f} s")
    return "\n".join(lines)
