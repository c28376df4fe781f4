"""Streaming prediction (bmdkit.inference): chunked, decoded in worker processes, exact."""

import numpy as np
import pytest
from settings import TINY_SEVERAL_BATCHES

from bmdkit import BMDRegressor
from bmdkit.checks import InputError
from bmdkit.inference import predict_cached, stream_arrays, stream_predict


@pytest.fixture(scope="module")
def fitted(signal_cohort):
    X, y = signal_cohort
    X = X.iloc[:44].reset_index(drop=True)
    model = BMDRegressor(fusion="xattn", **TINY_SEVERAL_BATCHES).fit(X, y[:44])
    # today's one-shot prediction: every row's arrays in one store, one net_.predict
    one_shot = model.net_.predict(model.preprocessor_.transform(X))[:, 0].astype(np.float64)
    return model, X, one_shot * model.y_scale_ + model.y_mean_


def test_chunked_predict_is_the_one_shot_prediction(fitted):
    model, X, one_shot = fitted
    np.testing.assert_array_equal(model.predict(X), one_shot)
    np.testing.assert_array_equal(predict_cached(model, X, chunk_size=10), one_shot)  # 16 rows


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_gives_the_same_predictions(fitted, workers):
    model, X, one_shot = fitted
    chunks = list(stream_predict(model, X, chunk_size=16, workers=workers))
    assert [len(c.positions) for c in chunks] == [16, 16, 12]
    positions = np.concatenate([c.positions for c in chunks])
    np.testing.assert_array_equal(positions, np.arange(len(X)))
    np.testing.assert_array_equal(np.concatenate([c.predictions for c in chunks]), one_shot)
    assert not any(c.failures for c in chunks)


def test_unreadable_files_are_reported_and_the_rest_predicted(fitted, tmp_path):
    model, X, one_shot = fitted
    X = X.copy()
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    X.loc[3, "image_path"] = str(tmp_path / "corrupt.png")
    X.loc[30, "image_path"] = str(tmp_path / "gone.png")
    chunks = list(stream_predict(model, X, chunk_size=16, workers=2))
    failures = {k: v for c in chunks for k, v in c.failures.items()}
    assert sorted(failures) == [3, 30]
    assert failures[30].startswith("FileNotFoundError") and "UnidentifiedImageError" in failures[3]
    positions = np.concatenate([c.positions for c in chunks])
    assert sorted(positions.tolist() + [3, 30]) == list(range(len(X)))
    # rows of whole batches keep their exact values; others agree to float precision
    predictions = np.concatenate([c.predictions for c in chunks])
    np.testing.assert_allclose(predictions, one_shot[positions], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(predictions[positions >= 32], one_shot[32:])
    # model.predict still refuses, naming every bad file of every chunk
    X.loc[30, "image_path"] = X.loc[3, "image_path"]
    with pytest.raises(InputError) as error:
        predict_cached(model, X, chunk_size=16)
    assert [key.split(":")[0] for key in error.value.problems] == ["row 3", "row 30"]


def test_memory_is_bounded_by_the_chunk_not_by_n(fitted):
    model, X, _ = fitted
    sizes = {arrays["image"].shape[0] for _, arrays, _ in stream_arrays(model, X, chunk_size=8)}
    assert max(sizes) == 8


def test_metadata_only_model_streams_without_images(signal_cohort):
    X, y = signal_cohort
    model = BMDRegressor(fusion="metadata", **TINY_SEVERAL_BATCHES).fit(X.drop(columns="image_path"), y)
    chunks = list(stream_predict(model, X.drop(columns="image_path"), chunk_size=50))
    np.testing.assert_array_equal(np.concatenate([c.predictions for c in chunks]),
                                  model.predict(X))


def test_bad_settings_are_named(fitted):
    model, X, _ = fitted
    with pytest.raises(ValueError, match="workers"):
        next(stream_predict(model, X, workers=-1))
    with pytest.raises(ValueError, match="chunk_size"):
        next(stream_predict(model, X, chunk_size=0))
