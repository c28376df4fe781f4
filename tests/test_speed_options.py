"""The speed-ups: fused AdamW (the default), and the options frozen backbone with cached
features, bfloat16, channels-last and compile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.model_selection import KFold, cross_val_score

import bmdkit
from bmdkit import ConcatBMDRegressor, ImageOnlyBMDRegressor, MetadataOnlyBMDRegressor
from bmdkit.nn import BMDNet
from bmdkit.nn.frozen import feature_cache_clear, feature_cache_info, weights_digest

SMALL = dict(backbone="resnet10t", image_size=40, embed_dim=16, n_heads=2, n_layers=1,
             batch_size=16, random_state=0)


def test_frozen_pretrained_backbone_learns_the_image_signal(signal_cohort, tmp_path):
    """Transfer: a backbone trained on some subjects, frozen, carries the image signal to others."""
    X, y = signal_cohort
    donor, target = slice(0, 60), slice(60, None)
    pretrainer = ImageOnlyBMDRegressor(**dict(SMALL, n_threads=1), max_epochs=25, lr=3e-3)
    pretrainer.fit(X.iloc[donor], y[donor])
    weights = tmp_path / "backbone.safetensors"
    backbone = pretrainer.net_.module_.image_encoder.backbone
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(weights))

    cv = KFold(3, shuffle=True, random_state=0)
    Xt, yt = X.iloc[target].reset_index(drop=True), y[target]
    frozen = ConcatBMDRegressor(**SMALL, pretrained=weights, freeze_backbone=True, max_epochs=40,
                                lr=3e-3)
    metadata = MetadataOnlyBMDRegressor(**SMALL, max_epochs=40, lr=3e-3)
    r2_frozen = cross_val_score(frozen, Xt, yt, cv=cv).mean()
    r2_metadata = cross_val_score(metadata, Xt, yt, cv=cv).mean()
    assert r2_frozen > r2_metadata + 0.15, (r2_frozen, r2_metadata)


def test_features_are_computed_once_across_folds(signal_cohort):
    X, y = signal_cohort
    feature_cache_clear()
    model = ConcatBMDRegressor(**SMALL, freeze_backbone=True, max_epochs=1)
    cross_val_score(model, X, y, cv=KFold(3, shuffle=True, random_state=0))
    info = feature_cache_info()
    # every fold looks up all rows (fit on 2/3, predict 1/3); each image is computed once
    assert (info.computed, info.hits) == (len(X), 2 * len(X))
    assert info.memory_bytes > 0


def test_cached_features_are_those_of_the_tiles_asked_for():
    """One backbone's weights, two tilings: the same feature-map shape, other features."""
    images = np.random.default_rng(0).random((2, 1, 64, 64), dtype=np.float32)
    feature_cache_clear()
    features = {}
    for tiles in ((1, 1), (1, 2)):
        torch.manual_seed(0)
        net = BMDNet("image", backbone="resnet10t", freeze_backbone=True, image_tiles=tiles)
        features[tiles] = bmdkit.nn.frozen.backbone_features(net, images)
        assert np.allclose(features[tiles],
                           net.backbone_features(torch.from_numpy(images)).numpy(), atol=1e-6)
    assert features[1, 1].shape == features[1, 2].shape
    assert not np.allclose(features[1, 1], features[1, 2], atol=1e-3)
    assert feature_cache_info().hits == 0


def test_a_frozen_backbone_never_changes(signal_cohort):
    X, y = signal_cohort
    digests = set()
    for epochs in (1, 3):
        model = ConcatBMDRegressor(**SMALL, freeze_backbone=True, max_epochs=epochs).fit(X, y)
        encoder = model.net_.module_.image_encoder
        assert not any(p.requires_grad for p in encoder.backbone.parameters())
        assert not encoder.backbone.training
        digests.add(weights_digest(encoder.backbone))
    assert len(digests) == 1  # the same seed's initial weights, batch-norm statistics included


def test_cached_features_predict_like_the_image_path(signal_cohort):
    X, y = signal_cohort
    model = ConcatBMDRegressor(**SMALL, freeze_backbone=True, max_epochs=2).fit(X, y)
    arrays = model.preprocessor_.transform(X)
    module = model.net_.module_.eval()
    with torch.no_grad():
        direct = module(**{k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
    expected = direct[:, 0].numpy().astype(np.float64) * model.y_scale_ + model.y_mean_
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-5)


def test_a_frozen_model_saves_and_loads_exactly(signal_cohort, tmp_path):
    X, y = signal_cohort
    model = ConcatBMDRegressor(**SMALL, freeze_backbone=True, max_epochs=1).fit(X, y)
    loaded = bmdkit.load(model.save(tmp_path / "model"))
    assert loaded.freeze_backbone
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_adamw_steps_with_the_fused_kernel_on_cpu(signal_cohort, tmp_path, monkeypatch):
    X, y = signal_cohort
    model = ConcatBMDRegressor(**SMALL, max_epochs=1).fit(X, y)
    assert model.net_.optimizer_.defaults["fused"]
    path = model.save(tmp_path / "model")
    assert bmdkit.load(path).net_.optimizer_.defaults["fused"]
    # the device a model is loaded on decides, not what the file says
    monkeypatch.setattr("bmdkit.batching.FUSED_ADAMW_DEVICES", ())
    assert not bmdkit.load(path).net_.optimizer_.defaults["fused"]
    monkeypatch.undo()
    frozen = ConcatBMDRegressor(**SMALL, max_epochs=1, freeze_backbone=True).fit(X, y)
    assert frozen.net_.optimizer_.defaults["fused"] and np.isfinite(frozen.predict(X)).all()


def test_the_fused_adamw_step_is_the_per_tensor_step():
    torch.manual_seed(0)
    weights = [torch.randn(64, 32), torch.randn(32)]
    grads = [torch.randn_like(w) for w in weights]
    stepped = []
    for fused in (False, True):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4, fused=fused)
        for _ in range(3):
            for param, grad in zip(params, grads):
                param.grad = grad.clone()
            optimizer.step()
        stepped.append(params)
    for per_tensor, fused in zip(*stepped):
        torch.testing.assert_close(fused, per_tensor, rtol=1e-6, atol=1e-7)


def _same_weights(**options):
    torch.manual_seed(0)
    reference = BMDNet("xattn", n_numeric=2, cardinalities=[2], backbone="resnet10t",
                       embed_dim=16, n_heads=2).eval()
    other = BMDNet("xattn", n_numeric=2, cardinalities=[2], backbone="resnet10t", embed_dim=16,
                   n_heads=2, **options).eval()
    other.load_state_dict(reference.state_dict())
    torch.manual_seed(1)
    batch = dict(image=torch.rand(4, 1, 32, 32), numeric=torch.randn(4, 2),
                 categorical=torch.tensor([[0], [1], [2], [1]]))
    with torch.no_grad():
        return reference(**batch), other(**batch)


def test_bfloat16_autocast_returns_float32_close_to_float32():
    reference, bf16 = _same_weights(precision="bfloat16")
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, reference)  # autocast really ran in bfloat16
    scale = reference.abs().max()
    assert (bf16 - reference).abs().max() < 0.05 * scale


def test_channels_last_computes_the_same_function():
    reference, channels_last = _same_weights(channels_last=True)
    torch.testing.assert_close(channels_last, reference, rtol=1e-4, atol=1e-5)


def test_bfloat16_fit_predicts_finite_bmd(signal_cohort):
    X, y = signal_cohort
    model = ConcatBMDRegressor(**SMALL, precision="bfloat16", max_epochs=1).fit(X, y)
    predicted = model.predict(X)
    assert predicted.dtype == np.float64 and np.isfinite(predicted).all()


def test_unknown_precision_is_named_at_fit(signal_cohort):
    X, y = signal_cohort
    model = ConcatBMDRegressor(precision="float16")  # validation waits for fit
    with pytest.raises(ValueError, match="precision must be one of .*'float16'"):
        model.fit(X, y)


def test_compile_reaches_skorch(signal_cohort, monkeypatch):
    compiled = []

    def fake_compile(module, **kwargs):  # the real one takes minutes on 2 CPU cores
        compiled.append(type(module).__name__)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    X, y = signal_cohort
    model = ConcatBMDRegressor(**SMALL, compile=True, max_epochs=1).fit(X, y)
    assert "BMDNet" in compiled and model.net_.compile is True
