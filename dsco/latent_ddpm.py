"""The ``latent-ddpm`` backbone: a class-conditional DDPM on an autoencoder's latents.

The structure of DiT-XL/2 + SD-VAE at CPU size (the ``mnist`` recipe: 28-px images padded to 32,
a 4×8×8 latent): a ``UNet2DModel`` with a null class on the latents of an ``AutoencoderKL``, both
trained by :mod:`dsco.recipes` and stored as checkpoints (:mod:`dsco.checkpoints`);
:func:`load_latent` is the registry's loader (``dsco.backbones.load("latent-ddpm", prefix)``).
Images are padded with the background value -1 to the autoencoder's side (:func:`pad_centred`)
before encoding and cropped back after decoding.
"""

from __future__ import annotations

import torch

from .checkpoints import load_checkpoint
from .diffusion import Backbone


class LatentDDPM(Backbone):
    """``latent-ddpm``: a class-conditional ``UNet2DModel`` on the latents of an ``AutoencoderKL``
    -- the structure of DiT-XL/2 + SD-VAE at CPU size (the ``mnist`` recipe: 28-px images padded to
    32, a 4×8×8 latent). Images are padded with the background value -1 to the autoencoder's input
    side before encoding and cropped back after decoding; latents are ``posterior mean × scale``
    (the scaling factor measured on the training data, as SD's 0.18215)."""

    def __init__(self, unet, vae, scale: float, image_shape, num_steps: int = 50):
        cfg = unet.config
        if vae.config.latent_channels != cfg.in_channels:
            raise ValueError(
                f"VAE latent_channels={vae.config.latent_channels} != UNet "
                f"in_channels={cfg.in_channels}"
            )
        super().__init__(
            "latent-ddpm",
            unet,
            (cfg.in_channels, cfg.sample_size, cfg.sample_size),
            cfg.num_class_embeds - 1,
            "fixed_small",
            "all",
            num_steps,
        )
        self.vae = vae.eval().requires_grad_(False)
        self.scale = float(scale)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.image_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        # the autoencoder's input side (>= the images')
        self.side = cfg.sample_size * self.image_factor

    def _forward(self, z, t, y):
        t = torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)
        return self.model(z, t, class_labels=y).sample

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N×C×h×w) padded with -1 to the autoencoder's side, centred
        (:func:`pad_centred`)."""
        return pad_centred(x, self.side)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> latents (posterior mean × ``scale``)."""
        return (
            self.vae.encode(self.pad(x.float()).to(self.vae.device)).latent_dist.mean.float()
            * self.scale
        )

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in about [-1, 1], cropped to ``image_shape``."""
        x = self.vae.decode(z.float().to(self.vae.device) / self.scale).sample.float()
        h, w = self.image_shape[1:]
        top, left = _offsets(self.side, h, w)
        return x[..., top : top + h, left : left + w]


def load_latent(path=None, *, device="cpu", num_steps: int = 50) -> LatentDDPM:
    """A trained latent recipe from ``path``, the common prefix of ``<path>_vae.safetensors`` and
    ``<path>_ddpm.safetensors`` (each with its JSON card; SHA-256 checked)."""
    from diffusers import AutoencoderKL, UNet2DModel

    if path is None:
        raise ValueError(
            "latent-ddpm needs path=: the prefix of <path>_vae.safetensors and "
            "<path>_ddpm.safetensors"
        )
    hint = "retrain with notebooks/00_prepare_dataset.ipynb (-p retrain True, paper profile)"
    vae, vcard = load_checkpoint(
        f"{path}_vae.safetensors", lambda c: AutoencoderKL(**c["vae_config"]), hint
    )
    unet, _ = load_checkpoint(
        f"{path}_ddpm.safetensors", lambda c: UNet2DModel(**c["unet_config"]), hint
    )
    return LatentDDPM(unet, vae, vcard["scaling_factor"], vcard["image_shape"], num_steps).to(
        device
    )


def pad_centred(x: torch.Tensor, side: int) -> torch.Tensor:
    """Images (N×C×h×w) padded with the background value -1 to ``side``×``side``, centred (the
    latent recipe's autoencoder input; :meth:`LatentDDPM.decode` crops the same window back)."""
    h, w = x.shape[-2:]
    top, left = _offsets(side, h, w)
    return torch.nn.functional.pad(x, (left, side - w - left, top, side - h - top), value=-1.0)


def _offsets(side: int, h: int, w: int) -> tuple[int, int]:
    return (side - h) // 2, (side - w) // 2
