"""bmdkit pretrain: the weights file in every estimator, wrong backbones, resuming a killed run.

Tiny: 32 px SYNTHETIC phantoms, a handful of images, 1-2 epochs, one torch thread.
Nothing is downloaded.
"""

import inspect
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bmdkit import estimators
from bmdkit.cli import build_parser
from bmdkit.datasets import make_synthetic_cohort
from bmdkit.nn.weights import backbone_file_metadata
from bmdkit.pretraining import DEFAULTS, pretrain_backbone, resume_path
from bmdkit.pretraining.methods import METHODS

SIZE = 32


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    X, y = make_synthetic_cohort(n=12, image_size=48, random_state=7, out_dir=folder)
    return folder, X, y


@pytest.fixture(scope="module")
def weights(cohort):
    folder, X, _ = cohort
    out = folder / "w.safetensors"
    pretrain_backbone(X.image_path, out, image_size=SIZE, epochs=1, batch_size=6,
                      n_threads=1, progress=False)
    return out


def test_file_records_backbone_size_and_normalisation(weights):
    recorded = backbone_file_metadata(weights)
    assert recorded["backbone"] == DEFAULTS["backbone"]
    assert recorded["image_size"] == SIZE
    assert recorded["contrast"] == "percentile"
    assert 0 < recorded["input_mean"] < 1 and 0 < recorded["input_std"] < 1
    assert recorded["method"] == DEFAULTS["method"] and recorded["epochs"] == "1"
    assert not resume_path(weights).exists()  # the state goes once the file is written


IMAGE_ESTIMATORS = [estimators.XAttnBMDRegressor, estimators.ConcatBMDRegressor,
                    estimators.DAFTBMDRegressor, estimators.GatedBMDRegressor,
                    estimators.LateFusionBMDRegressor, estimators.ImageOnlyBMDRegressor]


@pytest.mark.parametrize("estimator", IMAGE_ESTIMATORS, ids=lambda cls: cls.__name__)
def test_weights_round_trip_into_every_estimator(estimator, cohort, weights):
    from safetensors.torch import load_file

    _, X, y = cohort
    model = estimator(pretrained=str(weights), image_size=SIZE, max_epochs=1,
                      freeze_backbone=True, n_threads=1, random_state=0).fit(X, y)
    encoder = model.net_.module_.image_encoder
    saved = load_file(weights)
    state = encoder.backbone.state_dict()
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[key], state[key]) for key in saved)  # frozen: as loaded
    recorded = backbone_file_metadata(weights)
    assert float(encoder.input_mean) == pytest.approx(recorded["input_mean"])
    assert float(encoder.input_std) == pytest.approx(recorded["input_std"])
    assert model.predict(X).shape == (len(X),)


def test_wrong_backbone_is_named(cohort, weights):
    _, X, y = cohort
    model = estimators.ConcatBMDRegressor(pretrained=str(weights), backbone="resnet18",
                                          image_size=SIZE, max_epochs=1)
    with pytest.raises(ValueError, match="'resnet10t', not for backbone='resnet18'"):
        model.fit(X, y)


def test_other_image_size_warns(cohort, weights):
    _, X, y = cohort
    model = estimators.ConcatBMDRegressor(pretrained=str(weights), image_size=64, max_epochs=1,
                                          freeze_backbone=True, n_threads=1)
    with pytest.warns(UserWarning, match="image_size=32, this model has image_size=64"):
        model.fit(X, y)


def test_cli_defaults_are_the_functions_and_share_the_estimators():
    # the command passes every option on, so its defaults must be the function's; backbone,
    # size and contrast must be the estimators', so that pretrained=FILE needs no other setting
    defaults = {name: parameter.default for name, parameter
                in inspect.signature(pretrain_backbone).parameters.items()}
    args = build_parser().parse_args(["pretrain", "--csv", "c.csv", "--out", "w.safetensors"])
    for name in ("backbone", "image_size", "method", "epochs", "batch_size"):
        assert getattr(args, name) == defaults[name], name
    estimator = estimators.BMDRegressor().get_params()
    assert {name: defaults[name] for name in ("backbone", "image_size", "contrast")} == {
        name: estimator[name] for name in ("backbone", "image_size", "contrast")}
    method = next(a for a in build_parser()._subparsers._group_actions[0].choices["pretrain"]
                  ._actions if a.dest == "method")
    assert set(method.choices) == set(METHODS)


def test_killed_pretrain_resumes_where_it_stopped(cohort, tmp_path):
    folder, X, _ = cohort
    csv = tmp_path / "unlabelled.csv"
    X[["image_path"]].to_csv(csv, index=False)
    out = tmp_path / "w.safetensors"
    command = [sys.executable, "-m", "bmdkit.cli", "pretrain", "--csv", str(csv), "--out",
               str(out), "--image-size", str(SIZE), "--batch-size", "6", "--threads", "1",
               "--epochs", "500"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = resume_path(out)
    deadline = time.monotonic() + 300
    while not state.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    assert state.exists() and not out.exists()
    done = torch.load(state, weights_only=True)["epochs_done"]
    assert 1 <= done < 500
    resumed = subprocess.run([*command[:-1], str(done + 1), "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    assert backbone_file_metadata(out)["epochs"] == str(done + 1)
    # the resumed run ends where an uninterrupted one does, bit for bit
    whole = tmp_path / "whole.safetensors"
    pretrain_backbone(X.image_path, whole, image_size=SIZE, epochs=done + 1, batch_size=6,
                      n_threads=1, progress=False)
    from safetensors.torch import load_file

    a, b = load_file(out), load_file(whole)
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_cli_fit_takes_the_file_as_a_param(cohort, weights, tmp_path):
    from bmdkit import cli, load

    _, X, y = cohort
    csv = tmp_path / "cohort.csv"
    X.assign(bmd=y).to_csv(csv, index=False)
    cli.main(["fit", "--csv", str(csv), "--target", "bmd", "--model", "concat", "--out",
              str(tmp_path / "model"), "--epochs", "1", "--image-size", str(SIZE),
              "--param", f"pretrained={weights}", "--param", "freeze_backbone=true"])
    model = load(tmp_path / "model")
    assert model.pretrained == str(weights)
    saved = backbone_file_metadata(weights)
    assert float(model.net_.module_.image_encoder.input_mean) == pytest.approx(saved["input_mean"])


def test_dicom_dir_gives_every_dicom_file(tmp_path):
    from bmdkit.cli.pretrain import image_paths

    X, _ = make_synthetic_cohort(n=3, image_size=32, random_state=3, out_dir=tmp_path / "dcm",
                                 image_format="dicom")
    (tmp_path / "dcm" / "notes.txt").write_text("not an image")
    args = build_parser().parse_args(["pretrain", "--dicom-dir", str(tmp_path / "dcm"),
                                      "--out", "w.safetensors"])
    assert sorted(image_paths(args)) == sorted(X.image_path)


@pytest.mark.parametrize("content", [b"not a torch file", None], ids=["damaged", "no-settings"])
def test_bad_resume_file_is_a_saved_file_error_naming_it(cohort, tmp_path, content):
    from bmdkit.errors import SavedFileError

    _, X, _ = cohort
    out = tmp_path / "w.safetensors"
    state = resume_path(out)
    if content is None:
        torch.save({"epochs_done": 1}, state)
    else:
        state.write_bytes(content)
    with pytest.raises(SavedFileError, match=str(state).replace(".", r"\.")):
        pretrain_backbone(X.image_path[:6], out, image_size=SIZE, epochs=1, batch_size=6,
                          resume=True, n_threads=1, progress=False)
    assert not out.exists()


def test_resume_refuses_a_state_of_other_images(cohort, tmp_path, monkeypatch):
    from bmdkit.errors import SavedFileError
    from bmdkit.pretraining import train

    _, X, _ = cohort
    out = tmp_path / "w.safetensors"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_backbone_weights", killed)
    with pytest.raises(KeyboardInterrupt):  # killed after its epoch, before the weights file
        pretrain_backbone(X.image_path[:6], out, image_size=SIZE, epochs=1, batch_size=6,
                          n_threads=1, progress=False)
    assert resume_path(out).exists()
    monkeypatch.undo()

    def decoded(*args, **kwargs):
        raise AssertionError("images decoded before the resume was refused")

    monkeypatch.setattr(train, "load_images", decoded)
    with pytest.raises(SavedFileError, match="images="):  # as many images, other files
        pretrain_backbone(X.image_path[6:12], out, image_size=SIZE, epochs=2, batch_size=6,
                          resume=True, n_threads=1, progress=False)


def test_out_is_checked_before_any_image_is_read(tmp_path, capsys):
    from bmdkit import cli
    from bmdkit.errors import FileClashError, MissingFileError, ParameterError

    missing = [str(tmp_path / "no-such-image.png")] * 2  # never read: --out is refused first
    with pytest.raises(MissingFileError, match="no-folder"):
        pretrain_backbone(missing, tmp_path / "no-folder" / "w.safetensors")
    with pytest.raises(ParameterError, match=r"\.safetensors"):
        pretrain_backbone(missing, tmp_path / "w.pt")
    existing = tmp_path / "w.safetensors"
    existing.write_bytes(b"weights of an earlier run")
    csv = tmp_path / "unlabelled.csv"
    csv.write_text("image_path\nno-such-image.png\nno-such-image.png\n")
    with pytest.raises(FileClashError, match="overwrite"):
        pretrain_backbone(missing, existing)
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--csv", str(csv), "--out", str(existing)])
    assert f"{existing} exists" in capsys.readouterr().err
    assert existing.read_bytes() == b"weights of an earlier run"
    # with --overwrite the run goes on, to the images
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--csv", str(csv), "--out", str(existing), "--overwrite"])
    assert "no-such-image.png: file not found" in capsys.readouterr().err


@pytest.mark.parametrize("setting, named", [
    ({"backbone": "resnet10"}, "backbone"), ({"method": "byol"}, "method"), ({"lr": 0}, "lr"),
    ({"views": {"flip": 1}}, "views"), ({"epochs": 0}, "epochs"), ({"n_threads": 0}, "n_threads"),
])
def test_bad_settings_are_named_before_any_image_is_read(tmp_path, setting, named):
    from bmdkit.errors import ParameterError

    missing = [str(tmp_path / "no-such-image.png")] * 2  # never read: the setting is refused first
    with pytest.raises(ParameterError, match=f"^{named} must"):
        pretrain_backbone(missing, tmp_path / "w.safetensors", progress=False, **setting)


def test_simmim_learns_to_fill_masked_patches(cohort):
    # the masked-image objective must need the grey levels: trained on a few films, its
    # error on the masked pixels (same masks before and after) falls well below the start
    import timm

    from bmdkit.io import load_images

    _, X, _ = cohort
    images = torch.from_numpy(load_images(X.image_path, image_size=SIZE))[:, None]
    images = (images - images.mean()) / images.std()
    torch.manual_seed(0)
    method = METHODS["simmim"](timm.create_model(DEFAULTS["backbone"], in_chans=1,
                                                 num_classes=0, global_pool=""), image_size=SIZE)

    def masked_error():
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(1)
            return float(method.eval()([images]))

    before = masked_error()
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-3)
    for _ in range(40):
        loss = method.train()([images])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert masked_error() < 0.6 * before  # 0.36 when written


def test_simmim_refuses_a_backbone_without_a_feature_map_before_reading_images(tmp_path):
    with pytest.raises(ValueError, match="simmim' needs a convolutional timm backbone.*vit_tiny.*method='simclr'"):
        pretrain_backbone([tmp_path / "missing1.png", tmp_path / "missing2.png"],
                          tmp_path / "w.safetensors", backbone="vit_tiny_patch16_224",
                          method="simmim", image_size=SIZE, progress=False)


def test_simclr_still_trains_and_is_recorded(cohort, tmp_path):
    # SimMIM is the default: the contrastive method must still run end to end
    _, X, _ = cohort
    info = pretrain_backbone(X.image_path, tmp_path / "w.safetensors", method="simclr",
                             image_size=SIZE, epochs=1, batch_size=6, n_threads=1,
                             progress=False)
    assert backbone_file_metadata(tmp_path / "w.safetensors")["method"] == "simclr"
    assert len(info["losses"]) == 1 and info["losses"][0] > 0
