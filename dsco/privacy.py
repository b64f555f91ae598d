"""Privacy audit of surrogate sets: does a synthetic image sit closer to the training data than to
unseen data of the same distribution? (The "distance to closest record" comparison.)

Entry point: ``audit(sets, train, test, draws=20, seed=0) -> DataFrame``, one row per surrogate set.

For every synthetic image its distance to the closest record (DCR) is the Euclidean distance, in
pixels in [-1, 1], to the nearest image of a reference set. The two reference sets are the held-out
test split and the training split **subsampled to the test split's size** (the test split's count per
class, redrawn ``draws`` times): the minimum over more candidates is smaller, so a reference three times
larger (digits' training split against its test split) would look "closer" with no memorisation at all.
Per set the audit reports the share of synthetic images closer to a training image than to any test
image (ties count half; 0.5 when the generator has no preference for its training data), its mean and
std over the draws, and the median DCR to either reference. A share well above 0.5 -- or DCRs to the
training data near 0 -- means the set copies training images. A random real subset of the training
split is the extreme case: every image is at distance 0 from itself whenever the draw contains it.

:func:`closest_pairs` gives the synthetic images nearest to a training image (the whole training split)
with their nearest neighbours, to look at.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def audit(sets: dict, train, test, draws: int = 20, seed: int = 0) -> pd.DataFrame:
    """One row per entry of ``sets`` (``{(method, ipc): Surrogate or ImageSet}``, e.g. from
    :func:`dsco.surrogates.make_all`): ``method``, ``ipc``, ``closer_to_train`` (mean share over the
    draws), ``closer_to_train_std``, ``dcr_train`` and ``dcr_test`` (median DCR, the training
    reference pooled over the draws), ``images``. ``train``/``test``: the real splits (ImageSets)."""
    if draws < 1:
        raise ValueError(f"draws={draws}: use 1 or more draws of the training subsample")
    train, test = _in_memory(train), _in_memory(test)
    refs = [_subsample(train, test, seed + k) for k in range(draws)]
    rows = []
    for (method, ipc), s in sets.items():
        x = _flat(_in_memory(getattr(s, "data", s)).x)
        d_test = dcr(x, _flat(test.x))
        d_train = [dcr(x, _flat(train.x[idx])) for idx in refs]
        shares = [float(((d < d_test).double() + 0.5 * (d == d_test).double()).mean()) for d in d_train]
        rows.append({"method": method, "ipc": int(ipc), "closer_to_train": float(np.mean(shares)),
                     "closer_to_train_std": float(np.std(shares)), "dcr_train": float(torch.cat(d_train).median()),
                     "dcr_test": float(d_test.median()), "images": len(x)})
    return pd.DataFrame(rows)


def claims(audit_table: pd.DataFrame, a: str = "DsCo", b: str = "DiT†") -> dict:
    """"``a`` sits closer to the training data than ``b``" (e.g. NOpt's alignment pulls samples onto
    training images) as ``{claim: (verdict, numbers)}`` (:func:`dsco.scorecard.record`), from an
    :func:`audit` table: per IPC the difference of the two shares with a 95 % interval from their std
    over the draws of the training reference; "holds" when every interval lies above 0, "holds in most
    cells" in more than half, "within noise" when none lies below, else "does not hold"."""
    s = audit_table.set_index(["method", "ipc"])
    ipcs = sorted(set(s.loc[a].index) & set(s.loc[b].index))
    from .paper import by_interval, tally

    verdicts, parts = [], []
    for i in ipcs:
        x, y = s.loc[(a, i)], s.loc[(b, i)]
        d = x["closer_to_train"] - y["closer_to_train"]
        half = 1.96 * float(np.hypot(x["closer_to_train_std"], y["closer_to_train_std"]))
        verdicts.append(by_interval(d - half, d + half))
        parts.append(f"IPC {i}: {d:+.2f} [{d - half:+.2f}, {d + half:+.2f}]")
    return {f"{a} sits closer to the training images than {b}": (
        tally(verdicts.count("holds"), verdicts.count("does not hold"), len(ipcs)),
        f"share closer to a training image, {a} − {b}: " + "; ".join(parts) + " (95 %, over the draws)")}


def dcr(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The distance from every row of ``x`` (N×D) to its nearest row of ``reference`` (M×D)."""
    return torch.cdist(x.double(), reference.double(), compute_mode="donot_use_mm_for_euclid_dist").min(1).values


def closest_pairs(synthetic, train, k: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` synthetic images closest to some training image: ``(synthetic images, their nearest
    training images, distances)``, closest first."""
    synthetic, train = _in_memory(synthetic), _in_memory(train)
    d = torch.cdist(_flat(synthetic.x).double(), _flat(train.x).double(), compute_mode="donot_use_mm_for_euclid_dist")
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
            raise ValueError(f"class {c} has {len(pool)} training images but {n} test images: the training "
                             "reference cannot match the test split's size")
        parts.append(pool[torch.randperm(len(pool), generator=g)[:n]])
    return torch.cat(parts)


def _in_memory(s):
    return s.in_memory() if hasattr(s, "in_memory") else s


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1).float()
