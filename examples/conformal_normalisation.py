"""Is normalised split conformal worth offering? A measurement on our data.

Normalised conformal divides each residual by a difficulty estimate
``sigma(x)`` (a second model of the absolute residual), so intervals are
wide where the model is unsure and narrow where it is sure. It pays only if
the difficulty can be predicted. This script measures it on

- BoneQuality.csv (real, 969 adults; metadata: sex, age, height, weight, BMI), and
- the demo cohort's metadata (SYNTHETIC, 233 subjects; its BMD noise is homoscedastic),

with a ridge regression as the point model, for three difficulty models.
Each of 30 repeats splits the rows into four quarters: fit the point model,
fit the difficulty model on the point model's residuals, calibrate, test.
Printed: coverage and mean width of 90 % intervals on the test quarter, and
coverage in each tertile of predicted difficulty (easy, middle, hard). The
answer decides ``ConformalBMDRegressor``'s options (see docs/uncertainty.md).

Run:  .venv/bin/python examples/conformal_normalisation.py [path/to/BoneQuality.csv]
"""

import sys

import numpy as np
import pandas as pd
from bonequality_metadata_vs_ridge import DEFAULT_CSV, load_bone_quality
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bmdkit.datasets import load_demo_cohort
from bmdkit.uncertainty import conformal_interval

DIFFICULTY = {
    "k-NN (30)": lambda: make_pipeline(StandardScaler(), KNeighborsRegressor(30)),
    "gradient boosting": lambda: GradientBoostingRegressor(max_depth=2, learning_rate=0.05),
    "ridge": lambda: make_pipeline(StandardScaler(), RidgeCV()),
}


def numeric(X):
    X = X.select_dtypes("number")
    return X.fillna(X.median()).to_numpy(float)


def measure(X, y, confidence=0.9, repeats=30):
    rows = []
    for repeat in range(repeats):
        fit, difficulty, calibrate, test = np.array_split(
            np.random.default_rng(repeat).permutation(len(y)), 4)
        point = make_pipeline(StandardScaler(), RidgeCV()).fit(X[fit], y[fit])
        residual = [np.abs(y[part] - point.predict(X[part])) for part in (difficulty, calibrate)]
        error = np.abs(y[test] - point.predict(X[test]))
        # the half-width: conformal_interval around a prediction of 0 returns [-q, q]
        plain = conformal_interval(np.zeros(1), residual[1], confidence)[0, 1]
        for name, make in DIFFICULTY.items():
            model = make().fit(X[difficulty], residual[0])
            sigma_cal = np.maximum(model.predict(X[calibrate]), 1e-3)
            sigma_test = np.maximum(model.predict(X[test]), 1e-3)
            scaled = conformal_interval(np.zeros(1), residual[1] / sigma_cal, confidence)[0, 1]
            tertile = np.digitize(sigma_test, np.quantile(sigma_test, [1 / 3, 2 / 3]))
            for method, half in (("plain", np.full(len(test), plain)),
                                 ("normalised", scaled * sigma_test)):
                inside = error <= half
                rows.append({"difficulty model": name, "method": method,
                             "coverage": inside.mean(), "mean width": 2 * half.mean(),
                             **{f"coverage {t}": inside[tertile == i].mean()
                                for i, t in enumerate(("easy", "middle", "hard"))}})
    return pd.DataFrame(rows).groupby(["difficulty model", "method"], sort=False).mean()


if __name__ == "__main__":
    X, y = load_bone_quality(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CSV)
    X["sex"] = (X["sex"] == "M").astype(float)
    demo_X, demo_y = load_demo_cohort()
    tables = {"BoneQuality (real, n=969)": measure(numeric(X), y),
              "demo metadata (SYNTHETIC, n=233)": measure(numeric(demo_X),
                                                          np.asarray(demo_y, float))}
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(pd.concat(tables, names=["data"]).to_string())
