"""Seed step 2: train one method's estimator on one ``Samples_<method>_<i>`` folder.

As the seed: ratio methods train ``ParameterizedRatioEstimator(n_hidden=(100, 100, 100))``
with the command line's α, epochs, batch size and validation split; score methods train
``ScoreEstimator()`` with MadMiner's defaults for everything (the seed ignores the command
line's training options there: 50 epochs, batch 128, one hidden layer). Both keep MadMiner's
default data loader (8 worker processes). The model is saved as
``<output-dir>/models/<method>/<method>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seed_inputs import RATIO_METHODS, SCORE_METHODS, configure_logging, method_of_folder


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

    from madminer.ml import ParameterizedRatioEstimator, ScoreEstimator

    method = method_of_folder(args.train_folder)

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


if __name__ == "__main__":
    main()
