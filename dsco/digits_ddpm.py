"""The ``digits-ddpm`` backbone and its training (SPEC §2): the embedded default.

A diffusers ``UNet2DModel`` (:data:`DIGITS_UNET`, ~1.1M parameters) at native 8×8×1 with a class
embedding that has an extra null class (classifier-free guidance), in pixel space (the identity
autoencoder). Trained by :func:`train_digits_ddpm` (ε-prediction, 1000 linear steps, label dropout
10 %, EMA weights) and shipped as ``data/models/digits_ddpm.safetensors`` with a JSON card holding
its SHA-256 (:func:`save_digits_ddpm`, :mod:`dsco.checkpoints`). Fixed variance
(``DDPMScheduler``'s default ``fixed_small``: the posterior variance). :func:`load_digits` is the
registry's loader (``dsco.backbones.load("digits-ddpm")``); :func:`train_ddpm` trains any
class-conditional ``UNet2DModel`` (the latent recipe's too, :mod:`dsco.recipes`).
"""

from __future__ import annotations

import copy
import math
import time

import torch
from tqdm.auto import tqdm

from .checkpoints import MODELS_DIR, load_checkpoint, save_checkpoint
from .diffusion import NUM_TRAIN_TIMESTEPS, Backbone, make_scheduler

#: The shipped digits backbone (safetensors; its JSON card beside it).
DIGITS_WEIGHTS = MODELS_DIR / "digits_ddpm.safetensors"
#: The digits UNet (SPEC §2: ~1.1M parameters at native 8×8×1; 10 classes + 1 null class).
DIGITS_UNET = dict(
    sample_size=8,
    in_channels=1,
    out_channels=1,
    layers_per_block=1,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    num_class_embeds=11,
    norm_num_groups=16,
    attention_head_dim=16,
)
#: Tiny overrides of :data:`DIGITS_UNET`, for tests.
TINY_UNET = dict(
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=4,
    attention_head_dim=4,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
)
_RETRAIN = "retrain with notebooks/00_prepare_dataset.ipynb (profile paper, retrain=True)"


class DigitsDDPM(Backbone):
    """``digits-ddpm``: a class-conditional ``UNet2DModel`` in pixel space (identity
    autoencoder)."""

    def __init__(self, unet, num_steps: int = 50):
        cfg = unet.config
        super().__init__(
            "digits-ddpm",
            unet,
            (cfg.in_channels, cfg.sample_size, cfg.sample_size),
            cfg.num_class_embeds - 1,
            "fixed_small",
            "all",
            num_steps,
        )

    def _forward(self, z, t, y):
        t = torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)
        return self.model(z, t, class_labels=y).sample


def load_digits(
    path=None,
    *,
    random_weights: bool = False,
    config: dict | None = None,
    device="cpu",
    num_steps: int = 50,
    seed: int = 0,
) -> DigitsDDPM:
    if random_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet = build_digits_unet(config)
        return DigitsDDPM(unet, num_steps).to(device)
    if config is not None:
        raise ValueError(
            "config= only applies with random_weights=True (the shipped card fixes the "
            "architecture)"
        )
    unet, _ = load_checkpoint(
        path or DIGITS_WEIGHTS, lambda card: build_digits_unet(card["unet_config"]), _RETRAIN
    )
    return DigitsDDPM(unet, num_steps).to(device)


def train_digits_ddpm(train_set, epochs: int = 300, **kwargs):
    """Train the digits DDPM (:func:`train_ddpm` with :data:`DIGITS_UNET`); returns
    ``(DigitsDDPM, history)``."""
    return train_ddpm(train_set, epochs, **kwargs)


def train_ddpm(
    train_set,
    epochs: int = 300,
    batch_size: int = 128,
    lr: float = 1e-3,
    warmup_steps: int = 200,
    ema_decay: float = 0.999,
    p_uncond: float = 0.1,
    seed: int = 0,
    config: dict | None = None,
    device="cpu",
    progress: bool = True,
    callback=None,
    callback_every: int = 0,
    base: dict = DIGITS_UNET,
    wrap=None,
):
    """Train a class-conditional ``UNet2DModel``: ε-prediction MSE on ``DDPMScheduler.add_noise``
    (Eq. 12) targets. The UNet is ``base`` (default :data:`DIGITS_UNET`) updated by ``config``;
    ``wrap(unet)`` makes the returned object (default a :class:`DigitsDDPM`; the latent recipe
    passes its own).

    ``train_set`` has ``.x`` (N×C×H×W, images in [-1, 1] or latents) and ``.y`` (labels). Each label
    is replaced by the null class with probability ``p_uncond`` (classifier-free guidance). AdamW
    with linear warmup and cosine decay (diffusers' ``get_cosine_schedule_with_warmup``), gradient
    clipping at 1, EMA weights (diffusers ``EMAModel`` with warmup). Every random draw comes from
    one CPU generator seeded with ``seed``. ``callback(epoch, backbone)`` runs every
    ``callback_every`` epochs with the current EMA weights. Returns ``(backbone with EMA weights,
    history)``; ``history`` holds the mean loss per epoch, the wall time and the training
    parameters.
    """
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    x, y = train_set.x.float(), train_set.y.long()
    cfg = dict(base, **(config or {}))
    wrap = wrap or DigitsDDPM
    num_classes = cfg["num_class_embeds"] - 1
    if x.dim() != 4 or tuple(x.shape[1:]) != (
        cfg["in_channels"],
        cfg["sample_size"],
        cfg["sample_size"],
    ):
        raise ValueError(
            f"train_set.x has shape {tuple(x.shape)}: expected N×{cfg['in_channels']}×"
            f"{cfg['sample_size']}×{cfg['sample_size']}"
        )
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
            idx = perm[i : i + batch_size]
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
        if (
            callback is not None
            and callback_every
            and (epoch + 1) % callback_every == 0
            and epoch + 1 < epochs
        ):
            callback(epoch + 1, snapshot())
    wall = time.perf_counter() - t0
    history = dict(
        loss=losses,
        wall_time_s=round(wall, 1),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        ema_decay=ema_decay,
        p_uncond=p_uncond,
        seed=seed,
        optimizer="AdamW(wd=0.01) + cosine schedule with warmup, grad clip 1.0",
        steps=epochs * steps_per_epoch,
        device=str(device),
        torch_threads=torch.get_num_threads(),
    )
    return snapshot().to(device), history


def save_digits_ddpm(
    backbone: DigitsDDPM, history: dict, path=None, data_split: dict | None = None
) -> dict:
    """Save a trained digits backbone as safetensors + JSON card (default: the shipped location)."""
    from importlib import metadata

    card = dict(
        backbone="digits-ddpm",
        unet_class="diffusers.UNet2DModel",
        unet_config={
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in backbone.model.config.items()
            if not k.startswith("_")
        },
        scheduler=dict(make_scheduler().config),
        null_class=backbone.null_class,
        training={k: v for k, v in history.items() if k != "loss"},
        final_loss=history["loss"][-1] if history.get("loss") else None,
        loss_curve=[round(v, 5) for v in history.get("loss", [])],
        data_split=data_split,
        versions={p: metadata.version(p) for p in ("torch", "diffusers", "safetensors")},
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    return save_checkpoint(backbone.model, path or DIGITS_WEIGHTS, card)


def build_digits_unet(config: dict | None = None):
    """A fresh ``UNet2DModel`` with :data:`DIGITS_UNET` updated by ``config``."""
    from diffusers import UNet2DModel

    return UNet2DModel(**dict(DIGITS_UNET, **(config or {})))
