"""Measuring helpers of the bench: peak memory, device sync, the machine record, modes."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import platform
import resource
import sys
import threading
import warnings
from contextlib import contextmanager

import torch

from bmdkit.checks import ImputationWarning
from bmdkit.errors import ParameterError

__all__ = ["MODES", "PeakMemory", "environment", "machine_info", "mode_settings", "sync"]

#: The bench's modes; every settings table holds one value per mode, in this order.
MODES = ("smoke", "quick", "full")


def sync(device):
    """Wait for ``device``'s queued work (CUDA), so that a timer measures it."""
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


class PeakMemory:
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


@contextmanager
def imputation_expected():
    """Silence :class:`~bmdkit.checks.ImputationWarning`: the bench's synthetic cohorts
    miss metadata values on purpose, which is not news once per fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImputationWarning)
        yield


@contextmanager
def environment(**values):
    """Environment variables set to ``values`` for the duration of a ``with`` block."""
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


def machine_info(device):
    """What the figures were measured on: CPU, cores, torch and its threads, load, GPU."""
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


def mode_settings(mode, device, log, table):
    """(settings of ``mode`` from ``table``, a log callable) after checking mode and device.

    ``table`` maps each setting to its (smoke, quick, full) values.
    """
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
    _check_device(device)
    settings = {key: value[MODES.index(mode)] for key, value in table.items()}
    return settings, log or (lambda message: None)
