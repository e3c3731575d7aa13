"""Scale-out options of the real tasks and commands, without a cluster: resources, job
parameters handed upstream, and ``minerflow run --sweep`` run locally.

The same paths through Slurm jobs are in ``test_slurm.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from minerflow.cli.main import main
from minerflow.config.resources import Resources
from minerflow.config.workflow_input import STEPS, load_workflow_input
from minerflow.physics.toy_events import write_toy_analysis
from minerflow.tasks import lfi, ml

TESTS = Path(__file__).resolve().parent
RESOURCES = ("resources.default.memory=1G", "resources.train.cpus=3", "resources.plot.gpus=1")
SWEEP_RUN = (
    "--toy-events", "2000",
    "--set", "methods=[alices]",
    "--set", "plotting.correlations_methods=[alices]",
    "--set", "sampling.n_samples_train=300",
    "--set", "training.num_epochs=1",
    "--set", "training.n_hidden=[8]",
    "--set", "evaluation.n_samples_test=20",
    "--set", "asymptotic_limits.resolutions=[3, 3]",
    "--workers", "2",
)  # fmt: skip


def test_resources_in_the_input_never_change_a_key() -> None:
    plain, with_resources = load_workflow_input(None), load_workflow_input(None, RESOURCES)
    assert with_resources.resources.for_step("train").given() == {"cpus": 3, "memory": "1G"}
    assert plain.canonical_dict() == with_resources.canonical_dict()
    for step in STEPS:
        assert plain.step_hash(step) == with_resources.step_hash(step)
    for task in (lfi.Sample, lfi.Train, lfi.Evaluate):
        here = task(workdir="w").as_branch(1).output_dir()
        there = task(workdir="w", overrides=RESOURCES, workflow="slurm", slurm_cpus=8)
        assert there.as_branch(1).output_dir() == here


def test_job_resources_are_step_defaults_then_input_then_options() -> None:
    params = {"workdir": "w", "overrides": RESOURCES, "workflow": "slurm"}
    assert lfi.Train(**params).job_resources() == Resources(
        cpus=3, memory="1G", walltime="04:00:00"
    )
    assert lfi.Sample(**params, slurm_walltime="30").job_resources() == Resources(
        cpus=1, memory="1G", walltime="30"
    )
    evaluate = lfi.Evaluate(**params, slurm_memory="8G", slurm_sbatch_options=("--qos=short",))
    assert evaluate.job_resources().sbatch_directives() == [
        ("cpus-per-task", "1"),
        ("mem", "8G"),
        ("time", "01:00:00"),
        "#SBATCH --qos=short",
    ]


def test_plot_hands_the_workflow_to_the_steps_before_it() -> None:
    jobs = {"workflow": "slurm", "slurm_cpus": 4, "retries": 0}
    needs = lfi.Plot(workdir="w", job_params=jobs).requires()
    for workflow in (needs["results"], needs["models"], needs["models"].requires()["samples"]):
        assert (workflow.workflow, workflow.slurm_cpus, workflow.retries) == ("slurm", 4, 0)
    assert lfi.Plot(workdir="w").requires()["results"].workflow == "local"


def test_ml_tasks_hand_the_workflow_upstream(tmp_path: Path) -> None:
    analysis = write_toy_analysis(
        tmp_path, 50, seed=1, n_files=1, ml_modules=[str(TESTS / "ml_task_models.py")]
    )
    params = {"ml_model": "lin_binary", "analysis_file": str(analysis), "workdir": str(tmp_path)}
    evaluation = ml.MLEvaluation(**params, workflow="slurm", slurm_memory="3G")
    training = evaluation.training()
    for task in (training, training.preparation()):
        assert (task.workflow, task.slurm_memory) == ("slurm", "3G")
    plots = ml.PlotMLResults(**params, job_params={"workflow": "slurm", "retries": 1})
    assert (plots.training().workflow, plots.evaluation().retries) == ("slurm", 1)


def test_sweep_branches_share_the_sample_and_show_the_point() -> None:
    train = lfi.Train(workdir="w", sweep=("alpha=1,100", "num_epochs=1,2"))
    assert len(train.branch_map) == 3 * 4  # alice, alices and sally, four points each
    branch = train.as_branch(9)  # sally, the second point: alpha=1, num_epochs=2
    assert branch.branch_data == {
        "method": "sally",
        "run": 0,
        "sweep": {"alpha": 1.0, "num_epochs": 2},
    }
    assert branch.output_dir().name.startswith("method=sally__run=0__alpha=1__num_epochs=2__")
    assert branch.requires().branch_data == {"method": "sally", "run": 0}
    assert branch.branch_input.training.num_epochs == 2
    # the point's settings are exactly those of a plain run with them
    plain = lfi.Train(workdir="w", overrides=("training.alpha=1", "training.num_epochs=2"))
    assert branch.step_key() == plain.as_branch(2).step_key()
    assert lfi.Train(workdir="w").as_branch(2).branch_data == {"method": "sally", "run": 0}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sweep", "alpha=x"], "--sweep: alpha: expected valid values"),
        (["--sweep", "epochs=1,2"], "--sweep: epochs: expected a training setting"),
        (["--workflow", "slurm", "--cpus", "0"], "command line: --cpus: expected"),
        (["--workflow", "slurm", "--walltime", "soon"], "command line: --walltime: expected"),
    ],
)
def test_bad_scale_out_options_fail_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["run", "--workdir", str(tmp_path / "w"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_local_sweep_table_then_a_grown_sweep_reuses_the_trained_points(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    command = ["run", "--workdir", str(work), *SWEEP_RUN]
    assert main([*command, "--sweep", "alpha=1,100"]) == 0
    first = capsys.readouterr().out
    assert len(list((work / "sample" / "v1").glob("method=*"))) == 1  # one shared sample
    table = next((work / "sweep" / "v1").glob("alpha=1,100__*"))
    assert f"sweep:  {table / 'sweep.md'} (table), {table / 'sweep.png'} (plot)" in first
    assert "plots:" not in first
    rows = list(csv.DictReader((table / "sweep.csv").open()))
    assert [(r["alpha"], len(r["mlflow_run"])) for r in rows] == [("1", 32), ("100", 32)]
    assert [r["best"] for r in rows] == ["*", ""]  # the score term weighs 100 times more

    assert main([*command, "--sweep", "alpha=1,100"]) == 0
    again = capsys.readouterr().out
    assert "nothing to do" in again
    assert f"sweep:  {table / 'sweep.md'}" in again

    assert main([*command, "--sweep", "alpha=1,10,100"]) == 0
    grown = capsys.readouterr().out
    assert "2 outputs made, 6 reused" in grown  # alpha=10: one training, one evaluation
    table = next((work / "sweep" / "v1").glob("alpha=1,10,100__*"))
    rows = list(csv.DictReader((table / "sweep.csv").open()))
    assert [r["alpha"] for r in rows] == ["1", "10", "100"]
    assert [r["mlflow_run"] == "-" for r in rows] == [True, False, True]  # reused: no new run
