"""Random numbers of one fit, drawn from generators of its own.

A seeded fit must give the same network whatever else runs in the process:
fits in threads (joblib's threading backend, Dask threads) and the user's own
use of torch's global generator. :class:`FitRandomness` holds a fit's
generators, all seeded from one integer:

* ``cpu`` shuffles the batches (``BatchIterator(generator=...)``) and seeds
  the weights at module construction;
* ``modules`` draws the dropout masks and the augmentation of the training
  steps, on the fit's device.

Dropout and attention take no generator argument in torch: they draw from the
default generator of their device. :meth:`FitRandomness.drawing` runs a block,
and :meth:`FitRandomness.routed` every forward of a module that draws (see
:data:`RANDOM_MODULES`), with the fit's generator state swapped into the
default generator under a process-wide lock and swapped back afterwards. The
default generator therefore ends as it started, and fits in threads draw from
their own generators in any interleaving. Only these short draws are
serialised between threads, not the convolutions and matrix products around
them. A custom module that draws random numbers itself should be one of
:data:`RANDOM_MODULES` (or draw from a generator passed to it).
"""

from __future__ import annotations

import contextlib
import threading

import torch
from timm.layers import DropPath
from torch import nn

from bmdkit.nn.augment import ModalityDropout, RadiographAugment

__all__ = ["RANDOM_MODULES", "FitRandomness"]

#: Module types whose forward draws from the default generator while training.
RANDOM_MODULES = (nn.modules.dropout._DropoutNd, nn.MultiheadAttention, DropPath,
                  RadiographAugment, ModalityDropout)

_LOCK = threading.RLock()


def _default_generator(device):
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    return torch.default_generator


class FitRandomness:
    """The generators of one fit, seeded from ``seed``.

    Parameters
    ----------
    seed : int
    device : str or torch.device, default="cpu"
        Where the training steps run (CUDA draws from a CUDA generator; other
        devices than CPU and CUDA draw dropout from their own default).

    Attributes
    ----------
    seed : int
        For what seeds itself from an integer (skorch's ``ValidSplit``).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_rng_state()
    >>> with FitRandomness(0).drawing():
    ...     a = torch.rand(2)
    >>> with FitRandomness(0).drawing():
    ...     b = torch.rand(2)
    >>> bool((a == b).all()), bool((torch.get_rng_state() == before).all())
    (True, True)
    """

    def __init__(self, seed, device="cpu"):
        device = torch.device(device)
        if device.type != "cuda":
            device = torch.device("cpu")
        self.seed = int(seed)
        self.cpu = torch.Generator().manual_seed(int(seed))
        self.modules = torch.Generator(device=device).manual_seed(int(seed) + 1)
        self._open = []

    @contextlib.contextmanager
    def drawing(self, generator=None):
        """Run the block with ``generator`` (default ``cpu``) as its device's default generator."""
        generator = self.cpu if generator is None else generator
        default = _default_generator(generator.device)
        with _LOCK:
            saved = default.get_state()
            default.set_state(generator.get_state())
            try:
                yield
            finally:
                generator.set_state(default.get_state())
                default.set_state(saved)

    def _enter(self, module, args):
        context = self.drawing(self.modules)
        context.__enter__()
        self._open.append(context)

    def _exit(self, module, args, output):
        self._open.pop().__exit__(None, None, None)

    @contextlib.contextmanager
    def routed(self, module):
        """Within the block, every forward of a :data:`RANDOM_MODULES` part of ``module``
        draws from ``modules``."""
        hooks = []
        for part in module.modules():
            if isinstance(part, RANDOM_MODULES):
                hooks.append(part.register_forward_pre_hook(self._enter))
                hooks.append(part.register_forward_hook(self._exit, always_call=True))
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
