r"""Fusion of image tokens and metadata tokens.

XAttn-BMD fusion (:class:`BidirectionalCrossAttention`), for layer
:math:`l = 1..L` with image tokens :math:`I` and metadata tokens :math:`M`:

.. math::

    I^{l} &= I^{l-1} + \mathrm{MHA}(q = I^{l-1}, k = v = M^{l-1}),
        \;\; I^{l} \leftarrow I^{l} + \mathrm{FFN}(I^{l}) \\
    M^{l} &= M^{l-1} + \mathrm{MHA}(q = M^{l-1}, k = v = I^{l}),
        \;\; M^{l} \leftarrow M^{l} + \mathrm{FFN}(M^{l}) \\
    f^{l} &= [\,\overline{I^{l}}\,;\,\overline{M^{l}}\,], \qquad
    z = \sum_l \operatorname{softmax}(\alpha)_l \, f^{l}

(pre-norm layer normalisation omitted). Metadata tokens attend to the image
tokens *already updated* in the same layer: that is the key-value updater.
:math:`\alpha` are the learned layer-wise fusion weights and the bar is a mean
over tokens.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CrossAttentionBlock", "BidirectionalCrossAttention"]


class CrossAttentionBlock(nn.Module):
    """Queries from one modality attend to keys/values from the other (pre-norm)."""

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

    def forward(self, query, context, need_weights=False):
        context = self.norm_context(context)
        attended, weights = self.attention(
            self.norm_query(query), context, context,
            need_weights=need_weights, average_attn_weights=True,
        )
        query = query + self.dropout(attended)
        return query + self.ff(self.norm_ff(query)), weights


class BidirectionalCrossAttention(nn.Module):
    """L layers of image↔metadata cross-attention with layer-wise fusion weights.

    Parameters
    ----------
    embed_dim : int
        Token width of both modalities.
    n_heads : int, default=4
    n_layers : int, default=3
    dropout : float, default=0.1

    The output has ``2 * embed_dim`` features (pooled image and metadata
    tokens). With ``return_attention=True`` the forward pass also returns a
    dict with ``image_to_metadata`` ``(B, L, N_img, N_meta)``,
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
        self.out_features = 2 * embed_dim

    def forward(self, image_tokens, metadata_tokens, return_attention=False):
        pooled, img_attn, meta_attn = [], [], []
        for to_image, to_metadata in zip(self.image_from_metadata, self.metadata_from_image):
            image_tokens, a_im = to_image(image_tokens, metadata_tokens, return_attention)
            metadata_tokens, a_mi = to_metadata(metadata_tokens, image_tokens, return_attention)
            pooled.append(torch.cat([image_tokens.mean(1), metadata_tokens.mean(1)], dim=1))
            img_attn.append(a_im)
            meta_attn.append(a_mi)
        layer_weights = torch.softmax(self.layer_logits, dim=0)
        fused = torch.einsum("l,lbd->bd", layer_weights, torch.stack(pooled))
        if not return_attention:
            return fused
        return fused, {
            "image_to_metadata": torch.stack(img_attn, dim=1),
            "metadata_to_image": torch.stack(meta_attn, dim=1),
            "layer_weights": layer_weights,
        }
