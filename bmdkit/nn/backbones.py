"""timm image backbones turned into a sequence of image tokens."""

from __future__ import annotations

import math
import numbers
import os

import timm
import torch
from torch import nn

from bmdkit.errors import MissingFileError, ParameterError
from bmdkit.nn.weights import check_backbone_file, load_backbone_weights

__all__ = ["check_backbone", "check_tiles", "create_backbone", "ImageEncoder", "join_tiles", "split_tiles"]


def create_backbone(name="resnet18", *, pretrained=False, in_chans=1):
    """Create a timm backbone that returns its last feature map.

    Parameters
    ----------
    name : str
        Any timm model name (``timm.list_models()``).
    pretrained : bool or str or os.PathLike, default=False
        ``False`` for random initialisation; a path to a local weights file:
        one of ``bmdkit pretrain`` (:mod:`bmdkit.nn.weights`; its backbone
        must be ``name``, else a ValueError names both), or a timm
        ``.safetensors``, ``.pth`` or ``.bin``, which timm adapts to
        ``in_chans`` and to the missing classifier. ``True`` asks timm's hub,
        which only works where the hub is reachable.
    in_chans : int, default=1
        Input channels (radiographs are grayscale).

    Returns
    -------
    torch.nn.Module
        A model whose ``forward_features`` gives ``(B, C, h, w)`` (CNNs) or
        ``(B, N, C)`` (transformers), with ``num_features == C``.
    """
    return _backbone_and_record(name, pretrained, in_chans)[0]


def _backbone_and_record(name, pretrained, in_chans):
    """:func:`create_backbone`'s model, and what its weights file records (or ``None``).

    The file's metadata are read once, here, for both the check of the
    backbone and :class:`ImageEncoder`'s input normalisation.
    """
    kwargs = dict(in_chans=in_chans, num_classes=0, global_pool="")
    if pretrained is False or pretrained is None:
        return timm.create_model(name, pretrained=False, **kwargs), None
    if pretrained is True:
        try:
            return timm.create_model(name, pretrained=True, **kwargs), None
        except Exception as exc:  # network errors come in many types
            raise RuntimeError(
                f"could not fetch pretrained weights for backbone {name!r} from the hub ({exc}); "
                "pass pretrained='/path/to/weights.safetensors' to use a local file"
            ) from exc
    path = os.fspath(pretrained)
    if not os.path.isfile(path):
        raise MissingFileError(f"pretrained weights file not found: {path}")
    recorded = check_backbone_file(path, name)
    if recorded is not None:
        backbone = timm.create_model(name, pretrained=False, **kwargs)
        return load_backbone_weights(backbone, path), recorded
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **kwargs
    ), None


def sinusoidal_positions_2d(h, w, dim, device=None, dtype=torch.float32):
    """Fixed 2-D sine/cosine position codes of shape ``(h * w, dim)``."""
    quarter = dim // 4
    freq = torch.exp(
        -math.log(10000.0) * torch.arange(quarter, device=device, dtype=torch.float32) / max(quarter, 1)
    )
    ys = torch.arange(h, device=device, dtype=torch.float32)[:, None] * freq
    xs = torch.arange(w, device=device, dtype=torch.float32)[:, None] * freq
    codes = torch.cat(
        [
            ys.sin()[:, None, :].expand(h, w, quarter),
            ys.cos()[:, None, :].expand(h, w, quarter),
            xs.sin()[None, :, :].expand(h, w, quarter),
            xs.cos()[None, :, :].expand(h, w, quarter),
        ],
        dim=-1,
    ).reshape(h * w, 4 * quarter)
    pad = dim - codes.shape[1]
    if pad:
        codes = torch.nn.functional.pad(codes, (0, pad))
    return codes.to(dtype)


def check_backbone(name):
    """``name`` if timm knows the model, else a ParameterError naming the ``backbone`` parameter.

    Examples
    --------
    >>> check_backbone("resnet10t")
    'resnet10t'
    >>> check_backbone(12345)
    Traceback (most recent call last):
    ...
    bmdkit.errors.ParameterError: backbone must be a timm model name (see timm.list_models()), got 12345
    """
    if not (isinstance(name, str) and timm.is_model(name)):
        raise ParameterError(f"backbone must be a timm model name (see timm.list_models()), "
                         f"got {name!r}")
    return name


def check_tiles(tiles):
    """``tiles`` as a ``(rows, cols)`` tuple of positive integers, or a ParameterError naming it."""
    try:
        rows, cols = tiles
    except (TypeError, ValueError):
        rows = cols = None
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
               for n in (rows, cols)):
        raise ParameterError(f"image_tiles must be a pair (rows, cols) of positive integers, "
                         f"got {tiles!r}")
    return int(rows), int(cols)


def split_tiles(images, tiles):
    """Cut ``(B, C, H, W)`` images into a ``rows × cols`` grid of tiles.

    Returns ``(rows * cols * B, C, H / rows, W / cols)``: the tiles come
    tile by tile (row-major), each a batch of ``B``;
    :func:`join_tiles` puts their feature maps back in place.

    Examples
    --------
    >>> images = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> split_tiles(images, (1, 2))[:, 0, 0].tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    >>> torch.equal(join_tiles(split_tiles(images, (2, 2)), (2, 2)), images)
    True
    """
    rows, cols = tiles
    if (rows, cols) == (1, 1):
        return images
    b, c, h, w = images.shape
    if h % rows or w % cols:
        raise ParameterError(f"an image of {h}×{w} pixels cannot be cut into {rows}×{cols} equal "
                         "tiles: choose image_size divisible by both")
    return (images.reshape(b, c, rows, h // rows, cols, w // cols)
            .permute(2, 4, 0, 1, 3, 5).reshape(rows * cols * b, c, h // rows, w // cols))


def join_tiles(features, tiles):
    """The tiles' outputs of :func:`split_tiles` back as one per image.

    Feature maps ``(rows * cols * B, C, h, w)`` are laid side by side as
    the tiles were, ``(B, C, rows * h, cols * w)``; token sequences
    ``(rows * cols * B, N, C)`` follow each other, ``(B, rows * cols * N, C)``.
    """
    rows, cols = tiles
    if (rows, cols) == (1, 1):
        return features
    b = features.shape[0] // (rows * cols)
    if features.ndim == 3:
        _, n, c = features.shape
        return features.reshape(rows * cols, b, n, c).transpose(0, 1).reshape(b, rows * cols * n, c)
    _, c, h, w = features.shape
    return (features.reshape(rows, cols, b, c, h, w)
            .permute(2, 3, 0, 4, 1, 5).reshape(b, c, rows * h, cols * w))


class ImageEncoder(nn.Module):
    """Backbone feature map → ``(B, N, embed_dim)`` tokens.

    Each spatial cell of the last feature map becomes one token, projected to
    ``embed_dim`` and given a fixed 2-D position code. A ``pretrained``
    backbone sees its images normalised as its weights expect: minus the
    mean, over the standard deviation, of its ``pretrained_cfg`` (averaged
    over the colour channels, since timm sums the first convolution's
    weights over them for one channel). With
    ``freeze_backbone=True`` the backbone's weights get no gradient and it
    stays in eval mode (batch-norm statistics fixed), so its features of an
    image never change and can be computed once (:mod:`bmdkit.nn.frozen`).

    With ``tiles=(rows, cols)`` the image is cut into that grid of tiles
    and the backbone encodes each tile on its own (:func:`split_tiles`), its
    feature maps laid side by side as the tiles were: the features of a
    token then come from one tile only. For an AP pelvis view, ``(1, 2)``
    gives each hip its own tokens, which a fusion that pools by position can
    choose between (docs/model.md, bilateral cohort). Backbones that return
    tokens (ViT-style) get their tiles' tokens one after the other, with
    position codes of that order only, and must accept the tiles' size.
    """

    def __init__(self, backbone="resnet18", *, pretrained=False, embed_dim=64,
                 freeze_backbone=False, tiles=(1, 1)):
        super().__init__()
        self.tiles = check_tiles(tiles)
        self.backbone, recorded = _backbone_and_record(backbone, pretrained, in_chans=1)
        mean, std = 0.0, 1.0
        if recorded is not None:
            mean, std = recorded["input_mean"], recorded["input_std"]
        elif pretrained not in (False, None):
            config = self.backbone.pretrained_cfg
            mean, std = float(sum(config["mean"])) / 3, float(sum(config["std"])) / 3
        # buffers, so that a saved model keeps the normalisation its weights were trained with
        self.register_buffer("input_mean", torch.tensor(mean))
        self.register_buffer("input_std", torch.tensor(std))
        self.proj = nn.Linear(self.backbone.num_features, embed_dim)
        self.embed_dim = embed_dim
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode=True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def backbone_features(self, image):
        """The backbone's last feature map of ``image`` ``(B, 1, H, W)`` in [0, 1] (its tiles')."""
        tiles = split_tiles((image - self.input_mean) / self.input_std, self.tiles)
        return join_tiles(self.backbone.forward_features(tiles), self.tiles)

    def forward(self, image=None, features=None, return_positions=False):
        """Tokens of ``image`` ``(B, 1, H, W)``, or of precomputed backbone ``features``.

        With ``return_positions=True`` also the position code of every token,
        ``(N, embed_dim)``: the 2-D code added to the tokens of a feature map,
        or a code of the token order for a backbone that returns tokens.
        """
        if features is None:
            features = self.backbone_features(image)
        if features.ndim == 4:
            _, _, h, w = features.shape
            tokens = self.proj(features.flatten(2).transpose(1, 2))
            positions = sinusoidal_positions_2d(h, w, self.embed_dim, features.device, tokens.dtype)
            tokens = tokens + positions
        else:
            tokens = self.proj(features)
            positions = sinusoidal_positions_2d(1, tokens.shape[1], self.embed_dim,
                                                features.device, tokens.dtype)
        return (tokens, positions) if return_positions else tokens
