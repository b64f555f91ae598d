"""Run records and results: parameters checked, everything seeded, one save helper (file + JSON
provenance sidecar), another dataset's saved result."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dsco import results  # noqa: E402


def test_start_validates_and_seeds():
    params = results.start("digits", "smoke", 7, "cpu", extra_knob=3)
    assert params == dict(dataset="digits", profile="smoke", seed=7, device="cpu", extra_knob=3)
    a = (np.random.rand(), torch.rand(1).item())
    results.start("digits", "smoke", 7, "cpu")
    assert (np.random.rand(), torch.rand(1).item()) == a
    for bad, match in [
        (("cifar10", "smoke"), "unknown dataset 'cifar10'"),
        (("digits", "fast"), "unknown profile 'fast'"),
    ]:
        with pytest.raises(ValueError, match=match):
            results.start(*bad, 0, "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        results.start("digits", "smoke", 0, "tpu")


def test_save_figure_and_table_with_sidecar(tmp_path, monkeypatch):
    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    results.start("digits", "paper", 1, "cpu")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = results.save(fig, "fig_test")
    assert png == tmp_path / "digits" / "paper" / "fig_test.png" and png.stat().st_size > 1000
    meta = json.loads(png.with_suffix(".json").read_text())
    assert meta["file"] == "fig_test.png" and meta["seed"] == 1
    assert meta["params"]["profile"] == "paper" and meta["packages"]["torch"]
    assert meta["wall_time_s"] >= 0 and "git_commit" in meta
    csv = results.save(pd.DataFrame({"a": [1, 2]}), "table_test")
    assert pd.read_csv(csv, index_col=0)["a"].tolist() == [1, 2]
    plt.close(fig)


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="Figure or a pandas DataFrame"):
        results.save([1, 2], "x", folder=tmp_path)
    with pytest.raises(ValueError, match="plain file stem"):
        results.save(pd.DataFrame(), "../escape", folder=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_repeated_name(tmp_path, monkeypatch):
    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    results.start("digits", "smoke", 0, "cpu")
    results.save(pd.DataFrame({"a": [1]}), "table_once")
    with pytest.raises(ValueError, match="'table_once' was already saved"):
        results.save(pd.DataFrame({"a": [2]}), "table_once")
    assert pd.read_csv(tmp_path / "digits" / "smoke" / "table_once.csv", index_col=0)[
        "a"
    ].tolist() == [1]
    results.save(
        pd.DataFrame({"a": [3]}), "table_once", folder=tmp_path / "elsewhere"
    )  # an explicit folder: allowed
    results.start("digits", "smoke", 0, "cpu")  # a new run starts a new list of names
    results.save(pd.DataFrame({"a": [4]}), "table_once")


def test_beside_other_lines_up_another_datasets_saved_result(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    results.start("digits", "smoke", 0)
    ours = pd.DataFrame({"ipc": [1, 2], "mean": [50.0, 60.0]})
    assert "compare_with = 'digits'" in results.beside_other(
        ours, "t", "digits", on="ipc", values=["mean"]
    )
    assert "run `dsco run --dataset mnist --profile smoke` first" in results.beside_other(
        ours, "t", "mnist", "ipc", ["mean"]
    )
    (tmp_path / "mnist" / "smoke").mkdir(parents=True)
    pd.DataFrame({"ipc": [2, 5], "mean": [70.0, 80.0]}).to_csv(
        tmp_path / "mnist" / "smoke" / "t.csv"
    )
    both = results.beside_other(ours, "t", "mnist", on="ipc", values=["mean"])
    assert list(both.columns) == ["ipc", "mean (digits)", "mean (mnist)"] and len(both) == 3
    assert both.set_index("ipc").loc[2].tolist() == [60.0, 70.0]


def test_results_dir_without_a_run_names_the_fix(monkeypatch):
    monkeypatch.setattr(results, "_RUN", {})
    with pytest.raises(RuntimeError, match=r"call dsco.results.start"):
        results.results_dir()
    with pytest.raises(RuntimeError, match="no run started"):
        results.save(pd.DataFrame({"a": [1]}), "orphan")
    assert results.current("dataset") is None
    assert results.results_dir("mnist", "paper").parts[-2:] == ("mnist", "paper")
