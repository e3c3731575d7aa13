"""Analysis configs: YAML and Python forms become order objects; every bad input is one line."""

from __future__ import annotations

from pathlib import Path

import order as od
import pytest
import yaml

from minerflow.config.analysis import (
    dataset_files,
    dataset_source,
    load_analysis,
    ml_modules,
    single_config,
)
from minerflow.errors import ConfigError, InputError
from minerflow.io.columnar import count_rows
from minerflow.physics.toy_events import write_toy_analysis


@pytest.fixture(scope="module")
def toy_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_analysis(tmp_path_factory.mktemp("toy"), (300, 500), seed=2, n_files=2,
                              ml_modules=["examples.toy_model"])  # fmt: skip


def test_toy_analysis_loads_as_order_objects(toy_config: Path) -> None:
    analysis = load_analysis(toy_config)
    config = single_config(analysis)
    assert isinstance(analysis, od.Analysis) and isinstance(config, od.Config)
    assert config.name == "toy" and ml_modules(analysis) == ["examples.toy_model"]
    signal = config.get_dataset("signal")
    assert signal.processes.names() == ["signal"]
    assert config.get_process("signal").get_xsec(13.0).nominal == 0.5
    source = dataset_source(signal)
    assert source.format == "parquet" and len(source.files) == 2
    assert sum(count_rows(f, "parquet") for f in source.files) == 300
    assert (
        sum(count_rows(f, "parquet") for f in dataset_files(config.get_dataset("background")))
        == 500
    )
    # the guide's setup() call works on these objects
    config.add_variable(name="model.score", binning=(20, 0.0, 1.0), x_title="score")
    assert config.get_variable("model.score").bin_edges[-1] == 1.0
    assert config.get_variable("met").expression == "MET.pt"


def _write(tmp_path: Path, content: dict) -> Path:
    path = tmp_path / "analysis.yml"
    path.write_text(yaml.safe_dump(content))
    return path


BASE = {
    "analysis": "ana", "config": "c1",
    "processes": [{"name": "tt", "id": 5, "processes": [{"name": "tt_sl", "id": 51}]}],
    "datasets": [{"name": "tt_sl_a", "process": "tt_sl", "files": ["data/*.root"], "format": "root",
                  "tree": "events"}],
}  # fmt: skip


def test_nested_process_root_dataset_and_relative_patterns(tmp_path: Path) -> None:
    analysis = load_analysis(_write(tmp_path, BASE))
    dataset = single_config(analysis).get_dataset("tt_sl_a")
    assert dataset.processes.names() == ["tt_sl"]
    # the pattern is relative to the config file and resolved when the files are needed
    with pytest.raises(InputError) as err:
        dataset_files(dataset)
    assert str(err.value) == (
        f"{tmp_path / 'analysis.yml'}: datasets.tt_sl_a.files: expected event files for dataset "
        f"'tt_sl_a', none match ['{tmp_path / 'data' / '*.root'}']"
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "b.root").write_bytes(b"")
    (tmp_path / "data" / "a.root").write_bytes(b"")
    source = dataset_source(dataset)
    assert [p.name for p in source.files] == ["a.root", "b.root"]
    assert (source.format, source.tree) == ("root", "events")


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        ({"datsets": []}, "datsets", "Extra inputs are not permitted"),
        (
            {"datasets": [{"name": "d", "files": ["x"], "format": "csv"}]},
            "datasets.0.format",
            "'parquet' or 'root'",
        ),
        ({"datasets": [{"name": "d", "files": []}]}, "datasets.0", "at least one file"),
        (
            {"datasets": [{"name": "d", "process": "ttbar", "files": ["x"]}]},
            "datasets.d.process",
            "one of tt, tt_sl",
        ),
        (
            {"datasets": [{"name": "d", "files": ["x"]}, {"name": "d", "files": ["y"]}]},
            "datasets",
            "'d' repeats",
        ),
        ({"version": 2}, "version", "1"),
    ],
)
def test_bad_configs_give_one_line_errors(
    tmp_path: Path, change: dict, key: str, expected: str
) -> None:
    path = _write(tmp_path, {**BASE, **change})
    with pytest.raises(ConfigError) as err:
        load_analysis(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: expected") and expected in message
    assert "\n" not in message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected an analysis config file"):
        load_analysis(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("analysis: [unclosed\n")
    with pytest.raises(ConfigError, match="expected valid YAML"):
        load_analysis(bad)
    with pytest.raises(ConfigError, match=r"config: expected 'c9' among c1"):
        single_config(load_analysis(_write(tmp_path, BASE)), "c9")


def test_python_config(tmp_path: Path) -> None:
    path = tmp_path / "ana.py"
    path.write_text(
        "import order as od\n"
        "analysis_inst = od.Analysis('pyana', 1)\n"
        "cfg = analysis_inst.add_config(name='c', id=1, campaign=od.Campaign('camp', 1))\n"
        "cfg.add_dataset(od.Dataset('d', 1, aux={'files': ['f.parquet'], 'format': 'parquet'}))\n"
    )
    analysis = load_analysis(path)
    assert analysis.name == "pyana" and single_config(analysis).has_dataset("d")
    (tmp_path / "nothing.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match=r"analysis_inst: expected an order\.Analysis"):
        load_analysis(tmp_path / "nothing.py")
