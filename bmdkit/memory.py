"""In-process memory caches that share one byte budget: images (:mod:`bmdkit.io.cache`) and
frozen-backbone features (:mod:`bmdkit.nn.frozen`).

A neutral module that both use, so that neither the file layer nor the torch
layer imports the other. It imports nothing of bmdkit.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict

__all__ = ["MemoryCache", "env_megabytes", "memory_limit"]


class MemoryCache:
    """Thread-safe least-recently-used cache of arrays, bounded in bytes, with counters.

    All caches of a process (images, frozen-backbone features) share one
    budget: ``limit`` bounds their sum, not each.

    Parameters
    ----------
    counters : sequence of str, default=()
        Names of the counters :meth:`count` adds to and :meth:`snapshot` reports.

    Examples
    --------
    >>> import numpy as np
    >>> cache = MemoryCache(counters=("hits", "computed"))
    >>> cache.put("a", np.zeros(4, np.float32), limit=1024)
    >>> cache.count(computed=1)
    >>> cache.snapshot()
    {'hits': 0, 'computed': 1, 'memory_bytes': 16}
    >>> cache.clear()
    >>> cache.snapshot()
    {'hits': 0, 'computed': 0, 'memory_bytes': 0}
    """

    #: Every cache of the process: they share one lock and one byte budget.
    _all = []
    lock = threading.RLock()

    def __init__(self, counters=()):
        self._items = OrderedDict()
        self._counters = dict.fromkeys(counters, 0)
        self.nbytes = 0
        with self.lock:
            MemoryCache._all.append(self)

    def get(self, key):
        with self.lock:
            image = self._items.get(key)
            if image is not None:
                self._items.move_to_end(key)
            return image

    def put(self, key, image, limit):
        """Keep ``image`` under ``key``; least recently used entries go first when all the
        process's caches together hold more than ``limit`` bytes (this cache's own first)."""
        with self.lock:
            if key in self._items or image.nbytes > limit:
                return
            self._items[key] = image
            self.nbytes += image.nbytes
            while sum(cache.nbytes for cache in MemoryCache._all) > limit:
                victim = self if len(self._items) > 1 else max(
                    (c for c in MemoryCache._all if c is not self), key=lambda c: c.nbytes)
                victim.nbytes -= victim._items.popitem(last=False)[1].nbytes

    def count(self, **increments):
        """Add to the named counters (a name not given at construction is a KeyError)."""
        with self.lock:
            for name in increments:
                if name not in self._counters:
                    raise KeyError(f"unknown counter {name!r}; this cache counts "
                                   f"{tuple(self._counters)}")
            for name, value in increments.items():
                self._counters[name] += value

    def snapshot(self):
        """The counters and ``memory_bytes`` (bytes held), read together."""
        with self.lock:
            return {**self._counters, "memory_bytes": self.nbytes}

    def clear(self):
        """Drop every entry and reset the counters, atomically."""
        with self.lock:
            self._items.clear()
            self.nbytes = 0
            self._counters.update(dict.fromkeys(self._counters, 0))


def env_megabytes(variable, default):
    """Bytes from the environment variable ``variable`` in megabytes (``default`` if unset)."""
    value = os.environ.get(variable, default)
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = float("nan")
    if not (math.isfinite(megabytes) and megabytes >= 0):
        raise ValueError(f"{variable} must be a number of megabytes (e.g. 1024 or "
                         f"0.5), got {value!r}")
    return int(megabytes * 2**20)


def memory_limit():
    """Bytes the in-process caches may hold together: ``BMDKIT_CACHE_MEMORY_MB`` (default 1024).

    Raises
    ------
    ValueError
        When the variable is not a finite, non-negative number of megabytes.
    """
    return env_megabytes("BMDKIT_CACHE_MEMORY_MB", "1024")
