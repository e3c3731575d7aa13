"""``minerflow export reana``: reana.yaml + a yadage workflow that calls our step commands."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yadageschemas
import yaml

from minerflow.cli.export import build_yadage_workflow
from minerflow.cli.main import build_parser, main
from minerflow.config.workflow_input import load_workflow_input
from minerflow.errors import InputError
from minerflow.workflow.common import model_name, samples_folder_name

SCHEMA = {"schemadir": yadageschemas.schemadir, "schema_name": "yadage/workflow-schema"}


def _validate(folder: Path) -> dict[str, Any]:
    """Load and validate ``folder/workflow.yml`` with yadage-schemas, offline."""
    options = {**SCHEMA, "toplevel": str(folder), "load_as_ref": False}
    return yadageschemas.load("workflow.yml", options, validate=True, validopts=SCHEMA)


def _stages(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {stage["name"]: stage["scheduler"] for stage in spec["stages"]}


def _export(folder: Path, *args: str) -> None:
    assert main(["export", "reana", "--output", str(folder / "reana.yaml"), *args]) == 0


def test_seed_input_gives_a_valid_workflow_scattered_per_method_and_run(
    tmp_path: Path, reference_input_file: Path
) -> None:
    _export(
        tmp_path, "--input-file", str(reference_input_file), "--set", "sampling.n_sampling_runs=2"
    )
    spec = _validate(tmp_path)
    source = load_workflow_input(reference_input_file, ["sampling.n_sampling_runs=2"])
    stages = _stages(spec)
    assert list(stages) == ["events", "sampling", "training", "evaluation", "plotting"]
    pairs = [(m, r) for m in source.methods for r in (0, 1)]
    sampling = stages["sampling"]["step"]["publisher"]["publish"]
    assert sampling["train_folders"] == [
        f"{{output_dir}}/{samples_folder_name(m, r)}" for m, r in pairs
    ]
    training = {p["key"]: p["value"] for p in stages["training"]["parameters"]}
    assert training["model_name"] == [model_name(m, r) for m, r in pairs]
    assert stages["training"]["scatter"] == {
        "method": "zip",
        "parameters": ["train_folder", "model_name"],
    }
    assert stages["evaluation"]["scatter"]["parameters"] == ["model_dir"]
    assert all(s["step"]["environment"]["image"] == "minerflow" for s in stages.values())

    reana = yaml.safe_load((tmp_path / "reana.yaml").read_text())
    assert reana["workflow"] == {"type": "yadage", "file": "workflow.yml"}
    assert reana["inputs"] == {"files": ["input.yml"], "parameters": {"input_file": "input.yml"}}
    # the written input is the seed input with the override applied
    assert load_workflow_input(tmp_path / "input.yml").canonical_dict() == source.canonical_dict()


def test_commands_are_our_step_commands_with_the_input_settings(
    tmp_path: Path, reference_input_file: Path
) -> None:
    (tmp_path / "events.h5").write_bytes(b"")
    _export(
        tmp_path,
        "--input-file",
        str(reference_input_file),
        "--data-file",
        str(tmp_path / "events.h5"),
    )
    source = load_workflow_input(reference_input_file)
    stages = _stages(_validate(tmp_path))
    assert list(stages) == ["sampling", "training", "evaluation", "plotting"]
    parser = build_parser()
    parsed = {}
    for name, scheduler in stages.items():
        script = scheduler["step"]["process"]["script"]
        (line,) = [line for line in script.splitlines() if line.startswith("minerflow ")]
        filled = line.replace("{", "/in/").replace("}", "")
        parsed[name] = parser.parse_args(shlex.split(filled)[1:])
    assert parsed["sampling"].command == "sample"
    assert parsed["sampling"].n_samples_train == source.sampling.n_samples_train
    assert parsed["sampling"].nuisance is False
    assert parsed["sampling"].seed == source.sampling.seed
    assert parsed["training"].command == "train"
    assert parsed["training"].alpha == source.training.alpha
    assert parsed["training"].num_epochs == source.training.num_epochs
    assert parsed["evaluation"].command == "evaluate"
    assert parsed["evaluation"].luminosity == source.luminosity
    assert parsed["plotting"].command == "plot"
    reana = yaml.safe_load((tmp_path / "reana.yaml").read_text())
    assert reana["inputs"]["parameters"]["data_file"] == "events.h5"


def test_validator_rejects_a_broken_workflow(tmp_path: Path) -> None:
    spec = build_yadage_workflow(load_workflow_input(None))
    del spec["stages"][1]["scheduler"]["step"]["publisher"]
    (tmp_path / "workflow.yml").write_text(yaml.safe_dump(spec))
    with pytest.raises(jsonschema.ValidationError):
        _validate(tmp_path)


def test_data_file_errors(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.h5"
    outside.write_bytes(b"")
    with pytest.raises(InputError, match=r"^--data-file: .*elsewhere\.h5: expected a file inside"):
        from minerflow.cli.export import export_reana

        export_reana(tmp_path / "spec" / "reana.yaml", data_file=outside)
    assert (
        main(["export", "reana", "--output", str(tmp_path / "r.yaml"), "--data-file", "nope.h5"])
        == 2
    )


def _resolve(value: Any, outputs: dict[str, list[dict[str, Any]]], workdir: Path) -> Any:
    if isinstance(value, dict) and "step" in value:
        return outputs[value["step"]][0][value["output"]]
    if isinstance(value, dict) and "stages" in value:
        found = [out[value["output"]] for out in outputs[value["stages"]]]
        return (
            [v for vals in found for v in vals]
            if value.get("flatten") and found and isinstance(found[0], list)
            else found
        )
    if isinstance(value, str):
        return value.replace("{workdir}", str(workdir))
    return value


def _run_like_yadage(spec: dict[str, Any], root: Path, init: dict[str, str]) -> dict[str, list]:
    """Run the stages in order as yadage would: scatter (zip), one folder per step, publish.

    Lists are passed to scripts space-separated (packtivity's rule for interpolation).
    """
    outputs: dict[str, list[dict[str, Any]]] = {"init": [init]}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for stage in spec["stages"]:
        scheduler = stage["scheduler"]
        params = {p["key"]: p["value"] for p in scheduler["parameters"]}
        scatter = scheduler.get("scatter", {}).get("parameters", [])
        first = _resolve(params[scatter[0]], outputs, root) if scatter else [None]
        outputs[stage["name"]] = []
        for index in range(len(first)):
            workdir = root / (f"{stage['name']}_{index}" if scatter else stage["name"])
            workdir.mkdir(parents=True)
            values = {k: _resolve(v, outputs, workdir) for k, v in params.items()}
            for key in scatter:
                values[key] = values[key][index]
            flat = {
                k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in values.items()
            }
            script = scheduler["step"]["process"]["script"].format(**flat)
            done = subprocess.run(
                ["sh", "-c", script], cwd=root, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{stage['name']}: {done.stderr[-2000:]}"
            publish = scheduler["step"]["publisher"]["publish"]
            outputs[stage["name"]].append(
                {
                    k: [x.format(**flat) for x in v] if isinstance(v, list) else v.format(**flat)
                    for k, v in publish.items()
                }
            )
    return outputs


@pytest.mark.slow
def test_exported_workflow_runs_end_to_end(tmp_path: Path) -> None:
    small = [
        "methods=[alices, sally]",
        "plotting.correlations_methods=[alices]",
        "sampling.n_samples_train=500",
        "training.num_epochs=1",
        "training.n_hidden=[10]",
        "evaluation.n_samples_test=100",
        "asymptotic_limits.resolutions=[5, 5]",
    ]
    sets = [arg for item in small for arg in ("--set", item)]
    _export(tmp_path / "spec", *sets, "--toy-events", "5000")
    spec = _validate(tmp_path / "spec")
    outputs = _run_like_yadage(
        spec, tmp_path / "run", {"input_file": str(tmp_path / "spec" / "input.yml")}
    )
    models = outputs["training"]
    assert [Path(m["model_dir"]).name for m in models] == ["alices_0", "sally_0"]
    assert all((Path(m["model_dir"]) / "step.json").is_file() for m in models)
    plots = Path(outputs["plotting"][0]["plots_dir"])
    assert sorted(p.suffix for p in plots.glob("*")) and any(plots.glob("*.png"))
