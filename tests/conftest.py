"""Shared fixtures: small cohorts whose BMD depends on the image and on metadata."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see bmdkit/__init__.py

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def make_signal_cohort(out_dir, n=120, size=40, seed=0):
    """A tiny cohort: BMD = metadata part + a latent seen only as a ring's thickness.

    Returns (X, y, latent). Images are 16-bit PNGs with noise, a random
    exposure and a random position, so the image must be read, not memorised;
    the latent survives per-image contrast normalisation (it is geometry).
    """
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    age = rng.uniform(70, 81, n)
    sex = rng.choice(["F", "M"], n)
    yy, xx = np.mgrid[:size, :size]
    paths = []
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-3, 3, 2)
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        inner = size * (0.22 - 0.06 * np.clip(latent[i], -2.5, 2.5) / 2.5)
        ring = (r2 < (size * 0.36) ** 2) & (r2 >= inner**2)
        img = rng.uniform(8000, 14000) + rng.normal(0, 800, (size, size))
        img[ring] += rng.uniform(14000, 20000)
        path = os.path.join(out_dir, f"subject_{i:03d}.png")
        Image.fromarray(np.clip(img, 0, 65535).astype(np.uint16)).save(path)
        paths.append(path)
    y = 0.85 + 0.06 * latent - 0.012 * (age - 75) + 0.06 * (sex == "M") + rng.normal(0, 0.01, n)
    X = pd.DataFrame({"image_path": paths, "age": age, "sex": sex})
    return X, y, latent


def make_bilateral_signal_cohort(out_dir, n=150, size=32, seed=0):
    """Two rings side by side, each with its own latent; BMD follows the one named in ``side``.

    Returns (X, y). Pooling the whole image mixes the two rings: only a model
    that lets ``side`` choose where to look can read the measured one.
    """
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(n, 2))
    side = rng.choice(["right", "left"], n)
    measured = np.where(side == "right", latents[:, 0], latents[:, 1])
    age = rng.uniform(70, 81, n)
    yy, xx = np.mgrid[:size, :2 * size]
    paths = []
    for i in range(n):
        img = rng.uniform(8000, 14000) + rng.normal(0, 800, (size, 2 * size))
        for j, centre in enumerate((size / 2, 1.5 * size)):
            cy, cx = size / 2 + rng.uniform(-2, 2, 2) + (0, centre - size / 2)
            r2 = (yy - cy) ** 2 + (xx - cx) ** 2
            inner = size * (0.22 - 0.06 * np.clip(latents[i, j], -2.5, 2.5) / 2.5)
            img[(r2 < (size * 0.36) ** 2) & (r2 >= inner**2)] += rng.uniform(14000, 20000)
        path = os.path.join(out_dir, f"pair_{i:03d}.png")
        Image.fromarray(np.clip(img, 0, 65535).astype(np.uint16)).save(path)
        paths.append(path)
    y = 0.85 + 0.08 * measured - 0.008 * (age - 75) + rng.normal(0, 0.01, n)
    X = pd.DataFrame({"image_path": paths, "age": age, "side": side})
    return X, y


@pytest.fixture(scope="session")
def bilateral_signal_cohort(tmp_path_factory):
    return make_bilateral_signal_cohort(tmp_path_factory.mktemp("bilateral_signal_cohort"))


@pytest.fixture(scope="session")
def signal_cohort(tmp_path_factory):
    return make_signal_cohort(tmp_path_factory.mktemp("signal_cohort"))[:2]


@pytest.fixture(scope="session")
def real_data():
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder not found at {REAL_DATA}")
    return REAL_DATA
