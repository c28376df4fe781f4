"""The bench's two REFERENCE training loops: yardsticks for the fit, not how bmdkit trains.

:meth:`BMDRegressor.fit` trains through skorch over the image cache
(:mod:`bmdkit.batching`); the bench times it against two plain torch loops
over the same network, optimiser and loss, built from the fitted model:

* :func:`floor_reference`: forward + backward + step on tensors already in
  memory (on the device), no skorch, no data loader: the network's arithmetic
  alone, the least time an epoch can take. ``overhead_ratio = fit / floor``.
* :func:`naive_reference`: the typical research loop, a ``Dataset`` that
  decodes, normalises and resizes every file in ``__getitem__`` every epoch
  (:class:`NaiveDecodingDataset`, with bmdkit's own decoder) under a
  ``DataLoader``. ``cache_speedup = naive / fit``.

Both exist only to be timed: nothing else in bmdkit trains through them.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bmdkit.benchmarks.measure import sync

__all__ = ["NaiveDecodingDataset", "floor_reference", "naive_reference"]


class NaiveDecodingDataset(torch.utils.data.Dataset):
    """The naive reference's dataset: every file decoded in ``__getitem__``, every epoch."""

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


def _fresh_training(model, device):
    """A new network, optimiser and loss configured exactly as ``model.net_``."""
    net = model.net_
    module = net.module(**net.get_params_for("module")).to(device).train()
    args, kwargs = net.get_params_for_optimizer("optimizer", module.named_parameters())
    optimizer = net.optimizer(*args, **kwargs)  # the fit's parameter groups and learning rates
    return module, optimizer, net.criterion_


def _reference_epoch(module, optimizer, criterion, batches, device):
    """Seconds for one pass of forward + backward + step over ``batches``."""
    sync(device)
    start = time.perf_counter()
    for x, y in batches:
        x = {k: v.to(device, non_blocking=True) for k, v in x.items()}
        optimizer.zero_grad(set_to_none=True)
        criterion(module(**x), y.to(device, non_blocking=True)).backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


def floor_reference(model, arrays, y_scaled, device):
    """A function running one epoch of the floor reference; it returns the epoch's seconds.

    A plain torch loop over in-memory (on-device) tensors with the same
    network, optimiser, loss, batch size and shuffling as ``model``'s fit.
    ``arrays`` are the preprocessed inputs (``model.preprocessor_.transform``),
    ``y_scaled`` the scaled targets the fit trains on.
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

    return lambda: _reference_epoch(module, optimizer, criterion, batches(), device)


def naive_reference(model, X, arrays, y_scaled, epochs, device):
    """Per-epoch seconds of the naive reference: every file decoded every epoch.

    A ``DataLoader`` (0 workers) over :class:`NaiveDecodingDataset` of
    ``X``'s image paths, with the network, optimiser and loss of ``model``'s fit.
    """
    module, optimizer, criterion = _fresh_training(model, device)
    dataset = NaiveDecodingDataset(X[model.image_col].tolist(), arrays["numeric"],
                                   arrays["categorical"], y_scaled, model.image_size,
                                   model.contrast)
    loader = torch.utils.data.DataLoader(dataset, batch_size=model.batch_size, shuffle=True)
    return [_reference_epoch(module, optimizer, criterion, loader, device) for _ in range(epochs)]
