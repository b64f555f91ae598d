"""Tests for dsco.architectures: the registry, build() and the small-input adaptation."""

import pytest
import torch
from torch import nn

from dsco import architectures as arc
from dsco.data import load


@pytest.fixture(scope="module")
def train():
    return load("digits", "train")


@pytest.mark.parametrize("name", list(arc.ARCHS))
def test_build_every_arch_forward_backward_on_digits(name, train):
    model = arc.build(name, 10, (1, 8, 8), seed=0)
    out = model(train.x[:2])
    assert out.shape == (2, 10)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_build_unknown_arch_lists_names():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'.*convnet.*densenet121"):
        arc.build("vgg", 10)


def test_build_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = (arc.build("convnet", 10, seed=s) for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), state)
    wa, wb, wc = (m.features[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_instance_norm_is_groupnorm_per_channel():
    norm = arc.instance_norm(16)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 16 and norm.affine
    model = arc.build("resnet_ap10", 10)
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    batch = arc.build("resnet18", 10, norm="batch")
    assert any(isinstance(m, nn.BatchNorm2d) for m in batch.modules())


def _smallest_normalised_map(model, x):
    sizes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1] * o.shape[-2]))
        for m in model.modules()
        if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))
    ]
    model(x)
    for h in hooks:
        h.remove()
    return min(sizes)


def test_adapt_to_input_small_and_large():
    # digits: small stems, and every instance-normalised map of the own families is >= 2x2
    for name in ("convnet", "resnet_ap10", "resnet18"):
        model = arc.build(name, 10, (1, 8, 8))
        assert _smallest_normalised_map(model, torch.randn(2, 1, 8, 8)) >= 4
    conv6 = arc.build("convnet", 10, (1, 8, 8), depth=6)
    assert sum(isinstance(m, nn.AvgPool2d) for m in conv6.modules()) == 2
    conv3 = arc.build("convnet", 10, (1, 8, 8))
    assert sum(isinstance(m, nn.AvgPool2d) for m in conv3.modules()) == 3
    r = arc.build("timm_resnet18", 10, (1, 8, 8))
    assert r.conv1.stride == (1, 1) and isinstance(r.maxpool, nn.Identity)
    assert r.conv1.in_channels == 1
    assert arc.build("efficientnet_b0", 10, (1, 8, 8)).conv_stem.stride == (1, 1)
    d = arc.build("densenet121", 10, (1, 8, 8))
    assert d.features.conv0.stride == (1, 1) and isinstance(d.features.pool0, nn.Identity)
    # ImageNet-sized inputs keep the models as designed
    big = arc.build("timm_resnet18", 10, (3, 64, 64))
    assert big.conv1.stride == (2, 2) and isinstance(big.maxpool, nn.MaxPool2d)
    own = arc.build("resnet18", 10, (3, 64, 64))
    assert own.config["stem"] == "imagenet" and own(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    with pytest.raises(ValueError, match="at least 8×8"):
        arc.build("convnet", 10, (1, 4, 4))


def test_budget_widths_build_narrower_models():
    from dsco import registry

    for profile, budget in registry.REGISTRY["digits"].budgets.items():
        for arch, kwargs in {**budget.widths, **budget.timm}.items():
            narrow, full = arc.build(arch, 10, (1, 8, 8), **kwargs), arc.build(arch, 10, (1, 8, 8))
            size = [sum(p.numel() for p in m.parameters()) for m in (narrow, full)]
            assert size[0] < size[1], (profile, arch)
            assert narrow(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_timm_models_come_channels_last_and_the_own_families_do_not():
    """The faster layout per family on a CPU (measured in architectures.channels_last); a channels-
    last model gives the same logits as its contiguous copy up to float rounding."""
    import copy

    x = torch.randn(4, 1, 8, 8)
    small = {"timm_resnet18": dict(channels=(8, 16, 32, 64), stem_width=8), "efficientnet_b0": {}}
    for name, kwargs in small.items():
        m = arc.build(name, 10, (1, 8, 8), seed=0, **kwargs).eval()
        assert arc.channels_last(m)
        assert (
            m.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
            if name == "efficientnet_b0"
            else m.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
        )
        plain = copy.deepcopy(m).to(memory_format=torch.contiguous_format)
        with torch.no_grad():
            a, b = m(x.contiguous(memory_format=torch.channels_last)), plain(x)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    for name in ("convnet", "resnet_ap10"):
        assert not arc.channels_last(arc.build(name, 10, (1, 8, 8), seed=0, width=8))
