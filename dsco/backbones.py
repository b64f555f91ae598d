"""Diffusion backbones behind one small interface (paper §3.3, Eq. 12–14; SPEC §2–§4).

A *backbone* is a class-conditional latent diffusion model plus its autoencoder. Everything the
vanilla sampler and NOpt need is this interface:

- ``name``, ``latent_shape`` (C, H, W), ``num_classes``, ``device``;
- ``encode(x) -> z`` and ``decode(z) -> x`` (the identity for ``digits-ddpm``; the SD-VAE with
  latents × 0.18215 for ``dit-xl-2-256``);
- ``timesteps``: the sampling timesteps, a descending LongTensor of ``num_steps`` training
  timesteps (1000 training steps respaced as in DiT: diffusers ``timestep_spacing="linspace"``,
  i.e. ``round(linspace(0, 999, num_steps))``, so the last one is 0); ``set_steps(num_steps)``;
- ``q_sample(z0, t, noise)``: the diffusion of Eq. 12, ``z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps``;
- ``mean_std(z_t, t, y, guidance) -> (mu, sigma)``: Eq. 13 for ONE ancestral DDPM step at the
  sampling timestep ``t``, so that the next latent is ``mu + sigma * eps`` (Eq. 14); ``sigma`` is 0 at
  the last step. Classifier-free guidance uses the null class (index ``num_classes``).

Two implementations and a registry by name (``load(name, path=None, **options)``):

``digits-ddpm`` -- the embedded default (SPEC §2): a diffusers ``UNet2DModel`` (~1.1M parameters)
    at native 8×8×1 with a class embedding that has an extra null class, trained by
    :func:`train_digits_ddpm` (ε-prediction, 1000 linear steps, label dropout 10 %, EMA weights) and
    shipped as ``data/models/digits_ddpm.safetensors`` with a JSON card holding its SHA-256.
    Fixed variance (``DDPMScheduler``'s default ``fixed_small``: the posterior variance).
``dit-xl-2-256`` -- the full-scale path (SPEC §4): diffusers ``DiTTransformer2DModel`` (learned σ:
    8 output channels, ``learned_range`` variance) + ``AutoencoderKL``, both from a local folder or
    hub id given by the user. Guidance as in the original DiT: on the first 3 of the 4 latent
    channels (the 4th channel and the variance take the conditional prediction);
    ``guidance_channels="all"`` guides every channel (what diffusers' ``DiTPipeline`` does).

No clipping of the predicted z0 (as DiT). The step is written out below (it is the paper's Eq. 13
``trans``) and the tests check that ``mu + sigma * eps`` equals diffusers' ``DDPMScheduler.step``
for the same noise.

The vanilla sampler :func:`sample` (the paper's DiT† baseline) fixes the NOISE CONTRACT that NOpt's
``mode="none"`` reproduces bit for bit: per class ``c`` one CPU generator
:func:`class_generator` ``(seed, c)`` seeded with ``seed * 1_000_003 + c``; from it
``z_T = randn((ipc, *latent_shape))`` and then, for every step except the last, one
``eps = randn((ipc, *latent_shape))`` for the whole class, drawn on the CPU, then moved to the
device. ``batch_size`` only splits the model forward passes; results with different ``batch_size``
are equal up to float rounding, not bit for bit (another batch shape may take another CPU/GPU kernel,
which rounds differently in the last bits). Bit-equality holds only for the same computation: same
seed, same classes, same batch shapes, same machine.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import ROOT

#: Folder of the shipped checkpoints (safetensors + JSON card).
MODELS_DIR = ROOT / "data" / "models"
DIGITS_WEIGHTS = MODELS_DIR / "digits_ddpm.safetensors"
NUM_TRAIN_TIMESTEPS = 1000

#: The digits UNet (SPEC §2: ~1.1M parameters at native 8×8×1; 10 classes + 1 null class).
DIGITS_UNET = dict(
    sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    num_class_embeds=11, norm_num_groups=16, attention_head_dim=16,
)
#: DiT-XL/2 at 256 px (latent 4×32×32), as in facebook/DiT-XL-2-256.
DIT_XL_2 = dict(
    num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
    sample_size=32, patch_size=2, num_embeds_ada_norm=1000, norm_type="ada_norm_zero",
    norm_elementwise_affine=False, activation_fn="gelu-approximate", attention_bias=True,
)
#: The SD-VAE (sd-vae-ft-mse architecture; 256 px images -> 4×32×32 latents).
SD_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
    block_out_channels=(128, 256, 512, 512), sample_size=256, scaling_factor=0.18215,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
#: Tiny overrides of the same classes, for tests (a 4×4×4 latent, 8×8 RGB images, 10 classes).
TINY_DIT = dict(num_attention_heads=2, attention_head_dim=8, num_layers=1, sample_size=4,
                num_embeds_ada_norm=10)
TINY_VAE = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=8,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
#: Tiny overrides of :data:`DIGITS_UNET`, for tests.
TINY_UNET = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                 attention_head_dim=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                 up_block_types=("AttnUpBlock2D", "UpBlock2D"))


class CheckpointError(ValueError):
    """A missing, corrupt (hash mismatch) or misshapen checkpoint; the message names the fix."""


def make_scheduler(variance_type: str = "fixed_small"):
    """The diffusers ``DDPMScheduler`` both backbones use: 1000 linear β steps (1e-4 … 0.02),
    ε-prediction, no clipping, DiT's even respacing (``timestep_spacing="linspace"``)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="linear",
                         beta_start=1e-4, beta_end=0.02, variance_type=variance_type,
                         prediction_type="epsilon", clip_sample=False, timestep_spacing="linspace")


class Backbone:
    """The interface shared by both backbones (see the module docstring).

    Subclasses give ``_forward(z, t, y) -> model output`` (C channels, or 2C for learned σ) and,
    where there is an autoencoder, ``encode``/``decode``.
    """

    def __init__(self, name: str, model: torch.nn.Module, latent_shape, num_classes: int,
                 variance_type: str, guidance_channels="all", num_steps: int = 50):
        if guidance_channels != "all" and not (isinstance(guidance_channels, int)
                                               and 1 <= guidance_channels <= latent_shape[0]):
            raise ValueError(f"guidance_channels={guidance_channels!r}: use 'all' or an int in 1..{latent_shape[0]}")
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.num_classes = int(num_classes)
        self.null_class = self.num_classes
        self.guidance_channels = guidance_channels
        self.image_factor = 1  # image side / latent side (the autoencoder's downsampling; 1: pixel space)
        self.scheduler = make_scheduler(variance_type)
        self.set_steps(num_steps)

    # --- bookkeeping -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device):
        """Move the model (and autoencoder, where there is one) to ``device``; returns ``self``."""
        self.model.to(device)
        if getattr(self, "vae", None) is not None:
            self.vae.to(device)
        return self

    def set_steps(self, num_steps: int) -> None:
        """Respace the 1000 training steps to ``num_steps`` sampling steps (``linspace``, as DiT)."""
        if not isinstance(num_steps, int) or not 1 <= num_steps <= NUM_TRAIN_TIMESTEPS:
            raise ValueError(f"num_steps={num_steps!r}: use an int in 1..{NUM_TRAIN_TIMESTEPS}")
        self.scheduler.set_timesteps(num_steps)
        self.num_steps = num_steps

    @property
    def timesteps(self) -> torch.Tensor:
        """The sampling timesteps (descending LongTensor, ``num_steps`` entries, last one 0)."""
        return self.scheduler.timesteps

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return (f"{type(self).__name__}({self.name!r}, latent {self.latent_shape}, "
                f"{self.num_classes} classes, {n:,} parameters, {self.num_steps} steps, {self.device})")

    # --- autoencoder: identity by default ------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the latents the diffusion model works on (the identity in pixel space)."""
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in about [-1, 1] (the identity in pixel space)."""
        return z

    # --- Eq. 12 ---------------------------------------------------------------------------------
    def q_sample(self, z0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """Diffuse clean latents to training timestep(s) ``t`` (Eq. 12), via ``DDPMScheduler.add_noise``.

        ``t`` is an int (all samples) or a LongTensor with one timestep per sample.
        """
        t = torch.as_tensor(t, dtype=torch.long)
        if t.dim() == 0:
            t = t.expand(z0.shape[0])
        if t.shape != (z0.shape[0],) or not (0 <= int(t.min()) and int(t.max()) < NUM_TRAIN_TIMESTEPS):
            raise ValueError(f"t must be an int or {z0.shape[0]} training timesteps in 0..{NUM_TRAIN_TIMESTEPS - 1}")
        return self.scheduler.add_noise(z0, noise, t.to(z0.device))

    # --- Eq. 13 ---------------------------------------------------------------------------------
    def _forward(self, z: torch.Tensor, t: int, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def guided_output(self, z_t: torch.Tensor, t: int, y: torch.Tensor, guidance: float) -> torch.Tensor:
        """Model output with classifier-free guidance ``u + s (c - u)`` on the guided channels.

        The unguided channels (DiT: the 4th latent channel) and the variance channels take the
        conditional prediction. ``guidance == 1`` runs the conditional model only.
        """
        if guidance == 1:
            return self._forward(z_t, t, y)
        null = torch.full_like(y, self.null_class)
        out = self._forward(torch.cat([z_t, z_t]), t, torch.cat([y, null]))
        cond, uncond = out.chunk(2)
        k = z_t.shape[1] if self.guidance_channels == "all" else self.guidance_channels
        guided = uncond[:, :k] + guidance * (cond[:, :k] - uncond[:, :k])
        return torch.cat([guided, cond[:, k:]], dim=1)

    @torch.no_grad()
    def mean_std(self, z_t: torch.Tensor, t, y, guidance: float = 4.0, batch_size: int | None = None):
        """One ancestral DDPM step at sampling timestep ``t`` (Eq. 13): returns ``(mu, sigma)``.

        The next latent is ``mu + sigma * eps`` (Eq. 14); both have ``z_t``'s shape and ``sigma``
        is all zeros at the last step. With ε̂ the (guided) predicted noise, ᾱ the cumulative
        alphas, ``s`` the next sampling timestep (ᾱ_s = 1 after the last) and β = 1 − ᾱ_t/ᾱ_s::

            z0  = (z_t − sqrt(1 − ᾱ_t) ε̂) / sqrt(ᾱ_t)                      (no clipping)
            mu  = sqrt(ᾱ_s) β / (1 − ᾱ_t) · z0 + sqrt(1 − β) (1 − ᾱ_s) / (1 − ᾱ_t) · z_t
            σ²  = β (1 − ᾱ_s) / (1 − ᾱ_t)                                   (fixed_small)
            log σ² = f log β + (1 − f) log σ²_fixed,  f = (v + 1) / 2         (learned_range, DiT)

        ``y`` is an int or one label per sample; ``batch_size`` splits the model forward.
        """
        t = int(t)
        if t not in self.timesteps.tolist():
            raise ValueError(f"t={t} is not a sampling timestep of this backbone: use an element of "
                             f"backbone.timesteps (set_steps(n) respaces them; now {self.num_steps} steps)")
        if tuple(z_t.shape[1:]) != self.latent_shape:
            raise ValueError(f"z_t has shape {tuple(z_t.shape)}: expected (N, {', '.join(map(str, self.latent_shape))})")
        y = torch.as_tensor(y, dtype=torch.long, device=z_t.device)
        if y.dim() == 0:
            y = y.expand(z_t.shape[0])
        n = z_t.shape[0]
        bs = n if not batch_size else int(batch_size)
        out = torch.cat([self.guided_output(z_t[i:i + bs], t, y[i:i + bs], guidance) for i in range(0, n, bs)])
        c = z_t.shape[1]
        eps, v = out[:, :c], out[:, c:]

        sched = self.scheduler
        s = int(sched.previous_timestep(t))
        ac = sched.alphas_cumprod.to(z_t.device)
        a_t = ac[t]
        a_s = ac[s] if s >= 0 else torch.ones((), device=z_t.device)
        beta = 1 - a_t / a_s
        z0 = (z_t - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
        mu = (a_s ** 0.5 * beta) / (1 - a_t) * z0 + (1 - beta) ** 0.5 * (1 - a_s) / (1 - a_t) * z_t
        if t == int(self.timesteps[-1]):
            return mu, torch.zeros_like(mu)
        var = torch.clamp((1 - a_s) / (1 - a_t) * beta, min=1e-20)
        if sched.config.variance_type == "learned_range":
            frac = (v + 1) / 2
            sigma = torch.exp(0.5 * (frac * torch.log(beta) + (1 - frac) * torch.log(var)))
        else:
            sigma = (var ** 0.5).expand_as(mu).clone()
        return mu, sigma


class DigitsDDPM(Backbone):
    """``digits-ddpm``: a class-conditional ``UNet2DModel`` in pixel space (identity autoencoder)."""

    def __init__(self, unet, num_steps: int = 50):
        cfg = unet.config
        super().__init__("digits-ddpm", unet, (cfg.in_channels, cfg.sample_size, cfg.sample_size),
                         cfg.num_class_embeds - 1, "fixed_small", "all", num_steps)

    def _forward(self, z, t, y):
        t = torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)
        return self.model(z, t, class_labels=y).sample


class DiT(Backbone):
    """``dit-xl-2-256``: ``DiTTransformer2DModel`` (learned σ) + ``AutoencoderKL`` (× 0.18215)."""

    def __init__(self, transformer, vae, guidance_channels=3, num_steps: int = 50):
        cfg = transformer.config
        if cfg.out_channels != 2 * cfg.in_channels:
            raise ValueError(f"the DiT transformer has out_channels={cfg.out_channels}: the learned-σ "
                             f"path needs 2 × in_channels = {2 * cfg.in_channels}")
        if vae.config.latent_channels != cfg.in_channels:
            raise ValueError(f"VAE latent_channels={vae.config.latent_channels} != transformer "
                             f"in_channels={cfg.in_channels}: load a matching VAE")
        super().__init__("dit-xl-2-256", transformer, (cfg.in_channels, cfg.sample_size, cfg.sample_size),
                         cfg.num_embeds_ada_norm, "learned_range", guidance_channels, num_steps)
        self.vae = vae.eval().requires_grad_(False)
        self.scale = float(vae.config.scaling_factor)
        self.image_factor = 2 ** (len(vae.config.block_out_channels) - 1)  # image side / latent side

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


class LatentDDPM(Backbone):
    """``latent-ddpm``: a class-conditional ``UNet2DModel`` on the latents of an ``AutoencoderKL`` -- the
    structure of DiT-XL/2 + SD-VAE at CPU size (the ``mnist`` recipe: 28-px images padded to 32, a 4×8×8
    latent). Images are padded with the background value -1 to the autoencoder's input side before
    encoding and cropped back after decoding; latents are ``posterior mean × scale`` (the scaling factor
    measured on the training data, as SD's 0.18215)."""

    def __init__(self, unet, vae, scale: float, image_shape, num_steps: int = 50):
        cfg = unet.config
        if vae.config.latent_channels != cfg.in_channels:
            raise ValueError(f"VAE latent_channels={vae.config.latent_channels} != UNet in_channels={cfg.in_channels}")
        super().__init__("latent-ddpm", unet, (cfg.in_channels, cfg.sample_size, cfg.sample_size),
                         cfg.num_class_embeds - 1, "fixed_small", "all", num_steps)
        self.vae = vae.eval().requires_grad_(False)
        self.scale = float(scale)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.image_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.side = cfg.sample_size * self.image_factor  # the autoencoder's input side (>= the images')

    def _forward(self, z, t, y):
        t = torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)
        return self.model(z, t, class_labels=y).sample

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N×C×h×w) padded with -1 to the autoencoder's side, centred (:func:`pad_centred`)."""
        return pad_centred(x, self.side)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> latents (posterior mean × ``scale``)."""
        return self.vae.encode(self.pad(x.float()).to(self.vae.device)).latent_dist.mean.float() * self.scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in about [-1, 1], cropped to ``image_shape``."""
        x = self.vae.decode(z.float().to(self.vae.device) / self.scale).sample.float()
        h, w = self.image_shape[1:]
        top, left = _offsets(self.side, h, w)
        return x[..., top:top + h, left:left + w]


def pad_centred(x: torch.Tensor, side: int) -> torch.Tensor:
    """Images (N×C×h×w) padded with the background value -1 to ``side``×``side``, centred (the latent
    recipe's autoencoder input; :meth:`LatentDDPM.decode` crops the same window back)."""
    h, w = x.shape[-2:]
    top, left = _offsets(side, h, w)
    return torch.nn.functional.pad(x, (left, side - w - left, top, side - h - top), value=-1.0)


def _offsets(side: int, h: int, w: int) -> tuple[int, int]:
    return (side - h) // 2, (side - w) // 2


# --- checkpoints: safetensors + JSON card with SHA-256 --------------------------------------------
def sha256(path) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(model: torch.nn.Module, path, card: dict) -> dict:
    """Write ``model``'s weights to ``path`` (safetensors) and its card to ``path.with_suffix('.json')``.

    The card gets ``file``, ``sha256``, ``bytes`` and ``num_parameters``; returns it.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    card = dict(card, file=path.name, sha256=sha256(path), bytes=path.stat().st_size,
                num_parameters=sum(v.numel() for v in state.values()))
    path.with_suffix(".json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    return card


def load_checkpoint(path, model_factory, retrain_hint: str):
    """Read a card, verify the file's SHA-256, build ``model_factory(card)`` and load the weights.

    Raises :class:`CheckpointError` (one line naming the fix) for a missing file or card, a hash
    mismatch, or weights whose names/shapes do not fit the architecture. Returns ``(model, card)``.
    """
    from safetensors.torch import load_file

    path = Path(path)
    card_path = path.with_suffix(".json")
    for p in (path, card_path):
        if not p.is_file():
            raise CheckpointError(f"missing {p}: restore data/models/ from the repository or {retrain_hint}")
    card = json.loads(card_path.read_text())
    actual = sha256(path)
    if actual != card.get("sha256"):
        raise CheckpointError(f"SHA-256 of {path.name} is {actual[:16]}… but {card_path.name} says "
                              f"{str(card.get('sha256'))[:16]}…: the file is corrupt or was replaced; "
                              f"restore it from the repository or {retrain_hint}")
    model = model_factory(card)
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise CheckpointError(f"{path.name} does not fit the architecture in {card_path.name} ({first}): "
                              f"restore the matching pair of files or {retrain_hint}") from None
    return model.eval(), card


# --- the registry -----------------------------------------------------------------------------------
_RETRAIN = "retrain with notebooks/00_prepare_dataset.ipynb (profile paper, retrain=True)"


def build_digits_unet(config: dict | None = None):
    """A fresh ``UNet2DModel`` with :data:`DIGITS_UNET` updated by ``config``."""
    from diffusers import UNet2DModel

    return UNet2DModel(**dict(DIGITS_UNET, **(config or {})))


def _load_digits(path=None, *, random_weights: bool = False, config: dict | None = None,
                 device="cpu", num_steps: int = 50, seed: int = 0) -> DigitsDDPM:
    if random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet = build_digits_unet(config)
        return DigitsDDPM(unet, num_steps).to(device)
    if config is not None:
        raise ValueError("config= only applies with random_weights=True (the shipped card fixes the architecture)")
    unet, _ = load_checkpoint(path or DIGITS_WEIGHTS, lambda card: build_digits_unet(card["unet_config"]), _RETRAIN)
    return DigitsDDPM(unet, num_steps).to(device)


def _load_dit(path=None, *, vae_path=None, random_weights: bool = False, config: dict | None = None,
              vae_config: dict | None = None, guidance_channels=3, device="cpu", dtype=torch.float32,
              num_steps: int = 50, seed: int = 0, local_files_only: bool = False) -> DiT:
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    if random_weights:  # real-size by default; config/vae_config override (e.g. TINY_DIT, TINY_VAE)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            transformer = DiTTransformer2DModel(**dict(DIT_XL_2, **(config or {})))
            vae = AutoencoderKL(**dict(SD_VAE, **(vae_config or {})))
    else:
        if path is None:
            raise ValueError("dit-xl-2-256 needs path=: a local folder or hub id holding the DiT transformer "
                             "(e.g. 'facebook/DiT-XL-2-256'), and optionally vae_path= (e.g. "
                             "'stabilityai/sd-vae-ft-mse'); or random_weights=True")
        kw = dict(torch_dtype=dtype, local_files_only=local_files_only)
        (tpath, tsub), (vpath, vsub) = _dit_sources(path, vae_path)
        transformer = DiTTransformer2DModel.from_pretrained(tpath, subfolder=tsub, **kw)
        vae = AutoencoderKL.from_pretrained(vpath, subfolder=vsub, **kw)
    if random_weights and dtype != torch.float32:
        transformer, vae = transformer.to(dtype), vae.to(dtype)
    return DiT(transformer, vae, guidance_channels, num_steps).to(device)


def _dit_sources(path, vae_path=None):
    """``((transformer path, subfolder), (vae path, subfolder))``: a folder holding ``config.json`` is
    the model itself, otherwise its ``transformer/`` (``vae/``) subfolder, as in a diffusers pipeline."""
    folder = Path(str(path))
    transformer = (str(path), None if (folder / "config.json").is_file() else "transformer")
    if vae_path is None:
        return transformer, (str(path), "vae")
    vfolder = Path(str(vae_path))
    return transformer, (str(vae_path), None if (not vfolder.is_dir() or (vfolder / "config.json").is_file()) else "vae")


def dit_configs(path, vae_path=None) -> tuple[dict, dict]:
    """The DiT transformer's and the VAE's configs (dicts), read without loading any weights."""
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    (tpath, tsub), (vpath, vsub) = _dit_sources(path, vae_path)
    out = []
    for cls, p, sub, what in ((DiTTransformer2DModel, tpath, tsub, "backbone_path"),
                              (AutoencoderKL, vpath, vsub, "vae_path")):
        try:
            out.append(dict(cls.load_config(p, subfolder=sub)))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"no {cls.__name__} config at {p}{'/' + sub if sub else ''} ({type(e).__name__}): "
                                  f"pass -p {what} a folder holding config.json (or a diffusers pipeline folder "
                                  f"with transformer/ and vae/), or a hub id") from None
    return out[0], out[1]


def _load_latent(path=None, *, device="cpu", num_steps: int = 50) -> LatentDDPM:
    """A trained latent recipe from ``path``, the common prefix of ``<path>_vae.safetensors`` and
    ``<path>_ddpm.safetensors`` (each with its JSON card; SHA-256 checked)."""
    from diffusers import AutoencoderKL, UNet2DModel

    if path is None:
        raise ValueError("latent-ddpm needs path=: the prefix of <path>_vae.safetensors and <path>_ddpm.safetensors")
    hint = "retrain with notebooks/00_prepare_dataset.ipynb (-p retrain True, paper profile)"
    vae, vcard = load_checkpoint(f"{path}_vae.safetensors", lambda c: AutoencoderKL(**c["vae_config"]), hint)
    unet, _ = load_checkpoint(f"{path}_ddpm.safetensors", lambda c: UNet2DModel(**c["unet_config"]), hint)
    return LatentDDPM(unet, vae, vcard["scaling_factor"], vcard["image_shape"], num_steps).to(device)


#: name -> loader; ``load`` is the entry point.
BACKBONES = {"digits-ddpm": _load_digits, "dit-xl-2-256": _load_dit, "latent-ddpm": _load_latent}


def load(name: str, path=None, **options) -> Backbone:
    """Load backbone ``name`` (one of :data:`BACKBONES`).

    ``digits-ddpm``: the shipped weights (``path`` defaults to ``data/models/digits_ddpm.safetensors``,
    SHA-256 checked against its card); ``random_weights=True`` (+ ``config`` overrides of
    :data:`DIGITS_UNET`) builds an untrained model. ``dit-xl-2-256``: ``path`` = local folder or hub
    id of the transformer (``transformer/`` subfolder if present), ``vae_path`` (default: the
    ``vae/`` subfolder of ``path``), ``guidance_channels`` (3 as DiT, or ``"all"``), ``dtype``;
    ``random_weights=True`` builds real-size random models, ``config``/``vae_config`` override
    (:data:`TINY_DIT`, :data:`TINY_VAE` for tests). Both take ``device`` and ``num_steps``.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: use one of {', '.join(BACKBONES)}")
    return BACKBONES[name](path, **options)


# --- the vanilla sampler (DiT†) --------------------------------------------------------------------
def class_generator(seed: int, c: int) -> torch.Generator:
    """The CPU generator of class ``c`` (the noise contract): seeded with ``seed * 1_000_003 + c``."""
    return torch.Generator("cpu").manual_seed(int(seed) * 1_000_003 + int(c))


def sample(backbone: Backbone, classes, ipc: int, seed: int, guidance: float = 4.0, num_steps: int = 50,
           batch_size: int | None = 256, progress: bool = True):
    """Vanilla ancestral DDPM sampling (the paper's DiT† baseline): ``ipc`` latents per class.

    Noise contract (NOpt's ``mode="none"`` reproduces it bit for bit): for each class ``c`` in
    ``classes`` a CPU generator ``g = class_generator(seed, c)``; ``z_T = randn((ipc, *latent_shape),
    generator=g)``; at every step except the last ``eps = randn((ipc, *latent_shape), generator=g)``
    (the whole class at once, on the CPU, then moved to the device) and ``z = mu + sigma * eps``; at the
    last step ``z = mu``. ``batch_size`` only splits the model forward: another ``batch_size`` gives
    results equal up to float rounding, not bit for bit (the forward runs other batch shapes). Calls
    ``backbone.set_steps(num_steps)``. Returns ``(latents, labels)`` on the CPU, class by class
    (decode with ``backbone.decode``).
    """
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < backbone.num_classes]
    if bad:
        raise ValueError(f"classes {bad} out of range: use 0..{backbone.num_classes - 1}")
    if ipc < 1:
        raise ValueError(f"ipc={ipc}: use ipc >= 1")
    backbone.set_steps(num_steps)
    shape, dev, steps = (ipc, *backbone.latent_shape), backbone.device, backbone.timesteps
    bar = tqdm(total=len(classes) * len(steps), desc=f"sampling {backbone.name}", disable=not progress)
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


# --- training the digits backbone -----------------------------------------------------------------
def train_digits_ddpm(train_set, epochs: int = 300, **kwargs):
    """Train the digits DDPM (:func:`train_ddpm` with :data:`DIGITS_UNET`); returns ``(DigitsDDPM, history)``."""
    return train_ddpm(train_set, epochs, **kwargs)


def train_ddpm(train_set, epochs: int = 300, batch_size: int = 128, lr: float = 1e-3,
               warmup_steps: int = 200, ema_decay: float = 0.999, p_uncond: float = 0.1,
               seed: int = 0, config: dict | None = None, device="cpu", progress: bool = True,
               callback=None, callback_every: int = 0, base: dict = DIGITS_UNET, wrap=None):
    """Train a class-conditional ``UNet2DModel``: ε-prediction MSE on ``DDPMScheduler.add_noise`` (Eq. 12)
    targets. The UNet is ``base`` (default :data:`DIGITS_UNET`) updated by ``config``; ``wrap(unet)``
    makes the returned object (default a :class:`DigitsDDPM`; the latent recipe passes its own).

    ``train_set`` has ``.x`` (N×C×H×W, images in [-1, 1] or latents) and ``.y`` (labels). Each label is replaced by the
    null class with probability ``p_uncond`` (classifier-free guidance). AdamW with linear warmup
    and cosine decay (diffusers' ``get_cosine_schedule_with_warmup``), gradient clipping at 1,
    EMA weights (diffusers ``EMAModel`` with warmup). Every random draw comes from one CPU generator
    seeded with ``seed``. ``callback(epoch, backbone)`` runs every ``callback_every`` epochs with the
    current EMA weights. Returns ``(backbone with EMA weights, history)``; ``history`` holds the mean
    loss per epoch, the wall time and the training parameters.
    """
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    x, y = train_set.x.float(), train_set.y.long()
    cfg = dict(base, **(config or {}))
    wrap = wrap or DigitsDDPM
    num_classes = cfg["num_class_embeds"] - 1
    if x.dim() != 4 or tuple(x.shape[1:]) != (cfg["in_channels"], cfg["sample_size"], cfg["sample_size"]):
        raise ValueError(f"train_set.x has shape {tuple(x.shape)}: expected N×{cfg['in_channels']}×"
                         f"{cfg['sample_size']}×{cfg['sample_size']}")
    if int(y.max()) >= num_classes or int(y.min()) < 0:
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    g = torch.Generator("cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = build_digits_unet(cfg).to(device).train()
    sched = make_scheduler()
    ema = EMAModel(unet.parameters(), decay=ema_decay, use_ema_warmup=True, power=3 / 4)
    ema_unet = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01, foreach=True)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    lr_sched = get_cosine_schedule_with_warmup(opt, warmup_steps, epochs * steps_per_epoch)

    def snapshot():
        ema.copy_to(ema_unet.parameters())
        return wrap(copy.deepcopy(ema_unet))

    losses, t0 = [], time.perf_counter()
    bar = tqdm(range(epochs), desc="training DDPM", disable=not progress)
    for epoch in bar:
        perm, total = torch.randperm(len(x), generator=g), 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            z0, lab = x[idx], y[idx].clone()
            lab[torch.rand(len(idx), generator=g) < p_uncond] = num_classes
            t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(idx),), generator=g)
            noise = torch.randn(z0.shape, generator=g)
            z_t = sched.add_noise(z0, noise, t)
            pred = unet(z_t.to(device), t.to(device), class_labels=lab.to(device)).sample
            loss = torch.nn.functional.mse_loss(pred, noise.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            lr_sched.step()
            ema.step(unet.parameters())
            total += loss.item() * len(idx)
        losses.append(total / len(x))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if callback is not None and callback_every and (epoch + 1) % callback_every == 0 and epoch + 1 < epochs:
            callback(epoch + 1, snapshot())
    wall = time.perf_counter() - t0
    history = dict(loss=losses, wall_time_s=round(wall, 1), epochs=epochs, batch_size=batch_size, lr=lr,
                   warmup_steps=warmup_steps, ema_decay=ema_decay, p_uncond=p_uncond, seed=seed,
                   optimizer="AdamW(wd=0.01) + cosine schedule with warmup, grad clip 1.0",
                   steps=epochs * steps_per_epoch, device=str(device), torch_threads=torch.get_num_threads())
    return snapshot().to(device), history


def save_digits_ddpm(backbone: DigitsDDPM, history: dict, path=None, data_split: dict | None = None) -> dict:
    """Save a trained digits backbone as safetensors + JSON card (default: the shipped location)."""
    from importlib import metadata

    card = dict(backbone="digits-ddpm", unet_class="diffusers.UNet2DModel",
                unet_config={k: (list(v) if isinstance(v, tuple) else v)
                             for k, v in backbone.model.config.items() if not k.startswith("_")},
                scheduler=dict(make_scheduler().config), null_class=backbone.null_class,
                training={k: v for k, v in history.items() if k != "loss"},
                final_loss=history["loss"][-1] if history.get("loss") else None,
                loss_curve=[round(v, 5) for v in history.get("loss", [])],
                data_split=data_split,
                versions={p: metadata.version(p) for p in ("torch", "diffusers", "safetensors")},
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return save_checkpoint(backbone.model, path or DIGITS_WEIGHTS, card)
