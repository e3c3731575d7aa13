"""Sample folders: MadMiner's file names, exact round trip, clear errors on broken folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minerflow.errors import InputError
from minerflow.io.samples import load_samples, meta_path, sample_path, save_samples


def _ratio_sample(rng: np.random.Generator, n: int = 50) -> dict[str, np.ndarray]:
    return {
        "x": rng.normal(size=(n, 3)).astype(np.float32),
        "theta0": rng.normal(size=(n, 2)).astype(np.float32),
        "theta1": np.zeros((n, 2), np.float32),
        "y": (rng.random((n, 1)) < 0.5).astype(np.float64),
        "r_xz": rng.random((n, 1)).astype(np.float32),
        "t_xz": rng.normal(size=(n, 2)).astype(np.float32),
        "event_index": rng.integers(0, 1000, n),
        "n_effective": np.asarray(12.5),
    }


def test_round_trip_uses_madminer_names(tmp_path, rng):
    sample = _ratio_sample(rng)
    written = save_samples(tmp_path, "alices_train", sample, specs={"theta_1": "sm"}, seed=7)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "x_alices_train.npy",
            "theta0_alices_train.npy",
            "theta1_alices_train.npy",
            "y_alices_train.npy",
            "r_xz_alices_train.npy",
            "t_xz_alices_train.npy",
            "event_index_alices_train.npy",
            "alices_train_meta.json",
        ]
    )
    loaded = load_samples(tmp_path, "alices_train")
    assert set(loaded) == set(sample)
    for key, value in sample.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype
    meta = json.loads(meta_path(tmp_path, "alices_train").read_text())
    assert meta["seed"] == 7
    assert meta["specs"] == {"theta_1": "sm"}
    assert meta["n_samples"] == 50


def test_loads_a_folder_without_metadata(tmp_path, rng):
    """A folder MadMiner wrote has only the .npy files."""
    x = rng.normal(size=(10, 2))
    theta = rng.normal(size=(10, 2))
    np.save(sample_path(tmp_path, "x", "test"), x)
    np.save(sample_path(tmp_path, "theta", "test"), theta)
    loaded = load_samples(tmp_path, "test")
    assert set(loaded) == {"x", "theta"}
    np.testing.assert_array_equal(loaded["theta"], theta)


def test_missing_file_listed_in_metadata(tmp_path, rng):
    save_samples(tmp_path, "s", _ratio_sample(rng))
    sample_path(tmp_path, "r_xz", "s").unlink()
    with pytest.raises(InputError, match=r"r_xz_s\.npy: expected an existing sample file"):
        load_samples(tmp_path, "s")


def test_nothing_there(tmp_path):
    with pytest.raises(InputError, match=r"x_s\.npy: expected a sample file"):
        load_samples(tmp_path, "s")


def test_row_count_mismatch_on_load(tmp_path, rng):
    save_samples(tmp_path, "s", _ratio_sample(rng))
    np.save(sample_path(tmp_path, "y", "s"), np.zeros((49, 1)))
    with pytest.raises(InputError, match="same number of rows"):
        load_samples(tmp_path, "s")


def test_row_count_mismatch_on_save_writes_nothing(tmp_path, rng):
    sample = _ratio_sample(rng)
    sample["y"] = sample["y"][:-1]
    with pytest.raises(InputError, match="same number of rows"):
        save_samples(tmp_path, "s", sample)
    assert list(tmp_path.iterdir()) == []


def test_unknown_array_and_bad_name(tmp_path, rng):
    with pytest.raises(InputError, match="array names among"):
        save_samples(tmp_path, "s", {"x": np.zeros((2, 1)), "weights": np.zeros(2)})
    with pytest.raises(InputError, match="plain sample name"):
        save_samples(tmp_path, "../s", _ratio_sample(rng))


def test_corrupt_array_file(tmp_path, rng):
    save_samples(tmp_path, "s", _ratio_sample(rng))
    sample_path(tmp_path, "x", "s").write_bytes(b"not numpy")
    with pytest.raises(InputError, match=r"x_s\.npy: expected a readable \.npy array"):
        load_samples(tmp_path, "s")


def test_overwrite_is_complete(tmp_path, rng):
    """Saving again under the same name replaces every array (atomic per file)."""
    save_samples(tmp_path, "s", _ratio_sample(rng, 20))
    second = _ratio_sample(rng, 30)
    save_samples(tmp_path, "s", second)
    loaded = load_samples(tmp_path, "s")
    np.testing.assert_array_equal(loaded["x"], second["x"])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
