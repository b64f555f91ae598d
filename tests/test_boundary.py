"""The configuration-coverage law: the pool, required IPCs, the law over subsets and its line
fit."""

import math

import numpy as np
import pandas as pd
import pytest

from dsco import boundary, datasets, surrogates, training


def test_configurations_cross_architecture_optimiser_and_augmentation():
    pool = boundary.configurations(["convnet", "resnet_ap10"])
    assert len(pool) == 8 and len({c.name for c in pool}) == 8
    assert (
        pool[0].name == "convnet · AdamW · aug"
        and pool[0].protocol == "hard"
        and pool[0].overrides == {}
    )
    off = pool[1]
    assert off.name == "convnet · AdamW · no aug" and off.overrides["cutmix_p"] == 0.0
    p = training.get_protocol(off.protocol, **off.overrides)  # a valid protocol
    assert p.rrc_scale == (1.0, 1.0) and p.flip is False
    assert pool[2].protocol == "sgd"
    with pytest.raises(ValueError, match="unknown optimiser"):
        boundary.configurations(["convnet"], optimisers=["Adam"])


def test_required_ipc_interpolates_the_first_crossing_in_log_ipc():
    assert boundary.required_ipc([1, 10], [50, 90], 70) == pytest.approx(math.sqrt(10))
    assert boundary.required_ipc([1, 10], [80, 90], 70) == 1.0
    assert boundary.required_ipc([1, 10], [50, 60], 70) == math.inf
    assert (
        boundary.required_ipc([1, 2, 4], [50, 75, 70], 74) < 2
    )  # the first crossing, not the last
    with pytest.raises(ValueError, match="increasing"):
        boundary.required_ipc([2, 1], [50, 60], 55)


def _runs():
    rows = []
    for config, scale in [("a", 1.0), ("b", 2.0)]:
        rows.append({"config": config, "method": "full", "ipc": 0, "acc": 100.0})
        for method, shift in [("Random", 0.0), ("DsCo", 10.0)]:
            for ipc in (1, 2, 4, 8):
                rows.append(
                    {
                        "config": config,
                        "method": method,
                        "ipc": ipc,
                        "acc": min(100.0, shift + 30 * np.log2(ipc) / scale + 40),
                    }
                )
    return pd.DataFrame(rows)


def test_requirements_law_and_fit():
    req = boundary.requirements(_runs(), fraction=0.9)
    assert set(req["method"]) == {"Random", "DsCo"} and (req["target"] == 90).all()
    r = req.set_index(["config", "method"])["required"]
    assert r[("a", "DsCo")] < r[("a", "Random")] < r[("b", "Random")]
    assert r[("b", "Random")] == math.inf  # 40 + 15·3 = 85 < 90
    curve = boundary.law(req)
    d = curve[curve["method"] == "Random"].set_index("H")
    assert d.loc[1, "reached"] == 0.5 and d.loc[2, "reached"] == 0.0 and math.isnan(d.loc[2, "ipc"])
    dsco_ = curve[curve["method"] == "DsCo"].set_index("H")["ipc"]
    assert dsco_[2] == pytest.approx(max(r[("a", "DsCo")], r[("b", "DsCo")]))
    assert dsco_[1] == pytest.approx((r[("a", "DsCo")] + r[("b", "DsCo")]) / 2)
    with pytest.raises(ValueError, match="fraction"):
        boundary.requirements(_runs(), fraction=1.5)


def test_a_method_that_never_reaches_the_target_has_no_line_and_is_not_measured():
    rows = []
    for r in range(4):
        for c, need in zip("abc", (1.0, 2.0, 3.0)):
            rows += [
                {"replicate": r, "config": c, "method": "Random", "required": need},
                {"replicate": r, "config": c, "method": "DsCo", "required": math.inf},
            ]
    fits = boundary.fit(boundary.law(pd.DataFrame(rows)))
    assert fits[fits["method"] == "DsCo"]["a"].isna().all() and len(fits) == 8
    ((claim, v),) = boundary.claims(fits).items()
    assert claim.startswith("DsCo's slope is below Random's") and v.verdict == "not measured"


def test_fit_recovers_a_line_needs_three_points_and_reads_a_flat_law_as_slope_0():
    curve = pd.DataFrame(
        {
            "method": ["X"] * 4 + ["Y"] * 2 + ["Z"] * 3,
            "H": [1, 2, 3, 4, 1, 2, 1, 2, 3],
            "ipc": [3, 5, 7, 9, 1, 2, 1, 1, 1],
        }
    )
    f = boundary.fit(curve).set_index("method")
    assert f.loc["X", "a"] == pytest.approx(2) and f.loc["X", "b"] == pytest.approx(1)
    assert f.loc["X", "r2"] == pytest.approx(1) and f.loc["X", "n"] == 4
    assert math.isnan(f.loc["Y", "a"])
    assert f.loc["Z", "a"] == 0 and f.loc["Z", "b"] == 1 and math.isnan(f.loc["Z", "r2"])


def test_law_samples_subsets_when_there_are_many():
    req = pd.DataFrame(
        {"method": "M", "config": list("abcdefghij"), "required": np.arange(1.0, 11.0)}
    )
    curve = boundary.law(req, max_subsets=20, seed=0)
    assert curve.loc[curve["H"] == 5, "subsets"].item() == 20  # C(10, 5) = 252 > 20: sampled
    assert (
        curve.loc[curve["H"] == 10, "ipc"].item() == 10.0
        and curve.loc[curve["H"] == 1, "ipc"].item() == 5.5
    )


def test_evaluate_pool_trains_every_set_and_the_full_split_under_every_configuration(tmp_path):
    ds = datasets.get("digits", "smoke")
    sets = {("Random", 1): surrogates.make("random", 1, 0, dataset=ds).data}
    pool = boundary.configurations(["convnet"], optimisers=["SGD"])
    runs = boundary.evaluate_pool(
        sets, ds.train(), pool, ds, repeats=1, cache_dir=tmp_path, progress=False
    )
    assert sorted(runs["config"].unique()) == sorted(c.name for c in pool)
    assert set(zip(runs["method"], runs["ipc"])) == {("Random", 1), ("full", 0)} and len(runs) == 4
    counts = runs["acc"] * len(ds.test()) / 100  # percentages of whole test images
    assert np.allclose(counts, counts.round(), atol=1e-6)


def _replicated_req(dsco_factor, replicates=5, seed=0):
    """Required IPCs per replicate for six configurations: Random's grow by 3 per configuration,
    DsCo's by ``dsco_factor`` × that, each with a little replicate noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(replicates):
        for i, c in enumerate("abcdef"):
            rows += [
                {
                    "replicate": r,
                    "config": c,
                    "method": "Random",
                    "required": 2.0 + 3 * i + 0.3 * rng.standard_normal(),
                },
                {
                    "replicate": r,
                    "config": c,
                    "method": "DsCo",
                    "required": 1.0 + dsco_factor * 3 * i + 0.3 * rng.standard_normal(),
                },
            ]
    return pd.DataFrame(rows)


def test_claims_judge_the_slope_difference_over_replicates():
    from dsco.verdicts import Verdict

    fits = boundary.fit(boundary.law(_replicated_req(0.5)))
    assert set(fits.columns) == {"replicate", "method", "a", "b", "r2", "n"} and len(fits) == 10
    ((claim, v),) = boundary.claims(fits).items()
    assert isinstance(v, Verdict) and v.verdict == "holds" and "5 replicates" in v.numbers
    worse = boundary.claims(boundary.fit(boundary.law(_replicated_req(2.0))))[claim]
    assert worse.verdict == "does not hold"
    few = boundary.claims(boundary.fit(boundary.law(_replicated_req(0.5, replicates=2))))[claim]
    assert few.verdict == "not measured"
    flat = pd.DataFrame(
        [{"replicate": r, "method": m, "a": 0.0} for r in range(5) for m in ("DsCo", "Random")]
    )
    assert boundary.claims(flat, resolution=0.1)[claim].verdict == "within noise"


def test_requirements_per_replicate_use_their_own_full_data_accuracy():
    low_full = _runs().assign(replicate=1, acc=lambda d: d["acc"].where(d["method"] != "full", 50))
    runs = pd.concat([_runs().assign(replicate=0), low_full])
    req = boundary.requirements(runs, fraction=0.9, per_replicate=True)
    req = req.set_index(["replicate", "config", "method"])
    assert req.loc[(0, "a", "DsCo"), "target"] == 90 and req.loc[(1, "a", "DsCo"), "target"] == 45
    assert req.loc[(1, "a", "Random"), "required"] < req.loc[(0, "a", "Random"), "required"]
    pooled = boundary.requirements(runs, fraction=0.9)
    assert "replicate" not in pooled and len(pooled) == 4


def test_evaluate_pool_with_replicates_trains_the_full_split_once_per_replicate(tmp_path):
    ds = datasets.get("digits", "smoke")
    made = surrogates.make_all(["random"], [1], 0, replicates=2, dataset=ds, progress=False)
    pool = boundary.configurations(["convnet"], optimisers=["SGD"], augment=(False,))
    runs = boundary.evaluate_pool(
        {k: s.data for k, s in made.items()},
        ds.train(),
        pool,
        ds,
        cache_dir=tmp_path,
        progress=False,
    )
    assert sorted(zip(runs["method"], runs["replicate"], runs["run_seed"])) == [
        ("full", 0, 0),
        ("full", 1, 1),
        ("random", 0, 0),
        ("random", 1, 1),
    ]
