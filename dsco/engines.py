"""NOpt's two engines: the loops that :func:`dsco.nopt.synthesize` runs (``engine=``; issue 7).

:func:`run_reference` is the loop of the paper's code: class by class, step by step, one projector
call per class and SGD iteration. :func:`run_batched` (the default) computes the same thing with
all classes of a run at once: one backbone forward per step over every class's candidates, and one
projector call per SGD iteration (one shared projector: the classes are concatenated; per-class
projectors: one grouped convolution over classes, :func:`dsco.objective.stack_projectors`). Each
class's loss terms are the same equations, mapped over classes with :func:`torch.vmap`, and the
per-class objectives are summed: the classes are independent, so the gradient with respect to
class ``k``'s noise is that of class ``k``'s own objective, and SGD (elementwise) takes the same
steps. The accessible mode's diffused targets of all classes also go through the projector together
(per chunk of ``batch_size``). The noise contract of :mod:`dsco.nopt` is kept (every class keeps its
own CPU generators, drawn in the same order). On the CPU both engines run the projector in the
channels-last layout (:func:`dsco.objective.channels_last`), so what the batched engine gains over
the reference is the batching.

The two engines agree up to float rounding, not bit for bit: the batched engine runs the projector
(forward and backward) on all classes' candidates as one batch and maps the loss terms with vmap --
other batch shapes than the reference's, which a CPU or GPU kernel may round differently in the
last bits. With ``batch_size = ipc`` (the backbone forwarded one class at a time) and one shared
projector that is the only difference, and on the development CPU the engines then happened to
agree bit for bit (also on digits at 10 classes × IPC 10, 50 steps, 20 iterations); another CPU's
kernels need not. With the default ``batch_size`` the backbone also sees all classes in one batch,
which rounds differently in the last float bits (|Δμ| ≈ 1e-5), and 49 steps of noise optimisation
amplify that: at those settings the latents differ by 0.012 on average and up to 0.83 for single
pixels (mean |z| ≈ 0.8) — a sensitivity of NOpt itself, not of the batching (a per-class
projector, as one grouped convolution, adds rounding of the same kind; tests/test_nopt.py bounds
the engines' difference by a tolerance derived from the same run in float64, tests/rounding.py).
With nothing to optimise (``mode="none"`` or every term off) ``synthesize`` runs the reference
loop, which is :func:`dsco.backbones.sample`'s.

Both engines take the run's context ``ctx``, a dict that ``synthesize`` fills: ``backbone``,
``classes``, ``ipc``, ``mode``, ``seed``, ``shape`` (the latent shape), ``device``, ``timesteps``,
``guidance``, ``weights`` (each term's weight, 0 when off), ``iterations``, ``lr``, ``momentum``,
``projs`` (class -> projector), ``z0s`` (class -> its real latents, repeated to ``N_Diff``),
``refs`` (class -> template statistics), the official-code switches ``targets_one_step_noisier``
and ``latin_hypercube``, ``batch_size``, ``progress``, ``backbone_dtype``, ``early_stop`` and
``compile``. Each returns ``(latents on the CPU, log rows)``, the rows class-major.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from . import backbones, noise, objective
from .diffusion import backbone_step


def run_reference(ctx):
    """The reference engine: class by class, step by step (the loop of the paper's code)."""
    fast_projs = dict(zip(ctx["classes"], _layout_projectors(ctx)))
    total = len(ctx["classes"]) * len(ctx["timesteps"])
    desc = f"NOpt[{ctx['mode']}]"
    with tqdm(total=total, desc=desc, disable=not ctx["progress"]) as bar:  # closed before an error
        return _reference_loop(ctx, bar, fast_projs, [], [])


def run_batched(ctx):
    """The batched engine: every step runs all classes through the backbone at once and optimises
    all their noises with one projector call per SGD iteration (module docstring)."""
    mode, ipc, device, timesteps = (ctx[k] for k in ("mode", "ipc", "device", "timesteps"))
    classes, k, n_steps = ctx["classes"], len(ctx["classes"]), len(timesteps)
    weights = ctx["weights"]
    gens = [backbones.class_generator(ctx["seed"], c) for c in classes]
    g_tgts = [noise.aux_generator(ctx["seed"], c, "targets") for c in classes]
    z = torch.cat([_first_noise(ctx, g) for g in gens]).to(device)
    y = torch.tensor(classes, dtype=torch.long, device=device).repeat_interleave(ipc)
    project = objective.stack_projectors([ctx["projs"][c] for c in classes])
    # for the diffused targets
    fast_projs = _layout_projectors(ctx) if mode == "accessible" else None
    terms_fn = (
        objective.accessible_class_terms if mode == "accessible" else objective.free_class_terms
    )
    # the max-occupation term needs a neighbour: left out, logged NaN
    if mode == "free" and ipc < 2:
        terms_fn = objective.free_single
        weights = {n: w for n, w in weights.items() if n != "maxoc"}
    step_objective = objective.batched_objective(project, terms_fn, weights)
    # True: inductor's default mode; a string: that mode, e.g. "reduce-overhead" (CUDA graphs)
    if ctx["compile"]:
        mode_ = None if ctx["compile"] is True else str(ctx["compile"])
        step_objective = torch.compile(step_objective, dynamic=False, mode=mode_)
    rows = []
    with tqdm(total=n_steps, desc=f"NOpt[{mode}, {k} classes]", disable=not ctx["progress"]) as bar:
        z = _batched_loop(
            ctx, bar, z, y, gens, g_tgts, project, fast_projs, step_objective, weights, rows
        )
    # class-major, as the reference
    rows = [r for _, r in sorted(rows, key=lambda jr: (jr[0], jr[1]["step"]))]
    return z.detach().cpu(), rows


class NOptDiverged(FloatingPointError):
    """The noise optimisation produced a non-finite noise or latent; ``cls`` and ``step`` say where,
    the message names the likely fix."""

    def __init__(self, cls: int, step: int, t: int, what: str, lr: float):
        self.cls, self.step, self.t, self.what, self.lr = int(cls), int(step), int(t), what, lr
        super().__init__(
            f"class {cls}: non-finite {what} at denoising step {step} (t={t}): the noise "
            f"optimisation diverged; lower lr (now {lr:g}) or lambda_align / lambda_maxoc / "
            "lambda_stats"
        )


def _reference_loop(ctx, bar, fast_projs, rows, out):
    bb, mode, ipc, shape, device, timesteps = (
        ctx[k] for k in ("backbone", "mode", "ipc", "shape", "device", "timesteps")
    )
    n_steps = len(timesteps)
    for c in ctx["classes"]:
        g = backbones.class_generator(ctx["seed"], c)
        z = _first_noise(ctx, g).to(device)
        g_tgt = noise.aux_generator(ctx["seed"], c, "targets")
        for i, t in enumerate(timesteps):
            mu, sigma = backbone_step(
                bb, z, t, c, ctx["guidance"], ctx["batch_size"], ctx["backbone_dtype"]
            )
            if i == n_steps - 1:  # sigma = 0: nothing to optimise
                z = mu
                bar.update(1)
                break
            eps = torch.randn((ipc, *shape), generator=g).to(device)
            if mode != "none":
                # level k: the latent fed to step k
                level = i if ctx["targets_one_step_noisier"] else i + 1
                t_ref = int(timesteps[level])
                proj = fast_projs[c]
                if mode == "accessible":
                    terms_fn = objective.accessible_terms(
                        proj,
                        mu,
                        sigma,
                        _diffused_targets(ctx, c, g_tgt, t_ref),
                        ipc,
                        chunk=ctx["batch_size"] or len(ctx["z0s"][c]),
                    )
                else:
                    ref_mean, ref_std = ctx["refs"][c]
                    terms_fn = objective.free_terms(
                        proj, mu, sigma, ref_mean[level].to(device), ref_std[level].to(device)
                    )
                eps, first, last, steps = noise.optimise(
                    eps,
                    terms_fn,
                    ctx["weights"],
                    ctx["iterations"],
                    ctx["lr"],
                    ctx["momentum"],
                    ctx["early_stop"],
                )
                _guard(eps[None], [c], i, t, "noise", ctx["lr"])
                rows.append(_row(c, i, t, t_ref, sigma, first, last, steps))
                bar.set_postfix(cls=c, loss=f"{last['total']:.3g}")
            z = mu + sigma * eps
            _guard(z[None], [c], i, t, "latent", ctx["lr"])
            bar.update(1)
        out.append(z.detach().cpu())
    return torch.cat(out), rows


def _batched_loop(ctx, bar, z, y, gens, g_tgts, project, fast_projs, step_objective, weights, rows):
    """The steps of :func:`run_batched`; returns the final latents and appends the log rows."""
    bb, mode, ipc, shape, device, timesteps = (
        ctx[k] for k in ("backbone", "mode", "ipc", "shape", "device", "timesteps")
    )
    classes, k, n_steps = ctx["classes"], len(ctx["classes"]), len(timesteps)
    for i, t in enumerate(timesteps):
        mu, sigma = backbone_step(
            bb, z, t, y, ctx["guidance"], ctx["batch_size"], ctx["backbone_dtype"]
        )
        if i == n_steps - 1:
            z = mu
            bar.update(1)
            break
        eps = torch.cat([torch.randn((ipc, *shape), generator=g) for g in gens]).to(device)
        level = i if ctx["targets_one_step_noisier"] else i + 1
        t_ref = int(timesteps[level])
        if mode == "accessible":  # every class's diffused targets in one projector pass per chunk
            targets = [_diffused_targets(ctx, c, g_tgts[j], t_ref) for j, c in enumerate(classes)]
            stats = [
                objective.pooled_stats(f, ipc)
                for f in objective.class_pooled(fast_projs, targets, ctx["batch_size"])
            ]
        else:
            stats = [(ctx["refs"][c][0][level], ctx["refs"][c][1][level]) for c in classes]
        stats = [torch.stack(s).to(device) for s in zip(*stats)]
        mu_k, sigma_k = mu.unflatten(0, (k, ipc)), sigma.unflatten(0, (k, ipc))
        eps_k, first, last, steps = noise.optimise_batched(
            eps.unflatten(0, (k, ipc)),
            step_objective,
            (mu_k, sigma_k, *stats),
            ctx["iterations"],
            ctx["lr"],
            ctx["momentum"],
            ctx["early_stop"],
        )
        _guard(eps_k, classes, i, t, "noise", ctx["lr"])
        for j, c in enumerate(classes):
            f = noise.per_class_values(first, weights, j)
            l_ = noise.per_class_values(last, weights, j)
            if mode == "free" and ipc < 2:  # the reference's column order, max-occupation NaN
                f, l_ = (
                    {
                        "reality": v["reality"],
                        "maxoc": float("nan"),
                        "stats": v["stats"],
                        "total": v["total"],
                    }
                    for v in (f, l_)
                )
            rows.append((j, _row(c, i, t, t_ref, sigma_k[j], f, l_, steps[j])))
        z = mu + sigma * eps_k.flatten(0, 1)
        _guard(z.unflatten(0, (k, ipc)), classes, i, t, "latent", ctx["lr"])
        bar.update(1)
    return z


def _guard(x: torch.Tensor, classes, step: int, t, what: str, lr: float) -> None:
    """Raise :class:`NOptDiverged` for the first class whose block of ``x`` (``(K, ...)``) is not
    finite."""
    ok = torch.isfinite(x.flatten(1)).all(1)
    if not bool(ok.all()):
        raise NOptDiverged(classes[int((~ok).nonzero()[0])], step, int(t), what, lr)


def _first_noise(ctx, g):
    shape = (ctx["ipc"], *ctx["shape"])
    return noise.lhs_normal(shape, g) if ctx["latin_hypercube"] else torch.randn(shape, generator=g)


def _diffused_targets(ctx, c, g_tgt, t_ref):
    """Class ``c``'s real latents diffused to ``t_ref`` with the next draw of its target stream."""
    z0 = ctx["z0s"][c]
    draw = (
        noise.lhs_normal
        if ctx["latin_hypercube"]
        else (lambda s, gen: torch.randn(s, generator=gen))
    )
    return ctx["backbone"].q_sample(z0, t_ref, draw(tuple(z0.shape), g_tgt).to(ctx["device"]))


def _row(c, i, t, t_ref, sigma, first, last, steps):
    return {
        "class": c,
        "step": i,
        "t": int(t),
        "t_ref": t_ref,
        "sigma": float(sigma.mean()),
        "iterations": int(steps),
        **{f"{k}_first": v for k, v in first.items()},
        **{f"{k}_last": v for k, v in last.items()},
    }


def _layout_projectors(ctx):
    """Each class's projector as :func:`dsco.objective.channels_last` makes it (one copy per
    distinct projector)."""
    if not ctx["projs"]:
        return [None] * len(ctx["classes"])
    fast = {id(p): objective.channels_last(p) for p in ctx["projs"].values()}
    return [fast[id(ctx["projs"][c])] for c in ctx["classes"]]
