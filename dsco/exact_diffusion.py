"""The random sampling bias with an exact score (§3.4, Eq. 12–15; notebook 12).

A diffusion "model" whose ε-prediction is exact: the target is a Gaussian mixture, and under
Eq. 12 (z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε) the noisy marginal is again a Gaussian mixture, with means
√ᾱ_t μ_k and variances ᾱ_t σ_k² + (1 − ᾱ_t). Its score is closed-form, so
ε̂ = −√(1−ᾱ_t) ∇log p_t and the DDPM step's (μ, σ) of Eq. 13 carry no model error: whatever bias
a small sampled set shows comes from the random noise alone (§3.4).

Entry point: :func:`sampling_bias`, §3.4's experiment: plain and NOpt sets of N points from a
:class:`GaussianMixtureDiffusion`, measured at every denoising step against the diffused target
(:func:`dsco.metrics.set_distance`). The backbone runs through :func:`dsco.backbones.sample` and
:func:`dsco.nopt.synthesize` unchanged; the mixture and its sampler are the 2-D toy target of
:mod:`dsco.theory`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import diffusion, nopt
from .metrics import set_distance
from .theory import GMM_MEANS, GMM_SCALES, GMM_WEIGHTS, check_mixture, sample_gaussian_mixture


def sampling_bias(
    backbone: GaussianMixtureDiffusion,
    set_sizes,
    seeds,
    real_latents,
    *,
    iterations: int,
    projector,
    n_reference: int = 2000,
    progress: bool = True,
) -> SamplingBias:
    """§3.4's experiment on an exact-score backbone: for every seed and set size N, a plain
    ("plain") and a NOpt ("NOpt", data-accessible, aligned to ``real_latents`` of class 0) set of
    N points, the set entering every denoising step measured against a fresh ``n_reference``
    sample of the diffused target p_t (:func:`dsco.metrics.set_distance`), and N i.i.d. points of
    p_t as the floor ("i.i.d. from p_t"). The backbone's own ``num_steps``; ``projector``: NOpt's
    projector spec."""
    levels = backbone.timesteps.tolist() + [-1]  # -1: the final clean set, against the target

    def draw(n, t, seed):  # i.i.d. points of p_t (t = -1: of the target mixture itself)
        m = backbone.model
        return (
            sample_gaussian_mixture(
                n,
                m.means.cpu().numpy(),
                m.scales.cpu().numpy(),
                m.log_weights.exp().cpu().numpy(),
                seed=seed,
            )[0]
            if t < 0
            else backbone.marginal_sample(n, t, seed=seed)
        )

    rows, logs, timings, finals = [], [], [], {}
    for s in tqdm(list(seeds), desc="seeds", disable=not progress):
        refs = [draw(n_reference, t, 20_000 + k) for k, t in enumerate(levels)]
        for n in set_sizes:
            for mode, label in (("none", "plain"), ("accessible", "NOpt")):
                t0, backbone.trace = time.perf_counter(), []
                z, _, log = nopt.synthesize(
                    backbone,
                    [0],
                    n,
                    mode,
                    seed=s,
                    num_steps=len(levels) - 1,
                    iterations=iterations,
                    real_latents=real_latents,
                    projector=projector,
                    progress=False,
                )
                sets = [x.numpy() for _, x in backbone.trace] + [z.reshape(n, -1).double().numpy()]
                backbone.trace = None
                timings.append(
                    {"seed": s, "N": n, "method": label, "seconds": time.perf_counter() - t0}
                )
                finals[(s, n, label)] = sets[-1]
                if len(log):
                    logs.append(log.assign(seed=s, N=n))
                rows += [
                    {
                        "seed": s,
                        "N": n,
                        "method": label,
                        "step": k,
                        "t": t,
                        "distance": set_distance(x, refs[k]),
                    }
                    for k, (t, x) in enumerate(zip(levels, sets))
                ]
            rows += [
                {
                    "seed": s,
                    "N": n,
                    "method": "i.i.d. from p_t",
                    "step": k,
                    "t": t,
                    "distance": set_distance(draw(n, t, 30_000 + 1000 * s + k), refs[k]),
                }
                for k, t in enumerate(levels)
            ]
    timing = pd.DataFrame(timings).groupby(["N", "method"])["seconds"].mean().unstack()
    return SamplingBias(
        pd.DataFrame(rows), timing, finals, pd.concat(logs) if logs else pd.DataFrame()
    )


@dataclass
class SamplingBias:
    """Result of :func:`sampling_bias`: ``distance`` (one row per seed, N, method and step: ``t``
    and the mean 1-D W1 ``distance`` to a fresh sample of p_t; step 0 is z_T, the last step the
    final set against the target), ``timing`` (seconds per set), ``finals`` (``{(seed, N,
    method): final (N, D) set}``) and ``logs`` (NOpt's per-step log)."""

    distance: pd.DataFrame
    timing: pd.DataFrame
    finals: dict
    logs: pd.DataFrame


class GaussianMixtureDiffusion(diffusion.Backbone):
    """An exact-score diffusion backbone for an isotropic Gaussian mixture in ``D`` dimensions.

    A point is a latent of shape ``(D, 1, 1)``, so :func:`dsco.backbones.sample` and
    :func:`dsco.nopt.synthesize` run on it unchanged. The step's μ and σ are those of every
    backbone (:meth:`dsco.diffusion.Backbone.mean_std`: diffusers' ``DDPMScheduler``, 1000 linear
    steps, ``linspace`` respacing, ``fixed_small`` variance); only the ε-prediction is replaced by
    the exact ``−√(1−ᾱ_t) ∇log p_t(z)`` of the noisy mixture. One class (``num_classes = 1``); the
    guidance scale is accepted and ignored. Computations run in float64, outputs are float32.

    Args:
        means: ``(K, D)`` component means (default: the 2-D mixture of :mod:`dsco.theory`,
            ``GMM_MEANS``); a 1-D target is ``means=[[-2.], [1.]]``.
        scales, weights: ``K`` standard deviations and mixture weights (normalised).
        num_steps: sampling steps (``set_steps`` respaces later).

    ``trace``: set it to a list and every :meth:`mean_std` call appends ``(t, z_t)`` (CPU float64
    ``(n, D)``) — the set entering each denoising step, for per-step distances.
    """

    def __init__(
        self, means=GMM_MEANS, scales=GMM_SCALES, weights=GMM_WEIGHTS, num_steps: int = 50
    ):
        means, scales, weights = check_mixture(means, scales, weights)
        sched = diffusion.make_scheduler("fixed_small")
        model = _GMMEpsilon(means, scales, weights, sched.alphas_cumprod)
        self.dim = means.shape[1]
        self.trace = None
        super().__init__(
            "gmm-exact",
            model,
            (self.dim, 1, 1),
            num_classes=1,
            variance_type="fixed_small",
            num_steps=num_steps,
        )

    @property
    def device(self) -> torch.device:
        return self.model.means.device

    def _points(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2 and z.shape[1] == self.dim:
            return z.double()
        if tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"points must be (n, {self.dim}) or latents (n, {self.dim}, 1, 1); "
                f"got {tuple(z.shape)}"
            )
        return z.reshape(len(z), self.dim).double()

    def _check_t(self, t) -> int:
        t = int(t)
        if not 0 <= t < diffusion.NUM_TRAIN_TIMESTEPS:
            raise ValueError(
                f"t={t}: use a training timestep in 0..{diffusion.NUM_TRAIN_TIMESTEPS - 1}"
            )
        return t

    def log_prob(self, z: torch.Tensor, t) -> torch.Tensor:
        """log p_t(z) of the noisy mixture at training step ``t`` (float64, one value per
        point)."""
        return self.model.log_prob(self._points(z), self._check_t(t))

    def score(self, z: torch.Tensor, t) -> torch.Tensor:
        """The exact score ∇_z log p_t(z), shape ``(n, D)`` float64."""
        return self.model.score(self._points(z), self._check_t(t))

    def marginal_sample(self, n: int, t, seed: int = 0) -> np.ndarray:
        """``n`` i.i.d. points ``(n, D)`` of the diffused target p_t (Eq. 12), drawn in closed
        form."""
        m, s = self.model.marginal(self._check_t(t))
        w = self.model.log_weights.exp()
        return sample_gaussian_mixture(
            n, m.cpu().numpy(), s.cpu().numpy(), w.cpu().numpy(), seed=seed
        )[0]

    def _forward(self, z, t, y):
        eps = self.model(self._points(z), int(t))
        return eps.to(z.dtype).reshape(z.shape)

    def guided_output(self, z_t, t, y, guidance):
        """One class: guidance has nothing to mix, the exact ε is returned as is."""
        return self._forward(z_t, t, y)

    def mean_std(self, z_t, t, y, guidance: float = 1.0, batch_size=None):
        """The shared DDPM step (Eq. 13) with the exact ε; records ``(t, z_t)`` when ``trace`` is
        a list."""
        if self.trace is not None:
            self.trace.append((int(t), self._points(z_t).detach().cpu()))
        return super().mean_std(z_t, t, y, guidance, batch_size=batch_size)


class _GMMEpsilon(torch.nn.Module):
    """The exact ε-prediction of a Gaussian mixture's noisy marginals (a parameter-free
    module)."""

    def __init__(self, means, scales, weights, alphas_cumprod):
        super().__init__()
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float64))
        self.register_buffer("scales", torch.as_tensor(scales, dtype=torch.float64))
        w = torch.as_tensor(weights, dtype=torch.float64)
        self.register_buffer("log_weights", (w / w.sum()).log())
        self.register_buffer("alphas_cumprod", alphas_cumprod.double().clone())

    def marginal(self, t: int):
        """Means ``(K, D)`` and standard deviations ``(K,)`` of the noisy marginal at training
        step ``t``."""
        a = self.alphas_cumprod[int(t)]
        return a.sqrt() * self.means, (a * self.scales**2 + 1 - a).sqrt()

    def _components(self, z: torch.Tensor, t: int):
        """Per-component log-densities ``(n, K)`` and residuals ``(n, K, D)`` at ``z``
        ``(n, D)``."""
        m, s = self.marginal(t)
        r = z[:, None, :] - m[None]
        d = z.shape[1]
        logp = (
            self.log_weights
            - d * (math.log(2 * math.pi) / 2 + s.log())
            - r.square().sum(-1) / (2 * s**2)
        )
        return logp, r, s

    def log_prob(self, z: torch.Tensor, t: int) -> torch.Tensor:
        logp, _, _ = self._components(z, t)
        return torch.logsumexp(logp, dim=1)

    def score(self, z: torch.Tensor, t: int) -> torch.Tensor:
        """∇_z log p_t(z) = Σ_k r_k(z) · (−(z − √ᾱ_t μ_k) / s_k²), r_k the responsibilities."""
        logp, r, s = self._components(z, t)
        resp = torch.softmax(logp, dim=1)
        return -(resp[..., None] * r / (s**2)[None, :, None]).sum(1)

    def forward(self, z: torch.Tensor, t: int) -> torch.Tensor:
        a = self.alphas_cumprod[int(t)]
        return -(1 - a).sqrt() * self.score(z, t)
