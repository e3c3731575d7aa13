"""The MLModel API: hooks, derive, settings in paths and params, registry, modules, maybe_import."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from minerflow.config.analysis import load_analysis, single_config
from minerflow.errors import InputError
from minerflow.ml.mlmodel import (
    MissingModuleError,
    MLModel,
    build_model,
    expand_module_names,
    get_model_cls,
    known_models,
    load_ml_modules,
    maybe_import,
    parse_settings,
)
from minerflow.physics.toy_events import write_toy_analysis


class GuideModel(MLModel):
    """The guide's TestModel, ported by changing imports only."""

    epochs = 10
    learning_rate = 1e-3
    log_level = "info"
    insignificant_settings = frozenset({"log_level"})

    def sandbox(self, task: Any) -> str | None:
        return None

    def datasets(self, config_inst: Any) -> set[Any]:
        return {config_inst.get_dataset(name) for name in self.datasets_name}

    def uses(self, config_inst: Any) -> set[str]:
        return {"Jet.pt", "MET.pt", "weight"}

    def produces(self, config_inst: Any) -> set[str]:
        return {f"{self.cls_name}.score"}

    def open_model(self, target: Any) -> Any:
        return target

    def train(self, task: Any, input: Any, output: Any) -> None:
        return None

    def evaluate(self, task, events, models, fold_indices, events_used_in_training=False):
        return events

    def setup(self) -> None:
        if f"{self.cls_name}.score" not in self.config_inst.variables:
            self.config_inst.add_variable(
                name=f"{self.cls_name}.score", binning=(20, 0.0, 1.0), x_title="score"
            )


configuration = {"folds": 3, "epochs": 5, "datasets_name": ["signal", "background"],
                 "features": ("n_jet", "n_electron")}  # fmt: skip
test_model = GuideModel.derive("test_model", cls_dict=configuration)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_analysis(write_toy_analysis(tmp_path_factory.mktemp("ana"), 200, seed=3))


def test_derived_settings_are_attributes(analysis: Any) -> None:
    model = test_model(analysis)
    assert (model.folds, model.epochs, model.learning_rate) == (3, 5, 1e-3)
    assert model.features == ("n_jet", "n_electron")
    assert model.cls_name == "test_model" and isinstance(model, GuideModel)
    assert {d.name for d in model.datasets(model.config_inst)} == {"signal", "background"}
    # setup ran with the config, as in the guide
    assert model.config_inst.has_variable("test_model.score")
    assert model.used_columns == {model.config_inst: {"Jet.pt", "MET.pt", "weight"}}
    assert model.produced_columns[model.config_inst] == {"test_model.score"}


def test_settings_repr_is_readable_and_hashes_everything() -> None:
    model = test_model()
    repr_ = model.settings_repr
    assert re.fullmatch(
        r"datasets_name=signal_background__epochs=5__features=n_jet_n_electron__folds=3__"
        r"learning_rate=0.001__[0-9a-f]{8}",
        repr_,
    )
    assert model.path_parts == ("test_model", repr_)
    assert str(model) == f"test_model/{repr_}"
    other = GuideModel.derive("test_model_more", cls_dict={**configuration, "epochs": 6})()
    assert other.settings_hash != model.settings_hash
    # a runtime override changes the path; an integral float for an int setting does not
    assert test_model(parameters={"epochs": 6}).settings_hash == other.settings_hash
    assert test_model(parameters={"epochs": 5.0}).settings_repr == repr_
    # insignificant settings stay out of the path and the hash
    assert test_model(parameters={"log_level": "debug"}).settings_repr == repr_


def _body_model(n_epochs: int, level: str = "info") -> type[MLModel]:
    """The same class definition with other defaults in its body: a code edit, re-imported."""

    class BodyModel(GuideModel):
        epochs = n_epochs
        log_level = level
        batch_size = 512
        hidden = (64, 64)
        _cache: ClassVar[dict[str, Any]] = {}  # private: not a setting
        json_module = json  # a module: not a setting
        lr_schedule = staticmethod(lambda epoch: 0.9**epoch)  # code: not a setting

        class Config:  # a nested class: not a setting
            depth = 3

        @property
        def width(self) -> int:
            return self.hidden[0]

        def helper(self) -> None:
            return None

    return BodyModel


def test_class_body_defaults_are_settings() -> None:
    model = _body_model(25)()
    assert model.settings == {
        "folds": 3, "epochs": 25, "learning_rate": 1e-3, "log_level": "info",
        "batch_size": 512, "hidden": (64, 64),
    }  # fmt: skip
    assert model.settings_repr.startswith(
        "batch_size=512__epochs=25__folds=3__hidden=64_64__learning_rate=0.001__"
    )
    assert model.mlflow_params()["batch_size"] == "512"
    # changing a default in the code moves the outputs; an insignificant one does not
    changed = _body_model(30)()
    assert "epochs=30" in changed.settings_repr
    assert changed.settings_hash != model.settings_hash
    assert _body_model(25, level="debug")().settings_repr == model.settings_repr
    # a runtime override of a body setting is checked and typed like a derived one
    assert _body_model(25)(parameters={"epochs": 30.0}).settings_hash == changed.settings_hash
    # the framework's own defaults count only where a model sets them
    assert "fold_seed" not in model.settings and "store_name" not in model.settings


def test_derive_keeps_class_body_settings() -> None:
    derived = _body_model(25).derive("body_derived", cls_dict={"batch_size": 128.0})()
    assert derived.batch_size == 128 and isinstance(derived.batch_size, int)
    assert derived.settings["epochs"] == 25 and derived.settings["hidden"] == (64, 64)
    assert "batch_size=128__epochs=25" in derived.settings_repr
    seeded = GuideModel.derive("guide_seeded", cls_dict={"fold_seed": 1})()
    assert seeded.settings["fold_seed"] == 1

    class ShuffledModel(GuideModel):
        fold_seed = 7
        store_name = "shared_prep"  # bookkeeping: names the preparation folder only

    assert ShuffledModel().settings["fold_seed"] == 7
    assert "store_name" not in ShuffledModel().settings


def test_class_body_setting_must_be_json_like() -> None:
    with pytest.raises(InputError, match=r"model 'OpaqueModel' setting 'device': expected a JSON"):

        class OpaqueModel(GuideModel):
            device = object()

    class QuietModel(GuideModel):  # an insignificant setting may hold anything
        logger = object()
        insignificant_settings = frozenset({"logger"})

    assert "logger" not in QuietModel().significant_settings


def test_mlflow_params_carry_every_significant_setting() -> None:
    params = test_model(parameters={"learning_rate": 0.01}).mlflow_params()
    assert params["ml_model"] == "test_model"
    assert params["epochs"] == "5" and params["learning_rate"] == "0.01" and params["folds"] == "3"
    assert params["datasets_name"] == '["signal", "background"]'
    assert "log_level" not in params and len(params["settings_hash"]) == 8


def test_unknown_setting_and_bad_values_are_errors() -> None:
    with pytest.raises(
        InputError, match=r"model 'test_model': epoch: expected a known setting \(.*epochs"
    ):
        test_model(parameters={"epoch": 3})
    with pytest.raises(InputError, match="folds: expected an int >= 2"):
        GuideModel.derive("one_fold", cls_dict={"folds": 1})()
    with pytest.raises(InputError, match="JSON-like setting"):
        GuideModel.derive("bad_setting", cls_dict={"thing": object()})


def test_registry_lists_known_models_for_a_typo() -> None:
    assert get_model_cls("test_model") is test_model
    assert "test_model" in known_models()
    with pytest.raises(InputError) as err:
        get_model_cls("test_modle")
    message = str(err.value)
    assert message.startswith(
        "--ml-model: test_modle: expected a known ml model (did you mean 'test_model'?)"
    )
    assert "test_model" in message and "\n" not in message


def test_same_name_from_another_module_is_an_error() -> None:
    with pytest.raises(InputError, match="'test_model' is already defined in"):
        GuideModel.derive("test_model", cls_dict={}, module="someone.else")
    # re-deriving from the same place (a re-imported module) replaces the entry
    again = GuideModel.derive("test_model", cls_dict=configuration)
    assert get_model_cls("test_model") is again


def test_abstract_hooks_must_be_implemented() -> None:
    class Incomplete(MLModel):
        def sandbox(self, task: Any) -> None:
            return None

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_parse_settings() -> None:
    assert parse_settings("epochs=5,lr=1e-3,layers=64;64,shuffle,name=abc") == {
        "epochs": 5, "lr": 0.001, "layers": [64, 64], "shuffle": True, "name": "abc"
    }  # fmt: skip
    with pytest.raises(InputError):
        parse_settings("2x=1")
    model = (
        build_model("test_model", parameters="epochs=7,layers=1", ml_modules=()) if False else None
    )
    assert model is None


def test_build_model_applies_text_settings() -> None:
    model = build_model("test_model", parameters="epochs=7")
    assert model.epochs == 7 and model.settings["epochs"] == 7


def test_ml_modules_are_imported_and_typos_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "myana"
    (package / "ml").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ml" / "__init__.py").write_text("")
    (package / "ml" / "dnn.py").write_text(
        "from minerflow.ml.mlmodel import get_model_cls, maybe_import\n"
        "torch_like = maybe_import('minerflow_surely_missing_lib')\n"
        "dnn = get_model_cls('GuideModel').derive('myana_dnn', cls_dict={'epochs': 2})\n"
    )
    (package / "ml" / "broken.py").write_text("import minerflow_surely_missing_lib\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert expand_module_names("myana.ml.{dnn, other}") == ["myana.ml.dnn", "myana.ml.other"]
    (module,) = load_ml_modules("myana.ml.dnn")
    assert get_model_cls("myana_dnn").epochs == 2
    # the heavy library is only needed when used
    with pytest.raises(MissingModuleError, match="minerflow_surely_missing_lib"):
        module.torch_like.zeros(3)
    with pytest.raises(
        InputError,
        match=r"ml_modules: myana\.ml\.dnnn: expected an importable module; not found on sys\.path",
    ):
        load_ml_modules(["myana.ml.dnnn"])
    with pytest.raises(InputError, match="imports missing 'minerflow_surely_missing_lib'"):
        load_ml_modules(["myana.ml.broken"])
    for name in [m for m in sys.modules if m.startswith("myana")]:
        monkeypatch.delitem(sys.modules, name)


def test_maybe_import_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mf_lazy_probe.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    proxy = maybe_import("mf_lazy_probe")
    assert "mf_lazy_probe" not in sys.modules  # nothing imported yet
    assert "not yet imported" in repr(proxy)
    assert proxy.VALUE == 42
    assert "mf_lazy_probe" in sys.modules
    monkeypatch.delitem(sys.modules, "mf_lazy_probe")
    assert maybe_import("json") is sys.modules["json"]


def test_model_with_an_analysis_config(analysis: Any) -> None:
    config = single_config(analysis)
    model = test_model(analysis, configs=["toy"])
    assert model.config_insts == [config]
    assert model.training_configs(["toy"]) == ["toy"]
    assert model.training_selector(config, "sel") == "sel"
    assert (
        model.training_producers(config, ["p"])
        == ["p"]
        == model.evaluation_producers(config, ["p"])
    )
    assert model.requires(None) == {}
