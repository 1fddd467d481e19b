"""The reference U-Net, layer by layer, as DEVELOPERS.md describes it."""

import torch
from torch import nn

from audiodenoise.nets.unet import UNet, UNetConfig


def output_shape(model: UNet, module: nn.Module) -> tuple[int, ...]:
    seen = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    model(torch.zeros(1, 1, 128, 128))
    handle.remove()
    return seen[0]


def convs(module: nn.Module) -> list[tuple[int, int, tuple[int, int]]]:
    return [(m.in_channels, m.out_channels, m.kernel_size) for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_contracting_path_doubles_filters_with_two_3x3_convs_per_level():
    model = UNet(UNetConfig())
    expected_in = [1, 16, 32, 64]
    for level, (block, width) in enumerate(zip(model.encoder, [16, 32, 64, 128])):
        assert convs(block) == [(expected_in[level], width, (3, 3)), (width, width, (3, 3))]
    assert isinstance(model.pool, nn.MaxPool2d) and model.pool.kernel_size == 2


def test_bottleneck_is_two_3x3_convs_of_256_then_dropout_at_8x8():
    model = UNet(UNetConfig())
    assert convs(model.bottleneck) == [(128, 256, (3, 3)), (256, 256, (3, 3))]
    assert output_shape(model, model.bottleneck_dropout) == (1, 256, 8, 8)


def test_dropout_sits_before_the_fourth_pool_and_after_the_bottleneck():
    model = UNet(UNetConfig(dropout=0.5))
    dropouts = [name for name, m in model.named_modules() if isinstance(m, nn.Dropout)]
    assert dropouts == ["encoder_dropout", "bottleneck_dropout"]
    assert output_shape(model, model.encoder_dropout) == (1, 128, 16, 16)  # 4th level, before its pool


def test_expanding_path_upsamples_halves_filters_concats_and_convs():
    model = UNet(UNetConfig())
    for step, width in zip(model.decoder, [256, 128, 64, 32]):
        assert isinstance(step.upsample, nn.Upsample) and step.upsample.scale_factor == 2
        assert convs(step) == [
            (width, width // 2, (2, 2)),
            (width, width // 2, (3, 3)),  # after concat with the skip: width channels in
            (width // 2, width // 2, (3, 3)),
        ]


def test_head_and_leaky_relu_after_every_conv():
    model = UNet(UNetConfig())
    assert convs(model.head) == [(16, 2, (3, 3)), (2, 1, (1, 1))]
    modules = list(model.modules())
    n_convs = sum(isinstance(m, nn.Conv2d) for m in modules)
    n_leaky = sum(isinstance(m, nn.LeakyReLU) for m in modules)
    assert n_leaky == n_convs - 1  # every conv but the final 1x1, which feeds the output activation
    assert n_convs == 4 * 2 + 2 + 4 * 3 + 2


def test_output_shape_and_parameter_count():
    for target, activation in (("mask", nn.Sigmoid), ("noise", nn.Tanh)):
        model = UNet(UNetConfig(target=target)).eval()
        out = model(torch.randn(3, 1, 128, 128))
        assert out.shape == (3, 1, 128, 128)
        assert isinstance(model.head[-1], activation)
        assert sum(p.numel() for p in model.parameters()) == 1_941_093


def test_unknown_target_is_refused():
    try:
        UNetConfig(target="magic")
    except ValueError as error:
        assert "target" in str(error)
    else:
        raise AssertionError("an unknown target was accepted")


def test_a_near_saturated_mask_still_learns_under_bf16_autocast():
    model = UNet(UNetConfig(target="mask")).eval()
    with torch.no_grad():
        model.head[2].weight.zero_()
        model.head[2].bias.fill_(7.0)  # sigmoid(7) = 0.99909, which bfloat16 rounds to exactly 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gain = model(torch.randn(1, 1, 128, 128))
    assert gain.dtype == torch.float32 and float(gain.detach().max()) < 1.0
    gain.mean().backward()
    assert float(model.head[2].bias.grad) > 1e-4
