"""The ``dit-xl-2-256`` backbone: DiT-XL/2 with the SD-VAE, the full-scale path (SPEC §4).

diffusers' ``DiTTransformer2DModel`` (learned σ: 8 output channels, ``learned_range`` variance) and
``AutoencoderKL`` (latents × 0.18215), both from a local folder or hub id given by the user
(:func:`load_dit`, the registry's loader: ``dsco.backbones.load("dit-xl-2-256", path, ...)``).
Guidance as in the original DiT: on the first 3 of the 4 latent channels (the 4th channel and the
variance take the conditional prediction); ``guidance_channels="all"`` guides every channel (what
diffusers' ``DiTPipeline`` does). :data:`DIT_XL_2` and :data:`SD_VAE` are the real sizes;
:data:`TINY_DIT` and :data:`TINY_VAE` override them for tests (with ``random_weights=True``).
:func:`dit_configs` reads both configs without loading any weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoints import CheckpointError
from .diffusion import Backbone

#: DiT-XL/2 at 256 px (latent 4×32×32), as in facebook/DiT-XL-2-256.
DIT_XL_2 = dict(
    num_attention_heads=16,
    attention_head_dim=72,
    in_channels=4,
    out_channels=8,
    num_layers=28,
    sample_size=32,
    patch_size=2,
    num_embeds_ada_norm=1000,
    norm_type="ada_norm_zero",
    norm_elementwise_affine=False,
    activation_fn="gelu-approximate",
    attention_bias=True,
)
#: The SD-VAE (sd-vae-ft-mse architecture; 256 px images -> 4×32×32 latents).
SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    block_out_channels=(128, 256, 512, 512),
    sample_size=256,
    scaling_factor=0.18215,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)
#: Tiny overrides of the same classes, for tests (a 4×4×4 latent, 8×8 RGB images, 10 classes).
TINY_DIT = dict(
    num_attention_heads=2, attention_head_dim=8, num_layers=1, sample_size=4, num_embeds_ada_norm=10
)
TINY_VAE = dict(
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=4,
    sample_size=8,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
)


class DiT(Backbone):
    """``dit-xl-2-256``: ``DiTTransformer2DModel`` (learned σ) + ``AutoencoderKL`` (× 0.18215)."""

    def __init__(self, transformer, vae, guidance_channels=3, num_steps: int = 50):
        cfg = transformer.config
        if cfg.out_channels != 2 * cfg.in_channels:
            raise ValueError(
                f"the DiT transformer has out_channels={cfg.out_channels}: the learned-σ "
                f"path needs 2 × in_channels = {2 * cfg.in_channels}"
            )
        if vae.config.latent_channels != cfg.in_channels:
            raise ValueError(
                f"VAE latent_channels={vae.config.latent_channels} != transformer "
                f"in_channels={cfg.in_channels}: load a matching VAE"
            )
        super().__init__(
            "dit-xl-2-256",
            transformer,
            (cfg.in_channels, cfg.sample_size, cfg.sample_size),
            cfg.num_embeds_ada_norm,
            "learned_range",
            guidance_channels,
            num_steps,
        )
        self.vae = vae.eval().requires_grad_(False)
        self.scale = float(vae.config.scaling_factor)
        # image side / latent side
        self.image_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def _forward(self, z, t, y):
        t = torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)
        return self.model(z.to(self.model.dtype), timestep=t, class_labels=y).sample.float()

    @torch.no_grad()
    def encode(self, x: torch.Tensor, posterior: str = "mean", generator=None) -> torch.Tensor:
        """Images in [-1, 1] (N×3×H×W) -> latents × ``scaling_factor``.

        ``posterior="mean"`` (default, deterministic) or ``"sample"`` (DiT's training encode; pass a
        ``generator`` for repeatable draws).
        """
        dist = self.vae.encode(x.to(self.vae.device, self.vae.dtype)).latent_dist
        if posterior == "mean":
            z = dist.mean
        elif posterior == "sample":
            z = dist.sample(generator=generator)
        else:
            raise ValueError(f"posterior={posterior!r}: use 'mean' or 'sample'")
        return z.float() * self.scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in about [-1, 1] (N×3×H×W)."""
        return self.vae.decode((z / self.scale).to(self.vae.device, self.vae.dtype)).sample.float()


def load_dit(
    path=None,
    *,
    vae_path=None,
    random_weights: bool = False,
    config: dict | None = None,
    vae_config: dict | None = None,
    guidance_channels=3,
    device="cpu",
    dtype=torch.float32,
    num_steps: int = 50,
    seed: int = 0,
    local_files_only: bool = False,
) -> DiT:
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    if random_weights:  # real-size by default; config/vae_config override (e.g. TINY_DIT, TINY_VAE)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            transformer = DiTTransformer2DModel(**dict(DIT_XL_2, **(config or {})))
            vae = AutoencoderKL(**dict(SD_VAE, **(vae_config or {})))
    else:
        if path is None:
            raise ValueError(
                "dit-xl-2-256 needs path=: a local folder or hub id holding the DiT transformer "
                "(e.g. 'facebook/DiT-XL-2-256'), and optionally vae_path= (e.g. "
                "'stabilityai/sd-vae-ft-mse'); or random_weights=True"
            )
        kw = dict(torch_dtype=dtype, local_files_only=local_files_only)
        (tpath, tsub), (vpath, vsub) = dit_sources(path, vae_path)
        transformer = DiTTransformer2DModel.from_pretrained(tpath, subfolder=tsub, **kw)
        vae = AutoencoderKL.from_pretrained(vpath, subfolder=vsub, **kw)
    if random_weights and dtype != torch.float32:
        transformer, vae = transformer.to(dtype), vae.to(dtype)
    return DiT(transformer, vae, guidance_channels, num_steps).to(device)


def dit_sources(path, vae_path=None):
    """``((transformer path, subfolder), (vae path, subfolder))``: a folder holding ``config.json``
    is the model itself, otherwise its ``transformer/`` (``vae/``) subfolder, as in a diffusers
    pipeline."""
    folder = Path(str(path))
    transformer = (str(path), None if (folder / "config.json").is_file() else "transformer")
    if vae_path is None:
        return transformer, (str(path), "vae")
    vfolder = Path(str(vae_path))
    return transformer, (
        str(vae_path),
        None if (not vfolder.is_dir() or (vfolder / "config.json").is_file()) else "vae",
    )


def dit_configs(path, vae_path=None) -> tuple[dict, dict]:
    """The DiT transformer's and the VAE's configs (dicts), read without loading any weights."""
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    (tpath, tsub), (vpath, vsub) = dit_sources(path, vae_path)
    out = []
    for cls, p, sub, what in (
        (DiTTransformer2DModel, tpath, tsub, "backbone_path"),
        (AutoencoderKL, vpath, vsub, "vae_path"),
    ):
        try:
            out.append(dict(cls.load_config(p, subfolder=sub)))
        except (OSError, ValueError) as e:
            raise CheckpointError(
                f"no {cls.__name__} config at {p}{'/' + sub if sub else ''} ({type(e).__name__}): "
                f"pass -p {what} a folder holding config.json (or a diffusers pipeline folder "
                f"with transformer/ and vae/), or a hub id"
            ) from None
    return out[0], out[1]
