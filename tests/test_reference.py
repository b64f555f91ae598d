"""Reference runs: shipping a finished batch, comparing a rerun's claims and numbers with it, the
size budget, and ``dsco verify``'s exit status."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from dsco import ROOT, cli, reference, results, runner, scorecard
from dsco import verdicts as V

NB = "31_table01_02_low_ipc"


def _fake_batch(tmp_path, dataset="digits", profile="paper", value=70.0):
    """build/runs and build/results of a finished batch: every numbered notebook executed, one
    result table with its sidecar, and one verdict file."""
    runs = tmp_path / "build" / "runs" / dataset / profile
    res = tmp_path / "build" / "results"
    runs.mkdir(parents=True)
    for p in runner.notebooks():
        meta = {
            "metadata": {"papermill": {"duration": 12.5, "end_time": "2026-12-05T01:00:00"}},
            "cells": [],
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (runs / p.name).write_text(json.dumps(meta))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSCO_RESULTS", str(res))
        mp.setenv("DSCO_NOTEBOOK", NB)
        results.start(dataset, profile, 0, "cpu")
        results.save(
            pd.DataFrame({"method": ["A", "B"], "acc": [value, 60.0], "wall_s": [1.0, 2.0]}),
            "table01_02_stats",
        )
        scorecard.record({"A > B": V.superiority(_runs(3.0), "A", "B")}, NB, "§5", show=False)
    return tmp_path / "build" / "runs", res


def _runs(gap, seed=0, reps=5):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        [
            dict(
                method=m,
                arch="convnet",
                ipc=1,
                replicate=r,
                acc=70 + r + (gap + rng.normal(0, 0.3) if m == "A" else 0),
            )
            for r in range(reps)
            for m in "AB"
        ]
    )


def test_ship_copies_a_finished_batch_with_its_run_record(tmp_path, monkeypatch):
    import dsco

    runs, res = _fake_batch(tmp_path)
    monkeypatch.setattr(dsco, "CACHE", tmp_path / "no-cache")  # what the batch read back: gone
    trace = ROOT / "data" / "bench" / "batch_digits_paper_before.json"
    folder = reference.ship(
        "digits", "paper", runs_dir=runs, results_dir=res, folder=tmp_path / "ref", trace=trace
    )
    assert folder == tmp_path / "ref" / "runs" / "digits" / "paper"
    assert sorted(p.stem for p in folder.glob("*.ipynb")) == [p.stem for p in runner.notebooks()]
    shipped = tmp_path / "ref" / "results" / "digits" / "paper"
    assert {p.name for p in shipped.iterdir()} >= {"table01_02_stats.csv", f"verdicts_{NB}.csv"}
    record = json.loads((folder / "run.json").read_text())
    assert record["notebook_seconds"][NB] == 12.5 and record["machine"]["cores"] >= 1
    assert record["packages"]["torch"] and record["commits"]
    assert record["jobs"] == 2 and record["batch_wall_s"] > 3600  # from the batch's trace
    assert record["work"]["trainings"]["computed"] > 100 and record["work"]["cached_s"] == 0
    assert reference.collect("digits", "paper", tmp_path / "ref")["claim"].tolist() == ["A > B"]
    assert 0 < reference.size_mb("digits", tmp_path / "ref") < 1


def test_describe_says_what_a_reference_run_stood_on():
    record = {
        "notebook_seconds": {"10_a": 1.0, "20_b": 2.0},
        "machine": {"cores": 2, "cpu": "AMD EPYC"},
        "batch_wall_s": 1429.5,
        "jobs": 2,
        "work": {
            "sets": {"computed": 0, "cached": 691},
            "trainings": {"computed": 89, "cached": 1197},
            "computed_s": 1332.2,
            "cached_s": 13110.2,
        },
    }
    line = reference.describe(record)
    assert line.startswith("this run is the reference: 2 notebooks, 2 cores of AMD EPYC, 24 min")
    assert "1197 trainings read back from caches holding 3.6 core-hours" in line
    assert reference.describe({}) == "this run is the reference (no run record)"


def test_ship_refuses_a_partial_batch_and_a_reference_over_budget(tmp_path, monkeypatch):
    runs, res = _fake_batch(tmp_path)
    reference.ship("digits", "paper", runs_dir=runs, results_dir=res, folder=tmp_path / "ref")
    (runs / "digits" / "paper" / f"{NB}.ipynb").unlink()
    with pytest.raises(reference.ReferenceError, match=f"incomplete \\({NB} not executed\\)"):
        reference.ship("digits", "paper", runs_dir=runs, results_dir=res, folder=tmp_path / "ref")
    runs2, res2 = _fake_batch(tmp_path / "again", value=71.0)
    monkeypatch.setattr(reference, "BUDGET_MB", 1e-4)
    with pytest.raises(reference.ReferenceError, match="over the 0.0001 MB budget"):
        reference.ship("digits", "paper", runs_dir=runs2, results_dir=res2, folder=tmp_path / "ref")
    kept = pd.read_csv(tmp_path / "ref" / "results" / "digits" / "paper" / "table01_02_stats.csv")
    assert kept["acc"].tolist() == [70.0, 60.0]  # the previous reference stays
    assert not list((tmp_path / "ref").glob(".staging-*"))


def test_the_shipped_references_fit_their_budget():
    for dataset in {
        p.name
        for kind in ("runs", "results")
        for p in (reference.REFERENCE / kind).glob("*")
        if p.is_dir()
    }:
        assert reference.size_mb(dataset) <= reference.BUDGET_MB, dataset


def _long(runs_by_claim, dataset="digits"):
    rows = []
    for claim, v in runs_by_claim.items():
        rows.append(
            {
                "dataset": dataset,
                "notebook": NB,
                "claim": claim,
                "verdict": v.verdict,
                "rule": v.rule,
                "cells": v.cells_json(),
            }
        )
    return pd.DataFrame(rows)


def test_compare_marks_reproduced_changed_new_and_flipped():
    ref = _long(
        {
            "A > B": V.superiority(_runs(3.0), "A", "B"),
            "B > A": V.superiority(_runs(3.0), "B", "A"),
            "noise": V.superiority(_runs(0.0, seed=1), "A", "B"),
        }
    )
    same = _long(
        {
            "A > B": V.superiority(_runs(3.0), "A", "B"),
            "B > A": V.superiority(_runs(3.0), "B", "A"),
            "noise": V.superiority(_runs(0.0, seed=1), "A", "B"),
            "extra": V.superiority(_runs(1.0), "A", "B"),
        }
    )
    out = reference.compare(same, ref).set_index("claim")
    assert out.loc[["A > B", "B > A", "noise"], "status"].tolist() == ["reproduced"] * 3
    assert out.loc["extra", "status"] == "new" and not out["flipped"].any()
    # a deliberately changed training seed: the same claims on other draws
    other = _long(
        {
            "A > B": V.superiority(_runs(6.0, seed=9), "A", "B"),  # same verdict, moved
            "B > A": V.superiority(_runs(0.0, seed=9), "B", "A"),  # decided -> undecided
            "noise": V.superiority(_runs(0.0, seed=9), "A", "B"),
        }
    )  # overlapping intervals
    out = reference.compare(other, ref).set_index("claim")
    assert out.loc["A > B", "status"] == "changed" and "against [" in out.loc["A > B", "why"]
    assert not out.loc["A > B", "flipped"]
    assert out.loc["B > A", "status"] == "changed" and out.loc["B > A", "flipped"]
    assert out.loc["noise", "status"] == "reproduced"


def test_a_claim_on_a_timing_is_compared_by_its_verdict_alone():
    """A timing moves with the machine's load beyond its replicates' interval: the same verdict
    reproduces it; an accuracy claim whose estimate moved as much is changed."""

    def slopes(per_step, value):
        rows = [
            {"replicate": r, "n": n, value: 100 - per_step * n + r}
            for r in range(5)
            for n in (1, 2, 4, 8)
        ]
        return V.trend(pd.DataFrame(rows), "n", value)

    ref = _long({"timed": slopes(1.0, "microseconds"), "acc": slopes(1.0, "acc")})
    new = _long({"timed": slopes(3.0, "microseconds"), "acc": slopes(3.0, "acc")})
    out = reference.compare(new, ref).set_index("claim")
    assert out.loc["timed", "status"] == "reproduced" and out.loc["acc", "status"] == "changed"
    assert reference.timed("trend: slope of s_per_image on ipc per replicate below 0")
    assert not reference.timed("trend: slope of acc on ipc per replicate below 0")


def test_a_moved_smoke_number_is_reported_until_the_reference_is_updated(tmp_path):
    runs, res = _fake_batch(tmp_path)
    reference.ship("digits", "paper", runs_dir=runs, results_dir=res, folder=tmp_path / "ref")
    shipped = tmp_path / "ref" / "results" / "digits" / "paper"
    assert reference.compare_numbers(res / "digits" / "paper", shipped).empty
    runs2, res2 = _fake_batch(tmp_path / "moved", value=70.5)
    moved = reference.compare_numbers(res2 / "digits" / "paper", shipped)
    assert moved[["notebook", "result", "column", "row", "reference", "new"]].values.tolist() == [
        [NB, "table01_02_stats.csv", "acc", 0, 70.0, 70.5]
    ]  # wall_s moved too: not compared
    reference.ship("digits", "paper", runs_dir=runs2, results_dir=res2, folder=tmp_path / "ref")
    assert reference.compare_numbers(res2 / "digits" / "paper", shipped).empty  # updated
    (res2 / "digits" / "paper" / "table01_02_stats.csv").unlink()
    gone = reference.compare_numbers(res2 / "digits" / "paper", shipped)
    assert gone["new"].tolist() == ["missing"]
    only = reference.compare_numbers(res2 / "digits" / "paper", shipped, notebooks={"10_x"})
    assert only.empty  # the tables of other notebooks than those rerun are not compared


def test_times_memory_and_ratios_of_times_are_not_compared():
    volatile = ("wall_s", "peak memory (MB)", "generation IPC1 (s)", "cost ratio paper / candidate")
    kept = ("acc", "ratio %", "doped with score > 0", "costly", "mmd2")
    assert all(reference.VOLATILE_COLUMNS.search(c) for c in volatile)
    assert not any(reference.VOLATILE_COLUMNS.search(c) for c in kept)


def test_same_machine_reads_the_run_record():
    from dsco import trace

    here = trace.machine()
    assert reference.same_machine({"machine": here})
    assert not reference.same_machine({"machine": here | {"cpu": "another CPU"}})


def test_verify_exits_1_when_a_decided_verdict_flips(tmp_path, monkeypatch, capsys):
    runs, res = _fake_batch(tmp_path)
    reference.ship("digits", "paper", runs_dir=runs, results_dir=res, folder=tmp_path / "ref")
    monkeypatch.setattr(reference, "REFERENCE", tmp_path / "ref")
    gap = {"value": 3.0}

    def rerun(dataset, profile, only, force, jobs, extra, runs_dir):
        """Stands in for the batch: records the claim as the notebook would, in the scratch results
        the kernels would see (DSCO_RESULTS)."""
        import os

        assert force and os.environ["DSCO_CACHE"].startswith(str(tmp_path / "scratch"))
        results.start(dataset, profile, 0, "cpu")
        acc = 70.0 if gap["value"] > 0 else 65.0
        results.save(
            pd.DataFrame({"method": ["A", "B"], "acc": [acc, 60.0], "wall_s": [9.0, 9.0]}),
            "table01_02_stats",
        )
        scorecard.record(
            {"A > B": V.superiority(_runs(gap["value"]), "A", "B")}, NB, "§5", show=False
        )
        return [runner.Result(NB, "executed", 1.0, runs_dir / f"{NB}.ipynb")]

    monkeypatch.setattr(runner, "run", rerun)
    args = ["verify", "--dataset", "digits", "--only", "31", "--scratch", str(tmp_path / "scratch")]
    monkeypatch.setenv("DSCO_NOTEBOOK", NB)
    assert cli.main(args) == 0
    out = capsys.readouterr().out  # the timings differ; timings are not compared
    assert "1 reproduced, 0 changed, 0 new; 0 decided verdict(s) flipped; 0 number(s)" in out
    gap["value"] = -3.0
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert "1 decided verdict(s) flipped; 2 number(s) moved beyond rounding" in out
    assert re.search(r"table01_02_stats.csv +acc +0 +70.0 +65.0", out)  # the moved number
    monkeypatch.setattr(reference, "REFERENCE", tmp_path / "nothing")
    assert cli.main(args) == 2  # no reference shipped: one line naming the fix
    assert "ship one with `dsco reference ship" in capsys.readouterr().err


def test_the_reference_folder_mirrors_build():
    assert reference.REFERENCE == ROOT / "reference"
