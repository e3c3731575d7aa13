"""The task log of ``minerflow run`` and ``demo``: a file in the work dir, not the terminal.

luigi and law log every failed task with its full traceback (twice: luigi's handler and
law's). On a terminal that buries the one line that matters, so while the tasks run their
records go to ``<workdir>/minerflow-run.log`` (appended, one header line per run) and a failed
run ends with the one-line error, which names the log (exit code 2).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOG_FILE", "TASK_LOGGERS", "task_log"]

LOG_FILE = "minerflow-run.log"
_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s: %(message)s"
TASK_LOGGERS: tuple[str, ...] = ("luigi", "luigi-interface", "law")
"""Loggers of the task layer whose records go to the log file while tasks run."""


class _RunLog(logging.FileHandler):
    """Opened at the first record, so a run rejected before any task leaves no work dir."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self):  # type: ignore[no-untyped-def]
        path = Path(self.baseFilename)
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = super()._open()
        stream.write(f"==== minerflow run in {path.parent}, pid {os.getpid()}, {time.ctime()}\n")
        return stream


@contextmanager
def task_log(workdir: str | os.PathLike[str]) -> Iterator[Path]:
    """Send the task loggers to ``<workdir>/minerflow-run.log`` for the block; yields its path.

    A :class:`~minerflow.tasks.lfi.WorkflowFailedError` leaving the block gets the log's path
    added to its message. The loggers are restored afterwards (forked workers inherit the file).
    """
    import luigi.configuration

    from minerflow.tasks.lfi import WorkflowFailedError

    path = Path(workdir).resolve() / LOG_FILE
    # luigi would otherwise add its own terminal handler when the first build starts
    luigi.configuration.get_config().set("core", "no_configure_logging", "true")
    handler = _RunLog(path)
    handler.setFormatter(logging.Formatter(_FORMAT))
    saved = []
    for name in TASK_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield path
    except WorkflowFailedError as error:
        raise WorkflowFailedError(f"{error}; task log: {path}") from None
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        handler.close()
