"""The law base classes: keyed folders, completeness, atomic outputs, locks, summary, law CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import law
import luigi

from minerflow.config.workflow_input import stable_hash
from minerflow.tasks.base import (
    META_FILE,
    MinerflowTask,
    MinerflowWorkflow,
    TaskRecord,
    collect_records,
    folder_key,
    format_summary,
    law_config_path,
    new_run_token,
)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
LAW = Path(sys.executable).parent / "law"


class BaseTestNumbers(MinerflowTask):
    """Writes n·scale; logs each build (pid) to ``<workdir>/builds.log``; can fail midway."""

    step = "numbers"
    readable_keys = ("n",)
    n = luigi.IntParameter()
    scale = luigi.FloatParameter(default=1.0)
    fail = luigi.BoolParameter(default=False, significant=False)
    delay = luigi.FloatParameter(default=0.0, significant=False)

    def build(self, out: Path) -> None:
        with open(Path(str(self.workdir)) / "builds.log", "a") as log:
            log.write(f"{os.getpid()}\n")
        (out / "value.txt").write_text(f"{self.n * self.scale}\n")
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("failed halfway")


class BaseTestSquares(MinerflowWorkflow):
    """One branch per value; each branch needs the matching BaseTestNumbers output."""

    step = "squares"
    readable_keys = ("x",)
    values = luigi.Parameter(default="1,2,3")

    def create_branch_map(self) -> list[dict[str, int]]:
        return [{"x": int(v)} for v in str(self.values).split(",")]

    def requires(self) -> BaseTestNumbers:
        return BaseTestNumbers(workdir=self.workdir, version=self.version, n=self.branch_data["x"])

    def build(self, out: Path) -> None:
        value = float(Path(self.input().path, "value.txt").read_text())
        (out / "square.txt").write_text(f"{value**2}\n")


def _build(*tasks: luigi.Task, workers: int = 1) -> bool:
    return luigi.build(list(tasks), local_scheduler=True, workers=workers, log_level="ERROR")


def _builds(workdir: Path) -> list[str]:
    log = workdir / "builds.log"
    return log.read_text().split() if log.exists() else []


def test_folder_is_readable_and_hashed(tmp_path: Path) -> None:
    task = BaseTestNumbers(workdir=str(tmp_path), n=3, scale=2.0, delay=0.5)
    key = {"task": "minerflow.BaseTestNumbers", "n": "3", "scale": "2.0"}
    assert task.key_data() == key
    assert task.output_dir() == tmp_path / "numbers" / "v1" / f"n=3__{stable_hash(key)}"
    # an insignificant parameter keeps the folder, a significant one changes only the hash
    same = BaseTestNumbers(workdir=str(tmp_path), n=3, scale=2.0, delay=0.0)
    other = BaseTestNumbers(workdir=str(tmp_path), n=3, scale=2.5)
    assert same.output_dir() == task.output_dir()
    assert other.output_dir().parent == task.output_dir().parent
    assert other.output_dir().name.startswith("n=3__")
    assert other.output_dir() != task.output_dir()
    v2 = BaseTestNumbers(workdir=str(tmp_path), n=3, scale=2.0, version="v2")
    assert v2.output_dir() == tmp_path / "numbers" / "v2" / task.output_dir().name
    assert folder_key({"lr": 1e-3, "flag": True, "dims": (64, 64), "name": "a b/c"}, {}) == (
        f"lr=0.001__flag=true__dims=64,64__name=a-b-c__{stable_hash({})}"
    )


def test_defaults_come_from_the_law_config() -> None:
    assert os.environ["LAW_CONFIG_FILE"] == str(law_config_path())
    task = BaseTestNumbers(n=1)
    assert (task.workdir, task.version) == ("work", "v1")
    config = luigi.configuration.get_config()
    config.set("minerflow", "version", "v9")
    try:
        assert BaseTestNumbers(n=1).version == "v9"
    finally:
        config.set("minerflow", "version", "v1")


def test_complete_after_run_and_reused_on_rerun(tmp_path: Path) -> None:
    task = BaseTestNumbers(workdir=str(tmp_path), n=4, scale=0.5)
    assert not task.complete()
    first = new_run_token()
    assert _build(task)
    assert task.complete()
    out = task.output_dir()
    assert (out / "value.txt").read_text() == "2.0\n"
    meta = json.loads((out / META_FILE).read_text())
    assert meta["run_token"] == first
    assert meta["key"] == task.key_data()
    assert meta["finished"] >= meta["started"]
    [record] = collect_records([task])
    assert (record.status, record.step, record.output_dir) == ("ran", "numbers", out)
    assert record.seconds is not None and record.seconds >= 0
    new_run_token()
    assert _build(task)
    assert _builds(tmp_path) == [str(os.getpid())]  # built once
    assert [r.status for r in collect_records([task])] == ["reused"]


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    task = BaseTestNumbers(workdir=str(tmp_path), n=1, fail=True)
    assert not _build(task)
    out = task.output_dir()
    assert not out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [f".{out.name}.lock"]
    assert [r.status for r in collect_records([task])] == ["missing"]


def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    task = BaseTestNumbers(workdir=str(tmp_path), n=2)
    out = task.output_dir()
    stale = out.parent / f".{out.name}.k1ll3d.tmp"
    (stale / "half").mkdir(parents=True)
    assert not task.complete()  # a temporary folder is not the output
    assert _build(task)
    assert not stale.exists()
    assert (out / "value.txt").read_text() == "2.0\n"


def test_workflow_branches_run_in_parallel_and_summary_counts(tmp_path: Path) -> None:
    new_run_token()
    assert _build(BaseTestNumbers(workdir=str(tmp_path), n=1))  # made "before" this run
    new_run_token()
    workflow = BaseTestSquares(workdir=str(tmp_path), values="1,2,3")
    assert _build(workflow, workers=2)
    assert workflow.complete()
    squares = sorted((tmp_path / "squares" / "v1").iterdir())
    names = [p.name.split("__")[0] for p in squares if not p.name.startswith(".")]
    assert names == ["x=1", "x=2", "x=3"]
    values = sorted(float((p / "square.txt").read_text()) for p in squares if p.is_dir())
    assert values == [1.0, 4.0, 9.0]
    records = collect_records([workflow])
    status = {(r.step, r.output_dir.name.split("__")[0]): r.status for r in records}
    assert status == {
        ("numbers", "n=1"): "reused",
        ("numbers", "n=2"): "ran",
        ("numbers", "n=3"): "ran",
        ("squares", "x=1"): "ran",
        ("squares", "x=2"): "ran",
        ("squares", "x=3"): "ran",
    }
    lines = format_summary(records, wall_seconds=1.25).splitlines()
    assert lines[1].split()[:4] == ["numbers", "2", "1", "0"]
    assert lines[2].split()[:4] == ["squares", "3", "0", "0"]
    assert lines[-1] == "total wall time 1.2 s"


def _spawn_build(workdir: Path, n: int, delay: float) -> subprocess.Popen[str]:
    code = (
        "import sys, luigi; sys.path.insert(0, sys.argv[1]);"
        "from test_tasks_base import BaseTestNumbers as T;"
        "ok = luigi.build([T(workdir=sys.argv[2], n=int(sys.argv[3]), delay=float(sys.argv[4]))],"
        " local_scheduler=True, log_level='ERROR'); sys.exit(0 if ok else 1)"
    )
    args = [sys.executable, "-c", code, str(TESTS), str(workdir), str(n), str(delay)]
    return subprocess.Popen(args, text=True, stderr=subprocess.PIPE)


def test_two_runs_on_one_workdir_build_once(tmp_path: Path) -> None:
    procs = [_spawn_build(tmp_path, 7, 2.0) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    builds = _builds(tmp_path)
    assert len(builds) == 1
    assert builds[0] in {str(p.pid) for p in procs}
    out = BaseTestNumbers(workdir=str(tmp_path), n=7).output_dir()
    assert (out / "value.txt").read_text() == "7.0\n"
    assert json.loads((out / META_FILE).read_text())["pid"] == int(builds[0])


def test_law_run_and_law_index_with_the_shipped_config(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(TESTS), "LAW_INDEX_FILE": str(tmp_path / "index")}
    env.pop("LAW_CONFIG_FILE", None)  # from the repository root, its law.cfg is found
    workdir = tmp_path / "w"
    run = [str(LAW), "run", "test_tasks_base.BaseTestNumbers", "--n", "5", "--version", "v7"]
    done = subprocess.run(
        [*run, "--workdir", str(workdir)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    task = BaseTestNumbers(workdir=str(workdir), n=5, version="v7")
    assert (task.output_dir() / "value.txt").read_text() == "5.0\n"
    env["LAW_CONFIG_FILE"] = str(law_config_path())
    index = subprocess.run(
        [str(LAW), "index", "--modules", "test_tasks_base"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert index.returncode == 0, index.stdout + index.stderr
    indexed = (tmp_path / "index").read_text()
    assert "test_tasks_base:minerflow.BaseTestNumbers:" in indexed
    assert "MinerflowTask" not in indexed  # the abstract bases are not offered
    done = subprocess.run(
        [str(LAW), "run", "minerflow.BaseTestNumbers", "--n", "6", "--workdir", str(workdir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert BaseTestNumbers(workdir=str(workdir), n=6).complete()


def test_every_module_listed_in_law_cfg_imports() -> None:
    config = law.config.Config(str(law_config_path()), skip_fallbacks=True)
    modules = config.options("modules")
    assert "minerflow.tasks.base" in modules
    for module in modules:
        __import__(module)


_FORKED_TORCH_SCRIPT = """
import sys
from pathlib import Path

import luigi
import torch

from minerflow.tasks.base import MinerflowTask

class BaseTestForward(MinerflowTask):
    step = "forward"
    readable_keys = ("n",)
    n = luigi.IntParameter()

    def build(self, out):
        net = torch.nn.Sequential(torch.nn.Linear(4, 100), torch.nn.Tanh(), torch.nn.Linear(100, 1))
        with torch.no_grad():
            total = float(net(torch.ones(100_000, 4)).sum())
        (out / "result.txt").write_text(f"{torch.get_num_threads()} {total}\\n")

torch.set_num_threads(2)
with torch.no_grad():  # the parent starts its intra-op thread pool before luigi forks
    torch.nn.Linear(4, 100)(torch.ones(200_000, 4)).sum()
tasks = [BaseTestForward(workdir=sys.argv[1], n=n) for n in (1, 2)]
sys.exit(0 if luigi.build(tasks, local_scheduler=True, workers=2, log_level="ERROR") else 1)
"""


def test_forked_workers_compute_with_torch_after_the_parent_did(tmp_path: Path) -> None:
    """Without one thread per forked worker, torch's first parallel op in the child hangs."""
    done = subprocess.run(
        [sys.executable, "-c", _FORKED_TORCH_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = sorted(tmp_path.glob("forward/*/*/result.txt"))
    assert len(results) == 2
    assert {path.read_text().split()[0] for path in results} == {"1"}


def test_summary_columns_line_up_with_long_step_names() -> None:
    records = [
        TaskRecord("T", "ml_preparation", Path("a"), "ran", 0.0, 1.5),
        TaskRecord("T", "train", Path("b"), "reused"),
    ]
    lines = format_summary(records).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].split() == ["ml_preparation", "1", "0", "0", "1.5"]
