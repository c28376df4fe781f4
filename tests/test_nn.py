"""The torch modules: shapes, attention, augmentation, local pretrained weights."""

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from bmdkit.nn import BMDNet, RadiographAugment, create_backbone, create_fusion, fusion_names

SMALL = dict(backbone="resnet10t", embed_dim=16, n_heads=2, n_layers=2, dropout=0.0)


def batch(b=3, size=32):
    torch.manual_seed(0)
    return dict(image=torch.rand(b, 1, size, size), numeric=torch.randn(b, 2),
                categorical=torch.tensor([[1], [2], [0]])[:b])


@pytest.mark.parametrize("fusion", fusion_names())
def test_every_fusion_maps_a_batch_to_one_value_per_subject(fusion):
    net = BMDNet(fusion, n_numeric=2, cardinalities=[2], **SMALL).eval()
    assert net(**batch()).shape == (3, 1)
    assert BMDNet(fusion, n_numeric=2, cardinalities=[2], n_outputs=3, **SMALL).eval()(
        **batch()).shape == (3, 3)


def test_an_unknown_fusion_is_named_with_the_registered_ones():
    with pytest.raises(ValueError, match="'film'.*|.*xattn"):
        BMDNet("film", n_numeric=2, cardinalities=[2], **SMALL)


def test_xattn_starts_as_exactly_the_concat_features():
    """Zero-initialised gates: cross-attention adds to the concat path, it does not replace it."""
    torch.manual_seed(0)
    fusion = create_fusion("xattn", embed_dim=16, n_numeric=2, cardinalities=[2], dropout=0.0,
                           n_heads=2, n_layers=2).eval()
    inputs = batch()
    tokens, positions = torch.randn(3, 5, 16), torch.randn(5, 16)
    concat = torch.cat([tokens.mean(1), fusion.metadata_mlp(inputs["numeric"],
                                                            inputs["categorical"])], dim=1)

    def fused():
        return fusion(tokens, inputs["numeric"], inputs["categorical"], positions)

    assert torch.allclose(fused(), concat, atol=1e-6)
    with torch.no_grad():  # once the gates open, attention changes the features
        for block in fusion.cross_attention.image_from_metadata:
            block.attention_gate.fill_(1.0)
    assert not torch.allclose(fused(), concat, atol=1e-3)


def test_the_metadata_learn_where_to_look():
    """Metadata-position pooling learns to take the token at the place a metadata field names."""
    from bmdkit.nn import MetadataPositionPooling

    torch.manual_seed(0)
    n, d = 256, 16
    side = torch.randint(0, 2, (n,))
    metadata = torch.nn.functional.one_hot(side, d).float()  # the field naming the place
    positions = torch.randn(2, d)
    tokens = torch.randn(n, 2, d)
    target = tokens[torch.arange(n), side, 0]  # what the image shows at that place
    pooling = MetadataPositionPooling(d)
    readout = torch.nn.Linear(d, 1)
    optimizer = torch.optim.Adam([*pooling.parameters(), *readout.parameters()], lr=0.05)
    _, before = pooling(tokens, metadata, positions)
    assert torch.allclose(before, torch.full_like(before, 0.5))  # starts as the plain mean
    for _ in range(200):
        optimizer.zero_grad()
        pooled, weights = pooling(tokens, metadata, positions)
        loss = torch.nn.functional.mse_loss(readout(pooled)[:, 0], target)
        loss.backward()
        optimizer.step()
    chosen = weights.detach()[torch.arange(n), side]
    assert chosen.mean() > 0.9 and loss.item() < 0.1 * target.var().item()


def test_field_tokens_start_with_comparable_norms_and_a_zero_missing_row():
    torch.manual_seed(0)
    from bmdkit.nn import MetadataTokenizer

    tokenizer = MetadataTokenizer(8, [3, 3, 3, 3], embed_dim=64)
    numeric_norm = tokenizer.numeric_weight.norm(dim=1).mean()
    categorical_norm = torch.stack([e.weight[1:].norm(dim=1).mean() for e in tokenizer.categorical])
    assert 0.5 < float((categorical_norm.mean() / numeric_norm).detach()) < 2.0
    assert all(not e.weight[0].detach().any() for e in tokenizer.categorical)


def test_xattn_returns_attention_and_layer_weights():
    net = BMDNet("xattn", n_numeric=2, cardinalities=[2], **SMALL).eval()
    out, att = net.forward_attention(**batch())
    assert out.shape == (3, 1)
    assert att["image_to_metadata"].shape[:2] == (3, 2) and att["image_to_metadata"].shape[-1] == 3
    assert att["metadata_to_image"].shape[2] == 3
    assert torch.allclose(att["layer_weights"].sum(), torch.tensor(1.0))
    assert att["image_pooling"].shape == (3, 1) and torch.allclose(  # 32 px: one 1x1 token
        att["image_pooling"].sum(1), torch.ones(3))


def test_metadata_tokens_attend_to_updated_image_tokens():
    """Key-value updater: layer l's metadata queries use the image tokens updated in layer l."""
    from bmdkit.nn import BidirectionalCrossAttention

    torch.manual_seed(0)
    fuse = BidirectionalCrossAttention(16, n_heads=2, n_layers=2, dropout=0.0).eval()
    with torch.no_grad():  # open the zero-initialised gates
        for parameter in fuse.parameters():
            if parameter.ndim == 1 and not parameter.any():
                parameter.fill_(1.0)
    image, meta = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    *_, att = fuse(image, meta, return_attention=True)
    updated, _ = fuse.image_from_metadata[0](image, meta)
    _, with_updated = fuse.metadata_from_image[0](meta, updated, True)
    _, with_original = fuse.metadata_from_image[0](meta, image, True)
    assert torch.allclose(att["metadata_to_image"][:, 0], with_updated, atol=1e-6)
    assert not torch.allclose(att["metadata_to_image"][:, 0], with_original, atol=1e-3)


def test_augmentation_is_random_in_training_and_identity_in_eval():
    aug = RadiographAugment()
    image = torch.rand(4, 1, 32, 32)
    assert torch.equal(aug.eval()(image), image)
    torch.manual_seed(0)
    first = aug.train()(image)
    torch.manual_seed(0)
    assert torch.equal(aug(image), first) and not torch.allclose(first, image)


def test_pretrained_weights_come_from_a_local_file_and_adapt_to_one_channel(tmp_path):
    donor = timm.create_model("resnet10t", pretrained=False, in_chans=3, num_classes=1000)
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    model = create_backbone("resnet10t", pretrained=path)
    first_conv = model.conv1[0].weight
    assert first_conv.shape[1] == 1
    expected = donor.conv1[0].weight.sum(dim=1, keepdim=True)
    np.testing.assert_allclose(first_conv.detach().numpy(), expected.detach().numpy(), rtol=1e-5)
    assert model.num_features == donor.num_features


def test_a_pretrained_backbone_sees_the_input_normalisation_of_its_weights(tmp_path):
    from bmdkit.nn import ImageEncoder

    donor = timm.create_model("resnet10t", pretrained=False, in_chans=3, num_classes=1000)
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    encoder = ImageEncoder("resnet10t", pretrained=path, embed_dim=8).eval()
    config = encoder.backbone.pretrained_cfg
    mean, std = np.mean(config["mean"]), np.mean(config["std"])
    image = torch.rand(2, 1, 32, 32)
    expected = encoder.backbone.forward_features((image - float(mean)) / float(std))
    assert torch.allclose(encoder.backbone_features(image), expected, atol=1e-5)
    plain = ImageEncoder("resnet10t", embed_dim=8)
    assert (float(plain.input_mean), float(plain.input_std)) == (0.0, 1.0)


def test_an_encoder_reads_its_weights_file_metadata_once(tmp_path, monkeypatch):
    from bmdkit.nn import ImageEncoder, weights

    path = tmp_path / "w.safetensors"
    backbone = timm.create_model("resnet10t", in_chans=1, num_classes=0, global_pool="")
    weights.save_backbone_weights(path, backbone, name="resnet10t", image_size=32,
                                  input_mean=0.4, input_std=0.2)
    reads = []
    read = weights.backbone_file_metadata
    monkeypatch.setattr(weights, "backbone_file_metadata",
                        lambda *args: reads.append(args) or read(*args))
    encoder = ImageEncoder("resnet10t", pretrained=path, embed_dim=8)
    assert len(reads) == 1
    assert (float(encoder.input_mean), float(encoder.input_std)) == pytest.approx((0.4, 0.2))


def test_missing_pretrained_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        create_backbone("resnet10t", pretrained=tmp_path / "nothing.safetensors")


def test_each_tile_is_encoded_on_its_own():
    """With image_tiles=(1, 2) the tokens of one half never see the other half."""
    from bmdkit.nn import ImageEncoder

    torch.manual_seed(0)
    image = torch.rand(2, 1, 64, 64)
    other_right_half = image.clone()
    other_right_half[..., 32:] = torch.rand(2, 1, 64, 32)
    tiled = ImageEncoder("resnet10t", embed_dim=8, tiles=(1, 2)).eval()
    tokens, changed = tiled(image), tiled(other_right_half)
    assert tokens.shape == (2, 4, 8)  # a 2 × 1 map per 64 × 32 tile, laid side by side
    left, right = [0, 2], [1, 3]  # row-major tokens of the joined 2 × 2 map
    assert torch.equal(tokens[:, left], changed[:, left])
    assert not torch.allclose(tokens[:, right], changed[:, right], atol=1e-4)
    whole = ImageEncoder("resnet10t", embed_dim=8).eval()  # untiled, every token sees both halves
    assert not torch.allclose(whole(image)[:, left], whole(other_right_half)[:, left], atol=1e-5)
    # each tile is what the backbone makes of it alone
    expected = tiled.backbone.forward_features(image[..., :32])
    assert torch.allclose(tiled.backbone_features(image)[..., :1], expected, atol=1e-6)


@pytest.mark.parametrize("tiles", [(0, 2), (1,), "1x2", (1.5, 2), None])
def test_bad_tiles_are_named(tiles):
    from bmdkit.nn import ImageEncoder

    with pytest.raises(ValueError, match="image_tiles must be a pair"):
        ImageEncoder("resnet10t", embed_dim=8, tiles=tiles)


def test_tiles_come_back_where_they_were_cut():
    """join_tiles undoes split_tiles on any grid, for feature maps and for token sequences."""
    from bmdkit.nn.backbones import join_tiles, split_tiles

    images = torch.arange(2 * 6 * 12, dtype=torch.float32).reshape(2, 1, 6, 12)
    tiles = split_tiles(images, (2, 3))
    assert tiles.shape == (12, 1, 3, 4)
    assert torch.equal(tiles[5 * 2 + 1], images[1, :, 3:, 8:])  # tile (row 1, col 2) of image 1
    assert torch.equal(join_tiles(tiles, (2, 3)), images)
    tokens = torch.arange(12.0)[:, None, None].expand(12, 2, 1)  # 2 tokens per row: its index
    joined = join_tiles(tokens, (2, 3))
    assert joined.shape == (2, 12, 1)
    assert joined[1, :, 0].tolist() == [t for tile in range(1, 12, 2) for t in (tile, tile)]


def test_the_pooling_logits_are_not_scaled():
    """softmax(q · k) with no 1/sqrt(d): the scale sets how fast the pooling can sharpen."""
    from bmdkit.nn import MetadataPositionPooling

    torch.manual_seed(0)
    pooling = MetadataPositionPooling(16)
    torch.nn.init.normal_(pooling.query.weight)
    metadata, positions, tokens = torch.randn(3, 16), torch.randn(4, 16), torch.randn(3, 4, 16)
    _, weights = pooling(tokens, metadata, positions)
    expected = (pooling.query(metadata) @ pooling.key(positions).T).softmax(-1)
    assert torch.allclose(weights, expected, atol=1e-6)
