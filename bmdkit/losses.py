"""Regression losses that up-weight rare and clinically important targets.

The weights follow label distribution smoothing (LDS, Yang et al., "Delving
into Deep Imbalanced Regression", ICML 2021): the empirical histogram of the
training targets is smoothed with a Gaussian kernel and every sample is
weighted by a power of the inverse of the smoothed density at its target,
bounded, so that rare (mostly very low or very high) BMD values count more
without a handful of them dominating the fit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter1d
from torch import nn

from bmdkit.clinical import LUNAR_T_MINUS_1_FEMORAL_NECK
from bmdkit.errors import ParameterError
from bmdkit.registry import LOSSES, Entry

__all__ = ["LOSSES", "TargetDensityWeights", "WeightedSmoothL1Loss", "make_criterion",
           "register_loss", "uses_density_weights"]


class TargetDensityWeights:
    r"""Bounded per-sample weights from the smoothed density of the training targets.

    With the training targets binned into ``n_bins`` equal-width bins with
    counts :math:`c_b`, the smoothed density is
    :math:`\tilde c = G_\sigma * c` (a Gaussian kernel of ``sigma`` bins, as
    in label distribution smoothing) and a sample whose target falls in bin
    :math:`b(y)` gets

    .. math::

        w(y) = \frac{1}{Z}\,
               \min\Big(\Big(\frac{\max_b \tilde c_b}{\tilde c_{b(y)}}\Big)^{p},\;
               r_{\max}\Big)\, \lambda^{[y < t]}

    where :math:`p` is ``power`` (0: no density weighting, 1: inverse
    density), :math:`r_{\max}` is ``max_ratio`` (no bin weighs more than that
    many times the commonest), :math:`t` is ``threshold`` (default T = -1 on
    a GE Lunar femoral neck, 0.899 g/cm²), :math:`\lambda` is
    ``threshold_weight`` and :math:`Z` normalises the weights to mean 1 over
    the training targets. Targets outside the training range take the
    weight of the nearest bin. Plain inverse density (``power=1``, no bound)
    reaches ~28x on real BMD tables and wrecks the fit; the defaults were
    chosen by the measurements in docs/model.md.

    Several sites (``y`` of shape (n, k)): each column gets the weights above
    from its own targets (its own bins, density and normalisation), and
    the tables are stacked, one row per site; a target's weight is looked
    up in its column's table.

    Parameters
    ----------
    n_bins : int, default=20
        Number of equal-width bins over the range of the training targets.
    sigma : float, default=2.0
        Standard deviation of the Gaussian smoothing kernel, in bins.
    power : float in [0, 1], default=0.5
        Exponent of the inverse density.
    max_ratio : float >= 1, default=3.0
        Largest density weight relative to the commonest bin's.
    threshold : float, sequence of float or None, default=0.899
        Targets below this value are multiplied by ``threshold_weight``; for
        several sites one value per site (``None`` entries: none there), or
        one value for every site.
    threshold_weight : float >= 0, default=1.5
        Extra factor for targets below ``threshold`` (1.0 switches it off).

    Attributes
    ----------
    bin_edges_ : ndarray of shape (n_bins + 1,), or (k, n_bins + 1) for k sites
    bin_weights_ : ndarray of shape (n_bins,), or (k, n_bins) for k sites
        Weight of a target falling in each bin.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.r_[np.full(90, 0.9), np.full(10, 0.6)]
    >>> w = TargetDensityWeights(n_bins=10, sigma=1.0, max_ratio=2.0, threshold=None).fit(y)(y)
    >>> round(float(w[-1] / w[0]), 6), round(float(w.mean()), 6)
    (2.0, 1.0)
    """

    def __init__(self, n_bins=20, sigma=2.0, power=0.5, max_ratio=3.0,
                 threshold=LUNAR_T_MINUS_1_FEMORAL_NECK, threshold_weight=1.5):
        self.n_bins = n_bins
        self.sigma = sigma
        self.power = power
        self.max_ratio = max_ratio
        self.threshold = threshold
        self.threshold_weight = threshold_weight

    def fit(self, y):
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] > 1:
            return self._fit_sites(y)
        y = y.ravel()
        lo, hi = float(y.min()), float(y.max())
        if hi <= lo:
            hi = lo + 1e-6
        counts, edges = np.histogram(y, bins=self.n_bins, range=(lo, hi))
        density = gaussian_filter1d(counts.astype(np.float64), self.sigma, mode="constant")
        ratio = density.max() / np.maximum(density, 1e-12 * density.max())
        weights = np.minimum(ratio ** self.power, self.max_ratio)
        if self.threshold is not None and self.threshold_weight != 1.0:
            centres = 0.5 * (edges[:-1] + edges[1:])
            weights = np.where(centres < self.threshold, weights * self.threshold_weight, weights)
        self.bin_edges_ = edges
        self.bin_weights_ = weights
        self.bin_weights_ = weights / self(y).mean()
        return self

    def _fit_sites(self, y):
        """One table per column of ``y`` (n, k), stacked."""
        thresholds = self.threshold
        if thresholds is None or np.ndim(thresholds) == 0:
            thresholds = [thresholds] * y.shape[1]
        if len(thresholds) != y.shape[1]:
            raise ParameterError(f"threshold has {len(thresholds)} values for {y.shape[1]} sites")
        params = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        tables = [type(self)(**{**params, "threshold": t}).fit(y[:, j])
                  for j, t in enumerate(thresholds)]
        self.bin_edges_ = np.stack([t.bin_edges_ for t in tables])
        self.bin_weights_ = np.stack([t.bin_weights_ for t in tables])
        return self

    def to_state(self):
        """The fitted weights as plain values: parameters and the weight table(s)."""
        return {"params": {k: v for k, v in vars(self).items() if not k.endswith("_")},
                "bin_edges_": self.bin_edges_.tolist(), "bin_weights_": self.bin_weights_.tolist()}

    @classmethod
    def from_state(cls, state):
        """The fitted weights of :meth:`to_state`'s ``state``."""
        weights = cls(**state["params"])
        weights.bin_edges_ = np.asarray(state["bin_edges_"], np.float64)
        weights.bin_weights_ = np.asarray(state["bin_weights_"], np.float64)
        return weights

    def __call__(self, y):
        """Weights of targets ``y`` (array-like), as a float64 array (n,), or (n, k) for k sites."""
        if self.bin_edges_.ndim == 2:
            y = np.asarray(y, dtype=np.float64)
            return np.stack([self._lookup(y[:, j], self.bin_edges_[j], self.bin_weights_[j])
                             for j in range(len(self.bin_edges_))], axis=1)
        return self._lookup(np.asarray(y, dtype=np.float64).ravel(), self.bin_edges_,
                            self.bin_weights_)

    def _lookup(self, y, edges, weights):
        idx = np.clip(np.searchsorted(edges[1:-1], y, side="right"), 0, self.n_bins - 1)
        return weights[idx]


class WeightedSmoothL1Loss(nn.Module):
    r"""Smooth L1 (Huber) loss with a weight per target value.

    .. math::

        \mathcal L = \frac{1}{N} \sum_i w(y_i)\, \ell_\beta(\hat y_i - y_i),
        \qquad
        \ell_\beta(r) = \begin{cases} r^2 / (2\beta) & |r| < \beta \\
                                      |r| - \beta / 2 & \text{otherwise}
                        \end{cases}

    where :math:`w` is a piecewise-constant lookup table (see
    :class:`TargetDensityWeights`). Without a table every weight is 1 and the
    loss is plain Smooth L1.

    Parameters
    ----------
    beta : float, default=1.0
        Where the loss changes from quadratic to linear.
    bin_edges, bin_weights : array-like or None
        The weight table: ``bin_weights[b]`` applies to targets in
        ``[bin_edges[b], bin_edges[b + 1])``; the outer bins extend to infinity.
        2-D tables, ``(k, n_bins + 1)`` and ``(k, n_bins)``, hold one table
        per target column (several sites): column ``j`` of the targets is
        weighted by table ``j``. A 1-D table weights every column alike.

    Examples
    --------
    >>> import torch
    >>> loss = WeightedSmoothL1Loss(beta=1.0, bin_edges=[0.0, 0.5, 1.0], bin_weights=[3.0, 1.0])
    >>> float(loss(torch.tensor([[0.5], [1.5]]), torch.tensor([[0.0], [1.0]])))
    0.25
    """

    def __init__(self, beta=1.0, bin_edges=None, bin_weights=None):
        super().__init__()
        self.beta = beta
        if (bin_edges is None) != (bin_weights is None):
            raise ParameterError("bin_edges and bin_weights must be given together")
        if bin_edges is None:
            bin_edges, bin_weights = [0.0, 1.0], [1.0]
        self.register_buffer("bin_edges", torch.as_tensor(np.asarray(bin_edges, np.float32)))
        self.register_buffer("bin_weights", torch.as_tensor(np.asarray(bin_weights, np.float32)))

    def weights(self, target):
        if self.bin_edges.ndim == 1:
            return _lookup(target, self.bin_edges, self.bin_weights)
        if target.ndim != 2 or target.shape[1] != len(self.bin_edges):
            raise ValueError(f"{len(self.bin_edges)} weight tables for targets of shape "
                             f"{tuple(target.shape)}")
        return torch.stack([_lookup(target[:, j], edges, weights) for j, (edges, weights)
                            in enumerate(zip(self.bin_edges, self.bin_weights))], dim=1)

    def forward(self, input, target):
        if input.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(input.shape)} and target shape {tuple(target.shape)} "
                "differ; they would broadcast silently"
            )
        losses = F.smooth_l1_loss(input, target, beta=self.beta, reduction="none")
        return (self.weights(target) * losses).mean()


def _lookup(target, bin_edges, bin_weights):
    """The weight of each of ``target``'s values in one table (a bin lookup)."""
    inner = bin_edges[1:-1].to(target.dtype).contiguous()
    idx = torch.bucketize(target.contiguous(), inner, right=True)
    return bin_weights.to(target.dtype)[idx]


def make_criterion(loss, *, beta=1.0, weights=None, y_mean=0.0, y_scale=1.0):
    """The skorch criterion settings (``criterion``, ``criterion__*``) of a named loss.

    Parameters
    ----------
    loss : {"weighted_smooth_l1", "smooth_l1", "mse"}
        ``"weighted_smooth_l1"`` is :class:`WeightedSmoothL1Loss` with the
        table of ``weights``; ``"smooth_l1"`` the same loss with all weights 1.
    beta : float, default=1.0
        Smooth L1 transition point, on the training scale of the targets.
    weights : TargetDensityWeights or None, default=None
        Fitted on the targets in their own units; needed by ``"weighted_smooth_l1"``.
    y_mean, y_scale : float, or ndarray of shape (k,) for k sites, default=0.0, 1.0
        The network trains on ``(y - y_mean) / y_scale``: the weight table's
        bin edges are moved to that scale (each site's table to its own).

    Returns
    -------
    dict
        Keyword arguments for a skorch net.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.linspace(0.6, 1.2, 50)
    >>> weights = TargetDensityWeights(n_bins=5).fit(y)
    >>> settings = make_criterion("weighted_smooth_l1", weights=weights, y_mean=0.9, y_scale=0.2)
    >>> settings["criterion"].__name__, settings["criterion__bin_edges"][[0, -1]].round(2).tolist()
    ('WeightedSmoothL1Loss', [-1.5, 1.5])
    """
    return LOSSES.load(loss)(beta=beta, weights=weights, y_mean=y_mean, y_scale=y_scale)


def register_loss(name, *, label=None, summary="", density_weights=False):
    """Decorator adding a loss of one's own to :data:`bmdkit.registry.LOSSES` under ``name``.

    The decorated function takes ``beta``, ``weights``, ``y_mean`` and ``y_scale``
    (as :func:`make_criterion`) and returns the skorch criterion settings;
    ``density_weights``: whether it needs fitted :class:`TargetDensityWeights`
    (the estimator fits them for it). ``label`` is appended to a fusion's label
    in model names (default: ``+name``).
    """
    def decorate(function):
        LOSSES.add(Entry(name, f"+{name}" if label is None else label, function, summary,
                         tags=("density_weights",) if density_weights else ()))
        return function
    return decorate


def uses_density_weights(loss):
    """Whether the loss ``loss`` needs fitted :class:`TargetDensityWeights`."""
    return "density_weights" in LOSSES.entry(loss).tags


# -- the built-in losses of bmdkit.registry.LOSSES --------------------------------------
def smooth_l1_criterion(*, beta=1.0, **unused):
    """Smooth L1 with every weight 1."""
    return dict(criterion=WeightedSmoothL1Loss, criterion__beta=beta)


def weighted_smooth_l1_criterion(*, beta=1.0, weights=None, y_mean=0.0, y_scale=1.0):
    """Smooth L1 weighted by the table of fitted :class:`TargetDensityWeights`."""
    if weights is None:
        raise ParameterError("loss='weighted_smooth_l1' needs fitted TargetDensityWeights")
    edges = weights.bin_edges_
    if edges.ndim == 2:  # one table per site, each moved to its own site's scale
        y_mean, y_scale = np.asarray(y_mean)[:, None], np.asarray(y_scale)[:, None]
    return dict(criterion=WeightedSmoothL1Loss, criterion__beta=beta,
                criterion__bin_edges=(edges - y_mean) / y_scale,
                criterion__bin_weights=weights.bin_weights_)


def mse_criterion(**unused):
    """Mean squared error."""
    return dict(criterion=nn.MSELoss)
