"""The random feature projector of NOpt (paper §4.1.2 and Appendix C).

Every NOpt loss compares *features* of latent codes rather than the latents themselves. The
features come from a randomly initialised, never trained, encoder-like CNN (App. C; the official
code's ``s16`` projector):

* layer 1: a dense 3×3 convolution, stride 1, padding 1, ``C → widths[0]``;
* layers 2…: 4×4 convolutions, stride 2, padding 1, with ``groups`` independent groups (16 in the
  paper), ``widths[i-1] → widths[i]``; each halves the spatial size;
* LeakyReLU(0.01) *between* layers, none after the last one (the features can be negative);
* no normalisation layers, no final linear layer (it would break shift-invariance, App. C);
* PyTorch's default initialisation, drawn from a seeded generator; all parameters are frozen.

Grouped convolutions make the projector equivalent to ``groups`` independent random projectors
run side by side (§4.1.2), and a wide output (``J ≫ C``) makes its channels nearly uncorrelated
(the O(1/√m) argument of §4.1.2), which is what lets NOpt align the feature distributions one
channel at a time (Eq. 20–21, 27).

Presets (:data:`PRESETS`):

``"paper"``
    4×32×32 latents (DiT / SD-VAE at 256 px): ``4 → 256 → 512 → 1024 → 2048``, output 2048×4×4.
``"digits"``
    1×8×8 pixel-space digits: ``1 → 64 → 128 → 256`` (dense layer + two stride-2 grouped layers,
    16 groups), output 256×2×2. Like the paper's projector it keeps the dense first layer, widens
    the channels ≫ C and shrinks the spatial size (8×8 → 2×2; the paper's 32×32 → 4×4 uses three
    stride-2 layers, a third one here would leave a single pixel). Cost, measured on the project's
    shared 2-core CPU (best of 5 × 50 repeats, load average 3–5 from parallel jobs): one forward +
    backward pass for 100 images of 1×8×8 takes ≈11 ms with 2 threads (≈24 ms with 1), and ≈2 ms
    for 10 images (one class at IPC 10, what one NOpt iteration projects). ``1 → 32 → 64 → 128`` is
    not measurably cheaper at 10 images (≈2 ms; ≈10 ms for 100), ``1 → 128 → 256 → 512`` costs
    ≈5 ms for 10 and 60–150 ms for 100 images. 256 output channels give 256 nearly independent
    1-D alignment problems per step at no extra cost over 128.
``"latent"``
    4×8×8 latents of the CPU-sized latent recipe (``mnist``, folder datasets; :mod:`dsco.recipes`):
    ``4 → 64 → 128 → 256``, App. C's structure (a dense 3×3 stride-1 layer, then stride-2 16-group
    convolutions), output 256×2×2.
"""

from __future__ import annotations

import torch
from torch import nn

#: Named projector configurations: input channels, channel widths and groups.
PRESETS = {
    "paper": {"in_channels": 4, "widths": (256, 512, 1024, 2048), "groups": 16},
    "digits": {"in_channels": 1, "widths": (64, 128, 256), "groups": 16},
    "latent": {"in_channels": 4, "widths": (64, 128, 256), "groups": 16},
}


class RandomProjector(nn.Sequential):
    """A frozen random grouped-conv feature projector (App. C).

    Args:
        in_channels: channels ``C`` of the latent codes.
        widths: output channels of each layer; the first layer is the dense 3×3 stride-1 conv,
            each further layer a 4×4 stride-2 pad-1 conv with ``groups`` groups.
        groups: number of groups of the stride-2 convolutions (16 in the paper).
        seed: seed of the weights; the same seed gives the same weights, and building a projector
            leaves the global torch RNG untouched.
        negative_slope: LeakyReLU slope between layers (0.01).
        device: where to put the (CPU-initialised) weights.

    Input ``(N, C, H, W)`` → output ``(N, widths[-1], H / 2^(len(widths)-1), W /
    2^(len(widths)-1))``.
    """

    def __init__(
        self,
        in_channels: int,
        widths=(256, 512, 1024, 2048),
        groups: int = 16,
        seed: int = 0,
        negative_slope: float = 0.01,
        device="cpu",
    ):
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise ValueError(
                "widths is empty: give at least one layer width, e.g. widths=(64, 128, 256)"
            )
        bad = [w for w in (widths if len(widths) > 1 else ()) if w % groups]  # grouped-conv in/out
        if bad:
            raise ValueError(
                f"widths {widths} are not all divisible by groups={groups}: "
                f"use multiples of {groups} (or change groups)"
            )
        layers = []
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the global RNG
            torch.manual_seed(seed)
            layers.append(nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1))
            for w_in, w_out in zip(widths[:-1], widths[1:]):
                layers.append(nn.LeakyReLU(negative_slope))
                layers.append(
                    nn.Conv2d(w_in, w_out, kernel_size=4, stride=2, padding=1, groups=groups)
                )
        super().__init__(*layers)
        self.in_channels, self.widths, self.groups, self.seed = in_channels, widths, groups, seed
        self.requires_grad_(False)
        self.eval()
        self.to(device)

    @property
    def out_channels(self) -> int:
        """Number of feature channels ``J``."""
        return self.widths[-1]

    def output_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape ``(J, K, L)`` of the features of one ``(C, height, width)`` input."""
        k = 2 ** (len(self.widths) - 1)
        return (self.out_channels, height // k, width // k)

    def train(self, mode: bool = True):
        """The projector is never trained: it stays in eval mode whatever is asked."""
        return super().train(False)


def make(name: str = "digits", seed: int = 0, device="cpu", **overrides) -> RandomProjector:
    """Build the projector preset ``name`` (``"paper"`` or ``"digits"``) with weights seeded by
    ``seed``.

    ``overrides`` replace preset entries (``in_channels``, ``widths``, ``groups``,
    ``negative_slope``).
    """
    if name not in PRESETS:
        raise ValueError(
            f"unknown projector preset {name!r}: choose one of {sorted(PRESETS)} "
            "or build RandomProjector(in_channels, widths, groups) directly"
        )
    cfg = {**PRESETS[name], **overrides}
    return RandomProjector(seed=seed, device=device, **cfg)


#: The latent shape each preset is made for.
SHAPES = {"paper": (4, 32, 32), "digits": (1, 8, 8), "latent": (4, 8, 8)}
#: Every latent shape NOpt has a default projector for: each preset's own shape, and the 4×4×4
#: latents of the package's tiny random DiT (``dsco.dit.TINY_DIT``: tests and the offline
#: ImageNette stand-in of :mod:`dsco.fixtures`), which get the "latent" preset.
KNOWN_SHAPES = {**{shape: name for name, shape in SHAPES.items()}, (4, 4, 4): "latent"}


def preset_for(latent_shape) -> str:
    """The preset for latents of shape ``(C, H, W)`` (:data:`KNOWN_SHAPES`: 4×32×32 → "paper",
    1×8×8 → "digits", 4×8×8 and 4×4×4 → "latent"); any other shape raises a ``ValueError``
    naming the known shapes and how to choose a preset."""
    shape = tuple(int(s) for s in latent_shape)
    if shape in KNOWN_SHAPES:
        return KNOWN_SHAPES[shape]
    known = ", ".join(f"{'×'.join(map(str, s))} ({n})" for s, n in KNOWN_SHAPES.items())
    raise ValueError(
        f"no projector preset for latents of shape {'×'.join(map(str, shape))} "
        f'(known: {known}): choose one, e.g. projector="latent" (a preset of '
        f"dsco.projector.PRESETS) or projector=dict(in_channels={shape[0]}, "
        "widths=(64, 128, 256)) for dsco.nopt.synthesize / dsco.surrogates.make, or "
        "set the dataset's projector in dsco.registry.REGISTRY"
    )


def for_latents(latent_shape, seed: int = 0, device="cpu", **overrides) -> RandomProjector:
    """The default projector for latents of shape ``(C, H, W)``: the preset of :func:`preset_for`
    (4×32×32 the paper's, 1×8×8 the digits one, 4×8×8 and 4×4×4 the latent one). A shape
    without a preset raises, naming the known shapes and how to choose one. ``overrides`` as in
    :func:`make`.
    """
    return make(preset_for(latent_shape), seed=seed, device=device, **overrides)


# --- measuring a projector (notebook 13, §4.1.2)
# ----------------------------------------------------
def channel_rows(features: torch.Tensor, pooled: bool = True) -> torch.Tensor:
    """The feature channels as rows: ``(J, N)`` globally average-pooled (what the data-accessible
    loss aligns channel by channel) or ``(J, N·K·L)`` for the full maps (what the data-free loss
    sees)."""
    return features.mean((2, 3)).T if pooled else features.transpose(0, 1).flatten(1)


def mean_abs_correlation(rows: torch.Tensor) -> float:
    """Mean |Pearson r| over every pair of distinct rows (channels)."""
    c = torch.corrcoef(rows.double())
    return c[~torch.eye(len(c), dtype=torch.bool)].abs().nanmean().item()


def effective_rank(rows: torch.Tensor) -> float:
    """The participation ratio (tr Σ)² / tr Σ² of the rows' covariance: how many directions the
    channels really span (isotropic directions in r dimensions have E|r_jk| ≈ √(2/(π r)))."""
    ev = torch.linalg.eigvalsh(torch.cov(rows.double())).clamp_min(0)
    return (ev.sum() ** 2 / ev.square().sum()).item()


def decay_claims(rows, curve: str, claimed: float = -0.5, tolerance: float = 0.1) -> dict:
    """§4.1.2's claim "the projector's channel correlations fall as O(1/√m)" as ``{claim:
    Verdict}`` (:func:`dsco.scorecard.record`), judged by :func:`dsco.verdicts.trend`.

    ``rows`` has one row per width ``m``, projector ``seed`` and ``curve`` with its ``mean |corr|``
    (:func:`mean_abs_correlation`). Rule: the log-log least-squares slope of ``mean |corr|`` on
    ``m`` is fitted per projector seed (each seed draws every layer's weights afresh: the seeds are
    the replicates) on ``curve``'s rows, then a one-sample t-interval (95 %) over the seeds'
    slopes. O(1/√m) means a slope at or below ``claimed`` (−0.5); the claim *holds* when the
    interval lies below ``claimed + tolerance`` and *does not hold* when it lies above it (the
    correlations fall more slowly than m^(claimed + tolerance)); fewer than 3 seeds: *not
    measured*. ``tolerance`` (0.1 on the exponent by default) allows for the finite-sample floor
    of a measured mean |r| (about √(2/(π N)) for N inputs), which bends any measured curve
    upwards at large widths. Assumes the seeds' slopes are independent and roughly normal."""
    from . import verdicts

    if not tolerance >= 0:
        raise ValueError(f"tolerance={tolerance}: give the exponent's tolerance as a number >= 0")
    g = rows[rows["curve"] == curve]
    threshold = claimed + tolerance
    claim = (
        f"the random projector's channel correlations fall as O(1/√m): log-log slope below "
        f"{threshold:+.1f} ({claimed:+.1f} within {tolerance:g}; {curve}, widths "
        f"{int(g['m'].min())}–{int(g['m'].max())})"
    )
    return {
        claim: verdicts.trend(
            g, "m", "mean |corr|", replicate="seed", decreasing=True, threshold=threshold, log=True
        )
    }
