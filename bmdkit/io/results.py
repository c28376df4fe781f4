"""Append-only result tables that survive a crash: CSV files or Parquet folders.

``bmdkit predict`` writes its output chunk by chunk with :func:`append_rows`
and, on ``--resume``, reads back what is there with :func:`read_rows`:

* **CSV** (any path not ending in ``.parquet``): rows are appended in one
  write, flushed and ``fsync``-ed; the header is written with the first rows.
  A process killed in the middle of a write can leave a torn last line:
  :func:`read_rows` cuts the file back to its last complete line first.
* **Parquet** (a path ending in ``.parquet``): a folder holding one
  ``part-NNNNNN.parquet`` file per append, each written to a temporary name,
  ``fsync``-ed and renamed into place, so a part is there whole or not at
  all. ``pandas.read_parquet(path)`` reads the folder as one table. Needs
  ``pyarrow`` (the ``archive`` extra).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["append_rows", "read_rows", "remove_rows"]


def _is_parquet(path):
    return Path(path).suffix.lower() == ".parquet"


def append_rows(path, frame):
    """Append ``frame``'s rows to the table at ``path`` (created if absent), durably.

    Parameters
    ----------
    path : str or os.PathLike
        A CSV file, or a Parquet folder when it ends in ``.parquet``.
    frame : pandas.DataFrame
        Rows to add; its columns must be the table's (the first append sets them).

    Examples
    --------
    >>> import os, tempfile, pandas as pd
    >>> path = os.path.join(tempfile.mkdtemp(), "out.csv")
    >>> append_rows(path, pd.DataFrame({"row": [0, 1], "bmd": [0.81, 0.92]}))
    >>> append_rows(path, pd.DataFrame({"row": [2], "bmd": [0.77]}))
    >>> read_rows(path)["row"].tolist()
    [0, 1, 2]
    """
    path = Path(path)
    if _is_parquet(path):
        path.mkdir(parents=True, exist_ok=True)
        part = path / f"part-{len(list(path.glob('part-*.parquet'))):06d}.parquet"
        tmp = part.with_suffix(".tmp")
        frame.to_parquet(tmp, index=False)
        _fsync(tmp)
        os.replace(tmp, part)
        _fsync(path)
        return
    header = not path.exists() or path.stat().st_size == 0
    text = frame.to_csv(index=False, header=header, lineterminator="\n")
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut_torn_line(path):
    """Truncate a CSV file after its last newline (a killed writer's partial line)."""
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())


def read_rows(path, *, dtype=None):
    """Every complete row of the table at ``path`` (None when there is none yet).

    A torn last line of a CSV file is removed from the file first, and
    leftover temporary parts of a Parquet folder are deleted. ``dtype`` is
    passed to :func:`pandas.read_csv` (e.g. ``{"row": str}``).
    """
    path = Path(path)
    if _is_parquet(path):
        for tmp in path.glob("part-*.tmp"):
            tmp.unlink()
        if not any(path.glob("part-*.parquet")):
            return None
        table = pd.read_parquet(path)
        return table.astype(dtype) if dtype else table
    if not path.exists():
        return None
    _cut_torn_line(path)
    if path.stat().st_size == 0:
        return None
    return pd.read_csv(path, dtype=dtype, encoding="utf-8")


def remove_rows(path):
    """Delete the table at ``path`` (a file, or a Parquet folder of parts), if any."""
    path = Path(path)
    if _is_parquet(path) and path.is_dir():
        for part in path.glob("part-*"):
            part.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()
