r"""XAttn-BMD fusion: bidirectional cross-attention on top of the concat path.

For layers :math:`l = 1..L` with image tokens :math:`I` and metadata field
tokens :math:`M` (pre-norm layer normalisation omitted), every residual
branch scaled by a learned per-channel gate :math:`\gamma` that starts at 0
(ReZero / LayerScale):

.. math::

    I^{l} &= I^{l-1} + \gamma^{l}_{1} \odot \mathrm{MHA}(q = I^{l-1}, k = v = M^{l-1}),
        \;\; I^{l} \leftarrow I^{l} + \gamma^{l}_{2} \odot \mathrm{FFN}(I^{l}) \\
    M^{l} &= M^{l-1} + \gamma^{l}_{3} \odot \mathrm{MHA}(q = M^{l-1}, k = v = I^{l}),
        \;\; M^{l} \leftarrow M^{l} + \gamma^{l}_{4} \odot \mathrm{FFN}(M^{l}) \\
    z &= \Big[\, \textstyle\sum_l a_l \overline{I^{l}} \;;\;
        \mathrm{MLP}(x) + W_o \textstyle\sum_l a_l \overline{M^{l}} \,\Big],
        \qquad a = \operatorname{softmax}(\alpha)

Metadata tokens attend to the image tokens *already updated* in the same
layer (the key-value updater); :math:`\alpha` are the learned layer-wise
fusion weights, the bar is a mean over tokens and :math:`\mathrm{MLP}(x)` is
the concat baseline's metadata embedding. With every gate and :math:`W_o` at
zero, as initialised, :math:`z` is exactly what
:class:`~bmdkit.nn.fusions.ConcatFusion` computes: cross-attention can only
add to the baseline, and the gates learn how much.
"""

from __future__ import annotations

import torch
from torch import nn

from bmdkit.nn.fusions.base import Fusion, register_fusion
from bmdkit.nn.tokenizers import MetadataMLP, MetadataTokenizer

__all__ = ["BidirectionalCrossAttention", "CrossAttentionBlock", "XAttnFusion"]


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

    The forward pass returns the layer-weighted mean image token and mean
    metadata token, ``(B, embed_dim)`` each, and with ``return_attention=True``
    a dict with ``image_to_metadata`` ``(B, L, N_img, N_meta)``,
    ``metadata_to_image`` ``(B, L, N_meta, N_img)`` (averaged over heads) and
    ``layer_weights`` ``(L,)``.
    """

    def __init__(self, embed_dim, *, n_heads=4, n_layers=3, dropout=0.1):
        super().__init__()
        self.image_from_metadata = nn.ModuleList(
            CrossAttentionBlock(embed_dim, n_heads, dropout) for _ in range(n_layers)
        )
        self.metadata_from_image = nn.ModuleList(
            CrossAttentionBlock(embed_dim, n_heads, dropout) for _ in range(n_layers)
        )
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))

    def forward(self, image_tokens, metadata_tokens, return_attention=False):
        image_pooled, metadata_pooled, img_attn, meta_attn = [], [], [], []
        for to_image, to_metadata in zip(self.image_from_metadata, self.metadata_from_image):
            image_tokens, a_im = to_image(image_tokens, metadata_tokens, return_attention)
            metadata_tokens, a_mi = to_metadata(metadata_tokens, image_tokens, return_attention)
            image_pooled.append(image_tokens.mean(1))
            metadata_pooled.append(metadata_tokens.mean(1))
            img_attn.append(a_im)
            meta_attn.append(a_mi)
        layer_weights = torch.softmax(self.layer_logits, dim=0)
        image = torch.einsum("l,lbd->bd", layer_weights, torch.stack(image_pooled))
        metadata = torch.einsum("l,lbd->bd", layer_weights, torch.stack(metadata_pooled))
        if not return_attention:
            return image, metadata
        return image, metadata, {
            "image_to_metadata": torch.stack(img_attn, dim=1),
            "metadata_to_image": torch.stack(meta_attn, dim=1),
            "layer_weights": layer_weights,
        }


@register_fusion("xattn")
class XAttnFusion(Fusion):
    """XAttn-BMD: the concat path plus gated bidirectional cross-attention (``2 * embed_dim``)."""

    has_attention = True

    def __init__(self, *, embed_dim, n_numeric=0, cardinalities=(), dropout=0.1, n_heads=4,
                 n_layers=3, **sizes):
        super().__init__(embed_dim=embed_dim, dropout=dropout, **sizes)
        self.metadata_mlp = MetadataMLP(n_numeric, cardinalities, embed_dim=embed_dim,
                                        dropout=dropout)
        self.tokenizer = MetadataTokenizer(n_numeric, cardinalities, embed_dim=embed_dim,
                                           n_heads=n_heads, dropout=dropout)
        self.cross_attention = BidirectionalCrossAttention(
            embed_dim, n_heads=n_heads, n_layers=n_layers, dropout=dropout)
        self.metadata_out = nn.Linear(embed_dim, embed_dim)
        nn.init.zeros_(self.metadata_out.weight)
        nn.init.zeros_(self.metadata_out.bias)
        self.out_features = 2 * embed_dim

    def forward(self, image_tokens, numeric, categorical, return_attention=False):
        out = self.cross_attention(image_tokens, self.tokenizer(numeric, categorical),
                                   return_attention=return_attention)
        image, metadata = out[:2]
        fused = torch.cat(
            [image, self.metadata_mlp(numeric, categorical) + self.metadata_out(metadata)], dim=1)
        return (fused, out[2]) if return_attention else fused
