"""The figure helpers: image grids for grey and RGB images, Fig. 2 and Fig. 1's picture."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dsco import plots  # noqa: E402


def test_image_grid_grey_and_rgb():
    grey = torch.linspace(-1, 1, 3 * 64).reshape(3, 1, 8, 8)
    g = plots.image_grid(grey)
    assert g.ndim == 2 and g.shape == (8 + 2, 3 * (8 + 1) + 1)  # one row, 1-px padding
    assert g.min() >= 0 and g.max() <= 1
    assert np.allclose(g[1:9, 1:9], ((grey[0, 0] + 1) / 2).numpy())  # [-1, 1] -> [0, 1]
    assert plots.image_grid(grey, nrow=1).shape == (3 * (8 + 1) + 1, 8 + 2)  # one image per row
    rgb = torch.rand(4, 3, 6, 6) * 2 - 1
    c = plots.image_grid(rgb, nrow=2, pad=0)
    assert c.shape == (12, 12, 3) and np.allclose(
        c[:6, 6:], ((rgb[1].permute(1, 2, 0) + 1) / 2).numpy()
    )
    assert plots.image_grid(torch.full((1, 3, 4, 4), 5.0)).max() == 1  # clamped


def test_show_images_and_mosaic():
    fig, ax = plt.subplots()
    plots.show_images(ax, torch.zeros(2, 1, 8, 8), title="digits")
    im = ax.get_images()[0]
    assert (
        im.get_cmap().name == "gray_r"
        and ax.get_title() == "digits"
        and list(ax.get_xticks()) == []
    )
    plt.close(fig)
    fig, ax = plt.subplots()
    plots.show_images(ax, torch.zeros(2, 3, 8, 8))
    assert ax.get_images()[0].get_array().shape == (10, 19, 3)  # RGB as it is
    plt.close(fig)
    fig = plots.mosaic(
        {"random": torch.zeros(3, 1, 8, 8), "DsCo": torch.ones(2, 1, 8, 8)}, title="first per class"
    )
    assert len(fig.axes) == 2 and [a.get_ylabel() for a in fig.axes] == ["random", "DsCo"]
    assert fig._suptitle.get_text() == "first per class"
    plt.close(fig)


def test_first_per_class():
    x = torch.arange(6, dtype=torch.float32).reshape(6, 1, 1, 1)
    y = torch.tensor([2, 0, 2, 1, 0, 1])
    from dsco.data import ImageSet

    s = ImageSet(x, y, ["a", "b", "c"])
    assert plots.first_per_class(s).flatten().tolist() == [
        1,
        3,
        0,
    ]  # class 0, 1, 2: their first image
    assert plots.first_per_class((x, y), k=2).flatten().tolist() == [1, 4, 3, 5, 0, 2]


def test_framework_names_functions_that_exist_and_draws_every_stage():
    import matplotlib.pyplot as plt

    from dsco import datasets

    table = plots.framework_table()
    assert (
        len(table) == sum(len(f) for _, _, f in plots.FRAMEWORK)
        and table["what it does"].str.len().min() > 10
    )
    ds = datasets.get("mnist", "paper")
    fig = plots.framework(ds)
    text = "\n".join(t.get_text() for t in fig.axes[0].texts)
    for _, _, functions in plots.FRAMEWORK:
        assert all(f"dsco.{f}" in text for f in functions)
    assert (
        f"{ds.budget.nopt['num_steps']} denoising steps" in text
        and str(ds.budget.ipcs["trigger"]) in text
    )
    assert "latent-ddpm" in text and "digits-ddpm" in "\n".join(
        t.get_text() for t in plots.framework(datasets.get("digits", "smoke")).axes[0].texts
    )
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
