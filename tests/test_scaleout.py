"""Folds on a Dask cluster through joblib; training through Hugging Face Accelerate."""

import numpy as np
import pytest
import torch
from joblib import parallel_config
from sklearn.base import clone
from sklearn.model_selection import cross_validate
from tuning_workers import make_metadata_cohort

from bmdkit import BMDRegressor, MetadataOnlyBMDRegressor
from bmdkit.tuning import search_space, tune

distributed = pytest.importorskip("distributed", reason="dask[distributed] is in the test extra")
pytest.importorskip("accelerate", reason="accelerate is in the test extra")

from bmdkit.scaleout import AcceleratedBMDRegressor, TorchThreads  # noqa: E402


@pytest.fixture(scope="module")
def cohort():
    return make_metadata_cohort(80)


@pytest.fixture(scope="module")
def dask_client():
    """A local cluster of 2 worker processes × 1 thread, closed after the tests."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.register_plugin(TorchThreads(1))
        yield client


def test_torch_threads_are_capped_on_every_dask_worker(dask_client):
    # Dask's nanny already starts workers with OMP_NUM_THREADS=1, so only a count other than 1
    # shows the plugin at work
    dask_client.register_plugin(TorchThreads(2))
    try:
        assert list(dask_client.run(torch.get_num_threads).values()) == [2, 2]
    finally:  # back to one thread per worker for the other tests (the plugin's name is reused)
        dask_client.register_plugin(TorchThreads(1))
    assert list(dask_client.run(torch.get_num_threads).values()) == [1, 1]


def test_cv_folds_and_tuning_folds_run_on_the_dask_cluster(dask_client, cohort):
    X, y = cohort
    model = MetadataOnlyBMDRegressor(max_epochs=3, random_state=0)
    with distributed.get_task_stream(dask_client) as tasks, parallel_config(backend="dask"):
        remote = cross_validate(model, X, y, cv=2, n_jobs=2)["test_score"]
        study = tune(model, X, y, cv=2, n_trials=1, n_jobs=2,
                     space={"lr": search_space(model)["lr"]})
    assert len(tasks.data) >= 4  # 2 folds of cross_validate + 2 folds of the trial
    assert remote.shape == (2,) and np.all(remote > 0)  # R² of real fits, not failures
    assert len(study.trials[0].user_attrs["fold_scores"]) == 2


@pytest.mark.parametrize("fusion", ["metadata", "concat"])
def test_accelerate_on_cpu_matches_plain_training(fusion, signal_cohort, cohort):
    X, y = signal_cohort if fusion == "concat" else cohort
    params = dict(fusion=fusion, image_size=32, embed_dim=16, n_heads=2, n_layers=1,
                  max_epochs=2, batch_size=16, random_state=0)
    accelerated = AcceleratedBMDRegressor(**params)
    assert clone(accelerated).get_params() == accelerated.get_params()
    assert accelerated.get_params()["mixed_precision"] == "no"
    accelerated.fit(X, y)
    assert type(accelerated.net_).__name__ == "AcceleratedNeuralNetRegressor"
    plain = BMDRegressor(**params).fit(X, y)
    np.testing.assert_allclose(accelerated.predict(X), plain.predict(X), rtol=1e-5, atol=1e-6)


def test_an_accelerated_model_saves_and_loads(cohort, tmp_path):
    import bmdkit

    X, y = cohort
    model = AcceleratedBMDRegressor("metadata", gradient_accumulation_steps=2, embed_dim=16,
                                    max_epochs=2, random_state=0).fit(X, y)
    loaded = bmdkit.load(model.save(tmp_path / "model"))
    assert type(loaded) is AcceleratedBMDRegressor and loaded.get_params() == model.get_params()
    assert type(loaded.net_).__name__ == "AcceleratedNeuralNetRegressor"  # its own net factory
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_accelerated_fits_of_other_settings_run_in_one_process(cohort):
    # Accelerate keeps one state per process; without a fresh one the second fit raised
    # "AcceleratorState has already been initialized and cannot be changed"
    X, y = cohort
    for mixed_precision in ("no", "bf16", "no"):
        model = AcceleratedBMDRegressor("metadata", mixed_precision=mixed_precision,
                                        embed_dim=16, max_epochs=1, random_state=0).fit(X, y)
        assert model.net_.accelerator.mixed_precision == mixed_precision
        assert np.isfinite(model.predict(X)).all()
