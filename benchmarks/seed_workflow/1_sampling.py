"""Seed step 1: draw the training samples of every method with MadMiner's ``SampleAugmenter``.

Ratio methods get ``sample_train_ratio``, score methods ``sample_train_local``, density methods
``sample_train_density``, each into ``<output-dir>/data/Samples_<method>_<i>`` as
``<stem>_<method>_train.npy``, once per sampling run, as the seed's sampling script does.

Tracking (with ``$MLFLOW_TRACKING_URI`` set): one run in ``madminer-ml-sample`` holding the
command line's options as parameters and the tag ``context: workflow``, as the seed's sampling
step records; like the seed, it logs no artifacts (the samples stay in the work dir).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from seed_inputs import (
    DENSITY_METHODS,
    RATIO_METHODS,
    SCORE_METHODS,
    configure_logging,
    read_input,
    theta_values,
    tracked,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-file", required=True)
    parser.add_argument("--input-file", required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--n-samples-train", type=int, default=1000)
    parser.add_argument("--n-sampling-runs", type=int, default=1)
    parser.add_argument("--test-split", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    configure_logging()
    np.random.seed(args.seed)  # MadMiner draws from numpy's global generator

    with tracked("sampling", args):
        sample(args)


def sample(args: argparse.Namespace) -> None:
    """Every method's training samples, one folder per method and sampling run."""
    from madminer.sampling import SampleAugmenter

    inputs = read_input(args.input_file)
    sampler = SampleAugmenter(args.data_file, include_nuisance_parameters=False)
    for method in inputs["methods"]:
        specs = inputs[method]
        for run in range(args.n_sampling_runs):
            common = {
                "n_samples": args.n_samples_train,
                "folder": str(args.output_dir / "data" / f"Samples_{method}_{run}"),
                "filename": f"{method}_train",
                "test_split": args.test_split,
            }
            if method in RATIO_METHODS:
                sampler.sample_train_ratio(
                    theta0=theta_values(specs["theta_0"]),
                    theta1=theta_values(specs["theta_1"]),
                    **common,
                )
            elif method in SCORE_METHODS:
                sampler.sample_train_local(theta=theta_values(specs["theta_0"]), **common)
            elif method in DENSITY_METHODS:
                sampler.sample_train_density(theta=theta_values(specs["theta_0"]), **common)
            else:
                raise ValueError(f"no sampling for method {method!r}")


if __name__ == "__main__":
    main()
