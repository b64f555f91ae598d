"""Metrics: how close a set of samples is to another, e.g. a synthetic class to the real one.

Entry point: :class:`Reference` holds, per class of the real data, the flattened samples, the
kernel bandwidth of :func:`mmd2` (median heuristic) and the :func:`coverage_radius`;
``Reference({class: tensor}).measure(x, c)`` gives the MMD² and the coverage of samples ``x`` of
class ``c`` (notebook 21's distribution table, :mod:`dsco.discrepancy`). The measures:

* :func:`mmd2` -- the biased squared kernel MMD for the Gaussian kernel (§3.2, after Eq. 11);
* :func:`set_distance` -- the 1-D Wasserstein-1 distance averaged over the coordinates, or MMD²;
* :func:`coverage` with :func:`coverage_radius` -- the share of real samples that have a
  synthetic sample within the class's typical nearest-neighbour spacing (Fig. 6's "improved
  coverage", measured).

At the bottom, the building blocks that :mod:`dsco.theory`'s toys share with these measures: the
point checks (:func:`as_points`, :func:`same_dim`, :func:`check_positive`), the log Gaussian
kernel (:func:`log_kernel`) and the differentiable MMD² (:func:`mmd2_torch`). This module imports
nothing from the package; :mod:`dsco.theory` imports from it. Everything is float64 and
deterministic.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch


class Reference:
    """Per-class reference sets for comparing a synthetic set with the real data (notebook 21's
    distribution table): for every class its samples (flattened), the kernel bandwidth of
    :func:`mmd2` set by the median heuristic (median pairwise distance) and the
    :func:`coverage_radius`.

    ``Reference({class: tensor})``; :meth:`measure` gives the MMD² and the coverage of a set of
    one class.
    """

    def __init__(self, per_class: dict):
        self.points = {
            int(c): torch.as_tensor(x).reshape(len(x), -1).double() for c, x in per_class.items()
        }
        self.bandwidth = {c: float(torch.pdist(x).median()) for c, x in self.points.items()}
        self.radius = {c: coverage_radius(x) for c, x in self.points.items()}

    def measure(self, x, c: int) -> dict:
        """``{"mmd2", "coverage"}`` of the samples ``x`` against class ``c``."""
        flat = torch.as_tensor(x).reshape(len(x), -1).double()
        return {
            "mmd2": mmd2(self.points[c], flat, self.bandwidth[c]),
            "coverage": coverage(self.points[c], flat, self.radius[c]),
        }


def mmd2(x, y, bandwidth: float = 1.0) -> float:
    """Squared kernel MMD, ``||E[f^x] - E[f^y]||^2_H`` for the Gaussian kernel (§3.2, after
    Eq. 11).

    The biased (V-statistic) estimate ``mean k(x,x') + mean k(y,y') - 2 mean k(x,y)``: the exact
    squared RKHS distance between the two empirical mean embeddings, hence always ``>= 0`` and
    ``0`` for identical sets.
    """
    bandwidth = check_positive(bandwidth, "bandwidth")
    x, y = as_points(x, "x"), as_points(y, "y")
    same_dim(x, y)
    return float(mmd2_torch(x, y, bandwidth).clamp_min(0.0))


def set_distance(x, y, metric: str = "wasserstein", bandwidth: float = 1.0) -> float:
    """Distance between two point sets ``(n, d)``, ``(m, d)``: the 1-D Wasserstein-1 distance
    (``scipy.stats.wasserstein_distance``) averaged over the ``d`` coordinates, or ``"mmd"``: the
    squared kernel MMD of :func:`mmd2`."""
    x, y = as_points(x, "x"), as_points(y, "y")
    same_dim(x, y)
    if metric == "mmd":
        return mmd2(x, y, bandwidth)
    if metric != "wasserstein":
        raise ValueError(f"unknown metric {metric!r}: use 'wasserstein' or 'mmd'")
    from scipy.stats import wasserstein_distance

    return float(
        np.mean([wasserstein_distance(x[:, j].numpy(), y[:, j].numpy()) for j in range(x.shape[1])])
    )


# ---------------------------------------------------------------------------------------------
# Coverage of a real class by a synthetic set (Fig. 6's "improved coverage", measured)
# ---------------------------------------------------------------------------------------------
# Fig. 6 argues by eye that NOpt's samples are "scattered in multiple dense areas" of the real
# class while vanilla samples crowd the densest one. A number for that: the fraction of real
# samples that have a synthetic sample within a fixed radius (a fixed-radius variant of the
# "coverage" of Naeem et al., 2020, which uses each real sample's own k-NN radius instead).


def coverage_radius(real, quantile: float = 0.5) -> float:
    """The default radius for :func:`coverage`: a quantile (default the median) of the real
    samples' nearest-neighbour distances within the class.

    Each real sample's Euclidean distance (on flattened tensors) to its nearest *other* real
    sample; the ``quantile`` of these ``n`` distances. With the median, half of the real samples
    have a real neighbour within the radius, so the radius is "the typical spacing of the class":
    a synthetic sample within it is as close to a real sample as real samples are to each other.
    Needs ≥ 2 real samples.
    """
    x = _flat_points(real, "real")
    if len(x) < 2:
        raise ValueError(
            f"coverage_radius needs at least 2 real samples (got {len(x)}): "
            "pass the whole real class"
        )
    if (
        isinstance(quantile, bool)
        or not isinstance(quantile, numbers.Real)
        or not 0 <= quantile <= 1
    ):
        raise ValueError(
            f"quantile must be a number in [0, 1] (got {quantile!r}): 0.5 is the median"
        )
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # exact, not via x·y
    d.fill_diagonal_(float("inf"))
    return float(torch.quantile(d.min(dim=1).values, float(quantile)))


def coverage(real, synthetic, radius: float) -> float:
    """Fraction of real samples whose nearest synthetic sample lies within ``radius``
    (inclusive).

    Euclidean distance on flattened tensors: ``real`` ``(n, ...)`` and ``synthetic`` ``(m, ...)``
    must have the same per-sample size. In ``[0, 1]``; 1 means every real sample has a synthetic
    sample within ``radius``. A set concentrated in one dense region scores low even when each of
    its samples is realistic (Fig. 6). Choose ``radius`` with :func:`coverage_radius`.
    """
    radius = check_positive(radius, "radius")
    x, s = _flat_points(real, "real"), _flat_points(synthetic, "synthetic")
    if x.shape[1] != s.shape[1]:
        raise ValueError(
            f"real and synthetic samples differ in size: {x.shape[1]} vs "
            f"{s.shape[1]} values per sample; compare latents with latents (or "
            "images with images)"
        )
    nearest = torch.cdist(x, s, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    return float((nearest <= radius).double().mean())


def _flat_points(x, name: str) -> torch.Tensor:
    """``(n, ...)`` tensors or arrays flattened to ``(n, d)`` float64 points (checked)."""
    t = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.ndim < 2:
        raise ValueError(
            f"{name} must hold samples along its first axis, shape (n, ...) with at "
            f"least 2 dimensions (got shape {tuple(t.shape)}): add the batch axis, "
            "e.g. x[None]"
        )
    return as_points(t.detach().cpu().reshape(t.shape[0], -1), name)


# ---------------------------------------------------------------------------------------------
# Building blocks (shared with dsco.theory)
# ---------------------------------------------------------------------------------------------


def check_positive(value, name: str) -> float:
    """``value`` as a float if it is a finite real number > 0, else one clear ``ValueError``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return float(value)


def as_points(x, name: str) -> torch.Tensor:
    """An ``(n, d)`` float64 tensor from array-like ``x``, or a clear ``ValueError``."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64)) if not torch.is_tensor(x) else x.double()
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(
            f"{name} must be a 2-D array of points, shape (n, d) with n >= 1 "
            f"(got shape {tuple(t.shape)}): reshape it, e.g. x.reshape(-1, d)"
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def same_dim(a: torch.Tensor, b: torch.Tensor) -> None:
    """Raise a clear ``ValueError`` unless the point sets ``a`` and ``b`` share their dimension."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"point dimensions differ: {a.shape[1]} vs {b.shape[1]}; "
            "targets and surrogates must live in the same space"
        )


def log_kernel(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``log k(x, y) = -||x - y||^2 / (2 bandwidth^2)`` for all pairs, shape
    ``(len(x), len(y))``."""
    sq = (x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2.0 * x @ y.T).clamp_min(0.0)
    return -sq / (2.0 * bandwidth**2)


def mmd2_torch(
    x: torch.Tensor, y: torch.Tensor, bandwidth: float, kyy_mean: torch.Tensor | None = None
) -> torch.Tensor:
    """The biased MMD² of :func:`mmd2` on checked float64 tensors, differentiable and unclamped;
    ``kyy_mean``: the precomputed mean kernel within ``y`` (a fixed target set)."""
    kxx = log_kernel(x, x, bandwidth).exp().mean()
    kxy = log_kernel(x, y, bandwidth).exp().mean()
    kyy = log_kernel(y, y, bandwidth).exp().mean() if kyy_mean is None else kyy_mean
    return kxx + kyy - 2.0 * kxy
