"""bmdkit's conformal intervals next to MAPIE's, on the same folds of a real BMD table.

Data: ../shared/data/real/tabular/BoneQuality.csv (969 adults, femoral neck
BMD; see bonequality_metadata_vs_ridge.py). 70 % of the rows (stratified by
BMD) fit and calibrate, 30 % are held out. The same MetadataOnlyBMDRegressor
goes through

- CV+ on the same 5 folds: ``bmdkit.uncertainty.ConformalBMDRegressor(method="cv+")``
  and MAPIE's ``CrossConformalRegressor(method="plus")``;
- split conformal on the same calibration rows: ``ConformalBMDRegressor(method="split")``
  and MAPIE's ``SplitConformalRegressor(prefit=True)`` around bmdkit's fitted model.

It prints coverage and mean width on the held-out rows and the largest
difference between the two libraries' bounds, and draws
docs/img/conformal_vs_mapie.png. Needs ``pip install mapie`` (in the ``test`` extra).

Run:  .venv/bin/python examples/conformal_vs_mapie.py [path/to/BoneQuality.csv]
"""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bonequality_metadata_vs_ridge import DEFAULT_CSV, load_bone_quality
from mapie.regression import CrossConformalRegressor, SplitConformalRegressor
from matplotlib.figure import Figure
from sklearn.model_selection import PredefinedSplit, train_test_split

from bmdkit import BMDStratifiedKFold, MetadataOnlyBMDRegressor
from bmdkit.model_selection import quantile_bins
from bmdkit.uncertainty import ConformalBMDRegressor, interval_metrics

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "img" / "conformal_vs_mapie.png"


def compare(X, y, confidence=0.9, n_folds=5, random_state=0, max_epochs=30):
    """Held-out coverage and width of bmdkit's and MAPIE's intervals, and their bounds."""
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=random_state,
                                   stratify=quantile_bins(y, 5))
    X_train, y_train, X_test, y_test = X.iloc[train], y[train], X.iloc[test], y[test]
    fold = np.empty(len(train), dtype=int)
    for k, (_, rows) in enumerate(BMDStratifiedKFold(n_folds, random_state=random_state)
                                  .split(X_train, y_train)):
        fold[rows] = k
    folds = PredefinedSplit(fold)  # both libraries see exactly these folds
    model = MetadataOnlyBMDRegressor(max_epochs=max_epochs, random_state=random_state)
    bounds, rows = {}, []

    def record(name, interval, seconds):
        bounds[name] = interval
        rows.append({"method": name, **interval_metrics(y_test, *interval.T),
                     "seconds": round(seconds, 1)})

    start = time.perf_counter()
    cv_plus = ConformalBMDRegressor(model, confidence=confidence, cv=folds).fit(X_train, y_train)
    record("bmdkit CV+", cv_plus.predict_interval(X_test), time.perf_counter() - start)
    start = time.perf_counter()
    mapie = CrossConformalRegressor(model, confidence_level=confidence, method="plus", cv=folds)
    _, interval = mapie.fit_conformalize(X_train, y_train).predict_interval(X_test)
    record("MAPIE CrossConformalRegressor (plus)", interval[:, :, 0], time.perf_counter() - start)

    start = time.perf_counter()
    split = ConformalBMDRegressor(model, confidence=confidence, method="split",
                                  random_state=random_state).fit(X_train, y_train)
    record("bmdkit split", split.predict_interval(X_test), time.perf_counter() - start)
    start = time.perf_counter()
    calibration = split.calibration_rows_  # the same rows, around the same fitted model
    mapie_split = SplitConformalRegressor(split.estimators_[0], confidence_level=confidence,
                                          prefit=True)
    _, interval = mapie_split.conformalize(X_train.iloc[calibration],
                                           y_train[calibration]).predict_interval(X_test)
    record("MAPIE SplitConformalRegressor", interval[:, :, 0], time.perf_counter() - start)

    table = pd.DataFrame(rows).set_index("method")
    names = list(bounds)
    table["max |bound difference| vs bmdkit"] = [
        np.abs(bounds[n] - bounds[names[2 * (i // 2)]]).max() for i, n in enumerate(names)]
    return table, bounds, y_test


def plot(bounds, y_test, n=40):
    """The first ``n`` held-out rows: each library's interval side by side, DXA as dots."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    x = np.arange(n)
    for ax, (ours, theirs) in zip(axes, [("bmdkit CV+", "MAPIE CrossConformalRegressor (plus)"),
                                         ("bmdkit split", "MAPIE SplitConformalRegressor")]):
        for offset, name, colour in ((-0.15, ours, "C0"), (0.15, theirs, "C1")):
            ax.vlines(x + offset, bounds[name][:n, 0], bounds[name][:n, 1], color=colour,
                      lw=2, label=name)
        ax.scatter(x, y_test[:n], s=8, color="k", zorder=3, label="DXA")
        ax.set(xlabel="held-out subject", title=f"{ours} vs {theirs.split(' (')[0]}")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("femoral neck BMD (g/cm²)")
    fig.suptitle("BoneQuality (real table): 90 % intervals of the same MetadataOnlyBMDRegressor",
                 fontsize=9)
    return fig


if __name__ == "__main__":
    X, y = load_bone_quality(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CSV)
    table, bounds, y_test = compare(X, y)
    with pd.option_context("display.width", 200, "display.precision", 4):
        print(table.to_string())
    plot(bounds, y_test).savefig(FIGURE, dpi=110)
    print(f"figure: {FIGURE}")
