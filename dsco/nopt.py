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
    skipped; bit-for-bit equal to :func:`dsco.backbones.sample`.

Noise contract (shared with :func:`dsco.backbones.sample`): for class ``c`` a CPU generator
``g = dsco.backbones.class_generator(seed, c)`` draws ``z_T = randn((N, C, H, W), generator=g)``
and then, for every step but the last, ``ε = randn((N, C, H, W), generator=g)`` — the starting
point of the optimisation. The diffused targets and the templates use their own generators
(:func:`aux_generator`), so switching NOpt on or off never shifts the candidates' noise. With
``latin_hypercube=True`` the ``z_T`` draw is replaced by :func:`lhs_normal` on the same generator
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

Cost on digits (shipped DDPM, 10 classes × IPC 10, 50 steps, one thread of the shared 2-core CPU
under load from parallel jobs): vanilla ≈ 20–32 s; accessible NOpt ≈ 100 s at 10 iterations and
≈ 456 s at 200 (≈ 18× vanilla); free NOpt ≈ 58 s at 10 and ≈ 750 s at 200, plus ≈ 275 s once
for the 200 templates per class. At this scale the free mode with the paper's λ_stats = 1e-3
drifts off the data (J·K·L = 1024 features here against 32768 for DiT latents): on classes 0–1,
seed 0, 200 iterations, the pixel-space RBF MMD² to the real class was 0.42 (vanilla 0.06,
accessible 0.015), with λ_stats = 1 it was 0.04 and with λ_maxoc = 1 0.07 (one seed, indicative).
"""
from __future__ import annotations

import hashlib
import json
import math
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import losses
from . import projector as projector_mod

MODES = ("accessible", "free", "none")

#: Defaults of :func:`synthesize` (paper §5.1.3 and §4.1.4).
DEFAULTS = {
    "guidance": 4.0, "num_steps": 50, "iterations": 200, "lr": 0.1, "momentum": 0.9,
    "lambda_align": 5e-4, "lambda_maxoc": 10.0, "lambda_stats": 1e-3,
    "diffusion_repeats": 5, "n_templates": 200,
}

_STREAMS = {"targets": 1, "templates": 2}
_MEMORY_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def aux_generator(seed: int, c: int, stream: str) -> torch.Generator:
    """A CPU generator for the diffused targets (``"targets"``) or the templates (``"templates"``) of class ``c``.

    Independent of :func:`dsco.backbones.class_generator` (the candidates' stream) and of each other.
    """
    state = np.random.SeedSequence([int(seed), int(c), _STREAMS[stream], 0xD5C0]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def lhs_normal(shape, generator: torch.Generator) -> torch.Tensor:
    """Midpoint Latin-hypercube standard normal samples of shape ``(N, *dims)`` (official code).

    In every one of the ``prod(dims)`` coordinates the ``N`` values are the normal quantiles
    ``Φ⁻¹((k + ½)/N)``, k = 0…N−1, in an independent random order. Consumes
    ``rand((prod(dims), N), generator)``. Note: with ``N = 1`` every value is 0.
    """
    n, dims = int(shape[0]), tuple(shape[1:])
    d = math.prod(dims)
    quantiles = torch.special.ndtri((torch.arange(n, dtype=torch.float64) + 0.5) / n).float()
    order = torch.rand((d, n), generator=generator).argsort(dim=1)
    return quantiles[order].T.reshape(n, *dims).contiguous()


def _projector(spec, shape, seed, device):
    """Build the projector for one class from ``spec`` (None, preset name, kwargs dict or callable seed→module)."""
    if spec is None:
        return projector_mod.for_latents(shape, seed=seed, device=device)
    if isinstance(spec, str):
        return projector_mod.make(spec, seed=seed, device=device)
    if isinstance(spec, dict):
        return projector_mod.RandomProjector(seed=seed, device=device, **spec)
    if callable(spec) and not isinstance(spec, torch.nn.Module):
        return spec(seed).to(device)
    raise ValueError("projector must be None, a preset name ('digits', 'paper'), a dict of "
                     "RandomProjector arguments or a callable seed -> module")


def _projector_key(spec, shape) -> str:
    if spec is None:
        p = projector_mod.for_latents(shape)
        return json.dumps([p.in_channels, p.widths, p.groups])
    if isinstance(spec, (str, dict)):
        return json.dumps(spec, sort_keys=True, default=str)
    return getattr(spec, "__qualname__", repr(spec))


def _fingerprint(backbone) -> str:
    """SHA-256 over the backbone's name and the weights of its torch modules (for the disk cache)."""
    cache = _MEMORY_CACHE.setdefault(backbone, {})
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
        raise ValueError("mode='accessible' needs the classes' real latents: pass real_latents={class: "
                         "tensor (M, C, H, W)} or a callable class -> tensor (encode images with backbone.encode)")
    z0 = real_latents(c) if callable(real_latents) else real_latents.get(c)
    if z0 is None:
        raise ValueError(f"real_latents has no entry for class {c}: add its latents (M, C, H, W)")
    z0 = torch.as_tensor(z0)
    if tuple(z0.shape[1:]) != tuple(shape) or len(z0) == 0:
        raise ValueError(f"real latents of class {c} have shape {tuple(z0.shape)}; expected (M>0, {', '.join(map(str, shape))}) "
                         "— encode the images with backbone.encode first")
    return z0.to(device=device, dtype=torch.float32)


def n_diffused(m: int, n: int, repeats: int = 5) -> int:
    """``N_Diff``: the smallest multiple of ``n`` that is ≥ ``repeats·m`` and ≥ ``repeats·n`` (§4.1.3)."""
    return n * max(repeats, -(-repeats * m // n))


def template_stats(backbone, c: int, seed: int = 0, *, guidance: float = 4.0, num_steps: int = 50,
                   n_templates: int = 200, projector=None, projector_seed: int | None = None,
                   batch_size: int | None = 256, cache_dir=None, progress: bool = False):
    """Per-level channel mean and population std of the projected template features (Eq. 22–23).

    ``n_templates`` plain samples of class ``c`` (noise from ``aux_generator(seed, c, "templates")``)
    are denoised with ``num_steps`` steps. Level ``k`` is the latent fed to step ``k``
    (``k = 0`` is ``z_T``) and level ``num_steps`` the final sample; returns ``(mean, std)`` of shape
    ``(num_steps + 1, J)``. Statistics run over (templates, K, L). Cached in memory per backbone
    and, with ``cache_dir``, on disk under a hash of all these parameters and the backbone weights.
    """
    shape = tuple(backbone.latent_shape)
    projector_seed = seed if projector_seed is None else projector_seed
    params = {"class": int(c), "seed": int(seed), "guidance": float(guidance), "num_steps": int(num_steps),
              "n_templates": int(n_templates), "projector": _projector_key(projector, shape),
              "projector_seed": int(projector_seed), "batch_size": batch_size}
    key = json.dumps(params, sort_keys=True)
    mem = _MEMORY_CACHE.setdefault(backbone, {})
    if key in mem:
        return mem[key]
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256((key + _fingerprint(backbone)).encode()).hexdigest()[:20]
        path = Path(cache_dir) / f"templates-{digest}.pt"
        if path.exists():
            saved = torch.load(path, weights_only=True)
            mem[key] = (saved["mean"], saved["std"])
            return mem[key]
    device = backbone.device
    proj = _projector(projector, shape, projector_seed, device)
    backbone.set_steps(num_steps)
    timesteps = backbone.timesteps
    g = aux_generator(seed, c, "templates")
    bs = n_templates if batch_size is None else batch_size
    s1 = s2 = None
    count = 0
    for start in tqdm(range(0, n_templates, bs), desc=f"templates class {c}", disable=not progress, leave=False):
        n = min(bs, n_templates - start)
        z = torch.randn((n, *shape), generator=g).to(device)
        sums = []
        with torch.no_grad():
            for i, t in enumerate(timesteps):
                f = proj(z).double()
                sums.append((f.sum(dim=(0, 2, 3)), f.square().sum(dim=(0, 2, 3))))
                mu, sigma = backbone.mean_std(z, int(t), c, guidance, batch_size=batch_size)
                z = mu if i == len(timesteps) - 1 else mu + sigma * torch.randn((n, *shape), generator=g).to(device)
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
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"mean": out[0], "std": out[1], "params": key}, path)
    return out


def _values(terms: dict, weights: dict) -> dict:
    """Raw term values as floats, plus the weighted objective ``total``."""
    out = {k: float(v.detach()) for k, v in terms.items()}
    out["total"] = sum(weights[k] * out[k] for k in terms if weights[k])
    return out


def _optimise(eps0, terms_fn, weights, iterations, lr, momentum):
    """SGD on the noises of one class; returns the optimised ε and the term values at start and end."""
    eps = eps0.clone().requires_grad_(True)
    opt = torch.optim.SGD([eps], lr=lr, momentum=momentum)
    first = None
    with torch.enable_grad():
        for _ in range(iterations):
            terms = terms_fn(eps)
            if first is None:
                first = _values(terms, weights)
            active = [weights[k] * v for k, v in terms.items() if weights[k]]
            if not active:  # every term switched off: nothing to optimise
                break
            opt.zero_grad(set_to_none=True)
            sum(active).backward()
            opt.step()
    eps = eps.detach()
    with torch.no_grad():
        last = _values(terms_fn(eps), weights)
    return eps, (first or last), last


def _accessible_terms(proj, mu, sigma, diffused_targets, n, chunk=256):
    """Data-accessible objective terms of one step (Eq. 19–21), as a function of the noises.

    The diffused targets are projected (``chunk`` at a time), pooled and standardised by their own
    per-dimension mean and population std; their sorted columns give the ``n`` OT pivots.
    Candidates are standardised by the same statistics.
    """
    with torch.no_grad():
        target = torch.cat([losses.pool(proj(diffused_targets[i:i + chunk]))
                            for i in range(0, len(diffused_targets), chunk)])
        mean, std = losses.channel_stats(target)
        pivots = losses.ot_pivots(losses.cross_normalise(target, mean, std), n)

    def terms(eps):
        f = losses.cross_normalise(losses.pool(proj(mu + sigma * eps)), mean, std)
        return {"reality": losses.reality_loss(eps), "align": losses.channel_ot_loss(f, pivots)}
    return terms


def _free_terms(proj, mu, sigma, ref_mean, ref_std):
    """Data-free objective terms of one step (Eq. 19, 24–27): feature maps cross-normalised by the
    templates' channel statistics; max-occupation is NaN for a single candidate."""
    def terms(eps):
        f = losses.cross_normalise(proj(mu + sigma * eps), ref_mean, ref_std)
        maxoc = losses.max_occupation_loss(f) if len(f) > 1 else torch.tensor(float("nan"))
        return {"reality": losses.reality_loss(eps), "maxoc": maxoc, "stats": losses.stats_loss(f)}
    return terms


def synthesize(backbone, classes, ipc: int, mode: str = "accessible", seed: int = 0, *,
               guidance: float = DEFAULTS["guidance"], num_steps: int = DEFAULTS["num_steps"],
               iterations: int = DEFAULTS["iterations"], lr: float = DEFAULTS["lr"],
               momentum: float = DEFAULTS["momentum"],
               lambda_align: float = DEFAULTS["lambda_align"], lambda_maxoc: float = DEFAULTS["lambda_maxoc"],
               lambda_stats: float = DEFAULTS["lambda_stats"],
               reality: bool = True, align: bool = True, maxoc: bool = True, stats: bool = True,
               real_latents=None, diffusion_repeats: int = DEFAULTS["diffusion_repeats"],
               n_templates: int = DEFAULTS["n_templates"], template_cache=None,
               projector=None, projector_per_class: bool = False,
               targets_one_step_noisier: bool = False, latin_hypercube: bool = False,
               stats_scale_hw: bool = False, batch_size: int | None = 256, progress: bool = True):
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
        real_latents: accessible mode: ``{class: (M, C, H, W) tensor}`` or a callable ``class -> tensor``.
        diffusion_repeats: each real latent is diffused at least this often per step (5).
        n_templates, template_cache: free mode: templates per class (≥ 200 in the paper) and an
            optional folder for the on-disk cache of their statistics (:func:`template_stats`).
        projector: None (the preset for the latent shape), a preset name, a dict of
            :class:`dsco.projector.RandomProjector` arguments, or a callable ``seed -> module``.
        projector_per_class, targets_one_step_noisier, latin_hypercube, stats_scale_hw: the
            official-code switches (module docstring).
        batch_size: chunk size of the backbone's forward passes (as in :func:`dsco.backbones.sample`,
            default 256; it changes nothing but memory); the optimisation is always joint over the class.
        progress: show a tqdm bar over classes × steps.

    Returns:
        ``(latents, labels, log)``: latents ``(len(classes)·ipc, C, H, W)`` on the CPU, labels
        ``(len(classes)·ipc,)``, and a :class:`pandas.DataFrame` with one row per class and optimised
        step: ``class, step, t`` (the step's input timestep), ``t_ref`` (the level of the targets or
        templates), ``sigma`` (mean σ of the step) and ``<term>_first`` / ``<term>_last`` (raw values
        at the drawn and at the optimised noise) for every term of the mode and for the weighted
        objective ``total`` (empty for ``mode="none"``). With ``ipc = 1`` the free mode has no
        max-occupation term (Eq. 25 needs a neighbour; logged as NaN).
    """
    from . import backbones  # the backbone module owns the noise contract

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if int(ipc) < 1:
        raise ValueError(f"ipc must be >= 1, got {ipc}")
    ipc = int(ipc)
    classes = [int(c) for c in classes]
    shape = tuple(int(s) for s in backbone.latent_shape)
    device = backbone.device
    backbone.set_steps(num_steps)
    timesteps = backbone.timesteps
    n_steps = len(timesteps)
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
        weights["stats"] = lambda_stats if stats else 0.0  # × K·L per class if stats_scale_hw

    rows, out = [], []
    bar = tqdm(total=len(classes) * n_steps, desc=f"NOpt[{mode}]", disable=not progress)
    for c in classes:
        g = backbones.class_generator(seed, c)
        z = (lhs_normal((ipc, *shape), g) if latin_hypercube else torch.randn((ipc, *shape), generator=g)).to(device)
        if mode != "none":
            proj_seed = seed + c if projector_per_class else seed
            proj = _projector(projector, shape, proj_seed, device)
        if mode == "accessible":
            z0 = _real_latents(real_latents, c, shape, device)
            z0 = z0[torch.arange(n_diffused(len(z0), ipc, diffusion_repeats), device=device) % len(z0)]
            g_tgt = aux_generator(seed, c, "targets")
        elif mode == "free":
            ref_mean, ref_std = template_stats(
                backbone, c, seed, guidance=guidance, num_steps=num_steps, n_templates=n_templates,
                projector=projector, projector_seed=proj_seed, batch_size=batch_size,
                cache_dir=template_cache)
            if stats_scale_hw:  # official code: stats term × K·L of the feature map
                weights["stats"] = (lambda_stats if stats else 0.0) * math.prod(proj(torch.zeros(1, *shape, device=device)).shape[2:])
        for i, t in enumerate(timesteps):
            mu, sigma = backbone.mean_std(z, int(t), c, guidance, batch_size=batch_size)
            if i == n_steps - 1:  # sigma = 0: nothing to optimise
                z = mu
                bar.update(1)
                break
            eps = torch.randn((ipc, *shape), generator=g).to(device)
            if mode != "none":
                level = i if targets_one_step_noisier else i + 1  # level k: the latent fed to step k
                t_ref = int(timesteps[level])
                if mode == "accessible":
                    draw = lhs_normal if latin_hypercube else (lambda s, gen: torch.randn(s, generator=gen))
                    noise = draw(tuple(z0.shape), g_tgt).to(device)
                    terms_fn = _accessible_terms(proj, mu, sigma, backbone.q_sample(z0, t_ref, noise), ipc,
                                                 chunk=batch_size or len(z0))
                else:
                    terms_fn = _free_terms(proj, mu, sigma, ref_mean[level].to(device), ref_std[level].to(device))
                eps, first, last = _optimise(eps, terms_fn, weights, iterations, lr, momentum)
                rows.append({"class": c, "step": i, "t": int(t), "t_ref": t_ref, "sigma": float(sigma.mean()),
                             **{f"{k}_first": v for k, v in first.items()},
                             **{f"{k}_last": v for k, v in last.items()}})
                bar.set_postfix(cls=c, loss=f"{last['total']:.3g}")
            z = mu + sigma * eps
            bar.update(1)
        out.append(z.detach().cpu())
    bar.close()
    latents = torch.cat(out)
    labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(ipc)
    return latents, labels, pd.DataFrame(rows)
