"""The prediction bench (``bmdkit bench --predict``): streaming ``bmdkit predict``
against its decode and compute floors, and its peak memory as rows grow."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bmdkit.batching import torch_threads
from bmdkit.benchmarks.data import DISTINCT_FILES, radiograph_cohort
from bmdkit.benchmarks.measure import (
    PeakMemory,
    imputation_expected,
    machine_info,
    mode_settings,
    sync,
)

__all__ = ["PREDICT_SETTINGS", "predict_floors", "predict_memory", "run_predict_benchmarks"]

#: ``bmdkit bench --predict`` settings per mode: name -> (smoke, quick, full).
PREDICT_SETTINGS = {
    "n": (12, 200, 400),                          # files per format for the throughput figures
    "file_shape": ((96, 80), (2048, 1664), (2048, 1664)),
    "memory_n": ((24, 240), (200, 2000), (200, 2000)),  # rows of the two peak-memory runs
    "memory_file_shape": ((96, 80), (256, 208), (512, 416)),
    "image_size": (16, 128, 128),
    "model": (dict(backbone="resnet10t", batch_size=4),
              dict(backbone="resnet18", batch_size=16),
              dict(backbone="resnet18", batch_size=16)),
}


def _saved_predict_model(params, out_dir):
    """Folder of a model with the bench's network, fit for 1 epoch on 32 synthetic phantoms."""
    from bmdkit import BMDRegressor
    from bmdkit.datasets import make_synthetic_cohort

    X, y = make_synthetic_cohort(n=32, image_size=params["image_size"], random_state=0,
                                 out_dir=Path(out_dir) / "training")
    model = BMDRegressor(**params, max_epochs=1, random_state=0).fit(X, y)
    return model.save(Path(out_dir) / "model")


def _run_predict_command(X, model_dir, workdir, workers, device):
    """Seconds of ``bmdkit predict`` (:func:`bmdkit.archive.predict_archive`, what the
    command runs) over the rows of ``X`` (written to a CSV first), CSV in, CSV out."""
    from bmdkit.archive import predict_archive

    csv, out = Path(workdir) / "rows.csv", Path(workdir) / "predictions.csv"
    X.to_csv(csv, index=False)
    start = time.perf_counter()
    run = predict_archive(model_dir, out, csv=csv, workers=workers, device=device)
    seconds = time.perf_counter() - start
    if run.n_written != len(X):
        raise RuntimeError(f"bmdkit predict wrote {run.n_written} of {len(X)} predictions; "
                           f"the others are listed in {run.errors}")
    return seconds


def predict_floors(X, model_dir, workdir, *, workers, device):
    """Decode floor, compute floor and end-to-end ``bmdkit predict`` throughput (rows/s).

    * ``decode_floor``: :func:`bmdkit.inference.stream_arrays` with ``workers``
      processes, no network: reading, normalising and resizing every file;
    * ``compute_floor``: the network alone (``model._predict_arrays``) on
      chunks already in memory, as many rows;
    * ``end_to_end``: the ``bmdkit predict`` command, CSV in, CSV out.

    ``predict_efficiency = end_to_end / min(decode_floor, compute_floor)``.
    """
    import bmdkit
    from bmdkit.inference import stream_arrays

    model = bmdkit.load(model_dir, device=device)
    n = len(X)
    start = time.perf_counter()
    sample = None
    for _, arrays, _ in stream_arrays(model, X, workers=workers):
        sample = sample or arrays
    decode = n / (time.perf_counter() - start)
    model._predict_arrays(sample)  # warm-up
    sync(torch.device(device))
    start, done = time.perf_counter(), 0
    while done < n:
        model._predict_arrays(sample)
        done += len(sample["numeric"])
    sync(torch.device(device))
    compute = done / (time.perf_counter() - start)
    end_to_end = n / _run_predict_command(X, model_dir, workdir, workers, device)
    return {"n": n, "decode_floor": decode, "compute_floor": compute, "end_to_end": end_to_end,
            "predict_efficiency": end_to_end / min(decode, compute),
            "bound_by": "decode" if decode < compute else "compute"}


def predict_memory(X, model_dir, workdir, *, n_values, workers, device):
    """Peak memory of ``bmdkit predict`` (the process and its decoding workers) per row count.

    Rows cycle through ``X``'s files, so larger ``n`` need no more files on disk.
    """
    points = []
    for n in n_values:
        rows = X.iloc[np.arange(n) % len(X)].reset_index(drop=True)
        with PeakMemory(torch.device(device), tree=True) as memory:
            seconds = _run_predict_command(rows, model_dir, workdir, workers, device)
        points.append({"n": n, "peak_mb": memory.peak / 2**20,
                       "growth_mb": (memory.peak - (memory.start or 0)) / 2**20,
                       "rows_per_s": n / seconds})
    return points


def run_predict_benchmarks(mode="quick", *, device="cpu", n_threads=None, workers=None,
                           workdir=None, log=None):
    """Measure streaming prediction (``bmdkit bench --predict``) and return a JSON-ready dict.

    On generated radiograph-sized 16-bit PNGs and DICOMs (:func:`make_radiograph_files`):
    the decode floor, the compute floor and end-to-end ``bmdkit predict``
    throughput per format (:func:`predict_floors`), and the command's peak
    memory at two row counts an order of magnitude apart
    (:func:`predict_memory`, on smaller files). Parameters as
    :func:`run_benchmarks`; ``workers`` decoding processes (default: one per
    core; 0 decodes in the main process).

    Returns
    -------
    dict
        ``formats`` (per format: the floors, ``end_to_end``,
        ``predict_efficiency``, ``bound_by``), ``predict_efficiency`` (the
        lower of the formats'), ``memory`` (per n: peak and growth MB, rows/s),
        ``memory_ratio`` (peak at the larger n / peak at the smaller),
        ``settings`` and ``machine``.
    """
    import shutil

    s, log = mode_settings(mode, device, log, PREDICT_SETTINGS)
    workers = (os.cpu_count() or 1) if workers is None else workers
    params = dict(s["model"], image_size=s["image_size"])
    result = {"mode": mode, "settings": dict(s, workers=workers),
              "machine": machine_info(device)}
    formats = {}
    with tempfile.TemporaryDirectory(prefix="bmdkit-bench-", dir=workdir) as tmp, \
            torch_threads(n_threads), imputation_expected():
        log(f"fitting a {params['backbone']} model at {params['image_size']} px (1 epoch)")
        model_dir = _saved_predict_model(params, tmp)
        for file_format in ("png", "dicom"):
            folder = Path(tmp) / file_format
            folder.mkdir()
            log(f"{file_format}: writing {s['n']} 16-bit files {s['file_shape'][0]}x"
                f"{s['file_shape'][1]}; decode floor, compute floor, bmdkit predict")
            X, _ = radiograph_cohort(s["n"], s["file_shape"], folder, file_format=file_format)
            formats[file_format] = predict_floors(X, model_dir, folder, workers=workers,
                                                  device=device)
            shutil.rmtree(folder)
        folder = Path(tmp) / "memory"
        folder.mkdir()
        X, _ = radiograph_cohort(2 * DISTINCT_FILES, s["memory_file_shape"], folder)
        log(f"peak memory of bmdkit predict at n={s['memory_n']}")
        memory = predict_memory(X, model_dir, folder, n_values=s["memory_n"], workers=workers,
                                device=device)
    result.update({
        "formats": formats,
        "predict_efficiency": min(f["predict_efficiency"] for f in formats.values()),
        "memory": memory, "memory_ratio": memory[-1]["peak_mb"] / memory[0]["peak_mb"],
    })
    result["machine"]["load_average_1min_after"] = machine_info(device).get(
        "load_average_1min")
    return result
