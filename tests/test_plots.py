"""The one save helper: file + JSON provenance sidecar; parameter validation; seeding."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dsco import plots  # noqa: E402


def test_start_validates_and_seeds():
    params = plots.start("digits", "smoke", 7, "cpu", extra_knob=3)
    assert params == dict(dataset="digits", profile="smoke", seed=7, device="cpu", extra_knob=3)
    a = (np.random.rand(), torch.rand(1).item())
    plots.start("digits", "smoke", 7, "cpu")
    assert (np.random.rand(), torch.rand(1).item()) == a
    for bad, match in [(("mnist", "smoke"), "unknown dataset 'mnist'"),
                       (("digits", "fast"), "unknown profile 'fast'")]:
        with pytest.raises(ValueError, match=match):
            plots.start(*bad, 0, "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        plots.start("digits", "smoke", 0, "tpu")


def test_save_figure_and_table_with_sidecar(tmp_path, monkeypatch):
    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    plots.start("digits", "paper", 1, "cpu")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = plots.save(fig, "fig_test")
    assert png == tmp_path / "digits" / "paper" / "fig_test.png" and png.stat().st_size > 1000
    meta = json.loads(png.with_suffix(".json").read_text())
    assert meta["file"] == "fig_test.png" and meta["seed"] == 1
    assert meta["params"]["profile"] == "paper" and meta["packages"]["torch"]
    assert meta["wall_time_s"] >= 0 and "git_commit" in meta
    csv = plots.save(pd.DataFrame({"a": [1, 2]}), "table_test")
    assert pd.read_csv(csv, index_col=0)["a"].tolist() == [1, 2]
    plt.close(fig)


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="Figure or a pandas DataFrame"):
        plots.save([1, 2], "x", folder=tmp_path)
    with pytest.raises(ValueError, match="plain file stem"):
        plots.save(pd.DataFrame(), "../escape", folder=tmp_path)
    assert list(tmp_path.iterdir()) == []
