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
    skipped; bit-for-bit equal to :func:`dsco.backbones.sample` with the same ``batch_size`` (the same
    computation).

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

Engines (``engine=``; issue 7). ``"reference"`` is the loop of the paper's code: class by class,
step by step, one projector call per class and SGD iteration. ``"batched"`` (the default) computes
the same thing with all classes of a run at once: one backbone forward per step over every class's
candidates, and one projector call per SGD iteration (one shared projector: the classes are
concatenated; per-class projectors: one grouped convolution over classes, :func:`stack_projectors`).
Each class's loss terms are the same equations, mapped over classes with :func:`torch.vmap`, and the
per-class objectives are summed: the classes are independent, so the gradient with respect to
class ``k``'s noise is that of class ``k``'s own objective, and SGD (elementwise) takes the same
steps. The accessible mode's diffused targets of all classes also go through the projector together
(per chunk of ``batch_size``). The noise contract above is kept (every class keeps its own CPU
generators, drawn in the same order). On the CPU both engines run the projector in the channels-last
layout (:func:`channels_last`), so what the batched engine gains over the reference is the batching.
The two engines agree up to float rounding, not bit for bit: the batched engine runs the projector
(forward and backward) on all classes' candidates as one batch and maps the loss terms with vmap --
other batch shapes than the reference's, which a CPU or GPU kernel may round differently in the last
bits. With ``batch_size = ipc`` (the backbone forwarded one class at a time) and one shared projector
that is the only difference, and on the development CPU the engines then happened to agree bit for bit
(also on digits at 10 classes × IPC 10, 50 steps, 20 iterations); another CPU's kernels need not.
With the default ``batch_size`` the backbone also sees all classes in one batch, which rounds
differently in the last float bits (|Δμ| ≈ 1e-5), and 49 steps of noise optimisation amplify that: at
those settings the latents differ by 0.012 on average and up to 0.83 for single pixels (mean |z| ≈ 0.8)
— a sensitivity of NOpt itself, not of the batching (a per-class projector, as one grouped convolution,
adds rounding of the same kind; tests/test_nopt.py bounds the engines' difference by a tolerance
derived from the same run in float64, tests/rounding.py). With nothing to optimise (``mode="none"`` or
every term off) both engines run the reference loop, which is :func:`dsco.backbones.sample`'s.
``compile=True`` wraps the batched inner-loop objective (forward and backward) in ``torch.compile``
with static shapes; ``backbone_dtype=torch.bfloat16`` runs the backbone under autocast while the
noise, μ, σ and the NOpt losses stay fp32. ``early_stop`` (off by default, not the paper's method)
ends a class's inner loop once its objective stalls and logs the iterations saved.

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

import copy
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
ENGINES = ("batched", "reference")
#: Early stopping looks this many iterations back (``early_stop`` of :func:`synthesize`).
EARLY_STOP_WINDOW = 10

#: Defaults of :func:`synthesize` (paper §5.1.3 and §4.1.4).
DEFAULTS = {
    "guidance": 4.0, "num_steps": 50, "iterations": 200, "lr": 0.1, "momentum": 0.9,
    "lambda_align": 5e-4, "lambda_maxoc": 10.0, "lambda_stats": 1e-3,
    "diffusion_repeats": 5, "n_templates": 200,
}

_STREAMS = {"targets": 1, "templates": 2}
_MEMORY_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class NOptDiverged(FloatingPointError):
    """The noise optimisation produced a non-finite noise or latent; ``cls`` and ``step`` say where, the
    message names the likely fix."""

    def __init__(self, cls: int, step: int, t: int, what: str, lr: float):
        self.cls, self.step, self.t, self.what, self.lr = int(cls), int(step), int(t), what, lr
        super().__init__(f"class {cls}: non-finite {what} at denoising step {step} (t={t}): the noise "
                         f"optimisation diverged; lower lr (now {lr:g}) or lambda_align / lambda_maxoc / lambda_stats")


def _guard(x: torch.Tensor, classes, step: int, t, what: str, lr: float) -> None:
    """Raise :class:`NOptDiverged` for the first class whose block of ``x`` (``(K, ...)``) is not finite."""
    ok = torch.isfinite(x.flatten(1)).all(1)
    if not bool(ok.all()):
        raise NOptDiverged(classes[int((~ok).nonzero()[0])], step, int(t), what, lr)


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


def fingerprint(backbone) -> str:
    """SHA-256 over the backbone's name and the weights of its torch modules: the backbone's part
    of every disk-cache key (template statistics here, :func:`dsco.surrogates.make`'s sets, the
    real latents of :func:`dsco.data.encode_class`); computed once per backbone object."""
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
        expected = ", ".join(map(str, shape))
        raise ValueError(f"real latents of class {c} have shape {tuple(z0.shape)}; expected (M>0, {expected}) "
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
        digest = hashlib.sha256((key + fingerprint(backbone)).encode()).hexdigest()[:20]
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
        from . import replacing   # an interrupted or concurrent write never leaves half a file

        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            torch.save({"mean": out[0], "std": out[1], "params": key}, tmp)
    return out


def _values(terms: dict, weights: dict) -> dict:
    """Raw term values as floats, plus the weighted objective ``total``."""
    out = {k: float(v.detach()) for k, v in terms.items()}
    out["total"] = sum(weights[k] * out[k] for k in terms if weights[k])
    return out


def _stalled(totals: list, tol: float | None) -> bool:
    """Early stopping (off with ``tol=None``): the objective fell by less than ``tol`` (relative)
    over the last :data:`EARLY_STOP_WINDOW` iterations."""
    if tol is None or len(totals) <= EARLY_STOP_WINDOW:
        return False
    before, now = totals[-1 - EARLY_STOP_WINDOW], totals[-1]
    return before - now <= tol * abs(before)


def _optimise(eps0, terms_fn, weights, iterations, lr, momentum, early_stop=None):
    """SGD on the noises of one class; returns the optimised ε, the term values at start and end,
    and the number of SGD steps taken (``< iterations`` only with early stopping)."""
    eps = eps0.clone().requires_grad_(True)
    opt = torch.optim.SGD([eps], lr=lr, momentum=momentum)
    first, totals, steps = None, [], 0
    with torch.enable_grad():
        for _ in range(iterations):
            terms = terms_fn(eps)
            if first is None:
                first = _values(terms, weights)
            active = [weights[k] * v for k, v in terms.items() if weights[k]]
            if not active:  # every term switched off: nothing to optimise
                break
            if early_stop is not None:
                totals.append(float(sum(active).detach()))
                if _stalled(totals, early_stop):
                    break
            opt.zero_grad(set_to_none=True)
            sum(active).backward()
            opt.step()
            steps += 1
    eps = eps.detach()
    with torch.no_grad():
        last = _values(terms_fn(eps), weights)
    return eps, (first or last), last, steps


def _target_stats(proj, diffused_targets, n, chunk=256):
    """Reference statistics of the accessible mode at one step (§4.1.3): the diffused targets are
    projected (``chunk`` at a time), pooled, and give the per-dimension mean and population std and,
    standardised by them, the ``n`` OT pivots. Returns ``(mean (J,), std (J,), pivots (n, J))``."""
    return _pooled_stats(_pooled(proj, diffused_targets, chunk), n)


def _pooled(proj, x, chunk):
    """Pooled projector features ``(M, J)`` of ``x``, projected ``chunk`` at a time, without gradient."""
    with torch.no_grad():
        return torch.cat([losses.pool(proj(x[i:i + chunk])) for i in range(0, len(x), chunk)])


def _pooled_stats(target, n):
    """Mean, population std and ``n`` OT pivots of pooled target features ``(M, J)``."""
    mean, std = losses.channel_stats(target)
    return mean, std, losses.ot_pivots(losses.cross_normalise(target, mean, std), n)


def _accessible_class_terms(eps, feats, mean, std, pivots):
    """Eq. 19–21 for one class, from its noises ``(N, C, H, W)`` and their projected features:
    the candidates' pooled features are standardised by the targets' statistics."""
    f = losses.cross_normalise(losses.pool(feats), mean, std)
    return {"reality": losses.reality_loss(eps), "align": losses.channel_ot_loss(f, pivots)}


def _free_class_terms(eps, feats, ref_mean, ref_std):
    """Eq. 19, 24–27 for one class: feature maps cross-normalised by the templates' channel
    statistics; max-occupation is NaN for a single candidate."""
    f = losses.cross_normalise(feats, ref_mean, ref_std)
    maxoc = losses.max_occupation_loss(f) if len(f) > 1 else torch.tensor(float("nan"))
    return {"reality": losses.reality_loss(eps), "maxoc": maxoc, "stats": losses.stats_loss(f)}


def _accessible_terms(proj, mu, sigma, diffused_targets, n, chunk=256):
    """Data-accessible objective terms of one step (Eq. 19–21), as a function of the noises."""
    mean, std, pivots = _target_stats(proj, diffused_targets, n, chunk)
    return lambda eps: _accessible_class_terms(eps, proj(mu + sigma * eps), mean, std, pivots)


def _free_terms(proj, mu, sigma, ref_mean, ref_std):
    """Data-free objective terms of one step (Eq. 19, 24–27), as a function of the noises."""
    return lambda eps: _free_class_terms(eps, proj(mu + sigma * eps), ref_mean, ref_std)


# --- the batched engine ---------------------------------------------------------------------------
def stack_projectors(projectors: list):
    """One callable ``(K, N, C, H, W) -> (K, N, J, K', L')`` running ``K`` classes' projectors at once.

    One projector shared by all classes: the classes are concatenated into one batch. ``K``
    :class:`dsco.projector.RandomProjector` s (one per class): every convolution becomes one grouped
    convolution over the classes (class ``k`` owns the ``k``-th block of input and output channels,
    so ``groups`` grows ``K``-fold and nothing mixes across classes). Any other modules: stacked
    weights run with :func:`torch.func.vmap` over :func:`torch.func.functional_call`. On the CPU the
    convolutions run in the channels-last layout (:func:`channels_last`).
    """
    first = projectors[0]
    if all(p is first for p in projectors):
        shared = channels_last(first)
        return lambda x: shared(x.flatten(0, 1)).unflatten(0, x.shape[:2])
    k = len(projectors)
    layer_sets = list(zip(*[list(p.children()) for p in projectors])) if all(
        isinstance(p, torch.nn.Sequential) and len(p) == len(first) for p in projectors) else None
    simple = layer_sets is not None and all(
        all(type(m) is type(ms[0]) for m in ms) and isinstance(ms[0], (torch.nn.Conv2d, torch.nn.LeakyReLU))
        for ms in layer_sets)
    if simple:
        layers = []
        for ms in layer_sets:
            m = ms[0]
            if isinstance(m, torch.nn.LeakyReLU):
                layers.append(m)
                continue
            conv = torch.nn.Conv2d(m.in_channels * k, m.out_channels * k, m.kernel_size, m.stride, m.padding,
                                   m.dilation, m.groups * k, bias=m.bias is not None,
                                   device=m.weight.device, dtype=m.weight.dtype)
            with torch.no_grad():
                conv.weight.copy_(torch.cat([q.weight for q in ms]))
                if m.bias is not None:
                    conv.bias.copy_(torch.cat([q.bias for q in ms]))
            layers.append(conv.requires_grad_(False))
        grouped = channels_last(torch.nn.Sequential(*layers).eval())

        def run(x):  # (K, N, C, H, W) -> (N, K·C, H, W) -> (N, K·J, K', L') -> (K, N, J, K', L')
            n = x.shape[1]
            out = grouped(x.transpose(0, 1).reshape(n, -1, *x.shape[3:]))
            return out.reshape(n, k, -1, *out.shape[2:]).transpose(0, 1)
        return run
    params, buffers = torch.func.stack_module_state(projectors)
    base = copy.deepcopy(first).to("meta")
    call = lambda p, b, x: torch.func.functional_call(base, (p, b), (x,))  # noqa: E731
    return lambda x: torch.func.vmap(call)(params, buffers, x)


def channels_last(projector):
    """``projector`` as a callable ``(N, C, H, W) -> features`` that runs in the channels-last layout
    when its weights are on the CPU (a copy; the module is left as it is), else ``projector`` itself.

    oneDNN's NHWC convolutions are faster on the small maps of NOpt (digits, 100 images, 2 threads:
    one forward and backward of the projector ≈10 ms against ≈12 ms; the 1-channel first layer's
    forward ≈4× faster). Same function; the float rounding differs (|Δfeature| ~ 1e-7).
    """
    weight = next(projector.parameters(), None)
    if weight is None or weight.device.type != "cpu":
        return projector
    fast = copy.deepcopy(projector).to(memory_format=torch.channels_last)
    return lambda x: fast(x.contiguous(memory_format=torch.channels_last))


def _batched_objective(project, terms_fn, weights):
    """``(eps, mu, sigma, *stats) -> (per-class objective (K,), per-class raw terms {term: (K,)})``.

    All classes go through ONE projector call; each class's terms are the reference equations
    (:func:`_accessible_class_terms` / :func:`_free_class_terms`) mapped over classes with
    :func:`torch.vmap`. The classes are independent, so the gradient of the summed objective with
    respect to class ``k``'s noise is the gradient of class ``k``'s own objective.
    """
    vterms = torch.vmap(terms_fn)

    def objective(eps, mu, sigma, *stats):
        terms = vterms(eps, project(mu + sigma * eps), *stats)
        total = sum(w * terms[name] for name, w in weights.items() if w)
        return total, terms
    return objective


def _optimise_batched(eps0, objective, args, iterations, lr, momentum, early_stop=None):
    """SGD on the noises of all ``K`` classes at once (``eps0``: ``(K, N, C, H, W)``).

    SGD with momentum updates every element independently, so one optimiser over the stacked noises
    takes exactly the per-class steps. With early stopping a class that stalls keeps its noise
    (it is written back after each later step) and the loop ends once every class has stalled.
    Returns the optimised ε, per-class term values at start and end, and per-class SGD steps.
    """
    k = eps0.shape[0]
    eps = eps0.clone().requires_grad_(True)
    opt = torch.optim.SGD([eps], lr=lr, momentum=momentum)
    first, totals = None, []
    steps = torch.zeros(k, dtype=torch.long)
    stopped = torch.zeros(k, dtype=torch.bool)
    held = None
    with torch.enable_grad():
        for _ in range(iterations):
            total, terms = objective(eps, *args)
            if first is None:
                first = {name: v.detach().clone() for name, v in terms.items()}
            if early_stop is not None:
                totals.append(total.detach().cpu().tolist())
                newly = torch.tensor([not stopped[c] and _stalled([row[c] for row in totals], early_stop)
                                      for c in range(k)])
                if newly.any():
                    held = eps.detach().clone() if held is None else torch.where(
                        newly.to(eps.device).view(-1, *[1] * (eps.dim() - 1)), eps.detach(), held)
                    stopped |= newly
                if stopped.all():
                    break
            opt.zero_grad(set_to_none=True)
            total.sum().backward()
            opt.step()
            steps += ~stopped
            if stopped.any():
                with torch.no_grad():
                    mask = stopped.to(eps.device).view(-1, *[1] * (eps.dim() - 1))
                    eps.copy_(torch.where(mask, held, eps))
    eps = eps.detach()
    with torch.no_grad():
        last = {name: v.detach() for name, v in objective(eps, *args)[1].items()}
    return eps, (last if first is None else first), last, steps


def _per_class_values(terms: dict, weights: dict, c: int) -> dict:
    out = {name: float(v[c]) for name, v in terms.items()}
    out["total"] = sum(weights[name] * out[name] for name in terms if weights[name])
    return out


def as_dtype(backbone_dtype):
    """``backbone_dtype`` as None (fp32) or a torch dtype; accepts "fp32", "bf16", "fp16" and dtypes."""
    names = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    dtype = names.get(backbone_dtype, backbone_dtype) if isinstance(backbone_dtype, str) else backbone_dtype
    if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"backbone_dtype={backbone_dtype!r}: use None/'fp32', 'bf16' (torch.bfloat16) or 'fp16'")
    return None if dtype == torch.float32 else dtype


def _backbone_step(backbone, z, t, y, guidance, batch_size, backbone_dtype):
    """``backbone.mean_std`` in fp32, or under autocast to ``backbone_dtype``; μ and σ come back fp32."""
    if backbone_dtype in (None, torch.float32):
        return backbone.mean_std(z, int(t), y, guidance, batch_size=batch_size)
    with torch.autocast(torch.device(z.device).type, dtype=backbone_dtype):
        mu, sigma = backbone.mean_std(z, int(t), y, guidance, batch_size=batch_size)
    return mu.float(), sigma.float()


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
               stats_scale_hw: bool = False, batch_size: int | None = 256, progress: bool = True,
               engine: str = "batched", compile: bool | str = False, backbone_dtype=None,
               early_stop: float | None = None):
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
            default 256; it changes only memory and float rounding); the optimisation is always joint over the class.
        progress: show a tqdm bar over the steps (× classes for the reference engine).
        engine: ``"batched"`` (default: all classes at once) or ``"reference"`` (class by class);
            both compute the same thing (module docstring, "Engines").
        compile: batched engine only: ``torch.compile`` the inner-loop objective (static shapes);
            ``True`` or an inductor mode such as ``"reduce-overhead"`` (CUDA graphs on a GPU).
        backbone_dtype: None (fp32) or e.g. ``torch.bfloat16``: the backbone forward under autocast;
            the NOpt losses, noise, μ and σ stay fp32.
        early_stop: None (default, the paper: every iteration runs) or a relative tolerance: a
            class's inner loop stops once its objective fell by less than ``early_stop`` (relative)
            over the last :data:`EARLY_STOP_WINDOW` iterations. Labelled: not the paper's method.

    Returns:
        ``(latents, labels, log)``: latents ``(len(classes)·ipc, C, H, W)`` on the CPU, labels
        ``(len(classes)·ipc,)``, and a :class:`pandas.DataFrame` with one row per class and optimised
        step: ``class, step, t`` (the step's input timestep), ``t_ref`` (the level of the targets or
        templates), ``sigma`` (mean σ of the step), ``iterations`` (SGD steps taken) and
        ``<term>_first`` / ``<term>_last`` (raw values at the drawn and at the optimised noise) for
        every term of the mode and for the weighted objective ``total`` (empty for ``mode="none"``).
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
        raise ValueError(f"early_stop={early_stop!r}: use None (off) or a relative tolerance >= 0, e.g. 1e-3")
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

    # --- per-class setup shared by both engines: projectors, real latents, template statistics -----
    projs, z0s, refs = {}, {}, {}
    if mode != "none":
        shared = None if projector_per_class else _projector(projector, shape, seed, device)
        for c in classes:
            projs[c] = _projector(projector, shape, seed + c, device) if projector_per_class else shared
            if mode == "accessible":
                z0 = _real_latents(real_latents, c, shape, device)
                z0s[c] = z0[torch.arange(n_diffused(len(z0), ipc, diffusion_repeats), device=device) % len(z0)]
            else:
                refs[c] = template_stats(
                    backbone, c, seed, guidance=guidance, num_steps=num_steps, n_templates=n_templates,
                    projector=projector, projector_seed=seed + c if projector_per_class else seed,
                    batch_size=batch_size, cache_dir=template_cache)
        if mode == "free" and stats_scale_hw:  # official code: stats term × K·L of the feature map
            with torch.no_grad():
                weights["stats"] *= math.prod(projs[classes[0]](torch.zeros(1, *shape, device=device)).shape[2:])
    ctx = dict(backbone=backbone, classes=classes, ipc=ipc, mode=mode, seed=seed, shape=shape, device=device,
               timesteps=timesteps, guidance=guidance, weights=weights, iterations=iterations, lr=lr,
               momentum=momentum, projs=projs, z0s=z0s, refs=refs, targets_one_step_noisier=targets_one_step_noisier,
               latin_hypercube=latin_hypercube, batch_size=batch_size, progress=progress,
               backbone_dtype=backbone_dtype, early_stop=early_stop, compile=compile)
    nothing_to_optimise = mode == "none" or not any(weights.values())
    used = "reference" if engine == "reference" or nothing_to_optimise else "batched"
    latents, rows = (_run_reference if used == "reference" else _run_batched)(ctx)
    labels = torch.tensor(classes, dtype=torch.long).repeat_interleave(ipc)
    log = pd.DataFrame(rows)
    log.attrs.update(engine=used, compile=(compile if used == "batched" else False),
                     backbone_dtype=str(backbone_dtype or torch.float32),
                     tf32=bool(torch.backends.cuda.matmul.allow_tf32), early_stop=early_stop,
                     iterations_saved=int(len(log) * iterations - log["iterations"].sum()) if len(log) else 0)
    return latents, labels, log


def _first_noise(ctx, g):
    shape = (ctx["ipc"], *ctx["shape"])
    return lhs_normal(shape, g) if ctx["latin_hypercube"] else torch.randn(shape, generator=g)


def _diffused_targets(ctx, c, g_tgt, t_ref):
    """Class ``c``'s real latents diffused to ``t_ref`` with the next draw of its target stream."""
    z0 = ctx["z0s"][c]
    draw = lhs_normal if ctx["latin_hypercube"] else (lambda s, gen: torch.randn(s, generator=gen))
    return ctx["backbone"].q_sample(z0, t_ref, draw(tuple(z0.shape), g_tgt).to(ctx["device"]))


def _row(c, i, t, t_ref, sigma, first, last, steps):
    return {"class": c, "step": i, "t": int(t), "t_ref": t_ref, "sigma": float(sigma.mean()),
            "iterations": int(steps), **{f"{k}_first": v for k, v in first.items()},
            **{f"{k}_last": v for k, v in last.items()}}


def _run_reference(ctx):
    """The reference engine: class by class, step by step (the loop of the paper's code)."""
    fast_projs = dict(zip(ctx["classes"], _layout_projectors(ctx)))
    total = len(ctx["classes"]) * len(ctx["timesteps"])
    with tqdm(total=total, desc=f"NOpt[{ctx['mode']}]", disable=not ctx["progress"]) as bar:   # closed before an error
        return _reference_loop(ctx, bar, fast_projs, [], [])


def _reference_loop(ctx, bar, fast_projs, rows, out):
    from . import backbones

    bb, mode, ipc, shape, device, timesteps = (ctx[k] for k in ("backbone", "mode", "ipc", "shape", "device", "timesteps"))
    n_steps = len(timesteps)
    for c in ctx["classes"]:
        g = backbones.class_generator(ctx["seed"], c)
        z = _first_noise(ctx, g).to(device)
        g_tgt = aux_generator(ctx["seed"], c, "targets")
        for i, t in enumerate(timesteps):
            mu, sigma = _backbone_step(bb, z, t, c, ctx["guidance"], ctx["batch_size"], ctx["backbone_dtype"])
            if i == n_steps - 1:  # sigma = 0: nothing to optimise
                z = mu
                bar.update(1)
                break
            eps = torch.randn((ipc, *shape), generator=g).to(device)
            if mode != "none":
                level = i if ctx["targets_one_step_noisier"] else i + 1  # level k: the latent fed to step k
                t_ref = int(timesteps[level])
                proj = fast_projs[c]
                if mode == "accessible":
                    terms_fn = _accessible_terms(proj, mu, sigma, _diffused_targets(ctx, c, g_tgt, t_ref), ipc,
                                                 chunk=ctx["batch_size"] or len(ctx["z0s"][c]))
                else:
                    ref_mean, ref_std = ctx["refs"][c]
                    terms_fn = _free_terms(proj, mu, sigma, ref_mean[level].to(device), ref_std[level].to(device))
                eps, first, last, steps = _optimise(eps, terms_fn, ctx["weights"], ctx["iterations"], ctx["lr"],
                                                    ctx["momentum"], ctx["early_stop"])
                _guard(eps[None], [c], i, t, "noise", ctx["lr"])
                rows.append(_row(c, i, t, t_ref, sigma, first, last, steps))
                bar.set_postfix(cls=c, loss=f"{last['total']:.3g}")
            z = mu + sigma * eps
            _guard(z[None], [c], i, t, "latent", ctx["lr"])
            bar.update(1)
        out.append(z.detach().cpu())
    return torch.cat(out), rows


def _run_batched(ctx):
    """The batched engine: every step runs all classes through the backbone at once and optimises
    all their noises with one projector call per SGD iteration (module docstring, "Engines")."""
    from . import backbones

    bb, mode, ipc, shape, device, timesteps = (ctx[k] for k in ("backbone", "mode", "ipc", "shape", "device", "timesteps"))
    classes, k, n_steps = ctx["classes"], len(ctx["classes"]), len(timesteps)
    weights = ctx["weights"]
    gens = [backbones.class_generator(ctx["seed"], c) for c in classes]
    g_tgts = [aux_generator(ctx["seed"], c, "targets") for c in classes]
    z = torch.cat([_first_noise(ctx, g) for g in gens]).to(device)
    y = torch.tensor(classes, dtype=torch.long, device=device).repeat_interleave(ipc)
    project = stack_projectors([ctx["projs"][c] for c in classes])
    fast_projs = _layout_projectors(ctx) if mode == "accessible" else None  # for the diffused targets
    terms_fn = _accessible_class_terms if mode == "accessible" else _free_class_terms
    if mode == "free" and ipc < 2:  # the max-occupation term needs a neighbour: left out, logged NaN
        terms_fn = _free_single
        weights = {n: w for n, w in weights.items() if n != "maxoc"}
    objective = _batched_objective(project, terms_fn, weights)
    if ctx["compile"]:  # True: inductor's default mode; a string: that mode, e.g. "reduce-overhead" (CUDA graphs)
        mode_ = None if ctx["compile"] is True else str(ctx["compile"])
        objective = torch.compile(objective, dynamic=False, mode=mode_)
    rows = []
    with tqdm(total=n_steps, desc=f"NOpt[{mode}, {k} classes]", disable=not ctx["progress"]) as bar:
        z = _batched_loop(ctx, bar, z, y, gens, g_tgts, project, fast_projs, objective, weights, rows)
    rows = [r for _, r in sorted(rows, key=lambda jr: (jr[0], jr[1]["step"]))]  # class-major, as the reference
    return z.detach().cpu(), rows


def _batched_loop(ctx, bar, z, y, gens, g_tgts, project, fast_projs, objective, weights, rows):
    """The steps of :func:`_run_batched`; returns the final latents and appends the log rows."""
    bb, mode, ipc, shape, device, timesteps = (ctx[k] for k in ("backbone", "mode", "ipc", "shape", "device", "timesteps"))
    classes, k, n_steps = ctx["classes"], len(ctx["classes"]), len(timesteps)
    for i, t in enumerate(timesteps):
        mu, sigma = _backbone_step(bb, z, t, y, ctx["guidance"], ctx["batch_size"], ctx["backbone_dtype"])
        if i == n_steps - 1:
            z = mu
            bar.update(1)
            break
        eps = torch.cat([torch.randn((ipc, *shape), generator=g) for g in gens]).to(device)
        level = i if ctx["targets_one_step_noisier"] else i + 1
        t_ref = int(timesteps[level])
        if mode == "accessible":  # every class's diffused targets in one projector pass per chunk
            targets = [_diffused_targets(ctx, c, g_tgts[j], t_ref) for j, c in enumerate(classes)]
            stats = [_pooled_stats(f, ipc) for f in _class_pooled(fast_projs, targets, ctx["batch_size"])]
        else:
            stats = [(ctx["refs"][c][0][level], ctx["refs"][c][1][level]) for c in classes]
        stats = [torch.stack(s).to(device) for s in zip(*stats)]
        mu_k, sigma_k = mu.unflatten(0, (k, ipc)), sigma.unflatten(0, (k, ipc))
        eps_k, first, last, steps = _optimise_batched(
            eps.unflatten(0, (k, ipc)), objective, (mu_k, sigma_k, *stats), ctx["iterations"],
            ctx["lr"], ctx["momentum"], ctx["early_stop"])
        _guard(eps_k, classes, i, t, "noise", ctx["lr"])
        for j, c in enumerate(classes):
            f, l_ = _per_class_values(first, weights, j), _per_class_values(last, weights, j)
            if mode == "free" and ipc < 2:  # the reference's column order, max-occupation NaN
                f, l_ = ({"reality": v["reality"], "maxoc": float("nan"), "stats": v["stats"], "total": v["total"]}
                         for v in (f, l_))
            rows.append((j, _row(c, i, t, t_ref, sigma_k[j], f, l_, steps[j])))
        z = mu + sigma * eps_k.flatten(0, 1)
        _guard(z.unflatten(0, (k, ipc)), classes, i, t, "latent", ctx["lr"])
        bar.update(1)
    return z


def _layout_projectors(ctx):
    """Each class's projector as :func:`channels_last` makes it (one copy per distinct projector)."""
    if not ctx["projs"]:
        return [None] * len(ctx["classes"])
    fast = {id(p): channels_last(p) for p in ctx["projs"].values()}
    return [fast[id(ctx["projs"][c])] for c in ctx["classes"]]


def _class_pooled(projs, targets, chunk):
    """Pooled features of each class's targets; classes sharing one projector go through it together."""
    if all(p is projs[0] for p in projs):
        return _pooled(projs[0], torch.cat(targets), chunk or sum(map(len, targets))).split([len(t) for t in targets])
    return [_pooled(p, t, chunk or len(t)) for p, t in zip(projs, targets)]


def _free_single(eps, feats, ref_mean, ref_std):
    """The free mode's terms for a single candidate (no max-occupation term)."""
    f = losses.cross_normalise(feats, ref_mean, ref_std)
    return {"reality": losses.reality_loss(eps), "stats": losses.stats_loss(f)}
