"""The paper's theory, made numerical (§3.1–3.2, §3.5).

Two small toys, readable top to bottom:

1. **The memorize-generalize picture (§3.1–3.2, Fig. 1, Eq. 1–7, Prop. 1).** A shift-invariant
   Gaussian kernel ``k`` (Assumption 1), the RKHS distance of Eq. 2–3, the chance of recognition
   of Eq. 6, its expectation over a target set (Eq. 7, empirical), the kernel MMD
   (:func:`dsco.metrics.mmd2`), and a small optimiser (torch autograd) that moves ``M``
   surrogate points to maximise the expected chance of recognition — the numerical check of
   Prop. 1.

2. **Far-apart samples (§3.5).** Recognition within the radius r_rec, a target with far-apart
   samples, and the toy's synthesis and doping.

The kernel, the MMD and the point checks are the building blocks of :mod:`dsco.metrics` (which
imports nothing from here); the random sampling bias of Appendix B (Table 13: how many of ``N``
regions ``N`` uniform draws occupy) is :mod:`dsco.occupancy`; §3.4's exact-score diffusion toy is
:mod:`dsco.exact_diffusion`. Everything is CPU, float64 and deterministic for a given seed.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .metrics import as_points, check_positive, log_kernel, mmd2, mmd2_torch, same_dim
from .occupancy import check_int

# ---------------------------------------------------------------------------------------------
# Part 1 — the memorize-generalize picture in an RKHS (§3.1–3.2)
# ---------------------------------------------------------------------------------------------

#: Default 2-D target distribution: an unequal three-component Gaussian mixture, so that
#: "matches the density" (weights 0.6/0.3/0.1) and "covers the support" look different.
GMM_MEANS = ((-2.5, -1.0), (2.0, -1.5), (0.5, 2.5))
GMM_SCALES = (0.8, 0.5, 0.4)
GMM_WEIGHTS = (0.6, 0.3, 0.1)


def check_mixture(means, scales, weights):
    """Isotropic mixture parameters as float64 arrays: means ``(K, d)``, scales and weights
    ``(K,)``; a clear ``ValueError`` for bad ones."""
    means = np.asarray(means, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if means.ndim != 2 or scales.shape != (len(means),) or weights.shape != (len(means),):
        raise ValueError(
            "means must be (K, d), scales and weights length K: "
            f"got {means.shape}, {scales.shape}, {weights.shape}"
        )
    if np.any(scales <= 0) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError("scales must be > 0 and weights >= 0 with a positive sum")
    return means, scales, weights


def sample_gaussian_mixture(
    n: int, means=GMM_MEANS, scales=GMM_SCALES, weights=GMM_WEIGHTS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` points from an isotropic Gaussian mixture (the toy target set ``T``).

    ``means`` is ``(K, d)``, ``scales`` the ``K`` standard deviations, ``weights`` the ``K`` mixture
    weights (normalised here). Returns ``(points (n, d) float64, component labels (n,) int64)``.
    """
    n = check_int(n, "n")
    seed = check_int(seed, "seed", minimum=0)
    means, scales, weights = check_mixture(means, scales, weights)
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(means), size=n, p=weights / weights.sum())
    points = means[labels] + scales[labels, None] * rng.standard_normal((n, means.shape[1]))
    return points, labels.astype(np.int64)


def gaussian_kernel(x, y, bandwidth: float = 1.0) -> np.ndarray:
    """Shift-invariant Gaussian kernel ``k(a, b) = exp(-||a - b||^2 / (2 σ^2))`` (Assumption 1).

    Positive-definite, symmetric, ``k(a, a) = 1``; by Moore–Aronszajn it is an RKHS inner product
    ``<f^a, f^b>`` (Eq. 1). Returns the ``(len(x), len(y))`` matrix.
    """
    bandwidth = check_positive(bandwidth, "bandwidth")
    x, y = as_points(x, "x"), as_points(y, "y")
    same_dim(x, y)
    return log_kernel(x, y, bandwidth).exp().numpy()


def rkhs_sq_distance(x, y, bandwidth: float = 1.0) -> np.ndarray:
    """Squared feature distance ``||f^a - f^b||^2 = k(a,a) + k(b,b) - 2 k(a,b) = 2 - 2 k(a,b)``.

    Eq. 2, and Eq. 3 with ``Constant = 2`` for the shift-invariant Gaussian kernel: the feature
    dissimilarity falls monotonically as the kernel grows. Values lie in ``[0, 2]``.
    """
    return 2.0 - 2.0 * gaussian_kernel(x, y, bandwidth)


def recognition_radius(bandwidth: float = 1.0, threshold: float = 0.05) -> float:
    """Input-space radius ``r_rec`` beyond which the kernel (the chance of recognition) < threshold.

    The dashed circles of Fig. 1 / §3.5: ``k = threshold`` at
    ``||a - b|| = σ sqrt(-2 ln threshold)`` (for 0.05: about ``2.45 σ``); in the RKHS this is the
    feature distance ``sqrt(2 - 2 threshold)``.
    """
    bandwidth = check_positive(bandwidth, "bandwidth")
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


def _recognition_torch(
    targets: torch.Tensor, surrogates: torch.Tensor, bandwidth: float, h: str
) -> torch.Tensor:
    """Eq. 6 per target, differentiable: ``h(sum_s g(||f^τ - f^s||^2))`` with ``g = k``.

    For the Gaussian kernel ``g(d^2) = 1 - d^2/2 = k(x^τ, x^s)`` is monotonically decreasing in the
    squared RKHS distance ``d^2`` (Eq. 3), as Eq. 6 requires.
    """
    log_k = log_kernel(targets, surrogates, bandwidth)  # (N_T, M)
    m = surrogates.shape[0]
    if h == "linear":
        return log_k.exp().sum(dim=1) / m
    if h == "saturating":
        return -torch.expm1(-log_k.exp().sum(dim=1))
    if h == "log":
        return torch.logsumexp(log_k, dim=1) - math.log(m)
    raise ValueError(f"unknown h {h!r}: use one of {', '.join(H_FUNCTIONS)}")


def recognition_chance(
    targets, surrogates, bandwidth: float = 1.0, h: str = "linear"
) -> np.ndarray:
    """Chance of recognising each target given the surrogate set, Eq. 6.

    ``p_rec(x^τ | S) = h( sum_s g(||f^τ - f^s||^2) )`` with ``g`` the Gaussian kernel (see
    :func:`rkhs_sq_distance`) and ``h`` one of :data:`H_FUNCTIONS` (``"linear"``, ``"saturating"``,
    ``"log"``). Returns an array of shape ``(len(targets),)``. Evaluated on a grid of points as
    ``targets`` it gives the shaded "fading pink" field of Fig. 1.
    """
    bandwidth = check_positive(bandwidth, "bandwidth")
    if h not in H_FUNCTIONS:
        raise ValueError(f"unknown h {h!r}: use one of {', '.join(H_FUNCTIONS)}")
    t, s = as_points(targets, "targets"), as_points(surrogates, "surrogates")
    same_dim(t, s)
    return _recognition_torch(t, s, bandwidth, h).numpy()


def expected_recognition_chance(
    targets, surrogates, bandwidth: float = 1.0, h: str = "linear"
) -> float:
    """Expected chance of recognition over the target set, Eq. 7 with the empirical ``P_T``.

    The mean of :func:`recognition_chance` over the targets (the quantity dataset distillation
    maximises in the memorize-generalize picture, §3.2).
    """
    return float(recognition_chance(targets, surrogates, bandwidth, h).mean())


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


def optimise_surrogates(
    targets,
    init,
    bandwidth: float = 1.0,
    h: str = "linear",
    objective: str = "recognition",
    steps: int = 300,
    lr: float = 0.05,
    log_every: int = 1,
    snapshot_steps=(),
) -> SurrogateFit:
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
    bandwidth = check_positive(bandwidth, "bandwidth")
    lr = check_positive(lr, "lr")
    steps = check_int(steps, "steps", minimum=0)
    log_every = check_int(log_every, "log_every")
    if h not in H_FUNCTIONS:
        raise ValueError(f"unknown h {h!r}: use one of {', '.join(H_FUNCTIONS)}")
    if objective not in ("recognition", "mmd"):
        raise ValueError(f"unknown objective {objective!r}: use 'recognition' or 'mmd'")
    t = as_points(targets, "targets")
    s = as_points(init, "init").clone().requires_grad_(True)
    same_dim(t, s)
    snapshot_steps = {int(k) for k in snapshot_steps}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these 2-D toys are overhead-bound: extra threads only spin
    try:
        return _optimise(t, s, bandwidth, h, objective, steps, lr, log_every, snapshot_steps)
    finally:
        torch.set_num_threads(threads)


def _optimise(t, s, bandwidth, h, objective, steps, lr, log_every, snapshot_steps) -> SurrogateFit:
    with torch.no_grad():
        ktt = log_kernel(t, t, bandwidth).exp().mean()
    opt = torch.optim.Adam([s], lr=lr)
    rows, snaps = [], {}

    def record(step: int) -> None:
        with torch.no_grad():
            rows.append(
                dict(
                    step=step,
                    expected_recognition=float(_recognition_torch(t, s, bandwidth, h).mean()),
                    mmd2=float(mmd2_torch(s, t, bandwidth, ktt).clamp_min(0.0)),
                )
            )
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
            loss = mmd2_torch(s, t, bandwidth, ktt)
        loss.backward()
        opt.step()
    return SurrogateFit(
        surrogates=s.detach().numpy().copy(), history=pd.DataFrame(rows), snapshots=snaps
    )


def kernel_density(grid, points, bandwidth: float = 1.0) -> np.ndarray:
    """The Gaussian kernel density ``mean_s k(x, x^s) / (2π σ²)`` of 2-D ``points`` at every row
    of ``grid`` (the mean embedding evaluated at ``x``; MMD is the distance between two such
    functions)."""
    return gaussian_kernel(grid, points, bandwidth).mean(1) / (2 * math.pi * bandwidth**2)


def distinct_positions(points, tol: float) -> int:
    """How many distinct positions ``points`` occupy: groups closer than ``tol`` to each other
    (single linkage, ``scipy.sparse.csgraph.connected_components``) count once."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    p = np.asarray(points, float)
    dist = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    return int(connected_components(csr_matrix(dist < tol), directed=False)[0])


def describe_set(points, targets, bandwidth: float = 1.0, means=GMM_MEANS) -> dict:
    """One row of the Prop. 1 summary for a 2-D surrogate set ``points`` against ``targets``: its
    kernel MMD², expected recognition chance (Eq. 7, linear and saturating ``h``), the share of
    targets within the recognition radius of a surrogate (%), the distinct positions (closer than
    0.1 σ count once), the mean nearest-neighbour distance between surrogates, and the share of
    surrogates nearest to each mixture component of ``means`` (``share_c0``, ...)."""
    p = np.asarray(points, float)
    dist = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    nearest = np.argmin(((p[:, None] - np.asarray(means)[None]) ** 2).sum(-1), axis=1)
    shares = np.bincount(nearest, minlength=len(means)) / len(p)
    return dict(
        mmd2=mmd2(p, targets, bandwidth),
        recognition_linear=expected_recognition_chance(targets, p, bandwidth, "linear"),
        recognition_saturating=expected_recognition_chance(targets, p, bandwidth, "saturating"),
        covered_pct=100 * recognised(targets, p, recognition_radius(bandwidth)).mean(),
        distinct_positions=distinct_positions(p, 0.1 * bandwidth),
        mean_nn_distance=float(dist.min(1).mean()),
        **{f"share_c{i}": s for i, s in enumerate(shares)},
    )


def prop1_draw(n_targets: int, n_surrogates: int, n_subsets: int, seed: int = 0):
    """One draw of the Prop. 1 toy (notebook 11): ``(targets, init, subsets)`` -- ``n_targets``
    points of the mixture (:func:`sample_gaussian_mixture` with ``seed``), a start of
    ``n_surrogates`` points uniform over the targets' bounding box and ``n_subsets`` random
    ``n_surrogates``-subsets of the targets (the yardstick of a distribution-matched set), both
    from ``numpy.random.default_rng(seed)``. Deterministic for a seed."""
    targets = sample_gaussian_mixture(n_targets, seed=seed)[0]
    rng = np.random.default_rng(seed)
    init = rng.uniform(targets.min(0), targets.max(0), size=(n_surrogates, targets.shape[1]))
    subsets = [
        targets[rng.choice(n_targets, n_surrogates, replace=False)]
        for _ in range(check_int(n_subsets, "n_subsets"))
    ]
    return targets, init, subsets


def prop1_sweep(
    n_targets: int,
    n_surrogates: int,
    bandwidths,
    fits: dict,
    *,
    seeds,
    steps: int,
    lr: float = 0.05,
    n_subsets: int = 10,
) -> pd.DataFrame:
    """The Prop. 1 comparison over replicates (notebook 11): for every seed of ``seeds`` (one
    replicate: its own :func:`prop1_draw`) and every bandwidth, the final MMD² of every optimiser
    of ``fits`` (``{name: optimise_surrogates kwargs}``, e.g. ``{"linear h": dict(h="linear",
    objective="recognition")}``) run ``steps`` steps from the draw's start, beside the start's and
    the random subsets' mean MMD². One row per seed and bandwidth: ``replicate`` (the index of the
    seed), ``seed``, ``bandwidth``, ``start``, ``random_subset``, one column per fit and
    ``<name>: distinct`` (:func:`distinct_positions` within 0.1 σ)."""
    rows = []
    for r, seed in enumerate(seeds):
        targets, init, subsets = prop1_draw(n_targets, n_surrogates, n_subsets, seed)
        for bw in bandwidths:
            row = dict(
                replicate=r,
                seed=seed,
                bandwidth=bw,
                start=mmd2(init, targets, bw),
                random_subset=float(np.mean([mmd2(s, targets, bw) for s in subsets])),
            )
            for name, kw in fits.items():
                fit = optimise_surrogates(
                    targets, init, bandwidth=bw, steps=steps, lr=lr, log_every=max(steps, 1), **kw
                )
                row[name] = float(fit.history.mmd2.iloc[-1])
                row[f"{name}: distinct"] = distinct_positions(fit.surrogates, 0.1 * bw)
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Part 2 — far-apart samples (§3.5): recognition within r_rec, and a target that has them
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
    radius = check_positive(radius, "radius")
    t, s = as_points(targets, "targets"), as_points(surrogates, "surrogates")
    same_dim(t, s)
    d = torch.cdist(t, s, compute_mode="donot_use_mm_for_euclid_dist")
    return (d.min(dim=1).values <= radius).numpy()


def far_apart_mask(points, radius: float) -> np.ndarray:
    """Boolean mask ``(n,)``: True for the *far-apart* samples of §3.5, whose nearest other
    sample lies farther than ``2 · radius`` (``radius`` = the recognition threshold r_rec).

    A ball of radius ``radius`` around any surrogate can hold at most one such sample. A single
    point is far apart by definition (it has no neighbour).
    """
    radius = check_positive(radius, "radius")
    x = as_points(points, "points")
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    d.fill_diagonal_(float("inf"))
    return (d.min(dim=1).values > 2 * radius).numpy()


def sample_far_apart_target(
    n_core: int,
    n_far: int,
    radius: float,
    *,
    means=((0.0, 0.0),),
    scales=(1.0,),
    weights=(1.0,),
    box: float = 12.0,
    seed: int = 0,
    max_tries: int = 100_000,
) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D (or d-D) toy target for §3.5: a dense core plus scattered far-apart points.

    The core is ``n_core`` draws of :func:`sample_gaussian_mixture` (``means``, ``scales``,
    ``weights``). Then ``n_far`` points are drawn uniformly in the cube ``[-box, box]^d`` and kept
    only if they lie farther than ``2 · radius`` from every point kept so far (core and scattered),
    so each of them is far apart in the sense of :func:`far_apart_mask`. Returns
    ``(points (n_core + n_far, d), scattered (n_core + n_far,) bool)``; deterministic for a seed.
    Raises a ``ValueError`` naming the fix if the box is too crowded to place them.
    """
    n_core = check_int(n_core, "n_core")
    n_far = check_int(n_far, "n_far", minimum=0)
    radius = check_positive(radius, "radius")
    box = check_positive(box, "box")
    seed = check_int(seed, "seed", minimum=0)
    core, _ = sample_gaussian_mixture(n_core, means, scales, weights, seed=seed)
    rng = np.random.default_rng([seed, 1])
    kept = [p for p in core]
    far, tries = [], 0
    while len(far) < n_far:
        if tries >= max_tries:
            raise ValueError(
                f"placed only {len(far)} of {n_far} far-apart points after "
                f"{max_tries} tries: use a larger box, a smaller radius or fewer "
                "far points"
            )
        tries += 1
        p = rng.uniform(-box, box, size=core.shape[1])
        if np.min(np.linalg.norm(np.asarray(kept) - p, axis=1)) > 2 * radius:
            kept.append(p)
            far.append(p)
    points = np.concatenate([core, np.asarray(far).reshape(n_far, core.shape[1])])
    scattered = np.r_[np.zeros(n_core, bool), np.ones(n_far, bool)]
    return points, scattered


def smoothed_draws(target, m: int, bandwidth: float, seed) -> np.ndarray:
    """``m`` draws of a kernel-smoothed target (a stand-in for a well-trained generator, §4.2): a
    target point chosen uniformly plus Gaussian noise of std ``bandwidth``; ``seed`` seeds
    ``numpy.random.default_rng`` (an int or a sequence)."""
    target = np.asarray(target, float)
    rng = np.random.default_rng(seed)
    return target[rng.integers(0, len(target), m)] + bandwidth * rng.standard_normal(
        (m, target.shape[1])
    )


def dope_farthest(target, base, budget: int) -> np.ndarray:
    """``base`` plus the ``budget`` target points farthest from every point of ``base`` (the
    far-apart samples that Doping adds, by distance instead of a student's confusion)."""
    target, base = np.asarray(target, float), np.asarray(base, float)
    d = np.linalg.norm(target[:, None] - base[None], axis=-1).min(1)
    order = np.argsort(-d, kind="stable")  # farthest first
    return np.concatenate([base, target[order[:budget]]])
