"""Seed step 2: train one method's estimator on one ``Samples_<method>_<i>`` folder.

As the seed: ratio methods train ``ParameterizedRatioEstimator(n_hidden=(100, 100, 100))``
with the command line's α, epochs, batch size and validation split; score methods train
``ScoreEstimator()`` with MadMiner's defaults for everything (the seed ignores the command
line's training options there: 50 epochs, batch 128, one hidden layer). Both keep MadMiner's
default data loader (8 worker processes). The model is saved as
``<output-dir>/models/<method>/<method>``.

Tracking (with ``$MLFLOW_TRACKING_URI`` set), as the seed's training step: one run in
``madminer-ml-train`` with the command line's options as parameters, the tags
``context: workflow``, ``method`` and ``sampling_run`` (from the folder name), the saved model
folder as artifacts and the network (``estimator.model``) through ``mlflow.pytorch.log_model``.
The seed passes neither a format nor requirements; its MLflow (1.14) pickled the model and wrote
the flavour's fixed default environment. MLflow 3 needs the pickle format named (its default,
``pt2``, wants an input example), and without a requirement list it infers one by loading the
model in a subprocess: about 5 s per model here, which the seed never spent. So the flavour's
default requirements (torch, cloudpickle) are passed, as MLflow 1.14 wrote them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seed_inputs import (
    RATIO_METHODS,
    SCORE_METHODS,
    configure_logging,
    method_of_folder,
    tracked,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-folder", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--num-epochs", type=int, default=2)
    parser.add_argument("--valid-split", type=float, default=0.3)
    args = parser.parse_args()
    configure_logging()
    method = method_of_folder(args.train_folder)
    sampling_run = args.train_folder.resolve().name.rsplit("_", 1)[-1]
    with tracked("training", args, {"method": method, "sampling_run": sampling_run}) as mlflow:
        estimator, folder = train(args, method)
        if mlflow is not None:
            import mlflow.pytorch

            mlflow.log_artifacts(str(folder))
            mlflow.pytorch.log_model(
                estimator.model,
                name=method,
                serialization_format="pickle",
                pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
            )


def train(args: argparse.Namespace, method: str) -> tuple[Any, Path]:
    """Train and save the method's estimator; returns it and the folder it is saved in."""
    from madminer.ml import ParameterizedRatioEstimator, ScoreEstimator

    def sample(stem: str) -> str:
        return str(args.train_folder / f"{stem}_{method}_train.npy")

    if method in RATIO_METHODS:
        estimator = ParameterizedRatioEstimator(n_hidden=(100, 100, 100))
        estimator.train(
            method=method,
            x=sample("x"),
            y=sample("y"),
            theta=sample("theta0"),
            r_xz=sample("r_xz"),
            t_xz=sample("t_xz"),
            alpha=args.alpha,
            n_epochs=args.num_epochs,
            batch_size=args.batch_size,
            validation_split=args.valid_split,
        )
    elif method in SCORE_METHODS:
        estimator = ScoreEstimator()
        estimator.train(method=method, x=sample("x"), t_xz=sample("t_xz"))
    else:
        raise ValueError(f"no training for method {method!r}")

    folder = args.output_dir / "models" / method
    folder.mkdir(parents=True, exist_ok=True)
    estimator.save(str(folder / method))
    return estimator, folder


if __name__ == "__main__":
    main()
