"""Figures: the book's style and the figure helpers the notebooks share.

:func:`style` (called by :func:`dsco.results.start`); image helpers for every dataset (grey or RGB,
in [-1, 1]): :func:`image_grid`, :func:`show_images`, :func:`first_per_class`, :func:`mosaic`; the
sweep and NOpt-term panels of the ablation tables (:func:`sweep`, :func:`nopt_terms`); Fig. 2 drawn
from the functions that implement each stage (:func:`framework`, :func:`framework_table`); Fig. 1's
memorize-generalize picture (:func:`rkhs_picture`). Saving goes through :func:`dsco.results.save`.
"""

from __future__ import annotations

import numpy as np


def style() -> None:
    """The book's figure style (seaborn whitegrid, readable fonts)."""
    import matplotlib
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight"})


# --- images -----------------------------------------------------------------------------------
def image_grid(x, nrow: int | None = None, pad: int = 1):
    """Images ``N×C×H×W`` in [-1, 1] tiled by ``torchvision.utils.make_grid`` (``nrow`` per row,
    default all in one row) into one array in [0, 1]: ``H×W`` for grey images, ``H×W×3`` for RGB."""
    import torch
    from torchvision.utils import make_grid

    x = torch.as_tensor(x).detach().float().cpu()
    grid = make_grid(((x + 1) / 2).clamp(0, 1), nrow=nrow or len(x), padding=pad, pad_value=0.35)
    return grid[0].numpy() if x.shape[1] == 1 else grid.permute(1, 2, 0).numpy()


def show_images(ax, x, nrow: int | None = None, title: str | None = None, **kwargs) -> None:
    """Draw :func:`image_grid` on ``ax``: grey images with dark ink (``gray_r``), RGB as they
    are."""
    grid = image_grid(x, nrow, **kwargs)
    ax.imshow(
        grid, cmap="gray_r" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=9)


def first_per_class(data, k: int = 1):
    """The first ``k`` images of every class of ``data`` (an ImageSet, or an ``(x, y)`` pair),
    stacked in class order: a ``(classes × k)×C×H×W`` tensor."""
    import torch

    x, y = (data.x, data.y) if hasattr(data, "x") else data
    return torch.cat([x[y == c][:k] for c in sorted(torch.unique(y).tolist())])


def mosaic(rows: dict, title: str | None = None, size: float = 0.6):
    """One row of images per entry of ``rows`` (``{label: N×C×H×W tensor}``, e.g. the first image
    per class of several surrogate sets), labelled on the left; returns the figure."""
    import matplotlib.pyplot as plt

    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(max(3.0, size * n), size * len(rows) + 0.6), squeeze=False
    )
    for ax, (label, x) in zip(axes[:, 0], rows.items()):
        show_images(ax, x)
        ax.set_ylabel(str(label), rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, y=1.0)
    return fig


def sweep(ours, paper, x: str, titles, marks=(), log: bool = True):
    """Accuracy against a swept weight (Tables 10, 11): ours (``mean``/``std`` per ``x`` and
    ``ipc``, error bars) on the left, the paper's (``mean`` per ``x`` and its ``ipc``) on the right;
    dotted vertical lines at ``marks`` (e.g. the defaults). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ipc, d in ours.sort_values(x).groupby("ipc"):
        axes[0].errorbar(d[x], d["mean"], yerr=d["std"], marker="o", capsize=3, label=f"IPC {ipc}")
    for ipc, d in paper.sort_values(x).groupby("ipc"):
        axes[1].plot(d[x], d["mean"], marker="s", label=f"IPC {ipc}")
    for ax, title in zip(axes, titles):
        ax.set(xscale="log" if log else "linear", xlabel=x, ylabel="test accuracy (%)", title=title)
        for i, m in enumerate(marks):
            ax.axvline(m, ls=(":", "--")[i % 2], c="0.5")
        ax.legend(fontsize=8)
    return fig


def nopt_terms(logs, terms, hue: str = "row", title: str | None = None):
    """NOpt's logged loss terms per denoising step (mean over classes): one panel per term, one
    colour per ``hue`` value, solid at the drawn noise (``<term>_first``) and dashed after the
    optimisation (``<term>_last``); log scale where every value is positive. Returns the figure."""
    import seaborn as sns

    cols = [f"{t}_{w}" for t in terms for w in ("first", "last")]
    long = (
        logs.groupby([hue, "step"], sort=False)[cols]
        .mean()
        .reset_index()
        .melt(id_vars=[hue, "step"], value_vars=cols)
        .dropna()
    )
    long[["term", "noise"]] = long["variable"].str.rsplit("_", n=1, expand=True)
    long["noise"] = long["noise"].map({"first": "drawn ε", "last": "optimised ε"})
    g = sns.relplot(
        data=long,
        x="step",
        y="value",
        hue=hue,
        style="noise",
        col="term",
        kind="line",
        errorbar=None,
        height=3.0,
        aspect=1.15,
        facet_kws={"sharey": False},
    )
    for ax, term in zip(g.axes.flat, g.col_names):
        if (long.loc[long["term"] == term, "value"] > 0).all():
            ax.set_yscale("log")
    g.set_axis_labels("denoising step", "raw term value")
    if title:
        g.figure.suptitle(title, y=1.03)
    return g.figure


#: The stages of Fig. 2 (the DsCo framework), each with the ``dsco`` functions that implement it:
#: ``(key, title, functions)``; :func:`framework` draws them with this dataset's settings.
FRAMEWORK = [
    ("data", "target data $\\mathcal{T}$", ["datasets.Dataset.train", "encoded.encode_class"]),
    (
        "diffuse",
        "encode + diffuse the\ntarget latents (accessible)",
        ["diffusion.Backbone.encode", "diffusion.Backbone.q_sample"],
    ),
    ("templates", "step-wise templates\n(data-free)", ["nopt.template_stats"]),
    (
        "model",
        "diffusion model:\n$\\mu_t, \\sigma_t$ from $z_{t+1}$",
        ["diffusion.Backbone.mean_std"],
    ),
    ("noise", "noise $\\epsilon_t \\sim \\mathcal{N}(0, I)$,\noptimised", ["nopt.synthesize"]),
    (
        "project",
        "$z_t = \\mu_t + \\sigma_t \\epsilon_t$ (Eq. 13)\n→ random projector",
        ["projector.for_latents"],
    ),
    (
        "align",
        "distribution alignment\n$L_{align}$ | $L_{maxoc} + L_{stats}$",
        ["losses.channel_ot_loss", "losses.max_occupation_loss", "losses.stats_loss"],
    ),
    ("reality", "reality constraint\n$L_{reality}(\\epsilon_t)$", ["losses.reality_loss"]),
    ("decode", "decoder", ["diffusion.Backbone.decode"]),
    ("synthetic", "synthetic set $\\mathcal{S}$", ["surrogates.make"]),
    ("trigger", "Dope Trigger\n$\\Delta N / \\Delta M \\leq 1$", ["trigger.dope_trigger"]),
    ("doping", "Doping: the far-apart\nreal samples", ["doping.confusion_scores", "doping.select"]),
    ("concentrated", "concentrated set", ["export.export", "concentrate.run"]),
]


def framework(ds):
    """Fig. 2 drawn from :data:`FRAMEWORK`: every stage a box naming the ``dsco`` functions that
    implement it, with ``ds``'s settings (backbone, NOpt steps and iterations, trigger schedule);
    the grey region is NOpt's denoising loop, the dashed red arrows the gradient flow into the
    noise."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    b, e = ds.budget, ds.entry
    where = {
        "data": (0.9, 5.2),
        "diffuse": (4.3, 5.2),
        "templates": (4.3, 1.6),
        "model": (7.9, 5.3),
        "noise": (7.9, 3.4),
        "reality": (7.9, 1.5),
        "project": (11.0, 5.3),
        "align": (11.0, 3.4),
        "decode": (14.2, 5.3),
        "synthetic": (14.2, 3.4),
        "trigger": (14.2, 1.5),
        "doping": (17.3, 1.5),
        "concentrated": (17.3, 3.4),
    }
    extra = {
        "data": f"{ds.name}: {ds.num_classes} classes",
        "model": e.backbone["name"],
        "trigger": f"schedule {b.ipcs['trigger']}",
        "synthetic": f"IPC {b.ipcs['low']}",
    }
    fig, ax = plt.subplots(figsize=(15, 5.6))
    ax.add_patch(
        FancyBboxPatch(
            (6.3, 0.55), 6.3, 5.9, boxstyle="round,pad=0.05", fc="0.92", ec="0.3", ls="--"
        )
    )
    ax.text(
        9.45,
        6.6,
        f"NOpt: {b.nopt['num_steps']} denoising steps, each {b.nopt['iterations']} SGD "
        "iterations on the noise",
        ha="center",
        fontsize=9,
        weight="bold",
    )
    boxes = {}
    for key, title, functions in FRAMEWORK:
        label = "\n".join(
            [title, *([extra[key]] if key in extra else []), *(f"dsco.{f}" for f in functions)]
        )
        boxes[key] = ax.text(
            *where[key],
            label,
            ha="center",
            va="center",
            fontsize=7.2,
            linespacing=1.25,
            bbox=dict(boxstyle="round,pad=0.4", fc="white", ec="C0" if key != "doping" else "C3"),
        )

    def arrow(a, b_, color="0.2", **kw):  # from box a's edge to box b_'s edge
        ax.annotate(
            "",
            (0.5, 0.5),
            xycoords=boxes[b_],
            xytext=(0.5, 0.5),
            textcoords=boxes[a],
            arrowprops=dict(
                arrowstyle="-|>",
                color=color,
                patchA=boxes[a].get_bbox_patch(),
                patchB=boxes[b_].get_bbox_patch(),
                shrinkA=2,
                shrinkB=2,
                **kw,
            ),
        )

    for a, b_ in [
        ("data", "diffuse"),
        ("diffuse", "align"),
        ("templates", "align"),
        ("model", "project"),
        ("noise", "project"),
        ("project", "align"),
        ("project", "decode"),
        ("decode", "synthetic"),
        ("synthetic", "trigger"),
        ("trigger", "doping"),
        ("doping", "concentrated"),
        ("synthetic", "concentrated"),
    ]:
        arrow(a, b_)
    for a in ("align", "reality"):
        arrow(a, "noise", color="C3", ls="--", connectionstyle="arc3,rad=0.25")
    ax.set(xlim=(-0.3, 19.0), ylim=(0.2, 7.0))
    ax.axis("off")
    ax.set_title(
        "Fig. 2: the Dataset Concentration framework, as implemented "
        f"({ds.name}, {ds.profile} profile)"
    )
    return fig


def framework_table():
    """The stages of :data:`FRAMEWORK` with the first line of each function's docstring: which
    ``dsco`` function implements which box of Fig. 2 (a name that no longer resolves raises
    ``AttributeError``)."""
    import importlib

    import pandas as pd

    rows = []
    for _, title, functions in FRAMEWORK:
        for name in functions:
            module, *path = name.split(".")
            obj = importlib.import_module(f"dsco.{module}")
            for part in path:
                obj = getattr(obj, part)
            rows.append(
                {
                    "stage": " ".join(title.split()),
                    "function": f"dsco.{name}",
                    "what it does": ((obj.__doc__ or "").strip().splitlines() or [""])[0],
                }
            )
    return pd.DataFrame(rows)


def rkhs_picture(
    ax, targets, surrogates, bandwidth: float, title: str, circles: bool = True
) -> None:
    """Fig. 1's memorize-generalize picture on ``ax``: the chance that a point is recognised by some
    surrogate (saturating ``h``, :func:`dsco.theory.recognition_chance`) as a filled contour, the
    2-D ``targets`` and ``surrogates``, and each surrogate's recognition circle (radius
    :func:`dsco.theory.recognition_radius`)."""
    import matplotlib.pyplot as plt

    from . import theory

    lo, hi = targets.min(0) - 1.0, targets.max(0) + 1.0
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    field = theory.recognition_chance(
        np.column_stack([gx.ravel(), gy.ravel()]), surrogates, bandwidth, h="saturating"
    ).reshape(gx.shape)
    ax.contourf(gx, gy, field, levels=np.linspace(0, 1, 11), cmap="RdPu", alpha=0.55)
    ax.scatter(*targets.T, s=4, color="c", alpha=0.6, label="target $\\mathcal{T}$")
    ax.scatter(
        *surrogates.T, s=22, color="red", edgecolor="k", lw=0.4, label="surrogate $\\mathcal{S}$"
    )
    if circles:
        for p in surrogates:
            ax.add_patch(
                plt.Circle(
                    p,
                    theory.recognition_radius(bandwidth),
                    fill=False,
                    ls="--",
                    lw=0.7,
                    color="darkred",
                )
            )
    ax.set(
        title=title, xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), aspect="equal", xticks=[], yticks=[]
    )
