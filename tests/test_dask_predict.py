"""Prediction over a Dask cluster (bmdkit.scaleout.dask_predict), gathered to one output."""

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from settings import TINY_SEVERAL_BATCHES

from bmdkit import BMDRegressor
from bmdkit.cli import prediction_columns, write_results
from bmdkit.scaleout import dask_predict


def test_partitions_on_a_local_cluster_give_one_complete_output(signal_cohort, tmp_path):
    X, y = signal_cohort
    X = X.iloc[:40].reset_index(drop=True)
    model = BMDRegressor(fusion="concat", **TINY_SEVERAL_BATCHES).fit(X, y[:40])
    expected = model.predict(X)
    X = X.assign(subject=[f"s{i}" for i in range(40)])
    X.loc[37, "image_path"] = str(tmp_path / "gone.png")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        out = tmp_path / "pred.csv"
        failures = {}
        for part in dask_predict(client, model, X, partitions=3):
            write_results(out, X.iloc[part.positions], prediction_columns(part.predictions))
            failures.update(part.failures)
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert "predict_partition" in prefixes  # the partitions ran as tasks of the cluster
    pred = pd.read_csv(out)
    assert pred["subject"].tolist() == [f"s{i}" for i in range(40) if i != 37]
    assert list(failures) == [37] and failures[37].startswith("FileNotFoundError")
    # partitions are whole batches: the rows before the bad one are model.predict's exactly
    np.testing.assert_array_equal(pred["predicted_bmd"][:32], expected[:32])
    np.testing.assert_allclose(pred["predicted_bmd"], np.delete(expected, 37), atol=1e-5)


def test_bad_partitions_are_named(signal_cohort):
    X, y = signal_cohort
    model = BMDRegressor(fusion="metadata", **TINY_SEVERAL_BATCHES).fit(X.drop(columns="image_path"), y)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with pytest.raises(ValueError, match="partitions"):
            next(dask_predict(client, model, X, partitions=0))
