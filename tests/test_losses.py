import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from bmdkit.losses import TargetDensityWeights, WeightedSmoothL1Loss


def test_density_weights_match_the_documented_formula():
    rng = np.random.default_rng(0)
    y = rng.normal(0.8, 0.12, 500)
    weights = TargetDensityWeights(n_bins=15, sigma=1.5, power=0.5, max_ratio=4.0,
                                   threshold=0.7, threshold_weight=2.0).fit(y)

    counts, edges = np.histogram(y, bins=15)
    smoothed = gaussian_filter1d(counts.astype(float), 1.5, mode="constant")
    bins = np.clip(np.digitize(y, edges[1:-1]), 0, 14)
    expected = np.minimum((smoothed.max() / smoothed[bins]) ** 0.5, 4.0)
    centres = (edges[:-1] + edges[1:]) / 2
    expected = expected * np.where(centres[bins] < 0.7, 2.0, 1.0)
    expected /= expected.mean()

    np.testing.assert_allclose(weights(y), expected, rtol=1e-12)
    assert weights(y).mean() == pytest.approx(1.0)
    low, typical = weights([y.min()])[0], weights([np.median(y)])[0]
    assert low > 3 * typical


def test_density_weights_are_bounded_and_power_zero_switches_them_off():
    y = np.random.default_rng(0).lognormal(0, 0.6, 2000)  # long right tail: raw ratios in the 100s
    bounded = TargetDensityWeights(power=1.0, max_ratio=3.0, threshold=None).fit(y)
    assert bounded.bin_weights_.max() / bounded.bin_weights_.min() == pytest.approx(3.0)
    flat = TargetDensityWeights(power=0.0, threshold=None).fit(y)
    np.testing.assert_allclose(flat(y), 1.0)


def test_weighted_loss_equals_manual_weighted_smooth_l1():
    edges, table = np.array([-1.0, 0.0, 1.0]), np.array([4.0, 0.5])
    loss = WeightedSmoothL1Loss(beta=0.5, bin_edges=edges, bin_weights=table)
    pred = torch.tensor([[0.3], [-2.0], [0.9], [5.0]])
    target = torch.tensor([[-0.5], [-1.5], [0.2], [3.0]])
    r = (pred - target).abs().numpy().ravel()
    huber = np.where(r < 0.5, 0.5 * r**2 / 0.5, r - 0.25)
    w = np.array([4.0, 4.0, 0.5, 0.5])
    assert float(loss(pred, target)) == pytest.approx(np.mean(w * huber))


def test_unweighted_loss_is_plain_smooth_l1():
    pred, target = torch.randn(8, 1), torch.randn(8, 1)
    expected = torch.nn.functional.smooth_l1_loss(pred, target, beta=1.0)
    assert torch.allclose(WeightedSmoothL1Loss()(pred, target), expected)


def test_loss_refuses_shapes_that_would_broadcast():
    with pytest.raises(ValueError, match="broadcast"):
        WeightedSmoothL1Loss()(torch.zeros(4, 1), torch.zeros(4))


def test_several_sites_weight_each_column_by_its_own_table():
    """Column j of a (n, k) target gets the weights a 1-D fit on column j alone gives it."""
    rng = np.random.default_rng(0)
    Y = np.c_[rng.normal(0.85, 0.12, 300), rng.gamma(4.0, 0.05, 300) + 0.8]
    both = TargetDensityWeights(n_bins=10, threshold=[0.899, None]).fit(Y)
    alone = [TargetDensityWeights(n_bins=10, threshold=t).fit(Y[:, j])
             for j, t in enumerate([0.899, None])]
    assert both.bin_edges_.shape == (2, 11) and both.bin_weights_.shape == (2, 10)
    np.testing.assert_array_equal(both(Y), np.c_[alone[0](Y[:, 0]), alone[1](Y[:, 1])])
    np.testing.assert_allclose(both(Y).mean(axis=0), [1.0, 1.0])
    loss = WeightedSmoothL1Loss(beta=0.5, bin_edges=both.bin_edges_, bin_weights=both.bin_weights_)
    target = torch.tensor(Y, dtype=torch.float32)
    pred = target + torch.tensor(rng.normal(0, 0.3, Y.shape), dtype=torch.float32)
    manual = torch.nn.functional.smooth_l1_loss(pred, target, beta=0.5, reduction="none")
    expected = (torch.tensor(both(Y), dtype=torch.float32) * manual).mean()
    assert float(loss(pred, target)) == pytest.approx(float(expected), rel=1e-5)
    # one site's table, from the same module, is the 1-D loss exactly
    single = WeightedSmoothL1Loss(beta=0.5, bin_edges=alone[0].bin_edges_,
                                  bin_weights=alone[0].bin_weights_)
    torch.testing.assert_close(single.weights(target[:, :1]),
                               loss.weights(target)[:, :1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="threshold has 3 values for 2 sites"):
        TargetDensityWeights(threshold=[0.9, 0.8, 0.7]).fit(Y)
