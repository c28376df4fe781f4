"""The models learn: fusion beats either modality alone when both carry signal."""

import numpy as np
from sklearn.model_selection import KFold, cross_val_score

from bmdkit import (
    ConcatBMDRegressor,
    ImageOnlyBMDRegressor,
    MetadataOnlyBMDRegressor,
    XAttnBMDRegressor,
)

TINY = dict(image_size=32, max_epochs=12, backbone="resnet10t", embed_dim=32, n_layers=2,
            random_state=0)


def test_fusion_beats_single_modalities(signal_cohort):
    """BMD = metadata part + ring thickness seen only in the image (tests/conftest.py)."""
    X, y = signal_cohort
    cv = KFold(3, shuffle=True, random_state=0)
    r2 = {
        model.__class__.__name__: cross_val_score(model, X, y, cv=cv).mean()
        for model in (XAttnBMDRegressor(**TINY), ConcatBMDRegressor(**TINY),
                      ImageOnlyBMDRegressor(**TINY), MetadataOnlyBMDRegressor(**TINY))
    }
    single = max(r2["ImageOnlyBMDRegressor"], r2["MetadataOnlyBMDRegressor"])
    assert r2["XAttnBMDRegressor"] > single + 0.15, r2
    assert r2["ConcatBMDRegressor"] > single + 0.15, r2
    assert min(r2["ImageOnlyBMDRegressor"], r2["MetadataOnlyBMDRegressor"]) > 0.05, r2
    assert np.isfinite(list(r2.values())).all()
