"""Streaming prediction: rows in chunks, images decoded in worker processes, bounded memory.

Fitting needs every image every epoch, so :meth:`BMDRegressor.fit
<bmdkit.BMDRegressor.fit>` keeps its preprocessed store (:func:`bmdkit.io.load_images`).
Prediction needs each image once. Here it goes chunk by chunk, so memory does
not grow with the number of rows:

* :func:`predict_cached` is what :meth:`BMDRegressor.predict
  <bmdkit.BMDRegressor.predict>` runs: chunks of :data:`CHUNK_ROWS` rows,
  images through the image cache (bounded by ``BMDKIT_CACHE_MEMORY_MB``; a
  cross-validation's validation rows are usually there already), one :class:`~bmdkit.checks.InputError` naming
  every unreadable file;
* :func:`stream_predict` is for archives (``bmdkit predict``, the Dask
  predictor of :mod:`bmdkit.scaleout`): ``workers`` processes decode the next
  chunks while the network predicts the current one, no image cache is
  filled, and an unreadable file is reported with its reason instead of
  stopping the run.

Both cut the same network batches as predicting all rows at once (chunks are
a whole number of ``batch_size`` batches), so they give exactly the
predictions of a one-shot prediction. Metadata of all rows are encoded up
front (a few numbers per row): bad metadata stop the run before any image is
read.

Rows without an image (no path: empty, blank, None or NaN) are errors under
the estimators' default ``missing_image="error"``. With
``missing_image="metadata"`` (a model fitted with ``modality_dropout > 0``)
they are predicted from their metadata alone, the network's learned "no
image" token standing in for the image, and :func:`missing_images` (or
:attr:`StreamChunk.image_missing`) says which rows those were. A path that
names a missing or unreadable file is still an error: that is a broken
archive, not a row without an image.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bmdkit.checks import InputError, check_image_paths, is_missing_path
from bmdkit.errors import ParameterError
from bmdkit.io import preprocess_image

__all__ = ["CHUNK_ROWS", "MISSING_IMAGE_POLICIES", "StreamChunk", "chunk_rows", "decode_images",
           "missing_images", "predict_cached", "spawn_pool", "stream_arrays", "stream_predict"]

#: What the estimators do with a row that has no image (their ``missing_image``).
MISSING_IMAGE_POLICIES = ("error", "metadata")

#: Rows per chunk by default (rounded up to a whole number of the model's batches).
CHUNK_ROWS = 64
#: Files one decoding task reads at most: small tasks keep every worker busy on the
#: current chunk, so the first predictions come early and the last chunk ends together.
TASK_ROWS = 16


@dataclass
class StreamChunk:
    """Predictions for one chunk of rows.

    Attributes
    ----------
    positions : ndarray of int
        Positions (0-based, in the ``X`` given) of the rows predicted.
    predictions : ndarray of float64
        Predicted BMD (g/cm²) of those rows.
    failures : dict
        Position -> why the row's image could not be read (``"Type: message"``).
    image_missing : ndarray of bool
        Per predicted row: predicted from its metadata alone, for want of an
        image (``missing_image="metadata"``; see :func:`missing_images`).
    """

    positions: np.ndarray
    predictions: np.ndarray
    failures: dict = field(default_factory=dict)
    image_missing: np.ndarray | None = None


def chunk_rows(model, chunk_size=None):
    """Rows per chunk: ``chunk_size`` (default :data:`CHUNK_ROWS`) rounded up to a
    multiple of ``model.batch_size``, so chunked batches are the one-shot ones.

    Examples
    --------
    >>> from bmdkit import BMDRegressor
    >>> chunk_rows(BMDRegressor(batch_size=16)), chunk_rows(BMDRegressor(batch_size=24), 100)
    (64, 120)
    """
    size = CHUNK_ROWS if chunk_size is None else int(chunk_size)
    if size < 1:
        raise ParameterError(f"chunk_size must be a positive number of rows, got {chunk_size!r}")
    return -(-size // model.batch_size) * model.batch_size


def _bounds(n, size):
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _metadata(model, X):
    """(model's view of X, metadata arrays of every row): checked and imputed once."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "net_")
    X = model._metadata_frame(X)
    return X, model.preprocessor_.transform_metadata(X)


def _rows(arrays, positions):
    return {key: value[positions] for key, value in arrays.items()}


def missing_images(model, X):
    """Which rows of ``X`` ``model`` predicts without an image (from their metadata alone).

    Under ``missing_image="metadata"``: the rows with no image path (empty,
    blank, None, NaN; every row when ``X`` has no image column). Under
    ``"error"`` (the default), and for models that read no images, none.

    Parameters
    ----------
    model : fitted BMDRegressor
    X : pandas.DataFrame

    Returns
    -------
    ndarray of bool of shape (len(X),)

    Raises
    ------
    ValueError
        ``missing_image`` is not a known policy, or rows have no image and
        the model never learned to predict without one (``modality_dropout=0``).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "net_")
    policy = getattr(model, "missing_image", "error")
    if policy not in MISSING_IMAGE_POLICIES:
        raise ParameterError(f"missing_image must be one of {MISSING_IMAGE_POLICIES}, got {policy!r}")
    image_col = model.preprocessor_.image_col
    if policy == "error" or image_col is None:
        return np.zeros(len(X), dtype=bool)
    missing = (np.array([is_missing_path(p) for p in X[image_col]], dtype=bool)
               if image_col in X.columns else np.ones(len(X), dtype=bool))
    if missing.any() and not hasattr(model.net_.module_.fusion, "missing_image"):
        raise InputError(
            f"{int(missing.sum())} rows have no image, and missing_image='metadata' needs a model "
            "fitted with modality_dropout > 0 (it learns what stands in for the image); this "
            f"one was fitted with modality_dropout={getattr(model, 'modality_dropout', 0)!r}")
    return missing


def _with_missing(images, missing, image_size):
    """``images`` of the rows that have one, placed among zeros for the ``missing`` rows,
    as the network's ``image`` and ``image_missing`` inputs (the latter only if any is)."""
    if not missing.any():
        return {"image": images}
    full = np.zeros((len(missing), 1, image_size, image_size), dtype=np.float32)
    full[~missing] = images
    return {"image": full, "image_missing": missing}


def predict_cached(model, X, chunk_size=None):
    """Predict ``X`` chunk by chunk, images through the image cache (``model.predict``).

    Parameters
    ----------
    model : fitted BMDRegressor
    X : pandas.DataFrame
    chunk_size : int or None
        Rows per chunk (see :func:`chunk_rows`).

    Returns
    -------
    ndarray of shape (n_samples,) or (n_samples, n_sites), float64

    Raises
    ------
    bmdkit.checks.InputError
        Naming every missing file before predicting, or else every file that
        could not be decoded (after trying them all).
    """
    X, metadata = _metadata(model, X)
    pre = model.preprocessor_
    missing = missing_images(model, X)
    if pre.image_col is not None:
        check_image_paths(X[pre.image_col][~missing].tolist(), X.index[~missing])
    predictions = np.empty((len(X), *np.shape(model.y_mean_)))  # (n, k) for k sites
    problems = {}
    for start, stop in _bounds(len(X), chunk_rows(model, chunk_size)):
        arrays = _rows(metadata, slice(start, stop))
        if pre.image_col is not None:
            gone = missing[start:stop]
            try:
                images = (pre.transform_images(X.iloc[start:stop][~gone]) if not gone.all()
                          else np.empty((0, 1, pre.image_size, pre.image_size), np.float32))
            except InputError as error:  # carry on: every bad file is named at the end
                problems.update(error.problems)
                continue
            arrays.update(_with_missing(images, gone, pre.image_size))
        predictions[start:stop] = model._predict_arrays(arrays)
    if problems:
        n = len(problems)
        raise InputError(f"{n} image file{'s' if n != 1 else ''} cannot be decoded or "
                         "hold no image", problems)
    return predictions


def decode_images(paths, image_size, contrast="percentile"):
    """Preprocess files one by one, keeping going past unreadable ones.

    What a decoding worker process runs (each file through
    :func:`bmdkit.io.preprocess_image`).

    Returns
    -------
    images : ndarray of shape (n_read, image_size, image_size), float32
        The files read, in order.
    failures : dict
        Position in ``paths`` -> ``"ExceptionType: message"`` for the others.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> images, failures = decode_images([os.path.join(folder, "gone.png")], 16)
    >>> images.shape, failures[0].split(":")[0]
    ((0, 16, 16), 'FileNotFoundError')
    """
    images, failures = [], {}
    for i, path in enumerate(paths):
        try:
            images.append(preprocess_image(path, image_size, contrast))
        except Exception as exc:  # reported per file; the run goes on
            failures[i] = f"{type(exc).__name__}: {exc}"
    if not images:
        return np.empty((0, image_size, image_size), np.float32), failures
    return np.stack(images), failures


def spawn_pool(workers, initializer=None):
    """A :class:`~concurrent.futures.ProcessPoolExecutor` of ``workers`` processes that
    exit when this process dies.

    The workers are spawned: a clean interpreter (forking a process whose OpenMP
    threads run can hang). A plain pool's worker outlives a parent that is killed
    (SIGKILL, the out-of-memory killer) and waits for work forever, since it holds
    the write end of its own task queue; each worker here watches its parent and
    ends with it (``os._exit``: no clean-up runs in the worker). ``initializer``
    (a module-level function) runs in each worker as it starts.

    Raises
    ------
    TypeError
        ``initializer`` is given and not callable.

    Examples
    --------
    >>> import os
    >>> with spawn_pool(1) as pool:
    ...     pool.submit(os.getpid).result() != os.getpid()
    True
    """
    if initializer is not None and not callable(initializer):
        raise TypeError(f"initializer must be callable, got {initializer!r}")
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(initializer,))


def _exit_with_parent(initializer=None):
    """In a pool worker: a thread that ends the process once its parent is gone, then
    ``initializer()``."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_after, args=(parent,), daemon=True,
                         name="bmdkit-exit-with-parent").start()
    if initializer is not None:
        initializer()


def _exit_after(parent):
    parent.join()
    os._exit(1)


def _decode_in_process(paths, bounds, image_size, contrast):
    for start, stop in bounds:
        images, failures = decode_images(paths[start:stop], image_size, contrast)
        yield images, {start + i: why for i, why in failures.items()}


def _decode_in_workers(paths, bounds, image_size, contrast, workers, pool=None):
    """Per chunk (images, failures), decoded by ``workers`` processes ahead of the consumer.

    Each chunk is split into tasks of at most :data:`TASK_ROWS` files; tasks
    of the next two chunks are kept in flight while the current one is used.
    ``pool``: a running executor of ``workers`` processes to use (kept open),
    instead of starting one.
    """
    chunk = bounds[0][1] - bounds[0][0]
    task = max(1, min(TASK_ROWS, -(-chunk // workers)))
    tasks = iter([(s, min(s + task, stop)) for start, stop in bounds
                  for s in range(start, stop, task)])
    in_flight = 2 * -(-chunk // task) + workers
    with contextlib.nullcontext(pool) if pool is not None else spawn_pool(workers) as pool:
        queue = deque()

        def submit():
            item = next(tasks, None)
            if item is not None:
                queue.append((item[0], pool.submit(decode_images, paths[item[0]:item[1]],
                                                   image_size, contrast)))

        for _ in range(in_flight):
            submit()
        for start, stop in bounds:
            images, failures, done = [], {}, start
            while done < stop:
                first, future = queue.popleft()
                part, failed = future.result()
                submit()
                images.append(part)
                failures.update({first + i: why for i, why in failed.items()})
                done = first + len(part) + len(failed)
            yield np.concatenate(images), failures


def stream_arrays(model, X, *, chunk_size=None, workers=0, pool=None):
    """Yield ``(positions, arrays, failures)`` per chunk: the network's inputs, in order.

    Parameters
    ----------
    model : fitted BMDRegressor
    X : pandas.DataFrame
    chunk_size : int or None
        Rows per chunk (see :func:`chunk_rows`).
    workers : int, default=0
        Processes decoding images ahead of the consumer; 0 decodes in this
        process when the chunk is asked for (no overlap; for Dask tasks and
        small runs).
    pool : concurrent.futures.ProcessPoolExecutor or None
        Decode with this running pool of ``workers`` processes (best made by
        :func:`spawn_pool`; left running, for a caller that streams many small
        batches, e.g. ``bmdkit serve``) instead of starting one per call.

    Yields
    ------
    positions : ndarray of int
        Positions in ``X`` of the rows in ``arrays`` (the readable ones).
    arrays : dict of ndarray
        ``numeric``, ``categorical`` and (when the model reads images) ``image``.
    failures : dict
        Position -> why that row's image could not be read.
    """
    if not isinstance(workers, int) or workers < 0:
        raise ParameterError(f"workers must be a non-negative integer, got {workers!r}")
    bounds = _bounds(len(X), chunk_rows(model, chunk_size))
    if not bounds:
        return
    X, metadata = _metadata(model, X)
    pre = model.preprocessor_
    if pre.image_col is None:
        for start, stop in bounds:
            yield np.arange(start, stop), _rows(metadata, slice(start, stop)), {}
        return
    missing = missing_images(model, X)
    # rows without an image are not decoded (an empty path reads as one that failed)
    paths = ["" if gone else os.fspath(p) if isinstance(p, os.PathLike) else p
             for p, gone in zip(X[pre.image_col], missing)]
    if workers:
        decoded = _decode_in_workers(paths, bounds, pre.image_size, pre.contrast, workers, pool)
    else:
        decoded = _decode_in_process(paths, bounds, pre.image_size, pre.contrast)
    for (start, stop), (images, failures) in zip(bounds, decoded):
        failures = {i: why for i, why in failures.items() if not missing[i]}
        positions = np.array([i for i in range(start, stop) if i not in failures], dtype=np.int64)
        arrays = _rows(metadata, positions)
        arrays.update(_with_missing(images[:, None], missing[positions], pre.image_size))
        yield positions, arrays, failures


def stream_predict(model, X, *, chunk_size=None, workers=0, pool=None):
    """Yield a :class:`StreamChunk` of predictions per chunk of ``X``'s rows, in order.

    Memory is bounded by the chunk size and the number of workers, not by
    ``len(X)``; rows whose image cannot be read are reported in
    ``StreamChunk.failures`` and skipped. The predictions equal
    ``model.predict`` on the same rows. Parameters as :func:`stream_arrays`
    (``pool``: a running pool of ``workers`` decoding processes).

    ``model`` may also hold several fitted models in ``estimators_`` (a
    :class:`~bmdkit.uncertainty.ConformalBMDRegressor`): each image is then
    decoded once for all of them and ``StreamChunk.predictions`` is their
    stack, shape ``(n_models, n_rows)`` (``(n_models, n_rows, n_sites)`` for
    several sites).

    Examples
    --------
    >>> from bmdkit import BMDRegressor
    >>> from bmdkit.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(n=40, image_size=32, random_state=0)  # synthetic phantoms
    >>> model = BMDRegressor(fusion="concat", image_size=32, max_epochs=1, random_state=0)
    >>> model = model.fit(X, y)
    >>> chunks = list(stream_predict(model, X, chunk_size=16))
    >>> [len(c.positions) for c in chunks]
    [16, 16, 8]
    >>> import numpy as np
    >>> bool((np.concatenate([c.predictions for c in chunks]) == model.predict(X)).all())
    True
    """
    members = getattr(model, "estimators_", None)
    if members is None:
        for positions, arrays, failures in stream_arrays(model, X, chunk_size=chunk_size,
                                                         workers=workers, pool=pool):
            predictions = model._predict_arrays(arrays) if len(positions) else np.empty(0)
            yield StreamChunk(positions, predictions, failures, _image_missing(arrays, positions))
        return
    if not len(X):
        return
    first = members[0]
    settings = {(m.preprocessor_.image_col, m.preprocessor_.image_size, m.preprocessor_.contrast,
                 m.batch_size) for m in members}
    if len(settings) != 1:
        raise ParameterError("the models of estimators_ read images differently (image column, "
                         f"size, contrast, batch size): {sorted(settings, key=str)}")
    # the first model's arrays come with the images; the others' metadata are encoded here
    metadata = [None] + [_metadata(m, X)[1] for m in members[1:]]
    for positions, arrays, failures in stream_arrays(first, X, chunk_size=chunk_size,
                                                     workers=workers, pool=pool):
        predictions = np.empty((len(members), len(positions), *np.shape(first.y_mean_)))
        if len(positions):
            images = {k: v for k, v in arrays.items() if k in ("image", "image_missing")}
            for k, member in enumerate(members):
                member_arrays = arrays if k == 0 else {**_rows(metadata[k], positions), **images}
                predictions[k] = member._predict_arrays(member_arrays)
        yield StreamChunk(positions, predictions, failures, _image_missing(arrays, positions))


def _image_missing(arrays, positions):
    """Per row of a chunk's arrays: predicted without its image."""
    return arrays.get("image_missing", np.zeros(len(positions), dtype=bool))
