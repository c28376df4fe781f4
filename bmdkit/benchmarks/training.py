"""The training bench: the real fit timed against the references, scaling, options.

:func:`run_benchmarks` (``bmdkit bench``) and :func:`run_option_benchmarks`
(``bmdkit bench --options``). Every fit here is :meth:`BMDRegressor.fit`
itself; the only other loops are the references of
:mod:`bmdkit.benchmarks.references`.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import torch
from skorch.callbacks import Callback

from bmdkit.batching import torch_threads
from bmdkit.benchmarks.data import phantom_rendering, radiograph_cohort
from bmdkit.benchmarks.measure import (
    PeakMemory,
    environment,
    imputation_expected,
    machine_info,
    mode_settings,
)
from bmdkit.benchmarks.references import floor_reference, naive_reference

__all__ = ["OPTIONS", "SETTINGS", "compare", "compare_options", "run_benchmarks",
           "run_option_benchmarks"]

#: The optimisations ``bmdkit bench --options`` compares: name -> estimator parameters.
OPTIONS = {
    "float32": {},
    "bfloat16": dict(precision="bfloat16"),
    "channels_last": dict(channels_last=True),
    "freeze_backbone": dict(freeze_backbone=True),
    "compile": dict(compile=True),
}

#: Bench settings per mode: name -> (smoke, quick, full).
SETTINGS = {
    "n": (12, 128, 250),                       # subjects of the radiograph / demo comparisons
    "image_size": (16, 64, 128),               # network input side
    "file_shape": ((96, 80), (2048, 1664), (2048, 1664)),  # generated files (rows, columns)
    "epochs": (1, 3, 5),                       # epochs per fit / floor measurement
    "repeats": (1, 2, 3),                      # fit + floor pairs (medians are reported)
    "naive_epochs": (1, 1, 2),
    "scaling_n": ((8, 16), (64, 128, 256), (250, 1000, 4000)),
    "scaling_base_size": (16, 32, 64),        # image_size while n varies
    # n while image_size varies is scaling_n[0]; the point at scaling_base_size is reused
    "scaling_image_size": ((16, 24), (32, 64, 96), (64, 128, 256)),
    "options": (("float32", "freeze_backbone", "bfloat16"),
                ("float32", "bfloat16", "channels_last", "freeze_backbone"),
                tuple(OPTIONS)),
    "options_image_sizes": ((16,), (64, 128), (64, 128)),
    "options_epochs": (2, 3, 10),
    "phantoms": ((4, 256), (64, 1024), (233, 1024)),  # pelvis films rendered: (n, long side)
    "model": (dict(backbone="resnet18", batch_size=4),
              dict(backbone="resnet18", batch_size=16),
              dict(backbone="resnet18", batch_size=16)),
}


class _FloorAfterEachEpoch(Callback):
    """Runs one floor epoch after every fit epoch, so both are timed under the same load."""

    def __init__(self, floor):
        self.floor = floor
        self.seconds = []

    def on_epoch_end(self, net, **kwargs):
        self.seconds.append(self.floor())


def _fit_epochs(model, X, y, epochs, device):
    """(per-epoch seconds, wall seconds, PeakMemory) of ``model.fit`` with ``epochs`` epochs."""
    model.set_params(max_epochs=epochs)
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        model.fit(X, y)
        wall = time.perf_counter() - start
    return list(model.net_.history[:, "dur"]), wall, memory


def compare(X, y, *, params, epochs, repeats, naive_epochs, device, log=None):
    """Floor, fit, naive and predict figures of one cohort (see :mod:`bmdkit.benchmarks`).

    ``log``, if given, is called with a progress message before each step
    (cache, warm-up, each repeat, naive epochs, predict).
    """
    from bmdkit import BMDRegressor
    from bmdkit.io import load_images

    log = log or (lambda message: None)
    device = torch.device(device)
    model = BMDRegressor(**params, device=str(device))
    log(f"decoding {len(X)} images into the cache")
    start = time.perf_counter()
    load_images(X["image_path"].tolist(), image_size=model.image_size, contrast=model.contrast)
    cache_build = time.perf_counter() - start
    log("warm-up fit (1 epoch)")
    _fit_epochs(model, X, y, 1, device)  # warm-up: allocator, kernels
    arrays = model.preprocessor_.transform(X)
    y_scaled = model._scale_targets(y)

    fit, walls = [], []
    with torch_threads(params.get("n_threads")):
        paired = _FloorAfterEachEpoch(floor_reference(model, arrays, y_scaled, device))
        paired.floor()  # warm-up
        model.set_params(callbacks=[paired])
        for repeat in range(repeats):
            log(f"repeat {repeat + 1}/{repeats}: {epochs} fit epochs, each followed by a floor epoch")
            durations, wall, _ = _fit_epochs(model, X, y, epochs, device)
            fit += durations
            walls.append(wall - sum(durations) - sum(paired.seconds[-epochs:]))
        model.set_params(callbacks=None)
        floor = paired.seconds
        log(f"naive: {naive_epochs} epoch(s) decoding every file")
        naive = naive_reference(model, X, arrays, y_scaled, naive_epochs, device)
    log("predict")
    start = time.perf_counter()
    model.predict(X)
    predict = time.perf_counter() - start
    result = {
        "n": len(y), "image_size": model.image_size,
        "floor_epoch_s": statistics.median(floor), "fit_epoch_s": statistics.median(fit),
        "naive_epoch_s": statistics.median(naive),
        "fit_fixed_s": statistics.median(walls), "cache_build_s": cache_build,
        "predict_images_per_s": len(y) / predict,
        "floor_epochs_s": floor, "fit_epochs_s": fit, "naive_epochs_s": naive,
    }
    # paired epoch by epoch: the median of fit/floor ratios cancels slow drifts of machine load
    result["overhead_ratio"] = statistics.median(a / b for a, b in zip(fit, floor))
    result["cache_speedup"] = result["naive_epoch_s"] / result["fit_epoch_s"]
    return result


def _scaling_point(X, y, params, device):
    """Epoch seconds, image store size and fit peak memory of one (n, image_size)."""
    from bmdkit import BMDRegressor

    device = torch.device(device)
    model = BMDRegressor(**params, device=str(device))
    _fit_epochs(model, X, y, 1, device)  # warms the image cache
    durations, _, memory = _fit_epochs(model, X, y, 2, device)
    n, size, epoch = len(y), model.image_size, min(durations)
    return {"n": n, "image_size": size, "epoch_s": epoch, "ms_per_subject": 1000 * epoch / n,
            "store_mb": 4 * n * size * size / 2**20, "fit_peak_mb": memory.peak / 2**20,
            "fit_growth_mb": (memory.peak - (memory.start or 0)) / 2**20}


def compare_options(X, y, *, params, options, epochs, device):
    """Each optimisation of ``options`` (names in :data:`OPTIONS`) against float32.

    Every model trains from the same seed on the first 80 % of the rows and
    predicts the other 20 % (the demo cohort's rows are in random order).
    """
    from sklearn.metrics import mean_absolute_error, r2_score

    from bmdkit import BMDRegressor

    device = torch.device(device)
    cut = int(round(0.8 * len(y)))
    train, test = (X.iloc[:cut], y[:cut]), (X.iloc[cut:], y[cut:])
    _fit_epochs(BMDRegressor(**params, device=str(device)), *train, 1, device)  # warm caches
    rows, reference = [], None
    for name in options:
        model = BMDRegressor(**params, **OPTIONS[name], device=str(device))
        durations, wall, memory = _fit_epochs(model, *train, epochs, device)
        start = time.perf_counter()
        predicted = model.predict(test[0])
        predict = time.perf_counter() - start
        reference = predicted if reference is None else reference
        rows.append({
            "option": name, "n_train": cut, "image_size": model.image_size,
            "first_epoch_s": durations[0],
            "epoch_s": statistics.median(durations[1:] or durations),
            "fit_s": wall, "predict_images_per_s": len(predicted) / predict,
            "fit_peak_mb": memory.peak / 2**20,
            "heldout_r2": r2_score(test[1], predicted),
            "heldout_mae": mean_absolute_error(test[1], predicted),
            "max_abs_diff_vs_first": float(np.abs(predicted - reference).max()),
        })
    for row in rows:
        row["epoch_speedup"] = rows[0]["epoch_s"] / row["epoch_s"]
        row["fit_speedup"] = rows[0]["fit_s"] / row["fit_s"]
    return rows


def run_benchmarks(mode="quick", *, device="cpu", n_threads=None, workdir=None, data_home=None,
                   log=None):
    """Run the bench and return every figure as a JSON-ready dict.

    Parameters
    ----------
    mode : {"smoke", "quick", "full"}, default="quick"
        Sizes from :data:`SETTINGS`; ``"smoke"`` takes seconds (for CI),
        ``"quick"`` a few minutes on 2 CPU cores. The ``bmdkit bench``
        command runs ``"full"`` unless given ``--quick`` or ``--smoke``.
    device : str, default="cpu"
        Torch device, e.g. ``"cuda"``.
    n_threads : int or None, default=None
        Torch threads (the estimator's ``n_threads``); ``None`` keeps torch's.
    workdir : str, os.PathLike or None, default=None
        Folder for generated files (default: a temporary folder, removed after).
    data_home : str, os.PathLike or None, default=None
        Where demo cohorts are cached (see :func:`bmdkit.load_demo_cohort`).
    log : callable or None, default=None
        Called with a progress message before each step.

    Returns
    -------
    dict
        ``overhead_ratio`` and ``cache_speedup`` (radiograph-sized files),
        ``datasets`` (per cohort: floor/fit/naive epoch seconds and ratios,
        predict images/s, peak memory), ``scaling_n``, ``scaling_image_size``,
        ``larger_than_ram``, ``phantoms`` (seconds to render the demo cohort's
        pelvis films and measure their DXA truth,
        :func:`~bmdkit.benchmarks.data.phantom_rendering`), ``settings`` and ``machine``.

    Examples
    --------
    >>> import tempfile
    >>> from bmdkit.benchmarks import run_benchmarks
    >>> figures = run_benchmarks("smoke", data_home=tempfile.mkdtemp())  # doctest: +SKIP
    >>> sorted(figures["datasets"])  # doctest: +SKIP
    ['demo', 'radiographs']
    """
    from bmdkit.datasets import load_demo_cohort

    s, log = mode_settings(mode, device, log, SETTINGS)
    params = dict(s["model"], image_size=s["image_size"], random_state=0, n_threads=n_threads)
    common = dict(epochs=s["epochs"], repeats=s["repeats"], naive_epochs=s["naive_epochs"],
                  device=device)
    result = {"mode": mode, "settings": {k: v for k, v in s.items()},
              "machine": machine_info(device)}
    with tempfile.TemporaryDirectory(prefix="bmdkit-bench-", dir=workdir) as tmp, \
            imputation_expected():
        log(f"writing {s['n']} radiograph-sized 16-bit PNGs {s['file_shape'][0]}x"
            f"{s['file_shape'][1]}")
        X, y = radiograph_cohort(s["n"], s["file_shape"], tmp)
        log("radiographs: floor / fit / naive / predict")
        radiographs = compare(X, y, params=params, **common,
                              log=lambda message: log(f"radiographs: {message}"))
        log("demo cohort: floor / fit / naive / predict")
        X, y = load_demo_cohort(n=s["n"], data_home=data_home)
        demo = compare(X, y, params=params, **dict(common, repeats=1),
                       log=lambda message: log(f"demo cohort: {message}"))

        scaling_n = []
        for n in s["scaling_n"]:
            log(f"scaling: n={n}")
            X, y = load_demo_cohort(n=n, data_home=data_home)
            scaling_n.append(_scaling_point(
                X, y, dict(params, image_size=s["scaling_base_size"]), device))
        base_n = s["scaling_n"][0]  # n while image_size varies
        X, y = load_demo_cohort(n=base_n, data_home=data_home)
        scaling_size = []
        for size in s["scaling_image_size"]:
            if size == s["scaling_base_size"]:  # measured above as the first n point
                scaling_size.append(dict(scaling_n[0]))
                continue
            log(f"scaling: image_size={size}")
            scaling_size.append(_scaling_point(X, y, dict(params, image_size=size), device))
        n = s["scaling_n"][-1]
        log(f"larger than RAM: n={n} through a memory-mapped store")
        X, y = load_demo_cohort(n=n, data_home=data_home)
        with environment(BMDKIT_CACHE_MEMORY_MB=0.5):
            mapped = _scaling_point(
                X, y, dict(params, image_size=s["scaling_base_size"], cache_dir=tmp), device)

    n_films, film_size = s["phantoms"]
    log(f"phantoms: rendering {n_films} pelvis films at {film_size} px")
    phantoms = phantom_rendering(n_films, film_size)
    per_subject = [p["ms_per_subject"] for p in scaling_n]
    result.update({
        "overhead_ratio": radiographs["overhead_ratio"],
        "cache_speedup": radiographs["cache_speedup"],
        "datasets": {"radiographs": radiographs, "demo": demo},
        "scaling_n": scaling_n,
        "time_linearity": max(per_subject) / min(per_subject),
        "scaling_image_size": scaling_size,
        "larger_than_ram": mapped,
        "phantoms": phantoms,
    })
    result["machine"]["load_average_1min_after"] = machine_info(device).get(
        "load_average_1min")
    return result


def run_option_benchmarks(mode="quick", *, device="cpu", n_threads=None, data_home=None,
                          log=None):
    """A/B the optional speed-ups of :data:`OPTIONS` on the demo cohort (``bmdkit bench --options``).

    Parameters are those of :func:`run_benchmarks`. Returns a dict with
    ``options`` (one row per option and image size: first and median epoch
    seconds, fit seconds including any one-off cost such as compilation or
    computing frozen features, predict images/s, peak memory, held-out R² and
    MAE, the largest prediction difference from float32, and the speed-ups
    over float32), ``settings`` and ``machine``.
    """
    from bmdkit.datasets import load_demo_cohort

    s, log = mode_settings(mode, device, log, SETTINGS)
    X, y = load_demo_cohort(n=s["n"], data_home=data_home)
    rows = []
    with imputation_expected():
        for size in s["options_image_sizes"]:
            log(f"options at {size} px: {', '.join(s['options'])}")
            params = dict(s["model"], image_size=size, random_state=0, n_threads=n_threads)
            rows += compare_options(X, y, params=params, options=s["options"],
                                    epochs=s["options_epochs"], device=device)
    return {"mode": mode, "settings": s, "machine": machine_info(device), "options": rows}
