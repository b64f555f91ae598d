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
    for bad, match in [(("cifar10", "smoke"), "unknown dataset 'cifar10'"),
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


def test_save_refuses_a_repeated_name(tmp_path, monkeypatch):
    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    plots.start("digits", "smoke", 0, "cpu")
    plots.save(pd.DataFrame({"a": [1]}), "table_once")
    with pytest.raises(ValueError, match="'table_once' was already saved"):
        plots.save(pd.DataFrame({"a": [2]}), "table_once")
    assert pd.read_csv(tmp_path / "digits" / "smoke" / "table_once.csv", index_col=0)["a"].tolist() == [1]
    plots.save(pd.DataFrame({"a": [3]}), "table_once", folder=tmp_path / "elsewhere")  # an explicit folder: allowed
    plots.start("digits", "smoke", 0, "cpu")  # a new run starts a new list of names
    plots.save(pd.DataFrame({"a": [4]}), "table_once")


# --- image helpers ------------------------------------------------------------------------------------

def test_image_grid_grey_and_rgb():
    grey = torch.linspace(-1, 1, 3 * 64).reshape(3, 1, 8, 8)
    g = plots.image_grid(grey)
    assert g.ndim == 2 and g.shape == (8 + 2, 3 * (8 + 1) + 1)  # one row, 1-px padding
    assert g.min() >= 0 and g.max() <= 1
    assert np.allclose(g[1:9, 1:9], ((grey[0, 0] + 1) / 2).numpy())  # [-1, 1] -> [0, 1]
    assert plots.image_grid(grey, nrow=1).shape == (3 * (8 + 1) + 1, 8 + 2)  # one image per row
    rgb = torch.rand(4, 3, 6, 6) * 2 - 1
    c = plots.image_grid(rgb, nrow=2, pad=0)
    assert c.shape == (12, 12, 3) and np.allclose(c[:6, 6:], ((rgb[1].permute(1, 2, 0) + 1) / 2).numpy())
    assert plots.image_grid(torch.full((1, 3, 4, 4), 5.0)).max() == 1  # clamped


def test_show_images_and_mosaic():
    fig, ax = plt.subplots()
    plots.show_images(ax, torch.zeros(2, 1, 8, 8), title="digits")
    im = ax.get_images()[0]
    assert im.get_cmap().name == "gray_r" and ax.get_title() == "digits" and list(ax.get_xticks()) == []
    plt.close(fig)
    fig, ax = plt.subplots()
    plots.show_images(ax, torch.zeros(2, 3, 8, 8))
    assert ax.get_images()[0].get_array().shape == (10, 19, 3)  # RGB as it is
    plt.close(fig)
    fig = plots.mosaic({"random": torch.zeros(3, 1, 8, 8), "DsCo": torch.ones(2, 1, 8, 8)}, title="first per class")
    assert len(fig.axes) == 2 and [a.get_ylabel() for a in fig.axes] == ["random", "DsCo"]
    assert fig._suptitle.get_text() == "first per class"
    plt.close(fig)


def test_first_per_class():
    x = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1)
    y = torch.tensor([2, 0, 2, 1, 0, 1])
    from dsco.data import ImageSet

    s = ImageSet(x, y, ["a", "b", "c"])
    assert plots.first_per_class(s).flatten().tolist() == [1, 3, 0]  # class 0, 1, 2: their first image
    assert plots.first_per_class((x, y), k=2).flatten().tolist() == [1, 4, 3, 5, 0, 2]


def test_beside_other_lines_up_another_datasets_saved_result(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    plots.start("digits", "smoke", 0)
    ours = pd.DataFrame({"ipc": [1, 2], "mean": [50.0, 60.0]})
    assert "compare_with = 'digits'" in plots.beside_other(ours, "t", "digits", on="ipc", values=["mean"])
    assert "run `dsco run --dataset mnist --profile smoke` first" in plots.beside_other(ours, "t", "mnist", "ipc", ["mean"])
    (tmp_path / "mnist" / "smoke").mkdir(parents=True)
    pd.DataFrame({"ipc": [2, 5], "mean": [70.0, 80.0]}).to_csv(tmp_path / "mnist" / "smoke" / "t.csv")
    both = plots.beside_other(ours, "t", "mnist", on="ipc", values=["mean"])
    assert list(both.columns) == ["ipc", "mean (digits)", "mean (mnist)"] and len(both) == 3
    assert both.set_index("ipc").loc[2].tolist() == [60.0, 70.0]


def test_carries_over_compares_the_verdicts_of_both_datasets(tmp_path, monkeypatch):
    import pandas as pd

    from dsco import paper

    monkeypatch.setenv("DSCO_RESULTS", str(tmp_path))
    plots.start("digits", "smoke", 0)
    ours = pd.DataFrame({"method": ["A", "B", "A", "B"], "model": "m", "ipc": [1, 1, 5, 5], "mean": [60.0, 50, 80, 70]})
    claims = [("A", "B"), ("B", "A")]

    def counted(t, pairs):   # each claim counted by which mean is larger (dsco.paper.wins)
        return {f"{a} > {b}": paper.finding(*paper.wins(t, a, b)) for a, b in pairs}

    assert "no mnist result" in plots.carries_over(ours, "t", "mnist", lambda t: counted(t, claims))
    (tmp_path / "mnist" / "smoke").mkdir(parents=True)
    ours.assign(mean=[60.0, 50, 60, 70]).to_csv(tmp_path / "mnist" / "smoke" / "t.csv")   # B wins at IPC 5 there
    table = plots.carries_over(ours, "t", "mnist", lambda t: counted(t, claims))
    assert table.to_dict("index") == {
        "A > B": {"digits": "holds", "digits: numbers": "2/2 cells", "mnist": "does not hold",
                  "mnist: numbers": "1/2 cells", "carries over": "no"},
        "B > A": {"digits": "does not hold", "digits: numbers": "0/2 cells", "mnist": "does not hold",
                  "mnist: numbers": "1/2 cells", "carries over": "yes"}}
    missing = plots.carries_over(ours, "t", "mnist", lambda t: counted(t, claims if t["mean"][2] == 80 else []))
    assert missing.loc["A > B", "mnist"] == "not measured" and missing.loc["A > B", "carries over"] == "no"
    most = plots.carries_over(ours, "t", "mnist", lambda t: {"c": ("holds" if t["mean"][2] == 80 else
                                                                   "holds in most cells", "")})
    assert most.loc["c", "carries over"] == "yes"   # holding in every cell or in most: the finding carries over


def test_framework_names_functions_that_exist_and_draws_every_stage():
    import matplotlib.pyplot as plt

    from dsco import datasets

    table = plots.framework_table()
    assert len(table) == sum(len(f) for _, _, f in plots.FRAMEWORK) and table["what it does"].str.len().min() > 10
    ds = datasets.get("mnist", "paper")
    fig = plots.framework(ds)
    text = "\n".join(t.get_text() for t in fig.axes[0].texts)
    for _, _, functions in plots.FRAMEWORK:
        assert all(f"dsco.{f}" in text for f in functions)
    assert f"{ds.budget.nopt['num_steps']} denoising steps" in text and str(ds.budget.ipcs["trigger"]) in text
    assert "latent-ddpm" in text and "digits-ddpm" in "\n".join(
        t.get_text() for t in plots.framework(datasets.get("digits", "smoke")).axes[0].texts)
    plt.close("all")


def test_rkhs_picture_draws_targets_surrogates_and_circles():
    import matplotlib.pyplot as plt

    from dsco import theory

    targets, _ = theory.sample_gaussian_mixture(50, seed=0)
    fig, ax = plt.subplots()
    plots.rkhs_picture(ax, targets, targets[:3], 0.5, "t")
    assert len(ax.patches) == 3 and len(ax.collections) >= 3 and ax.get_title() == "t"
    fig2, ax2 = plt.subplots()
    plots.rkhs_picture(ax2, targets, targets[:3], 0.5, "t", circles=False)
    assert len(ax2.patches) == 0
    plt.close("all")
