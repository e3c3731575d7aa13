"""Resources per step: defaults, the config file's section, command-line overrides, sbatch lines."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minerflow.config.resources import (
    STEP_DEFAULTS,
    Resources,
    ResourceSettings,
    StepResources,
    add_resource_arguments,
    resolve_resources,
    resource_overrides,
)
from minerflow.errors import InputError


def test_step_defaults_give_trainings_more() -> None:
    training = resolve_resources("train")
    assert training == STEP_DEFAULTS["train"]
    assert training.cpus == 2
    assert training.walltime == "04:00:00"
    assert resolve_resources("sample").cpus == 1
    assert resolve_resources("unknown-step") == Resources()  # a generic default


def test_layers_override_in_order() -> None:
    config = {
        "default": {"partition": "short", "memory": "1G"},
        "train": {"memory": 8000, "gpus": 1, "gpu_type": "a100", "walltime": 90},
    }
    overrides = ResourceSettings(cpus=8, sbatch_options=["--qos=high"])
    training = resolve_resources("train", config, overrides)
    assert training == Resources(
        cpus=8,
        memory="8000",
        gpus=1,
        gpu_type="a100",
        walltime="90",
        partition="short",
        sbatch_options=("--qos=high",),
    )
    assert training.sbatch_directives() == [
        ("cpus-per-task", "8"),
        ("mem", "8000"),
        ("time", "90"),
        ("gres", "gpu:a100:1"),
        "#SBATCH --qos=high",
    ]
    # the default section applies to steps without their own, the step default underneath
    evaluation = resolve_resources("evaluate", config)
    assert (evaluation.partition, evaluation.memory, evaluation.cpus) == ("short", "1G", 1)
    assert ("gres", "gpu:1") not in evaluation.sbatch_directives()


def test_config_errors_name_the_key() -> None:
    with pytest.raises(InputError, match=r"^in\.yml: resources\.train\.gpu: expected a known"):
        resolve_resources("train", {"train": {"gpu": 1}}, source="in.yml")
    with pytest.raises(InputError, match=r"resources\.evaluate\.memory: expected a memory size"):
        resolve_resources("evaluate", {"evaluate": {"memory": "lots"}})
    with pytest.raises(InputError, match=r"resources\.nonsense: expected a known setting"):
        resolve_resources("train", {"nonsense": {}})
    with pytest.raises(InputError, match=r"resources\.train\.cpus: expected"):
        resolve_resources("train", {"train": {"cpus": 0}})


def test_models_are_frozen_and_strict() -> None:
    resources = Resources()
    with pytest.raises(ValueError, match="frozen"):
        resources.cpus = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="Extra inputs"):
        StepResources.model_validate({"trainig": {}})


@pytest.mark.parametrize("text", ["4G", "512M", "4000", "1T", "16g", "2GB"])
def test_memory_sizes_accepted(text: str) -> None:
    assert resolve_resources("x", {"default": {"memory": text}}).memory in {
        "4G",
        "512M",
        "4000",
        "1T",
        "16G",
        "2G",
    }


@pytest.mark.parametrize("text", ["0", "4 G", "G", "-1G", "1.5G", "4X"])
def test_bad_memory_sizes_rejected(text: str) -> None:
    with pytest.raises(InputError, match="memory size"):
        resolve_resources("x", {"default": {"memory": text}})


@given(
    days=st.integers(0, 30),
    hours=st.integers(0, 23),
    minutes=st.integers(0, 59),
    seconds=st.integers(1, 59),
)
def test_wall_time_formats_accepted(days: int, hours: int, minutes: int, seconds: int) -> None:
    for text in (
        f"{minutes + 1}",
        f"{minutes}:{seconds:02d}",
        f"{hours}:{minutes:02d}:{seconds:02d}",
        f"{days}-{hours + 1}",
        f"{days}-{hours}:{minutes + 1:02d}",
        f"{days}-{hours}:{minutes:02d}:{seconds:02d}",
    ):
        assert ResourceSettings(walltime=text).walltime == text


@pytest.mark.parametrize("text", ["0", "00:00:00", "1h", "1:2:3:4", "-1", "1-", ""])
def test_bad_wall_times_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="wall time"):
        ResourceSettings(walltime=text)


def test_sbatch_options_cannot_smuggle_lines_or_shadow_fields() -> None:
    assert ResourceSettings(sbatch_options="--exclusive").sbatch_options == ("--exclusive",)
    for bad in ["--qos=a\n#SBATCH --mem=1", "qos=a", "--mem=4G", "--time=10", "--gres=gpu:1"]:
        with pytest.raises(ValueError, match="sbatch option"):
            ResourceSettings(sbatch_options=[bad])


def test_command_line_options() -> None:
    parser = argparse.ArgumentParser()
    add_resource_arguments(parser)
    args = parser.parse_args(
        ["--cpus", "4", "--memory", "16G", "--gpus", "2", "--sbatch-option=--qos=long"]
    )
    overrides = resource_overrides(args)
    assert overrides.given() == {
        "cpus": 4,
        "memory": "16G",
        "gpus": 2,
        "sbatch_options": ("--qos=long",),
    }
    assert resolve_resources("sample", None, overrides).walltime == "01:00:00"  # kept
    assert resource_overrides(parser.parse_args([])).given() == {}
    with pytest.raises(InputError, match=r"^command line: --walltime: expected a wall time"):
        resource_overrides(parser.parse_args(["--walltime", "soon"]))
    with pytest.raises(InputError, match=r"^command line: --sbatch-option: expected --mem"):
        resource_overrides(parser.parse_args(["--sbatch-option=--mem=1G"]))
