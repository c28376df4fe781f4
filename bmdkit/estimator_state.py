"""A fitted estimator as plain state and back: what :meth:`BMDRegressor.to_state` and
:meth:`BMDRegressor.from_state` do (skorch's ``save_params`` / ``__getstate__`` is the model).

The state is a dict of plain Python values (numbers, strings, lists, tuples,
numpy arrays, allowed classes) plus a dict of the network's tensors: the
parameters, the fitted target scaling, sites and feature names, the
preprocessor's and the loss weights' own state (``to_state`` of each), and the
net's settings. :mod:`bmdkit.persistence` only writes these to files and reads
them back (JSON + safetensors); it never reaches into the objects.
"""

from __future__ import annotations

import numpy as np

from bmdkit.losses import TargetDensityWeights
from bmdkit.rng import FitRandomness

__all__ = ["NET_SKIPPED", "from_state", "to_state"]

#: Net settings not kept: those of training only, and what the estimator's net factory
#: builds itself (the data path, skorch.hf.AccelerateMixin's accelerator).
NET_SKIPPED = ("callbacks", "train_split", "dataset", "iterator_train", "iterator_valid",
               "warm_start", "torch_load_kwargs", "accelerator")
#: The fitted attributes a state holds.
FITTED = {"preprocessor_", "y_mean_", "y_scale_", "loss_weights_", "net_", "feature_names_in_",
          "densitometer_", "sites_"}


def to_state(model):
    """``(state, tensors)`` of a fitted ``model``; see the module docstring."""
    unknown = {k for k in vars(model) if k.endswith("_") and not k.startswith("_")} - FITTED
    if unknown:
        raise NotImplementedError(f"bmdkit does not know how to save {sorted(unknown)}")
    weights = model.loss_weights_
    state = {
        "params": model.get_params(deep=False),
        "fitted": {
            "y_mean_": np.asarray(model.y_mean_).tolist(),  # a list for several sites
            "y_scale_": np.asarray(model.y_scale_).tolist(),
            "feature_names_in_": [str(c) for c in model.feature_names_in_],
            "sites_": model.sites_,
            "loss_weights_": None if weights is None else weights.to_state(),
            "preprocessor_": model.preprocessor_.to_state(),
        },
        "net": {key: value for key, value in model.net_.get_params().items()
                if key.split("__")[0] not in NET_SKIPPED and not key.startswith("_")},
    }
    tensors = {k: v.detach().cpu().contiguous().clone()
               for k, v in model.net_.module_.state_dict().items()}
    return state, tensors


def from_state(cls, state, tensors, *, device=None):
    """The fitted ``cls`` estimator of ``(state, tensors)`` from :func:`to_state`, on ``device``
    (default: the saved one). The network is rebuilt by the estimator's own net factory."""
    params = dict(state["params"])
    if device is not None:
        params["device"] = device
    model = cls(**params)
    fitted = state["fitted"]
    model.y_mean_, model.y_scale_ = (
        np.asarray(fitted[k]) if isinstance(fitted[k], list) else fitted[k]
        for k in ("y_mean_", "y_scale_"))
    model.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    model.sites_ = fitted.get("sites_")  # absent from models saved before several sites
    model.loss_weights_ = (None if fitted["loss_weights_"] is None
                           else TargetDensityWeights.from_state(fitted["loss_weights_"]))
    model.preprocessor_ = type(model._make_preprocessor()).from_state(fitted["preprocessor_"])
    settings = dict(state["net"], module__pretrained=False)  # the saved weights replace them
    if device is not None:
        settings["device"] = device
    # predicting and the initialisation the weights replace draw nothing from the global
    # generator
    net = model._initialized_net(settings, FitRandomness(0))
    net.module_.load_state_dict(tensors, strict=True)
    net.module_.eval()
    model.net_ = net
    return model
