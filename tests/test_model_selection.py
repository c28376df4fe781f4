import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_validate

from bmdkit import BMDStratifiedGroupKFold, BMDStratifiedKFold, RepeatedBMDStratifiedKFold


@pytest.fixture
def bmd():
    rng = np.random.default_rng(0)
    y = np.r_[rng.normal(0.85, 0.1, 220), rng.normal(0.55, 0.03, 13)]  # a rare low-BMD tail
    X = np.c_[y + rng.normal(0, 0.05, len(y))]
    return X, y


def test_fold_sizes_and_means(bmd):
    X, y = bmd
    folds = [test for _, test in BMDStratifiedKFold(10, random_state=0).split(X, y)]
    sizes = [len(t) for t in folds]
    assert max(sizes) - min(sizes) <= 1
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(y)))
    means = np.array([y[t].mean() for t in folds])
    assert np.abs(means - y.mean()).max() < 0.1 * y.std()
    # every fold gets some of the rare low tail; plain KFold on sorted data would not
    assert all((y[t] < 0.65).any() for t in folds)
    unstratified = [y[t].mean() for _, t in KFold(10).split(X[np.argsort(y)])]
    assert np.ptp(means) < np.ptp(unstratified) / 10


def test_reproducible_and_shuffled(bmd):
    X, y = bmd
    a = [t.tolist() for _, t in BMDStratifiedKFold(5, random_state=1).split(X, y)]
    b = [t.tolist() for _, t in BMDStratifiedKFold(5, random_state=1).split(X, y)]
    c = [t.tolist() for _, t in BMDStratifiedKFold(5, random_state=2).split(X, y)]
    assert a == b and a != c


def test_clone_and_sklearn(bmd):
    X, y = bmd
    cv = BMDStratifiedKFold(5, n_bins=4, random_state=0)
    copy = clone(cv)
    assert copy.get_params() == cv.get_params() and copy is not cv
    assert cross_validate(Ridge(), X, y, cv=cv)["test_score"].shape == (5,)
    search = GridSearchCV(Ridge(), {"alpha": [0.1, 10.0]}, cv=cv).fit(X, y)
    assert search.best_params_["alpha"] == 0.1
    with pytest.raises(ValueError, match="n_bins"):
        list(BMDStratifiedKFold(5, n_bins=0).split(X, y))
    with pytest.raises(ValueError, match="continuous target"):
        list(cv.split(X, None))


def test_optuna_search_accepts_it(bmd):
    import optuna
    from optuna_integration import OptunaSearchCV

    X, y = bmd
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = OptunaSearchCV(
        Ridge(), {"alpha": optuna.distributions.FloatDistribution(1e-3, 10, log=True)},
        cv=BMDStratifiedKFold(3, random_state=0), n_trials=3, random_state=0,
    ).fit(X, y)
    assert len(search.trials_) == 3


def test_repeated(bmd):
    X, y = bmd
    cv = RepeatedBMDStratifiedKFold(5, n_repeats=3, random_state=0)
    splits = [t for _, t in cv.split(X, y)]
    assert len(splits) == cv.get_n_splits() == 15
    for r in range(3):
        repeat = splits[5 * r: 5 * r + 5]
        assert sorted(np.concatenate(repeat).tolist()) == list(range(len(y)))
    assert splits[0].tolist() != splits[5].tolist()
    assert clone(cv).get_params() == cv.get_params()


def test_grouped_keeps_patients_together(bmd):
    _, y_patient = bmd
    rng = np.random.default_rng(1)
    n_images = rng.integers(1, 4, len(y_patient))  # 1-3 images per patient
    groups = np.repeat(np.arange(len(y_patient)), n_images)
    y = np.repeat(y_patient, n_images) + rng.normal(0, 0.005, len(groups))
    cv = BMDStratifiedGroupKFold(10, random_state=0)
    folds = [test for _, test in cv.split(y[:, None], y, groups)]
    patients = [set(groups[t]) for t in folds]
    assert sum(len(p) for p in patients) == len(y_patient)  # no patient in two folds
    group_counts = [len(p) for p in patients]
    assert max(group_counts) - min(group_counts) <= 1
    means = np.array([y[t].mean() for t in folds])
    assert np.abs(means - y.mean()).max() < 0.2 * y.std()
    with pytest.raises(ValueError, match="groups"):
        list(cv.split(y[:, None], y))
