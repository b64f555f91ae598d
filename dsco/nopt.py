"""NOpt: DDPM ancestral sampling with per-step noise optimisation (paper §4.1, Fig. 2).

At every denoising step the backbone gives, for the ``N`` candidates of one class, a mean μ and a
standard deviation σ (Eq. 13–15); plain sampling takes ``z = μ + σ·ε`` with a random ε. NOpt
instead optimises the ``N`` noises ε of the class *jointly* before taking the step (every step but
the last, where σ = 0): SGD, lr 0.1, momentum 0.9, 200 iterations, starting from the drawn ε
(§5.1.3), on the objective of Eq. 29

    L_NOpt = L_real (Eq. 19) + L_align,

with the alignment term of one of two modes:

``mode="accessible"`` (§4.1.3, Eq. 20–21)
    The class's real latents, each diffused to the step's noise level ≥ 5 times (the count padded
    up to a multiple of ``N``), are projected by the random projector (:mod:`dsco.projector`),
    average-pooled, and standardised per dimension by their own mean and population std; the
    candidates' pooled features are standardised by the same statistics. ``L_align =
    λ_align · N · Σ_j channel-OT`` (λ_align = 5e-4; the ``N`` is Eq. 20's leading ``N_S``).
``mode="free"`` (§4.1.4, Eq. 22–28)
    ≥ 200 plain *template* samples per class are denoised once; after every step the channel mean
    and population std of their projected feature maps are stored (and cached). Candidates' feature
    maps are cross-normalised by them (Eq. 24); ``L_align = λ_maxoc · L_maxoc + λ_stats · L_stats``
    (λ_maxoc = 10, λ_stats = 1e-3).
``mode="none"``
    Plain ancestral sampling (the paper's DiT† baseline): the same loop with the optimisation
    skipped; bit-for-bit equal to :func:`dsco.backbones.sample` with the same ``batch_size`` (the
    same computation).

Noise contract (shared with :func:`dsco.backbones.sample`): for class ``c`` a CPU generator
``g = dsco.backbones.class_generator(seed, c)`` draws ``z_T = randn((N, C, H, W), generator=g)``
and then, for every step but the last, ``ε = randn((N, C, H, W), generator=g)`` — the starting
point of the optimisation. The diffused targets and the templates use their own generators
(:func:`dsco.noise.aux_generator`), so switching NOpt on or off never shifts the candidates' noise.
With ``latin_hypercube=True`` the ``z_T`` draw is replaced by :func:`dsco.noise.lhs_normal` on the
same generator
(it consumes ``rand((C·H·W, N))`` instead of ``randn((N, C, H, W))``); the per-step ε then follow as
above, so that mode is *not* bit-equal to ``sample``.

Switches reproducing the official code (kkkkqq/Dataset-Concentration; SPEC §3), all off by default
(the paper's version):

``targets_one_step_noisier``
    The reference set (diffused targets, or templates in the free mode) is taken at the noise level
    of the step's *input* ``t`` instead of the level ``t_prev`` of the sample being optimised.
``projector_per_class``
    A new projector per class, seeded ``seed + c``; otherwise one projector seeded ``seed``.
``latin_hypercube``
    Midpoint Latin-hypercube normal noise for the target diffusion and for ``z_T``.
``stats_scale_hw``
    The stats term multiplied by the feature map's ``K·L``.

Every term can be switched off (Tables 7 and 9): ``reality``, ``align`` (accessible), ``maxoc``
and ``stats`` (free). The log records each term's raw value (the equation without its weight) at
the drawn noise (``*_first``) and at the optimised noise (``*_last``) of every step, plus the
weighted objective ``total_*``, whether a term is switched on or not.

Engines (``engine=``; issue 7): ``"reference"`` is the loop of the paper's code, class by class;
``"batched"`` (the default) computes the same thing with all classes of a run at once
(:mod:`dsco.engines` describes both, and why they agree up to float rounding, not bit for bit).
With nothing to optimise (``mode="none"`` or every term off) both run the reference loop, which is
:func:`dsco.backbones.sample`'s. ``compile=True`` wraps the batched inner-loop objective (forward
and backward) in ``torch.compile`` with static shapes; ``backbone_dtype=torch.bfloat16`` runs the
backbone under autocast while the noise, μ, σ and the NOpt losses stay fp32. ``early_stop`` (off by
default, not the paper's method) ends a class's inner loop once its objective stalls and logs the
iterations saved.

The pieces: the objective of one step (terms, reference statistics, projectors) is
:mod:`dsco.objective`, the noises' draws and their SGD :mod:`dsco.noise`, the two loops
:mod:`dsco.engines`; here are the entry point :func:`synthesize`, the free mode's
:func:`template_stats` and :func:`fingerprint` (a backbone's part of every cache key).

Cost on digits (shipped DDPM, 10 classes × IPC 10, the paper's settings: 50 steps, 200 iterations,
every real latent (≈133 per class) diffused 5 times per step; ``dsco bench --threads 2`` on the
2-core CPU, recorded in ``data/bench/``): vanilla 11.2 s class by class (6.0 s batched); batched
accessible NOpt 138.6 s (12.4× vanilla), the reference engine 366.2 s (×2.64 slower); free NOpt
151.5 s, plus 148.3 s once for the 200 templates per class. Per step the accessible mode projects
10 × ≈670 diffused targets (no gradient) and then runs the inner loop, which is ≈ 85 % of the time:
≈ 13 ms per SGD iteration for the 100 candidates (forward and backward of the projector ≈ 10 ms of
it). At this scale the free mode with the paper's λ_stats = 1e-3 drifts off the data (J·K·L = 1024
features here against 32768 for DiT latents): on classes 0–1, seed 0, 200 iterations, the
pixel-space RBF MMD² to the real class was 0.42 (vanilla 0.06, accessible 0.015), with λ_stats = 1
it was 0.04 and with λ_maxoc = 1 0.07 (one seed, indicative).
"""

from __future__ import annotations

import hashlib
import json
import math
import weakref
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import engines, noise, objective
from .diffusion import as_dtype
from .engines import NOptDiverged  # noqa: F401  (synthesize raises it: part of this module's API)

MODES = ("accessible", "free", "none")
ENGINES = ("batched", "reference")

#: Defaults of :func:`synthesize` (paper §5.1.3 and §4.1.4).
DEFAULTS = {
    "guidance": 4.0,
    "num_steps": 50,
    "iterations": 200,
    "lr": 0.1,
    "momentum": 0.9,
    "lambda_align": 5e-4,
    "lambda_maxoc": 10.0,
    "lambda_stats": 1e-3,
    "diffusion_repeats": 5,
    "n_templates": 200,
}

#: Per backbone object: its :func:`fingerprint` and its :func:`template_stats` (by their key).
MEMORY_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def synthesize(
    backbone,
    classes,
    ipc: int,
    mode: str = "accessible",
    seed: int = 0,
    *,
    guidance: float = DEFAULTS["guidance"],
    num_steps: int = DEFAULTS["num_steps"],
    iterations: int = DEFAULTS["iterations"],
    lr: float = DEFAULTS["lr"],
    momentum: float = DEFAULTS["momentum"],
    lambda_align: float = DEFAULTS["lambda_align"],
    lambda_maxoc: float = DEFAULTS["lambda_maxoc"],
    lambda_stats: float = DEFAULTS["lambda_stats"],
    reality: bool = True,
    align: bool = True,
    maxoc: bool = True,
    stats: bool = True,
    real_latents=None,
    diffusion_repeats: int = DEFAULTS["diffusion_repeats"],
    n_templates: int = DEFAULTS["n_templates"],
    template_cache=None,
    projector=None,
    projector_per_class: bool = False,
    targets_one_step_noisier: bool = False,
    latin_hypercube: bool = False,
    stats_scale_hw: bool = False,
    batch_size: int | None = 256,
    progress: bool = True,
    engine: str = "batched",
    compile: bool | str = False,
    backbone_dtype=None,
    early_stop: float | None = None,
):
    """Synthesise ``ipc`` latents for each class in ``classes`` with NOpt (§4.1) or plain sampling.

    Args:
        backbone: a :mod:`dsco.backbones` backbone (``latent_shape``, ``timesteps``, ``set_steps``,
            ``device``, ``q_sample``, ``mean_std``).
        classes: class indices; ipc: candidates per class ``N``.
        mode: ``"accessible"``, ``"free"`` or ``"none"`` (see the module docstring).
        seed: the noise seed (see the noise contract in the module docstring).
        guidance, num_steps: classifier-free guidance scale (4.0) and sampling steps (50).
        iterations, lr, momentum: the SGD of each step (200, 0.1, 0.9).
        lambda_align, lambda_maxoc, lambda_stats: Eq. 21 and Eq. 28 weights (5e-4, 10, 1e-3).
        reality, align, maxoc, stats: switch each loss term on/off (Tables 7, 9).
        real_latents: accessible mode: ``{class: (M, C, H, W) tensor}`` or a callable
            ``class -> tensor``.
        diffusion_repeats: each real latent is diffused at least this often per step (5).
        n_templates, template_cache: free mode: templates per class (≥ 200 in the paper) and an
            optional folder for the on-disk cache of their statistics (:func:`template_stats`).
        projector: None (the preset for the latent shape), a preset name, a dict of
            :class:`dsco.projector.RandomProjector` arguments, or a callable ``seed -> module``.
        projector_per_class, targets_one_step_noisier, latin_hypercube, stats_scale_hw: the
            official-code switches (module docstring).
        batch_size: chunk size of the backbone's forward passes (as in
            :func:`dsco.backbones.sample`, default 256; it changes only memory and float rounding);
            the optimisation is always joint over the class.
        progress: show a tqdm bar over the steps (× classes for the reference engine).
        engine: ``"batched"`` (default: all classes at once) or ``"reference"`` (class by class);
            both compute the same thing (module docstring, "Engines").
        compile: batched engine only: ``torch.compile`` the inner-loop objective (static shapes);
            ``True`` or an inductor mode such as ``"reduce-overhead"`` (CUDA graphs on a GPU).
        backbone_dtype: None (fp32) or e.g. ``torch.bfloat16``: the backbone forward under autocast;
            the NOpt losses, noise, μ and σ stay fp32.
        early_stop: None (default, the paper: every iteration runs) or a relative tolerance: a
            class's inner loop stops once its objective fell by less than ``early_stop`` (relative)
            over the last :data:`dsco.noise.EARLY_STOP_WINDOW` iterations. Labelled: not the
            paper's method.

    Returns:
        ``(latents, labels, log)``: latents ``(len(classes)·ipc, C, H, W)`` on the CPU, labels
        ``(len(classes)·ipc,)``, and a :class:`pandas.DataFrame` with one row per class and
        optimised step: ``class, step, t`` (the step's input timestep), ``t_ref`` (the level of the
        targets or templates), ``sigma`` (mean σ of the step), ``iterations`` (SGD steps taken)
        and ``<term>_first`` / ``<term>_last`` (raw values at the drawn and at the optimised noise)
        for every term of the mode and for the weighted objective ``total`` (empty for
        ``mode="none"``).
        With ``ipc = 1`` the free mode has no max-occupation term (Eq. 25 needs a neighbour; logged
        as NaN). ``log.attrs`` records the engine, compile, backbone dtype, TF32 setting and
        ``iterations_saved`` (SGD steps skipped by early stopping, summed over classes and steps).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if int(ipc) < 1:
        raise ValueError(f"ipc must be >= 1, got {ipc}")
    if early_stop is not None and not early_stop >= 0:
        raise ValueError(
            f"early_stop={early_stop!r}: use None (off) or a relative tolerance >= 0, e.g. 1e-3"
        )
    backbone_dtype = as_dtype(backbone_dtype)
    ipc = int(ipc)
    classes = [int(c) for c in classes]
    shape = tuple(int(s) for s in backbone.latent_shape)
    device = backbone.device
    backbone.set_steps(num_steps)
    timesteps = backbone.timesteps
    bad = [c for c in classes if not 0 <= c < backbone.num_classes]
    if bad:
        raise ValueError(f"classes {bad} out of range: use 0..{backbone.num_classes - 1}")
    if mode == "free" and maxoc and ipc < 2:
        maxoc = False  # Eq. 25 needs another candidate; logged as NaN

    weights = {"reality": 1.0 if reality else 0.0}
    if mode == "accessible":
        weights["align"] = lambda_align * ipc if align else 0.0
    elif mode == "free":
        weights["maxoc"] = lambda_maxoc if maxoc else 0.0
        weights["stats"] = lambda_stats if stats else 0.0  # × K·L if stats_scale_hw (below)

    # --- per-class setup shared by both engines: projectors, real latents, template statistics ---
    projs, z0s, refs = {}, {}, {}
    if mode != "none":
        build = objective.build_projector
        shared = None if projector_per_class else build(projector, shape, seed, device)
        for c in classes:
            projs[c] = build(projector, shape, seed + c, device) if projector_per_class else shared
            if mode == "accessible":
                z0 = _real_latents(real_latents, c, shape, device)
                n_diff = objective.n_diffused(len(z0), ipc, diffusion_repeats)
                z0s[c] = z0[torch.arange(n_diff, device=device) % len(z0)]
            else:
                refs[c] = template_stats(
                    backbone,
                    c,
                    seed,
                    guidance=guidance,
                    num_steps=num_steps,
                    n_templates=n_templates,
                    projector=projector,
                    projector_seed=seed + c if projector_per_class else seed,
                    batch_size=batch_size,
                    cache_dir=template_cache,
                )
        if mode == "free" and stats_scale_hw:  # official code: stats term × K·L of the feature map
            with torch.no_grad():
                weights["stats"] *= math.prod(
                    projs[classes[0]](torch.zeros(1, *shape, device=device)).shape[2:]
                )
    ctx = dict(
        backbone=backbone,
        classes=classes,
        ipc=ipc,
        mode=mode,
        seed=seed,
        shape=shape,
        device=device,
        timesteps=timesteps,
        guidance=guidance,
        weights=weights,
        iterations=iterations,
        lr=lr,
        momentum=momentum,
        projs=projs,
        z0s=z0s,
        refs=refs,
        targets_one_step_noisier=targets_one_step_noisier,
        latin_hypercube=latin_hypercube,
        batch_size=batch_size,
        progress=progress,
        backbone_dtype=backbone_dtype,
        early_stop=early_stop,
        compile=compile,
    )
    nothing_to_optimise = mode == "none" or not any(weights.values())
    used = "reference" if engine == "reference" or nothing_to_optimise else "batched"
    latents, rows = (engines.run_reference if used == "reference" else engines.run_batched)(ctx)
    labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(ipc)
    log = pd.DataFrame(rows)
    log.attrs.update(
        engine=used,
        compile=(compile if used == "batched" else False),
        backbone_dtype=str(backbone_dtype or torch.float32),
        tf32=bool(torch.backends.cuda.matmul.allow_tf32),
        early_stop=early_stop,
        iterations_saved=int(len(log) * iterations - log["iterations"].sum()) if len(log) else 0,
    )
    return latents, labels, log


def template_stats(
    backbone,
    c: int,
    seed: int = 0,
    *,
    guidance: float = 4.0,
    num_steps: int = 50,
    n_templates: int = 200,
    projector=None,
    projector_seed: int | None = None,
    batch_size: int | None = 256,
    cache_dir=None,
    progress: bool = False,
):
    """Per-level channel mean and population std of the projected template features (Eq. 22–23).

    ``n_templates`` plain samples of class ``c`` (noise from
    ``dsco.noise.aux_generator(seed, c, "templates")``) are denoised with ``num_steps`` steps. Level
    ``k`` is the latent fed to step ``k`` (``k = 0`` is ``z_T``) and level ``num_steps`` the final
    sample; returns ``(mean, std)`` of shape ``(num_steps + 1, J)``. Statistics run over
    (templates, K, L). Cached in memory per backbone and, with ``cache_dir``, on disk under a hash
    of all these parameters and the backbone weights.
    """
    shape = tuple(backbone.latent_shape)
    projector_seed = seed if projector_seed is None else projector_seed
    params = {
        "class": int(c),
        "seed": int(seed),
        "guidance": float(guidance),
        "num_steps": int(num_steps),
        "n_templates": int(n_templates),
        "projector": objective.projector_key(projector, shape),
        "projector_seed": int(projector_seed),
        "batch_size": batch_size,
    }
    key = json.dumps(params, sort_keys=True)
    mem = MEMORY_CACHE.setdefault(backbone, {})
    if key in mem:
        return mem[key]
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256((key + fingerprint(backbone)).encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"templates-{digest}.pt"
        if path.exists():
            saved = torch.load(path, weights_only=True)
            mem[key] = (saved["mean"], saved["std"])
            return mem[key]
    device = backbone.device
    proj = objective.build_projector(projector, shape, projector_seed, device)
    backbone.set_steps(num_steps)
    timesteps = backbone.timesteps
    g = noise.aux_generator(seed, c, "templates")
    bs = n_templates if batch_size is None else batch_size
    s1 = s2 = None
    count = 0
    for start in tqdm(
        range(0, n_templates, bs), desc=f"templates class {c}", disable=not progress, leave=False
    ):
        n = min(bs, n_templates - start)
        z = torch.randn((n, *shape), generator=g).to(device)
        sums = []
        with torch.no_grad():
            for i, t in enumerate(timesteps):
                f = proj(z).double()
                sums.append((f.sum(dim=(0, 2, 3)), f.square().sum(dim=(0, 2, 3))))
                mu, sigma = backbone.mean_std(z, int(t), c, guidance, batch_size=batch_size)
                z = (
                    mu
                    if i == len(timesteps) - 1
                    else mu + sigma * torch.randn((n, *shape), generator=g).to(device)
                )
            f = proj(z).double()
            sums.append((f.sum(dim=(0, 2, 3)), f.square().sum(dim=(0, 2, 3))))
        a = torch.stack([s for s, _ in sums])
        b = torch.stack([q for _, q in sums])
        s1, s2 = (a, b) if s1 is None else (s1 + a, s2 + b)
        count += n * f.shape[2] * f.shape[3]
    mean = s1 / count
    std = (s2 / count - mean.square()).clamp_min(0).sqrt()
    out = (mean.float().cpu(), std.float().cpu())
    mem[key] = out
    if path is not None:
        from . import replacing  # an interrupted or concurrent write never leaves half a file

        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            torch.save({"mean": out[0], "std": out[1], "params": key}, tmp)
    return out


def fingerprint(backbone) -> str:
    """SHA-256 over the backbone's name and the weights of its torch modules: the backbone's part
    of every disk-cache key (template statistics here, :func:`dsco.surrogates.make`'s sets, the
    real latents of :func:`dsco.encoded.encode_class`); computed once per backbone object."""
    cache = MEMORY_CACHE.setdefault(backbone, {})
    if "fingerprint" not in cache:
        h = hashlib.sha256(str(getattr(backbone, "name", type(backbone).__name__)).encode())
        modules = [backbone] if isinstance(backbone, torch.nn.Module) else []
        modules += [m for _, m in sorted(vars(backbone).items()) if isinstance(m, torch.nn.Module)]
        for m in modules:
            for k, v in m.state_dict().items():
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
        cache["fingerprint"] = h.hexdigest()
    return cache["fingerprint"]


def _real_latents(real_latents, c, shape, device):
    if real_latents is None:
        raise ValueError(
            "mode='accessible' needs the classes' real latents: pass real_latents={class: "
            "tensor (M, C, H, W)} or a callable class -> tensor (encode images with "
            "backbone.encode)"
        )
    z0 = real_latents(c) if callable(real_latents) else real_latents.get(c)
    if z0 is None:
        raise ValueError(f"real_latents has no entry for class {c}: add its latents (M, C, H, W)")
    z0 = torch.as_tensor(z0)
    if tuple(z0.shape[1:]) != tuple(shape) or len(z0) == 0:
        expected = ", ".join(map(str, shape))
        raise ValueError(
            f"real latents of class {c} have shape {tuple(z0.shape)}; expected (M>0, {expected}) "
            "— encode the images with backbone.encode first"
        )
    return z0.to(device=device, dtype=torch.float32)
