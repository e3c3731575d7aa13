"""Augmented sampling against exact answers: partitions, joint ratio/score, unweighting."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from minerflow.errors import InputError
from minerflow.io.madminer_file import (
    EventFileHeader,
    Parameter,
    k_factors,
    read_event_file,
    write_event_file,
)
from minerflow.physics.morphing import find_components, morphing_matrix
from minerflow.physics.parameters import (
    Benchmark,
    MorphingPoints,
    Prior,
    RandomMorphingPoints,
    spec_from_mapping,
)
from minerflow.physics.sampling import SampleAugmenter, SamplingWarning, partitions

SM = Benchmark("sm")
PRIOR = RandomMorphingPoints(20, (Prior("gaussian", 0.0, 1.0), Prior("gaussian", 0.0, 1.0)))


@pytest.fixture(scope="module")
def reference(request) -> SampleAugmenter:
    path = request.getfixturevalue("reference_file")
    return SampleAugmenter(path, test_split=0.5, validation_split=0.2)


def _quiet(call, *args, **kwargs):
    """Run a sampling call whose statistical warnings are expected (the reference file is tiny)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        return call(*args, **kwargs)


def _partition_events(augmenter: SampleAugmenter, name: str):
    part = augmenter.partitions[name]
    file = augmenter.event_file
    return (
        part,
        file.observations(part.start, part.stop),
        file.weights(part.start, part.stop),
        file.sampling_benchmarks(part.start, part.stop),
    )


def _closest(augmenter: SampleAugmenter, theta: np.ndarray) -> int:
    values = augmenter.header.benchmark_values
    return int(np.argmin(np.linalg.norm(values - theta, axis=1)))


# ---------------------------------------------------------------------------- partitions
@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 100_000),
    test=st.floats(0.0, 1.0),
    val=st.floats(0.0, 1.0),
)
def test_partitions_tile_the_file(n, test, val):
    if test + val > 1.0:
        with pytest.raises(InputError, match="test_split \\+ validation_split"):
            partitions(n, test, val)
        return
    parts = partitions(n, test, val)
    train, valid, tests = parts["train"], parts["validation"], parts["test"]
    assert (train.start, train.stop, valid.stop, tests.stop) == (0, valid.start, tests.start, n)
    assert train.n_events + valid.n_events + tests.n_events == n
    assert abs(tests.n_events - test * n) <= 1.0 and abs(valid.n_events - val * n) <= 1.0 + 1e-9
    for part in (train, valid, tests):
        if part.n_events:
            assert part.correction_factor * part.n_events == pytest.approx(n)
        else:
            with pytest.raises(InputError, match="non-empty partition"):
                _ = part.correction_factor


@pytest.mark.parametrize(("test", "val"), [(-0.1, 0.2), (0.2, 1.2), (0.6, 0.6)])
def test_bad_splits(reference_file, test, val):
    with pytest.raises(InputError, match="split"):
        SampleAugmenter(reference_file, test_split=test, validation_split=val)


def test_reference_partition_bounds(reference):
    """5821 events, test 0.5, val 0.2: train [0, 1746), val [1746, 2910), test [2910, 5821)."""
    bounds = {k: (p.start, p.stop) for k, p in reference.partitions.items()}
    assert bounds["train"] == (0, 1746)
    assert bounds["validation"] == (1746, 2910)
    assert bounds["test"] == (2910, 5821)


def test_training_events_never_in_test_sample(reference, rng):
    train = _quiet(reference.sample_train_ratio, PRIOR, SM, 4000, rng)
    local = _quiet(reference.sample_train_local, SM, 2000, rng)
    test = _quiet(reference.sample_test, SM, 2000, rng)
    part = reference.partitions
    for sample in (train, local):
        assert sample["event_index"].min() >= part["train"].start
        assert sample["event_index"].max() < part["train"].stop
    assert test["event_index"].min() >= part["test"].start
    assert not set(test["event_index"]) & (set(train["event_index"]) | set(local["event_index"]))


# ---------------------------------------------------------------------------- joint quantities
def _direct(augmenter, name, theta, rows, sampling_theta):
    """dσ_i(θ) and σ(θ) computed the plain way, over the events a sample at ``sampling_theta``
    may use (closest-benchmark mode)."""
    _, _, weights, ids = _partition_events(augmenter, name)
    keep = (ids == _closest(augmenter, sampling_theta)) | (ids < 0)
    morph = augmenter.header.morpher().weights(np.atleast_2d(theta))[0]
    event = augmenter.event_file.weights(0, None)[rows] @ morph
    return event, weights[keep].sum(axis=0) @ morph


def test_joint_ratio_and_score_match_finite_differences(reference, rng):
    """r(x,z|θ0,θ1) from the plain per-event formula; t(x,z|θ0) = ∇ log(dσ_i/σ) by central
    differences of the morphed weights."""
    sample = _quiet(reference.sample_train_ratio, PRIOR, SM, 400, rng)
    sm = np.zeros(2)
    h = 1e-5
    for i in rng.choice(len(sample["y"]), 40, replace=False):
        row = sample["event_index"][i : i + 1]
        theta0 = sample["theta0"][i].astype(np.float64)
        sampling = theta0 if sample["y"][i, 0] == 0 else sm
        d0, s0 = _direct(reference, "train", theta0, row, sampling)
        d1, s1 = _direct(reference, "train", sm, row, sampling)
        assert sample["r_xz"][i, 0] == pytest.approx((d0[0] / s0) / (d1[0] / s1), rel=1e-5)
        # θ0 in the file is float32: differentiate at the stored value
        fd = []
        for p in range(2):
            step = np.eye(2)[p] * h
            up = _direct(reference, "train", theta0 + step, row, sampling)
            down = _direct(reference, "train", theta0 - step, row, sampling)
            fd.append((np.log(up[0][0] / up[1]) - np.log(down[0][0] / down[1])) / (2 * h))
        np.testing.assert_allclose(sample["t_xz"][i], fd, rtol=1e-4, atol=1e-4)


def test_local_score_and_more_ratios_are_consistent(reference, rng):
    """t_xz0 / t_xz1 of the double-parameterised sample equal the score at the row's θ0 / θ1,
    and every additional point duplicates the drawn rows with the right θ and r."""
    extra = np.array([[0.5, -0.5]])
    sample = _quiet(
        reference.sample_train_more_ratios,
        np.array([[1.0, 0.0], [0.0, 1.0]]),
        SM,
        1000,
        rng,
        additional_thetas=[extra],
    )
    n = len(sample["y"])
    assert n == 2000
    assert set(sample) == {
        "x", "theta0", "theta1", "y", "r_xz", "t_xz0", "t_xz1", "event_index", "n_effective",
    }  # fmt: skip
    y = sample["y"][:, 0]
    assert y.sum() == 1000
    copies = np.all(sample["theta0"] == extra.astype(np.float32), axis=1) | np.all(
        sample["theta1"] == extra.astype(np.float32), axis=1
    )
    assert copies.sum() == 1000
    # copies of y=1 rows get θ0 := extra; of y=0 rows θ1 := extra
    assert np.all(y[np.all(sample["theta0"] == extra.astype(np.float32), axis=1)] == 1)
    assert np.all(y[np.all(sample["theta1"] == extra.astype(np.float32), axis=1)] == 0)
    for i in rng.choice(n, 30, replace=False):
        row = sample["event_index"][i : i + 1]
        theta0, theta1 = sample["theta0"][i].astype(float), sample["theta1"][i].astype(float)
        sampling = theta1 if y[i] == 1 else theta0
        d0, s0 = _direct(reference, "train", theta0, row, sampling)
        d1, s1 = _direct(reference, "train", theta1, row, sampling)
        assert sample["r_xz"][i, 0] == pytest.approx((d0[0] / s0) / (d1[0] / s1), rel=1e-5)
        assert np.isfinite(sample["t_xz0"][i]).all() and np.isfinite(sample["t_xz1"][i]).all()


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    """A 20 000-event toy file and the latent z of each of its events (same seed)."""
    from minerflow.physics import toy

    path = toy.write_event_file(tmp_path_factory.mktemp("toy") / "toy.h5", 20_000, seed=3)
    return path, toy.DEFAULT_TOY.generate(20_000, seed=3).latent


def _offsets_per_set(keys, difference):
    """Mean and spread of ``difference`` within each group of equal ``keys`` rows."""
    _, groups = np.unique(keys, axis=0, return_inverse=True)
    groups = groups.reshape(-1)
    for g in range(groups.max() + 1):
        rows = groups == g
        yield difference[rows].mean(axis=0), difference[rows].std(axis=0)


def test_joint_quantities_equal_the_toy_truth(toy_file, rng):
    """Per drawn event, r(x,z) and t(x,z) equal the toy's analytic joint values on its latent z,
    up to one constant per set: our σ(θ) and ∇σ(θ) are Monte-Carlo sums over the partition's
    events (as MadMiner's), the toy's are exact. Within a set that offset is the same for every
    row (spread at float32 rounding) and small."""
    from minerflow.physics.toy import DEFAULT_TOY

    path, latent = toy_file
    augmenter = SampleAugmenter(path)
    prior = RandomMorphingPoints(5, (Prior("gaussian", 0.0, 0.5), Prior("gaussian", 0.0, 0.5)))
    sample = _quiet(augmenter.sample_train_ratio, prior, SM, 20_000, rng)
    z = latent[sample["event_index"]]
    theta0, theta1 = sample["theta0"].astype(float), sample["theta1"].astype(float)
    log_r = DEFAULT_TOY.joint_log_ratio(z, theta0, theta1, test_all_combinations=False)
    score = DEFAULT_TOY.joint_score(z, theta0, test_all_combinations=False)
    keys = np.column_stack([sample["theta0"], sample["y"]])
    offsets = list(_offsets_per_set(keys, np.log(sample["r_xz"][:, 0].astype(float)) - log_r))
    assert len(offsets) == 10
    for mean, spread in offsets:
        assert spread < 1e-6 and abs(mean) < 0.05
    for mean, spread in _offsets_per_set(keys, sample["t_xz"] - score):
        assert (spread < 1e-5).all() and (abs(mean) < 0.1).all()
    local = _quiet(augmenter.sample_train_density, prior, 5000, rng)
    truth = DEFAULT_TOY.joint_score(
        latent[local["event_index"]], local["theta"].astype(float), test_all_combinations=False
    )
    for mean, spread in _offsets_per_set(local["theta"], local["t_xz"] - truth):
        assert (spread < 1e-5).all() and (abs(mean) < 0.1).all()


def test_y1_half_uses_the_same_theta0_points(reference, rng):
    sample = _quiet(reference.sample_train_ratio, PRIOR, SM, 2000, rng)
    y = sample["y"][:, 0]
    assert y.sum() == 1000
    first = {tuple(t) for t in sample["theta0"][y == 0]}
    second = {tuple(t) for t in sample["theta0"][y == 1]}
    assert first == second and len(first) == 20
    assert np.all(sample["theta1"] == 0.0)
    # every y=1 row was drawn at sm: from sm-generated events only (closest-benchmark mode)
    ids = reference.event_file.sampling_benchmarks()[sample["event_index"][y == 1]]
    assert np.all(ids == reference.header.benchmark_index("sm"))


def test_local_sample_effective_events_as_madminer(reference, rng):
    """MadMiner's SampleAugmenter reports n_eff = 275 for the local sample at sm (same split)."""
    sample = _quiet(reference.sample_train_local, SM, 1000, rng)
    assert float(sample["n_effective"]) == pytest.approx(275.0, rel=1e-9)
    assert sample["x"].dtype == np.float32 and sample["t_xz"].shape == (1000, 2)
    assert "y" not in sample and "r_xz" not in sample


# ---------------------------------------------------------------------------- unweighting
def _chi2_pvalue(x, weights, drawn, n_bins=12):
    """χ² p-value of a histogram of ``drawn`` against the weighted events (x, weights).

    Bin edges at weighted quantiles; expected bin contents are the exact weight sums.
    """
    order = np.argsort(x)
    cdf = np.cumsum(weights[order]) / weights.sum()
    edges = np.unique(x[order][np.searchsorted(cdf, np.linspace(0, 1, n_bins + 1)[1:-1])])
    expected = np.bincount(np.searchsorted(edges, x, side="right"), weights, len(edges) + 1)
    expected_counts = expected / weights.sum() * len(drawn)
    observed = np.bincount(np.searchsorted(edges, drawn, side="right"), minlength=len(edges) + 1)
    keep = expected_counts > 5
    assert observed[~keep].sum() <= max(10, 3 * expected_counts[~keep].sum())
    chi2 = ((observed[keep] - expected_counts[keep]) ** 2 / expected_counts[keep]).sum()
    return stats.chi2.sf(chi2, keep.sum() - 1)


@pytest.mark.parametrize("closest", [True, False])
@pytest.mark.parametrize("theta", [(0.0, 0.0), (1.0, -1.0), (-2.0, 0.5), (10.0, 0.0)])
def test_unweighted_histogram_matches_weighted_distribution(reference_file, rng, theta, closest):
    augmenter = SampleAugmenter(
        reference_file, test_split=0.2, validation_split=0.2,
        sample_only_from_closest_benchmark=closest,
    )  # fmt: skip
    _, x, weights, ids = _partition_events(augmenter, "train")
    dsigma = weights @ augmenter.header.morpher().weights(np.array([theta]))[0]
    if closest:
        dsigma = np.where((ids == _closest(augmenter, np.array(theta))) | (ids < 0), dsigma, 0.0)
    else:
        dsigma = dsigma * k_factors(augmenter.header, ids)
    dsigma = np.maximum(dsigma, 0.0)
    sample = _quiet(augmenter.sample_train_plain, np.array([theta]), 20_000, rng)
    drawn_x = sample["x"][:, 0].astype(np.float64)
    assert _chi2_pvalue(x[:, 0], dsigma, drawn_x) > 1e-3
    # the test has power: the same sample against another θ is rejected
    other = np.maximum(weights @ augmenter.header.morpher().weights(np.array([[5.0, 5.0]]))[0], 0)
    assert _chi2_pvalue(x[:, 0], other * (dsigma > 0), drawn_x) < 1e-6


@pytest.mark.parametrize("closest", [True, False])
def test_same_seed_same_sample_whatever_the_chunking(reference_file, monkeypatch, closest):
    """Draws depend on the seed only: one in-memory chunk, or 97-event chunks read twice from
    disk (no cache) with the sampling points split into blocks of a few, give the same events."""
    from minerflow.physics import sampling

    def make(**kwargs):
        return SampleAugmenter(
            reference_file, test_split=0.5, sample_only_from_closest_benchmark=closest, **kwargs
        )

    whole = make()
    a = _quiet(whole.sample_train_ratio, PRIOR, SM, 3000, np.random.default_rng(5))
    b = _quiet(whole.sample_train_ratio, PRIOR, SM, 3000, np.random.default_rng(5))
    d = _quiet(whole.sample_train_ratio, PRIOR, SM, 3000, np.random.default_rng(6))
    monkeypatch.setattr(sampling, "_BLOCK_ELEMENTS", 400)
    chunked = make(chunk_size=97, max_cached_bytes=0)
    c = _quiet(chunked.sample_train_ratio, PRIOR, SM, 3000, np.random.default_rng(5))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_allclose(a[key], c[key], rtol=1e-6)
    np.testing.assert_array_equal(a["event_index"], c["event_index"])
    assert not np.array_equal(a["event_index"], d["event_index"])


def test_cross_sections_are_k_factored_sums(reference, reference_file):
    """σ(sm) = Σ_i k_i w_i,sm over the file = 0.001006 pb (MadMiner's value on this file),
    and ∇σ agrees with finite differences."""
    file = read_event_file(reference_file)
    ids = file.sampling_benchmarks()
    direct = (file.weights()[:, 0] * k_factors(file.header, ids)).sum()
    xs = reference.cross_sections(np.array([[0.0, 0.0], [1.0, 2.0]]))
    assert xs["xsec"][0] == pytest.approx(direct, rel=1e-12)
    assert xs["xsec"][0] == pytest.approx(0.001006, rel=1e-3)
    h = 1e-4
    shifted = reference.cross_sections(np.array([[1.0 + h, 2.0], [1.0 - h, 2.0]]))["xsec"]
    assert xs["xsec_gradient"][1, 0] == pytest.approx((shifted[0] - shifted[1]) / (2 * h))
    assert 0 < xs["xsec_uncertainty"][0] < xs["xsec"][0]
    test_part = reference.cross_sections(np.zeros((1, 2)), partition="test")
    assert test_part["xsec"][0] == pytest.approx(direct, rel=0.2)


# ---------------------------------------------------------------------------- reference file
def test_every_spec_of_the_workflow_input_samples(reference, reference_input_file, rng):
    config = yaml.safe_load(reference_input_file.read_text())
    n_p = reference.header.n_parameters
    for method in config["methods"]:
        block = config[method]
        theta0 = spec_from_mapping(block["theta_0"], n_p, "input.yml", f"{method}.theta_0")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SamplingWarning)
            if "theta_1" in block:
                theta1 = spec_from_mapping(block["theta_1"], n_p, "input.yml", f"{method}.theta_1")
                sample = reference.sample_train_ratio(theta0, theta1, 10_000, rng)
                expected = {"x", "theta0", "theta1", "y", "r_xz", "t_xz"}
            else:
                sample = reference.sample_train_local(theta0, 10_000, rng)
                expected = {"x", "theta", "t_xz"}
        # 20 random points: all closest to sm, a few heavy events each → n_eff ≈ 3 and warned
        small = float(sample["n_effective"]) < 100
        assert small == (method != "sally")
        assert small == any("effective events" in str(w.message) for w in caught)
        assert expected | {"event_index", "n_effective"} == set(sample)
        for key in expected:
            assert len(sample[key]) == 10_000
            assert np.isfinite(sample[key]).all(), (method, key)
        assert sample["x"].dtype == np.float32
        if "r_xz" in sample:
            assert sample["y"].dtype == np.float64 and sample["y"].shape == (10_000, 1)
            assert (sample["r_xz"] > 0).all()


# ---------------------------------------------------------------------------- synthetic files
def _write_one_parameter_file(path, z, ids, shift=0.0):
    """1 parameter g, dσ(z|g) ∝ (1 + g z)² − shift; benchmarks sm (0), plus (1), minus (−1)."""
    components = find_components([2])
    values = np.array([[0.0], [1.0], [-1.0]])
    header = EventFileHeader(
        parameters=(Parameter("g", "dim6", 1, 2, (-2.0, 2.0), None),),
        benchmark_names=("sm", "plus", "minus"),
        benchmark_values=values,
        benchmark_is_nuisance=np.zeros(3, bool),
        benchmark_is_reference=np.array([True, False, False]),
        morphing_components=components,
        morphing_matrix=morphing_matrix(components, values),
        observable_names=("z",),
        observable_definitions=(None,),
        signal_events=np.bincount(ids, minlength=3),
        background_events=0,
        n_events=len(z),
    )
    weights = ((1.0 + values[:, 0][None, :] * z[:, None]) ** 2 - shift) / len(z)
    return write_event_file(path, header, z[:, None], weights, ids)


def test_negative_weights_get_probability_zero(tmp_path, rng):
    z = rng.uniform(-2.0, 2.0, 5000)
    path = _write_one_parameter_file(tmp_path / "nlo.h5", z, np.zeros(5000, np.int64), shift=0.3)
    augmenter = SampleAugmenter(path, test_split=0.2, validation_split=0.0)
    theta = np.array([[0.5]])
    dsigma = ((1 + 0.5 * z) ** 2 - 0.3)[:4000]
    with pytest.warns(SamplingWarning, match=f"{int((dsigma < 0).sum())} events .* negative"):
        sample = augmenter.sample_train_plain(theta, 5000, rng)
    assert (dsigma < 0).sum() > 100
    assert (dsigma[sample["event_index"]] > 0).all()
    positive = np.maximum(dsigma, 0)
    assert float(sample["n_effective"]) == pytest.approx(positive.sum() / positive.max())
    assert _chi2_pvalue(z[:4000], positive, sample["x"][:, 0].astype(float)) > 1e-3


def test_closest_benchmark_mode_uses_only_nearest_run(tmp_path, rng):
    z = rng.uniform(-1.0, 1.0, 3000)
    ids = rng.integers(0, 3, 3000)
    path = _write_one_parameter_file(tmp_path / "runs.h5", z, ids)
    closest = SampleAugmenter(path, test_split=0.0, validation_split=0.0)
    for theta, nearest in ((0.9, 1), (-0.7, 2), (0.2, 0)):
        sample = _quiet(closest.sample_train_plain, np.array([[theta]]), 500, rng)
        assert set(ids[sample["event_index"]]) == {nearest}
    everything = SampleAugmenter(
        path, test_split=0.0, validation_split=0.0, sample_only_from_closest_benchmark=False
    )
    sample = everything.sample_train_plain(np.array([[0.9]]), 3000, rng)
    assert set(ids[sample["event_index"]]) == {0, 1, 2}


def test_empty_partition_and_unknown_partition(reference_file, rng):
    augmenter = SampleAugmenter(reference_file, test_split=0.0, validation_split=0.0)
    with pytest.raises(InputError, match="test partition"):
        augmenter.sample_test(SM, 10, rng)
    with pytest.raises(InputError, match="one of"):
        augmenter.sample_train_plain(SM, 10, rng, partition="holdout")


def test_spec_resolution_errors(reference, rng):
    with pytest.raises(InputError, match="sm, w"):
        reference.sample_train_local(Benchmark("bsm"), 10, rng)
    with pytest.raises(InputError, match="shape"):
        reference.sample_train_local(np.zeros((1, 3)), 10, rng)
    points = MorphingPoints(((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)))
    sample = _quiet(reference.sample_train_plain, points, 10, rng)
    assert len(sample["x"]) == 10
    counts = np.unique(sample["theta"], axis=0, return_counts=True)[1]
    assert sorted(counts.tolist()) == [3, 3, 4]
