"""The configuration-coverage law: the pool, required IPCs, the law over subsets and its line fit."""
import math

import numpy as np
import pandas as pd
import pytest

from dsco import boundary, datasets, surrogates, training


def test_configurations_cross_architecture_optimiser_and_augmentation():
    pool = boundary.configurations(["convnet", "resnet_ap10"])
    assert len(pool) == 8 and len({c.name for c in pool}) == 8
    assert pool[0].name == "convnet · AdamW · aug" and pool[0].protocol == "hard" and pool[0].overrides == {}
    off = pool[1]
    assert off.name == "convnet · AdamW · no aug" and off.overrides["cutmix_p"] == 0.0
    p = training.get_protocol(off.protocol, **off.overrides)      # a valid protocol
    assert p.rrc_scale == (1.0, 1.0) and p.flip is False
    assert pool[2].protocol == "sgd"
    with pytest.raises(ValueError, match="unknown optimiser"):
        boundary.configurations(["convnet"], optimisers=["Adam"])


def test_required_ipc_interpolates_the_first_crossing_in_log_ipc():
    assert boundary.required_ipc([1, 10], [50, 90], 70) == pytest.approx(math.sqrt(10))
    assert boundary.required_ipc([1, 10], [80, 90], 70) == 1.0
    assert boundary.required_ipc([1, 10], [50, 60], 70) == math.inf
    assert boundary.required_ipc([1, 2, 4], [50, 75, 70], 74) < 2      # the first crossing, not the last
    with pytest.raises(ValueError, match="increasing"):
        boundary.required_ipc([2, 1], [50, 60], 55)


def _runs():
    rows = []
    for config, scale in [("a", 1.0), ("b", 2.0)]:
        rows.append({"config": config, "method": "full", "ipc": 0, "acc": 100.0})
        for method, shift in [("Random", 0.0), ("DsCo", 10.0)]:
            for ipc in (1, 2, 4, 8):
                rows.append({"config": config, "method": method, "ipc": ipc,
                             "acc": min(100.0, shift + 30 * np.log2(ipc) / scale + 40)})
    return pd.DataFrame(rows)


def test_requirements_law_and_fit():
    req = boundary.requirements(_runs(), fraction=0.9)
    assert set(req["method"]) == {"Random", "DsCo"} and (req["target"] == 90).all()
    r = req.set_index(["config", "method"])["required"]
    assert r[("a", "DsCo")] < r[("a", "Random")] < r[("b", "Random")]
    assert r[("b", "Random")] == math.inf                         # 40 + 15·3 = 85 < 90
    curve = boundary.law(req)
    d = curve[curve["method"] == "Random"].set_index("H")
    assert d.loc[1, "reached"] == 0.5 and d.loc[2, "reached"] == 0.0 and math.isnan(d.loc[2, "ipc"])
    dsco_ = curve[curve["method"] == "DsCo"].set_index("H")["ipc"]
    assert dsco_[2] == pytest.approx(max(r[("a", "DsCo")], r[("b", "DsCo")]))
    assert dsco_[1] == pytest.approx((r[("a", "DsCo")] + r[("b", "DsCo")]) / 2)
    with pytest.raises(ValueError, match="fraction"):
        boundary.requirements(_runs(), fraction=1.5)


def test_a_method_that_never_reaches_the_target_is_not_measured():
    req = pd.DataFrame({"method": ["Random", "DsCo"] * 3, "config": list("aabbcc"),
                        "required": [1.0, math.inf, 2.0, math.inf, 3.0, math.inf]})
    curve = boundary.law(req)
    fits = boundary.fit(curve)
    assert list(fits["method"]) == ["Random", "DsCo"] and math.isnan(fits.set_index("method").loc["DsCo", "a"])
    found = boundary.claims(curve, fits, req, draws=20)
    assert found["required IPC grows linearly with H (DsCo)"][0] == "not measured"
    assert found["DsCo's slope is below Random's"][0] == "not measured"


def test_fit_recovers_a_line_and_needs_three_points():
    curve = pd.DataFrame({"method": ["X"] * 4 + ["Y"] * 2, "H": [1, 2, 3, 4, 1, 2], "ipc": [3, 5, 7, 9, 1, 2]})
    f = boundary.fit(curve).set_index("method")
    assert f.loc["X", "a"] == pytest.approx(2) and f.loc["X", "b"] == pytest.approx(1)
    assert f.loc["X", "r2"] == pytest.approx(1) and f.loc["X", "n"] == 4
    assert math.isnan(f.loc["Y", "a"])


def test_law_samples_subsets_when_there_are_many():
    req = pd.DataFrame({"method": "M", "config": list("abcdefghij"), "required": np.arange(1.0, 11.0)})
    curve = boundary.law(req, max_subsets=20, seed=0)
    assert curve.loc[curve["H"] == 5, "subsets"].item() == 20                # C(10, 5) = 252 > 20: sampled
    assert curve.loc[curve["H"] == 10, "ipc"].item() == 10.0 and curve.loc[curve["H"] == 1, "ipc"].item() == 5.5


def test_evaluate_pool_trains_every_set_and_the_full_split_under_every_configuration(tmp_path):
    ds = datasets.get("digits", "smoke")
    sets = {("Random", 1): surrogates.make("random", 1, 0, dataset=ds).data}
    pool = boundary.configurations(["convnet"], optimisers=["SGD"])
    runs = boundary.evaluate_pool(sets, ds.train(), pool, ds, repeats=1, cache_dir=tmp_path, progress=False)
    assert sorted(runs["config"].unique()) == sorted(c.name for c in pool)
    assert set(zip(runs["method"], runs["ipc"])) == {("Random", 1), ("full", 0)} and len(runs) == 4
    assert runs["acc"].between(0, 100).all()


def test_claims_and_slope_gap_judge_the_fits():
    rows = []
    for i, c in enumerate("abcdef"):            # DsCo needs half of Random's IPC under every configuration
        rows += [{"config": c, "method": "Random", "required": 2.0 + 3 * i},
                 {"config": c, "method": "DsCo", "required": 1.0 + 1.5 * i}]
    req = pd.DataFrame(rows)
    curve = boundary.law(req)
    found = boundary.claims(curve, boundary.fit(curve), req, draws=50)
    assert found["required IPC grows linearly with H (Random)"][0] in ("holds", "does not hold")
    verdict, numbers = found["DsCo's slope is below Random's"]
    assert verdict == "holds" and "95 % bootstrap over 6 configurations" in numbers
    gap = boundary.slope_gap(req, draws=50)
    assert gap["hi"] < 0 and gap["lo"] <= gap["diff"] <= gap["hi"] and gap["draws"] == 50
    same = req.assign(required=np.where(req["method"] == "DsCo", req["required"] * 2, req["required"]))
    assert boundary.claims(boundary.law(same), boundary.fit(boundary.law(same)), same, draws=50)[
        "DsCo's slope is below Random's"][0] in ("within noise", "does not hold")
