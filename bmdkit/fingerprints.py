"""What determines a fit, as hex digests: the data and the model's parameters.

A store of finished cross-validation fits (:mod:`bmdkit.fit_store`) and a
fit's own checkpoint (:mod:`bmdkit.checkpoint`) reuse saved work only when
these match, so that nothing fitted on other data or with other settings is
ever taken for the fit asked for. Imports nothing of bmdkit, nor torch.
"""

from __future__ import annotations

import hashlib
import json

import joblib
import numpy as np

__all__ = ["IGNORED_PARAMS", "data_fingerprint", "model_key"]

#: Estimator parameters that do not change a fit's predictions: work saved with
#: other values of these is reused.
IGNORED_PARAMS = ("verbose", "cache_dir", "checkpoint_dir")


def data_fingerprint(X, y):
    """A hex digest of the values, columns and row order of ``X`` and ``y``.

    Images are identified by their paths in ``X``: an image file changed in
    place is not seen.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"age": [70, 75]})
    >>> data_fingerprint(X, [0.8, 0.9]) == data_fingerprint(X.copy(), [0.8, 0.9])
    True
    >>> data_fingerprint(X, [0.8, 0.9]) == data_fingerprint(X, [0.8, 0.91])
    False
    """
    import pandas as pd

    digest = hashlib.sha256()
    for part in (X, y):
        if isinstance(part, (pd.DataFrame, pd.Series)):
            digest.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
            names = part.columns if isinstance(part, pd.DataFrame) else [part.name]
            digest.update(json.dumps([str(name) for name in names]).encode())
        else:
            digest.update(joblib.hash(np.asarray(part)).encode())
    return digest.hexdigest()


def model_key(model):
    """A hex digest of ``model``'s class and parameters, :data:`IGNORED_PARAMS` left out.

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> model_key(Ridge(alpha=1.0)) == model_key(Ridge()), model_key(Ridge(2.0)) == model_key(Ridge())
    (True, False)
    """
    params = {name: value for name, value in model.get_params(deep=False).items()
              if name not in IGNORED_PARAMS}
    return joblib.hash((type(model).__module__, type(model).__qualname__, params))
