"""Acceptance checks of the SYNTHETIC phantom cohort (issue 21), no model training.

1. On ``n`` hip-view subjects, shuffled 10-fold: R² of a ridge on the
   metadata alone, and what the film's global statistics (mean, SD,
   percentiles) add to it (a brightness shortcut would add much).
2. The pelvis view's femoral-neck ROI as a fraction of the film.
3. Osteoporosis prevalence (T <= -2.5, femoral neck, Lunar) in women 70-80.

Also the femoral-neck BMD by sex (to set beside NHANES III), its correlation
with the total hip, and what the film's grey-level contrast at the neck (an
oracle of where to look) adds to the metadata ridge: whether the film
carries the neck's mineral at all.

Run:  .venv/bin/python examples/phantom_checks.py [n] [image_size] [BoneQuality.csv]
The optional CSV (the real table in ../shared/data/real/tabular) gives the
same metadata ridge on real data, on all ages and on ages 70-81.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from bmdkit.clinical import bmd_at_t_score
from bmdkit.datasets import make_synthetic_cohort
from bmdkit.phantoms import roi_mask

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def ridge(X, drop="first"):
    """A ridge on X's columns: numeric ones imputed and scaled, the others one-hot encoded
    (``drop`` as OneHotEncoder's); other columns of the X it is fitted on are ignored."""
    categorical = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    numeric = [c for c in X.columns if c not in categorical]
    return make_pipeline(
        make_column_transformer(
            (make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            (make_pipeline(SimpleImputer(strategy="most_frequent"),
                           OneHotEncoder(drop=drop, handle_unknown="ignore")), categorical)),
        RidgeCV(alphas=np.logspace(-3, 3, 13)))


def ridge_r2(X, y, random_state=0):
    """Mean R² of :func:`ridge` over shuffled 10-fold CV."""
    cv = KFold(10, shuffle=True, random_state=random_state)
    return float(cross_val_score(ridge(X), X, y, cv=cv, scoring="r2").mean())


def global_statistics(paths):
    """Per film: mean, SD and percentiles of its grey levels."""
    rows = []
    for path in paths:
        pixels = np.asarray(Image.open(path), np.float64)
        rows.append([pixels.mean(), pixels.std(), *np.percentile(pixels, PERCENTILES)])
    return pd.DataFrame(rows, columns=["mean", "sd", *(f"p{q}" for q in PERCENTILES)])


def neck_contrast(paths, truth, radius_mm=40.0):
    """Per film: mean grey level in the neck ROI minus that of the soft tissue around it.

    The soft tissue is every pixel within ``radius_mm`` of the ROI's centre
    with no mineral in ``bone_path``: an oracle of where to look, to show
    whether the film carries the neck's mineral at all.
    """
    values = []
    for path, bone_path, corners, spacing in zip(paths, truth["bone_path"], truth["neck_roi"],
                                                 truth["pixel_spacing_mm"]):
        grey = np.asarray(Image.open(path), np.float64)
        mineral = np.asarray(Image.open(bone_path), np.float64)
        xs, ys = np.arange(grey.shape[1]) + 0.5, np.arange(grey.shape[0]) + 0.5
        cx, cy = np.mean(corners, axis=0)
        near = np.hypot(xs[None, :] - cx, ys[:, None] - cy) * spacing < radius_mm
        values.append(grey[roi_mask(corners, xs, ys)].mean()
                      - grey[near & (mineral < 0.01)].mean())
    return np.array(values)


def polygon_area(corners):
    x, y = np.asarray(corners, float).T
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def run_checks(n=300, image_size=256, random_state=0, out=print):
    """Compute the three checks; returns a dict of figures."""
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        X, y, truth = make_synthetic_cohort(n, image_size, random_state, out_dir=f"{tmp}/hip",
                                            return_truth=True)
        for sex, name in (("F", "women"), ("M", "men")):
            figures[f"{name}_neck_bmd_mean"] = float(y[X["sex"] == sex].mean())
            figures[f"{name}_neck_bmd_sd"] = float(y[X["sex"] == sex].std())
        figures["neck_total_hip_r"] = float(np.corrcoef(truth["femoral_neck_bmd"],
                                                        truth["total_hip_bmd"])[0, 1])
        meta = X.drop(columns="image_path")
        figures["metadata_r2"] = ridge_r2(meta, y)
        stats = global_statistics(X["image_path"])
        figures["metadata_plus_image_statistics_r2"] = ridge_r2(pd.concat([meta, stats], axis=1), y)
        figures["image_statistics_r2"] = ridge_r2(stats, y)
        figures["image_statistics_gain"] = (figures["metadata_plus_image_statistics_r2"]
                                            - figures["metadata_r2"])
        contrast = neck_contrast(X["image_path"], truth)
        figures["metadata_plus_neck_contrast_r2"] = ridge_r2(meta.assign(contrast=contrast), y)
        women = (X["sex"] == "F") & X["age_at_bmd"].between(70, 80)
        figures["osteoporosis_women_70_80"] = float(
            (y[women] <= bmd_at_t_score(-2.5, device="lunar")).mean())
        figures["women_70_80"] = int(women.sum())

        Xp, _, truth = make_synthetic_cohort(n, 1024, random_state, out_dir=f"{tmp}/pelvis",
                                             view="pelvis", return_truth=True)
        rows, cols = np.asarray(Image.open(Xp["image_path"][0])).shape
        fraction = np.array([polygon_area(c) for c in truth["neck_roi"]]) / (rows * cols)
        figures["pelvis_neck_roi_fraction_mean"] = float(fraction.mean())
        figures["pelvis_neck_roi_fraction_max"] = float(fraction.max())
    for key, value in figures.items():
        out(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return figures


def real_table_r2(csv, out=print):
    """The metadata ridge on the real BoneQuality table: all ages, and ages 70-81."""
    table = pd.read_csv(csv, encoding="utf-8-sig")
    columns = ["Sex(M=1, W=2)", "Age(years)", "Height(cm)", "Weight(kg)", "BMI(kg/m2)"]
    target = "Femur neck BMD(g/cm2)"
    old = table[table["Age(years)"].between(70, 81)]
    figures = {"real_all_ages_r2": ridge_r2(table[columns], table[target]),
               "real_ages_70_81_r2": ridge_r2(old[columns], old[target]),
               "real_ages_70_81_n": len(old)}
    for key, value in figures.items():
        out(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return figures


if __name__ == "__main__":
    args = sys.argv[1:]
    run_checks(int(args[0]) if args else 300, int(args[1]) if len(args) > 1 else 256)
    if len(args) > 2:
        real_table_r2(args[2])
