"""Missing images: modality dropout while training, ``missing_image="metadata"`` at predict time."""

import pytest
import torch

from bmdkit.nn import BMDNet, fusion_class, fusion_names

IMAGE_FUSIONS = [name for name in fusion_names() if fusion_class(name).uses_image]


def tiny_net(fusion, **kwargs):
    return BMDNet(fusion, n_numeric=2, cardinalities=[3], backbone="resnet10t", embed_dim=16,
                  n_heads=2, n_layers=1, augment=False, **kwargs)


@pytest.mark.parametrize("fusion", IMAGE_FUSIONS)
def test_every_fusion_puts_its_learned_token_in_place_of_a_missing_image(fusion):
    torch.manual_seed(0)
    plain = tiny_net(fusion)
    torch.manual_seed(0)
    net = tiny_net(fusion, modality_dropout=0.5)
    # the token starts at zero and draws nothing: every other weight is as without it
    extra = {k for k in net.state_dict()} - set(plain.state_dict())
    assert extra == {"fusion.missing_image"}
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(net.state_dict()[key], value, rtol=0, atol=0)
    with torch.no_grad():  # a trained token is not zero
        net.fusion.missing_image.copy_(torch.linspace(-1, 1, 16))
    net.eval()
    images = torch.stack([torch.rand(1, 32, 32), torch.linspace(0, 1, 32).expand(1, 32, 32)])
    numeric, categorical = torch.zeros(2, 2), torch.ones(2, 1, dtype=torch.long)
    missing = net(image=images, numeric=numeric, categorical=categorical,
                  image_missing=torch.tensor([True, True]))
    torch.testing.assert_close(missing[0], missing[1])  # the images no longer matter
    seen = net(image=images, numeric=numeric, categorical=categorical)
    assert (seen[0] - seen[1]).abs() > 1e-6 and (seen[0] - missing[0]).abs() > 1e-6
    one = net(image=images, numeric=numeric, categorical=categorical,
              image_missing=torch.tensor([False, True]))
    torch.testing.assert_close(one, torch.stack([seen[0], missing[1]]))
    with pytest.raises(ValueError, match="no learned 'no image' token"):
        plain.eval()(image=images, numeric=numeric, categorical=categorical,
                     image_missing=torch.tensor([True, False]))


def test_modality_dropout_hides_a_share_of_the_rows_while_training():
    torch.manual_seed(0)
    net = tiny_net("concat", modality_dropout=0.5).train()
    images = torch.rand(64, 1, 32, 32)
    out = net(image=images, numeric=torch.zeros(64, 2),
              categorical=torch.ones(64, 1, dtype=torch.long))
    out.sum().backward()
    assert net.fusion.missing_image.grad.abs().sum() > 0  # the token learns
    hidden = net.modality_dropout(None, 10_000, "cpu")
    assert 0.47 < hidden.float().mean() < 0.53
    assert not net.modality_dropout.eval()(None, 4, "cpu")  # off in eval mode
