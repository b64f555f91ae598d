"""NOpt's objective at one denoising step (paper §4.1, Eq. 19–29), as a function of the noises.

At a step with mean μ and standard deviation σ the candidates of a class are ``μ + σ·ε``; the
objective of their noises ε is ``L_real`` (Eq. 19) plus the alignment term of the mode
(:mod:`dsco.nopt` describes both modes). This module builds it from the equations of
:mod:`dsco.losses`:

- :func:`accessible_terms` / :func:`free_terms`: one class's terms of one step, as a function of its
  noises (the reference engine); :func:`batched_objective`: all classes' objectives at once, one
  projector call for every class (the batched engine);
- the per-class equations they share: :func:`accessible_class_terms` (Eq. 19–21),
  :func:`free_class_terms` (Eq. 19, 24–27) and :func:`free_single` (a single candidate);
- the accessible mode's reference statistics: :func:`n_diffused` real latents diffused to the
  step's level, projected and pooled (:func:`pooled`, :func:`class_pooled`), give the mean,
  population std and OT pivots (:func:`pooled_stats`, :func:`target_stats`);
- the projectors: :func:`build_projector` from ``synthesize``'s ``projector`` argument (and
  :func:`projector_key`, its part of a cache key), :func:`channels_last` (the layout both engines
  run in on the CPU) and :func:`stack_projectors` (``K`` classes' projectors as one call).
"""

from __future__ import annotations

import copy
import json

import torch

from . import losses
from . import projector as projector_mod


# --- the objective of one step -------------------------------------------------------------------
def accessible_terms(proj, mu, sigma, diffused_targets, n, chunk=256):
    """Data-accessible objective terms of one step (Eq. 19–21), as a function of the noises."""
    mean, std, pivots = target_stats(proj, diffused_targets, n, chunk)
    return lambda eps: accessible_class_terms(eps, proj(mu + sigma * eps), mean, std, pivots)


def free_terms(proj, mu, sigma, ref_mean, ref_std):
    """Data-free objective terms of one step (Eq. 19, 24–27), as a function of the noises."""
    return lambda eps: free_class_terms(eps, proj(mu + sigma * eps), ref_mean, ref_std)


def batched_objective(project, terms_fn, weights):
    """``(eps, mu, sigma, *stats) -> (per-class objective (K,), per-class raw terms {term: (K,)})``.

    All classes go through ONE projector call; each class's terms are the reference equations
    (:func:`accessible_class_terms` / :func:`free_class_terms`) mapped over classes with
    :func:`torch.vmap`. The classes are independent, so the gradient of the summed objective with
    respect to class ``k``'s noise is the gradient of class ``k``'s own objective.
    """
    vterms = torch.vmap(terms_fn)

    def objective(eps, mu, sigma, *stats):
        terms = vterms(eps, project(mu + sigma * eps), *stats)
        total = sum(w * terms[name] for name, w in weights.items() if w)
        return total, terms

    return objective


# --- the equations of one class ------------------------------------------------------------------
def accessible_class_terms(eps, feats, mean, std, pivots):
    """Eq. 19–21 for one class, from its noises ``(N, C, H, W)`` and their projected features:
    the candidates' pooled features are standardised by the targets' statistics."""
    f = losses.cross_normalise(losses.pool(feats), mean, std)
    return {"reality": losses.reality_loss(eps), "align": losses.channel_ot_loss(f, pivots)}


def free_class_terms(eps, feats, ref_mean, ref_std):
    """Eq. 19, 24–27 for one class: feature maps cross-normalised by the templates' channel
    statistics; max-occupation is NaN for a single candidate."""
    f = losses.cross_normalise(feats, ref_mean, ref_std)
    maxoc = losses.max_occupation_loss(f) if len(f) > 1 else torch.tensor(float("nan"))
    return {"reality": losses.reality_loss(eps), "maxoc": maxoc, "stats": losses.stats_loss(f)}


def free_single(eps, feats, ref_mean, ref_std):
    """The free mode's terms for a single candidate (no max-occupation term)."""
    f = losses.cross_normalise(feats, ref_mean, ref_std)
    return {"reality": losses.reality_loss(eps), "stats": losses.stats_loss(f)}


# --- the accessible mode's reference statistics --------------------------------------------------
def n_diffused(m: int, n: int, repeats: int = 5) -> int:
    """``N_Diff``: the smallest multiple of ``n`` that is ≥ ``repeats·m`` and ≥ ``repeats·n``
    (§4.1.3)."""
    return n * max(repeats, -(-repeats * m // n))


def target_stats(proj, diffused_targets, n, chunk=256):
    """Reference statistics of the accessible mode at one step (§4.1.3): the diffused targets are
    projected (``chunk`` at a time), pooled, and give the per-dimension mean and population std and,
    standardised by them, the ``n`` OT pivots. Returns ``(mean (J,), std (J,), pivots (n, J))``."""
    return pooled_stats(pooled(proj, diffused_targets, chunk), n)


def pooled(proj, x, chunk):
    """Pooled projector features ``(M, J)`` of ``x``, projected ``chunk`` at a time, without
    gradient."""
    with torch.no_grad():
        return torch.cat([losses.pool(proj(x[i : i + chunk])) for i in range(0, len(x), chunk)])


def pooled_stats(target, n):
    """Mean, population std and ``n`` OT pivots of pooled target features ``(M, J)``."""
    mean, std = losses.channel_stats(target)
    return mean, std, losses.ot_pivots(losses.cross_normalise(target, mean, std), n)


def class_pooled(projs, targets, chunk):
    """Pooled features of each class's targets; classes sharing one projector go through it
    together."""
    if all(p is projs[0] for p in projs):
        return pooled(projs[0], torch.cat(targets), chunk or sum(map(len, targets))).split(
            [len(t) for t in targets]
        )
    return [pooled(p, t, chunk or len(t)) for p, t in zip(projs, targets)]


# --- the projectors ------------------------------------------------------------------------------
def build_projector(spec, shape, seed, device):
    """Build the projector for one class from ``spec`` (None, preset name, kwargs dict or callable
    seed→module)."""
    if spec is None:
        return projector_mod.for_latents(shape, seed=seed, device=device)
    if isinstance(spec, str):
        return projector_mod.make(spec, seed=seed, device=device)
    if isinstance(spec, dict):
        return projector_mod.RandomProjector(seed=seed, device=device, **spec)
    if callable(spec) and not isinstance(spec, torch.nn.Module):
        return spec(seed).to(device)
    raise ValueError(
        "projector must be None, a preset name ('digits', 'paper'), a dict of "
        "RandomProjector arguments or a callable seed -> module"
    )


def projector_key(spec, shape) -> str:
    """The projector ``spec``'s part of a cache key (:func:`dsco.nopt.template_stats`)."""
    if spec is None:
        p = projector_mod.for_latents(shape)
        return json.dumps([p.in_channels, p.widths, p.groups])
    if isinstance(spec, (str, dict)):
        return json.dumps(spec, sort_keys=True, default=str)
    return getattr(spec, "__qualname__", repr(spec))


def channels_last(projector):
    """``projector`` as a callable ``(N, C, H, W) -> features`` that runs in the channels-last
    layout when its weights are on the CPU (a copy; the module is left as it is), else ``projector``
    itself.

    oneDNN's NHWC convolutions are faster on the small maps of NOpt (digits, 100 images, 2 threads:
    one forward and backward of the projector ≈10 ms against ≈12 ms; the 1-channel first layer's
    forward ≈4× faster). Same function; the float rounding differs (|Δfeature| ~ 1e-7).
    """
    weight = next(projector.parameters(), None)
    if weight is None or weight.device.type != "cpu":
        return projector
    fast = copy.deepcopy(projector).to(memory_format=torch.channels_last)
    return lambda x: fast(x.contiguous(memory_format=torch.channels_last))


def stack_projectors(projectors: list):
    """One callable ``(K, N, C, H, W) -> (K, N, J, K', L')`` running ``K`` classes' projectors at
    once.

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
    layer_sets = (
        list(zip(*[list(p.children()) for p in projectors]))
        if all(isinstance(p, torch.nn.Sequential) and len(p) == len(first) for p in projectors)
        else None
    )
    simple = layer_sets is not None and all(
        all(type(m) is type(ms[0]) for m in ms)
        and isinstance(ms[0], (torch.nn.Conv2d, torch.nn.LeakyReLU))
        for ms in layer_sets
    )
    if simple:
        layers = []
        for ms in layer_sets:
            m = ms[0]
            if isinstance(m, torch.nn.LeakyReLU):
                layers.append(m)
                continue
            conv = torch.nn.Conv2d(
                m.in_channels * k,
                m.out_channels * k,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                m.groups * k,
                bias=m.bias is not None,
                device=m.weight.device,
                dtype=m.weight.dtype,
            )
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
