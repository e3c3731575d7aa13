"""Seed step 4: the seed's figures from the evaluation outputs.

``all_methods.png`` (the p-value map of ``all_methods_pvalue`` without the rate term, with the
1σ contours and best fits of every method, the rate and the histogram),
``all_methods_separate.png`` (one panel per result) and ``correlation_<METHOD>.png`` (true
joint log r of the test events against the estimate) under ``<output-dir>/plots``, switched
by the ``plotting`` section of the input as in the seed.

Not tracked, whatever ``$MLFLOW_TRACKING_URI`` says: the seed's plotting step is the one step
its shell layer runs as a plain ``python3`` call rather than through ``mlflow run``, and its
script never imports MLflow, so the figures stay in the work dir.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from seed_inputs import RATIO_METHODS, configure_logging, limit_grid, read_input

COLORS = {"alice": "C1", "alices": "red", "rascal": "magenta", "sally": "C0"}
P_1SIGMA = 0.61  # the seed's contour level


def load_results(inputs: dict[str, Any], output_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``label -> {p_values, best_fit}`` for the rate, the histogram and every method."""
    rates = output_dir / "rates"
    results = {
        "rate": dict(np.load(rates / "rate.npz")),
        "histo": dict(np.load(rates / "histo.npz")),
        "histo_kin": dict(np.load(rates / "histo_kin.npz")),
    }
    for method in inputs["methods"]:
        mode = "ml" if method in RATIO_METHODS else "histo"
        for suffix in ("", "_kin"):
            path = output_dir / "results" / method / mode / f"{method}{suffix}.npz"
            results[f"{method}{suffix}"] = dict(np.load(path))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input-file", required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args()
    configure_logging()

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.colors import LogNorm

    inputs = read_input(args.input_file)
    plotting = inputs["plotting"]
    ranges, resolutions, _ = limit_grid(inputs)
    grid = np.load(args.output_dir / "rates" / "grid.npy")
    results = load_results(inputs, args.output_dir)
    plots = args.output_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    centers = [np.linspace(lo, hi, n) for (lo, hi), n in zip(ranges, resolutions, strict=True)]
    edges = [
        np.linspace(lo - (hi - lo) / (n - 1) / 2, hi + (hi - lo) / (n - 1) / 2, n + 1)
        for (lo, hi), n in zip(ranges, resolutions, strict=True)
    ]

    def p_map(label: str) -> np.ndarray:
        return results[label]["p_values"].reshape(resolutions)

    def draw(ax: Any, label: str, color: str, style: str, marker: str) -> None:
        ax.contour(*centers, p_map(label).T, levels=[P_1SIGMA], colors=color, linestyles=style)
        best = grid[int(results[label]["best_fit"])]
        ax.scatter(best[0], best[1], s=80.0, color=color, marker=marker, label=label.upper())

    def background(ax: Any, label: str) -> None:
        mesh = ax.pcolormesh(
            *edges, p_map(label).T, norm=LogNorm(vmin=1e-3, vmax=1.0), cmap="Greys_r"
        )
        ax.figure.colorbar(mesh, ax=ax, extend="both").set_label(f"expected p-value ({label})")
        ax.set_xlabel(r"$\theta_0$")
        ax.set_ylabel(r"$\theta_1$")

    if plotting.get("all_methods", False):
        fig, ax = plt.subplots(figsize=(6, 5))
        background(ax, f"{plotting['all_methods_pvalue']}_kin")
        for method in inputs["methods"]:
            draw(ax, method, COLORS.get(method, "C2"), "solid", "*")
            draw(ax, f"{method}_kin", COLORS.get(method, "C2"), "dashed", "+")
        draw(ax, "rate", "black", "solid", "*")
        draw(ax, "histo", "limegreen", "solid", "*")
        draw(ax, "histo_kin", "limegreen", "dashed", "+")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plots / "all_methods.png")
        plt.close(fig)

    if plotting.get("all_methods_separate", False):
        labels = ["rate", "histo", "histo_kin"]
        labels += [f"{m}{s}" for m in inputs["methods"] for s in ("", "_kin")]
        n_cols = 3
        n_rows = (len(labels) + n_cols - 1) // n_cols
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(6.0 * n_cols, 5.0 * n_rows))
        for ax, label in zip(axes.flat, labels, strict=False):
            background(ax, label)
            style = "dashed" if label.endswith("_kin") else "solid"
            draw(ax, label, COLORS.get(label.split("_")[0], "C2"), style, "+")
            ax.set_title(label.upper())
        fig.tight_layout()
        fig.savefig(plots / "all_methods_separate.png")
        plt.close(fig)

    if plotting.get("correlations", False):
        from madminer.ml import ParameterizedRatioEstimator

        for method in plotting.get("correlations_methods", []):
            tests = args.output_dir / "test" / method
            estimator = ParameterizedRatioEstimator()
            estimator.load(str(args.output_dir / "models" / method / method))
            llr_estimated, _ = estimator.evaluate_log_likelihood_ratio(
                x=np.load(tests / "x_test.npy"),
                theta=np.load(tests / "theta0_test.npy"),
                test_all_combinations=False,
                evaluate_score=False,
            )
            llr_true = np.log(np.load(tests / "r_xz_test.npy").ravel())
            fig, ax = plt.subplots(figsize=(5, 5))
            ax.hist2d(llr_true, llr_estimated, bins=40, range=[(-2, 2), (-2, 2)], cmap="Greens")
            ax.set_xlabel("log r: truth (joint)")
            ax.set_ylabel("log r: estimated")
            ax.set_title(f"Correlation {method.upper()}")
            fig.tight_layout()
            fig.savefig(plots / f"correlation_{method.upper()}.png")
            plt.close(fig)


if __name__ == "__main__":
    main()
