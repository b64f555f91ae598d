"""The paper's theory, made numerical (§3.1–3.2, §3.4, Appendix B).

Two small toys, readable top to bottom:

1. **Random sampling bias (§3.4, Appendix B, Table 13).** Draw ``N`` uniform labels out of ``N``
   equal regions (the paper's stand-in for ``N`` Gaussian noises on the sphere): how many regions
   get at least one draw? :func:`occupancy_monte_carlo` estimates it (the paper's experiment),
   :func:`expected_occupancy` and :func:`occupancy_std` give the exact mean and standard deviation,
   :func:`ideal_sampling_chance` the chance ``N!/N^N`` that every region gets exactly one draw.

2. **The memorize-generalize picture (§3.1–3.2, Fig. 1, Eq. 1–7, Prop. 1).** A shift-invariant
   Gaussian kernel ``k`` (Assumption 1), the RKHS distance of Eq. 2–3, the chance of recognition of
   Eq. 6, its expectation over a target set (Eq. 7, empirical), the kernel MMD, and a small
   optimiser (torch autograd) that moves ``M`` surrogate points to maximise the expected chance of
   recognition — the numerical check of Prop. 1.

Everything is CPU, float64 and deterministic for a given seed.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _check_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise one clear ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r}): pass a whole number")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value}): pass a larger {name}")
    return int(value)


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Part 1 — random sampling bias: occupancy of N equal regions by N uniform draws (App. B)
# ---------------------------------------------------------------------------------------------


def occupancy_counts(n: int, n_exp: int = 500, seed: int = 0) -> np.ndarray:
    """Number of occupied regions in each of ``n_exp`` Monte-Carlo experiments (Appendix B).

    One experiment draws ``n`` region indices uniformly from ``{0, ..., n-1}`` (the paper's
    ``torch.randint(n_smps, (n_exp, n_smps))``) and counts the regions hit at least once.
    Vectorised with one ``bincount`` per chunk of experiments; the chunk size depends on ``n`` only,
    so the result is a deterministic function of ``(n, n_exp, seed)``.

    Returns an int64 array of shape ``(n_exp,)``.
    """
    n = _check_int(n, "n")
    n_exp = _check_int(n_exp, "n_exp")
    seed = _check_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 22) // n)  # keep each chunk at ~4M draws
    counts = np.empty(n_exp, dtype=np.int64)
    for lo in range(0, n_exp, chunk):
        rows = min(chunk, n_exp - lo)
        draws = rng.integers(0, n, size=(rows, n))
        # offset each experiment's region ids so a single bincount counts all experiments
        flat = (draws + n * np.arange(rows)[:, None]).ravel()
        hits = np.bincount(flat, minlength=rows * n).reshape(rows, n)
        counts[lo:lo + rows] = (hits > 0).sum(axis=1)
    return counts


def occupancy_monte_carlo(n: int, n_exp: int = 500, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the number of occupied regions (Appendix B, Table 13).

    ``n`` uniform draws into ``n`` equal regions, repeated ``n_exp`` times (the paper uses
    ``n_exp = 500``). The standard deviation is the sample one (``ddof=1``), like ``torch.std``.
    Needs ``n_exp >= 2``.
    """
    n_exp = _check_int(n_exp, "n_exp", minimum=2)
    counts = occupancy_counts(n, n_exp, seed)
    return float(counts.mean()), float(counts.std(ddof=1))


def _empty_chance(n: int, k: int) -> float:
    """``(1 - k/n)^n``: the chance that ``k`` given regions all stay empty (stable via log1p)."""
    if k == n:
        return 0.0
    return math.exp(n * math.log1p(-k / n))


def expected_occupancy(n: int) -> float:
    """Exact expected number of occupied regions, ``N (1 - (1 - 1/N)^N)``.

    Each region stays empty with chance ``(1 - 1/N)^N``, which tends to ``1/e``: asymptotically a
    fraction ``1 - 1/e ≈ 0.632`` of the regions is occupied (Appendix B: "no less than 35% of the
    regions are unoccupied").
    """
    n = _check_int(n, "n")
    return n * (1.0 - _empty_chance(n, 1))


def occupancy_std(n: int) -> float:
    """Exact standard deviation of the number of occupied regions (the ``std`` row of Table 13).

    With ``q1 = (1-1/N)^N`` and ``q2 = (1-2/N)^N`` the number of empty regions has variance
    ``N q1 + N(N-1) q2 - N^2 q1^2``; the occupied count ``N - empty`` has the same variance. The
    difference ``q2 - q1^2`` is formed as ``q1^2 · expm1(...)`` to avoid cancellation at large N.
    """
    n = _check_int(n, "n")
    if n == 1:
        return 0.0
    q1 = _empty_chance(n, 1)
    if n == 2:
        q2_minus_q1sq = 0.0 - q1 * q1
    else:
        log_ratio = n * math.log1p(-2.0 / n) - 2.0 * n * math.log1p(-1.0 / n)
        q2_minus_q1sq = q1 * q1 * math.expm1(log_ratio)
    q2 = q1 * q1 + q2_minus_q1sq
    var = n * q1 - n * q2 + n * n * q2_minus_q1sq
    return math.sqrt(max(var, 0.0))


def occupancy_pmf(n: int) -> np.ndarray:
    """Exact distribution of the number of occupied regions: ``pmf[k] = P(k regions occupied)``.

    Built draw by draw: after one more draw, ``k`` occupied regions stay ``k`` with chance ``k/N``
    or grow from ``k-1`` with chance ``(N-k+1)/N``. Returns an array of length ``N + 1`` (index =
    number of occupied regions) that sums to 1; its mean and standard deviation are
    :func:`expected_occupancy` and :func:`occupancy_std`. O(N^2) time.
    """
    n = _check_int(n, "n")
    k = np.arange(n + 1, dtype=np.float64)
    pmf = np.zeros(n + 1)
    pmf[0] = 1.0  # before any draw, no region is occupied
    for _ in range(n):
        grown = np.zeros_like(pmf)
        grown[1:] = pmf[:-1] * (n - k[1:] + 1) / n
        pmf = pmf * k / n + grown
    return pmf


def log_ideal_sampling_chance(n: int) -> float:
    """Natural log of the ideal-sampling chance ``log(N!/N^N) = lgamma(N+1) - N log N``.

    Finite for every ``N`` (about ``-N`` for large ``N``, by Stirling); use it where
    :func:`ideal_sampling_chance` underflows.
    """
    n = _check_int(n, "n")
    return math.lgamma(n + 1) - n * math.log(n)


def ideal_sampling_chance(n: int) -> float:
    """Chance ``N!/N^N`` that ``N`` uniform draws hit each of ``N`` regions exactly once (App. B).

    Up to ``N = 1000`` this is the correctly rounded ratio of the exact integers (Python's ``int /
    int``); beyond, ``exp`` of the log-space value (``lgamma``). Either way the float result is
    ``0.0`` only where the true value is below the smallest double (~1e-308 with subnormals,
    from ``N = 750`` on). See :func:`log_ideal_sampling_chance` for the always-finite log.
    """
    n = _check_int(n, "n")
    if n <= 1000:
        return math.factorial(n) / n ** n
    return math.exp(log_ideal_sampling_chance(n))


# ---------------------------------------------------------------------------------------------
# Part 2 — the memorize-generalize picture in an RKHS (§3.1–3.2)
# ---------------------------------------------------------------------------------------------

#: Default 2-D target distribution: an unequal three-component Gaussian mixture, so that
#: "matches the density" (weights 0.6/0.3/0.1) and "covers the support" look different.
GMM_MEANS = ((-2.5, -1.0), (2.0, -1.5), (0.5, 2.5))
GMM_SCALES = (0.8, 0.5, 0.4)
GMM_WEIGHTS = (0.6, 0.3, 0.1)


def _check_mixture(means, scales, weights):
    """Isotropic mixture parameters as float64 arrays: means ``(K, d)``, scales and weights ``(K,)``."""
    means = np.asarray(means, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if means.ndim != 2 or scales.shape != (len(means),) or weights.shape != (len(means),):
        raise ValueError("means must be (K, d), scales and weights length K: "
                         f"got {means.shape}, {scales.shape}, {weights.shape}")
    if np.any(scales <= 0) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("scales must be > 0 and weights >= 0 with a positive sum")
    return means, scales, weights


def sample_gaussian_mixture(n: int, means=GMM_MEANS, scales=GMM_SCALES, weights=GMM_WEIGHTS,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` points from an isotropic Gaussian mixture (the toy target set ``T``).

    ``means`` is ``(K, d)``, ``scales`` the ``K`` standard deviations, ``weights`` the ``K`` mixture
    weights (normalised here). Returns ``(points (n, d) float64, component labels (n,) int64)``.
    """
    n = _check_int(n, "n")
    seed = _check_int(seed, "seed", minimum=0)
    means, scales, weights = _check_mixture(means, scales, weights)
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(means), size=n, p=weights / weights.sum())
    points = means[labels] + scales[labels, None] * rng.standard_normal((n, means.shape[1]))
    return points, labels.astype(np.int64)


def _as_points(x, name: str) -> torch.Tensor:
    """An ``(n, d)`` float64 tensor from array-like ``x``, or a clear ``ValueError``."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64)) if not torch.is_tensor(x) else x.double()
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array of points, shape (n, d) with n >= 1 "
                         f"(got shape {tuple(t.shape)}): reshape it, e.g. x.reshape(-1, d)")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def _same_dim(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"point dimensions differ: {a.shape[1]} vs {b.shape[1]}; "
                         "targets and surrogates must live in the same space")


def _log_kernel(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``log k(x, y) = -||x - y||^2 / (2 bandwidth^2)`` for all pairs, shape ``(len(x), len(y))``."""
    sq = (x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2.0 * x @ y.T).clamp_min(0.0)
    return -sq / (2.0 * bandwidth ** 2)


def gaussian_kernel(x, y, bandwidth: float = 1.0) -> np.ndarray:
    """Shift-invariant Gaussian kernel ``k(a, b) = exp(-||a - b||^2 / (2 σ^2))`` (Assumption 1).

    Positive-definite, symmetric, ``k(a, a) = 1``; by Moore–Aronszajn it is an RKHS inner product
    ``<f^a, f^b>`` (Eq. 1). Returns the ``(len(x), len(y))`` matrix.
    """
    bandwidth = _check_positive(bandwidth, "bandwidth")
    x, y = _as_points(x, "x"), _as_points(y, "y")
    _same_dim(x, y)
    return _log_kernel(x, y, bandwidth).exp().numpy()


def rkhs_sq_distance(x, y, bandwidth: float = 1.0) -> np.ndarray:
    """Squared feature distance ``||f^a - f^b||^2 = k(a,a) + k(b,b) - 2 k(a,b) = 2 - 2 k(a,b)``.

    Eq. 2, and Eq. 3 with ``Constant = 2`` for the shift-invariant Gaussian kernel: the feature
    dissimilarity falls monotonically as the kernel grows. Values lie in ``[0, 2]``.
    """
    return 2.0 - 2.0 * gaussian_kernel(x, y, bandwidth)


def recognition_radius(bandwidth: float = 1.0, threshold: float = 0.05) -> float:
    """Input-space radius ``r_rec`` beyond which the kernel (the chance of recognition) < threshold.

    The dashed circles of Fig. 1 / §3.5: ``k = threshold`` at ``||a - b|| = σ sqrt(-2 ln threshold)``
    (for 0.05: about ``2.45 σ``); in the RKHS this is the feature distance ``sqrt(2 - 2 threshold)``.
    """
    bandwidth = _check_positive(bandwidth, "bandwidth")
    if not (isinstance(threshold, numbers.Real) and 0 < threshold < 1):
        raise ValueError(f"threshold must lie strictly between 0 and 1 (got {threshold!r})")
    return bandwidth * math.sqrt(-2.0 * math.log(threshold))


#: The normalising functions ``h`` of Eq. 6 offered here (``u`` = the sum over M surrogates).
H_FUNCTIONS = {
    "linear": "h(u) = u / M  — linear, the case the paper solves (Eq. 10–11)",
    "saturating": "h(u) = 1 - exp(-u)  — saturating: a second surrogate near a target adds little",
    "log": "h(u) = log(u / M)  — beyond the paper: the log-likelihood of the target under the "
           "surrogates' kernel density; not in (0, 1)",
}


def _recognition_torch(targets: torch.Tensor, surrogates: torch.Tensor, bandwidth: float,
                       h: str) -> torch.Tensor:
    """Eq. 6 per target, differentiable: ``h(sum_s g(||f^τ - f^s||^2))`` with ``g = k``.

    For the Gaussian kernel ``g(d^2) = 1 - d^2/2 = k(x^τ, x^s)`` is monotonically decreasing in the
    squared RKHS distance ``d^2`` (Eq. 3), as Eq. 6 requires.
    """
    log_k = _log_kernel(targets, surrogates, bandwidth)  # (N_T, M)
    m = surrogates.shape[0]
    if h == "linear":
        return log_k.exp().sum(dim=1) / m
    if h == "saturating":
        return -torch.expm1(-log_k.exp().sum(dim=1))
    if h == "log":
        return torch.logsumexp(log_k, dim=1) - math.log(m)
    raise ValueError(f"unknown h {h!r}: use one of {', '.join(H_FUNCTIONS)}")


def recognition_chance(targets, surrogates, bandwidth: float = 1.0, h: str = "linear") -> np.ndarray:
    """Chance of recognising each target given the surrogate set, Eq. 6.

    ``p_rec(x^τ | S) = h( sum_s g(||f^τ - f^s||^2) )`` with ``g`` the Gaussian kernel (see
    :func:`rkhs_sq_distance`) and ``h`` one of :data:`H_FUNCTIONS` (``"linear"``, ``"saturating"``,
    ``"log"``). Returns an array of shape ``(len(targets),)``. Evaluated on a grid of points as
    ``targets`` it gives the shaded "fading pink" field of Fig. 1.
    """
    bandwidth = _check_positive(bandwidth, "bandwidth")
    if h not in H_FUNCTIONS:
        raise ValueError(f"unknown h {h!r}: use one of {', '.join(H_FUNCTIONS)}")
    t, s = _as_points(targets, "targets"), _as_points(surrogates, "surrogates")
    _same_dim(t, s)
    return _recognition_torch(t, s, bandwidth, h).numpy()


def expected_recognition_chance(targets, surrogates, bandwidth: float = 1.0,
                                h: str = "linear") -> float:
    """Expected chance of recognition over the target set, Eq. 7 with the empirical ``P_T``.

    The mean of :func:`recognition_chance` over the targets (the quantity dataset distillation
    maximises in the memorize-generalize picture, §3.2).
    """
    return float(recognition_chance(targets, surrogates, bandwidth, h).mean())


def _mmd2_torch(x: torch.Tensor, y: torch.Tensor, bandwidth: float,
                kyy_mean: torch.Tensor | None = None) -> torch.Tensor:
    kxx = _log_kernel(x, x, bandwidth).exp().mean()
    kxy = _log_kernel(x, y, bandwidth).exp().mean()
    kyy = _log_kernel(y, y, bandwidth).exp().mean() if kyy_mean is None else kyy_mean
    return kxx + kyy - 2.0 * kxy


def mmd2(x, y, bandwidth: float = 1.0) -> float:
    """Squared kernel MMD, ``||E[f^x] - E[f^y]||^2_H`` for the Gaussian kernel (§3.2, after Eq. 11).

    The biased (V-statistic) estimate ``mean k(x,x') + mean k(y,y') - 2 mean k(x,y)``: the exact
    squared RKHS distance between the two empirical mean embeddings, hence always ``>= 0`` and
    ``0`` for identical sets.
    """
    bandwidth = _check_positive(bandwidth, "bandwidth")
    x, y = _as_points(x, "x"), _as_points(y, "y")
    _same_dim(x, y)
    return float(_mmd2_torch(x, y, bandwidth).clamp_min(0.0))


@dataclass
class SurrogateFit:
    """Result of :func:`optimise_surrogates`.

    ``surrogates``: the final ``(M, d)`` points; ``history``: a DataFrame with one row per logged
    step (``step``, ``expected_recognition`` under the chosen ``h``, ``mmd2``); ``snapshots``:
    ``{step: (M, d) array}`` for the requested steps.
    """

    surrogates: np.ndarray
    history: pd.DataFrame
    snapshots: dict = field(default_factory=dict)


def optimise_surrogates(targets, init, bandwidth: float = 1.0, h: str = "linear",
                        objective: str = "recognition", steps: int = 300, lr: float = 0.05,
                        log_every: int = 1, snapshot_steps=()) -> SurrogateFit:
    """Move ``M`` surrogate points by gradient steps (Adam, torch autograd) — the check of Prop. 1.

    ``objective="recognition"`` maximises the expected chance of recognition (Eq. 7 with Eq. 6 and
    the chosen ``h``); ``objective="mmd"`` minimises the kernel MMD² directly (the distribution
    matching that Prop. 1 says the first objective is equivalent to). ``init`` is the ``(M, d)``
    starting set (it fixes M); the targets stay fixed. Both objectives are logged every
    ``log_every`` steps (and at the last step) in ``history``; ``snapshot_steps`` lists steps whose
    surrogate positions are kept (step 0 = before any update). Deterministic on CPU.

    Note: with ``h="linear"`` Eq. 7 is linear in the surrogate distribution and its gradient moves
    each surrogate uphill on the kernel-smoothed target density (mean-shift), so the surrogates
    collapse onto its modes rather than spreading like the targets
    (notebooks/11_rkhs_memorize_generalize_fig1.ipynb shows this against ``objective="mmd"``).
    """
    bandwidth = _check_positive(bandwidth, "bandwidth")
    lr = _check_positive(lr, "lr")
    steps = _check_int(steps, "steps", minimum=0)
    log_every = _check_int(log_every, "log_every")
    if h not in H_FUNCTIONS:
        raise ValueError(f"unknown h {h!r}: use one of {', '.join(H_FUNCTIONS)}")
    if objective not in ("recognition", "mmd"):
        raise ValueError(f"unknown objective {objective!r}: use 'recognition' or 'mmd'")
    t = _as_points(targets, "targets")
    s = _as_points(init, "init").clone().requires_grad_(True)
    _same_dim(t, s)
    snapshot_steps = {int(k) for k in snapshot_steps}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these 2-D toys are overhead-bound: extra threads only spin
    try:
        return _optimise(t, s, bandwidth, h, objective, steps, lr, log_every, snapshot_steps)
    finally:
        torch.set_num_threads(threads)


def _optimise(t, s, bandwidth, h, objective, steps, lr, log_every, snapshot_steps) -> SurrogateFit:
    with torch.no_grad():
        ktt = _log_kernel(t, t, bandwidth).exp().mean()
    opt = torch.optim.Adam([s], lr=lr)
    rows, snaps = [], {}

    def record(step: int) -> None:
        with torch.no_grad():
            rows.append(dict(step=step,
                             expected_recognition=float(_recognition_torch(t, s, bandwidth, h).mean()),
                             mmd2=float(_mmd2_torch(s, t, bandwidth, ktt).clamp_min(0.0))))
        if step in snapshot_steps:
            snaps[step] = s.detach().numpy().copy()

    for step in range(steps + 1):
        if step % log_every == 0 or step == steps or step in snapshot_steps:
            record(step)
        if step == steps:
            break
        opt.zero_grad()
        if objective == "recognition":
            loss = -_recognition_torch(t, s, bandwidth, h).mean()
        else:
            loss = _mmd2_torch(s, t, bandwidth, ktt)
        loss.backward()
        opt.step()
    return SurrogateFit(surrogates=s.detach().numpy().copy(), history=pd.DataFrame(rows),
                        snapshots=snaps)


# ---------------------------------------------------------------------------------------------
# Part 3 — the random sampling bias with an exact score (§3.4, Eq. 12–15)
# ---------------------------------------------------------------------------------------------
# A diffusion "model" whose ε-prediction is exact: the target is a Gaussian mixture, and under
# Eq. 12 (z_t = √ᾱ_t z_0 + √(1−ᾱ_t) ε) the noisy marginal is again a Gaussian mixture, with means
# √ᾱ_t μ_k and variances ᾱ_t σ_k² + (1 − ᾱ_t). Its score is closed-form, so ε̂ = −√(1−ᾱ_t) ∇log p_t
# and the DDPM step's (μ, σ) of Eq. 13 carry no model error: whatever bias a small sampled set shows
# comes from the random noise alone (§3.4).

from . import backbones as _backbones  # noqa: E402  (the shared DDPM step; no import cycle)


class _GMMEpsilon(torch.nn.Module):
    """The exact ε-prediction of a Gaussian mixture's noisy marginals (a parameter-free module)."""

    def __init__(self, means, scales, weights, alphas_cumprod):
        super().__init__()
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float64))
        self.register_buffer("scales", torch.as_tensor(scales, dtype=torch.float64))
        w = torch.as_tensor(weights, dtype=torch.float64)
        self.register_buffer("log_weights", (w / w.sum()).log())
        self.register_buffer("alphas_cumprod", alphas_cumprod.double().clone())

    def marginal(self, t: int):
        """Means ``(K, D)`` and standard deviations ``(K,)`` of the noisy marginal at training step ``t``."""
        a = self.alphas_cumprod[int(t)]
        return a.sqrt() * self.means, (a * self.scales ** 2 + 1 - a).sqrt()

    def _components(self, z: torch.Tensor, t: int):
        """Per-component log-densities ``(n, K)`` and residuals ``(n, K, D)`` at ``z`` ``(n, D)``."""
        m, s = self.marginal(t)
        r = z[:, None, :] - m[None]
        d = z.shape[1]
        logp = (self.log_weights - d * (math.log(2 * math.pi) / 2 + s.log())
                - r.square().sum(-1) / (2 * s ** 2))
        return logp, r, s

    def log_prob(self, z: torch.Tensor, t: int) -> torch.Tensor:
        logp, _, _ = self._components(z, t)
        return torch.logsumexp(logp, dim=1)

    def score(self, z: torch.Tensor, t: int) -> torch.Tensor:
        """∇_z log p_t(z) = Σ_k r_k(z) · (−(z − √ᾱ_t μ_k) / s_k²), r_k the responsibilities."""
        logp, r, s = self._components(z, t)
        resp = torch.softmax(logp, dim=1)
        return -(resp[..., None] * r / (s ** 2)[None, :, None]).sum(1)

    def forward(self, z: torch.Tensor, t: int) -> torch.Tensor:
        a = self.alphas_cumprod[int(t)]
        return -(1 - a).sqrt() * self.score(z, t)


class GaussianMixtureDiffusion(_backbones.Backbone):
    """An exact-score diffusion backbone for an isotropic Gaussian mixture in ``D`` dimensions.

    A point is a latent of shape ``(D, 1, 1)``, so :func:`dsco.backbones.sample` and
    :func:`dsco.nopt.synthesize` run on it unchanged. The step's μ and σ are those of every
    backbone (:meth:`dsco.backbones.Backbone.mean_std`: diffusers' ``DDPMScheduler``, 1000 linear
    steps, ``linspace`` respacing, ``fixed_small`` variance); only the ε-prediction is replaced by
    the exact ``−√(1−ᾱ_t) ∇log p_t(z)`` of the noisy mixture. One class (``num_classes = 1``); the
    guidance scale is accepted and ignored. Computations run in float64, outputs are float32.

    Args:
        means: ``(K, D)`` component means (default: the 2-D mixture of Part 2); a 1-D target is
            ``means=[[-2.], [1.]]``.
        scales, weights: ``K`` standard deviations and mixture weights (normalised).
        num_steps: sampling steps (``set_steps`` respaces later).

    ``trace``: set it to a list and every :meth:`mean_std` call appends ``(t, z_t)`` (CPU float64
    ``(n, D)``) — the set entering each denoising step, for per-step distances.
    """

    def __init__(self, means=GMM_MEANS, scales=GMM_SCALES, weights=GMM_WEIGHTS, num_steps: int = 50):
        means, scales, weights = _check_mixture(means, scales, weights)
        sched = _backbones.make_scheduler("fixed_small")
        model = _GMMEpsilon(means, scales, weights, sched.alphas_cumprod)
        self.dim = means.shape[1]
        self.trace = None
        super().__init__("gmm-exact", model, (self.dim, 1, 1), num_classes=1,
                         variance_type="fixed_small", num_steps=num_steps)

    @property
    def device(self) -> torch.device:
        return self.model.means.device

    def _points(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2 and z.shape[1] == self.dim:
            return z.double()
        if tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(f"points must be (n, {self.dim}) or latents (n, {self.dim}, 1, 1); got {tuple(z.shape)}")
        return z.reshape(len(z), self.dim).double()

    def _check_t(self, t) -> int:
        t = int(t)
        if not 0 <= t < _backbones.NUM_TRAIN_TIMESTEPS:
            raise ValueError(f"t={t}: use a training timestep in 0..{_backbones.NUM_TRAIN_TIMESTEPS - 1}")
        return t

    def log_prob(self, z: torch.Tensor, t) -> torch.Tensor:
        """log p_t(z) of the noisy mixture at training step ``t`` (float64, one value per point)."""
        return self.model.log_prob(self._points(z), self._check_t(t))

    def score(self, z: torch.Tensor, t) -> torch.Tensor:
        """The exact score ∇_z log p_t(z), shape ``(n, D)`` float64."""
        return self.model.score(self._points(z), self._check_t(t))

    def marginal_sample(self, n: int, t, seed: int = 0) -> np.ndarray:
        """``n`` i.i.d. points ``(n, D)`` of the diffused target p_t (Eq. 12), drawn in closed form."""
        m, s = self.model.marginal(self._check_t(t))
        w = self.model.log_weights.exp()
        return sample_gaussian_mixture(n, m.cpu().numpy(), s.cpu().numpy(), w.cpu().numpy(), seed=seed)[0]

    def _forward(self, z, t, y):
        eps = self.model(self._points(z), int(t))
        return eps.to(z.dtype).reshape(z.shape)

    def guided_output(self, z_t, t, y, guidance):
        """One class: guidance has nothing to mix, the exact ε is returned as is."""
        return self._forward(z_t, t, y)

    def mean_std(self, z_t, t, y, guidance: float = 1.0, batch_size=None):
        """The shared DDPM step (Eq. 13) with the exact ε; records ``(t, z_t)`` when ``trace`` is a list."""
        if self.trace is not None:
            self.trace.append((int(t), self._points(z_t).detach().cpu()))
        return super().mean_std(z_t, t, y, guidance, batch_size=batch_size)


@dataclass
class SamplingBias:
    """Result of :func:`sampling_bias`: ``distance`` (one row per seed, N, method and step: ``t`` and the
    mean 1-D W1 ``distance`` to a fresh sample of p_t; step 0 is z_T, the last step the final set against
    the target), ``timing`` (seconds per set), ``finals`` (``{(seed, N, method): final (N, D) set}``)
    and ``logs`` (NOpt's per-step log)."""

    distance: pd.DataFrame
    timing: pd.DataFrame
    finals: dict
    logs: pd.DataFrame


def sampling_bias(backbone: "GaussianMixtureDiffusion", set_sizes, seeds, real_latents, *, iterations: int,
                  projector, n_reference: int = 2000, progress: bool = True) -> SamplingBias:
    """§3.4's experiment on an exact-score backbone: for every seed and set size N, a plain ("plain")
    and a NOpt ("NOpt", data-accessible, aligned to ``real_latents`` of class 0) set of N points, the set
    entering every denoising step measured against a fresh ``n_reference`` sample of the diffused target
    p_t (:func:`set_distance`), and N i.i.d. points of p_t as the floor ("i.i.d. from p_t"). The
    backbone's own ``num_steps``; ``projector``: NOpt's projector spec."""
    import time

    from tqdm.auto import tqdm

    from . import nopt

    levels = backbone.timesteps.tolist() + [-1]   # -1: the final clean set, compared with the target

    def draw(n, t, seed):   # i.i.d. points of p_t (t = -1: of the target mixture itself)
        m = backbone.model
        return (sample_gaussian_mixture(n, m.means.cpu().numpy(), m.scales.cpu().numpy(),
                                        m.log_weights.exp().cpu().numpy(), seed=seed)[0] if t < 0
                else backbone.marginal_sample(n, t, seed=seed))

    rows, logs, timings, finals = [], [], [], {}
    for s in tqdm(list(seeds), desc="seeds", disable=not progress):
        refs = [draw(n_reference, t, 20_000 + k) for k, t in enumerate(levels)]
        for n in set_sizes:
            for mode, label in (("none", "plain"), ("accessible", "NOpt")):
                t0, backbone.trace = time.perf_counter(), []
                z, _, log = nopt.synthesize(backbone, [0], n, mode, seed=s, num_steps=len(levels) - 1,
                                            iterations=iterations, real_latents=real_latents, projector=projector,
                                            progress=False)
                sets = [x.numpy() for _, x in backbone.trace] + [z.reshape(n, -1).double().numpy()]
                backbone.trace = None
                timings.append({"seed": s, "N": n, "method": label, "seconds": time.perf_counter() - t0})
                finals[(s, n, label)] = sets[-1]
                if len(log):
                    logs.append(log.assign(seed=s, N=n))
                rows += [{"seed": s, "N": n, "method": label, "step": k, "t": t, "distance": set_distance(x, refs[k])}
                         for k, (t, x) in enumerate(zip(levels, sets))]
            rows += [{"seed": s, "N": n, "method": "i.i.d. from p_t", "step": k, "t": t,
                      "distance": set_distance(draw(n, t, 30_000 + 1000 * s + k), refs[k])}
                     for k, t in enumerate(levels)]
    timing = pd.DataFrame(timings).groupby(["N", "method"])["seconds"].mean().unstack()
    return SamplingBias(pd.DataFrame(rows), timing, finals, pd.concat(logs) if logs else pd.DataFrame())


def set_distance(x, y, metric: str = "wasserstein", bandwidth: float = 1.0) -> float:
    """Distance between two point sets ``(n, d)``, ``(m, d)``: the 1-D Wasserstein-1 distance
    (``scipy.stats.wasserstein_distance``) averaged over the ``d`` coordinates, or ``"mmd"``: the
    squared kernel MMD of :func:`mmd2`."""
    x, y = _as_points(x, "x"), _as_points(y, "y")
    _same_dim(x, y)
    if metric == "mmd":
        return mmd2(x, y, bandwidth)
    if metric != "wasserstein":
        raise ValueError(f"unknown metric {metric!r}: use 'wasserstein' or 'mmd'")
    from scipy.stats import wasserstein_distance

    return float(np.mean([wasserstein_distance(x[:, j].numpy(), y[:, j].numpy()) for j in range(x.shape[1])]))


# ---------------------------------------------------------------------------------------------
# Part 4 — coverage of a real class by a synthetic set (Fig. 6's "improved coverage", measured)
# ---------------------------------------------------------------------------------------------
# Fig. 6 argues by eye that NOpt's samples are "scattered in multiple dense areas" of the real
# class while vanilla samples crowd the densest one. A number for that: the fraction of real
# samples that have a synthetic sample within a fixed radius (a fixed-radius variant of the
# "coverage" of Naeem et al., 2020, which uses each real sample's own k-NN radius instead).


def _flat_points(x, name: str) -> torch.Tensor:
    """``(n, ...)`` tensors or arrays flattened to ``(n, d)`` float64 points (checked)."""
    t = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.ndim < 2:
        raise ValueError(f"{name} must hold samples along its first axis, shape (n, ...) with at least "
                         f"2 dimensions (got shape {tuple(t.shape)}): add the batch axis, e.g. x[None]")
    return _as_points(t.detach().cpu().reshape(t.shape[0], -1), name)


def coverage_radius(real, quantile: float = 0.5) -> float:
    """The default radius for :func:`coverage`: a quantile (default the median) of the real samples'
    nearest-neighbour distances within the class.

    Each real sample's Euclidean distance (on flattened tensors) to its nearest *other* real sample;
    the ``quantile`` of these ``n`` distances. With the median, half of the real samples have a real
    neighbour within the radius, so the radius is "the typical spacing of the class": a synthetic
    sample within it is as close to a real sample as real samples are to each other. Needs ≥ 2
    real samples.
    """
    x = _flat_points(real, "real")
    if len(x) < 2:
        raise ValueError(f"coverage_radius needs at least 2 real samples (got {len(x)}): "
                         "pass the whole real class")
    if isinstance(quantile, bool) or not isinstance(quantile, numbers.Real) or not 0 <= quantile <= 1:
        raise ValueError(f"quantile must be a number in [0, 1] (got {quantile!r}): 0.5 is the median")
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # exact, not via x·y
    d.fill_diagonal_(float("inf"))
    return float(torch.quantile(d.min(dim=1).values, float(quantile)))


def coverage(real, synthetic, radius: float) -> float:
    """Fraction of real samples whose nearest synthetic sample lies within ``radius`` (inclusive).

    Euclidean distance on flattened tensors: ``real`` ``(n, ...)`` and ``synthetic`` ``(m, ...)``
    must have the same per-sample size. In ``[0, 1]``; 1 means every real sample has a synthetic
    sample within ``radius``. A set concentrated in one dense region scores low even when each of
    its samples is realistic (Fig. 6). Choose ``radius`` with :func:`coverage_radius`.
    """
    radius = _check_positive(radius, "radius")
    x, s = _flat_points(real, "real"), _flat_points(synthetic, "synthetic")
    if x.shape[1] != s.shape[1]:
        raise ValueError(f"real and synthetic samples differ in size: {x.shape[1]} vs {s.shape[1]} values "
                         "per sample; compare latents with latents (or images with images)")
    nearest = torch.cdist(x, s, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    return float((nearest <= radius).double().mean())


# ---------------------------------------------------------------------------------------------
# Part 5 — far-apart samples (§3.5): recognition within r_rec, and a target that has them
# ---------------------------------------------------------------------------------------------
# §3.5: a surrogate "recognises" a target whose feature lies within the recognition threshold
# r_rec of it (the dashed rings of Fig. 1; :func:`recognition_radius`). A *far-apart* target
# sample is one whose nearest other target sample lies farther than 2·r_rec: one surrogate can
# then recognise at most one such sample, so once only far-apart samples are left, each extra
# synthetic sample adds at most one recognised target (ΔN/ΔM ≤ 1, the Dope Trigger of Eq. 30).


def recognised(targets, surrogates, radius: float) -> np.ndarray:
    """Boolean mask ``(len(targets),)``: True where some surrogate lies within ``radius``
    (inclusive, Euclidean) of the target -- the target is recognised by memorising it (§3.5).

    ``N_M = recognised(T, S_M, r_rec).sum()`` is the count of Eq. 30 in the toy.
    """
    radius = _check_positive(radius, "radius")
    t, s = _as_points(targets, "targets"), _as_points(surrogates, "surrogates")
    _same_dim(t, s)
    d = torch.cdist(t, s, compute_mode="donot_use_mm_for_euclid_dist")
    return (d.min(dim=1).values <= radius).numpy()


def far_apart_mask(points, radius: float) -> np.ndarray:
    """Boolean mask ``(n,)``: True for the *far-apart* samples of §3.5, whose nearest other
    sample lies farther than ``2 · radius`` (``radius`` = the recognition threshold r_rec).

    A ball of radius ``radius`` around any surrogate can hold at most one such sample. A single
    point is far apart by definition (it has no neighbour).
    """
    radius = _check_positive(radius, "radius")
    x = _as_points(points, "points")
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    d.fill_diagonal_(float("inf"))
    return (d.min(dim=1).values > 2 * radius).numpy()


def sample_far_apart_target(n_core: int, n_far: int, radius: float, *, means=((0.0, 0.0),),
                            scales=(1.0,), weights=(1.0,), box: float = 12.0, seed: int = 0,
                            max_tries: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D (or d-D) toy target for §3.5: a dense core plus scattered far-apart points.

    The core is ``n_core`` draws of :func:`sample_gaussian_mixture` (``means``, ``scales``,
    ``weights``). Then ``n_far`` points are drawn uniformly in the cube ``[-box, box]^d`` and kept
    only if they lie farther than ``2 · radius`` from every point kept so far (core and scattered),
    so each of them is far apart in the sense of :func:`far_apart_mask`. Returns
    ``(points (n_core + n_far, d), scattered (n_core + n_far,) bool)``; deterministic for a seed.
    Raises a ``ValueError`` naming the fix if the box is too crowded to place them.
    """
    n_core = _check_int(n_core, "n_core")
    n_far = _check_int(n_far, "n_far", minimum=0)
    radius = _check_positive(radius, "radius")
    box = _check_positive(box, "box")
    seed = _check_int(seed, "seed", minimum=0)
    core, _ = sample_gaussian_mixture(n_core, means, scales, weights, seed=seed)
    rng = np.random.default_rng([seed, 1])
    kept = [p for p in core]
    far, tries = [], 0
    while len(far) < n_far:
        if tries >= max_tries:
            raise ValueError(f"placed only {len(far)} of {n_far} far-apart points after {max_tries} tries: "
                             "use a larger box, a smaller radius or fewer far points")
        tries += 1
        p = rng.uniform(-box, box, size=core.shape[1])
        if np.min(np.linalg.norm(np.asarray(kept) - p, axis=1)) > 2 * radius:
            kept.append(p)
            far.append(p)
    points = np.concatenate([core, np.asarray(far).reshape(n_far, core.shape[1])])
    scattered = np.r_[np.zeros(n_core, bool), np.ones(n_far, bool)]
    return points, scattered


class Reference:
    """Per-class reference sets for comparing a synthetic set with the real data (notebook 21's
    distribution table): for every class its samples (flattened), the kernel bandwidth of
    :func:`mmd2` set by the median heuristic (median pairwise distance) and the :func:`coverage_radius`.

    ``Reference({class: tensor})``; :meth:`measure` gives the MMD² and the coverage of a set of one class.
    """

    def __init__(self, per_class: dict):
        self.points = {int(c): torch.as_tensor(x).reshape(len(x), -1).double() for c, x in per_class.items()}
        self.bandwidth = {c: float(torch.pdist(x).median()) for c, x in self.points.items()}
        self.radius = {c: coverage_radius(x) for c, x in self.points.items()}

    def measure(self, x, c: int) -> dict:
        """``{"mmd2", "coverage"}`` of the samples ``x`` against class ``c``."""
        flat = torch.as_tensor(x).reshape(len(x), -1).double()
        return {"mmd2": mmd2(self.points[c], flat, self.bandwidth[c]),
                "coverage": coverage(self.points[c], flat, self.radius[c])}


# --- the single-configuration scaling law (beyond the paper; notebook 52) -----------------------------
def scaling_law(k, a: float, b: float, alpha: float = 0.5):
    """``err(k) = a / k^alpha + b``: the related work's bound on the test error after training on ``k``
    distilled samples per class (``alpha = 1/2``; Luo & Xu 2025, ``shared/paper/related/``)."""
    return a * np.power(np.asarray(k, float), -alpha) + b


def fit_scaling_law(k, err) -> dict:
    """Least-squares fit of :func:`scaling_law` (``scipy.optimize.curve_fit``) to errors ``err`` at IPCs ``k``:
    ``a, a_se, b, b_se, r2`` for α = 1/2, ``alpha_free`` (α fitted too, with 4 or more points; NaN if the
    fit does not converge), ``k1 = a²`` (the IPC where the estimation term is one error point) and ``points``."""
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    k, e = np.asarray(k, float), np.asarray(err, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        (a, b), cov = curve_fit(lambda x, a_, b_: scaling_law(x, a_, b_), k, e, p0=(max(e[0] - e[-1], 1.0), e[-1]))
        sa, sb = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else (np.nan, np.nan)
        alpha = np.nan
        if len(k) >= 4:
            try:
                alpha = curve_fit(lambda x, a_, al, b_: scaling_law(x, a_, b_, al), k, e, p0=(a, 0.5, b),
                                  bounds=([-np.inf, 0.0, -np.inf], [np.inf, 3.0, np.inf]), maxfev=20000)[0][1]
            except RuntimeError:
                pass
    ss_tot = float(((e - e.mean()) ** 2).sum())
    r2 = 1 - float(((e - scaling_law(k, a, b)) ** 2).sum()) / ss_tot if ss_tot > 0 else np.nan
    return dict(a=a, a_se=sa, b=b, b_se=sb, r2=r2, alpha_free=alpha, k1=a ** 2, points=len(k))


def kernel_density(grid, points, bandwidth: float = 1.0) -> np.ndarray:
    """The Gaussian kernel density ``mean_s k(x, x^s) / (2π σ²)`` of 2-D ``points`` at every row of
    ``grid`` (the mean embedding evaluated at ``x``; MMD is the distance between two such functions)."""
    return gaussian_kernel(grid, points, bandwidth).mean(1) / (2 * math.pi * bandwidth ** 2)


def distinct_positions(points, tol: float) -> int:
    """How many distinct positions ``points`` occupy: groups closer than ``tol`` to each other
    (single linkage, ``scipy.sparse.csgraph.connected_components``) count once."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    p = np.asarray(points, float)
    dist = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    return int(connected_components(csr_matrix(dist < tol), directed=False)[0])


def describe_set(points, targets, bandwidth: float = 1.0, means=GMM_MEANS) -> dict:
    """One row of the Prop. 1 summary for a 2-D surrogate set ``points`` against ``targets``: its kernel
    MMD², expected recognition chance (Eq. 7, linear and saturating ``h``), the share of targets within
    the recognition radius of a surrogate (%), the distinct positions (closer than 0.1 σ count once),
    the mean nearest-neighbour distance between surrogates, and the share of surrogates nearest to each
    mixture component of ``means`` (``share_c0``, ...)."""
    p = np.asarray(points, float)
    dist = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    nearest = np.argmin(((p[:, None] - np.asarray(means)[None]) ** 2).sum(-1), axis=1)
    shares = np.bincount(nearest, minlength=len(means)) / len(p)
    return dict(mmd2=mmd2(p, targets, bandwidth),
                recognition_linear=expected_recognition_chance(targets, p, bandwidth, "linear"),
                recognition_saturating=expected_recognition_chance(targets, p, bandwidth, "saturating"),
                covered_pct=100 * recognised(targets, p, recognition_radius(bandwidth)).mean(),
                distinct_positions=distinct_positions(p, 0.1 * bandwidth),
                mean_nn_distance=float(dist.min(1).mean()),
                **{f"share_c{i}": s for i, s in enumerate(shares)})


def smoothed_draws(target, m: int, bandwidth: float, seed) -> np.ndarray:
    """``m`` draws of a kernel-smoothed target (a stand-in for a well-trained generator, §4.2): a target
    point chosen uniformly plus Gaussian noise of std ``bandwidth``; ``seed`` seeds
    ``numpy.random.default_rng`` (an int or a sequence)."""
    target = np.asarray(target, float)
    rng = np.random.default_rng(seed)
    return target[rng.integers(0, len(target), m)] + bandwidth * rng.standard_normal((m, target.shape[1]))


def dope_farthest(target, base, budget: int) -> np.ndarray:
    """``base`` plus the ``budget`` target points farthest from every point of ``base`` (the far-apart
    samples that Doping adds, by distance instead of a student's confusion)."""
    target, base = np.asarray(target, float), np.asarray(base, float)
    d = np.linalg.norm(target[:, None] - base[None], axis=-1).min(1)
    order = np.argsort(-d, kind="stable")   # farthest first
    return np.concatenate([base, target[order[:budget]]])
