"""scikit-learn estimators: BMDRegressor and the named XAttn-BMD models.

The named models (``XAttnBMDRegressor``, ``ConcatBMDRegressor``, ...,
``MetadataOnlyBMDRegressor``) are BMDRegressor with one fusion fixed, made from
the fusion registry (:data:`bmdkit.registry.FUSIONS`: class name, summary and
changed defaults). A metadata-only model needs no image column:

>>> import numpy as np, pandas as pd
>>> from bmdkit import MetadataOnlyBMDRegressor
>>> rng = np.random.default_rng(0)
>>> X = pd.DataFrame({"age": rng.uniform(50, 90, 200), "sex": rng.choice(["F", "M"], 200)})
>>> y = 1.2 - 0.006 * X["age"] + 0.1 * (X["sex"] == "M") + rng.normal(0, 0.05, 200)
>>> model = MetadataOnlyBMDRegressor(max_epochs=20, random_state=0).fit(X, y)
>>> model.score(X, y) > 0.5
True
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from skorch import NeuralNetRegressor
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.dataset import ValidSplit

from bmdkit.batching import FAST_DATA_PATH, fused_adamw, torch_threads
from bmdkit.checkpoint import checkpoint_callbacks, epochs_left
from bmdkit.checks import check_all, check_targets, warn_target_units
from bmdkit.clinical import LUNAR_T_MINUS_1_FEMORAL_NECK
from bmdkit.defaults import ESTIMATOR_DEFAULTS as DEFAULTS
from bmdkit.errors import InputError, ParameterError
from bmdkit.estimator_params import CONSTRAINTS, named_model, signature_of
from bmdkit.estimator_state import from_state, to_state
from bmdkit.inference import predict_cached
from bmdkit.losses import TargetDensityWeights, make_criterion, uses_density_weights
from bmdkit.nn import BMDNet, fusion_class
from bmdkit.nn.backbones import check_tiles
from bmdkit.nn.frozen import FrozenFeatureDataset
from bmdkit.nn.weights import check_pretrained
from bmdkit.params import validate_params
from bmdkit.persistence import load, register_estimator, save
from bmdkit.preprocessing import BMDPreprocessor, TargetScaling, as_frame, site_names_of
from bmdkit.registry import FUSIONS, LOSSES, model_label
from bmdkit.rng import FitRandomness

__all__ = ["BMDRegressor", "NAMED_MODELS", "ablation_models", "load", "model_label"]

#: Estimator parameters that are :class:`~bmdkit.nn.BMDNet`'s too: passed to it as skorch
#: ``module__<name>``.
MODULE_PARAMS = ("fusion", "backbone", "pretrained", "embed_dim", "n_heads", "n_layers", "dropout",
                 "augment", "freeze_backbone", "precision", "channels_last", "modality_dropout",
                 "image_tiles")
@register_estimator
class BMDRegressor(RegressorMixin, BaseEstimator):
    """Femoral neck BMD from a radiograph plus metadata, as a scikit-learn regressor.

    ``X`` is a pandas DataFrame with one column of image paths (``image_col``)
    and metadata columns; ``y`` is BMD in g/cm². Inside, a
    :class:`~bmdkit.preprocessing.BMDPreprocessor` (fit on the training rows
    only) feeds a skorch ``NeuralNetRegressor`` training a
    :class:`~bmdkit.nn.BMDNet`. Targets are standardised for training and
    predictions returned in g/cm². ``y`` may hold several BMD sites (a
    DataFrame or 2-D array, one column per site): one network then predicts
    all of them, ``(n, k)``; a 1-D ``y`` gives ``(n,)`` predictions.

    Parameters
    ----------
    fusion : {"xattn", "concat", "daft", "gated", "late", "image", "metadata"}, default="xattn"
        How image and metadata meet: a registered fusion
        (:mod:`bmdkit.nn.fusions`, docs/model.md).
    image_col : str, default="image_path"
        Column of image paths. Ignored (and may be absent) for ``"metadata"``.
    numeric_cols, categorical_cols : list of str or None, default=None
        Metadata columns; ``None`` detects them from dtypes.
    backbone : str, default="resnet10t"
        timm model name of the image encoder.
    pretrained : bool or path, default=False
        ``False``, or a local weights file (no hub download), e.g. from ``bmdkit
        pretrain`` (docs/pretraining.md; :func:`bmdkit.nn.weights.check_pretrained`).
    image_size : int, default=64
        Side of the square network input in pixels. Why the defaults
        (resnet10t, 64 px, 20 epochs), and what larger images need: docs/performance.md.
    image_tiles : (int, int), default=(1, 1)
        Cut each image into this grid of tiles (rows, cols) and encode every
        tile on its own (:class:`~bmdkit.nn.backbones.ImageEncoder`), so
        that the backbone features of each image token come from one tile.
        ``(1, 2)`` for AP pelvis views showing both hips: XAttn's
        metadata-position pooling can then pick the hip that ``dxa_side``
        names, where a plain mean mixes both (docs/model.md, bilateral
        cohort). ``image_size`` must be divisible by both. On the command
        line: ``--param image_tiles=[1,2]``.
    embed_dim, n_heads, n_layers : int, default=64, 4, 3
        Token width, attention heads and cross-attention layers.
    dropout : float, default=0.1
    augment : bool, default=True
        Random rotation/shift/scale/brightness/contrast/noise while training
        (not with ``freeze_backbone``: it acts before the backbone).
    modality_dropout : float in [0, 1), default=0.0
        While training, hide the image of this share of the rows (drawn
        anew every batch), so that the network learns a "no image" token and
        to predict from the metadata alone (docs/uncertainty.md, "Missing
        images"); 0 (off) trains as before. For fusions that read images.
    missing_image : {"error", "metadata"}, default="error"
        At predict time, a row whose ``image_col`` is empty, blank, None or
        NaN: ``"error"`` names it in an :class:`~bmdkit.checks.InputError`;
        ``"metadata"`` predicts it from its metadata alone (needs
        ``modality_dropout > 0``; which rows: :func:`bmdkit.inference.missing_images`).
        A path to a missing or unreadable file is an error either way.
        Settable on a fitted model (``set_params``): no refit needed.
    freeze_backbone : bool, default=False
        Keep the backbone's weights fixed (eval mode) and train the rest on
        its features, computed once per image and cached in the process
        across epochs, folds and trials (:mod:`bmdkit.nn.frozen`). The fast
        path for a ``pretrained`` backbone; see docs/performance.md.
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"`` trains and predicts under ``torch.autocast`` (CPU with
        AVX-512 BF16/AMX, or CUDA); see docs/performance.md for when it pays.
        For float16 on GPUs use :class:`bmdkit.scaleout.AcceleratedBMDRegressor`
        (Accelerate's ``mixed_precision="fp16"`` scales the loss).
    channels_last : bool, default=False
        Backbone weights and images in channels-last memory format.
    compile : bool, default=False
        ``torch.compile`` the network (skorch's ``compile``): a one-off
        compilation for faster steps afterwards (docs/performance.md).
    contrast : {"percentile", "minmax", "none"}, default="percentile"
        Per-image contrast normalisation before the network.
    cache_dir : str or None, default=None
        On-disk image cache shared by processes (else ``BMDKIT_CACHE_DIR``,
        else an in-process cache).
    loss : {"smooth_l1", "weighted_smooth_l1", "mse"}, default="smooth_l1"
        ``"weighted_smooth_l1"`` (XAttn-BMD's loss) is
        :class:`~bmdkit.losses.WeightedSmoothL1Loss` with
        :class:`~bmdkit.losses.TargetDensityWeights`; ``"smooth_l1"`` is the
        same loss with all weights 1. The default is unweighted because the
        density weights cost R² on real data (see docs/model.md).
    smooth_l1_beta : float, default=1.0
        Smooth L1 transition point, in standard deviations of y.
    lds_bins, lds_sigma : int, float, default=20, 2.0
        Bins and kernel width (in bins) of the target-density weights.
    lds_power : float in [0, 1], default=0.5
        Exponent of the inverse target density in the weights.
    max_weight_ratio : float >= 1, default=3.0
        Bound on a target's density weight relative to the commonest target's.
    low_bmd_threshold : float or sequence of float, default=0.899
        BMD (g/cm²) below which ``low_bmd_weight`` applies (T = -1, Lunar);
        for several sites one value per site (``None``: none at that site),
        or one value for all. Each site's targets are weighted by their own
        density (:class:`~bmdkit.losses.TargetDensityWeights`).
    low_bmd_weight : float, default=1.5
        Extra weight for targets below ``low_bmd_threshold`` (with
        ``"weighted_smooth_l1"``).
    max_epochs : int, default=20
    batch_size : int, default=16
    lr : float, default=1e-3
        AdamW learning rate of every layer (a separate, lower rate for the
        backbone and a warm-up did not help: docs/model.md).
    weight_decay : float, default=1e-4
    lr_schedule : {"cosine", None}, default="cosine"
        ``"cosine"`` anneals the learning rate to 0 over ``max_epochs``
        (skorch ``LRScheduler`` callback); ``None`` keeps it constant.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training rows (shuffled) and
        stop when the validation loss has not improved for
        ``n_iter_no_change`` epochs, restoring the best weights (in memory).
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    callbacks : list of skorch callbacks or None, default=None
        Extra callbacks for the skorch net.
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling and augmentation: an int makes a CPU fit
        reproducible bit for bit (on the same machine with the same torch
        thread count: floating-point sums run in another order on more or
        fewer threads).
    device : str, default="cpu"
        Torch device, e.g. ``"cuda"``.
    n_threads : int or None, default=None
        Torch intra-op threads during ``fit`` and ``predict``
        (``torch.set_num_threads``, restored afterwards); ``None`` keeps
        torch's setting. See docs/performance.md.
    verbose : int, default=0
        1 prints skorch's per-epoch table (train loss, and validation loss
        with early stopping).
    checkpoint_dir : str, Path or None, default=None
        Save the whole training state there after every epoch
        (:class:`bmdkit.checkpoint.EpochCheckpoint`): a fit of the same
        parameters and data resumes from its last epoch, as if uninterrupted.

    Attributes
    ----------
    net_ : skorch.NeuralNetRegressor
        The fitted net; ``net_.module_`` is the :class:`~bmdkit.nn.BMDNet`.
    preprocessor_ : BMDPreprocessor
        Fitted on the training rows.
    y_mean_, y_scale_ : float, or ndarray of shape (k,) for k sites
        Target standardisation.
    sites_ : list of str or None
        Names of the ``k`` sites of a 2-D ``y``: its column names when it is
        a DataFrame, else ``"site_0"`` ... (``None`` for a 1-D ``y``). Sites
        named as in :mod:`bmdkit.clinical` (``"femoral_neck"``,
        ``"total_hip"``) get T-scores and referral in ``bmdkit predict``.
    loss_weights_ : TargetDensityWeights or None
        The fitted target-density weights of ``"weighted_smooth_l1"``.
    feature_names_in_ : ndarray of str

    Examples
    --------
    >>> from bmdkit import BMDRegressor
    >>> from bmdkit.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(n=40, image_size=32, random_state=0)  # synthetic phantoms
    >>> model = BMDRegressor(fusion="concat", image_size=32, max_epochs=2, random_state=0)
    >>> model.fit(X, y).predict(X).shape
    (40,)
    """

    def __init_subclass__(cls, **kwargs):
        """Every subclass saves and loads (:func:`bmdkit.persistence.register_estimator`)."""
        super().__init_subclass__(**kwargs)
        register_estimator(cls)

    def __init__(self, fusion="xattn", *, image_col="image_path", numeric_cols=None,
                 categorical_cols=None, backbone=DEFAULTS["backbone"], pretrained=False,
                 image_size=DEFAULTS["image_size"], image_tiles=(1, 1), embed_dim=64, n_heads=4,
                 n_layers=3, dropout=0.1, augment=True, modality_dropout=0.0, missing_image="error",
                 freeze_backbone=False, precision="float32", channels_last=False, compile=False,
                 contrast=DEFAULTS["contrast"], cache_dir=None,
                 loss="smooth_l1", smooth_l1_beta=1.0, lds_bins=20, lds_sigma=2.0, lds_power=0.5,
                 max_weight_ratio=3.0, low_bmd_threshold=LUNAR_T_MINUS_1_FEMORAL_NECK,
                 low_bmd_weight=1.5,
                 max_epochs=DEFAULTS["max_epochs"], batch_size=DEFAULTS["batch_size"], lr=1e-3,
                 weight_decay=1e-4, lr_schedule="cosine", early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, callbacks=None, random_state=None,
                 device=DEFAULTS["device"], n_threads=None, verbose=0, checkpoint_dir=None):
        self.fusion = fusion
        self.image_col = image_col
        self.numeric_cols = numeric_cols
        self.categorical_cols = categorical_cols
        self.backbone = backbone
        self.pretrained = pretrained
        self.image_size = image_size
        self.image_tiles = image_tiles
        self.embed_dim = embed_dim
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.dropout = dropout
        self.augment = augment
        self.modality_dropout = modality_dropout
        self.missing_image = missing_image
        self.freeze_backbone = freeze_backbone
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.contrast = contrast
        self.cache_dir = cache_dir
        self.loss = loss
        self.smooth_l1_beta = smooth_l1_beta
        self.lds_bins = lds_bins
        self.lds_sigma = lds_sigma
        self.lds_power = lds_power
        self.max_weight_ratio = max_weight_ratio
        self.low_bmd_threshold = low_bmd_threshold
        self.low_bmd_weight = low_bmd_weight
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.callbacks = callbacks
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir

    # -- validation -----------------------------------------------------------------
    #: What each parameter accepts (:mod:`bmdkit.estimator_params`), checked at ``fit``; a
    #: subclass extends a copy (``{**BMDRegressor._parameter_constraints, ...}``).
    _parameter_constraints = CONSTRAINTS

    def _check_params(self):
        """Each parameter against its constraints, then those that depend on each other."""
        validate_params(self._parameter_constraints, self.get_params(deep=False))
        rows, cols = check_tiles(self.image_tiles)
        if self.image_size % rows or self.image_size % cols:
            raise ParameterError(f"image_size ({self.image_size}) must be divisible by the rows "
                                 f"and the columns of image_tiles {self.image_tiles!r}")
        if self.embed_dim % self.n_heads:
            raise ParameterError(
                f"embed_dim ({self.embed_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        if fusion_class(self.fusion).uses_image:
            check_pretrained(self.pretrained, self.backbone, self.image_size, self.contrast)

    def _metadata_frame(self, X):
        """X as the preprocessor should see it for this fusion."""
        X = as_frame(X)
        if not fusion_class(self.fusion).uses_image and self.image_col in X.columns:
            X = X.drop(columns=[self.image_col])
        return X

    def _make_preprocessor(self):
        image_col, numeric, categorical = self.image_col, self.numeric_cols, self.categorical_cols
        fusion = fusion_class(self.fusion)
        if not fusion.uses_image:
            image_col = None
        if not fusion.uses_metadata:
            numeric, categorical = [], []
        return BMDPreprocessor(
            image_col, numeric, categorical, image_size=self.image_size,
            contrast=self.contrast, cache_dir=self.cache_dir,
        )

    # -- fit / predict --------------------------------------------------------------
    def fit(self, X, y):
        """Fit the preprocessor and the network on (X, y).

        Parameters
        ----------
        X : pandas.DataFrame
            Image paths in ``image_col`` plus metadata columns.
        y : array-like of shape (n_samples,) or (n_samples, n_sites)
            BMD in g/cm²; several columns (e.g. femoral neck, total hip,
            lumbar spine) train one network predicting each of them.

        Returns
        -------
        self
        """
        # every step fits into locals, assigned at the end: a fit that fails leaves the
        # estimator as it was
        self._check_params()
        y_given = y
        preprocessor, arrays, y = self._checked_inputs(X, y)
        rng = FitRandomness(self._draw_seed(), self.device)
        scaling = TargetScaling.fit(y)
        loss_weights = self._fit_loss_weights(y)
        criterion = make_criterion(self.loss, beta=self.smooth_l1_beta, weights=loss_weights,
                                   y_mean=scaling.mean, y_scale=scaling.scale)
        y_scaled = scaling.transform(y)
        settings = self._net_settings(preprocessor, n_outputs=y_scaled.shape[1],
                                      criterion=criterion)
        callbacks = self._callbacks() + checkpoint_callbacks(self, X, y_given, rng)
        net = self._initialized_net(settings, rng, callbacks=callbacks,
                                    train_split=self._train_split(rng.seed))
        with torch_threads(self.n_threads), rng.routed(net.module_):
            net.partial_fit(arrays, y_scaled, epochs=epochs_left(net, self.max_epochs))
        self.preprocessor_, self.y_mean_, self.y_scale_ = preprocessor, scaling.mean, scaling.scale
        self.loss_weights_, self.net_ = loss_weights, net
        self.sites_ = site_names_of(y_given, y)
        self.feature_names_in_ = preprocessor.feature_names_in_
        return self

    # -- the steps of fit -------------------------------------------------------------
    def _checked_inputs(self, X, y):
        """``(fitted preprocessor, arrays of X, y as float64)``; bad X and y named in one error."""
        X = self._metadata_frame(X)
        if len(X) < 2:
            raise InputError(f"need at least 2 training rows, got n_samples={len(X)}")
        y, (preprocessor, arrays) = check_all(
            lambda: check_targets(y, len(X), multi_output=True), lambda: self._preprocess(X))
        warn_target_units(y)
        return preprocessor, arrays, y

    def _draw_seed(self):
        """The fit's seed, drawn from ``random_state``."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _preprocess(self, X):
        """``(fitted preprocessor, arrays of X)``, or an error before anything is trained."""
        preprocessor = self._make_preprocessor().fit(X)
        n_meta = len(preprocessor.numeric_cols_) + len(preprocessor.categorical_cols_)
        if fusion_class(self.fusion).uses_metadata and n_meta == 0:
            if X.shape[1] == 0:  # scikit-learn's wording for empty data (check_estimator)
                raise InputError(
                    f"fusion={self.fusion!r} needs at least one metadata column; X has 0 "
                    f"feature(s) (shape={X.shape}) while a minimum of 1 is required."
                )
            raise InputError(
                f"fusion={self.fusion!r} needs at least one metadata column; none was selected "
                f"besides image_col={self.image_col!r} (X columns: {list(X.columns)}, "
                f"numeric_cols={self.numeric_cols!r}, categorical_cols={self.categorical_cols!r})"
            )
        return preprocessor, preprocessor.transform(X)

    def _fit_loss_weights(self, y):
        """The target-density weights of ``"weighted_smooth_l1"``, fitted on ``y``; else None."""
        if not uses_density_weights(self.loss):
            return None
        return TargetDensityWeights(
            n_bins=self.lds_bins, sigma=self.lds_sigma, power=self.lds_power,
            max_ratio=self.max_weight_ratio, threshold=self.low_bmd_threshold,
            threshold_weight=self.low_bmd_weight,
        ).fit(y)

    def _net_settings(self, preprocessor, *, n_outputs, criterion):
        """The skorch net's settings that a saved model keeps (:mod:`bmdkit.persistence`)."""
        module = {name: getattr(self, name) for name in MODULE_PARAMS}
        module.update(n_numeric=len(preprocessor.numeric_cols_),
                      cardinalities=list(preprocessor.cardinalities_), n_outputs=n_outputs)
        return dict(
            module=BMDNet, **{f"module__{name}": value for name, value in module.items()},
            **criterion,
            optimizer=torch.optim.AdamW, optimizer__weight_decay=self.weight_decay,
            lr=self.lr,
            max_epochs=self.max_epochs, batch_size=self.batch_size, compile=self.compile,
            device=self.device, verbose=self.verbose,
        )

    def _initialized_net(self, settings, rng, *, callbacks=None, train_split=None):
        """The initialised skorch net of ``settings``: the one net factory, of fit and of
        :func:`bmdkit.load`.

        Batches come from contiguous arrays (:data:`bmdkit.batching.FAST_DATA_PATH`), shuffled by
        ``rng``; a frozen backbone's features take the place of the images
        (:class:`~bmdkit.nn.frozen.FrozenFeatureDataset`); AdamW steps with torch's
        fused kernel on the device types in :data:`bmdkit.batching.FUSED_ADAMW_DEVICES`.
        """
        # set here, not kept from a saved file: the device a model is loaded on decides
        fused = fused_adamw(settings.get("device"))
        net = self._make_net(
            **dict(settings, optimizer__fused=fused), **FAST_DATA_PATH,
            iterator_train__shuffle=True, iterator_train__generator=rng.cpu,
            iterator_train__drop_single=True, iterator_valid__generator=rng.cpu,
            callbacks=callbacks, train_split=train_split)
        with torch_threads(self.n_threads), rng.drawing():  # the weights' initialisation
            net.initialize()
        if settings.get("module__freeze_backbone"):
            # an attribute: skorch's set_params refuses "dataset" once the net is initialised
            net.dataset = functools.partial(FrozenFeatureDataset, network=net.module_)
        return net

    def _make_net(self, **params):
        """The skorch net to train (:mod:`bmdkit.scaleout` swaps in an accelerated one)."""
        return NeuralNetRegressor(**params)

    def _callbacks(self):
        callbacks = list(self.callbacks or [])
        if self.lr_schedule == "cosine":
            callbacks.append(("lr_schedule", LRScheduler(
                policy=torch.optim.lr_scheduler.CosineAnnealingLR, T_max=self.max_epochs)))
        if self.early_stopping:
            callbacks.append(
                ("early_stopping", EarlyStopping(patience=self.n_iter_no_change, load_best=True))
            )
        return callbacks

    def _train_split(self, seed):
        """skorch's validation split: shuffled ``validation_fraction`` with early stopping."""
        if not self.early_stopping:
            return None
        return ValidSplit(self.validation_fraction, random_state=seed)

    @property
    def _target_scaling(self):
        return TargetScaling(self.y_mean_, self.y_scale_)

    def _scale_targets(self, y):
        """``y`` (g/cm²) as the network trains on it: standardised float32 of shape (n, k)."""
        return self._target_scaling.transform(y)

    def _predict_inputs(self, X):
        """What the fitted network takes for the rows of ``X``."""
        return self.preprocessor_.transform(self._metadata_frame(X))

    def predict(self, X):
        """Predicted BMD in g/cm², float64 of shape (n_samples,), or (n_samples, n_sites).

        Rows go through the network in chunks of
        :data:`bmdkit.inference.CHUNK_ROWS`, giving exactly the one-shot
        predictions; memory holds one chunk's images plus the image cache
        (bounded by ``BMDKIT_CACHE_MEMORY_MB``), not a store of all ``len(X)``
        images. For archives, with decoding in worker processes and no
        cache, see :func:`bmdkit.inference.stream_predict`.
        """
        return predict_cached(self, X)

    def _predict_arrays(self, arrays):
        """Predicted BMD (g/cm²) for preprocessed arrays (what the preprocessor returns)."""
        with torch_threads(self.n_threads):
            scaled = self.net_.predict(arrays)
        return self._target_scaling.inverse_transform(scaled)

    def to_state(self):
        """``(state, tensors)``: the fitted model as plain values, and its network's tensors."""
        return to_state(self)

    @classmethod
    def from_state(cls, state, tensors, *, device=None):
        """The fitted model of :meth:`to_state`'s output (:mod:`bmdkit.estimator_state`)."""
        return from_state(cls, state, tensors, device=device)

    def save(self, path, *, overwrite=False, densitometer=None):
        """Save the fitted model to the folder ``path`` without pickle.

        Weights go to safetensors, the rest of :meth:`to_state` (and the ``densitometer``)
        to JSON; restore with :func:`bmdkit.load` (:func:`bmdkit.persistence.save`).
        """
        return save(self, path, overwrite=overwrite, densitometer=densitometer)

    def attention(self, X):
        """Cross-attention weights of a fitted ``fusion="xattn"`` model.

        Returns
        -------
        dict of ndarray
            ``image_to_metadata`` ``(n, L, N_img, N_meta)``: how much each image
            token attends to each metadata field, per layer (head-averaged);
            ``metadata_to_image`` ``(n, L - 1, N_meta, N_img)`` (the metadata
            tokens read the image in every layer but the last); ``image_pooling``
            ``(n, N_img)``: the weight the metadata give each image token's
            position when the image tokens are pooled; ``layer_weights``
            ``(L,)``; ``metadata_fields``: field names in token order.

        Examples
        --------
        >>> from bmdkit import XAttnBMDRegressor
        >>> from bmdkit.datasets import make_synthetic_cohort
        >>> X, y = make_synthetic_cohort(n=40, image_size=32, random_state=0)  # synthetic phantoms
        >>> model = XAttnBMDRegressor(image_size=32, max_epochs=2, random_state=0).fit(X, y)
        >>> model.attention(X.head(2))["image_to_metadata"].shape[:2]
        (2, 3)
        """
        from bmdkit.explain import attention_maps

        return attention_maps(self, X)

    def explain(self, X, **kwargs):
        """Grad-CAM image saliency and metadata Shapley values for the rows of ``X``.

        See :func:`bmdkit.explain.explain` for the parameters; returns an
        :class:`bmdkit.explain.Explanation` (with the cross-attention maps
        for ``fusion="xattn"``).
        """
        from bmdkit.explain import explain

        return explain(self, X, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = fusion_class(self.fusion).uses_image
        tags.input_tags.categorical = True
        tags.input_tags.allow_nan = True
        tags.target_tags.multi_output = True
        return tags


def ablation_models(fusions=None, losses=None, **params):
    """The paper's ablation, fusions × losses: a :func:`~bmdkit.evaluation.compare_models` preset.

    Parameters
    ----------
    fusions : sequence of str or None, default=None
        Registered fusions (:data:`bmdkit.registry.FUSIONS`); None: those
        tagged ``"ablation"`` (XAttn, Concat, DAFT, Gated, Late).
    losses : sequence of str or None, default=None
        Registered losses (:data:`bmdkit.registry.LOSSES`); None: those
        tagged ``"ablation"`` (unweighted and weighted Smooth L1).
    **params
        Other ``BMDRegressor`` parameters, the same for every model.

    Returns
    -------
    dict of str to BMDRegressor
        Named by the registries' labels: ``"XAttn"``, ``"Concat"``, … for the
        unweighted loss and ``"XAttn +wSL1"`` … for the weighted one.

    Examples
    --------
    >>> list(ablation_models(["xattn", "concat"], ["smooth_l1", "weighted_smooth_l1"]))
    ['XAttn', 'Concat', 'XAttn +wSL1', 'Concat +wSL1']
    """
    fusions = FUSIONS.names("ablation") if fusions is None else fusions
    losses = LOSSES.names("ablation") if losses is None else losses
    return {model_label(fusion, loss): BMDRegressor(fusion=fusion, loss=loss, **params)
            for loss in losses for fusion in fusions}


def derived_signature(*, drop=(), add=None):
    """``BMDRegressor.__init__``'s signature less ``drop``, plus keyword-only ``add``.

    scikit-learn reads an estimator's parameter names from its ``__init__``
    signature, so a subclass taking ``**kwargs`` declares them this way;
    ``add`` maps each added name to its default.
    """
    return signature_of(BMDRegressor, drop=drop, add=add)


#: The named estimators, one per registered fusion with an estimator name
#: (``XAttnBMDRegressor`` ... ``MetadataOnlyBMDRegressor``), made from the registry.
NAMED_MODELS = {fusion: named_model(BMDRegressor, fusion, __name__)
                for fusion in FUSIONS.names() if FUSIONS.entry(fusion).estimator}
globals().update({cls.__name__: cls for cls in NAMED_MODELS.values()})
__all__ += [cls.__name__ for cls in NAMED_MODELS.values()]
