"""Loading many radiographs as one preprocessed array, decoding each file once.

:func:`load_images` is the single way images reach the network. Every file is
decoded, contrast-normalised and resized once per (file, settings) and then
served from two caches:

* **memory**: an in-process least-recently-used cache shared by every fit in
  the process (the folds of a cross-validation, the candidates of a grid
  search, the trials of an Optuna study), bounded to ``BMDKIT_CACHE_MEMORY_MB``
  megabytes (default 1024), a budget it shares with the frozen-backbone
  feature cache (:mod:`bmdkit.nn.frozen`);
* **disk**: when ``cache_dir`` is given (or the ``BMDKIT_CACHE_DIR``
  environment variable is set), one small file per entry, shared by every
  process on the machine, e.g. the workers of ``cross_validate(n_jobs=...)``
  or of a parallel Optuna study.

An entry is keyed by the file's resolved path, size and modification time
(or, with ``BMDKIT_CACHE_KEY=content``, by a hash of its bytes, which also
notices a file replaced by one of equal size and time), the image size, the
contrast normalisation and :data:`CACHE_VERSION`, so an edited file or a
changed setting never serves a stale image. The disk cache is bounded to
``BMDKIT_CACHE_DISK_MB`` megabytes (default 10240): after a call that wrote
entries, the oldest are deleted down to the bound. Files are decoded in one
thread pool per process (:func:`decode_threads`), shared by concurrent calls. Disk entries are
written to a temporary file and renamed into place (atomic: concurrent
writers never leave a half-written entry) and carry a header with their shape
and a CRC-32 of the pixels: a damaged entry is detected, decoded again and
rewritten. A result larger than the memory bound is returned as a
:class:`numpy.memmap` on a temporary file (in ``cache_dir`` when given and
writable), so cohorts larger than RAM work. Delete the folder to empty the
disk cache; when it cannot be written, one warning per call names it and the
number of entries not written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
import threading
import time
import warnings
import zlib
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from bmdkit.checks import InputError, image_path_problem, image_problem_key
from bmdkit.errors import ParameterError
from bmdkit.io.readers import read_image
from bmdkit.io.transforms import CONTRASTS, normalise_contrast, resize_with_padding
from bmdkit.memory import MemoryCache, env_megabytes, memory_limit
from bmdkit.params import Options, check_param

__all__ = ["CACHE_VERSION", "CacheInfo", "cache_clear", "cache_info", "load_images",
           "preprocess_image"]

#: Bump when reading or preprocessing changes, so old disk entries are not used.
CACHE_VERSION = 1
#: Progress bars appear (on a terminal) from this many files to decode.
PROGRESS_MIN_FILES = 100
_HEADER = struct.Struct("<8sIII")  # magic, rows, columns, CRC-32 of the pixel bytes
_MAGIC = b"BMDKIMG1"

CacheInfo = namedtuple(
    "CacheInfo", "memory_hits disk_hits decoded damaged seconds memory_bytes")
CacheInfo.__doc__ = """Counters of :func:`load_images` since the last :func:`cache_clear`.

memory_hits, disk_hits, decoded : images served from memory, from disk, decoded from file
damaged : disk entries found damaged (and rebuilt)
seconds : wall time spent in :func:`load_images`
memory_bytes : bytes now held by the in-process cache
"""


_MEMORY = MemoryCache(counters=("memory_hits", "disk_hits", "decoded", "damaged", "seconds"))


def cache_info():
    """Counters of the image cache, a :class:`CacheInfo`.

    Examples
    --------
    >>> from bmdkit.io import cache_clear, cache_info
    >>> cache_clear()
    >>> cache_info().decoded
    0
    """
    return CacheInfo(**_MEMORY.snapshot())


def cache_clear():
    """Empty the in-process cache and reset the counters (the disk cache stays)."""
    _MEMORY.clear()


def progress_disable(n, verbose=False):
    """tqdm's ``disable`` for ``n`` items: shown with ``verbose``, else on a terminal
    from :data:`PROGRESS_MIN_FILES` items.

    Examples
    --------
    >>> progress_disable(5), progress_disable(5, verbose=True), progress_disable(500)
    (True, False, None)
    """
    return False if verbose else (None if n >= PROGRESS_MIN_FILES else True)


def disk_limit():
    """Bytes the disk cache may hold: ``BMDKIT_CACHE_DISK_MB`` (default 10240)."""
    return env_megabytes("BMDKIT_CACHE_DISK_MB", "10240")


#: How :func:`load_images` recognises a file it has seen (``BMDKIT_CACHE_KEY``): "stat" by its
#: path, size and modification time; "content" by a SHA-1 of its bytes (a file replaced by one
#: of equal size and time is noticed, at the cost of reading every file on every call).
CACHE_KEYS = ("stat", "content")


def cache_key_kind():
    """``BMDKIT_CACHE_KEY`` (default ``"stat"``), checked against :data:`CACHE_KEYS`."""
    kind = os.environ.get("BMDKIT_CACHE_KEY", "stat")
    if kind not in CACHE_KEYS:
        raise ParameterError(f"BMDKIT_CACHE_KEY must be one of {CACHE_KEYS}, got {kind!r}")
    return kind


def _key(path, image_size, contrast, kind="stat"):
    path = os.path.realpath(path)
    if kind == "content":
        with open(path, "rb") as f:
            identity = hashlib.file_digest(f, "sha1").hexdigest()
    else:
        st = os.stat(path)
        identity = f"{path}\0{st.st_size}\0{st.st_mtime_ns}"
    identity = f"{identity}\0{image_size}\0{contrast}\0{CACHE_VERSION}"
    return hashlib.sha1(identity.encode("utf-8", "surrogateescape")).hexdigest()


class _DiskStore:
    """One file per entry under ``<root>/images-v<CACHE_VERSION>/<2 hex>/<key>.bin``."""

    def __init__(self, root):
        self.root = os.path.join(os.fspath(root), f"images-v{CACHE_VERSION}")
        self.error = None  # the first OSError of put: later entries are not tried
        self.not_written = 0
        self.written = 0

    def _path(self, key):
        return os.path.join(self.root, key[:2], key + ".bin")

    def get(self, key, image_size):
        """The stored image, or None when absent or damaged (counted)."""
        try:
            with open(self._path(key), "rb") as f:
                data = f.read()
        except OSError:
            return None
        size = _HEADER.size + 4 * image_size * image_size
        if len(data) == size:
            magic, rows, cols, crc = _HEADER.unpack_from(data)
            payload = memoryview(data)[_HEADER.size:]
            if (magic, rows, cols) == (_MAGIC, image_size, image_size) and zlib.crc32(payload) == crc:
                return np.frombuffer(payload, np.float32).reshape(rows, cols).copy()
        _MEMORY.count(damaged=1)
        return None

    def put(self, key, image):
        """Write an entry; after a first failure only count the entries not written."""
        if self.error is not None:
            self.not_written += 1
            return
        path = self._path(key)
        payload = np.ascontiguousarray(image, np.float32).tobytes()
        header = _HEADER.pack(_MAGIC, *image.shape, zlib.crc32(payload))
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(header + payload)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
            self.written += 1
        except OSError as exc:
            self.error = exc
            self.not_written += 1

    def prune(self, limit):
        """Delete the least recently written entries until the folder holds ``limit`` bytes."""
        entries = []
        for folder, _, names in os.walk(self.root):
            for name in names:
                if name.endswith(".bin"):
                    try:
                        st = os.stat(os.path.join(folder, name))
                    except OSError:  # deleted by another process meanwhile
                        continue
                    entries.append((st.st_mtime_ns, st.st_size, os.path.join(folder, name)))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= limit:
                break
            try:
                os.unlink(path)
            except OSError:
                continue
            total -= size

    def warn_if_failed(self, stacklevel=2):
        """One warning naming the folder, the first error and the entries not written."""
        if self.error is not None:
            n = self.not_written
            warnings.warn(f"image cache folder {self.root} cannot be written ({self.error}); "
                          f"{n} entr{'ies' if n != 1 else 'y'} not written", RuntimeWarning,
                          stacklevel=stacklevel + 1)


def preprocess_image(path, image_size, contrast="percentile"):
    """One file as the network sees it: read, contrast-normalised, resized with padding.

    What :func:`load_images` caches for each file, and what streaming
    prediction (:mod:`bmdkit.inference`) computes in its worker processes.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "hip.png")
    >>> Image.fromarray(np.tri(40, 60, dtype=np.uint8) * 200).save(path)
    >>> preprocess_image(path, 32).shape
    (32, 32)
    """
    return resize_with_padding(normalise_contrast(read_image(path), contrast), image_size)


def _allocate(n, image_size, cache_dir):
    shape = (n, image_size, image_size)
    if 4 * n * image_size * image_size <= memory_limit():
        return np.empty(shape, np.float32)
    # larger than the memory bound: back it by an anonymous file, deleted when unused
    try:
        backing = tempfile.TemporaryFile(dir=cache_dir)
    except OSError:  # cache_dir not writable: the system's temporary folder
        if cache_dir is None:
            raise
        backing = tempfile.TemporaryFile()
    return np.memmap(backing, np.float32, "w+", shape=shape)


def load_images(paths, *, image_size, contrast="percentile", cache_dir=None, index=None,
                n_jobs=None, verbose=False):
    """Read, contrast-normalise and resize images through the cache.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files (any format :func:`bmdkit.io.read_image` reads).
    image_size : int
        Side of the square output; aspect ratio is kept by zero padding.
    contrast : {"percentile", "minmax", "none"}, default="percentile"
        See :func:`bmdkit.io.normalise_contrast`.
    cache_dir : str, os.PathLike or None, default=None
        Folder of the disk cache shared by processes; ``None`` uses the
        ``BMDKIT_CACHE_DIR`` environment variable when set, else memory only.
    index : sequence or None, default=None
        Row labels used in error messages (default: positions).
    n_jobs : int or None, default=None
        Threads decoding files not in the cache. ``None``: the process's shared
        pool of :func:`decode_threads` threads (up to 8, one per core, at most
        ``OMP_NUM_THREADS``), so concurrent calls (fits in threads) share it.
    verbose : bool, default=False
        Always show a progress bar while decoding; otherwise one appears on a
        terminal from :data:`PROGRESS_MIN_FILES` files to decode.

    Returns
    -------
    ndarray of shape (n, image_size, image_size), float32
        A :class:`numpy.memmap` when larger than ``BMDKIT_CACHE_MEMORY_MB``.

    Raises
    ------
    bmdkit.checks.InputError
        One error naming every bad file after trying them all: no path, a
        missing, empty or unreadable file, a folder, a file that cannot be
        decoded, a blank image.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> from bmdkit.io import load_images
    >>> path = os.path.join(tempfile.mkdtemp(), "hip.png")
    >>> Image.fromarray(np.tri(40, 60, dtype=np.uint8) * 200).save(path)
    >>> load_images([path, path], image_size=32).shape
    (2, 32, 32)
    """
    start = time.perf_counter()
    check_param("contrast", contrast, Options(CONTRASTS))
    paths = [os.fspath(p) if isinstance(p, os.PathLike) else p for p in paths]
    index = list(range(len(paths)) if index is None else index)
    # every bad file is named in one error: those not there (or empty) are found here, those
    # that cannot be decoded below, and both kinds are raised together
    unusable = {i: why for i, path in enumerate(paths)
                if (why := image_path_problem(path)) is not None}
    cache_dir = cache_dir or os.environ.get("BMDKIT_CACHE_DIR") or None
    store = _DiskStore(cache_dir) if cache_dir else None
    if cache_dir:
        try:  # before _allocate, which may put its temporary file there
            os.makedirs(cache_dir, exist_ok=True)
        except OSError:
            pass  # reported once by the store's warning; _allocate falls back
    limit = memory_limit()
    out = _allocate(len(paths), image_size, cache_dir)

    todo = {}  # key -> positions in paths (a file listed twice is decoded once)
    kind = cache_key_kind()
    for i, path in enumerate(paths):
        if i in unusable:
            continue
        key = _key(path, image_size, contrast, kind)
        image = _MEMORY.get(key)
        if image is not None:
            _MEMORY.count(memory_hits=1)
        elif store is not None and (image := store.get(key, image_size)) is not None:
            _MEMORY.count(disk_hits=1)
            _MEMORY.put(key, image, limit)
        if image is None:
            todo.setdefault(key, []).append(i)
        else:
            out[i] = image

    failed = dict(unusable)  # position -> why
    for key, result in _decode(todo, paths, image_size, contrast, n_jobs, verbose):
        positions = todo[key]
        if isinstance(result, Exception):
            i = positions[0]
            why = str(result)
            if why.startswith(f"{paths[i]}: "):  # read_image names the file: named once here
                why = why[len(paths[i]) + 2:]
            failed[i] = f"{type(result).__name__}: {why}"
            continue
        _MEMORY.count(decoded=1)
        _MEMORY.put(key, result, limit)
        if store is not None:
            store.put(key, result)
        out[positions] = result
    _MEMORY.count(seconds=time.perf_counter() - start)
    if store is not None:
        if store.written:
            store.prune(disk_limit())
        store.warn_if_failed()
    if failed:
        n = len(failed)
        raise InputError(f"{n} image file{'s' if n != 1 else ''} cannot be read, cannot be "
                         "decoded or hold no image",
                         {image_problem_key(index[i], paths[i]): failed[i] for i in sorted(failed)})
    return out


def _decode(todo, paths, image_size, contrast, n_jobs, verbose):
    """Yield ``(key, image or exception)`` for every key of ``todo``, in threads."""

    def work(key):
        try:
            return key, preprocess_image(paths[todo[key][0]], image_size, contrast)
        except Exception as exc:  # reported with every other failure, not raised one by one
            return key, exc

    if not todo:
        return
    disable = progress_disable(len(todo), verbose)
    with contextlib.ExitStack() as stack:
        pool = _shared_pool() if n_jobs is None else stack.enter_context(
            ThreadPoolExecutor(max_workers=min(n_jobs, len(todo))))
        bar = stack.enter_context(tqdm(total=len(todo), desc="decoding images", unit="image",
                                       disable=disable))
        for item in pool.map(work, todo):
            bar.update()
            yield item


def decode_threads():
    """Threads of the process's shared decoding pool: up to 8, one per usable core, and no
    more than ``OMP_NUM_THREADS`` when set (joblib sets it in its workers to their share)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(8, cores, int(limit) if limit.isdigit() and int(limit) > 0 else cores))


_POOL = {}  # decode_threads() -> ThreadPoolExecutor, one per process (and size)
_POOL_LOCK = threading.Lock()
# a forked child has the dict but not the threads: it starts a pool of its own
os.register_at_fork(after_in_child=_POOL.clear)


def _shared_pool():
    """The process's decoding pool: every concurrent :func:`load_images` call shares it."""
    size = decode_threads()
    with _POOL_LOCK:
        if size not in _POOL:
            _POOL[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="bmdkit-decode")
        return _POOL[size]
