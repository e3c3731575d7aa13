"""The workflow input file: the seed's input.yml as is, the built-in default, precise errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from minerflow.config.workflow_input import (
    WorkflowInput,
    default_input_path,
    load_workflow_input,
    parse_overrides,
)
from minerflow.errors import ConfigError
from minerflow.io.madminer_file import read_event_file
from minerflow.physics import toy
from minerflow.physics.parameters import Benchmark, Prior, RandomMorphingPoints, spec_from_mapping

SEED_METHODS = ("alice", "alices", "sally")


@pytest.fixture(scope="module")
def seed_data(reference_input_file: Path) -> dict[str, Any]:
    return yaml.safe_load(reference_input_file.read_text())


@pytest.fixture
def write_input(tmp_path: Path, seed_data: dict[str, Any]) -> Callable[..., Path]:
    """Write the seed input after ``mutate(data)`` edits it; returns the file."""

    def write(mutate: Callable[[dict[str, Any]], None]) -> Path:
        data = yaml.safe_load(yaml.safe_dump(seed_data))
        mutate(data)
        path = tmp_path / "input.yml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def _toy_header():
    return toy.DEFAULT_TOY.header(np.full(len(toy.BENCHMARK_NAMES), 100, dtype=np.int64))


def test_seed_input_is_accepted_unchanged(reference_input_file: Path, seed_data) -> None:
    cfg = load_workflow_input(reference_input_file)
    assert cfg.source == str(reference_input_file)
    assert cfg.estimator == "parameterized"
    assert cfg.methods == SEED_METHODS
    assert cfg.asymptotic_limits.bounds == ((-20.0, 20.0), (-20.0, 20.0))
    assert cfg.asymptotic_limits.resolutions == (25, 25)
    assert cfg.asymptotic_limits.theta_true == (0.0, 0.0)
    assert cfg.include_xsec == (True, False)
    assert cfg.histogram_vars == ("pt_j1",)
    fisher = cfg.fisher_information
    assert (fisher.enabled, fisher.observable) == (True, "pt_j1")
    assert fisher.histogram_bins == (30.0, 100.0, 200.0, 400.0)
    assert fisher.histogram_range == (30.0, 400.0)
    assert cfg.plotting.all_methods_pvalue == "alices"
    assert cfg.plotting.correlations_methods == ("alices", "alice")
    # the seed's command-line defaults (its MLproject), with a real boolean for nuisance
    assert cfg.sampling.model_dump() == {
        "n_samples_train": 1000,
        "n_sampling_runs": 1,
        "test_split": 0.5,
        "nuisance": False,
        "seed": 1234,
    }
    assert (cfg.training.alpha, cfg.training.batch_size, cfg.training.num_epochs) == (10, 100, 2)
    assert cfg.training.valid_split == 0.3
    assert (cfg.evaluation.luminosity, cfg.evaluation.n_samples_test) == (1e4, 100)
    assert cfg.luminosity == 1e4
    # the theta specs are the physics layer's spec objects, as its own YAML parser reads them
    for method in SEED_METHODS:
        for role, spec in zip(("theta_0", "theta_1"), cfg.theta_specs(method), strict=False):
            assert spec.to_spec() == spec_from_mapping(seed_data[method][role], 2, "f", role)
    assert cfg.alice.theta_0.to_spec() == RandomMorphingPoints(
        20, (Prior("gaussian", 0.0, 1.0), Prior("gaussian", 0.0, 1.0))
    )
    assert cfg.sally.theta_0.to_spec() == Benchmark("sm")


def test_seed_input_matches_the_reference_event_file(
    reference_input_file: Path, reference_file: Path
) -> None:
    cfg = load_workflow_input(reference_input_file)
    cfg.validate_against(read_event_file(reference_file).header)


def test_default_input_is_the_seeds_tuned_to_the_toy(reference_input_file: Path) -> None:
    seed = load_workflow_input(reference_input_file)
    cfg = load_workflow_input(None)
    assert cfg.source == str(default_input_path())
    assert cfg.methods == seed.methods
    for method in seed.methods:
        assert [s.to_spec() for s in cfg.theta_specs(method)] == [
            s.to_spec() for s in seed.theta_specs(method)
        ]
    assert cfg.plotting == seed.plotting
    assert cfg.asymptotic_limits.bounds == toy.DEFAULT_LIMIT_REGION
    assert cfg.asymptotic_limits.resolutions == toy.DEFAULT_LIMIT_RESOLUTIONS
    assert cfg.asymptotic_limits.theta_true == toy.DEFAULT_THETA_TRUE
    assert cfg.luminosity == toy.DEFAULT_LUMINOSITY
    cfg.validate_against(_toy_header())


def _seed_error(write_input, mutate) -> str:
    with pytest.raises(ConfigError) as info:
        load_workflow_input(write_input(mutate))
    return str(info.value)


@pytest.mark.parametrize(
    ("mutate", "key", "expected"),
    [
        (
            lambda d: d.update(training={"alpha": "x"}),
            "training.alpha",
            "a number, got 'x'",
        ),
        (
            lambda d: d["plotting"].update(all_methods_pvalue="carl"),
            "plotting.all_methods_pvalue",
            "one of the listed methods ['alice', 'alices', 'sally']",
        ),
        (
            lambda d: d["plotting"].update(correlations_methods=["alices", "rolr"]),
            "plotting.correlations_methods[1]",
            "one of the listed methods ['alice', 'alices', 'sally'], got 'rolr'",
        ),
        (
            lambda d: d["methods"].append("carl"),
            "carl.theta_0",
            "a theta_0 section for 'carl'",
        ),
        (
            lambda d: d["alice"].pop("theta_1"),
            "alice.theta_1",
            "a theta_1 section (ratio method 'alice')",
        ),
        (
            lambda d: d["sally"].update(theta_1=d["alice"]["theta_1"]),
            "sally.theta_1",
            "no theta_1 ('sally' uses one parameter point)",
        ),
        (
            lambda d: d["alice"]["theta_0"]["prior"][1]["parameter_1"].update(prior_shape="cauchy"),
            "alice.theta_0.prior[1].parameter_1.prior_shape",
            "'gaussian' or 'flat', got 'cauchy'",
        ),
        (
            lambda d: d["alice"]["theta_0"].pop("sampling_number"),
            "alice.theta_0.sampling_number",
            "a positive number of points",
        ),
        (
            lambda d: d["asymptotic_limits"].update(resolutions=[25]),
            "asymptotic_limits.resolutions",
            "2 grid sizes, one per region axis",
        ),
        (
            lambda d: d["asymptotic_limits"]["region"]["theta_1"].update(max=-30.0),
            "asymptotic_limits.region.theta_1.max",
            "a value above min (-20.0)",
        ),
        (
            lambda d: d["fisher_information"].update(histogram_bins=[30.0, 20.0]),
            "fisher_information.histogram_bins",
            "at least two strictly increasing bin edges",
        ),
        (lambda d: d.update(estimator="linear"), "estimator", None),
        (lambda d: d.pop("methods"), "methods", "a value (this key is required)"),
        (
            lambda d: d.update(sampling={"nuisance": "perhaps"}),
            "sampling.nuisance",
            "a boolean, got 'perhaps'",
        ),
        (
            lambda d: d.update(sampling={"test_split": 1.5}),
            "sampling.test_split",
            "less than 1, got 1.5",
        ),
    ],
)
def test_invalid_input_gives_one_line_with_the_key_path(write_input, mutate, key, expected):
    message = _seed_error(write_input, mutate)
    assert "\n" not in message
    prefix = f"{write_input(lambda d: None)}: {key}: expected "
    assert message.startswith(prefix)
    if expected is not None:
        assert message == prefix + expected


def test_unknown_keys_are_rejected_with_a_suggestion(write_input) -> None:
    message = _seed_error(write_input, lambda d: d.update(alicee={"theta_0": {}}))
    assert message.startswith(f"{write_input(lambda d: None)}: alicee: expected a known key ")
    assert "did you mean 'alice'?" in message
    message = _seed_error(write_input, lambda d: d["plotting"].update(roc=True))
    assert ": plotting.roc: expected a known key (known: all_methods, " in message


def test_several_problems_are_counted(write_input) -> None:
    message = _seed_error(write_input, lambda d: d.update(estimator=1, methods="x"))
    assert message.endswith("(and 1 more problem)")


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("estimator: parameterized\nmethods: [alice, sally\nplotting: {}\n")
    with pytest.raises(ConfigError) as info:
        load_workflow_input(path)
    assert str(info.value).startswith(f"{path}: line 3, column 9: expected valid YAML (")
    path.write_text("methods: [alice]\nmethods: [sally]\n")
    with pytest.raises(ConfigError, match=r": line 2, column 1: expected valid YAML \(duplicate"):
        load_workflow_input(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"bad.yml: expected a YAML mapping of settings"):
        load_workflow_input(path)
    with pytest.raises(ConfigError, match=r"missing.yml: expected an existing input file"):
        load_workflow_input(tmp_path / "missing.yml")


def test_overrides_are_yaml_values_at_key_paths(reference_input_file: Path) -> None:
    cfg = load_workflow_input(
        reference_input_file,
        [
            "training.alpha=5",
            "methods=[alices, alice]",
            "sampling.nuisance=false",
            "alice.theta_0.prior.0.parameter_0.prior_param_1=2.5",
            "histogram_vars=[pt_j1, delta_phi_jj]",
        ],
    )
    assert cfg.training.alpha == 5.0
    assert cfg.methods == ("alices", "alice")
    assert cfg.sampling.nuisance is False
    assert cfg.alice.theta_0.priors[0][1].prior_param_1 == 2.5
    assert cfg.histogram_vars == ("pt_j1", "delta_phi_jj")
    assert parse_overrides(["a.b=[1, 2]", "c="]) == [(("a", "b"), [1, 2]), (("c",), "")]


def test_bad_overrides_name_the_set_option(reference_input_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_workflow_input(reference_input_file, ["training.alpha"])
    assert str(info.value) == "--set: training.alpha: expected key.path=value"
    with pytest.raises(ConfigError) as info:
        load_workflow_input(reference_input_file, ["training.batch_size=-3"])
    assert str(info.value) == (
        f"{reference_input_file} (--set training.batch_size): training.batch_size: "
        "expected greater than 0, got -3"
    )
    with pytest.raises(ConfigError, match=r"expected 'estimator' to be a section"):
        load_workflow_input(reference_input_file, ["estimator.kind=x"])


def test_checks_against_the_event_file(write_input, reference_file: Path) -> None:
    header = read_event_file(reference_file).header
    cases = [
        (
            lambda d: d["alice"]["theta_0"]["prior"].pop(),
            "alice.theta_0.prior: expected 2 priors, one per parameter ['CWL2', 'CPWL2']",
        ),
        (
            lambda d: d["sally"]["theta_0"].update(sampling_arg="bsm"),
            "sally.theta_0.sampling_arg: expected a benchmark of the event file",
        ),
        (
            lambda d: d.update(histogram_vars=["pt_j1", "m_jj"]),
            "histogram_vars[1]: expected one of the observables ['pt_j1', 'delta_phi_jj'], "
            "got 'm_jj'",
        ),
        (
            lambda d: d["asymptotic_limits"].update(
                region={f"theta_{i}": {"min": 0, "max": 1} for i in range(3)},
                resolutions=[3, 3, 3],
                theta_true=[0, 0, 0],
            ),
            "asymptotic_limits.region: expected 2 axes (one per parameter)",
        ),
    ]
    for mutate, expected in cases:
        path = write_input(mutate)
        cfg = load_workflow_input(path)
        with pytest.raises(ConfigError) as info:
            cfg.validate_against(header)
        assert str(info.value).startswith(f"{path}: {expected}")


def test_models_are_frozen(reference_input_file: Path) -> None:
    cfg = load_workflow_input(reference_input_file)
    with pytest.raises(ValidationError):
        cfg.training.alpha = 3.0  # type: ignore[misc]


def test_step_hashes_change_exactly_with_what_determines_the_step(
    reference_input_file: Path,
) -> None:
    base = load_workflow_input(reference_input_file)
    again = load_workflow_input(reference_input_file)
    assert base.step_hash("training", "alice") == again.step_hash("training", "alice")
    alpha = load_workflow_input(reference_input_file, ["training.alpha=1"])
    assert alpha.step_hash("sampling", "alice") == base.step_hash("sampling", "alice")
    assert alpha.step_hash("training", "alice") != base.step_hash("training", "alice")
    prior = load_workflow_input(
        reference_input_file, ["alice.theta_0.prior.0.parameter_0.prior_param_1=2"]
    )
    assert prior.step_hash("sampling", "alice") != base.step_hash("sampling", "alice")
    assert prior.step_hash("evaluation", "sally") == base.step_hash("evaluation", "sally")
    plot = load_workflow_input(reference_input_file, ["plotting.rates=false"])
    assert plot.step_hash("evaluation", "alices") == base.step_hash("evaluation", "alices")
    assert plot.step_hash("plotting") != base.step_hash("plotting")
    lumi = load_workflow_input(reference_input_file, ["evaluation.luminosity=100"])
    assert lumi.step_hash("training", "alices") == base.step_hash("training", "alices")
    assert lumi.step_hash("evaluation", "alices") != base.step_hash("evaluation", "alices")
    assert len(base.step_hash("plotting")) == 10
    with pytest.raises(ConfigError, match="'carl' to be listed"):
        base.step_config("sampling", "carl")


def test_plot_formats_default_one_or_many_and_checked(reference_input_file: Path) -> None:
    assert load_workflow_input(reference_input_file).plotting.formats == ("png", "pdf")
    one = load_workflow_input(reference_input_file, ["plotting.formats=png"])
    assert one.plotting.formats == ("png",)
    assert one.step_hash("plotting") != load_workflow_input(reference_input_file).step_hash(
        "plotting"
    )
    with pytest.raises(ConfigError, match=r"plotting\.formats\[0\]: expected 'png', 'pdf' or"):
        load_workflow_input(reference_input_file, ["plotting.formats=[jpg]"])
    with pytest.raises(ConfigError, match=r"plotting\.formats: expected .*at least 1 item"):
        load_workflow_input(reference_input_file, ["plotting.formats=[]"])


@settings(max_examples=30, deadline=None)
@given(
    alpha=st.floats(0, 100, allow_nan=False),
    batch=st.integers(1, 4096),
    hidden=st.lists(st.integers(1, 512), min_size=1, max_size=4),
    nuisance=st.booleans(),
    split=st.floats(0, 0.99),
)
def test_canonical_dict_round_trips(alpha, batch, hidden, nuisance, split) -> None:
    cfg = load_workflow_input(
        None,
        [
            f"training.alpha={alpha!r}",
            f"training.batch_size={batch}",
            f"training.n_hidden={hidden}",
            f"sampling.nuisance={str(nuisance).lower()}",
            f"sampling.test_split={split!r}",
        ],
    )
    assert cfg.training.n_hidden == tuple(hidden)
    again = WorkflowInput.model_validate(cfg.canonical_dict())
    assert again.canonical_dict() == cfg.canonical_dict()
    assert again.step_hash("plotting") == cfg.step_hash("plotting")
