"""``bmdkit bench``: where the time of a fit goes, measured side by side.

For one network (the estimator's own :class:`~bmdkit.nn.BMDNet`) the bench
times, per training epoch:

* ``floor``: forward + backward + optimiser step on tensors already in
  memory, in a plain torch loop (no skorch, no data loader): the network's
  arithmetic alone;
* ``fit``: :meth:`BMDRegressor.fit`'s own epochs once the image cache is
  warm (skorch's epoch durations); ``overhead_ratio = fit / floor``;
* ``naive``: the typical research loop, a torch ``Dataset`` that decodes,
  normalises and resizes every file in ``__getitem__`` every epoch, under a
  ``DataLoader``; ``cache_speedup = naive / fit``;

plus ``predict`` throughput, peak memory, and how epoch time and memory grow
with the number of subjects and with ``image_size``. ``bmdkit bench --options``
instead A/Bs the optional speed-ups (:data:`OPTIONS`: bfloat16 autocast,
channels-last, a frozen backbone with cached features, ``torch.compile``)
against the float32 default: epoch times, fit time and held-out accuracy. It runs on generated
radiograph-sized files (16-bit PNG, 2048 × 1664 by default) and on the
synthetic demo cohort. Peak memory is the process's peak anonymous resident
memory (``RssAnon``, Linux; file-backed pages of a memory-mapped image store
are reclaimable and are not counted), elsewhere ``ru_maxrss``; on CUDA it is
``torch.cuda.max_memory_allocated``.

Benchmarks are not tests: timings depend on the machine and its load. See
docs/performance.md for figures and what each optimisation bought.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skorch.callbacks import Callback

from bmdkit.batching import torch_threads
from bmdkit.validation import ImputationWarning

__all__ = ["OPTIONS", "PREDICT_SETTINGS", "SETTINGS", "run_benchmarks", "run_option_benchmarks",
           "run_predict_benchmarks"]

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
    "model": (dict(backbone="resnet18", batch_size=4),
              dict(backbone="resnet18", batch_size=16),
              dict(backbone="resnet18", batch_size=16)),
}
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
_MODES = ("smoke", "quick", "full")
_DISTINCT_FILES = 8  # distinct generated radiographs; the rest are byte copies (decode cost is equal)


# -- measuring helpers --------------------------------------------------------------
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _anon_rss(pid="self"):
    """Anonymous resident bytes of a process (Linux), else None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _children(pid):
    """Process ids of ``pid``'s children (Linux: started by any of its threads)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(child) for child in f.read().split()]
    except OSError:
        pass
    return found


def _tree_anon_rss():
    """Anonymous resident bytes of this process and all its descendants (None off Linux)."""
    total = _anon_rss()
    if total is None:
        return None
    todo = _children(os.getpid())
    while todo:
        pid = todo.pop()
        total += _anon_rss(pid) or 0  # a child that just ended counts 0
        todo += _children(pid)
    return total


def _release_free_heap():
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``), so RSS growth is the block's own."""
    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class _PeakMemory:
    """Peak memory of the process during a ``with`` block, and at its start, in bytes.

    See the module docstring for what is counted; ``tree=True`` adds the
    process's descendants (decoding workers) on CPU.
    """

    def __init__(self, device, tree=False):
        self.device = device
        self.peak = self.start = 0
        self._rss = _tree_anon_rss if tree else _anon_rss

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_heap()
        self._high = self.start = self._rss()
        if self._high is None:
            return self
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.005):
                self._high = max(self._high, self._rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            high = torch.cuda.max_memory_allocated(self.device)
        elif hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join()
            high = max(self._high, self._rss())
        else:
            high = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak = high


# -- data -----------------------------------------------------------------------------
def make_radiograph_files(n, shape, out_dir, random_state=0, file_format="png"):
    """Write ``n`` radiograph-sized 16-bit images (smooth anatomy-like shapes plus noise).

    ``file_format`` is ``"png"`` or ``"dicom"`` (uncompressed MONOCHROME2,
    explicit VR little endian). Only :data:`_DISTINCT_FILES` images are
    rendered; the other files are byte copies under their own names, which
    cost the same to decode.

    Returns
    -------
    list of str
        The file paths.
    """
    if file_format not in ("png", "dicom"):
        raise ValueError(f"file_format must be 'png' or 'dicom', got {file_format!r}")
    rng = np.random.default_rng(random_state)
    rows, cols = shape
    yy, xx = np.mgrid[:rows, :cols].astype(np.float32)
    yy, xx = yy / rows, xx / cols
    suffix = {"png": "png", "dicom": "dcm"}[file_format]
    encoded = []
    for _ in range(min(n, _DISTINCT_FILES)):
        cy, cx, r = rng.uniform(0.3, 0.5), rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.2)
        image = (12000 + 20000 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
                 + 9000 * (np.abs(xx - cx - 0.1 * (yy - cy)) < 0.06) * (yy > cy)
                 + rng.normal(0, 400, shape).astype(np.float32))
        pixels = np.clip(image, 0, 65535).astype(np.uint16)
        path = Path(out_dir) / f"distinct_{len(encoded)}.{suffix}"
        if file_format == "png":
            Image.fromarray(pixels).save(path)
        else:
            _save_dicom(pixels, path)
        encoded.append(path.read_bytes())
    paths = []
    for i in range(n):
        path = Path(out_dir) / f"radiograph_{i:05d}.{suffix}"
        path.write_bytes(encoded[i % len(encoded)])
        paths.append(str(path))
    return paths


def _save_dicom(pixels, path):
    """An uncompressed 16-bit MONOCHROME2 DICOM file of ``pixels`` (0.2 mm pixel spacing)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Modality, ds.PixelSpacing = "DX", [0.2, 0.2]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _radiograph_cohort(n, shape, out_dir, random_state=0, file_format="png"):
    """Demo-cohort metadata and targets with radiograph-sized image files."""
    from bmdkit.datasets import make_synthetic_cohort

    X, y = make_synthetic_cohort(n=n, image_size=16, random_state=random_state,
                                 out_dir=Path(out_dir) / "thumbnails")
    X["image_path"] = make_radiograph_files(n, shape, out_dir, random_state, file_format)
    return X, y


class _DecodingDataset(torch.utils.data.Dataset):
    """The typical research loop's dataset: every file decoded in ``__getitem__``."""

    def __init__(self, paths, numeric, categorical, y, image_size, contrast):
        self.paths, self.numeric, self.categorical, self.y = paths, numeric, categorical, y
        self.image_size, self.contrast = image_size, contrast

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from bmdkit.io import preprocess_image

        image = preprocess_image(self.paths[i], self.image_size, self.contrast)
        x = {"image": torch.from_numpy(image)[None], "numeric": torch.from_numpy(self.numeric[i]),
             "categorical": torch.from_numpy(self.categorical[i])}
        return x, torch.from_numpy(self.y[i])


# -- the three training loops ---------------------------------------------------------
def _fresh_training(model, device):
    """A new network, optimiser and loss configured exactly as ``model.net_``."""
    net = model.net_
    module = net.module(**net.get_params_for("module")).to(device).train()
    args, kwargs = net.get_params_for_optimizer("optimizer", module.named_parameters())
    optimizer = net.optimizer(*args, **kwargs)  # the fit's parameter groups and learning rates
    return module, optimizer, net.criterion_


def _epoch(module, optimizer, criterion, batches, device):
    """Seconds for one pass of forward + backward + step over ``batches``."""
    _sync(device)
    start = time.perf_counter()
    for x, y in batches:
        x = {k: v.to(device, non_blocking=True) for k, v in x.items()}
        optimizer.zero_grad(set_to_none=True)
        criterion(module(**x), y.to(device, non_blocking=True)).backward()
        optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def floor_runner(model, arrays, y_scaled, device):
    """A function running one epoch of a plain torch loop over in-memory (on-device) tensors.

    Same network, optimiser, loss, batch size and shuffling as ``model``'s
    fit; returns the epoch's seconds.
    """
    module, optimizer, criterion = _fresh_training(model, device)
    tensors = {k: torch.as_tensor(np.array(v), device=device) for k, v in arrays.items()}
    target = torch.as_tensor(y_scaled, device=device)
    size, n = model.batch_size, len(target)

    def batches():
        order = torch.randperm(n, device=device)
        for start in range(0, n, size):
            idx = order[start:start + size]
            yield {k: v[idx] for k, v in tensors.items()}, target[idx]

    return lambda: _epoch(module, optimizer, criterion, batches(), device)


class _FloorAfterEachEpoch(Callback):
    """Runs one floor epoch after every fit epoch, so both are timed under the same load."""

    def __init__(self, floor):
        self.floor = floor
        self.seconds = []

    def on_epoch_end(self, net, **kwargs):
        self.seconds.append(self.floor())


def naive_epochs(model, X, arrays, y_scaled, epochs, device):
    """Per-epoch seconds of a loop that decodes every file every epoch (DataLoader, 0 workers)."""
    module, optimizer, criterion = _fresh_training(model, device)
    dataset = _DecodingDataset(X[model.image_col].tolist(), arrays["numeric"],
                               arrays["categorical"], y_scaled, model.image_size, model.contrast)
    loader = torch.utils.data.DataLoader(dataset, batch_size=model.batch_size, shuffle=True)
    return [_epoch(module, optimizer, criterion, loader, device) for _ in range(epochs)]


def _fit_epochs(model, X, y, epochs, device):
    """(per-epoch seconds, wall seconds, _PeakMemory) of ``model.fit`` with ``epochs`` epochs."""
    model.set_params(max_epochs=epochs)
    with _PeakMemory(device) as memory:
        start = time.perf_counter()
        model.fit(X, y)
        wall = time.perf_counter() - start
    return list(model.net_.history[:, "dur"]), wall, memory


# -- one comparison ---------------------------------------------------------------------
def compare(X, y, *, params, epochs, repeats, naive_epochs_, device, log=None):
    """Floor, fit, naive and predict figures of one cohort (see the module docstring).

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
        paired = _FloorAfterEachEpoch(floor_runner(model, arrays, y_scaled, device))
        paired.floor()  # warm-up
        model.set_params(callbacks=[paired])
        for repeat in range(repeats):
            log(f"repeat {repeat + 1}/{repeats}: {epochs} fit epochs, each followed by a floor epoch")
            durations, wall, _ = _fit_epochs(model, X, y, epochs, device)
            fit += durations
            walls.append(wall - sum(durations) - sum(paired.seconds[-epochs:]))
        model.set_params(callbacks=None)
        floor = paired.seconds
        log(f"naive: {naive_epochs_} epoch(s) decoding every file")
        naive = naive_epochs(model, X, arrays, y_scaled, naive_epochs_, device)
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


@contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the whole bench ------------------------------------------------------------------
def _machine(device):
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "python": sys.version.split()[0],
            "device": str(device)}
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = os.getloadavg()[0]
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _check_device(device):
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} asked for, but torch sees no CUDA device")


def _setup(mode, device, log, table=None):
    """(settings of ``mode`` from ``table`` (default :data:`SETTINGS`), a log callable) after
    checking mode and device."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    _check_device(device)
    settings = {key: value[_MODES.index(mode)] for key, value in (table or SETTINGS).items()}
    return settings, log or (lambda message: None)


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
        ``larger_than_ram``, ``settings`` and ``machine``.

    Examples
    --------
    >>> import tempfile
    >>> from bmdkit.benchmarks import run_benchmarks
    >>> figures = run_benchmarks("smoke", data_home=tempfile.mkdtemp())  # doctest: +SKIP
    >>> sorted(figures["datasets"])  # doctest: +SKIP
    ['demo', 'radiographs']
    """
    from bmdkit.datasets import load_demo_cohort

    s, log = _setup(mode, device, log)
    params = dict(s["model"], image_size=s["image_size"], random_state=0, n_threads=n_threads)
    common = dict(epochs=s["epochs"], repeats=s["repeats"], naive_epochs_=s["naive_epochs"],
                  device=device)
    result = {"mode": mode, "settings": {k: v for k, v in s.items()}, "machine": _machine(device)}
    with tempfile.TemporaryDirectory(prefix="bmdkit-bench-", dir=workdir) as tmp:
        log(f"writing {s['n']} radiograph-sized 16-bit PNGs {s['file_shape'][0]}x"
            f"{s['file_shape'][1]}")
        X, y = _radiograph_cohort(s["n"], s["file_shape"], tmp)
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
        with _env(BMDKIT_CACHE_MEMORY_MB=0.5):
            mapped = _scaling_point(
                X, y, dict(params, image_size=s["scaling_base_size"], cache_dir=tmp), device)

    per_subject = [p["ms_per_subject"] for p in scaling_n]
    result.update({
        "overhead_ratio": radiographs["overhead_ratio"],
        "cache_speedup": radiographs["cache_speedup"],
        "datasets": {"radiographs": radiographs, "demo": demo},
        "scaling_n": scaling_n,
        "time_linearity": max(per_subject) / min(per_subject),
        "scaling_image_size": scaling_size,
        "larger_than_ram": mapped,
    })
    result["machine"]["load_average_1min_after"] = _machine(device).get("load_average_1min")
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

    s, log = _setup(mode, device, log)
    X, y = load_demo_cohort(n=s["n"], data_home=data_home)
    rows = []
    for size in s["options_image_sizes"]:
        log(f"options at {size} px: {', '.join(s['options'])}")
        params = dict(s["model"], image_size=size, random_state=0, n_threads=n_threads)
        rows += compare_options(X, y, params=params, options=s["options"],
                                epochs=s["options_epochs"], device=device)
    return {"mode": mode, "settings": s, "machine": _machine(device), "options": rows}


# -- streaming prediction (bmdkit bench --predict) ----------------------------------------
def _saved_predict_model(params, out_dir):
    """Folder of a model with the bench's network, fit for 1 epoch on 32 synthetic phantoms."""
    from bmdkit import BMDRegressor
    from bmdkit.datasets import make_synthetic_cohort

    X, y = make_synthetic_cohort(n=32, image_size=params["image_size"], random_state=0,
                                 out_dir=Path(out_dir) / "training")
    model = BMDRegressor(**params, max_epochs=1, random_state=0).fit(X, y)
    return model.save(Path(out_dir) / "model")


def _run_predict_command(X, model_dir, workdir, workers, device):
    """Seconds of ``bmdkit predict`` over the rows of ``X`` (written to a CSV first)."""
    from bmdkit.cli import main

    csv, out = Path(workdir) / "rows.csv", Path(workdir) / "predictions.csv"
    X.to_csv(csv, index=False)
    start = time.perf_counter()
    main(["predict", "--csv", str(csv), "--model", str(model_dir), "--out", str(out),
          "--workers", str(workers), "--device", str(device)])
    return time.perf_counter() - start


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
    _sync(torch.device(device))
    start, done = time.perf_counter(), 0
    while done < n:
        model._predict_arrays(sample)
        done += len(sample["numeric"])
    _sync(torch.device(device))
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
        with _PeakMemory(torch.device(device), tree=True) as memory:
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

    s, log = _setup(mode, device, log, PREDICT_SETTINGS)
    workers = (os.cpu_count() or 1) if workers is None else workers
    params = dict(s["model"], image_size=s["image_size"])
    result = {"mode": mode, "settings": dict(s, workers=workers), "machine": _machine(device)}
    formats = {}
    with tempfile.TemporaryDirectory(prefix="bmdkit-bench-", dir=workdir) as tmp, \
            torch_threads(n_threads), warnings.catch_warnings():
        # the synthetic metadata's missing values are imputed on purpose: not news per run
        warnings.simplefilter("ignore", ImputationWarning)
        log(f"fitting a {params['backbone']} model at {params['image_size']} px (1 epoch)")
        model_dir = _saved_predict_model(params, tmp)
        for file_format in ("png", "dicom"):
            folder = Path(tmp) / file_format
            folder.mkdir()
            log(f"{file_format}: writing {s['n']} 16-bit files {s['file_shape'][0]}x"
                f"{s['file_shape'][1]}; decode floor, compute floor, bmdkit predict")
            X, _ = _radiograph_cohort(s["n"], s["file_shape"], folder, file_format=file_format)
            formats[file_format] = predict_floors(X, model_dir, folder, workers=workers,
                                                  device=device)
            shutil.rmtree(folder)
        folder = Path(tmp) / "memory"
        folder.mkdir()
        X, _ = _radiograph_cohort(2 * _DISTINCT_FILES, s["memory_file_shape"], folder)
        log(f"peak memory of bmdkit predict at n={s['memory_n']}")
        memory = predict_memory(X, model_dir, folder, n_values=s["memory_n"], workers=workers,
                                device=device)
    result.update({
        "formats": formats,
        "predict_efficiency": min(f["predict_efficiency"] for f in formats.values()),
        "memory": memory, "memory_ratio": memory[-1]["peak_mb"] / memory[0]["peak_mb"],
    })
    result["machine"]["load_average_1min_after"] = _machine(device).get("load_average_1min")
    return result


# -- output -------------------------------------------------------------------------------
def format_table(result):
    """The bench's figures as text, ending with the one-line headline."""
    lines = [f"bmdkit bench ({result['mode']}) on {result['machine']['cpu']}, "
             f"{result['machine']['cpu_count']} cores, {result['machine']['torch_threads']} torch "
             f"threads, device {result['machine']['device']}", ""]
    head = (f"{'cohort':<12}{'n':>6}{'px':>5}{'floor s/ep':>12}{'fit s/ep':>10}{'naive s/ep':>12}"
            f"{'overhead':>10}{'cache x':>9}{'predict img/s':>15}")
    lines.append(head)
    for name, r in result["datasets"].items():
        lines.append(f"{name:<12}{r['n']:>6}{r['image_size']:>5}{r['floor_epoch_s']:>12.3f}"
                     f"{r['fit_epoch_s']:>10.3f}{r['naive_epoch_s']:>12.3f}"
                     f"{r['overhead_ratio']:>10.3f}{r['cache_speedup']:>9.1f}"
                     f"{r['predict_images_per_s']:>15.0f}")
    lines += ["", f"{'scaling':<12}{'n':>6}{'px':>5}{'fit s/ep':>10}{'ms/subject':>12}"
                  f"{'store MB':>10}{'fit peak MB':>13}{'growth MB':>11}"]
    for name, points in (("n", result["scaling_n"]), ("image_size", result["scaling_image_size"]),
                         ("memmap", [result["larger_than_ram"]])):
        for p in points:
            lines.append(f"{name:<12}{p['n']:>6}{p['image_size']:>5}{p['epoch_s']:>10.3f}"
                         f"{p['ms_per_subject']:>12.2f}{p['store_mb']:>10.1f}"
                         f"{p['fit_peak_mb']:>13.0f}{p['fit_growth_mb']:>11.1f}")
    lines += ["", f"overhead_ratio={result['overhead_ratio']:.3f} "
                  f"cache_speedup={result['cache_speedup']:.1f} "
                  f"time_linearity={result['time_linearity']:.2f} "
                  f"(radiographs, n={result['datasets']['radiographs']['n']}, "
                  f"{result['datasets']['radiographs']['image_size']} px, "
                  f"{result['machine']['device']})"]
    return "\n".join(lines)


def format_options_table(result):
    """The ``--options`` figures as text."""
    machine = result["machine"]
    lines = [f"bmdkit bench --options ({result['mode']}) on {machine['cpu']}, "
             f"{machine['torch_threads']} torch threads, device {machine['device']}; SYNTHETIC "
             f"demo cohort, {result['settings']['options_epochs']} epochs per fit", "",
             f"{'option':<17}{'px':>5}{'1st ep s':>10}{'epoch s':>9}{'fit s':>8}{'epoch x':>9}"
             f"{'fit x':>7}{'R2':>7}{'MAE':>8}{'|diff|':>8}{'peak MB':>9}"]
    for r in result["options"]:
        lines.append(f"{r['option']:<17}{r['image_size']:>5}{r['first_epoch_s']:>10.2f}"
                     f"{r['epoch_s']:>9.3f}{r['fit_s']:>8.2f}{r['epoch_speedup']:>9.2f}"
                     f"{r['fit_speedup']:>7.2f}{r['heldout_r2']:>7.3f}{r['heldout_mae']:>8.4f}"
                     f"{r['max_abs_diff_vs_first']:>8.4f}{r['fit_peak_mb']:>9.0f}")
    lines += ["", "epoch x / fit x: speed-up over float32 at the same size (> 1 is faster); "
                  "|diff|: largest held-out prediction difference from float32, g/cm²"]
    return "\n".join(lines)


def format_predict_table(result):
    """The ``--predict`` figures as text, ending with the headline."""
    machine, s = result["machine"], result["settings"]
    lines = [f"bmdkit bench --predict ({result['mode']}) on {machine['cpu']}, "
             f"{machine['cpu_count']} cores, {s['workers']} decoding workers, "
             f"{machine['torch_threads']} torch threads, device {machine['device']}; "
             f"{s['model']['backbone']} at {s['image_size']} px; files "
             f"{s['file_shape'][0]}x{s['file_shape'][1]} 16-bit", "",
             f"{'format':<8}{'n':>6}{'decode/s':>10}{'compute/s':>11}{'end-to-end/s':>14}"
             f"{'efficiency':>12}  bound by"]
    for name, f in result["formats"].items():
        lines.append(f"{name:<8}{f['n']:>6}{f['decode_floor']:>10.1f}{f['compute_floor']:>11.1f}"
                     f"{f['end_to_end']:>14.1f}{f['predict_efficiency']:>12.3f}  {f['bound_by']}")
    lines += ["", f"{'memory':<8}{'n':>6}{'peak MB':>10}{'growth MB':>11}{'rows/s':>9}"]
    for p in result["memory"]:
        lines.append(f"{'':<8}{p['n']:>6}{p['peak_mb']:>10.0f}{p['growth_mb']:>11.1f}"
                     f"{p['rows_per_s']:>9.1f}")
    lines += ["", f"predict_efficiency={result['predict_efficiency']:.3f} "
                  f"memory_ratio={result['memory_ratio']:.3f} (peak at n={s['memory_n'][1]} / "
                  f"n={s['memory_n'][0]}, files {s['memory_file_shape'][0]}x"
                  f"{s['memory_file_shape'][1]})"]
    return "\n".join(lines)
