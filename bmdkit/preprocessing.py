"""From a DataFrame of image paths and metadata to the network's input arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from bmdkit.checks import (
    check_all,
    check_columns,
    check_distinct_columns,
    check_no_datetimes,
    check_numeric,
    check_unique_columns,
    numeric_like_columns,
    warn_missing_values,
)
from bmdkit.errors import InputError, ParameterError, SavedFileError
from bmdkit.io import load_images

__all__ = ["BMDPreprocessor", "TargetScaling"]


def as_frame(X):
    """A DataFrame view of ``X`` with string column names.

    2-D arrays (metadata only) get the columns ``x0, x1, ...``.
    """
    if sparse.issparse(X):
        raise TypeError("sparse input is not supported: pass X as a pandas DataFrame")
    if isinstance(X, pd.DataFrame):
        if not all(isinstance(c, str) for c in X.columns):
            X = X.rename(columns=str)
        check_unique_columns(X)
        return X
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise InputError(
            "X must be a pandas DataFrame (or a 2-D array of metadata), got an array of shape "
            f"{arr.shape}. Reshape your data, e.g. with X.reshape(-1, 1) for a single feature."
        )
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


class TargetScaling:
    """Standardisation of BMD targets: what the network trains on and how its output returns.

    Parameters
    ----------
    mean, scale : float, or ndarray of shape (k,) for k sites
        ``transform`` gives ``(y - mean) / scale``.

    Examples
    --------
    >>> import numpy as np
    >>> scaling = TargetScaling.fit(np.array([0.7, 0.9, 1.1]))
    >>> scaled = scaling.transform([0.7, 1.1])
    >>> scaled.shape, scaling.inverse_transform(scaled).round(6).tolist()
    ((2, 1), [0.7, 1.1])
    """

    def __init__(self, mean, scale):
        self.mean = mean
        self.scale = scale

    @classmethod
    def fit(cls, y):
        """Mean and SD of ``y`` (1-D: floats; 2-D: per column); an SD of 0 scales by 1."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            return cls(float(y.mean()), float(y.std()) or 1.0)
        std = y.std(axis=0)
        return cls(y.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, y):
        """``(y - mean) / scale`` as float32 of shape (n, k): k = 1 for a 1-D ``y``."""
        scaled = ((np.asarray(y) - self.mean) / self.scale).astype(np.float32)
        return scaled[:, None] if scaled.ndim == 1 else scaled

    def inverse_transform(self, scaled):
        """Network outputs ``(n, k)`` back in g/cm², float64: shape (n,) for one site."""
        scaled = np.asarray(scaled, dtype=np.float64)
        if np.ndim(self.mean) == 0:
            scaled = scaled[:, 0]
        return scaled * self.scale + self.mean


def site_names_of(y_given, y):
    """Names of the columns (sites) of a 2-D target, or ``None`` for one site."""
    if y.ndim == 1:
        return None
    if hasattr(y_given, "columns"):
        return [str(c) for c in y_given.columns]
    return [f"site_{j}" for j in range(y.shape[1])]


def _plain(value):
    """A category as a plain Python value: NaN as None, numpy scalars as Python ones."""
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


class BMDPreprocessor(TransformerMixin, BaseEstimator):
    """Turn image paths and metadata into arrays for :class:`~bmdkit.nn.BMDNet`.

    Numeric metadata are median-imputed and standardised; categorical metadata
    are ordinal-encoded with code 0 for missing values and categories not seen
    in ``fit`` (so unseen categories at predict time do not crash); missing
    values are counted in a :class:`~bmdkit.checks.ImputationWarning`.
    Images are read, contrast-normalised, resized with padding to
    ``image_size`` and cached (see :func:`bmdkit.io.load_images`). Bad input
    (a missing column, a non-numeric value in a numeric column, a missing or
    unreadable image) raises one :class:`~bmdkit.checks.InputError`
    naming every offending row.

    Parameters
    ----------
    image_col : str or None, default="image_path"
        Column of image paths; ``None`` for metadata only.
    numeric_cols, categorical_cols : list of str or None
        Metadata columns. ``None`` detects them from dtypes: numbers are
        numeric; strings, categories and booleans are categorical, except
        that a text column of numbers with a few non-numbers (a CSV's
        ``"?"``) is an error rather than a category per value. A column
        named in one list is never detected for the other; one named in
        both is an error.
    image_size : int, default=128
        Side of the square network input.
    contrast : {"percentile", "minmax", "none"}, default="percentile"
        Contrast normalisation of each image (see :func:`bmdkit.io.normalise_contrast`).
    cache_dir : str or None, default=None
        Folder of the on-disk image cache shared between processes
        (``None``: the ``BMDKIT_CACHE_DIR`` environment variable, else memory only).

    Attributes
    ----------
    numeric_cols_, categorical_cols_ : list of str
    cardinalities_ : list of int
        Number of categories seen in training per categorical column (a
        missing value seen in training counts as one; missing and unseen
        values are encoded 0 at transform time).
    metadata_transformer_ : sklearn.compose.ColumnTransformer
    feature_names_in_ : ndarray of str

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"age": [70.0, 75.0, None], "sex": ["F", "M", "F"]})
    >>> arrays = BMDPreprocessor(image_col=None).fit_transform(X)
    >>> arrays["numeric"].shape, arrays["categorical"].tolist()
    ((3, 1), [[1], [2], [1]])
    """

    def __init__(self, image_col="image_path", numeric_cols=None, categorical_cols=None,
                 image_size=128, contrast="percentile", cache_dir=None):
        self.image_col = image_col
        self.numeric_cols = numeric_cols
        self.categorical_cols = categorical_cols
        self.image_size = image_size
        self.contrast = contrast
        self.cache_dir = cache_dir

    def fit(self, X, y=None):
        X = as_frame(X)
        metadata = X.drop(columns=[self.image_col], errors="ignore") if self.image_col else X
        # a column named in one role is never detected in the other
        named = list(self.categorical_cols or []) + list(self.numeric_cols or [])
        numbers = list(metadata.select_dtypes(include="number").columns)  # bool is not "number"
        if self.numeric_cols is None:
            numeric = [c for c in numbers if c not in named]
        else:
            numeric = list(self.numeric_cols)
        if self.categorical_cols is None:
            categorical = [c for c in metadata.columns if c not in numbers and c not in named]
        else:
            categorical = list(self.categorical_cols)
        check_distinct_columns(numeric, categorical)
        present = [c for c in categorical if c in X.columns]
        check_all(  # one error naming every problem
            lambda: check_columns(X, [self.image_col] if self.image_col else [],
                                  role="image column"),
            lambda: check_columns(X, numeric + categorical, role="metadata column"),
            lambda: check_numeric(X, [c for c in numeric if c in X.columns]),
            lambda: check_numeric(X, numeric_like_columns(X, present)
                                  if self.categorical_cols is None else []),
            lambda: check_no_datetimes(X, present),
        )
        self.numeric_cols_ = [str(c) for c in numeric]
        self.categorical_cols_ = [str(c) for c in categorical]
        self.metadata_transformer_ = ColumnTransformer(
            [
                # keep_empty_features: a column missing in every training row stays (imputed
                # 0) instead of being dropped and shifting every column after it
                ("numeric", make_pipeline(
                    SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
                 self.numeric_cols_),
                ("categorical", OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1,
                    encoded_missing_value=-1, dtype=np.float64,
                ), self.categorical_cols_),
            ],
            remainder="drop",
        ).fit(X[self.numeric_cols_ + self.categorical_cols_].astype(
            {c: object for c in self.categorical_cols_}))
        encoder = self.metadata_transformer_.named_transformers_["categorical"]
        self.cardinalities_ = (
            [len(c) for c in encoder.categories_] if self.categorical_cols_ else []
        )
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        return self

    def to_state(self):
        """The fitted state as plain values (parameters, columns, medians, scaling, categories).

        :meth:`from_state` rebuilds exactly this preprocessor (:mod:`bmdkit.persistence`
        writes the state as JSON). A missing value seen as a category is ``None``.
        """
        check_is_fitted(self, "metadata_transformer_")
        numeric = self.metadata_transformer_.named_transformers_["numeric"]
        imputer, scaler = numeric.named_steps["simpleimputer"], numeric.named_steps["standardscaler"]
        encoder = self.metadata_transformer_.named_transformers_["categorical"]
        has_numeric, has_categorical = bool(self.numeric_cols_), bool(self.categorical_cols_)
        return {
            "params": self.get_params(),
            "numeric_cols_": self.numeric_cols_,
            "categorical_cols_": self.categorical_cols_,
            "cardinalities_": [int(c) for c in self.cardinalities_],
            "feature_names_in_": [str(c) for c in self.feature_names_in_],
            "imputer_statistics": imputer.statistics_.tolist() if has_numeric else [],
            "scaler_mean": scaler.mean_.tolist() if has_numeric else [],
            "scaler_var": scaler.var_.tolist() if has_numeric else [],
            "scaler_scale": scaler.scale_.tolist() if has_numeric else [],
            "scaler_n_samples_seen": int(np.max(scaler.n_samples_seen_)) if has_numeric else 0,
            "categories": [[_plain(c) for c in cats] for cats in encoder.categories_]
                          if has_categorical else [],
        }

    @classmethod
    def from_state(cls, state):
        """The fitted preprocessor of :meth:`to_state`'s ``state``, checked against it.

        The scikit-learn transformers are fit on a few stand-in rows holding the
        saved medians and categories (so that their internal structure is
        scikit-learn's own), then the learned numbers are set to the saved ones.

        Raises
        ------
        SavedFileError
            The rebuilt preprocessor's columns or categories differ from the
            state's: the saved state is damaged or was altered.
        """
        numeric, categorical = state["numeric_cols_"], state["categorical_cols_"]
        categories = [[np.nan if c is None else c for c in cats] for cats in state["categories"]]
        n_rows = max([2] + [len(c) for c in categories])
        frame = {}
        for name in state["feature_names_in_"]:
            if name in numeric:
                frame[name] = np.full(n_rows, state["imputer_statistics"][numeric.index(name)])
            elif name in categorical:
                cats = categories[categorical.index(name)]
                frame[name] = pd.Series([cats[i % len(cats)] for i in range(n_rows)], dtype=object)
            else:
                frame[name] = np.zeros(n_rows)
        params = state["params"]
        pre = cls(**{**params, "numeric_cols": numeric, "categorical_cols": categorical})
        pre.fit(pd.DataFrame(frame))
        pre.set_params(**params)
        if numeric:
            steps = pre.metadata_transformer_.named_transformers_["numeric"].named_steps
            steps["simpleimputer"].statistics_ = np.asarray(state["imputer_statistics"], np.float64)
            scaler = steps["standardscaler"]
            scaler.mean_ = np.asarray(state["scaler_mean"], np.float64)
            scaler.var_ = np.asarray(state["scaler_var"], np.float64)
            scaler.scale_ = np.asarray(state["scaler_scale"], np.float64)
            scaler.n_samples_seen_ = state["scaler_n_samples_seen"]
        pre.feature_names_in_ = np.asarray(state["feature_names_in_"], dtype=object)
        restored = pre.to_state()
        for key in ("numeric_cols_", "categorical_cols_", "cardinalities_", "categories"):
            if restored[key] != state[key]:
                raise SavedFileError(f"could not restore the preprocessor: {key} differs "
                                     f"({restored[key]!r} != {state[key]!r})")
        return pre

    def transform(self, X):
        """Arrays ``{"image"?, "numeric", "categorical"}`` for the network."""
        return self._transform(X, images=True)

    def transform_metadata(self, X):
        """Arrays ``{"numeric", "categorical"}`` only: no image is read.

        With :meth:`transform_images` (or :func:`bmdkit.io.preprocess_image`
        per file), what :meth:`transform` returns, cut apart so that images
        can be read chunk by chunk (:mod:`bmdkit.inference`).
        """
        return self._transform(X, images=False)

    def transform_images(self, X):
        """The images of ``X``'s rows, ``(n, 1, image_size, image_size)`` float32, through the cache."""
        check_is_fitted(self, "metadata_transformer_")
        if self.image_col is None:
            raise ParameterError("this preprocessor was fit without an image column (image_col=None)")
        X = as_frame(X)
        check_columns(X, [self.image_col], role="column seen in fit")
        return load_images(
            X[self.image_col].tolist(), image_size=self.image_size, contrast=self.contrast,
            cache_dir=self.cache_dir, index=X.index,
        )[:, None]

    def _transform(self, X, images):
        check_is_fitted(self, "metadata_transformer_")
        X = as_frame(X)
        with_images = images and self.image_col is not None
        needed = self.numeric_cols_ + self.categorical_cols_
        if with_images:
            needed = [self.image_col] + needed

        def read_images():
            if not with_images or self.image_col not in X.columns:
                return None
            return self.transform_images(X)

        _, _, image_array = check_all(  # one error naming every missing column, bad cell and image
            lambda: check_columns(X, needed, role="column seen in fit"),
            lambda: check_numeric(X, [c for c in self.numeric_cols_ if c in X.columns]),
            read_images,
        )
        warn_missing_values(X, self.numeric_cols_ + self.categorical_cols_)
        n_num = len(self.numeric_cols_)
        meta = X[self.numeric_cols_ + self.categorical_cols_].astype(
            {c: object for c in self.categorical_cols_})
        if len(X):
            encoded = np.asarray(self.metadata_transformer_.transform(meta), dtype=np.float64)
        else:  # scikit-learn's transformers refuse no rows; no rows is no rows
            encoded = np.empty((0, meta.shape[1]))
        arrays = {
            "numeric": np.ascontiguousarray(encoded[:, :n_num], dtype=np.float32),
            "categorical": np.ascontiguousarray(encoded[:, n_num:] + 1, dtype=np.int64),
        }
        if image_array is not None:
            arrays["image"] = image_array
        return arrays
