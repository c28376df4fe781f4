"""Features of a frozen backbone, computed once per image and reused across fits.

With ``freeze_backbone=True`` a backbone never changes during a fit, so its
output for an image depends only on the backbone's weights, the image, its
tiles, the precision, the memory format and the device type.
:func:`backbone_features` computes it once (eval mode, no gradient) and
keeps it in an in-process least-recently-used cache; it and the image cache
together hold at most ``BMDKIT_CACHE_MEMORY_MB`` megabytes (default 1024;
one budget per process). Entries are keyed by SHA-1 digests of the
backbone's weights and of each preprocessed image (and by the tiles), so
every fit whose backbone starts from the same weights (a local pretrained
file, or the same ``random_state``) shares them: the epochs of a fit, the
folds of a cross-validation, the candidates of a grid search and the trials
of an Optuna study run in one process. :class:`FrozenFeatureDataset` puts
the features in place of the images on the estimators' data path (skorch
``dataset=``), so a fit and a predict of a frozen model pass features, not
images, to the network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from bmdkit.batching import ArrayDataset
from bmdkit.errors import ParameterError
from bmdkit.memory import MemoryCache, memory_limit

__all__ = ["FeatureCacheInfo", "FrozenFeatureDataset", "backbone_features", "feature_cache_clear",
           "feature_cache_info", "weights_digest"]

_FEATURES = MemoryCache(counters=("hits", "computed"))


@dataclass(frozen=True)
class FeatureCacheInfo:
    """Counters of the frozen-backbone feature cache.

    hits, computed : images whose features came from the cache / were computed
    memory_bytes : bytes now held
    """

    hits: int
    computed: int
    memory_bytes: int


def feature_cache_info():
    """Counters of the feature cache, a :class:`FeatureCacheInfo`."""
    return FeatureCacheInfo(**_FEATURES.snapshot())


def feature_cache_clear():
    """Empty the feature cache and reset its counters."""
    _FEATURES.clear()


def weights_digest(module):
    """SHA-1 hex digest of a module's state (names, dtypes, shapes and values).

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> _ = b.load_state_dict(a.state_dict())
    >>> weights_digest(a) == weights_digest(b)
    True
    """
    digest = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def backbone_features(network, images, *, batch_size=64):
    """Float32 backbone features of ``images`` through a frozen :class:`~bmdkit.nn.BMDNet`.

    Parameters
    ----------
    network : BMDNet
        Built with ``freeze_backbone=True``; its device, ``precision`` and
        ``channels_last`` apply.
    images : ndarray of shape (n, 1, S, S)
        Preprocessed images (an array or memmap from the preprocessor).
    batch_size : int, default=64
        Images per backbone pass for those not yet cached.

    Returns
    -------
    ndarray of shape (n, ...)
        ``network.backbone_features`` of each image, in ``images``' order.

    Examples
    --------
    >>> import numpy as np
    >>> from bmdkit.nn import BMDNet
    >>> net = BMDNet("image", backbone="resnet10t", freeze_backbone=True)
    >>> images = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    >>> feature_cache_clear()
    >>> first = backbone_features(net, images)
    >>> again = backbone_features(net, images)
    >>> bool((first == again).all()), feature_cache_info().hits
    (True, 3)
    """
    encoder = network.image_encoder
    if not encoder.freeze_backbone:
        raise ParameterError("backbone_features caches a frozen backbone's output; build the network "
                         "with freeze_backbone=True")
    device = next(encoder.backbone.parameters()).device
    prefix = (weights_digest(encoder.backbone), encoder.tiles, device.type, network.precision,
              network.channels_last)
    keys = [prefix + (hashlib.sha1(np.ascontiguousarray(image)).hexdigest(),) for image in images]
    found = [_FEATURES.get(key) for key in keys]
    todo = [i for i, features in enumerate(found) if features is None]
    limit = memory_limit()
    for start in range(0, len(todo), batch_size):
        rows = todo[start:start + batch_size]
        batch = torch.from_numpy(np.take(images, rows, axis=0)).to(device)
        for i, features in zip(rows, network.backbone_features(batch).cpu().numpy()):
            found[i] = features.copy()  # a row of its own, not a view keeping the batch alive
            _FEATURES.put(keys[i], found[i], limit)
    _FEATURES.count(hits=len(keys) - len(todo), computed=len(todo))
    return np.stack(found)


class FrozenFeatureDataset(ArrayDataset):
    """An :class:`~bmdkit.batching.ArrayDataset` with a frozen backbone's features for its images.

    ``X["image"]`` is replaced by ``X["image_features"]``, computed (or taken
    from the cache) by :func:`backbone_features` once, when the dataset is
    built; the network then skips its backbone. A skorch ``dataset``: pass
    ``functools.partial(FrozenFeatureDataset, network=net.module_)`` once the
    net is initialised.

    Parameters
    ----------
    X : dict of array-like
    y : array-like or None, default=None
    network : BMDNet
        Built with ``freeze_backbone=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from bmdkit.nn import BMDNet
    >>> net = BMDNet("image", backbone="resnet10t", freeze_backbone=True)
    >>> images = np.zeros((2, 1, 32, 32), np.float32)
    >>> sorted(FrozenFeatureDataset({"image": images}, network=net).X)
    ['image_features']
    """

    def __init__(self, X, y=None, *, network):
        if "image" in X:
            X = dict(X)
            X["image_features"] = backbone_features(network, X.pop("image"))
        super().__init__(X, y)
