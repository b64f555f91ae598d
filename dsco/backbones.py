"""The backbones by name, and the vanilla sampler (paper §3.3; SPEC §2–§4).

A *backbone* is a class-conditional latent diffusion model plus its autoencoder, behind the small
interface of :class:`dsco.diffusion.Backbone` (``encode``/``decode``, ``timesteps``, ``q_sample``,
``mean_std``: one ancestral DDPM step). :func:`load` ``(name, path=None, **options)`` builds one of
the registry :data:`BACKBONES`:

``digits-ddpm`` -- the embedded default (:mod:`dsco.digits_ddpm`): a ``UNet2DModel`` at native
    8×8×1 in pixel space, trained by :func:`train_digits_ddpm` and shipped in ``data/models/``.
``dit-xl-2-256`` -- the full-scale path (:mod:`dsco.dit`): DiT-XL/2 (learned σ) + the SD-VAE from a
    local folder or hub id given by the user; guidance on the first 3 of the 4 latent channels.
``latent-ddpm`` -- a latent recipe (:mod:`dsco.latent_ddpm`): a ``UNet2DModel`` on the latents of
    an ``AutoencoderKL``, trained by :mod:`dsco.recipes`.

The vanilla sampler :func:`sample` (the paper's DiT† baseline) fixes the NOISE CONTRACT that NOpt's
``mode="none"`` reproduces bit for bit: per class ``c`` one CPU generator
:func:`class_generator` ``(seed, c)`` seeded with ``seed * 1_000_003 + c``; from it
``z_T = randn((ipc, *latent_shape))`` and then, for every step except the last, one
``eps = randn((ipc, *latent_shape))`` for the whole class, drawn on the CPU, then moved to the
device. ``batch_size`` only splits the model forward passes; results with different ``batch_size``
are equal up to float rounding, not bit for bit (another batch shape may take another CPU/GPU
kernel, which rounds differently in the last bits). Bit-equality holds only for the same
computation: same seed, same classes, same batch shapes, same machine.

:func:`train_digits_ddpm` (from :mod:`dsco.digits_ddpm`) is also a name of this module: notebook
00 retrains the digits backbone through it.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .diffusion import Backbone
from .digits_ddpm import load_digits, train_digits_ddpm  # noqa: F401  (notebook 00 trains)
from .dit import load_dit
from .latent_ddpm import load_latent

#: name -> loader; ``load`` is the entry point.
BACKBONES = {"digits-ddpm": load_digits, "dit-xl-2-256": load_dit, "latent-ddpm": load_latent}


def load(name: str, path=None, **options) -> Backbone:
    """Load backbone ``name`` (one of :data:`BACKBONES`).

    ``digits-ddpm``: the shipped weights (``path`` defaults to
    ``data/models/digits_ddpm.safetensors``, SHA-256 checked against its card);
    ``random_weights=True`` (+ ``config`` overrides of :data:`dsco.digits_ddpm.DIGITS_UNET`) builds
    an untrained model. ``dit-xl-2-256``: ``path`` = local folder or hub id of the transformer
    (``transformer/`` subfolder if present), ``vae_path`` (default: the ``vae/`` subfolder of
    ``path``), ``guidance_channels`` (3 as DiT, or ``"all"``), ``dtype``; ``random_weights=True``
    builds real-size random models, ``config``/``vae_config`` override (:data:`dsco.dit.TINY_DIT`,
    :data:`dsco.dit.TINY_VAE` for tests). Both take ``device`` and ``num_steps``.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: use one of {', '.join(BACKBONES)}")
    return BACKBONES[name](path, **options)


def sample(
    backbone: Backbone,
    classes,
    ipc: int,
    seed: int,
    guidance: float = 4.0,
    num_steps: int = 50,
    batch_size: int | None = 256,
    progress: bool = True,
):
    """Vanilla ancestral DDPM sampling (the paper's DiT† baseline): ``ipc`` latents per class.

    Noise contract (NOpt's ``mode="none"`` reproduces it bit for bit): for each class ``c`` in
    ``classes`` a CPU generator ``g = class_generator(seed, c)``;
    ``z_T = randn((ipc, *latent_shape), generator=g)``; at every step except the last
    ``eps = randn((ipc, *latent_shape), generator=g)`` (the whole class at once, on the CPU, then
    moved to the device) and ``z = mu + sigma * eps``; at the last step ``z = mu``. ``batch_size``
    only splits the model forward: another ``batch_size`` gives results equal up to float rounding,
    not bit for bit (the forward runs other batch shapes). Calls ``backbone.set_steps(num_steps)``.
    Returns ``(latents, labels)`` on the CPU, class by class (decode with ``backbone.decode``).
    """
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < backbone.num_classes]
    if bad:
        raise ValueError(f"classes {bad} out of range: use 0..{backbone.num_classes - 1}")
    if ipc < 1:
        raise ValueError(f"ipc={ipc}: use ipc >= 1")
    backbone.set_steps(num_steps)
    shape, dev, steps = (ipc, *backbone.latent_shape), backbone.device, backbone.timesteps
    bar = tqdm(
        total=len(classes) * len(steps), desc=f"sampling {backbone.name}", disable=not progress
    )
    out = []
    for c in classes:
        g = class_generator(seed, c)
        z = torch.randn(shape, generator=g).to(dev)
        for i, t in enumerate(steps):
            mu, sigma = backbone.mean_std(z, int(t), c, guidance, batch_size=batch_size)
            if i < len(steps) - 1:
                z = mu + sigma * torch.randn(shape, generator=g).to(dev)
            else:
                z = mu
            bar.update(1)
        out.append(z.cpu())
    bar.close()
    labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(ipc)
    return torch.cat(out), labels


def class_generator(seed: int, c: int) -> torch.Generator:
    """The CPU generator of class ``c`` (the noise contract): seeded with
    ``seed * 1_000_003 + c``."""
    return torch.Generator("cpu").manual_seed(int(seed) * 1_000_003 + int(c))
