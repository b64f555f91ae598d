"""The interface every backbone implements, and its DDPM step (paper §3.3, Eq. 12–14; SPEC §2–§4).

A *backbone* is a class-conditional latent diffusion model plus its autoencoder. Everything the
vanilla sampler and NOpt need is the interface of :class:`Backbone`:

- ``name``, ``latent_shape`` (C, H, W), ``num_classes``, ``device``;
- ``encode(x) -> z`` and ``decode(z) -> x`` (the identity for ``digits-ddpm``; the SD-VAE with
  latents × 0.18215 for ``dit-xl-2-256``);
- ``timesteps``: the sampling timesteps, a descending LongTensor of ``num_steps`` training
  timesteps (1000 training steps respaced as in DiT: diffusers ``timestep_spacing="linspace"``,
  i.e. ``round(linspace(0, 999, num_steps))``, so the last one is 0); ``set_steps(num_steps)``;
- ``q_sample(z0, t, noise)``: the diffusion of Eq. 12, ``z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps``;
- ``mean_std(z_t, t, y, guidance) -> (mu, sigma)``: Eq. 13 for ONE ancestral DDPM step at the
  sampling timestep ``t``, so that the next latent is ``mu + sigma * eps`` (Eq. 14); ``sigma`` is 0
  at the last step. Classifier-free guidance uses the null class (index ``num_classes``).

No clipping of the predicted z0 (as DiT). The step is written out in :meth:`Backbone.mean_std` (it
is the paper's Eq. 13 ``trans``) and the tests check that ``mu + sigma * eps`` equals diffusers'
``DDPMScheduler.step`` for the same noise. Every backbone's schedule comes from
:func:`make_scheduler` (1000 linear β steps; the ``fixed_small`` variance, or DiT's learned
``learned_range``). The implementations are :mod:`dsco.digits_ddpm`, :mod:`dsco.dit` and
:mod:`dsco.latent_ddpm`, and :mod:`dsco.backbones` is their registry. :func:`backbone_step` runs the
step in a lower precision (NOpt's ``backbone_dtype``, :func:`as_dtype`).
"""

from __future__ import annotations

import torch

NUM_TRAIN_TIMESTEPS = 1000


class Backbone:
    """The interface shared by every backbone (see the module docstring).

    Subclasses give ``_forward(z, t, y) -> model output`` (C channels, or 2C for learned σ) and,
    where there is an autoencoder, ``encode``/``decode``.
    """

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        latent_shape,
        num_classes: int,
        variance_type: str,
        guidance_channels="all",
        num_steps: int = 50,
    ):
        if guidance_channels != "all" and not (
            isinstance(guidance_channels, int) and 1 <= guidance_channels <= latent_shape[0]
        ):
            raise ValueError(
                f"guidance_channels={guidance_channels!r}: use 'all' or an int in "
                f"1..{latent_shape[0]}"
            )
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.num_classes = int(num_classes)
        self.null_class = self.num_classes
        self.guidance_channels = guidance_channels
        self.image_factor = (
            1  # image side / latent side (the autoencoder's downsampling; 1: pixel space)
        )
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
        """Respace the 1000 training steps to ``num_steps`` sampling steps (``linspace``, as
        DiT)."""
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
        return (
            f"{type(self).__name__}({self.name!r}, latent {self.latent_shape}, "
            f"{self.num_classes} classes, {n:,} parameters, {self.num_steps} steps, {self.device})"
        )

    # --- autoencoder: identity by default ------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the latents the diffusion model works on (the identity in pixel
        space)."""
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in about [-1, 1] (the identity in pixel space)."""
        return z

    # --- Eq. 12 ---------------------------------------------------------------------------------
    def q_sample(self, z0: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
        """Diffuse clean latents to training timestep(s) ``t`` (Eq. 12), via
        ``DDPMScheduler.add_noise``.

        ``t`` is an int (all samples) or a LongTensor with one timestep per sample.
        """
        t = torch.as_tensor(t, dtype=torch.long)
        if t.dim() == 0:
            t = t.expand(z0.shape[0])
        if t.shape != (z0.shape[0],) or not (
            0 <= int(t.min()) and int(t.max()) < NUM_TRAIN_TIMESTEPS
        ):
            raise ValueError(
                f"t must be an int or {z0.shape[0]} training timesteps in "
                f"0..{NUM_TRAIN_TIMESTEPS - 1}"
            )
        return self.scheduler.add_noise(z0, noise, t.to(z0.device))

    # --- Eq. 13 ---------------------------------------------------------------------------------
    def _forward(self, z: torch.Tensor, t: int, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def guided_output(
        self, z_t: torch.Tensor, t: int, y: torch.Tensor, guidance: float
    ) -> torch.Tensor:
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
    def mean_std(
        self, z_t: torch.Tensor, t, y, guidance: float = 4.0, batch_size: int | None = None
    ):
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
            raise ValueError(
                f"t={t} is not a sampling timestep of this backbone: use an element of "
                f"backbone.timesteps (set_steps(n) respaces them; now {self.num_steps} steps)"
            )
        if tuple(z_t.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"z_t has shape {tuple(z_t.shape)}: expected "
                f"(N, {', '.join(map(str, self.latent_shape))})"
            )
        y = torch.as_tensor(y, dtype=torch.long, device=z_t.device)
        if y.dim() == 0:
            y = y.expand(z_t.shape[0])
        n = z_t.shape[0]
        bs = n if not batch_size else int(batch_size)
        out = torch.cat(
            [
                self.guided_output(z_t[i : i + bs], t, y[i : i + bs], guidance)
                for i in range(0, n, bs)
            ]
        )
        c = z_t.shape[1]
        eps, v = out[:, :c], out[:, c:]

        sched = self.scheduler
        s = int(sched.previous_timestep(t))
        ac = sched.alphas_cumprod.to(z_t.device)
        a_t = ac[t]
        a_s = ac[s] if s >= 0 else torch.ones((), device=z_t.device)
        beta = 1 - a_t / a_s
        z0 = (z_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        mu = (a_s**0.5 * beta) / (1 - a_t) * z0 + (1 - beta) ** 0.5 * (1 - a_s) / (1 - a_t) * z_t
        if t == int(self.timesteps[-1]):
            return mu, torch.zeros_like(mu)
        var = torch.clamp((1 - a_s) / (1 - a_t) * beta, min=1e-20)
        if sched.config.variance_type == "learned_range":
            frac = (v + 1) / 2
            sigma = torch.exp(0.5 * (frac * torch.log(beta) + (1 - frac) * torch.log(var)))
        else:
            sigma = (var**0.5).expand_as(mu).clone()
        return mu, sigma


def backbone_step(backbone, z, t, y, guidance, batch_size, backbone_dtype):
    """``backbone.mean_std`` in fp32, or under autocast to ``backbone_dtype``; μ and σ come back
    fp32."""
    if backbone_dtype in (None, torch.float32):
        return backbone.mean_std(z, int(t), y, guidance, batch_size=batch_size)
    with torch.autocast(torch.device(z.device).type, dtype=backbone_dtype):
        mu, sigma = backbone.mean_std(z, int(t), y, guidance, batch_size=batch_size)
    return mu.float(), sigma.float()


def as_dtype(backbone_dtype):
    """``backbone_dtype`` as None (fp32) or a torch dtype; accepts "fp32", "bf16", "fp16" and
    dtypes."""
    names = {
        "fp32": None,
        "float32": None,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    dtype = (
        names.get(backbone_dtype, backbone_dtype)
        if isinstance(backbone_dtype, str)
        else backbone_dtype
    )
    if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(
            f"backbone_dtype={backbone_dtype!r}: use None/'fp32', 'bf16' (torch.bfloat16) or 'fp16'"
        )
    return None if dtype == torch.float32 else dtype


def make_scheduler(variance_type: str = "fixed_small"):
    """The diffusers ``DDPMScheduler`` every backbone uses: 1000 linear β steps (1e-4 … 0.02),
    ε-prediction, no clipping, DiT's even respacing (``timestep_spacing="linspace"``)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        variance_type=variance_type,
        prediction_type="epsilon",
        clip_sample=False,
        timestep_spacing="linspace",
    )
