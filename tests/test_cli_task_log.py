"""A failed coordinated run: task tracebacks go to the work dir's log file, the terminal gets
one line that names it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from minerflow.cli.task_log import LOG_FILE, TASK_LOGGERS, task_log

TINY = [
    "sampling.n_samples_train=200",
    "training.num_epochs=1",
    "evaluation.n_samples_test=10",
    "asymptotic_limits.resolutions=[5, 5]",
]


@pytest.mark.slow
def test_failed_tasks_log_to_the_file_and_stderr_stays_quiet(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from minerflow.tasks.lfi import WorkflowFailedError, run_workflow

    before = {name: list(logging.getLogger(name).handlers) for name in TASK_LOGGERS}
    work = tmp_path / "work"
    with pytest.raises(WorkflowFailedError) as failure, task_log(work) as log:
        # no GPU here: every training task fails, in two forked worker processes
        run_workflow(work, overrides=[*TINY, "training.device=cuda"], workers=2, toy_events=600)
    assert log == work.resolve() / LOG_FILE
    message = str(failure.value)
    assert "has no GPU here" in message and message.endswith(f"; task log: {log}")
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr and "luigi-interface" not in stderr
    text = log.read_text()
    assert text.startswith("==== minerflow run in ")
    assert "Traceback" in text and "has no GPU here" in text
    assert {name: logging.getLogger(name).handlers for name in TASK_LOGGERS} == before
