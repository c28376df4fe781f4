"""The SYNTHETIC demo cohort: metadata like the reference cohort, physical hip phantoms.

SYNTHETIC DATA. The images are phantoms rendered from 3D bone
(:mod:`bmdkit.phantoms`) for demonstration and testing, not clinical
radiographs; no accuracy on them is evidence about real radiographs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bmdkit.datasets.cohort import load_cohort
from bmdkit.datasets.films import save_dicom, save_png, save_tiff
from bmdkit.defaults import DEMO_COHORT_SIZE
from bmdkit.errors import ParameterError
from bmdkit.io.cache import progress_disable
from bmdkit.params import Check, Interval, Options, check_param
from bmdkit.phantoms.anatomy import skeleton
from bmdkit.phantoms.dxa import measure
from bmdkit.phantoms.population import (
    blank_some,
    draw_metadata,
    draw_population,
    draw_positioning,
)
from bmdkit.phantoms.render import film_shape, render, to_pixels

__all__ = ["make_synthetic_cohort", "load_demo_cohort", "demo_data_home"]

#: Format version of generated cohorts; bump when the generative model changes.
COHORT_VERSION = 2
VIEWS = ("hip", "pelvis")
IMAGE_FORMATS = {"png": ".png", "dicom": ".dcm"}
#: DXA sites y can hold, and DXA's precision error at each (coefficient of variation).
PRECISION_CV = {"femoral_neck": 0.015, "total_hip": 0.010}


def _check(view, image_format, sites, image_size, n):
    check_param("view", view, Options(VIEWS))
    check_param("image_format", image_format, Options(IMAGE_FORMATS))
    check_param("sites", sites, Options(PRECISION_CV),
                Check(_known_sites, "a non-empty tuple of them"))
    check_param("image_size", image_size, Interval(Integral, 8, None))
    check_param("n", n, Interval(Integral, 1, None))
    return (sites,) if isinstance(sites, str) else tuple(sites)


def _known_sites(sites):
    """Raise unless ``sites`` is a non-empty sequence of DXA sites (:data:`PRECISION_CV`)."""
    sites = tuple(sites)  # a TypeError for None or a number: a bad value
    if not sites or not all(site in PRECISION_CV for site in sites):
        raise ParameterError(f"sites must be a non-empty tuple of {tuple(PRECISION_CV)}, "
                             f"got {sites!r}")


def make_synthetic_cohort(n=DEMO_COHORT_SIZE, image_size=128, random_state=0, out_dir=None, *,
                          view="hip", image_format="png", sites=("femoral_neck",),
                          return_truth=False, bilateral=False):
    r"""Generate a SYNTHETIC cohort: radiographs of 3D hip phantoms, metadata and DXA BMD.

    Per subject (:mod:`bmdkit.phantoms`; physics, units and references in
    docs/data.md):

    - **metadata** like the XAttn-BMD reference cohort (Hertfordshire,
      n = 233): age 71.6–80.6 at the x-ray, the DXA scan a few months later,
      48.9 % female, height, weight, BMI, alcohol, physical activity, diet
      quality, smoking; about 2 % of the lifestyle values missing.
    - **bone**: a proximal femur (head, neck, greater and lesser trochanter,
      shaft) and hemipelvis (acetabulum, ilium, pubic and ischial rami around
      the obturator foramen) on each side, sacrum, L5 and L4; each solid a
      cortical shell around a trabecular interior. Each region's volumetric
      density (mg/cm³ hydroxyapatite) follows a subject-level bone status
      with published regional correlations, calibrated to NHANES III
      femoral-neck BMD by age and sex (Looker et al. 1998); sizes follow sex
      and height; fat and muscle follow BMI, sex and age.
    - **film**: Beer–Lambert attenuation of fat, lean tissue and mineral at
      45 keV, scatter, blur, quantum noise, exposure control, detector gain,
      offset and dynamic-range compression, a lead R/L marker; femoral
      rotation, abduction, pelvic tilt, shift and magnification per film.
      ``view="hip"``: an AP hip film (30 × 24 cm, one hip, right or left);
      ``view="pelvis"``: an AP pelvis film (35 × 43 cm, both hips) and the
      column ``dxa_side`` naming the hip DXA measured.
    - **target**: the areal BMD (g/cm², Lunar scale) DXA measures on the same
      bone: the mineral alone projected through the film's geometry, BMC /
      area in the standard femoral-neck box (15 mm along the neck, across
      it) and in the total-hip region; y adds DXA's precision error
      (CV 1.5 % femoral neck, 1.0 % total hip).

    Parameters
    ----------
    n : int, default=233
        Number of subjects.
    image_size : int, default=128
        Long side of the saved film in pixels; the pixel spacing follows from
        the film's size (a pelvis film at 1024 px: 0.42 mm).
    random_state : int, default=0
        Seed: the same seed gives the same cohort, files included; the
        subjects and y do not depend on ``image_size``, ``view`` or
        ``image_format``.
    out_dir : str, os.PathLike or None, default=None
        Folder for the files; ``None``: a folder per cohort under
        :func:`demo_data_home`, reused by later calls (files already there
        are not written again).
    view : {"hip", "pelvis"}, default="hip"
    image_format : {"png", "dicom"}, default="png"
        16-bit PNG, or DICOM CR with PatientAge, PatientSex, PatientSize,
        PatientWeight, PixelSpacing, ViewPosition, Laterality (hip films),
        AccessionNumber and study, series and instance UIDs: a complete CR
        Image header (:func:`bmdkit.datasets.films.save_dicom`).
    sites : tuple of str, default=("femoral_neck",)
        DXA sites of y, from ``"femoral_neck"`` and ``"total_hip"``: one site
        gives a 1-D y, several a DataFrame with one column each.
    return_truth : bool, default=False
        Also return the truth (below) and write each film's ``bone_path``.
    bilateral : bool, default=False
        ``True`` is ``view="pelvis"`` (its former name).

    Returns
    -------
    X : pandas.DataFrame
        ``image_path`` plus the metadata columns (and ``dxa_side`` on pelvis
        films); ``X.attrs["synthetic"]`` is True.
    y : ndarray of shape (n,) or pandas.DataFrame
        Measured BMD in g/cm² (SYNTHETIC), per site.
    truth : pandas.DataFrame, only with ``return_truth=True``
        Indexed like X: ``femoral_neck_bmd`` and ``total_hip_bmd`` (noiseless,
        g/cm²), ``soft_tissue_cm`` (AP body thickness at the hips),
        ``bone_path`` (a float32 TIFF of the mineral-only projection, g/cm²
        per pixel, on the film's pixel grid), ``neck_roi`` (the neck box's
        four corners as (x, y) pixel coordinates, pixel (i, j) covering
        ``[j, j+1) x [i, i+1)``; :func:`bmdkit.phantoms.roi_mask` turns them
        into a mask), ``pixel_spacing_mm`` and ``side`` (the hip DXA measured).

    Examples
    --------
    >>> from bmdkit.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(n=8, image_size=32, random_state=0)
    >>> X.shape, y.shape, X.attrs["synthetic"]
    ((8, 11), (8,), True)
    """
    view = "pelvis" if bilateral else view
    sites = _check(view, image_format, sites, image_size, n)
    rng = np.random.default_rng(random_state)
    meta = draw_metadata(n, rng)
    population = draw_population(meta, rng)
    sides = np.where(rng.random(n) < 0.5, "right", "left").astype(object)
    precision = {site: rng.normal(0.0, 1.0, n) for site in PRECISION_CV}
    meta = blank_some(meta, rng)
    positioning = draw_positioning(n, np.random.default_rng([random_state, 1]))
    if view == "pelvis":
        meta["dxa_side"] = sides

    if out_dir is None:  # one folder per cohort, reused: nothing left behind per call
        out_dir = demo_data_home() / _cohort_name("synthetic", n, image_size, random_state, view,
                                                  image_format)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = IMAGE_FORMATS[image_format]
    paths = [str(out_dir / f"phantom_{i:04d}{suffix}") for i in range(n)]
    truth_paths = [str(out_dir / f"bone_path_{i:04d}.tiff") for i in range(n)]
    rows = []
    # a bar on a terminal from PROGRESS_MIN_FILES images, like bmdkit.io.load_images
    with tqdm(total=n, desc="rendering phantoms", unit="film",
              disable=progress_disable(n)) as bar:
        for i in range(n):
            p = {**population.iloc[i].to_dict(), **positioning.iloc[i].to_dict()}
            bones = skeleton(p)
            truth = measure(p, bones, sides[i])
            done = os.path.isfile(paths[i]) and (not return_truth
                                                 or os.path.isfile(truth_paths[i]))
            if not done:  # the same seed renders the same film
                image, bone_path, spacing = render(p, view, sides[i], image_size,
                                                   np.random.default_rng([random_state, 2, i]),
                                                   bones)
                _save_image(paths[i], image, image_format, spacing, meta.iloc[i], view,
                            sides[i], (random_state, i, image_size))
                if return_truth:
                    save_tiff(truth_paths[i], bone_path)
            corners = to_pixels(truth["neck_roi_mm"], p, view, sides[i], image_size)
            rows.append({"femoral_neck_bmd": truth["femoral_neck_bmd"],
                         "total_hip_bmd": truth["total_hip_bmd"],
                         "soft_tissue_cm": p["body_depth"] / 10,
                         "bone_path": truth_paths[i],
                         "neck_roi": [tuple(round(float(c), 3) for c in xy) for xy in corners],
                         "pixel_spacing_mm": film_shape(view, image_size)[2],
                         "side": sides[i]})
            bar.update()
    truth = pd.DataFrame(rows)
    measured = pd.DataFrame({site: truth[f"{site}_bmd"] * (1 + cv * precision[site])
                             for site, cv in PRECISION_CV.items()})
    y = measured[list(sites)] if len(sites) > 1 else measured[sites[0]].to_numpy()
    X = pd.concat([pd.DataFrame({"image_path": paths}), meta], axis=1)
    X.attrs["synthetic"] = True
    return (X, y, truth) if return_truth else (X, y)


def _save_image(path, image, image_format, spacing, patient, view, side, key):
    if image_format == "png":
        save_png(path, image)
    else:
        save_dicom(path, image, spacing=spacing, patient=patient, view=view,
                   laterality=None if view == "pelvis" else side[0].upper(), key=key)


def _cohort_name(prefix, n, image_size, random_state, view, image_format, truth=False):
    kind = "" if (view, image_format) == ("hip", "png") else f"-{view}-{image_format}"
    return (f"{prefix}-v{COHORT_VERSION}{kind}-n{n}-px{image_size}-seed{random_state}"
            f"{'-truth' if truth else ''}")


def demo_data_home():
    """Folder of generated demo cohorts: ``BMDKIT_DATA_DIR`` or ``~/.cache/bmdkit``."""
    return Path(os.environ.get("BMDKIT_DATA_DIR") or Path.home() / ".cache" / "bmdkit")


def load_demo_cohort(n=DEMO_COHORT_SIZE, image_size=128, random_state=0, data_home=None, *,
                     view="hip", image_format="png", sites=("femoral_neck",), return_truth=False,
                     bilateral=False):
    """The SYNTHETIC demo cohort, generated once into a cache folder and then reused.

    Parameters
    ----------
    n, image_size, random_state, view, image_format, sites, return_truth, bilateral :
        See :func:`make_synthetic_cohort`.
    data_home : str, os.PathLike or None
        Where cohorts are kept (default: :func:`demo_data_home`).

    Returns
    -------
    X : pandas.DataFrame
        ``image_path`` (absolute) plus metadata; ``X.attrs["synthetic"]`` is True.
    y : ndarray of shape (n,) or pandas.DataFrame
        Synthetic measured BMD in g/cm², per site.
    truth : pandas.DataFrame, only with ``return_truth=True``
        As :func:`make_synthetic_cohort` gives it, paths absolute.

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
    view = "pelvis" if bilateral else view
    sites = _check(view, image_format, sites, image_size, n)
    home = Path(data_home) if data_home is not None else demo_data_home()
    folder = home / _cohort_name("demo", n, image_size, random_state, view, image_format,
                                 truth=return_truth)
    csv = folder / "cohort.csv"
    if not csv.is_file():
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=home))
        try:
            X, y, truth = make_synthetic_cohort(
                n, image_size, random_state, out_dir=staging, view=view,
                image_format=image_format, sites=tuple(PRECISION_CV), return_truth=True
            ) if return_truth else (*make_synthetic_cohort(
                n, image_size, random_state, out_dir=staging, view=view,
                image_format=image_format, sites=tuple(PRECISION_CV)), None)
            X.assign(image_path=[Path(p).name for p in X["image_path"]], **y).to_csv(
                staging / "cohort.csv", index=False)
            if truth is not None:
                truth.assign(bone_path=[Path(p).name for p in truth["bone_path"]],
                             neck_roi=[json.dumps(c) for c in truth["neck_roi"]]).to_csv(
                    staging / "truth.csv", index=False)
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
    X, y = load_cohort(csv, target=list(sites) if len(sites) > 1 else sites[0],
                       exclude=[s for s in PRECISION_CV if s not in sites])
    X.attrs["synthetic"] = True
    if not return_truth:
        return X, y
    truth = pd.read_csv(folder / "truth.csv")
    truth["bone_path"] = [str(folder / p) for p in truth["bone_path"]]
    truth["neck_roi"] = [[tuple(xy) for xy in json.loads(c)] for c in truth["neck_roi"]]
    return X, y, truth
