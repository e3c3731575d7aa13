"""``minerflow export reana``: the workflow as a REANA specification with a yadage workflow.

The yadage workflow has the four steps of the coordinated run, each a call of our step
command in the container image (see the ``Dockerfile``): ``sampling`` → ``training``
(scattered, one step per method × sampling run) → ``evaluation`` (scattered, one per model)
→ ``plotting``; without a data file an ``events`` step writes the toy event file first. The
command-line arguments are the input's settings spelled out, as the seed's workflow does, and
the input itself (with ``--set`` overrides applied) is written next to ``reana.yaml``, so the
folder is what REANA uploads.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any

import yaml

import minerflow
from minerflow.errors import InputError

__all__ = ["build_reana", "build_yadage_workflow", "export_reana", "register"]

WORKFLOW_FILE = "workflow.yml"
INPUT_FILE = "input.yml"
TOY_EVENTS = 100_000


def _env(image: str, tag: str, memory: str) -> dict[str, Any]:
    """The container every step runs in, with the step's memory as REANA's Kubernetes limit."""
    unit = memory[-1] if memory[-1].isalpha() else "M"
    amount = memory[:-1] if memory[-1].isalpha() else memory
    return {
        "environment_type": "docker-encapsulated",
        "image": image,
        "imagetag": tag,
        "resources": [{"kubernetes_memory_limit": f"{amount}{unit}i"}],
    }


def _step(script: str, publish: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    return {
        "process": {"process_type": "interpolated-script-cmd", "script": script},
        "environment": env,
        "publisher": {"publisher_type": "interpolated-pub", "publish": publish},
    }


def _command(command: str, options: dict[str, Any], *flags: str) -> str:
    """``minerflow <command> --option value ... --flag``; ``{placeholders}`` stay for yadage."""

    def word(value: Any) -> str:
        return str(value) if str(value).startswith("{") else shlex.quote(str(value))

    parts = [f"minerflow {command}"]
    parts += [f"{name} {word(value)}" for name, value in options.items()]
    return " ".join([*parts, *flags])


def build_yadage_workflow(
    workflow_input: Any,
    *,
    image: str = "minerflow",
    tag: str = minerflow.__version__,
    with_data_file: bool = True,
    toy_events: int = TOY_EVENTS,
) -> dict[str, Any]:
    """The yadage workflow (``stages``) of the four steps for this input.

    ``init`` parameters: ``input_file`` and, with ``with_data_file``, ``data_file``;
    without it, the ``events`` step writes ``toy_events`` toy events.
    """
    from minerflow.config.resources import resolve_resources
    from minerflow.workflow.common import model_name, samples_folder_name

    source = workflow_input
    runs = range(source.sampling.n_sampling_runs)
    pairs = [(m, r) for m in source.methods for r in runs]
    memory = {
        step: resolve_resources(step).memory for step in ("sample", "train", "evaluate", "plot")
    }
    init_input = {"step": "init", "output": "input_file"}
    stages: list[dict[str, Any]] = []
    if with_data_file:
        data_file: dict[str, Any] = {"step": "init", "output": "data_file"}
        first = ["init"]
    else:
        data_file = {"step": "events", "output": "data_file"}
        first = ["events"]
        stages.append(
            {
                "name": "events",
                "dependencies": ["init"],
                "scheduler": {
                    "scheduler_type": "singlestep-stage",
                    "parameters": {"output_dir": "{workdir}"},
                    "step": _step(
                        _command(
                            "toy",
                            {
                                "--output": "{output_dir}/events.h5",
                                "--n-events": toy_events,
                                "--seed": source.sampling.seed,
                            },
                        ),
                        {"data_file": "{output_dir}/events.h5"},
                        _env(image, tag, memory["sample"]),
                    ),
                },
            }
        )
    sampling = source.sampling
    stages.append(
        {
            "name": "sampling",
            "dependencies": first,
            "scheduler": {
                "scheduler_type": "singlestep-stage",
                "parameters": {
                    "data_file": data_file,
                    "input_file": init_input,
                    "output_dir": "{workdir}",
                },
                "step": _step(
                    _command(
                        "sample",
                        {
                            "--data-file": "{data_file}",
                            "--input-file": "{input_file}",
                            "--output-dir": "{output_dir}",
                            "--n-samples-train": sampling.n_samples_train,
                            "--n-sampling-runs": sampling.n_sampling_runs,
                            "--test-split": sampling.test_split,
                            "--seed": sampling.seed,
                        },
                        "--nuisance" if sampling.nuisance else "--no-nuisance",
                    ),
                    {
                        "train_folders": [
                            f"{{output_dir}}/{samples_folder_name(m, r)}" for m, r in pairs
                        ]
                    },
                    _env(image, tag, memory["sample"]),
                ),
            },
        }
    )
    training = source.training
    stages.append(
        {
            "name": "training",
            "dependencies": ["sampling"],
            "scheduler": {
                "scheduler_type": "multistep-stage",
                "parameters": {
                    "train_folder": {"step": "sampling", "output": "train_folders"},
                    "model_name": [model_name(m, r) for m, r in pairs],
                    "input_file": init_input,
                    "output_dir": "{workdir}",
                },
                "scatter": {"method": "zip", "parameters": ["train_folder", "model_name"]},
                "step": _step(
                    _command(
                        "train",
                        {
                            "--input-file": "{input_file}",
                            "--train-folder": "{train_folder}",
                            "--output-dir": "{output_dir}",
                            "--alpha": training.alpha,
                            "--batch-size": training.batch_size,
                            "--num-epochs": training.num_epochs,
                            "--valid-split": training.valid_split,
                            "--device": training.device,
                        },
                    ),
                    {"model_dir": "{output_dir}/models/{model_name}"},
                    _env(image, tag, memory["train"]),
                ),
            },
        }
    )
    stages.append(
        {
            "name": "evaluation",
            "dependencies": ["training"],
            "scheduler": {
                "scheduler_type": "multistep-stage",
                "parameters": {
                    "model_dir": {"stages": "training", "output": "model_dir", "flatten": True},
                    "data_file": data_file,
                    "input_file": init_input,
                    "output_dir": "{workdir}",
                },
                "scatter": {"method": "zip", "parameters": ["model_dir"]},
                "step": _step(
                    _command(
                        "evaluate",
                        {
                            "--data-file": "{data_file}",
                            "--model-dir": "{model_dir}",
                            "--input-file": "{input_file}",
                            "--output-dir": "{output_dir}",
                            "--luminosity": source.luminosity,
                            "--n-samples-test": source.evaluation.n_samples_test,
                        },
                    ),
                    {"eval_dir": "{output_dir}"},
                    _env(image, tag, memory["evaluate"]),
                ),
            },
        }
    )
    # minerflow plot reads one work directory: link every evaluation's and model's folder in
    gather = "\n".join(
        [
            "set -e",
            "mkdir -p {output_dir}/results {output_dir}/models",
            "for d in {eval_dirs}; do",
            "  ln -sfn $d/results/* {output_dir}/results/",
            "  [ -e {output_dir}/rates ] || ln -sfn $d/rates {output_dir}/rates",
            "done",
            "for m in {model_dirs}; do ln -sfn $m {output_dir}/models/; done",
            _command("plot", {"--input-file": "{input_file}", "--output-dir": "{output_dir}"}),
        ]
    )
    stages.append(
        {
            "name": "plotting",
            "dependencies": ["evaluation"],
            "scheduler": {
                "scheduler_type": "singlestep-stage",
                "parameters": {
                    "eval_dirs": {"stages": "evaluation", "output": "eval_dir", "flatten": True},
                    "model_dirs": {"stages": "training", "output": "model_dir", "flatten": True},
                    "input_file": init_input,
                    "output_dir": "{workdir}",
                },
                "step": _step(
                    gather, {"plots_dir": "{output_dir}/plots"}, _env(image, tag, memory["plot"])
                ),
            },
        }
    )
    return {"stages": stages}


def build_reana(input_name: str, data_name: str | None) -> dict[str, Any]:
    """``reana.yaml``: the uploaded files, the init parameters, the yadage workflow file."""
    files = [input_name] + ([data_name] if data_name else [])
    parameters = {"input_file": input_name} | ({"data_file": data_name} if data_name else {})
    return {
        "inputs": {"files": files, "parameters": parameters},
        "workflow": {"type": "yadage", "file": WORKFLOW_FILE},
        "outputs": {"directories": ["plotting/plots"]},
    }


class _PlainDumper(yaml.SafeDumper):
    """Readable specs: repeated values in full (no ``&id`` anchors), scripts as ``|`` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_PlainDumper.add_representer(str, _text)


def _write_yaml(path: Path, data: Any, header: str) -> Path:
    from minerflow.io.atomic import atomic_path

    text = yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, width=100)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(header + text)
    return path


def export_reana(
    output: str | os.PathLike[str],
    input_file: str | os.PathLike[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    data_file: str | os.PathLike[str] | None = None,
    *,
    image: str = "minerflow",
    tag: str = minerflow.__version__,
    toy_events: int = TOY_EVENTS,
) -> list[Path]:
    """Write ``reana.yaml`` (at ``output``), ``workflow.yml`` and ``input.yml`` beside it.

    A data file must lie in that folder (REANA uploads the folder); without one the
    workflow generates the toy event file first. Returns the written paths.
    """
    from minerflow.config.workflow_input import load_workflow_input

    workflow_input = load_workflow_input(input_file, overrides)
    target = Path(output)
    folder = target.parent.resolve()
    data_name = None
    if data_file is not None:
        data = Path(data_file).resolve()
        if not data.is_file():
            raise InputError(data, None, "an existing event file (--data-file)")
        if not data.is_relative_to(folder):
            raise InputError(
                "--data-file", str(data_file), f"a file inside {folder} (REANA uploads that folder)"
            )
        data_name = data.relative_to(folder).as_posix()
    folder.mkdir(parents=True, exist_ok=True)
    header = f"# written by minerflow {minerflow.__version__} (minerflow export reana)\n"
    spec = build_yadage_workflow(
        workflow_input,
        image=image,
        tag=tag,
        with_data_file=data_name is not None,
        toy_events=toy_events,
    )
    return [
        _write_yaml(target, build_reana(INPUT_FILE, data_name), header),
        _write_yaml(folder / WORKFLOW_FILE, spec, header),
        _write_yaml(folder / INPUT_FILE, workflow_input.canonical_dict(), header),
    ]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand (target: ``reana``)."""
    from minerflow.cli.lfi_options import add_input_options
    from minerflow.cli.options import positive_int

    parser = subparsers.add_parser(
        "export",
        help="write the workflow for another system (reana: reana.yaml + yadage workflow)",
        description="Write reana.yaml, a yadage workflow.yml calling the minerflow step "
        "commands in the container image, and the input (overrides applied) into one folder.",
    )
    parser.add_argument("target", choices=("reana",), help="what to export")
    add_input_options(parser)
    parser.add_argument("--output", type=Path, default=Path("reana.yaml"), help="reana.yaml path")
    parser.add_argument("--data-file", type=Path, help="event file inside the output folder")
    parser.add_argument("--image", default="minerflow", help="container image (minerflow)")
    parser.add_argument("--tag", default=minerflow.__version__, help="image tag (the version)")
    parser.add_argument(
        "--toy-events",
        type=positive_int,
        default=TOY_EVENTS,
        help=f"toy events generated when there is no data file ({TOY_EVENTS})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the files and say where they are."""
    paths = export_reana(
        args.output,
        args.input_file,
        args.overrides,
        args.data_file,
        image=args.image,
        tag=args.tag,
        toy_events=args.toy_events,
    )
    for path in paths:
        print(f"wrote {path}")
    return 0
