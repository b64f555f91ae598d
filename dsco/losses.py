"""The NOpt losses (paper §4.1.1, §4.1.3, §4.1.4).

Shapes: noise and latents are ``(N, C, H, W)``; projector features are ``(N, J, K, L)``; pooled
features are ``(N, J)``. Every function returns a scalar tensor that is differentiable with
respect to its first argument. The weights λ and the extra ``N_S`` factor of Eq. 20 are applied by
the caller (:func:`dsco.nopt.synthesize`), so that each function here is exactly one equation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def absn2(x: torch.Tensor) -> torch.Tensor:
    """The "absolute and square" penalty ``absn²(x) = |x| + x²`` (Eq. 18), elementwise.

    Its gradient ``sign(x) + 2x`` does not vanish near 0 (fast convergence) and is exactly 0 at
    ``x = 0`` (``torch.abs`` uses the subgradient 0 there).
    """
    return x.abs() + x.square()


def reality_loss(eps: torch.Tensor) -> torch.Tensor:
    """Reality constraint ``Σ_s absn²(‖ε_s‖ − √(CHW))`` (Eq. 19) for noises ``eps`` of shape ``(N,
    C, H, W)``.

    A d-dimensional standard normal sample has norm ≈ √d (Eq. 17), so keeping each optimised noise
    on that sphere keeps it looking Gaussian.
    """
    flat = eps.flatten(1)
    return absn2(flat.norm(dim=1) - math.sqrt(flat.shape[1])).sum()


def pool(feats: torch.Tensor) -> torch.Tensor:
    """Global average pooling ``(N, J, K, L) → (N, J)`` (§4.1.3); 2-D input is returned
    unchanged."""
    return feats.mean(dim=(-2, -1)) if feats.dim() == 4 else feats


def channel_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-wise mean and population std of a feature set (Eq. 22–23).

    For ``(N, J, K, L)`` maps the statistics run over samples and positions ``(N, K, L)``; for
    pooled ``(N, J)`` features over samples only. Returns two ``(J,)`` tensors.
    """
    dims = (0, 2, 3) if feats.dim() == 4 else (0,)
    return feats.mean(dim=dims), feats.std(dim=dims, correction=0)


def cross_normalise(
    feats: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    """Cross-normalisation ``(f_jkl − mean_j) / std_j`` by another set's channel statistics (Eq.
    24).

    ``mean`` and ``std`` come from :func:`channel_stats` of the reference set (the templates in the
    data-free mode, the diffused targets' pooled features in the data-accessible mode, §4.1.3).
    Works on maps ``(N, J, K, L)`` and on pooled features ``(N, J)``; ``std`` is clamped at ``eps``
    so that a constant channel cannot divide by zero.
    """
    shape = (1, -1, 1, 1) if feats.dim() == 4 else (1, -1)
    return (feats - mean.reshape(shape)) / std.clamp_min(eps).reshape(shape)


def ot_pivots(target_feats: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` 1-D optimal-transport pivots of each feature dimension (§4.1.3, inner sum of Eq.
    20).

    Sort the ``M`` targets ``(M, J)`` in each dimension, cut the sorted column into ``n`` blocks of
    ``M / n`` and average each block. Returns ``(n, J)``, ascending in every column. ``M`` must be a
    multiple of ``n`` (the paper pads ``N_Diff`` up to one).
    """
    m = target_feats.shape[0]
    if n < 1 or m % n:
        raise ValueError(
            f"ot_pivots: {m} target features cannot be cut into {n} equal blocks; "
            f"use a target count that is a multiple of {n} (e.g. {n * max(1, -(-m // n))})"
        )
    ordered = target_feats.sort(dim=0).values
    return ordered.reshape(n, m // n, *target_feats.shape[1:]).mean(dim=1)


def channel_ot_loss(feats: torch.Tensor, pivots: torch.Tensor) -> torch.Tensor:
    """Channel-wise 1-D optimal-transport alignment ``Σ_j Σ_s absn²(f̂_(s),j − pivot_s,j)`` (Eq.
    20–21).

    ``feats`` ``(N, J)`` are the candidates' pooled, standardised features; ``pivots`` ``(N, J)``
    come from :func:`ot_pivots`. The candidates are sorted in each dimension and matched rank for
    rank with the (sorted) pivots, which is the optimal 1-D transport plan; the loss is therefore
    invariant to the order of the candidates. Without the ``N_S`` factor of Eq. 20 and the
    ``λ_align`` of Eq. 21: NOpt multiplies the result by ``λ_align · N``.
    """
    if feats.shape != pivots.shape:
        raise ValueError(
            f"channel_ot_loss: feats {tuple(feats.shape)} and pivots {tuple(pivots.shape)} "
            "differ; build the pivots with ot_pivots(targets, n=len(feats))"
        )
    return absn2(feats.sort(dim=0).values - pivots).sum()


def max_occupation_loss(feats: torch.Tensor) -> torch.Tensor:
    """Maximal-occupation loss ``Σ_s cos(f̄_s, nn(f̄_s))`` (Eq. 25–26).

    Each candidate's feature map is flattened; ``nn`` is the other candidate with the largest cosine
    similarity (smallest cosine distance ``d_cos = −cos``). Minimising the sum pushes every
    candidate away from its nearest neighbour. Needs at least two candidates.
    """
    if feats.shape[0] < 2:
        raise ValueError(
            "max_occupation_loss needs at least 2 candidates (ipc >= 2); "
            "switch the term off (maxoc=False) for ipc=1"
        )
    unit = F.normalize(feats.flatten(1), dim=1)
    cos = unit @ unit.T
    eye = torch.eye(len(cos), dtype=torch.bool, device=cos.device)
    return cos.masked_fill(eye, float("-inf")).max(dim=1).values.sum()


def stats_loss(feats: torch.Tensor) -> torch.Tensor:
    """Feature-statistics regularisation ``Σ_j absn²(mean_j) + Σ_j absn²(std_j − 1)`` (Eq. 27).

    ``feats`` are the cross-normalised candidate features (maps ``(N, J, K, L)`` or pooled ``(N,
    J)``); mean and population std per channel as in :func:`channel_stats`. The official code
    multiplies this by ``K·L``; NOpt applies that as a switch.
    """
    mean, std = channel_stats(feats)
    return absn2(mean).sum() + absn2(std - 1).sum()
