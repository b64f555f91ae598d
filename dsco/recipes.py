"""The latent recipe: an autoencoder, a class-conditional latent DDPM and a teacher, trained on a
dataset.

The paper's method works in the latent space of a VAE (SD-VAE + DiT-XL/2). For a dataset without a
pretrained backbone -- ``mnist`` (shipped in ``data/models/``) and any ImageFolder tree (``folder``,
trained by notebook 00 into ``build/models/``) -- this module trains the same structure at CPU size.

Entry point: ``train(ds, prefix, settings, seed, device) -> report``: writes ``<prefix>_teacher``,
``<prefix>_vae`` and ``<prefix>_ddpm`` (safetensors + JSON cards with their SHA-256, config, data
split, training parameters and wall time), then :func:`check` writes ``<prefix>_report.json`` with
the three quality bars:

1. the **teacher**, a small CNN (:func:`dsco.teacher.train_teacher`) on the training split: its test
   accuracy;
2. the **autoencoder**, diffusers ``AutoencoderKL`` with 4 latent channels on images padded (value
   -1) to a side the UNet can halve twice: reconstruction MSE + a small KL term
   (:func:`train_autoencoder`); its latent scaling factor is measured on the training latents (1 /
   their std, as SD's 0.18215); report: reconstruction PSNR and the teacher's accuracy on
   reconstructed test images (:func:`reconstruction`);
3. the **latent DDPM**, a ``UNet2DModel`` with a null class for classifier-free guidance, trained on
   the scaled posterior means (:func:`dsco.digits_ddpm.train_ddpm`): the share of guided samples
   (guidance 4) that the teacher classifies as their class.

:data:`MNIST` is the shipped recipe's settings; :data:`TINY` a seconds-long recipe for tests and the
``smoke`` profile.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch

from . import backbones, checkpoints, diffusion, digits_ddpm, latent_ddpm
from . import teacher as teacher_mod

#: The shipped ``mnist`` recipe (28-px images -> 32 -> a 4×8×8 latent): ≈ 0.7 M autoencoder and ≈
# 4.4 M
#: UNet parameters; sized for ≲ 90 min on a 2-core CPU (measured: 0.25 s per autoencoder step at
# batch 64,
#: 0.25 s per UNet step at batch 128, 2 threads).
MNIST = dict(
    # the digits teacher's CNN with a pool after the first two convolutions and a fully connected
    # head: 98.0 % on the 1,000 test images (the shipped card; the global-average head: 95–97 % at
    # 30–80 epochs)
    teacher=dict(epochs=60, shift=3, config=dict(pools=(1, 2), widths=(32, 64, 64), hidden=256)),
    vae=dict(
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        epochs=30,
        batch_size=64,
        lr=1e-3,
        kl_weight=1e-6,
    ),
    ddpm=dict(
        config=dict(
            block_out_channels=(64, 128, 128),
            layers_per_block=1,
            attention_head_dim=32,
            norm_num_groups=32,
        ),
        epochs=200,
        batch_size=128,
        lr=1e-3,
    ),
    check=dict(samples_per_class=100, steps=50, guidance=4.0),
)
#: A recipe that trains in seconds (tests, the ``smoke`` profile of a folder dataset).
TINY = dict(
    teacher=dict(epochs=2, shift=1),
    vae=dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        epochs=2,
        batch_size=32,
        lr=2e-3,
        kl_weight=1e-6,
    ),
    ddpm=dict(
        config=dict(
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            attention_head_dim=4,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        ),
        epochs=2,
        batch_size=32,
        lr=1e-3,
    ),
    check=dict(samples_per_class=2, steps=5, guidance=4.0),
)
#: The recipes by the name a dataset budget gives (``Budget.models["recipe"]``).
RECIPES = {"mnist": MNIST, "tiny": TINY}


def latent_side(image_side: int, vae_blocks: int, unet_blocks: int) -> int:
    """The autoencoder's input side: the image side rounded up so that the latent (image side /
    2^(vae_blocks − 1)) can be halved by the UNet's ``unet_blocks − 1`` downsamplings."""
    unit = 2 ** (vae_blocks - 1) * 2 ** (unet_blocks - 1)
    return unit * math.ceil(image_side / unit)


def train(
    ds,
    prefix,
    settings: dict | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    parts=("teacher", "vae", "ddpm"),
) -> dict:
    """Train the ``parts`` of the recipe on ``ds``'s training split and save them under ``prefix``
    (the others are read from there: e.g. ``parts=("teacher",)`` retrains the teacher alone), then
    :func:`check` the three bars; returns the report."""
    from diffusers import AutoencoderKL

    s = settings or MNIST
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    train_set = ds.train().in_memory()
    split = {
        "dataset": ds.name,
        "source": ds.entry.source,
        "train": len(train_set),
        "test": len(ds.test()),
        "params": {k: str(v) for k, v in ds.params.items()},
    }
    if "teacher" in parts:
        t = s["teacher"]
        clf, hist = teacher_mod.train_teacher(
            train_set,
            epochs=t["epochs"],
            shift=t["shift"],
            lr=t.get("lr", 2e-3),
            seed=seed,
            device=device,
            progress=progress,
            config=dict(
                t.get("config", {}), in_channels=train_set.x.shape[1], num_classes=ds.num_classes
            ),
        )
        teacher_mod.save_teacher(
            clf,
            hist,
            f"{prefix}_teacher.safetensors",
            data_split=split,
            test_accuracy=teacher_mod.accuracy(clf, ds.test().x, ds.test().y),
        )
    v, d = s["vae"], s["ddpm"]
    side = latent_side(
        train_set.x.shape[-1], len(v["block_out_channels"]), len(d["config"]["block_out_channels"])
    )
    base = dict(
        digits_ddpm.DIGITS_UNET,
        **d["config"],
        sample_size=side // 2 ** (len(v["block_out_channels"]) - 1),
        in_channels=v["latent_channels"],
        out_channels=v["latent_channels"],
        num_class_embeds=ds.num_classes + 1,
    )
    if "vae" in parts:
        vae_config = dict(
            in_channels=train_set.x.shape[1],
            out_channels=train_set.x.shape[1],
            sample_size=side,
            latent_channels=v["latent_channels"],
            block_out_channels=tuple(v["block_out_channels"]),
            layers_per_block=v["layers_per_block"],
            norm_num_groups=v["norm_num_groups"],
            down_block_types=("DownEncoderBlock2D",) * len(v["block_out_channels"]),
            up_block_types=("UpDecoderBlock2D",) * len(v["block_out_channels"]),
        )
        vae, vhist = train_autoencoder(
            train_set,
            vae_config,
            epochs=v["epochs"],
            batch_size=v["batch_size"],
            lr=v["lr"],
            kl_weight=v["kl_weight"],
            seed=seed,
            device=device,
            progress=progress,
        )
        probe = latent_ddpm.LatentDDPM(
            digits_ddpm.build_digits_unet(base), vae, 1.0, train_set.x.shape[1:]
        )  # scale 1
        z = _batched(probe.encode, train_set.x)
        checkpoints.save_checkpoint(
            vae,
            f"{prefix}_vae.safetensors",
            dict(
                model="AutoencoderKL",
                vae_config=_jsonable(vae_config),
                scaling_factor=float(1 / z.std()),
                image_shape=list(train_set.x.shape[1:]),
                data_split=split,
                training=vhist,
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            ),
        )
    if "ddpm" in parts:
        vcard = json.loads(Path(f"{prefix}_vae.json").read_text())
        vae, _ = checkpoints.load_checkpoint(
            f"{prefix}_vae.safetensors",
            lambda c: AutoencoderKL(**c["vae_config"]),
            "retrain the autoencoder (parts=('vae', 'ddpm'))",
        )
        scale = vcard["scaling_factor"]
        probe = latent_ddpm.LatentDDPM(
            digits_ddpm.build_digits_unet(base), vae, scale, train_set.x.shape[1:]
        )
        z = _batched(probe.encode, train_set.x)
        latents = type(train_set)(z, train_set.y.clone(), list(train_set.classes), ds.name, "train")
        bb, dhist = digits_ddpm.train_ddpm(
            latents,
            d["epochs"],
            batch_size=d["batch_size"],
            lr=d["lr"],
            seed=seed,
            device=device,
            progress=progress,
            base=base,
            wrap=lambda unet: latent_ddpm.LatentDDPM(unet, vae, scale, train_set.x.shape[1:]),
        )
        checkpoints.save_checkpoint(
            bb.model,
            f"{prefix}_ddpm.safetensors",
            dict(
                model="UNet2DModel (latent)",
                unet_config=_jsonable(base),
                scheduler=dict(diffusion.make_scheduler().config),
                null_class=bb.null_class,
                data_split=split,
                training={k: v for k, v in dhist.items() if k != "loss"},
                loss_curve=[round(v, 5) for v in dhist["loss"]],
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            ),
        )
    return check(ds, prefix, s, seed, device, progress)


def check(
    ds,
    prefix,
    settings: dict | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """The three bars of a trained recipe under ``prefix``: the teacher's test accuracy; the
    autoencoder's reconstruction PSNR (dB, peak-to-peak 2) and the teacher's accuracy on
    reconstructed test images; the share of guided samples (the settings' ``check``) classified as
    their class. Written to ``<prefix>_report.json`` with the three models' training wall times;
    returned."""
    c = (settings or MNIST)["check"]
    clf = teacher_mod.load_teacher(f"{prefix}_teacher.safetensors", device=device)
    bb = backbones.load("latent-ddpm", prefix, device=device)
    rec = reconstruction(ds, bb, clf)
    lat, lab = backbones.sample(
        bb,
        range(ds.num_classes),
        c["samples_per_class"],
        seed,
        c["guidance"],
        c["steps"],
        progress=progress,
    )
    pred = teacher_mod.predict_proba(clf, bb.decode(lat).clamp(-1, 1)).argmax(1)
    cards = {
        m: json.loads(Path(f"{prefix}_{m}.json").read_text()) for m in ("teacher", "vae", "ddpm")
    }
    report = {
        "prefix": Path(prefix).name,
        "teacher_accuracy": rec["teacher_accuracy"],
        "psnr_db": rec["psnr_db"],
        "teacher_accuracy_reconstructed": rec["teacher_accuracy_reconstructed"],
        "consistency": float((pred == lab).float().mean()),
        "check": c,
        "parameters": {m: card["num_parameters"] for m, card in cards.items()},
        "wall_time_s": {m: card["training"]["wall_time_s"] for m, card in cards.items()},
    }
    Path(f"{prefix}_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def reconstruction(ds, bb, clf) -> dict:
    """The autoencoder's check on the test split: reconstruction PSNR (dB, peak-to-peak 2) and the
    teacher's accuracy on the original and on the reconstructed images (empty for a pixel-space
    backbone). :func:`check` reports it for a trained recipe; notebook 00 calls it (as
    ``dsco.prepare.reconstruction``) for any backbone."""
    if not hasattr(bb, "vae"):
        return {}
    test = ds.test()
    recon = torch.cat(
        [
            bb.decode(bb.encode(test.x[i : i + 64].to(bb.device))).float().cpu()
            for i in range(0, len(test), 64)
        ]
    ).clamp(-1, 1)
    mse = float(((recon - test.x) ** 2).mean())
    return {
        "psnr_db": 10 * math.log10(4 / mse),
        "teacher_accuracy": teacher_mod.accuracy(clf, test.x, test.y),
        "teacher_accuracy_reconstructed": teacher_mod.accuracy(clf, recon, test.y),
        "reconstructed": recon,
    }


def train_autoencoder(
    train_set,
    config: dict,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    kl_weight: float = 1e-6,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
):
    """Train a diffusers ``AutoencoderKL(**config)`` on ``train_set.x`` (padded with -1 to
    ``config``'s ``sample_size``): MSE reconstruction of a posterior sample + ``kl_weight`` × KL,
    AdamW with cosine decay, seeded. Returns ``(autoencoder in eval mode, history)``."""
    from diffusers import AutoencoderKL
    from tqdm.auto import tqdm

    x = latent_ddpm.pad_centred(train_set.x.float(), config["sample_size"])
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**config).to(device).train()
        opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, epochs * math.ceil(len(x) / batch_size)
        )
        losses, t0 = [], time.perf_counter()
        for _ in tqdm(range(epochs), desc="training autoencoder", disable=not progress):
            perm, total = torch.randperm(len(x), generator=g), 0.0
            for i in range(0, len(x), batch_size):
                xb = x[perm[i : i + batch_size]].to(device)
                post = vae.encode(xb).latent_dist
                rec = vae.decode(post.sample(generator=None)).sample
                loss = torch.nn.functional.mse_loss(rec, xb) + kl_weight * post.kl().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(xb)
            losses.append(total / len(x))
    history = dict(
        loss_curve=[round(v, 6) for v in losses],
        wall_time_s=round(time.perf_counter() - t0, 1),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        kl_weight=kl_weight,
        seed=seed,
        device=str(device),
        torch_threads=torch.get_num_threads(),
        optimizer="AdamW(wd=0.01) + cosine decay; MSE of a posterior sample's reconstruction + KL",
    )
    return copy.deepcopy(vae).eval(), history


def _batched(fn, x: torch.Tensor, size: int = 256) -> torch.Tensor:
    """``fn`` applied to ``x`` in chunks of ``size`` rows, concatenated on the CPU."""
    return torch.cat([fn(x[i : i + size]).cpu() for i in range(0, len(x), size)])


def _jsonable(cfg: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
