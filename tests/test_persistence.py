import json
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import EpochScoring

import bmdkit
from bmdkit import MetadataOnlyBMDRegressor, XAttnBMDRegressor, persistence
from bmdkit.errors import SavedFileError


@pytest.fixture(scope="module")
def cohort(signal_cohort):
    X, y = signal_cohort
    X = X.iloc[:48].copy()
    X["height"] = np.arange(150, 198)  # an integer column, with a gap
    X["smoker"] = np.where(np.arange(48) % 3 == 0, "yes", "no").astype(object)
    X.loc[X.index[5], "age"] = np.nan
    X.loc[X.index[7], "smoker"] = None
    return X, y[:48]


@pytest.fixture(scope="module")
def fitted(cohort):
    X, y = cohort
    model = XAttnBMDRegressor(image_size=32, embed_dim=16, n_heads=2, n_layers=1,
                              max_epochs=2, batch_size=16, loss="weighted_smooth_l1", low_bmd_weight=2.0,
                              random_state=0)
    return model.fit(X, y)


@pytest.fixture
def saved(fitted, tmp_path):
    return fitted.save(tmp_path / "model")


def test_round_trip_predicts_exactly(fitted, saved, cohort, monkeypatch):
    X, _ = cohort
    # loading never unpickles anything
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading")
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = bmdkit.load(saved)
    assert type(loaded) is XAttnBMDRegressor
    assert loaded.get_params() == fitted.get_params()
    assert loaded.net_.iterator_valid is fitted.net_.iterator_valid  # the fast batch path
    new = X.copy()
    new.loc[new.index[0], "smoker"] = "sometimes"  # a category never seen in fit
    np.testing.assert_array_equal(loaded.predict(new), fitted.predict(new))
    np.testing.assert_array_equal(loaded.attention(X.head(3))["image_to_metadata"],
                                  fitted.attention(X.head(3))["image_to_metadata"])
    np.testing.assert_array_equal(loaded.loss_weights_.bin_weights_,
                                  fitted.loss_weights_.bin_weights_)
    assert sorted(p.name for p in saved.iterdir()) == ["model.json", "weights.safetensors"]
    clone(loaded).set_params(max_epochs=1).fit(X, cohort[1])  # refits like any estimator


def test_metadata_only_and_callbacks_are_dropped(cohort, tmp_path):
    X, y = cohort
    X = X.drop(columns=["image_path"])
    model = MetadataOnlyBMDRegressor(max_epochs=3, loss="mse", random_state=np.random.RandomState(0),
                                     callbacks=[("r2", EpochScoring("r2"))]).fit(X, y)
    with pytest.warns(UserWarning, match="callbacks"):
        model.save(tmp_path / "m")
    loaded = bmdkit.load(tmp_path / "m")
    assert loaded.callbacks is None and loaded.loss_weights_ is None
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert set(meta["dropped_params"]) == {"callbacks", "random_state"}
    assert meta["versions"]["torch"] == torch.__version__


def test_tampered_missing_and_foreign_files(saved):
    weights = saved / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        bmdkit.load(saved)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        bmdkit.load(saved)
    meta = saved / "model.json"
    meta.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        bmdkit.load(saved)
    meta.unlink()
    with pytest.raises(FileNotFoundError, match="not a saved bmdkit model"):
        bmdkit.load(saved)


def _edit_meta(folder, edit):
    path = folder / "model.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _edit_weights(folder, edit):
    """Change the saved weights with ``edit(state)`` and record the new file's checksum."""
    import hashlib

    from safetensors.torch import load_file, save_file

    weights = folder / "weights.safetensors"
    state = load_file(str(weights))
    edit(state)
    save_file(state, str(weights))
    _edit_meta(folder, lambda m: m["weights"].update(
        sha256=hashlib.sha256(weights.read_bytes()).hexdigest()))


def test_a_model_of_an_older_xattn_design_is_told_to_refit(saved):
    """Weights whose layers this bmdkit no longer builds (XAttn before its pooling) name the fix."""
    def previous_design(state):
        state.pop("fusion.image_pooling.query.weight")
        state["fusion.metadata_out.weight"] = torch.zeros(16, 16)  # the previous design's layer

    _edit_weights(saved, previous_design)
    with pytest.raises(ValueError, match="(?s)could not rebuild.*metadata_out.*refit the model"):
        bmdkit.load(saved)


def _as_format_1(folder):
    """Make a saved model one of format 1: no pooling scale buffer, format_version 1."""
    _edit_weights(folder, lambda state: state.pop("fusion.image_pooling.logit_scale"))
    _edit_meta(folder, lambda m: m.update(format_version=1))


def test_weights_of_the_scaled_pooling_load_with_their_scale(fitted, saved):
    """Saved before the pooling's logit scale was a buffer (format 1): the migration step
    gives them the 1/sqrt(d) of their fit."""
    _as_format_1(saved)
    pooling = bmdkit.load(saved).net_.module_.fusion.image_pooling
    assert float(pooling.logit_scale) == pytest.approx(16 ** -0.5)  # embed_dim 16
    assert float(fitted.net_.module_.fusion.image_pooling.logit_scale) == 1.0


def test_a_model_of_the_previous_format_loads_and_predicts_as_saved(fitted, saved, cohort):
    from bmdkit.persistence import FORMAT_VERSION

    X, _ = cohort
    # format 1 wrote the same JSON and tensors (once the pooling scale was a buffer)
    _edit_meta(saved, lambda m: m.update(format_version=FORMAT_VERSION - 1))
    np.testing.assert_array_equal(bmdkit.load(saved).predict(X), fitted.predict(X))


def test_a_current_model_lacking_a_tensor_is_not_migrated_but_refused(saved):
    _edit_weights(saved, lambda state: state.pop("fusion.image_pooling.logit_scale"))
    with pytest.raises(ValueError, match="(?s)could not rebuild.*logit_scale"):
        bmdkit.load(saved)


def test_a_preprocessor_state_that_does_not_restore_is_a_saved_file_error(saved):
    _edit_meta(saved, lambda m: m["fitted"]["preprocessor_"].update(cardinalities_=[99]))
    with pytest.raises(SavedFileError) as error:
        bmdkit.load(saved)
    assert str(error.value).startswith(f"{saved}: could not restore the preprocessor: "
                                       "cardinalities_ differs")


def test_the_states_round_trip_without_files(fitted, cohort):
    X, _ = cohort
    state, tensors = fitted.to_state()
    again = type(fitted).from_state(state, tensors)
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    assert again.preprocessor_.to_state() == fitted.preprocessor_.to_state()


def test_a_tiled_model_round_trips(cohort, tmp_path):
    X, y = cohort
    model = XAttnBMDRegressor(image_size=32, image_tiles=(1, 2), embed_dim=16, n_heads=2,
                              n_layers=1, max_epochs=1, random_state=0).fit(X, y)
    loaded = bmdkit.load(model.save(tmp_path / "tiled"))
    assert loaded.image_tiles == (1, 2) and loaded.net_.module_.image_encoder.tiles == (1, 2)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_other_versions_and_formats(fitted, saved, cohort):
    X, _ = cohort
    _edit_meta(saved, lambda m: m["versions"].update(torch="1.0.0", bmdkit="0.0.1"))
    with pytest.warns(UserWarning, match="other library versions"):
        loaded = bmdkit.load(saved)
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    _edit_meta(saved, lambda m: m["net"].update(module__embed_dim=32))  # a different network
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="could not rebuild"):
        bmdkit.load(saved)
    _edit_meta(saved, lambda m: m["net"].update(module={"__class__": "os.system"}))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="does not load"):
        bmdkit.load(saved)
    _edit_meta(saved, lambda m: m.update(format_version=99))
    with pytest.raises(ValueError, match="format 99 .*reads formats 1 to 2: upgrade bmdkit"):
        bmdkit.load(saved)
    _edit_meta(saved, lambda m: m.update(format_version=0))
    with pytest.raises(ValueError, match="format 0 .*refit the model with this bmdkit"):
        bmdkit.load(saved)


def test_writes_are_atomic(fitted, tmp_path, monkeypatch):
    target = tmp_path / "model"
    with pytest.raises(ValueError, match="not fitted"):
        XAttnBMDRegressor().save(target)

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(persistence, "save_tensors", fail)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(target)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    monkeypatch.undo()
    fitted.save(target)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fitted.save(target)
    fitted.save(target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    (tmp_path / "other").mkdir()
    with pytest.raises(FileExistsError, match="not a saved bmdkit model"):
        fitted.save(tmp_path / "other", overwrite=True)


def test_weights_are_read_once_and_their_checksum_is_of_the_file(fitted, saved, cohort,
                                                                  monkeypatch):
    import hashlib
    from pathlib import Path

    meta = json.loads((saved / "model.json").read_text())
    weights = saved / "weights.safetensors"
    assert meta["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    read_bytes = Path.read_bytes

    def read_then_empty(self):
        data = read_bytes(self)
        if self.name == weights.name:
            self.write_bytes(b"")  # a second read of the file would find nothing
        return data
    monkeypatch.setattr(Path, "read_bytes", read_then_empty)
    loaded = bmdkit.load(saved)
    X, _ = cohort
    np.testing.assert_array_equal(loaded.predict(X.head(4)), fitted.predict(X.head(4)))


# -- issue 11: what a saved model keeps, what loading names, writes that never leave a gap --
def test_the_densitometer_is_saved_with_the_model(fitted, tmp_path):
    path = fitted.save(tmp_path / "model", densitometer="hologic")
    meta = json.loads((path / "model.json").read_text())
    assert meta["clinical"]["densitometer"] == "hologic"
    assert meta["clinical"]["thresholds"] == bmdkit.clinical.screening_thresholds(
        device="hologic")
    loaded = bmdkit.load(path)
    assert loaded.densitometer_ == "hologic"
    assert bmdkit.load(loaded.save(tmp_path / "again")).densitometer_ == "hologic"
    assert bmdkit.load(fitted.save(tmp_path / "default")).densitometer_ == "lunar"
    with pytest.raises(ValueError, match="densitometer"):
        fitted.save(tmp_path / "bad", densitometer="norland-xr")


def test_a_model_saved_on_cuda_loads_on_a_cpu_only_machine(fitted, saved, cohort, monkeypatch):
    X, _ = cohort
    _edit_meta(saved, lambda m: (m["params"].update(device="cuda"),
                                 m["net"].update(device="cuda")))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="saved on 'cuda'.*CPU"):
        loaded = bmdkit.load(saved)
    assert loaded.device == "cpu"
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))


def test_unknown_keys_in_model_json_are_named(saved):
    _edit_meta(saved, lambda m: m["params"].update(frobnicate=1, n_experts=4))
    with pytest.raises(ValueError, match="'frobnicate'") as info:
        bmdkit.load(saved)
    assert "'n_experts'" in str(info.value) and "newer bmdkit" in str(info.value)


def test_saving_over_a_model_never_leaves_the_folder_without_a_complete_model(
        fitted, tmp_path, monkeypatch):
    import hashlib
    import os
    import shutil
    from pathlib import Path

    path = fitted.save(tmp_path / "model")
    checked = []

    def complete():
        meta = json.loads((path / "model.json").read_text())
        weights = path / meta["weights"]["file"]
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == meta["weights"]["sha256"]
        checked.append(True)

    def watched(function):
        def call(*args, **kwargs):
            complete()
            result = function(*args, **kwargs)
            complete()
            return result
        return call

    for owner, name in ((os, "replace"), (os, "rename"), (os, "unlink"), (Path, "rename"),
                        (Path, "unlink"), (shutil, "rmtree")):
        monkeypatch.setattr(owner, name, watched(getattr(owner, name)))
    fitted.save(path, overwrite=True)
    monkeypatch.undo()
    assert checked and bmdkit.load(path).predict is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# -- issue 14: any registered estimator saves and loads; a class not registered is named --
def test_a_subclass_saves_and_loads_through_its_own_net_factory(cohort, tmp_path):
    from skorch import NeuralNetRegressor

    class LabNet(NeuralNetRegressor):
        """A net class of the lab's own."""

    class LabRegressor(MetadataOnlyBMDRegressor):
        """A lab's estimator, defined here: registered by being a subclass."""

        def _make_net(self, **params):
            return LabNet(**params)

    X, y = cohort
    X = X.drop(columns=["image_path"])
    model = LabRegressor(max_epochs=2, embed_dim=16, random_state=0).fit(X, y)
    path = model.save(tmp_path / "lab")
    assert json.loads((path / "model.json").read_text())["class"].endswith(
        "<locals>.LabRegressor")
    loaded = bmdkit.load(path)
    assert type(loaded) is LabRegressor and type(loaded.net_) is LabNet
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_persistence_load_in_a_fresh_interpreter_loads_a_built_in_model(saved):
    # bmdkit.persistence.load is public: it loads a built-in model before anything
    # imported bmdkit.estimators, as it did before the registry
    import subprocess
    import sys
    from pathlib import Path

    script = ("import sys\nfrom bmdkit.persistence import load\n"
              f"print(type(load({str(saved)!r})).__name__, 'bmdkit.estimators' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=Path(bmdkit.__file__).resolve().parents[1])
    assert out.stdout.split() == ["XAttnBMDRegressor", "True"]


def test_a_class_not_registered_is_named_and_never_imported(saved):
    import sys

    _edit_meta(saved, lambda m: m.update({"class": "mylab_models.LabRegressor"}))
    with pytest.raises(ValueError, match="'mylab_models.LabRegressor'.*not registered.*"
                                         "import mylab_models"):
        bmdkit.load(saved)
    assert "mylab_models" not in sys.modules
    _edit_meta(saved, lambda m: m.update({"class": "XAttnBMDRegressor"}))  # as saved before
    assert type(bmdkit.load(saved)) is XAttnBMDRegressor


def test_only_registered_estimators_save(fitted, tmp_path):
    from sklearn.linear_model import Ridge

    ridge = Ridge().fit([[0.0], [1.0]], [0.0, 1.0])
    ridge.net_ = fitted.net_
    with pytest.raises(TypeError, match="sklearn.linear_model._ridge.Ridge"):
        persistence.save(ridge, tmp_path / "ridge")
