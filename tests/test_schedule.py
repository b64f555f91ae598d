"""The order of a parallel batch: longest first, from executed copies or recorded traces."""

import json

from dsco import schedule


def test_a_parallel_batch_submits_the_longest_notebooks_first(tmp_path):
    """Longest-processing-time first, by the last executed copies' papermill durations; notebooks
    never executed go first; a second folder (the shipped reference) fills in."""

    def executed(folder, stem, seconds):
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"metadata": {"papermill": {"duration": seconds}}, "cells": []}
        (folder / f"{stem}.ipynb").write_text(json.dumps(meta))

    paths = [tmp_path / f"{s}.ipynb" for s in ("10_a", "11_b", "12_c", "13_d")]
    runs, shipped = tmp_path / "runs", tmp_path / "reference"
    executed(runs, "10_a", 5.0)
    executed(runs, "11_b", 50.0)
    executed(shipped, "12_c", 20.0)
    executed(shipped, "11_b", 1.0)  # the local run wins
    assert schedule.previous_seconds("11_b", [runs, shipped]) == 50.0
    assert schedule.previous_seconds("13_d", [runs, shipped]) is None
    order = [p.stem for p in schedule.longest_first(paths, [runs, shipped])]
    assert order == ["13_d", "11_b", "12_c", "10_a"]
    order = [p.stem for p in schedule.longest_first(paths, [runs, shipped], {"13_d": 30.0})]
    assert order == ["11_b", "13_d", "12_c", "10_a"]  # a recorded trace knows 13_d
    order = [p.stem for p in schedule.longest_first(paths, [runs, shipped], {"12_c": 90.0})]
    assert order == ["13_d", "12_c", "11_b", "10_a"]  # 12_c's copy read caches: the trace's 90 s


def test_traced_seconds_reads_the_newest_recorded_trace_of_the_batch(tmp_path):
    def recorded(name, started, rows, dataset="digits"):
        meta = {"dataset": dataset, "profile": "paper", "started": started}
        notebooks = [
            {"notebook": n, "status": s, "start": started, "end": started + w} for n, s, w in rows
        ]
        blob = {"meta": meta, "notebooks": notebooks, "cpu": [], "events": []}
        (tmp_path / f"batch_{name}.json").write_text(json.dumps(blob))

    recorded("old", 100.0, [("10_a", "executed", 5.0), ("11_b", "executed", 7.0)])
    recorded("new", 900.0, [("10_a", "executed", 9.0), ("11_b", "failed", 1.0)])
    recorded("other", 999.0, [("10_a", "executed", 1.0)], dataset="mnist")
    seconds = schedule.traced_seconds("digits", "paper", tmp_path)
    assert seconds == {"10_a": 9.0, "11_b": 7.0}  # a failed notebook keeps its older time
    assert schedule.traced_seconds("folder", "paper", tmp_path) == {}


def test_reference_dirs_are_the_shipped_runs_of_the_batch(tmp_path, monkeypatch):
    from dsco import reference

    assert schedule.REFERENCE == reference.REFERENCE  # one definition, in dsco/__init__
    monkeypatch.setattr(schedule, "REFERENCE", tmp_path)
    assert schedule.reference_dirs("digits", "paper") == []
    (tmp_path / "runs" / "digits" / "paper").mkdir(parents=True)
    assert schedule.reference_dirs("digits", "paper") == [tmp_path / "runs" / "digits" / "paper"]
    assert schedule.reference_dirs("mnist", "paper") == []


def test_a_first_batch_on_a_new_dataset_orders_by_another_datasets_times(tmp_path, monkeypatch):
    """A notebook never run on this dataset takes its time on another dataset (the longest of
    its shipped copy and recorded traces there), scaled by the two datasets' ratio over the
    notebooks both know; with nothing known anywhere it goes first."""
    monkeypatch.setattr(schedule, "REFERENCE", tmp_path / "reference")
    shipped = tmp_path / "reference" / "runs" / "digits" / "paper"
    shipped.mkdir(parents=True)
    for stem, seconds in {"10_a": 10.0, "11_b": 100.0, "12_c": 40.0, "13_d": 1.0}.items():
        meta = {"metadata": {"papermill": {"duration": seconds}}, "cells": []}
        (shipped / f"{stem}.ipynb").write_text(json.dumps(meta))
    traces = tmp_path / "bench"
    traces.mkdir()
    blob = {
        "meta": {"dataset": "digits", "profile": "paper", "started": 1.0},
        "notebooks": [{"notebook": "13_d", "status": "executed", "start": 0.0, "end": 70.0}],
        "cpu": [],
        "events": [],
    }
    (traces / "batch_digits.json").write_text(json.dumps(blob))
    elsewhere = schedule.elsewhere_seconds("mnist", "paper", traces)
    assert elsewhere == {"10_a": 10.0, "11_b": 100.0, "12_c": 40.0, "13_d": 70.0}
    assert schedule.elsewhere_seconds("digits", "paper", traces) == {}  # not its own times
    assert schedule.elsewhere_seconds("mnist", "smoke", traces) == {}

    paths = [tmp_path / f"{s}.ipynb" for s in ("10_a", "11_b", "12_c", "13_d", "14_e")]
    runs = tmp_path / "runs"
    runs.mkdir()
    meta = {"metadata": {"papermill": {"duration": 300.0}}, "cells": []}
    (runs / "12_c.ipynb").write_text(json.dumps(meta))  # mnist runs 12_c at 7.5 times digits
    order = [p.stem for p in schedule.longest_first(paths, [runs], None, elsewhere)]
    # guesses: 11_b 750 s, 13_d 525 s, 10_a 75 s; 14_e known nowhere goes first
    assert order == ["14_e", "11_b", "13_d", "12_c", "10_a"]
    alone = tmp_path / "alone"
    alone.mkdir()
    meta = {"metadata": {"papermill": {"duration": 50.0}}, "cells": []}
    (alone / "14_e.ipynb").write_text(json.dumps(meta))  # known here only: no ratio to take
    order = [p.stem for p in schedule.longest_first(paths, [alone], None, elsewhere)]
    # nothing in common, ratio 1: 11_b 100 s, 13_d 70 s, 14_e 50 s (its own), 12_c 40 s, 10_a 10 s
    assert order == ["11_b", "13_d", "14_e", "12_c", "10_a"]
