"""A batch's trace: what the runner and the kernels record, and how it is read."""

import json
import time

import pytest
from test_runner import make_notebook

from dsco import runner, trace

EVENTS = """from dsco import trace
import time
for key in ("a", "b", "a"):  # "a" twice: computed again instead of read back
    t0 = time.time()
    time.sleep(0.05)
    trace.event("train", t0, False, arch="convnet", ipc=1.0, key=key)
trace.event("synth", time.time(), True, method="dsco", ipc=1.0, key="s")
"""


@pytest.fixture(autouse=True)
def fixed_sources(monkeypatch):
    monkeypatch.setattr(runner, "sources_digest", lambda: "0" * 64)


def test_event_is_a_no_op_outside_a_traced_batch(tmp_path, monkeypatch):
    monkeypatch.delenv(trace.FOLDER_VAR, raising=False)
    trace.event("train", time.time(), False, arch="x")  # nothing to write to, nothing raised
    monkeypatch.setenv(trace.FOLDER_VAR, str(tmp_path))
    monkeypatch.setenv(trace.NOTEBOOK_VAR, "31_x")
    trace.event("synth", time.time() - 1, False, method="dsco", ipc=1)
    rows = [json.loads(line) for f in tmp_path.glob("events-*.jsonl") for line in f.open()]
    assert len(rows) == 1 and rows[0]["notebook"] == "31_x" and rows[0]["t1"] - rows[0]["t0"] >= 1
    with pytest.raises(ValueError, match="unknown trace event kind"):
        trace.event("lunch", time.time(), False)


def test_a_traced_batch_records_notebooks_cores_and_what_the_kernels_computed(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    make_notebook(nbs / "00_setup.ipynb", "x = 1")
    make_notebook(nbs / "10_work.ipynb", EVENTS)
    make_notebook(nbs / "20_idle.ipynb", "import time\ntime.sleep(2.5)")
    path = tmp_path / "trace.json"
    runner.run(folder=nbs, runs_dir=tmp_path / "runs", progress=False, log=None, jobs=2, trace=path)
    t = trace.load(path)
    names = list(t.notebooks["notebook"])  # by start: the setup first, then two at once
    assert names[0] == "00_setup" and sorted(names[1:]) == ["10_work", "20_idle"]
    assert (t.notebooks["status"] == "executed").all() and t.wall_s >= 2.5
    assert "batch cores" in t.cpu and len(t.cpu) >= 1 and (t.cpu["batch cores"] >= 0).all()
    rows = trace.by_notebook(t).set_index("notebook")
    assert rows.loc["10_work", "trainings"] == 3 and rows.loc["10_work", "sets_cached"] == 1
    assert rows.loc["10_work", "training_s"] >= 0.15 and rows.loc["20_idle", "trainings"] == 0
    assert rows.loc["20_idle", "other_s"] >= 2.5
    trained = trace.trainings(t).iloc[0]
    assert (trained["arch"], trained["runs"]) == ("convnet", 3)
    again = trace.repeated(t)
    assert again[["kind", "times", "notebooks"]].values.tolist() == [["train", 2, "10_work"]]
    fig = trace.timeline(t, "tiny")
    assert len(fig.axes) == 2
    # a rerun skips every notebook (cached) and says so in its trace
    runner.run(folder=nbs, runs_dir=tmp_path / "runs", progress=False, log=None, jobs=2, trace=path)
    assert set(trace.load(path).notebooks["status"]) == {"skipped"}


def test_a_batch_stopped_midway_leaves_the_trace_of_what_it_finished(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    make_notebook(nbs / "00_setup.ipynb", "x = 1")
    make_notebook(nbs / "10_work.ipynb", EVENTS)
    make_notebook(nbs / "20_broken.ipynb", "raise RuntimeError('stop here')")
    make_notebook(nbs / "30_never.ipynb", "x = 3")  # the batch stops before its turn
    path = tmp_path / "trace.json"
    with pytest.raises(runner.NotebookFailed):
        runner.run(folder=nbs, runs_dir=tmp_path / "runs", progress=False, log=None, trace=path)
    t = trace.load(path)
    assert t.meta["partial"] is True  # closed on the runner's way out, one notebook short
    assert t.meta["notebooks"] == 4 and t.meta["date"] and "commit" in t.meta
    assert dict(zip(t.notebooks["notebook"], t.notebooks["status"])) == {
        "00_setup": "executed",
        "10_work": "executed",
        "20_broken": "failed",
    }
    tracer = runner._Tracer(tmp_path / "killed.json", {"jobs": 1, "notebooks": 2})
    tracer.ran("10_work", "executed", time.time() - 1)  # then the process dies: no close()
    t = trace.load(tmp_path / "killed.json")
    assert t.meta["partial"] is True and list(t.notebooks["notebook"]) == ["10_work"]
    assert "Partial: the batch stopped after" in trace.describe(t) and "(10)" in trace.describe(t)
    tracer.sampler.stop()


def test_the_recorded_before_trace_reads_and_sums(tmp_path):
    """The digits paper batch's trace shipped in data/bench: every notebook, its time split."""
    from dsco import ROOT

    t = trace.load(ROOT / "data" / "bench" / "batch_digits_paper_before.json")
    row = trace.summary(t)
    assert row["notebooks"] == 25 and row["trainings"] > 100 and row["wall_min"] > 60
    assert (
        row["synthesis_min"] + row["training_min"] + row["other_min"] > row["wall_min"]
    )  # 2 cores
    fig = trace.shares(t, "before")
    assert len(fig.axes[0].patches) == 3 * 25


def test_recorded_traces_are_found_described_and_shown(tmp_path, monkeypatch):
    import IPython.display

    from dsco import ROOT

    (tmp_path / "batch_x.json").write_bytes(
        (ROOT / "data" / "bench" / "batch_digits_paper_before.json").read_bytes()
    )
    (tmp_path / "other.json").write_text("{}")  # not a batch trace: ignored
    found = trace.recorded(tmp_path)
    assert list(found) == ["batch_x"]
    text = trace.describe(found["batch_x"], "batch_x")
    assert text.startswith("**batch_x** (2026-12-04, commit `b8f57cb`, paper profile of digits)")
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    trace.show(found["batch_x"], "batch_x")
    assert shown[0].data == text and len(shown) == 3  # the line, trainings, repeated


def test_work_counts_what_a_batch_computed_and_what_it_stood_on(tmp_path):
    """A batch rerun from caches: the entries it read back, each counted once, with the seconds
    they took when computed; an entry computed again in the batch is not counted as read back."""
    import pandas as pd
    import torch

    (tmp_path / "evaluate").mkdir()
    (tmp_path / "surrogates").mkdir()
    (tmp_path / "evaluate" / "t1.json").write_text(json.dumps({"wall_s": 9.0}))
    (tmp_path / "evaluate" / "t2.json").write_text(json.dumps({"wall_s": 100.0}))
    torch.save({"x": torch.zeros(1), "wall_s": 4.0}, tmp_path / "surrogates" / "digits-a-s1.pt")
    events = pd.DataFrame(
        [
            dict(kind="train", cached=True, key="t1", seconds=0.0),
            dict(kind="train", cached=True, key="t1", seconds=0.0),  # read twice: counted once
            dict(kind="train", cached=True, key="t2", seconds=0.0),
            dict(kind="train", cached=False, key="t2", seconds=3.0),  # computed here as well
            dict(kind="student", cached=False, key=None, seconds=2.0),
            dict(kind="synth", cached=True, key="s1", seconds=0.0),
            dict(kind="synth", cached=True, key="gone", seconds=0.0),  # not in the cache: 0 s
        ]
    )
    t = trace.Trace({}, pd.DataFrame(), pd.DataFrame(), events)
    assert trace.work(t, tmp_path) == {
        "sets": {"computed": 0, "cached": 2},
        "trainings": {"computed": 2, "cached": 3},
        "computed_s": 5.0,
        "cached_s": 13.0,
    }
