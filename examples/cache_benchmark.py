"""How much image reading a disk image cache saves across processes.

Builds a cohort of real hospital-style DICOM files (copies of the two
computed-radiography files in ../shared/data/real/dicom/: JPEG 2000, 1760²
and 1955×1841 pixels, MONOCHROME1), then runs the same 5-fold
cross-validation of an image model twice, each in a fresh Python process,
sharing one cache folder. It prints the time each run spent in
:func:`bmdkit.io.load_images` (``bmdkit.io.cache_info().seconds``).

Only timings are measured: the targets are random, nothing here is an
accuracy figure.

Run:  .venv/bin/python examples/cache_benchmark.py [--n 40] [--image-size 64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REAL_DICOM = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "dicom"
SOURCES = ["RG3_J2KR.dcm", "RG1_J2KI.dcm"]


def make_cohort(folder, n, seed=0):
    """``cohort.csv`` listing ``n`` distinct copies of the real CR DICOMs, random targets."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        name = f"subject_{i:03d}.dcm"
        shutil.copyfile(REAL_DICOM / SOURCES[i % len(SOURCES)], folder / name)
        names.append(name)
    table = pd.DataFrame({"image_path": names, "age": rng.uniform(71.6, 80.6, n).round(1),
                          "bmd": rng.normal(0.82, 0.12, n).round(3)})
    table.to_csv(folder / "cohort.csv", index=False)
    return folder / "cohort.csv"


def cross_validate_once(csv, cache_dir, image_size):
    """One 5-fold cross-validation; returns the image cache's counters as a dict."""
    import torch
    from sklearn.model_selection import cross_validate

    from bmdkit import ImageOnlyBMDRegressor, load_cohort
    from bmdkit.io import cache_info

    torch.set_num_threads(1)
    X, y = load_cohort(csv, target="bmd")
    model = ImageOnlyBMDRegressor(image_size=image_size, backbone="resnet10t", max_epochs=1,
                                  batch_size=16, embed_dim=16, n_heads=2, n_layers=1,
                                  cache_dir=cache_dir, random_state=0)
    cross_validate(model, X, y, cv=5)
    return cache_info()._asdict()


def run_in_new_process(csv, cache_dir, image_size):
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(csv), "--cache-dir", str(cache_dir),
         "--image-size", str(image_size)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="DICOM files in the cohort")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(cross_validate_once(args.worker, args.cache_dir, args.image_size)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "cohort").mkdir()
        csv = make_cohort(tmp / "cohort", args.n)
        first = run_in_new_process(csv, tmp / "cache", args.image_size)
        second = run_in_new_process(csv, tmp / "cache", args.image_size)
    for name, info in (("first", first), ("second", second)):
        print(f"{name} cross-validation (new process): {info['seconds']:.2f} s reading images "
              f"({info['decoded']} decoded, {info['disk_hits']} from disk, "
              f"{info['memory_hits']} from memory)")
    print(f"second / first: {second['seconds'] / first['seconds']:.1%}")


if __name__ == "__main__":
    main()
