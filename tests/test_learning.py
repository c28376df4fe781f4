"""The models learn: fusion beats either modality alone when both carry signal."""

import numpy as np
from settings import LEARNING as TINY
from sklearn.model_selection import KFold, cross_val_score

from bmdkit import (
    ConcatBMDRegressor,
    ImageOnlyBMDRegressor,
    MetadataOnlyBMDRegressor,
    XAttnBMDRegressor,
)


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


def test_xattn_looks_where_the_metadata_say(bilateral_signal_cohort):
    """Two rings, BMD from the one ``side`` names: XAttn's pooling learns to look there.

    Concat pools the whole image, mixing the two rings; XAttn's metadata-position
    pooling (docs/model.md) lets ``side`` choose the ring.
    """
    X, y = bilateral_signal_cohort
    train, test = np.arange(120), np.arange(120, len(y))
    settings = dict(TINY, image_size=64)
    xattn = XAttnBMDRegressor(loss="smooth_l1", **settings).fit(X.iloc[train], y[train])
    concat = ConcatBMDRegressor(**settings).fit(X.iloc[train], y[train])
    r2 = {name: model.score(X.iloc[test], y[test])
          for name, model in (("xattn", xattn), ("concat", concat))}
    assert r2["xattn"] > r2["concat"] + 0.1, r2
    # 32 x 64 px pairs padded to 64 px: a 2 x 2 token grid, the image's left half in column 0
    pooling = xattn.attention(X.iloc[test])["image_pooling"]
    left_half = pooling[:, [0, 2]].sum(axis=1)
    right = (X["side"].iloc[test] == "right").to_numpy()  # the right ring is the left one
    assert left_half[right].mean() > left_half[~right].mean() + 0.2, pooling
