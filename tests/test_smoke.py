import numpy as np

from bmdkit import XAttnBMDRegressor


def test_fit_predict_shapes(signal_cohort):
    X, y = signal_cohort
    model = XAttnBMDRegressor(image_size=32, max_epochs=1, batch_size=32, random_state=0)
    pred = model.fit(X.iloc[:40], y[:40]).predict(X.iloc[40:50])
    assert pred.dtype == np.float64 and pred.shape == (10,)
    assert np.all(np.isfinite(pred))
