r"""XAttn-BMD fusion: bidirectional cross-attention on top of the concat path.

For layers :math:`l = 1..L` with image tokens :math:`I` and metadata field
tokens :math:`M` (pre-norm layer normalisation omitted), every residual
branch scaled by a learned per-channel gate :math:`\gamma` that starts at 0
(ReZero / LayerScale):

.. math::

    I^{l} &= I^{l-1} + \gamma^{l}_{1} \odot \mathrm{MHA}(q = I^{l-1}, k = v = M^{l-1}),
        \;\; I^{l} \leftarrow I^{l} + \gamma^{l}_{2} \odot \mathrm{FFN}(I^{l}) \\
    M^{l} &= M^{l-1} + \gamma^{l}_{3} \odot \mathrm{MHA}(q = M^{l-1}, k = v = I^{l}),
        \;\; M^{l} \leftarrow M^{l} + \gamma^{l}_{4} \odot \mathrm{FFN}(M^{l})
        \qquad (l < L) \\
    \tilde I &= \textstyle\sum_l a_l I^{l}, \qquad a = \operatorname{softmax}(\alpha) \\
    w &= \operatorname{softmax}_j\big((W_q\,\mathrm{MLP}(x)) \cdot (W_k\,p_j)\big) \\
    z &= \Big[\, \textstyle\sum_j w_j \tilde I_j \;;\; \mathrm{MLP}(x) \,\Big]

Metadata tokens attend to the image tokens *already updated* in the same
layer (the key-value updater) and carry what they read to the next layer's
image tokens; the metadata reach the head through :math:`\mathrm{MLP}(x)`,
the concat baseline's metadata embedding (a pooled-metadata-token path
beside it overfitted, docs/model.md). :math:`\alpha` are the learned
layer-wise fusion weights. The image tokens are pooled with weights
:math:`w` that the metadata give to their positions :math:`p_j` (the
position codes of :class:`~bmdkit.nn.backbones.ImageEncoder`): the metadata
say *where* to look, e.g. at the hip that DXA measured on a view of both.
With every gate and :math:`W_q` at zero, as initialised, :math:`w` is
uniform and :math:`z` is exactly what :class:`~bmdkit.nn.fusions.ConcatFusion`
computes: cross-attention can only add to the baseline, and training learns
how much.
"""

from __future__ import annotations

import torch
from torch import nn

from bmdkit.nn.fusions.base import Fusion
from bmdkit.nn.tokenizers import MetadataMLP, MetadataTokenizer

__all__ = ["BidirectionalCrossAttention", "CrossAttentionBlock", "MetadataPositionPooling",
           "XAttnFusion"]


class CrossAttentionBlock(nn.Module):
    """Queries from one modality attend to keys/values of the other (pre-norm, gated residuals)."""

    def __init__(self, embed_dim, n_heads, dropout):
        super().__init__()
        self.norm_query = nn.LayerNorm(embed_dim)
        self.norm_context = nn.LayerNorm(embed_dim)
        self.attention = nn.MultiheadAttention(embed_dim, n_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm_ff = nn.LayerNorm(embed_dim)
        self.ff = nn.Sequential(
            nn.Linear(embed_dim, 2 * embed_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(2 * embed_dim, embed_dim),
        )
        self.attention_gate = nn.Parameter(torch.zeros(embed_dim))
        self.ff_gate = nn.Parameter(torch.zeros(embed_dim))

    def forward(self, query, context, need_weights=False):
        context = self.norm_context(context)
        attended, weights = self.attention(
            self.norm_query(query), context, context,
            need_weights=need_weights, average_attn_weights=True,
        )
        query = query + self.attention_gate * self.dropout(attended)
        return query + self.ff_gate * self.ff(self.norm_ff(query)), weights


class BidirectionalCrossAttention(nn.Module):
    """L layers of image↔metadata cross-attention with layer-wise fusion weights.

    In every layer the image tokens attend to the metadata tokens; in every
    layer but the last the metadata tokens then attend to the updated image
    tokens, for the next layer (with ``n_layers=1`` only the image tokens
    attend). The forward pass returns the layer-weighted
    image tokens ``(B, N_img, embed_dim)`` and, with ``return_attention=True``
    (else None), a dict with ``image_to_metadata`` ``(B, L, N_img, N_meta)``,
    ``metadata_to_image`` ``(B, L - 1, N_meta, N_img)`` (averaged over heads)
    and ``layer_weights`` ``(L,)``.
    """

    def __init__(self, embed_dim, *, n_heads=4, n_layers=3, dropout=0.1):
        super().__init__()
        self.image_from_metadata = nn.ModuleList(
            CrossAttentionBlock(embed_dim, n_heads, dropout) for _ in range(n_layers)
        )
        self.metadata_from_image = nn.ModuleList(
            CrossAttentionBlock(embed_dim, n_heads, dropout) for _ in range(n_layers - 1)
        )
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))

    def forward(self, image_tokens, metadata_tokens, return_attention=False):
        image_layers, img_attn, meta_attn = [], [], []
        for layer, to_image in enumerate(self.image_from_metadata):
            image_tokens, weights = to_image(image_tokens, metadata_tokens, return_attention)
            image_layers.append(image_tokens)
            img_attn.append(weights)
            if layer < len(self.metadata_from_image):
                metadata_tokens, weights = self.metadata_from_image[layer](
                    metadata_tokens, image_tokens, return_attention)
                meta_attn.append(weights)
        layer_weights = torch.softmax(self.layer_logits, dim=0)
        image = torch.einsum("l,lbnd->bnd", layer_weights, torch.stack(image_layers))
        if not return_attention:
            return image, None
        b, n_image, n_metadata = img_attn[0].shape
        return image, {
            "image_to_metadata": torch.stack(img_attn, dim=1),
            "metadata_to_image": (torch.stack(meta_attn, dim=1) if meta_attn
                                  else img_attn[0].new_zeros(b, 0, n_metadata, n_image)),
            "layer_weights": layer_weights,
        }


class MetadataPositionPooling(nn.Module):
    """Pool image tokens with weights the metadata give to their positions.

    ``w = softmax_j((W_q m) · (W_k p_j))`` for the metadata
    embedding ``m`` ``(B, d)`` and the token positions ``p`` ``(N, d)``;
    returns ``Σ_j w_j tokens_j`` ``(B, d)`` and ``w`` ``(B, N)``. The keys
    are the positions alone, not the token contents: the metadata choose a
    place, whatever the image shows there. ``W_q`` starts at zero, so the
    pooling starts as the plain mean. The logits are not divided by
    ``sqrt(d)``: starting at zero, they need no taming at initialisation, and
    their scale sets how fast the weights can sharpen on the named place
    (docs/model.md, bilateral cohort). Weights saved before this choice (model
    format 1) load with the ``1 / sqrt(d)`` they were trained with (``logit_scale``,
    set by the migration step of :mod:`bmdkit.persistence`).
    """

    def __init__(self, embed_dim):
        super().__init__()
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        nn.init.zeros_(self.query.weight)
        nn.init.zeros_(self.query.bias)
        # a buffer, so that a saved model keeps the scale its weights were trained with
        self.register_buffer("logit_scale", torch.tensor(1.0))

    def forward(self, tokens, metadata, positions):
        logits = self.query(metadata) @ self.key(positions).T * self.logit_scale
        weights = logits.softmax(dim=-1)
        return torch.einsum("bn,bnd->bd", weights, tokens), weights


class XAttnFusion(Fusion):
    """XAttn-BMD: the concat path plus gated bidirectional cross-attention (``2 * embed_dim``)."""

    def __init__(self, *, embed_dim, n_numeric=0, cardinalities=(), dropout=0.1, n_heads=4,
                 n_layers=3, **sizes):
        super().__init__(embed_dim=embed_dim, dropout=dropout, **sizes)
        self.metadata_mlp = MetadataMLP(n_numeric, cardinalities, embed_dim=embed_dim,
                                        dropout=dropout)
        self.tokenizer = MetadataTokenizer(n_numeric, cardinalities, embed_dim=embed_dim,
                                           n_heads=n_heads, dropout=dropout)
        self.cross_attention = BidirectionalCrossAttention(
            embed_dim, n_heads=n_heads, n_layers=n_layers, dropout=dropout)
        self.image_pooling = MetadataPositionPooling(embed_dim)
        self.out_features = 2 * embed_dim

    def forward(self, image_tokens, numeric, categorical, image_positions=None):
        return self._fuse(image_tokens, numeric, categorical, image_positions, False)[0]

    def forward_attention(self, image_tokens, numeric, categorical, image_positions=None):
        """``(fused, attention)``: the cross-attention maps per layer (``image_to_metadata``,
        ``metadata_to_image``), ``layer_weights`` and the pooling weights ``image_pooling``."""
        return self._fuse(image_tokens, numeric, categorical, image_positions, True)

    def _fuse(self, image_tokens, numeric, categorical, image_positions, need_weights):
        image_tokens, attention = self.cross_attention(
            image_tokens, self.tokenizer(numeric, categorical), return_attention=need_weights)
        metadata = self.metadata_mlp(numeric, categorical)
        image, pooling = self.image_pooling(image_tokens, metadata, image_positions)
        fused = torch.cat([image, metadata], dim=1)
        return fused, ({**attention, "image_pooling": pooling} if need_weights else None)
