"""Scale-out helpers: torch threads on Dask workers, multi-GPU training through Accelerate.

Cross-validation folds (and :func:`bmdkit.tuning.tune`'s folds) spread over a
Dask cluster through joblib's Dask backend; :class:`TorchThreads` keeps each
worker's torch to its share of the cores. :class:`AcceleratedBMDRegressor`
trains through Hugging Face Accelerate (skorch's ``AccelerateMixin``): several
GPUs, mixed precision, gradient accumulation. See docs/scaleout.md.

Needs the ``distributed`` extra: ``pip install "bmdkit[distributed]"``.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin
from skorch import NeuralNetRegressor
from skorch.hf import AccelerateMixin
from torch.utils.data import DataLoader

from bmdkit.estimators import BMDRegressor, derived_signature

__all__ = ["AcceleratedBMDRegressor", "AcceleratedNeuralNetRegressor", "TorchThreads"]


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
    The fitted ``net_`` is an :class:`AcceleratedNeuralNetRegressor`;
    :func:`bmdkit.persistence.save` stores only the built-in estimator
    classes, so refit a ``BMDRegressor`` with the same parameters to save one.

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

    def __init__(self, fusion="xattn", *, mixed_precision="no", gradient_accumulation_steps=1,
                 **params):
        super().__init__(fusion, **params)
        self.mixed_precision = mixed_precision
        self.gradient_accumulation_steps = gradient_accumulation_steps

    def _make_net(self, **params):
        from accelerate import Accelerator

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


AcceleratedBMDRegressor.__init__.__signature__ = derived_signature(
    add={"mixed_precision": "no", "gradient_accumulation_steps": 1})
