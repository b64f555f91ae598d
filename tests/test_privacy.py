"""The privacy audit (dsco.privacy): distances to the closest record against equal-size
references."""

import pytest
import torch

from dsco import data, privacy


def _split(n_per_class, seed, classes=3, dim=4):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = (y[:, None].float() + 0.3 * torch.randn(len(y), dim, generator=g)).reshape(-1, 1, 2, 2)
    return data.ImageSet(x, y, [str(c) for c in range(classes)])


def test_dcr_is_the_distance_to_the_nearest_reference_row():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    ref = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    assert privacy.dcr(x, ref).tolist() == [1.0, 4.0]


def test_copies_of_training_images_are_closer_to_train_and_fresh_draws_are_not():
    train, test = _split(30, 0), _split(10, 1)
    copies = data.ImageSet(
        train.x[::3].clone(), train.y[::3].clone(), train.classes
    )  # 30 training images
    fresh = _split(10, 2)  # same distribution
    table = privacy.audit(
        {("copy", 10): copies, ("fresh", 10): fresh}, train, test, draws=30, seed=0
    ).set_index("method")
    # a copy is at distance 0 whenever the subsample (10 of 30 per class) holds it: share ≈ 1/3 +
    # 2/3 · 1/2
    assert table.loc["copy", "closer_to_train"] == pytest.approx(2 / 3, abs=0.08)
    assert table.loc["fresh", "closer_to_train"] == pytest.approx(0.5, abs=0.12)
    assert table.loc["copy", "images"] == 30 and table.loc["copy", "closer_to_train_std"] > 0
    again = privacy.audit({("copy", 10): copies}, train, test, draws=30, seed=0)
    assert again.loc[0, "closer_to_train"] == table.loc["copy", "closer_to_train"]  # seeded draws


def test_the_training_reference_has_the_test_splits_size_per_class():
    train, test = _split(30, 0), _split(10, 1)
    idx = privacy._subsample(train, test, seed=3)
    assert torch.bincount(train.y[idx]).tolist() == [10, 10, 10] and len(set(idx.tolist())) == 30
    with pytest.raises(ValueError, match="cannot match the test split's size"):
        privacy._subsample(test, train, seed=0)
    with pytest.raises(ValueError, match="draws=0"):
        privacy.audit({}, train, test, draws=0)


def test_closest_pairs_finds_the_copies_first():
    train = _split(20, 0)
    synthetic = data.ImageSet(
        torch.cat([train.x[5:6], _split(2, 9).x]), torch.zeros(7, dtype=torch.long), train.classes
    )
    synth, real, dist = privacy.closest_pairs(synthetic, train, k=3)
    assert dist[0] == 0 and torch.equal(synth[0], train.x[5]) and torch.equal(real[0], train.x[5])
    assert len(synth) == len(real) == 3 and (dist[1:] >= dist[:-1]).all()


def test_replicate_keys_get_their_own_paired_references():
    train, test = _split(30, 0), _split(10, 1)
    fresh = _split(10, 2)
    table = privacy.audit(
        {("a", 10, 0): fresh, ("b", 10, 0): fresh, ("a", 10, 1): fresh},
        train,
        test,
        draws=5,
        seed=0,
    )
    assert list(table["replicate"]) == [0, 0, 1]
    same, other = table["closer_to_train"].iloc[:2], table["closer_to_train"].iloc[2]
    assert same.iloc[0] == same.iloc[1]  # one replicate: the same training references
    assert other != same.iloc[0]  # another replicate: other references
    two = privacy.audit({("a", 10): fresh}, train, test, draws=5, seed=0)
    assert two.loc[0, "replicate"] == 0 and two.loc[0, "closer_to_train"] == same.iloc[0]


def _audit(shift, replicates=5, noise=0.01):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for r in range(replicates):
        for ipc in (1, 10):
            base = 0.5 + 0.02 * rng.standard_normal()
            rows += [
                {"method": "DiT†", "ipc": ipc, "replicate": r, "closer_to_train": base},
                {
                    "method": "DsCo",
                    "ipc": ipc,
                    "replicate": r,
                    "closer_to_train": base + shift + noise * rng.standard_normal(),
                },
            ]
    return pd.DataFrame(rows)


def test_claims_judge_no_added_memorisation_by_non_inferiority_over_replicates():
    from dsco.verdicts import Verdict

    ((claim, v),) = privacy.claims(_audit(0.0), margin=0.05).items()
    assert isinstance(v, Verdict) and claim.startswith("NOpt's alignment adds no memorisation")
    assert "within +0.05 of DiT†'s" in claim
    assert v.verdict == "holds" and len(v.cells) == 2  # one cell per IPC
    assert privacy.claims(_audit(0.2), margin=0.05)[claim].verdict == "does not hold"  # copies
    assert privacy.claims(_audit(-0.2), margin=0.05)[claim].verdict == "holds"  # farther: fine
    noisy = privacy.claims(_audit(0.0, noise=0.3), margin=0.05)[claim]
    assert noisy.verdict == "within noise" and noisy.resolution > 0.05
    assert privacy.claims(_audit(0.0, replicates=2))[claim].verdict == "not measured"
