"""MetadataOnlyBMDRegressor vs a standardised ridge regression on a real BMD table.

Data: ../shared/data/real/tabular/BoneQuality.csv, 969 South Korean adults
aged 50-93 (Kim & Kim 2022, PLOS ONE 17(1): e0260924, CC BY 4.0). Predictors:
sex, age, height, weight, BMI; target: femoral neck BMD (g/cm²), or with
--sites all three DXA sites at once (femoral neck, total hip, lumbar spine:
one network predicting the three, against one ridge regression per site).
Both models run under the same shuffled 10-fold cross-validation.

Run:  .venv/bin/python examples/bonequality_metadata_vs_ridge.py [--sites] [path/to/BoneQuality.csv]
"""

import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bmdkit import MetadataOnlyBMDRegressor
from bmdkit.evaluation import compare_models

DEFAULT_CSV = (Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "tabular"
               / "BoneQuality.csv")
COLUMNS = {"Sex(M=1, W=2)": "sex", "Age(years)": "age", "Height(cm)": "height_cm",
           "Weight(kg)": "weight_kg", "BMI(kg/m2)": "bmi"}
TARGET = "Femur neck BMD(g/cm2)"
SITES = {"femoral_neck": TARGET, "total_hip": "Total hip BMD(g/cm2)",
         "lumbar_spine": "L spine BMD(g/cm2)"}


def load_bone_quality(csv=DEFAULT_CSV, *, sites=False):
    """Five demographic predictors and femoral neck BMD from BoneQuality.csv.

    ``sites=True``: y is a DataFrame of the three sites' BMD (columns as in SITES).
    """
    table = pd.read_csv(csv, encoding="utf-8-sig")
    X = table[list(COLUMNS)].rename(columns=COLUMNS)
    X["sex"] = X["sex"].map({1: "M", 2: "F"})
    if sites:
        return X, table[list(SITES.values())].set_axis(list(SITES), axis=1)
    return X, table[TARGET].to_numpy(dtype=float)


def compare(X, y, n_splits=10, random_state=0):
    """Mean and SD of the cross-validated R², MAE and RMSE of both models."""
    cv = KFold(n_splits, shuffle=True, random_state=random_state)
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=[0.01, 0.1, 1, 10, 100]))
    models = {
        "ridge (standardised, sex as 0/1)": (ridge, X.assign(sex=(X["sex"] == "M").astype(float))),
        "MetadataOnlyBMDRegressor (defaults)": (MetadataOnlyBMDRegressor(random_state=0), X),
    }
    rows = []
    for name, (model, data) in models.items():
        start = time.perf_counter()
        scores = cross_validate(model, data, y, cv=cv, scoring=(
            "r2", "neg_mean_absolute_error", "neg_root_mean_squared_error"))
        rows.append({
            "model": name,
            "R2": f"{scores['test_r2'].mean():.3f} ± {scores['test_r2'].std():.3f}",
            "MAE": f"{-scores['test_neg_mean_absolute_error'].mean():.4f}",
            "RMSE": f"{-scores['test_neg_root_mean_squared_error'].mean():.4f}",
            "r2_mean": scores["test_r2"].mean(),
            "seconds": round(time.perf_counter() - start, 1),
        })
    return pd.DataFrame(rows).set_index("model")


def compare_sites(X, Y, n_splits=10, random_state=0, **network_params):
    """Per-site mean cross-validated R² and MAE: one network for all sites vs ridge per site.

    Both models see sex as 0/1; ``network_params`` go to MetadataOnlyBMDRegressor.
    """
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=[0.01, 0.1, 1, 10, 100],
                                                    alpha_per_target=True))
    results = compare_models(
        {"ridge (per site)": ridge, "MetadataOnlyBMDRegressor (3 outputs)":
         MetadataOnlyBMDRegressor(random_state=0, **network_params)},
        X.assign(sex=(X["sex"] == "M").astype(float)), Y,
        cv=KFold(n_splits, shuffle=True, random_state=random_state), site=list(Y.columns),
        progress=False)
    summary = results.summary()
    return pd.DataFrame({
        (site, metric): summary[(f"{site}/{metric}", "mean")]
        for site in Y.columns for metric in ("r2", "mae")}).T.rename_axis(["site", "metric"])


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--sites"]
    X, y = load_bone_quality(args[0] if args else DEFAULT_CSV, sites="--sites" in sys.argv)
    if "--sites" in sys.argv:
        print(f"BoneQuality.csv: n={len(y)}, mean BMD (g/cm²): "
              + ", ".join(f"{c} {y[c].mean():.3f}" for c in y.columns))
        print(compare_sites(X, y).round(4).to_string())
    else:
        print(f"BoneQuality.csv: n={len(y)}, femoral neck BMD {y.mean():.3f} ± {y.std():.3f} g/cm²")
        print(compare(X, y).drop(columns="r2_mean").to_string())
