"""Cross-validation splitters that stratify a continuous target (BMD).

scikit-learn stratifies class labels only (scikit-learn issue #4757). These
splitters rank ``y``, cut the ranks into equal-count quantile bins and
stratify on the bins, so every fold sees the whole BMD range, including the
rare low values that matter clinically.

Their ``random_state`` defaults to 0, not ``None``: the folds are shuffled
but the same on every call, so two models, two tuning runs or several workers
of one Optuna study are compared on identical folds. Pass another seed for
other folds, or ``random_state=None`` for new folds on every call.
:func:`resolve_cv` turns ``cv=None`` or an int into such a splitter (grouped
when groups are given) and :func:`check_groups_kept` verifies that no group
straddles a training and a test fold.
"""

from __future__ import annotations

import inspect
import numbers

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import check_random_state

from bmdkit.errors import InputError, ParameterError

__all__ = ["BMDStratifiedKFold", "BMDStratifiedGroupKFold", "RepeatedBMDStratifiedKFold",
           "check_groups_kept", "resolve_cv"]


def quantile_bins(y, n_bins):
    """Equal-count bin labels ``0 .. n_bins - 1`` of a continuous target.

    Ties are broken by position, so bin sizes differ by at most one.

    Examples
    --------
    >>> quantile_bins([0.9, 0.5, 0.7, 0.6], 2).tolist()
    [1, 0, 1, 0]
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    ranks = np.empty(len(y), dtype=np.int64)
    ranks[np.argsort(y, kind="stable")] = np.arange(len(y))
    return ranks * n_bins // max(len(y), 1)


class _ParamsMixin:
    """``get_params`` / ``set_params`` from ``__init__``, so that ``clone`` works."""

    @classmethod
    def _param_names(cls):
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self._param_names():
                raise ParameterError(f"invalid parameter {name!r} for {type(self).__name__}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _check_target(y):
    if y is None:
        raise InputError("a continuous target y is needed to stratify the folds")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2:  # several BMD sites: stratify on the first (femoral neck by convention)
        y = y[:, 0]
    if y.ndim != 1:
        raise InputError(f"y must be 1-D or 2-D (sites as columns), got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise InputError("y has NaN or infinite values; they cannot be stratified")
    return y


def _check_enough(n_splits, n_units, unit="rows"):
    """A ValueError naming both numbers when there are fewer rows (or groups) than folds."""
    if n_units < n_splits:
        raise InputError(f"{n_splits} folds need at least {n_splits} {unit}, got {n_units} "
                         f"{unit}: use fewer folds (n_splits)")


def _n_bins(n_bins, n_units, n_splits):
    """Bins to use: at most ``n_units // n_splits`` so every bin can reach every fold."""
    finest = max(1, n_units // n_splits)
    if n_bins is None:
        return finest
    if not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ParameterError(f"n_bins must be a positive integer or None, got {n_bins!r}")
    return min(int(n_bins), finest)


class BMDStratifiedKFold(_ParamsMixin, StratifiedKFold):
    """K-fold cross-validation stratified on quantile bins of a continuous target.

    ``y`` is ranked and cut into ``n_bins`` equal-count bins; the bins are
    then split by :class:`sklearn.model_selection.StratifiedKFold`. Test folds
    differ in size by at most one sample and have close means and spreads of
    ``y``. Use it as ``cv=`` anywhere scikit-learn or Optuna takes a splitter.
    A 2-D ``y`` (several BMD sites) is stratified on its first column.

    Parameters
    ----------
    n_splits : int, default=10
        Number of folds (the XAttn-BMD protocol: 10, i.e. 90 % train / 10 % test).
    n_bins : int or None, default=None
        Number of quantile bins. ``None`` uses the finest binning that still
        puts at least ``n_splits`` samples in each bin (``n // n_splits``);
        larger values are capped there.
    shuffle : bool, default=True
        Shuffle samples within each bin before splitting.
    random_state : int, RandomState or None, default=0
        Seeds the shuffling (only with ``shuffle=True``). The fixed default
        gives the same folds on every call; ``None`` draws new ones.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import clone
    >>> y = np.random.default_rng(0).normal(0.8, 0.12, 233)
    >>> cv = BMDStratifiedKFold(10, random_state=0)
    >>> sizes = [len(test) for _, test in cv.split(np.zeros((233, 1)), y)]
    >>> max(sizes) - min(sizes)
    1
    >>> clone(cv)
    BMDStratifiedKFold(n_splits=10, n_bins=None, shuffle=True, random_state=0)
    """

    def __init__(self, n_splits=10, *, n_bins=None, shuffle=True, random_state=0):
        super().__init__(n_splits=n_splits, shuffle=shuffle, random_state=random_state)
        self.n_bins = n_bins

    def split(self, X, y, groups=None):
        """Train/test indices of each fold; ``groups`` is ignored."""
        y = _check_target(y)
        _check_enough(self.n_splits, len(y))
        labels = quantile_bins(y, _n_bins(self.n_bins, len(y), self.n_splits))
        return super().split(np.zeros((len(y), 1)), labels)


class BMDStratifiedGroupKFold(_ParamsMixin, StratifiedKFold):
    """Stratified K-fold on a continuous target that keeps each group in one fold.

    For cohorts with several images per patient: ``groups`` (e.g. a patient
    id) never straddles folds. Groups are stratified on the quantile bins of
    their mean ``y``, so folds differ by at most one *group* and have close
    means of ``y``.

    Parameters
    ----------
    n_splits : int, default=10
    n_bins : int or None, default=None
        Quantile bins of the group means; ``None``: ``n_groups // n_splits``.
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=0
        As in :class:`BMDStratifiedKFold`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> patients = np.repeat(np.arange(60), 2)          # two images per patient
    >>> y = np.repeat(rng.normal(0.8, 0.12, 60), 2)
    >>> cv = BMDStratifiedGroupKFold(5, random_state=0)
    >>> folds = [set(patients[test]) for _, test in cv.split(y[:, None], y, patients)]
    >>> sum(len(f) for f in folds), len(set.union(*folds))
    (60, 60)
    """

    def __init__(self, n_splits=10, *, n_bins=None, shuffle=True, random_state=0):
        super().__init__(n_splits=n_splits, shuffle=shuffle, random_state=random_state)
        self.n_bins = n_bins

    def split(self, X, y, groups=None):
        """Train/test indices of each fold, with every group in one test fold."""
        y = _check_target(y)
        if groups is None:
            raise InputError("BMDStratifiedGroupKFold needs groups (e.g. a patient id per row)")
        groups = np.asarray(groups)
        if len(groups) != len(y):
            raise InputError(f"groups has {len(groups)} values but y has {len(y)}")
        unique, group_index = np.unique(groups, return_inverse=True)
        _check_enough(self.n_splits, len(unique), "groups")
        group_means = np.bincount(group_index, weights=y) / np.bincount(group_index)
        labels = quantile_bins(group_means, _n_bins(self.n_bins, len(unique), self.n_splits))
        for _, test_groups in super().split(np.zeros((len(unique), 1)), labels):
            test_mask = np.isin(group_index, test_groups)
            yield np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


class RepeatedBMDStratifiedKFold(_ParamsMixin):
    """:class:`BMDStratifiedKFold` repeated with a different shuffle each time.

    Parameters
    ----------
    n_splits : int, default=10
    n_repeats : int, default=10
    n_bins : int or None, default=None
    random_state : int, RandomState or None, default=0
        Seeds the sequence of shuffles (``None``: new ones on every call).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).normal(0.8, 0.12, 50)
    >>> cv = RepeatedBMDStratifiedKFold(5, n_repeats=3, random_state=0)
    >>> cv.get_n_splits(), len(list(cv.split(y[:, None], y)))
    (15, 15)
    """

    def __init__(self, n_splits=10, *, n_repeats=10, n_bins=None, random_state=0):
        self.n_splits = n_splits
        self.n_repeats = n_repeats
        self.n_bins = n_bins
        self.random_state = random_state

    def split(self, X, y, groups=None):
        """Train/test indices of ``n_splits * n_repeats`` folds."""
        if not isinstance(self.n_repeats, numbers.Integral) or self.n_repeats < 1:
            raise ParameterError(f"n_repeats must be a positive integer, got {self.n_repeats!r}")
        rng = check_random_state(self.random_state)
        for _ in range(self.n_repeats):
            cv = BMDStratifiedKFold(self.n_splits, n_bins=self.n_bins, shuffle=True,
                                    random_state=rng)
            yield from cv.split(X, y, groups)

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of train/test splits, ``n_splits * n_repeats``."""
        return self.n_splits * self.n_repeats


def resolve_cv(cv, groups=None, *, default=10):
    """A splitter for ``cv``: ``None`` or an int become seeded stratified folds.

    Parameters
    ----------
    cv : int, splitter or None
        ``None``: ``default`` folds. An int: that many folds of
        :class:`BMDStratifiedKFold` (``random_state=0``), or of
        :class:`BMDStratifiedGroupKFold` when ``groups`` is given. A splitter
        is returned unchanged.
    groups : array-like or None
    default : int, default=10

    Examples
    --------
    >>> resolve_cv(5)
    BMDStratifiedKFold(n_splits=5, n_bins=None, shuffle=True, random_state=0)
    >>> type(resolve_cv(None, groups=[1, 1, 2])).__name__
    'BMDStratifiedGroupKFold'
    """
    if cv is None or isinstance(cv, numbers.Integral):
        n_splits = default if cv is None else int(cv)
        splitter = BMDStratifiedKFold if groups is None else BMDStratifiedGroupKFold
        return splitter(n_splits, random_state=0)
    return cv


def check_groups_kept(splits, groups, cv=None):
    """Raise a ValueError when a group (a patient) is in the training and test rows of a fold.

    Parameters
    ----------
    splits : list of (train, test) index arrays
    groups : array-like or None
        ``None`` checks nothing.
    cv : object, optional
        The splitter, named in the message.

    Examples
    --------
    >>> check_groups_kept([([0, 1], [2, 3])], ["a", "a", "b", "b"])
    >>> check_groups_kept([([0, 2], [1, 3])], ["a", "a", "b", "b"], cv="KFold(2)")
    Traceback (most recent call last):
    ...
    bmdkit.errors.ParameterError: cv=KFold(2) splits groups across training and test rows (fold 0: 'a', 'b'); ...
    """
    if groups is None:
        return
    groups = np.asarray(groups)
    for fold, (train, test) in enumerate(splits):
        shared = sorted(set(groups[np.asarray(train)].tolist())
                        & set(groups[np.asarray(test)].tolist()), key=str)
        if shared:
            named = ", ".join(repr(g) for g in shared[:10]) + (" ..." if len(shared) > 10 else "")
            raise ParameterError(
                f"cv={cv} splits groups across training and test rows (fold {fold}: {named}); "
                "images of one patient must stay in one fold: use BMDStratifiedGroupKFold "
                "or another splitter that takes groups")
