"""Scale-out helpers: torch threads on Dask workers, prediction over a Dask cluster,
multi-GPU training through Accelerate.

Cross-validation folds (and :func:`bmdkit.tuning.tune`'s folds) spread over a
Dask cluster through joblib's Dask backend; :class:`TorchThreads` keeps each
worker's torch to its share of the cores; :func:`dask_predict` streams an
archive's rows through the cluster's workers. :class:`AcceleratedBMDRegressor`
trains through Hugging Face Accelerate (skorch's ``AccelerateMixin``): several
GPUs, mixed precision, gradient accumulation. See docs/scaleout.md.

Needs the ``distributed`` extra: ``pip install "bmdkit[distributed]"``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin
from skorch import NeuralNetRegressor
from skorch.hf import AccelerateMixin
from torch.utils.data import DataLoader

from bmdkit.errors import ParameterError
from bmdkit.estimators import BMDRegressor, derived_signature
from bmdkit.inference import StreamChunk, chunk_rows, stream_predict
from bmdkit.params import Interval, Options

__all__ = ["AcceleratedBMDRegressor", "AcceleratedNeuralNetRegressor", "TorchThreads",
           "dask_predict"]


class TorchThreads(WorkerPlugin):
    """Dask worker plugin capping torch's intra-op threads in each worker process.

    Without it every worker's torch starts one thread per core of the machine
    (unless ``OMP_NUM_THREADS`` says otherwise), so ``k`` workers on one
    machine run ``k`` × cores threads and slow each other down. Give each
    worker ``cores / workers_per_machine`` threads.

    Parameters
    ----------
    n_threads : int, default=1

    Examples
    --------
    >>> from distributed import Client, LocalCluster
    >>> import torch
    >>> with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
    ...                   dashboard_address=None) as cluster, Client(cluster) as client:
    ...     _ = client.register_plugin(TorchThreads(1))
    ...     sorted(client.run(torch.get_num_threads).values())
    [1]
    """

    name = "bmdkit-torch-threads"

    def __init__(self, n_threads=1):
        self.n_threads = n_threads

    def setup(self, worker):
        import torch

        torch.set_num_threads(self.n_threads)


def _predict_partition(model, X, chunk_size):
    """One Dask task: :func:`~bmdkit.inference.stream_predict` over a partition, in the worker."""
    chunks = list(stream_predict(model, X, chunk_size=chunk_size))
    return StreamChunk(np.concatenate([c.positions for c in chunks]),
                       np.concatenate([c.predictions for c in chunks]),
                       {k: v for c in chunks for k, v in c.failures.items()})


def dask_predict(client, model, X, *, partitions=None, chunk_size=None):
    """Predict ``X``'s rows on a Dask cluster: one task per partition of the rows.

    The fitted model is scattered to every worker once; each task runs
    :func:`~bmdkit.inference.stream_predict` on its partition (images
    decoded in the task, so workers must see the image paths: a shared file
    system). Partitions are whole numbers of the model's batches, so the
    predictions equal ``model.predict``'s. Results come back in ``X``'s order,
    a partition at a time, while later partitions are still computing: write
    each to one output as it arrives (:func:`bmdkit.archive.write_results`).

    Parameters
    ----------
    client : distributed.Client
    model : fitted BMDRegressor
    X : pandas.DataFrame
        Image paths and metadata, one row per radiograph.
    partitions : int or None
        Number of tasks (default: 4 per worker thread, so slow and fast
        workers even out).
    chunk_size : int or None
        Rows per network call inside a task (see :func:`bmdkit.inference.chunk_rows`).

    Yields
    ------
    bmdkit.inference.StreamChunk
        Per partition: positions in ``X`` predicted, their predictions, and
        ``{position: reason}`` for rows whose image could not be read.

    Examples
    --------
    >>> from distributed import Client, LocalCluster
    >>> from bmdkit import BMDRegressor
    >>> from bmdkit.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(n=32, image_size=32, random_state=0)  # synthetic phantoms
    >>> model = BMDRegressor(fusion="concat", image_size=32, max_epochs=1, batch_size=8,
    ...                      random_state=0).fit(X, y)
    >>> with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
    ...                   dashboard_address=None) as cluster, Client(cluster) as client:
    ...     parts = list(dask_predict(client, model, X, partitions=3))
    >>> [len(p.positions) for p in parts]
    [16, 16]
    """
    n = len(X)
    if partitions is None:
        partitions = 4 * max(1, sum(client.nthreads().values()))
    if not isinstance(partitions, int) or partitions < 1:
        raise ParameterError(f"partitions must be a positive integer, got {partitions!r}")
    size = chunk_rows(model, -(-n // partitions) if n else None)
    scattered = client.scatter(model, broadcast=True)
    tasks = [(start, client.submit(_predict_partition, scattered, X.iloc[start:start + size],
                                   chunk_size, pure=False))
             for start in range(0, n, size)]
    for start, future in tasks:
        part = future.result()
        future.release()
        yield StreamChunk(part.positions + start, part.predictions,
                          {start + k: v for k, v in part.failures.items()})


class AcceleratedNeuralNetRegressor(AccelerateMixin, NeuralNetRegressor):
    """skorch's ``NeuralNetRegressor`` trained through an ``accelerate.Accelerator``."""


class AcceleratedBMDRegressor(BMDRegressor):
    """:class:`~bmdkit.BMDRegressor` trained through Hugging Face Accelerate.

    Run the script that fits it with ``accelerate launch`` to train on
    several GPUs (one process per GPU, each training on its shard of the
    batches; ``batch_size`` is per process); in a
    plain ``python`` run it trains on one device like ``BMDRegressor``.

    Parameters
    ----------
    fusion, **params
        As :class:`~bmdkit.BMDRegressor`. ``device="cpu"`` (the default)
        keeps Accelerate on the CPU; ``device=None`` lets Accelerate place
        the model (the launched process's GPU).
    mixed_precision : {"no", "fp16", "bf16"}, default="no"
        Accelerate's setting, which holds for the whole process: one process
        cannot fit models with different ``mixed_precision`` (no grid search
        over it).
    gradient_accumulation_steps : int, default=1

    Notes
    -----
    The fitted ``net_`` is an :class:`AcceleratedNeuralNetRegressor`. It
    saves like any bmdkit estimator (``model.save``); to load it, import
    :mod:`bmdkit.scaleout` (which registers the class) before :func:`bmdkit.load`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"age": rng.uniform(50, 90, 60), "sex": rng.choice(["F", "M"], 60)})
    >>> y = 1.2 - 0.006 * X["age"] + rng.normal(0, 0.05, 60)
    >>> model = AcceleratedBMDRegressor("metadata", max_epochs=2, random_state=0).fit(X, y)
    >>> type(model.net_).__name__, model.predict(X).shape
    ('AcceleratedNeuralNetRegressor', (60,))
    """

    _parameter_constraints = {
        **BMDRegressor._parameter_constraints,
        "device": [None, *BMDRegressor._parameter_constraints["device"]],  # None: Accelerate's
        "mixed_precision": [Options({"no", "fp16", "bf16"})],
        "gradient_accumulation_steps": [Interval(Integral, 1, None)],
    }

    def __init__(self, fusion="xattn", *, mixed_precision="no", gradient_accumulation_steps=1,
                 **params):
        super().__init__(fusion, **params)
        self.mixed_precision = mixed_precision
        self.gradient_accumulation_steps = gradient_accumulation_steps

    def _make_net(self, **params):
        from accelerate import Accelerator

        _fresh_accelerator_state(self.mixed_precision, cpu=self.device == "cpu")
        accelerator = Accelerator(
            mixed_precision=self.mixed_precision, cpu=self.device == "cpu",
            gradient_accumulation_steps=self.gradient_accumulation_steps,
        )
        # the accelerator's print (main process only) when verbose; plain print obeys verbose=0
        sink = "auto" if self.verbose else print
        # Accelerate places batches on the device and shards them across processes only for
        # torch DataLoaders (prepare() passes any other iterator through untouched); a
        # DataLoader has no drop_single (BatchIterator's) and keeps its last batch
        params.pop("iterator_train__drop_single", None)
        return AcceleratedNeuralNetRegressor(
            accelerator=accelerator, callbacks__print_log__sink=sink,
            **{**params, "device": None, "iterator_train": DataLoader,
               "iterator_valid": DataLoader})


def _fresh_accelerator_state(mixed_precision, *, cpu):
    """Let a fit of one process use another mixed precision or device than the fit before.

    Accelerate keeps one state per process and refuses a second ``Accelerator``
    with another ``mixed_precision`` or ``cpu`` ("restart your runtime"); a
    single-process state of other settings is cleared here. A distributed
    launch (several processes) keeps its state: it runs one setting.
    """
    from accelerate.state import AcceleratorState, DistributedType

    if not AcceleratorState._shared_state:
        return
    state = AcceleratorState()
    if state.distributed_type != DistributedType.NO:
        return
    if state.mixed_precision != mixed_precision or (state.device.type == "cpu") != cpu:
        AcceleratorState._reset_state(reset_partial_state=True)


AcceleratedBMDRegressor.__init__.__signature__ = derived_signature(
    add={"mixed_precision": "no", "gradient_accumulation_steps": 1})
