"""A synthetic demo cohort: metadata like the reference cohort, procedural hip phantoms.

SYNTHETIC DATA. The images are procedural phantoms made for demonstration and
testing, not clinical radiographs; no accuracy on them is evidence about real
radiographs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from bmdkit.datasets._phantoms import render_hips
from bmdkit.datasets.cohort import load_cohort
from bmdkit.files import atomic_path
from bmdkit.io.cache import progress_disable

__all__ = ["make_synthetic_cohort", "load_demo_cohort", "demo_data_home"]

#: Format version of generated cohorts; bump when the generative model changes.
COHORT_VERSION = 1
_CHUNK = 32  # subjects rendered at once: bounds memory at large image sizes
SMOKING = np.array(["never", "former", "current"], dtype=object)


def _metadata(n, rng):
    """Metadata resembling the Hertfordshire Cohort Study's XAttn-BMD sample."""
    female = rng.random(n) < 0.489
    age_xray = rng.uniform(71.6, 80.6, n)
    age_bmd = age_xray + np.abs(rng.normal(0.0, 0.3, n))
    height = np.where(female, rng.normal(159.0, 6.0, n), rng.normal(172.0, 6.5, n))
    bmi = np.clip(np.where(female, rng.normal(27.8, 4.8, n), rng.normal(27.4, 3.8, n)), 17, 45)
    weight = bmi * (height / 100) ** 2
    drinks = rng.random(n) > np.where(female, 0.35, 0.15)
    alcohol = np.where(drinks, rng.lognormal(np.where(female, 1.2, 2.1), 0.8), 0.0)
    activity = np.clip(rng.normal(60 - 1.5 * (age_xray - 76), 15, n), 0, 100)
    diet = rng.normal(0.0, 1.0, n)
    smoking = SMOKING[np.array([
        rng.choice(3, p=[0.60, 0.32, 0.08]) if f else rng.choice(3, p=[0.38, 0.52, 0.10])
        for f in female])]
    frame = pd.DataFrame({
        "age_at_xray": age_xray.round(1),
        "age_at_bmd": age_bmd.round(1),
        "height_cm": height.round(1),
        "weight_kg": weight.round(1),
        "bmi": bmi.round(1),
        "alcohol_units_per_week": alcohol.round(1),
        "physical_activity": activity.round(0),
        "diet_quality": diet.round(2),
        "sex": np.where(female, "F", "M").astype(object),
        "smoking": smoking,
    })
    return frame


def _bmd(meta, quality, rng):
    """Femoral neck BMD (g/cm²): metadata part + image-only bone quality + noise."""
    female = (meta["sex"] == "F").to_numpy()
    metadata_part = (
        np.where(female, 0.80, 0.90)
        - 0.006 * (meta["age_at_bmd"].to_numpy() - 76)
        + 0.007 * (meta["bmi"].to_numpy() - 27.5)
        + 0.0008 * (meta["physical_activity"].to_numpy() - 60)
        + 0.008 * meta["diet_quality"].to_numpy()
        - 0.03 * (meta["smoking"] == "current").to_numpy()
        - 0.0015 * np.clip(meta["alcohol_units_per_week"].to_numpy() - 14, 0, None)
    )
    return metadata_part + 0.085 * quality + rng.normal(0.0, 0.025, len(meta))


def _blank_some(meta, rng, fraction=0.02):
    """Set a few lifestyle values missing, as in real cohorts."""
    for column in ("alcohol_units_per_week", "physical_activity", "diet_quality", "smoking"):
        missing = rng.random(len(meta)) < fraction
        meta.loc[missing, column] = np.nan if meta[column].dtype != object else None
    return meta


def make_synthetic_cohort(n=233, image_size=128, random_state=0, out_dir=None, bilateral=False):
    r"""Generate a SYNTHETIC cohort of hip phantoms, metadata and femoral neck BMD.

    The generative model, per subject *i*:

    - metadata like the XAttn-BMD reference cohort (Hertfordshire, n = 233):
      age at x-ray ~ U(71.6, 80.6); age at BMD scan a few months later;
      48.9 % female; sex-specific height and BMI (weight = BMI · height²);
      alcohol (units/week, zero for 35 % of women, 15 % of men, else
      log-normal); physical activity (0–100, falling with age); diet quality
      (z-score); smoking never/former/current. About 2 % of the lifestyle
      values are missing.
    - a bone-quality latent :math:`q_i \sim N(0, 1)` that only the image shows:
      it thickens the cortex of neck and shaft, fills the trabecular network
      and densifies the pelvis of the phantom.
    - BMD in g/cm²:

      .. math::

          \mathrm{BMD}_i = 0.80\,[F] + 0.90\,[M] - 0.006\,(\mathrm{age}_{BMD} - 76)
              + 0.007\,(\mathrm{BMI} - 27.5) + 0.0008\,(\mathrm{activity} - 60)
              + 0.008\,\mathrm{diet} - 0.03\,[\mathrm{current\ smoker}]
              - 0.0015\,(\mathrm{alcohol} - 14)_+ + 0.085\,q_i + \varepsilon_i,
          \qquad \varepsilon_i \sim N(0, 0.025^2)

      (mean about 0.85, SD about 0.11 g/cm²; about a fifth below 0.75).
    - with ``bilateral=True``, an AP pelvis view instead: both hips side by
      side (the right hip on the image's left, as radiographs are read), each
      its own phantom with its own bone quality :math:`q^{R}_i, q^{L}_i`
      (independent), and a metadata column ``dxa_side`` ("right" or "left",
      half each) naming the hip that DXA measured; BMD uses that hip's
      :math:`q`. Pooled image features mix the two hips, so a model does well
      only if the metadata can say where to look.
    - the image: a procedural AP hip phantom (femoral head, neck, trochanters,
      shaft, acetabulum, ilium, obturator ring, soft tissue) rendered as
      16-bit PNG, where *q* shows through cortical thickness, trabecular
      texture and neck attenuation, confounded by bone size (from height),
      soft-tissue thickness (from BMI), positioning, exposure and noise.

    Parameters
    ----------
    n : int, default=233
        Number of subjects.
    image_size : int, default=128
        Side of the square PNG images in pixels.
    random_state : int, default=0
        Seed: the same seed gives the same cohort, images included.
    out_dir : str, os.PathLike or None, default=None
        Folder for the PNG files; ``None``: a folder per (``n``,
        ``image_size``, ``random_state``, ``bilateral``) under
        :func:`demo_data_home`, reused by later calls (images already there
        are not written again).
    bilateral : bool, default=False
        Both hips in each image (``image_size`` high, twice as wide) and the
        measured side in ``dxa_side``; see above.

    Returns
    -------
    X : pandas.DataFrame
        ``image_path`` plus the metadata columns; ``X.attrs["synthetic"]`` is True.
    y : ndarray of shape (n,)
        Femoral neck BMD in g/cm² (synthetic).

    Examples
    --------
    >>> from bmdkit.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(n=8, image_size=32, random_state=0)
    >>> X.shape, y.shape, X.attrs["synthetic"]
    ((8, 11), (8,), True)
    """
    rng = np.random.default_rng(random_state)
    meta = _metadata(n, rng)
    quality = rng.normal(0.0, 1.0, n)
    if bilateral:
        quality_left = rng.normal(0.0, 1.0, n)
        meta["dxa_side"] = np.where(rng.random(n) < 0.5, "right", "left").astype(object)
        y = _bmd(meta, np.where(meta["dxa_side"] == "left", quality_left, quality), rng)
    else:
        y = _bmd(meta, quality, rng)
    bone_scale = (meta["height_cm"].to_numpy() / 165.0) ** 0.5 * rng.uniform(0.96, 1.04, n)
    soft_tissue = meta["bmi"].to_numpy() / 27.5
    if out_dir is None:  # one folder per cohort, reused: nothing left behind per call
        out_dir = demo_data_home() / (f"synthetic-v{COHORT_VERSION}-n{n}-px{image_size}-"
                                      f"seed{random_state}{'-bilateral' if bilateral else ''}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [str(out_dir / f"phantom_{i:04d}.png") for i in range(n)]
    # a bar on a terminal from PROGRESS_MIN_FILES images, like bmdkit.io.load_images
    with tqdm(total=n, desc="rendering phantoms", unit="image",
              disable=progress_disable(n)) as bar:
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            images = render_hips(quality[start:stop], bone_scale[start:stop],
                                 soft_tissue[start:stop], image_size, rng)
            if bilateral:  # the left hip mirrored beside the right one
                left = render_hips(quality_left[start:stop], bone_scale[start:stop],
                                   soft_tissue[start:stop], image_size, rng)
                images = np.concatenate([images, left[:, :, ::-1]], axis=2)
            for path, image in zip(paths[start:stop], images):
                _save_png(path, image)
                bar.update()
    X = pd.concat([pd.DataFrame({"image_path": paths}), _blank_some(meta, rng)], axis=1)
    X.attrs["synthetic"] = True
    return X, y


def _save_png(path, image):
    """Write ``image`` unless ``path`` holds it already; atomically, for concurrent callers."""
    if os.path.isfile(path):  # the same seed renders the same image
        return
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def demo_data_home():
    """Folder of generated demo cohorts: ``BMDKIT_DATA_DIR`` or ``~/.cache/bmdkit``."""
    return Path(os.environ.get("BMDKIT_DATA_DIR") or Path.home() / ".cache" / "bmdkit")


def load_demo_cohort(n=233, image_size=128, random_state=0, data_home=None, bilateral=False):
    """The SYNTHETIC demo cohort, generated once into a cache folder and then reused.

    Parameters
    ----------
    n, image_size, random_state, bilateral :
        See :func:`make_synthetic_cohort`.
    data_home : str, os.PathLike or None
        Where cohorts are kept (default: :func:`demo_data_home`).

    Returns
    -------
    X : pandas.DataFrame
        ``image_path`` (absolute) plus metadata; ``X.attrs["synthetic"]`` is True.
    y : ndarray of shape (n,)
        Synthetic femoral neck BMD in g/cm².

    Notes
    -----
    Several processes may call this at once: each generates into its own
    temporary folder and the first to finish renames it into place.

    Examples
    --------
    >>> import tempfile
    >>> from bmdkit import load_demo_cohort
    >>> home = tempfile.mkdtemp()
    >>> X, y = load_demo_cohort(n=6, image_size=32, data_home=home)
    >>> X2, y2 = load_demo_cohort(n=6, image_size=32, data_home=home)  # reused, not regenerated
    >>> bool((y == y2).all()), X.attrs["synthetic"]
    (True, True)
    """
    home = Path(data_home) if data_home is not None else demo_data_home()
    kind = "-bilateral" if bilateral else ""
    folder = home / f"demo-v{COHORT_VERSION}{kind}-n{n}-px{image_size}-seed{random_state}"
    csv = folder / "cohort.csv"
    if not csv.is_file():
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=home))
        try:
            X, y = make_synthetic_cohort(n, image_size, random_state, out_dir=staging,
                                         bilateral=bilateral)
            table = X.assign(image_path=[Path(p).name for p in X["image_path"]], bmd=y)
            table.to_csv(staging / "cohort.csv", index=False)
            (staging / "README.txt").write_text(
                "SYNTHETIC hip phantoms made by bmdkit.datasets.make_synthetic_cohort, for "
                "demonstration and testing only. Not clinical images; no accuracy on them is "
                "evidence about real radiographs.\n")
            try:
                os.rename(staging, folder)
            except OSError:  # another process finished first
                if not csv.is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    X, y = load_cohort(csv, target="bmd")
    X.attrs["synthetic"] = True
    return X, y
