"""Privacy audit of surrogate sets: does a synthetic image sit closer to the training data than to
unseen data of the same distribution? (The "distance to closest record" comparison.)

Entry point: ``audit(sets, train, test, draws=20, seed=0) -> DataFrame``, one row per surrogate set
(and replicate); :func:`claims` judges the paper's privacy statement on it.

For every synthetic image its distance to the closest record (DCR) is the Euclidean distance, in
pixels in [-1, 1], to the nearest image of a reference set. The two reference sets are the
held-out test split and the training split **subsampled to the test split's size** (the test
split's count per class, redrawn ``draws`` times): the minimum over more candidates is smaller, so
a reference three times larger (digits' training split against its test split) would look
"closer" with no memorisation at all. Per set the audit reports the share of synthetic images
closer to a training image than to any test image (ties count half; 0.5 when the generator has no
preference for its training data), its mean and std over the draws, and the median DCR to either
reference. A share well above 0.5 -- or DCRs to the training data near 0 -- means the set copies
training images. A random real subset of the training split is the extreme case: every image is
at distance 0 from itself whenever the draw contains it.

:func:`closest_pairs` gives the synthetic images nearest to a training image (the whole training
split) with their nearest neighbours, to look at.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

#: The margin of :func:`claims` on the share closer to a training image: 0.05, five images in a
#: hundred -- well below what copying adds (a copied training image is in a training reference of
#: the test split's size with the probability test ÷ training split: +0.125 when the training
#: split is four times the test split's size, +0.08 at six times).
MARGIN = 0.05


def audit(sets: dict, train, test, draws: int = 20, seed: int = 0) -> pd.DataFrame:
    """One row per entry of ``sets`` (``{(method, ipc): set}`` or ``{(method, ipc, replicate):
    set}`` of Surrogates or ImageSets, e.g. from :func:`dsco.surrogates.make_all`): ``method``,
    ``ipc``, ``replicate`` (0 for a two-part key), ``closer_to_train`` (mean share over the draws),
    ``closer_to_train_std``, ``dcr_train`` and ``dcr_test`` (median DCR, the training reference
    pooled over the draws), ``images``. ``train``/``test``: the real splits (ImageSets).

    The ``draws`` training subsamples of replicate ``r`` are seeded from ``seed + r`` (draw ``k``
    with ``(seed + r) · draws + k``): the sets of one replicate share their references (they are
    paired), and different replicates draw different ones."""
    if draws < 1:
        raise ValueError(f"draws={draws}: use 1 or more draws of the training subsample")
    train, test = _in_memory(train), _in_memory(test)
    test_x = _flat(test.x)
    refs: dict[int, list] = {}
    rows = []
    for key, s in sets.items():
        method, ipc, r = (*key, 0) if len(key) == 2 else key
        if r not in refs:
            base = (seed + int(r)) * draws
            refs[r] = [_subsample(train, test, base + k) for k in range(draws)]
        x = _flat(_in_memory(getattr(s, "data", s)).x)
        d_test = dcr(x, test_x)
        d_train = [dcr(x, _flat(train.x[idx])) for idx in refs[r]]
        shares = [
            float(((d < d_test).double() + 0.5 * (d == d_test).double()).mean()) for d in d_train
        ]
        rows.append(
            {
                "method": method,
                "ipc": int(ipc),
                "replicate": int(r),
                "closer_to_train": float(np.mean(shares)),
                "closer_to_train_std": float(np.std(shares)),
                "dcr_train": float(torch.cat(d_train).median()),
                "dcr_test": float(d_test.median()),
                "images": len(x),
            }
        )
    return pd.DataFrame(rows)


def claims(
    audit_table: pd.DataFrame,
    a: str = "DsCo",
    b: str = "DiT†",
    margin: float = MARGIN,
    resolution: float = 0.0,
) -> dict:
    """The paper's privacy statement for NOpt, as ``{claim: Verdict}``
    (:func:`dsco.scorecard.record`): "NOpt's alignment adds no memorisation: ``a`` is no closer to
    the training images than ``b``" (``a`` aligned to the training data, ``b`` the same sampler
    without the alignment).

    Rule: :func:`dsco.verdicts.non_inferiority` with lower is better (``higher=False``) on the
    share closer to a training image (``closer_to_train`` of :func:`audit`), ``a − b`` paired by
    ``replicate`` (replicate ``r``: both sets made from ``seed + r`` and audited against the same
    training references), one cell per IPC, Holm over the IPCs: an IPC is *for* when the one-sided
    97.5 % upper bound of ``a − b`` lies below ``margin``, *against* when its lower bound lies
    above it. ``margin`` is a share (default :data:`MARGIN`). Assumes the replicates'
    differences are independent and roughly normal; fewer than 3 replicates of an IPC: not
    measured. ``resolution`` floors the paired sd (the smallest step of the share)."""
    from . import verdicts

    claim = (
        f"NOpt's alignment adds no memorisation: {a} is no closer to the training images than "
        f"{b} (share closer to a training image within +{margin:g} of {b}'s)"
    )
    return {
        claim: verdicts.non_inferiority(
            audit_table,
            a,
            b,
            margin,
            on=("ipc",),
            value="closer_to_train",
            higher=False,
            resolution=resolution,
        )
    }


def dcr(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The distance from every row of ``x`` (N×D) to its nearest row of ``reference`` (M×D)."""
    return (
        torch.cdist(x.double(), reference.double(), compute_mode="donot_use_mm_for_euclid_dist")
        .min(1)
        .values
    )


def closest_pairs(synthetic, train, k: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` synthetic images closest to some training image: ``(synthetic images, their nearest
    training images, distances)``, closest first."""
    synthetic, train = _in_memory(synthetic), _in_memory(train)
    d = torch.cdist(
        _flat(synthetic.x).double(),
        _flat(train.x).double(),
        compute_mode="donot_use_mm_for_euclid_dist",
    )
    best, nearest = d.min(1)
    order = torch.argsort(best, stable=True)[:k]
    return synthetic.x[order], train.x[nearest[order]], best[order]


def _subsample(train, test, seed: int) -> torch.Tensor:
    """Indices of a training subsample with the test split's count per class (``seed``-ed)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.bincount(test.y, minlength=int(train.y.max()) + 1)
    parts = []
    for c, n in enumerate(counts.tolist()):
        pool = torch.nonzero(train.y == c).flatten()
        if n > len(pool):
            raise ValueError(
                f"class {c} has {len(pool)} training images but {n} test images: the training "
                "reference cannot match the test split's size"
            )
        parts.append(pool[torch.randperm(len(pool), generator=g)[:n]])
    return torch.cat(parts)


def _in_memory(s):
    return s.in_memory() if hasattr(s, "in_memory") else s


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1).float()
