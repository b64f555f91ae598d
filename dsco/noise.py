"""NOpt's noise: how the noises are drawn, and how they are optimised (paper §4.1, §5.1.3).

Drawn (the noise contract of :mod:`dsco.nopt`): the candidates' noise comes from
:func:`dsco.backbones.class_generator`; the diffused targets and the templates have their own CPU
generators (:func:`aux_generator`), so switching NOpt on or off never shifts the candidates' noise.
:func:`lhs_normal` is the official code's midpoint Latin-hypercube normal noise
(``latin_hypercube=True``).

Optimised: at every denoising step, SGD with momentum on the ``N`` noises of a class, starting from
the drawn ones -- :func:`optimise` for one class (the reference engine), :func:`optimise_batched`
for the noises of all classes at once (the batched engine; SGD is elementwise, so it takes the same
per-class steps). Both record the objective's raw terms at the drawn and at the optimised noise
(:func:`values`, :func:`per_class_values`) and, with ``early_stop`` (off by default, not the paper's
method), stop a class whose objective stalled (:func:`stalled`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Early stopping looks this many iterations back (``early_stop`` of :func:`dsco.nopt.synthesize`).
EARLY_STOP_WINDOW = 10

#: The auxiliary random streams of a class (:func:`aux_generator`), besides the candidates' own.
STREAMS = {"targets": 1, "templates": 2}


# --- drawn ----------------------------------------------------------------------------------------
def aux_generator(seed: int, c: int, stream: str) -> torch.Generator:
    """A CPU generator for the diffused targets (``"targets"``) or the templates (``"templates"``)
    of class ``c``.

    Independent of :func:`dsco.backbones.class_generator` (the candidates' stream) and of each
    other.
    """
    state = np.random.SeedSequence([int(seed), int(c), STREAMS[stream], 0xD5C0]).generate_state(
        1, np.uint64
    )[0]
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


# --- optimised ------------------------------------------------------------------------------------
def optimise(eps0, terms_fn, weights, iterations, lr, momentum, early_stop=None):
    """SGD on the noises of one class; returns the optimised ε, the term values at start and end,
    and the number of SGD steps taken (``< iterations`` only with early stopping)."""
    eps = eps0.clone().requires_grad_(True)
    opt = torch.optim.SGD([eps], lr=lr, momentum=momentum)
    first, totals, steps = None, [], 0
    with torch.enable_grad():
        for _ in range(iterations):
            terms = terms_fn(eps)
            if first is None:
                first = values(terms, weights)
            active = [weights[k] * v for k, v in terms.items() if weights[k]]
            if not active:  # every term switched off: nothing to optimise
                break
            if early_stop is not None:
                totals.append(float(sum(active).detach()))
                if stalled(totals, early_stop):
                    break
            opt.zero_grad(set_to_none=True)
            sum(active).backward()
            opt.step()
            steps += 1
    eps = eps.detach()
    with torch.no_grad():
        last = values(terms_fn(eps), weights)
    return eps, (first or last), last, steps


def optimise_batched(eps0, objective, args, iterations, lr, momentum, early_stop=None):
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
                newly = torch.tensor(
                    [
                        not stopped[c] and stalled([row[c] for row in totals], early_stop)
                        for c in range(k)
                    ]
                )
                if newly.any():
                    held = (
                        eps.detach().clone()
                        if held is None
                        else torch.where(
                            newly.to(eps.device).view(-1, *[1] * (eps.dim() - 1)),
                            eps.detach(),
                            held,
                        )
                    )
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


def stalled(totals: list, tol: float | None) -> bool:
    """Early stopping (off with ``tol=None``): the objective fell by less than ``tol`` (relative)
    over the last :data:`EARLY_STOP_WINDOW` iterations."""
    if tol is None or len(totals) <= EARLY_STOP_WINDOW:
        return False
    before, now = totals[-1 - EARLY_STOP_WINDOW], totals[-1]
    return before - now <= tol * abs(before)


def values(terms: dict, weights: dict) -> dict:
    """Raw term values as floats, plus the weighted objective ``total``."""
    out = {k: float(v.detach()) for k, v in terms.items()}
    out["total"] = sum(weights[k] * out[k] for k in terms if weights[k])
    return out


def per_class_values(terms: dict, weights: dict, c: int) -> dict:
    """Class ``c``'s raw term values from :func:`optimise_batched`'s per-class terms
    ``{term: (K,)}``, as floats, plus its weighted objective ``total`` (what :func:`values` gives
    for one class)."""
    out = {name: float(v[c]) for name, v in terms.items()}
    out["total"] = sum(weights[name] * out[name] for name in terms if weights[name])
    return out
