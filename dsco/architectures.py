"""Architectures: the classifiers that the evaluation trains (paper App. D), by name.

A flat registry ``ARCHS`` (name -> constructor) and :func:`build`, the one way to make a model.
The paper's own families, written here because the paper defines them (DD-literature versions):
``convnet`` (ConvNet-D), ``resnet_ap10`` (ResNetAP-10), ``resnet18`` (CIFAR-style ResNet-18);
and timm models created from their configs, random init, never downloaded: ``timm_resnet18``,
``timm_resnet34``, ``timm_resnet101``, ``efficientnet_b0``, ``mobilenetv2_100``,
``densenet121``. ``LABELS`` / :func:`label` give their display names. Small inputs (digits,
1×8×8) are handled in one place, :func:`adapt_to_input` (its docstring lists every change: a
deviation from the paper, which trains on 224-px images).

Every bad input raises :class:`EvaluateError` (defined here, where it is first raised; shared by
:mod:`dsco.training` and :mod:`dsco.evaluate`), one line naming the fix.
"""

from __future__ import annotations

import math
from typing import Callable

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F


class EvaluateError(ValueError):
    """A bad architecture, protocol, surrogate, test set or teacher; the message names the fix."""


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------


def _convnet(num_classes, input_shape, depth: int = 3, width: int = 128, norm: str = "instance"):
    c, h, _ = input_shape
    return ConvNet(num_classes, c, h, depth, width, norm)


def _resnet_ap10(num_classes, input_shape, norm: str = "instance", width: int = 64):
    return ResNet(num_classes, input_shape[0], (1, 1, 1, 1), "avgpool", norm, width=width)


def _resnet18(num_classes, input_shape, norm: str = "instance", width: int = 64):
    return ResNet(num_classes, input_shape[0], (2, 2, 2, 2), "stride", norm, width=width)


def _timm(timm_name: str) -> Callable:
    def make(num_classes, input_shape, **kwargs):
        return timm.create_model(
            timm_name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **kwargs
        )

    make.timm_name = timm_name
    return make


#: name -> constructor(num_classes, input_shape, **kwargs). The three own families default to
#: instance norm, as the official evaluation (``--norm-type instance``); pass ``norm="batch"``
#: to :func:`build` for the batch-norm variants. timm models keep their own (batch) norms.
ARCHS: dict[str, Callable] = {
    "convnet": _convnet,
    "resnet_ap10": _resnet_ap10,
    "resnet18": _resnet18,
    "timm_resnet18": _timm("resnet18"),
    "timm_resnet34": _timm("resnet34"),
    "timm_resnet101": _timm("resnet101"),
    "efficientnet_b0": _timm("efficientnet_b0"),
    "mobilenetv2_100": _timm("mobilenetv2_100"),
    "densenet121": _timm("densenet121"),
}
#: Display names of the architectures (ConvNet-D takes its depth from the kwargs: 3 by default).
LABELS = {
    "convnet": "ConvNet-{depth}",
    "resnet_ap10": "ResNetAP-10",
    "resnet18": "ResNet-18",
    "timm_resnet18": "ResNet-18",
    "timm_resnet34": "ResNet-34",
    "timm_resnet101": "ResNet-101",
    "efficientnet_b0": "EfficientNet-B0",
    "mobilenetv2_100": "MobileNet-V2",
    "densenet121": "DenseNet-121",
}

#: Images smaller than this (on the short side) get the small-input adaptation.
SMALL_INPUT = 64


# ---------------------------------------------------------------------------------------------
# Building a model
# ---------------------------------------------------------------------------------------------


def build(name: str, num_classes: int, input_shape=(1, 8, 8), seed: int = 0, **kwargs) -> nn.Module:
    """Model ``name`` from :data:`ARCHS` for ``num_classes`` classes and C×H×W ``input_shape``,
    randomly initialised from ``seed`` (same seed => same weights; the global RNG is untouched),
    adapted to the input size by :func:`adapt_to_input`. ``kwargs`` go to the constructor:
    ``depth``, ``width`` (128), ``norm`` for ``convnet``; ``norm`` ("instance" / "batch") and
    ``width`` (64: stage widths 64-128-256-512 as in the paper; smaller is cheaper on a CPU) for
    ``resnet_ap10`` / ``resnet18``; timm keyword arguments for the timm models. The timm models
    come in the channels-last memory layout (:func:`channels_last`), the paper's own families in the
    default one (each the faster layout for it on a CPU; the arithmetic is the same)."""
    if name not in ARCHS:
        raise EvaluateError(f"unknown architecture {name!r}: use one of {', '.join(ARCHS)}")
    if len(tuple(input_shape)) != 3:
        raise EvaluateError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ARCHS[name](num_classes, tuple(input_shape), **kwargs)
        model = adapt_to_input(model, name, tuple(input_shape))
    if hasattr(ARCHS[name], "timm_name"):
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    return model


def channels_last(model: nn.Module) -> bool:
    """Whether :func:`build` put ``model`` in the channels-last layout (NHWC), the layout its inputs
    should have too (:func:`dsco.training.train_model` converts every batch). Measured on the
    2-core CPU (Dec. 2026, 1 thread, digits 8×8, batch 64, ms per training step, NCHW → NHWC):
    EfficientNet-B0 358 → 137, MobileNet-V2 146 → 79, DenseNet-121 208 → 151, ResNet-18 30 →
    26; ConvNet-3 4.3 → 6.7 and ResNetAP-10 21 → 25 (slower: they stay NCHW)."""
    return bool(getattr(model, "channels_last", False))


def label(arch: str, **kwargs) -> str:
    """The display name of ``arch`` built with ``kwargs`` (e.g. ``label("convnet")`` is
    "ConvNet-3")."""
    return LABELS[arch].format(depth=kwargs.get("depth", 3))


def adapt_to_input(model: nn.Module, name: str, input_shape) -> nn.Module:
    """Adapt a freshly built model to its input size -- the ONE place where this happens.

    Every model is first built as designed for 224-px ImageNet images (``in_chans`` = the
    images' channels, 1 for digits). Inputs with a short side of at least ``SMALL_INPUT`` (64 px)
    keep it. Smaller inputs (digits, 1×8×8) would shrink to 2×2 after an ImageNet stem and below
    1×1 in the later stages. Instance norm on a 1×1 map outputs its bias whatever the input (one
    value minus its own mean), so the own families also keep every normalised map at least 2×2.
    With ``L = floor(log2(short side))`` (3 for 8×8):

    - ``convnet``: D ≤ L blocks each end in an average pool (ConvNet-3 on 8×8: convs at 8, 4, 2,
      pooled to 1×1 before the linear layer); a deeper net pools L − 1 times (ConvNet-6 on 8×8:
      8 → 4 → 2, its last four blocks at 2×2, a 2×2×128 map into the linear layer).
    - ``resnet_ap10``, ``resnet18``: CIFAR-style stem (3×3 stride-1 conv, no max-pool) and
      L − 1 downsampling stages (two on 8×8: the four stages run at 8, 4, 2 and 2 px; global
      average pool).
    - ``timm_resnet*``: ``conv1`` becomes a 3×3 stride-1 conv (64 channels), ``maxpool`` is
      removed.
    - ``efficientnet_b0``, ``mobilenetv2_100``: the 3×3 stem conv gets stride 1 (the remaining
      stride-2 stages take 8×8 to 1×1; a stride-2 3×3 conv on 1×1 stays 1×1).
    - ``densenet121``: stem ``conv0`` becomes a 3×3 stride-1 conv, ``pool0`` is removed (the
      three transition pools take 8×8 to 1×1).
    The own families are rebuilt with the adapted settings; timm models are edited in place.
    """
    c, h, w = input_shape
    side = min(h, w)
    if side >= SMALL_INPUT:
        return model
    if side < 8:
        raise EvaluateError(
            f"images of {h}×{w} are too small for {name}: use at least 8×8 (upsample them)"
        )
    levels = int(math.floor(math.log2(side)))
    if isinstance(model, ConvNet):
        depth = model.config["depth"]
        return ConvNet(**(model.config | {"pools": depth if depth <= levels else levels - 1}))
    if isinstance(model, ResNet):
        return ResNet(**(model.config | {"stem": "small", "downsamples": min(levels - 1, 3)}))
    timm_name = getattr(ARCHS[name], "timm_name", name)
    if timm_name.startswith("resnet"):
        model.conv1 = nn.Conv2d(c, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif timm_name.startswith(("efficientnet", "mobilenet")):
        model.conv_stem.stride = (1, 1)
    elif timm_name.startswith("densenet"):
        model.features.conv0 = nn.Conv2d(c, model.features.conv0.out_channels, 3, 1, 1, bias=False)
        model.features.pool0 = nn.Identity()
    else:
        raise EvaluateError(f"no small-input adaptation for {name}: add one to adapt_to_input")
    return model


# ---------------------------------------------------------------------------------------------
# The paper's own families
# ---------------------------------------------------------------------------------------------


def instance_norm(channels: int) -> nn.Module:
    """The DD literature's "instancenorm": ``GroupNorm(C, C, affine=True)`` (one group per
    channel)."""
    return nn.GroupNorm(channels, channels, affine=True)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return instance_norm(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise EvaluateError(f"unknown norm {kind!r}: use 'instance' or 'batch'")


class ConvNet(nn.Module):
    """ConvNet-D of the DD literature: [conv 3×3 (width) → instance norm → ReLU → avg-pool 2] × D
    → linear.

    The paper evaluates ConvNet-6 on 224-px images; on 8×8 digits the default depth is 3
    (8 → 4 → 2 → 1). ``pools`` (set by :func:`adapt_to_input`) is how many of the D blocks end in
    an average pool, so a deep net on a small image never pools the map away. Convs keep their
    bias and padding 1, as in the DD literature.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        image_size: int = 8,
        depth: int = 3,
        width: int = 128,
        norm: str = "instance",
        pools: int | None = None,
    ):
        super().__init__()
        pools = depth if pools is None else pools
        self.config = dict(
            num_classes=num_classes,
            in_chans=in_chans,
            image_size=image_size,
            depth=depth,
            width=width,
            norm=norm,
            pools=pools,
        )
        layers, size, c = [], image_size, in_chans
        for d in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), _norm(norm, width), nn.ReLU(inplace=True)]
            if d < pools:
                layers.append(nn.AvgPool2d(2, 2))
                size = max(size // 2, 1)  # (an unadapted deep net on a small image is rebuilt)
            c = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    """ResNet basic block; ``downsample="stride"`` (ResNet) or ``"avgpool"`` (ResNetAP: a stride-1
    conv followed by a 2×2 average pool, and the same pool on the 1×1-conv shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, downsample: str):
        super().__init__()
        ap = downsample == "avgpool" and stride > 1
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1 if ap else stride, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2) if ap else nn.Identity()
        self.norm1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = _norm(norm, c_out)
        self.shortcut = nn.Identity()
        if stride > 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, 1 if ap else stride, bias=False),
                nn.AvgPool2d(2, 2) if ap else nn.Identity(),
                _norm(norm, c_out),
            )

    def forward(self, x):
        out = self.pool(F.relu(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """The DD literature's ResNets: stem, four stages of basic blocks (``width`` × 1, 2, 4, 8
    channels; 64 as in the paper), global average pool, linear.

    ``blocks=(1, 1, 1, 1), downsample="avgpool"`` is ResNetAP-10; ``blocks=(2, 2, 2, 2),
    downsample="stride"`` is ResNet-18. ``stem="imagenet"`` is the 7×7 stride-2 conv + 3×3
    max-pool; ``stem="small"`` a 3×3 stride-1 conv without max-pool (CIFAR-style). The first
    ``downsamples`` stages after the first halve the map. :func:`adapt_to_input` sets both.
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        blocks=(2, 2, 2, 2),
        downsample: str = "stride",
        norm: str = "instance",
        stem: str = "imagenet",
        downsamples: int = 3,
        width: int = 64,
    ):
        super().__init__()
        self.config = dict(
            num_classes=num_classes,
            in_chans=in_chans,
            blocks=tuple(blocks),
            downsample=downsample,
            norm=norm,
            stem=stem,
            downsamples=downsamples,
            width=width,
        )
        if stem == "small":
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, width, 3, 1, 1, bias=False),
                _norm(norm, width),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, width, 7, 2, 3, bias=False),
                _norm(norm, width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages, c = [], width
        for i, n in enumerate(blocks):
            stride = 2 if 0 < i <= downsamples else 1
            for b in range(n):
                stages.append(
                    BasicBlock(c, width * 2**i, stride if b == 0 else 1, norm, downsample)
                )
                c = width * 2**i
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.stages(self.stem(x)).mean((2, 3)))
