"""Mini-batches sliced from contiguous arrays: the estimators' data path to the network.

skorch's default path builds every batch item by item: one ``__getitem__``
per row, then ``default_collate`` stacks the rows. :class:`ArrayDataset`
keeps the preprocessed arrays whole (in memory, or a :class:`numpy.memmap`
for cohorts larger than RAM) and :class:`BatchIterator` cuts each batch with
one ``numpy.take`` per array, so the cost of a batch is one memory copy.
Both plug into skorch (``dataset=ArrayDataset``, ``iterator_train=`` /
``iterator_valid=BatchIterator``) and keep ``DataLoader`` semantics,
including the shuffled order: the same draws from torch's global generator
(or from a ``generator`` given to both) give the same batches, so a seeded
fit is bit-for-bit the one skorch's default ``DataLoader`` gives. The
estimators pass a generator of their own (:mod:`bmdkit.rng`) and drop a last
training batch of a single sample (BatchNorm cannot train on one).

:func:`torch_threads` sets torch's intra-op threads for the duration of a
fit or predict (the estimators' ``n_threads``); :func:`check_device` checks the
estimators' ``device``; :data:`FAST_DATA_PATH` and :func:`fused_adamw` are the
estimators' skorch settings of this data path and of the optimiser step.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, default_collate

from bmdkit.errors import InputError, ParameterError

__all__ = ["FAST_DATA_PATH", "FUSED_ADAMW_DEVICES", "ArrayDataset", "BatchIterator", "check_device",
           "fused_adamw", "torch_threads"]


class ArrayDataset(Dataset):
    """Equal-length arrays (a dict of them, or one) and optional targets, batched by index.

    Parameters
    ----------
    X : dict of array-like, or array-like
        Inputs, first axis = rows. ndarrays (and memmaps) are kept as they
        are, without a copy.
    y : array-like or None, default=None
        Targets; ``None`` at prediction time.

    Examples
    --------
    >>> import numpy as np
    >>> data = ArrayDataset({"a": np.arange(6.0).reshape(3, 2)}, np.arange(3.0))
    >>> xb, yb = data.batch(np.array([2, 0]))
    >>> xb["a"].tolist(), yb.tolist()
    ([[4.0, 5.0], [0.0, 1.0]], [2.0, 0.0])
    """

    def __init__(self, X, y=None):
        self.X = {k: np.asarray(v) for k, v in X.items()} if isinstance(X, dict) else np.asarray(X)
        self.y = None if y is None else np.asarray(y)
        arrays = list(self.X.values()) if isinstance(X, dict) else [self.X]
        lengths = {len(a) for a in arrays + ([] if self.y is None else [self.y])}
        if len(lengths) != 1:
            raise InputError(f"X and y hold different numbers of rows: {sorted(lengths)}")
        self._length = lengths.pop()

    def __len__(self):
        return self._length

    def __getitem__(self, i):
        """One row ``(x, y)`` in skorch's item format (``y`` is 0 when absent)."""
        x = {k: v[i] for k, v in self.X.items()} if isinstance(self.X, dict) else self.X[i]
        return x, (0 if self.y is None else self.y[i])

    def batch(self, indices):
        """Rows ``indices`` as tensors ``(x, y)``: one gather per array (``y`` None when absent)."""

        def take(array):
            return torch.from_numpy(np.take(array, indices, axis=0))

        x = {k: take(v) for k, v in self.X.items()} if isinstance(self.X, dict) else take(self.X)
        return x, (None if self.y is None else take(self.y))


def _resolve(dataset):
    """``(base dataset, row indices)`` through any chain of ``Subset`` (skorch's ValidSplit)."""
    indices = np.arange(len(dataset))
    while isinstance(dataset, Subset):
        indices = np.asarray(dataset.indices)[indices]
        dataset = dataset.dataset
    return dataset, indices


class BatchIterator:
    """A ``DataLoader`` stand-in that yields batches sliced from an :class:`ArrayDataset`.

    Same order as ``DataLoader(dataset, batch_size, shuffle)`` with the
    default sampler: each pass draws from torch's global generator exactly as
    ``DataLoader`` does (a base seed, then the permutation's seed when
    shuffling), so seeding torch reproduces runs and matches skorch's
    default data path bit for bit. With a ``generator`` the draws come from
    it instead and the global generator is left alone. Other datasets are
    collated item by item.

    Parameters
    ----------
    dataset : ArrayDataset, a torch ``Subset`` of one, or any map-style Dataset
    batch_size : int, default=1
    shuffle : bool, default=False
        A new random order every pass (skorch's ``iterator_train__shuffle``).
    drop_last : bool, default=False
        Drop the last incomplete batch.
    drop_single : bool, default=False
        Drop the last batch only when it holds a single row: BatchNorm
        cannot train on a batch of one at 1x1 feature maps (a shuffled pass
        drops a different row each epoch).
    generator : torch.Generator or None, default=None
        Source of the random draws (CPU); ``None``: torch's global generator.

    Examples
    --------
    >>> import numpy as np, torch
    >>> data = ArrayDataset({"a": np.arange(5.0)}, np.arange(5.0))
    >>> [yb.tolist() for _, yb in BatchIterator(data, batch_size=2)]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    >>> _ = torch.manual_seed(0)
    >>> fast = [yb.tolist() for _, yb in BatchIterator(data, batch_size=2, shuffle=True)]
    >>> _ = torch.manual_seed(0)
    >>> slow = [b[1].tolist() for b in torch.utils.data.DataLoader(data, 2, shuffle=True)]
    >>> fast == slow
    True
    >>> [len(yb) for _, yb in BatchIterator(data, batch_size=4, drop_single=True)]
    [4]
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, drop_single=False,
                 generator=None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.drop_single = drop_single
        self.generator = generator

    def __len__(self):
        n, size = len(self.dataset), self.batch_size
        if self.drop_last or (self.drop_single and n % size == 1 and n > 1):
            return n // size
        return -(-n // size)

    def _order(self):
        """Positions in pass order, drawing from the generator as ``DataLoader`` does."""
        n = len(self.dataset)
        # DataLoader's base seed for workers
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        if not self.shuffle:
            return np.arange(n)
        if self.generator is None:  # RandomSampler's own generator, seeded from the global one
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator()
            generator.manual_seed(seed)
            return torch.randperm(n, generator=generator).numpy()
        order = torch.randperm(n, generator=self.generator).numpy()
        # RandomSampler draws one more permutation from a given generator when its pass ends
        torch.randperm(n, generator=self.generator)
        return order

    def __iter__(self):
        base, rows = _resolve(self.dataset)
        rows = rows[self._order()]
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, len(rows)), self.batch_size):
            batch = rows[start:start + self.batch_size]
            if isinstance(base, ArrayDataset):
                yield base.batch(batch)
            else:
                yield default_collate([base[i] for i in batch])


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run the block with ``torch.set_num_threads(n_threads)``, restoring the old value.

    ``None`` leaves torch's setting alone.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if n_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_device(device, name="device"):
    """``device`` as a :class:`torch.device`, or a ParameterError naming ``name``.

    A string torch cannot read, or a CUDA device where torch sees none (or not
    that many), is named in the message instead of torch's own error.

    Examples
    --------
    >>> check_device("cpu")
    device(type='cpu')
    >>> check_device("nonsense")
    Traceback (most recent call last):
    ...
    bmdkit.errors.ParameterError: device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got 'nonsense'
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"{name} must be a torch device such as 'cpu', 'cuda' or 'cuda:1', "
                             f"got {device!r}") from None
    if parsed.type == "cuda" and (not torch.cuda.is_available() or (
            parsed.index is not None and parsed.index >= torch.cuda.device_count())):
        raise ParameterError(f"{name}={device!r}, but torch sees "
                             f"{torch.cuda.device_count() if torch.cuda.is_available() else 'no'} "
                             "CUDA device(s)")
    return parsed


#: skorch settings that cut batches out of contiguous arrays (bmdkit.batching).
FAST_DATA_PATH = dict(dataset=ArrayDataset, iterator_train=BatchIterator,
                      iterator_valid=BatchIterator)
#: Device types whose AdamW step runs as torch's one fused kernel over every parameter
#: (measured in docs/performance.md). Devices left out (mps, ...) keep torch's default.
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def fused_adamw(device):
    """Whether AdamW steps with torch's fused kernel on ``device`` (None: not known here).

    Examples
    --------
    >>> fused_adamw("cpu"), fused_adamw("cuda:1"), fused_adamw("mps"), fused_adamw(None)
    (True, True, False, False)
    """
    return device is not None and torch.device(device).type in FUSED_ADAMW_DEVICES
