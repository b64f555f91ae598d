"""Distances between a surrogate set and the real data (dsco.discrepancy), their rank correlation
with accuracy within an IPC, and the claims judged on them."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dsco import data, metrics
from dsco import discrepancy as D
from dsco.surrogates import Surrogate


def _split(n_per_class, seed, classes=3, shift=0.0):
    """Tiny 1×4×4 'images': class c centred at c (plus ``shift``), Gaussian noise 0.3."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = (y[:, None].float() + shift + 0.3 * torch.randn(len(y), 16, generator=g)).reshape(
        -1, 1, 4, 4
    )
    return data.ImageSet(x, y, [str(c) for c in range(classes)])


def _surrogate(images, method="m", ipc=1):
    return Surrogate(
        data=images,
        method=method,
        ipc=ipc,
        seed=0,
        options={},
        wall_s=0.0,
        peak_mem_mb=0.0,
        device="cpu",
    )


def test_identical_sets_are_at_distance_zero_with_full_coverage():
    real = _split(20, 0)
    table = D.measures(
        {("copy", 20): _surrogate(real)}, real, features=lambda x: x.reshape(len(x), -1) * 2
    )
    row = table.iloc[0]
    assert row["mmd_pixel"] == pytest.approx(0, abs=1e-12) and row["mmd_feature"] == pytest.approx(
        0, abs=1e-12
    )
    assert row["energy_pixel"] == pytest.approx(0, abs=1e-12) and row["coverage_pixel"] == 1.0
    assert row["images"] == 60 and (row["method"], row["ipc"]) == ("copy", 20)


def test_a_shifted_set_is_farther_than_a_real_subsample():
    real = _split(40, 0)
    subsample = real.sample_per_class(10, seed=1)
    shifted = data.ImageSet(subsample.x + 0.5, subsample.y, subsample.classes)
    table = D.measures({("sub", 10): subsample, ("shifted", 10): shifted}, real).set_index("method")
    assert table.loc["shifted", "mmd_pixel"] > 2 * table.loc["sub", "mmd_pixel"]
    assert table.loc["shifted", "energy_pixel"] > 2 * table.loc["sub", "energy_pixel"]
    assert table.loc["shifted", "coverage_pixel"] < table.loc["sub", "coverage_pixel"]


def test_measures_match_the_metrics_per_class_and_average_over_the_sets_classes():
    real, s = _split(15, 0), _split(4, 1, shift=0.2)
    table = D.measures({("s", 4): s}, real, classes=[0, 2])
    x0, x2 = (
        real.x[real.y == 0].reshape(15, -1).double(),
        real.x[real.y == 2].reshape(15, -1).double(),
    )
    s0, s2 = s.x[s.y == 0], s.x[s.y == 2]
    pairs = ((x0, s0), (x2, s2))
    mmd = [metrics.mmd2(r, q.reshape(len(q), -1), float(torch.pdist(r).median())) for r, q in pairs]
    cov = [metrics.coverage(r, q, metrics.coverage_radius(r)) for r, q in pairs]
    assert table.loc[0, "mmd_pixel"] == pytest.approx(np.mean(mmd), rel=1e-12)
    assert table.loc[0, "coverage_pixel"] == pytest.approx(np.mean(cov), rel=1e-12)
    assert table.loc[0, "energy_pixel"] == pytest.approx(
        np.mean([D.energy_distance(r, q) for r, q in pairs])
    )
    plain = SimpleNamespace(
        x=real.x, y=real.y
    )  # anything with .x and .y (no subset / in_memory) will do
    pd.testing.assert_frame_equal(table, D.measures({("s", 4): s}, plain, classes=[0, 2]))


def test_measures_has_one_deterministic_row_per_set_and_bounded_real_subsample():
    real = _split(30, 0)
    sets = {
        ("a", 2): real.sample_per_class(2, seed=0),
        ("b", 5): _surrogate(_split(5, 3, shift=0.1), "b", 5),
    }
    first = D.measures(sets, real, max_real=10, seed=1)
    assert list(first.columns) == [
        "method",
        "ipc",
        "replicate",
        "mmd_pixel",
        "energy_pixel",
        "coverage_pixel",
        "images",
    ]
    assert first[["method", "ipc", "images"]].values.tolist() == [["a", 2, 6], ["b", 5, 15]]
    pd.testing.assert_frame_equal(
        first, D.measures(sets, real, max_real=10, seed=1), check_exact=True
    )  # same call
    assert not first.equals(D.measures(sets, real, max_real=10, seed=2))  # another subsample
    with pytest.raises(ValueError, match="max_real=1"):
        D.measures(sets, real, max_real=1)
    with pytest.raises(ValueError, match=r"classes \[3\], which the real split lacks"):
        D.measures({("x", 1): _split(2, 0, classes=4)}, real)
    with pytest.raises(ValueError, match="none of the classes"):
        D.measures(sets, real, classes=[7])


def test_teacher_features_on_digits_rank_a_real_subset_above_noise():
    from dsco.teacher import load_teacher

    real = data.load("digits", "train")
    subset = real.sample_per_class(5, seed=0)
    noise = data.ImageSet(
        torch.rand(subset.x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1,
        subset.y,
        subset.classes,
    )
    table = D.measures(
        {("random", 5): subset, ("noise", 5): noise},
        real,
        features=D.penultimate(load_teacher()),
        max_real=60,
    ).set_index("method")
    assert list(table.columns) == [
        "ipc",
        "replicate",
        "mmd_pixel",
        "energy_pixel",
        "coverage_pixel",
        "mmd_feature",
        "images",
    ]
    for column, (_, direction) in D.MEASURES.items():  # the real subset is closer by every measure
        assert direction * (table.loc["random", column] - table.loc["noise", column]) > 0, column


def test_energy_distance_is_symmetric_non_negative_and_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(7, 3, generator=g, dtype=torch.float64),
        torch.randn(5, 3, generator=g, dtype=torch.float64) + 1,
    )
    e = D.energy_distance(x, y)
    assert e > 0 and e == pytest.approx(D.energy_distance(y, x), rel=1e-12)
    dist = lambda a, b: np.mean([float((p - q).norm()) for p in a for q in b])  # noqa: E731
    assert e == pytest.approx(2 * dist(x, y) - dist(x, x) - dist(y, y), rel=1e-10)
    assert D.energy_distance(x, x.clone()) == 0.0
    with pytest.raises(ValueError, match="same size"):
        D.energy_distance(x, torch.randn(4, 2))


def test_penultimate_of_a_sequential_is_the_input_of_its_last_linear_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).train()
    x = torch.rand(300, 1, 8, 8) * 2 - 1  # more than one batch of 256
    f = D.penultimate(model)(x)
    assert f.shape == (300, 16) and f.dtype == torch.float64 and model.training  # mode restored
    with torch.no_grad():
        torch.testing.assert_close(f, torch.relu(model[1](x.flatten(1))).double())


def test_penultimate_of_a_timm_teacher_gives_pre_logits_features():
    import timm

    from dsco.teacher import TimmTeacher

    torch.manual_seed(0)
    clf = TimmTeacher(
        timm.create_model(
            "resnet18", pretrained=False, num_classes=10, channels=(8, 16, 32, 64), stem_width=8
        )
    )
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    f = D.penultimate(clf)(x)
    assert f.shape == (5, clf.model.num_features) and f.dtype == torch.float64
    with torch.no_grad():  # the classifier on these features gives the teacher's logits
        torch.testing.assert_close(
            clf.model.get_classifier()(f.float()), clf.eval()(x), rtol=1e-5, atol=1e-5
        )


def test_penultimate_rejects_unsupported_models():
    with pytest.raises(ValueError, match="TimmTeacher"):
        D.penultimate(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="nn.Sequential"):
        D.penultimate(nn.Sequential(nn.Linear(4, 2), nn.ReLU()))


def test_measures_keeps_the_replicate_of_a_three_part_key():
    real = _split(30, 0)
    sets = {("a", 2, r): real.sample_per_class(2, seed=r) for r in (0, 1)}
    table = D.measures(sets, real, max_real=10)
    assert table["replicate"].tolist() == [0, 1] and table["method"].tolist() == ["a", "a"]
    assert table.loc[0, "mmd_pixel"] != table.loc[1, "mmd_pixel"]


def _table(closer_is_better=True, replicates=5, ipcs=(1, 2, 4), seed=0):
    """Four methods per IPC and replicate; accuracy falls with the MMD² (or rises when not
    ``closer_is_better``), plus the IPC's own effect on both (which within-IPC ranks ignore)."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(replicates):
        for ipc in ipcs:
            for k, method in enumerate(["A", "B", "C", "D"]):
                mmd = 1.0 / ipc + 0.1 * k + 0.02 * rng.standard_normal()
                sign = -1 if closer_is_better else 1
                acc = 50 + 10 * np.log2(ipc) + sign * 30 * (mmd - 1 / ipc)
                rows.append(
                    {
                        "method": method,
                        "ipc": ipc,
                        "replicate": r,
                        "mmd_pixel": mmd,
                        "coverage_pixel": -mmd,
                        "acc": acc + 0.1 * rng.standard_normal(),
                    }
                )
    return pd.DataFrame(rows)


def test_within_ipc_ranks_the_sets_of_one_ipc_and_orients_each_measure():
    out = D.within_ipc(_table()).set_index(["measure", "replicate"])
    assert out.loc["mmd_pixel", "rho"].tolist() == pytest.approx([1.0] * 5)  # lower is closer
    assert out.loc["coverage_pixel", "rho"].tolist() == pytest.approx([1.0] * 5)  # higher: closer
    assert (out["ipcs"] == 3).all() and (out["sets"] == 4).all()
    assert out.loc[("mmd_pixel", 0), "label"] == D.MEASURES["mmd_pixel"][0]
    flat = _table().assign(acc=1.0)  # accuracy does not vary: no rho
    assert D.within_ipc(flat, measures=["mmd_pixel"])["rho"].isna().all()
    with pytest.raises(ValueError, match="accuracy_column"):
        D.within_ipc(_table(), "accuracy")
    with pytest.raises(ValueError, match="unknown measures"):
        D.within_ipc(_table(), measures=["acc_gap"])


def test_claims_judge_the_fixed_measure_by_rules_over_replicates():
    from dsco.verdicts import Verdict

    found = D.claims(_table(), "A", "B")
    prop1, closer = found
    assert all(isinstance(v, Verdict) for v in found.values())
    assert "kernel MMD² (pixels)" in prop1 and "A is closer than B" in closer
    assert found[prop1].verdict == "holds" and found[closer].verdict == "holds"
    assert len(found[closer].cells) == 3  # one cell per IPC
    assert (
        D.claims(_table(), "B", "A")[
            closer.replace("A is closer than B", "B is closer than A")
        ].verdict
        == "does not hold"
    )
    assert D.claims(_table(closer_is_better=False), "A", "B")[prop1].verdict == "does not hold"
    few = D.claims(_table(replicates=2), "A", "B")
    assert {v.verdict for v in few.values()} == {"not measured"}


def test_measures_directions_are_signs():
    assert {d for _, d in D.MEASURES.values()} == {-1, 1} and D.MEASURES["coverage_pixel"][1] == 1
    assert all(isinstance(label, str) and not math.isnan(d) for label, d in D.MEASURES.values())
