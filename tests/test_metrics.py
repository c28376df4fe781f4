"""Every metric against an independent computation (numpy by hand, or scipy)."""

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_validate

from bmdkit import BMDStratifiedKFold
from bmdkit.clinical import bmd_at_t_score, screening_thresholds
from bmdkit.metrics import (
    compute_metrics,
    resolve_thresholds,
    scorers,
    screening_metrics,
    who_accuracy,
)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    y_true = rng.normal(0.85, 0.13, 300)
    y_pred = 0.6 * y_true + 0.35 + rng.normal(0, 0.07, 300)
    return y_true, y_pred


def test_regression_and_agreement_by_hand(pair):
    y, p = pair
    m = compute_metrics(y, p)
    d = p - y
    assert m["mse"] == pytest.approx(np.mean(d**2))
    assert m["mae"] == pytest.approx(np.mean(np.abs(d)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(d**2)))
    assert m["r2"] == pytest.approx(1 - np.sum(d**2) / np.sum((y - y.mean()) ** 2))
    assert m["pearson_r"] == pytest.approx(stats.pearsonr(y, p).statistic)
    assert m["bias"] == pytest.approx(d.mean())
    sd = np.sqrt(np.sum((d - d.mean()) ** 2) / (len(d) - 1))
    assert m["loa_lower"] == pytest.approx(d.mean() - 1.96 * sd)
    assert m["loa_upper"] == pytest.approx(d.mean() + 1.96 * sd)


def _auc_by_hand(positive, score):
    """Mann-Whitney: share of (positive, negative) pairs ranked right, ties count half."""
    pos, neg = score[positive], score[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("t", [-1.0, -2.5])
def test_screening_by_hand(pair, t):
    y, p = pair
    threshold = bmd_at_t_score(t)
    m = screening_metrics(y, p, threshold)
    true, pred = y < threshold, p < threshold
    tp, tn = np.sum(true & pred), np.sum(~true & ~pred)
    fp, fn = np.sum(~true & pred), np.sum(true & ~pred)
    assert m["accuracy"] == pytest.approx((tp + tn) / len(y))
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    # weighted by class support: positive class and negative class
    w_pos, w_neg = (tp + fn) / len(y), (tn + fp) / len(y)
    prec = (tp / (tp + fp) if tp + fp else 0.0, tn / (tn + fn) if tn + fn else 0.0)
    rec = (tp / (tp + fn), tn / (tn + fp))
    f1 = [2 * a * b / (a + b) if a + b else 0.0 for a, b in zip(prec, rec)]
    assert m["precision"] == pytest.approx(w_pos * prec[0] + w_neg * prec[1])
    assert m["recall"] == pytest.approx(w_pos * rec[0] + w_neg * rec[1])
    assert m["f1"] == pytest.approx(w_pos * f1[0] + w_neg * f1[1])
    assert m["roc_auc"] == pytest.approx(_auc_by_hand(true, -p))
    assert 0.5 < m["roc_auc"] <= 1


def test_undefined_screening_metrics_are_nan():
    m = screening_metrics([0.95, 1.0, 1.1], [0.8, 1.0, 1.2], threshold=0.899)
    assert np.isnan(m["roc_auc"]) and np.isnan(m["sensitivity"])
    assert m["specificity"] == pytest.approx(2 / 3)


def test_who_accuracy_by_hand(pair):
    y, p = pair
    cut_low, cut_high = bmd_at_t_score(-2.5), bmd_at_t_score(-1.0)
    # category by BMD directly: T <= -2.5, -2.5 < T < -1, T >= -1
    def category(b):
        return np.where(b <= cut_low, 0, np.where(b < cut_high, 1, 2))
    assert who_accuracy(y, p) == pytest.approx(np.mean(category(y) == category(p)))


def test_scorers_in_cross_validate_match_compute_metrics(pair):
    y, _ = pair
    X = (y + np.random.default_rng(1).normal(0, 0.06, len(y)))[:, None]
    cv = BMDStratifiedKFold(5, random_state=0)
    res = cross_validate(LinearRegression(), X, y, cv=cv, scoring=scorers(),
                         return_estimator=True, return_indices=True)
    for k, (est, test) in enumerate(zip(res["estimator"], res["indices"]["test"])):
        m = compute_metrics(y[test], est.predict(X[test]))
        assert res["test_neg_mse"][k] == pytest.approx(-m["mse"])
        assert res["test_r2"][k] == pytest.approx(m["r2"])
        assert res["test_bias"][k] == pytest.approx(m["bias"])
        assert res["test_roc_auc@T=-1.0"][k] == pytest.approx(m["roc_auc@T=-1.0"])
        assert res["test_who_accuracy"][k] == pytest.approx(m["who_accuracy"])
    custom = scorers({"paper": 0.899}, device="lunar")
    assert "f1@paper" in custom and "f1@T=-1.0" not in custom


def test_resolve_thresholds_is_shared_by_every_caller(pair):
    y, p = pair
    assert resolve_thresholds() == screening_thresholds()
    assert resolve_thresholds(device="hologic") == screening_thresholds(device="hologic")
    assert resolve_thresholds({"paper": "0.899", 1: 0.7}) == {"paper": 0.899, "1": 0.7}
    assert resolve_thresholds({}) == {}
    plain = compute_metrics(y, p, thresholds={})
    assert not any("@" in key for key in plain) and "who_accuracy" in plain
    assert not any("@" in key for key in scorers({}))
