"""Every size a notebook takes from its profile: one :class:`Budget` per dataset and profile.

The registry (:mod:`dsco.registry`) gives each dataset one budget per profile, and a notebook reads
its sizes from ``ds.budget`` (``ds.ipcs``, ``ds.archs``, ``ds.arch_kwargs(arch)``,
``ds.protocol()``) instead of spelling them out:

- :data:`SMOKE` -- the same tiny sizes for every dataset: every notebook in seconds on a CPU (CI);
  :data:`FOLDER_SMOKE` is the same with notebook 00's tiny model recipe;
- :data:`DIGITS_PAPER` -- the paper's protocol at the embedded scale, sized for a 2-core CPU (SPEC
  §2); :data:`MNIST_PAPER` and :data:`FOLDER_PAPER` are its latent-space variants;
- :func:`imagenet_paper` -- the paper's own settings for the ImageNet datasets (they want a GPU).

Each budget's ``note`` is what the book prints about the profile; a duration in it is labelled with
when and where it was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Budget:
    """Every size a notebook takes from its profile (one place instead of each notebook's ``cfg``).

    ``nopt`` are the NOpt options of the main surrogate sets, ``sweep_nopt`` those of the ablation
    sweeps (Tables 7, 9–11); ``train`` names the optimiser-step budget
    (:data:`dsco.training.STEP_BUDGET`); ``widths`` the kwargs of the paper's own families, ``timm``
    those of timm models; ``timm_epochs`` the epochs of the timm models of Table 5 and
    ``lossless_epochs`` of Table 6 (None: ``train``); ``classes`` how many classes the profile uses
    (None: all); ``ipcs`` the named IPC schedules and ``archs`` the named architecture lists of the
    tables; ``models`` the settings of the models notebook 00 trains.
    """

    note: str
    nopt: dict
    sweep_nopt: dict
    train: str
    replicates: int
    widths: dict
    timm: dict
    timm_epochs: int | None
    lossless_epochs: int | None
    classes: int | None
    ipcs: dict
    archs: dict
    models: dict = field(default_factory=dict)

    def settings(self) -> str:
        """The profile's sizes in words, each beside the paper's value where it differs (for
        prose)."""
        n = self.nopt
        parts = [
            (n.get("iterations"), 200, "NOpt iteration{} per step"),
            (n.get("diffusion_repeats"), 5, "diffusion{} per real latent"),
            (n.get("n_templates"), 200, "template{} per class"),
            (self.replicates, 5, "replicate{} per cell (each its own set and training)"),
        ]
        return ", ".join(
            f"{ours} {what.format('' if ours == 1 else 's')}"
            + ("" if ours == paper else f" (paper {paper})")
            for ours, paper, what in parts
            if ours is not None
        )


_NARROW_TIMM = dict(channels=(8, 16, 32, 64), stem_width=8)

#: The smoke budget: the same tiny sizes for every dataset (needs >= 9 training images per class).
SMOKE = Budget(
    note="tiny sizes for CI and a quick look: every notebook in seconds on a CPU; the numbers test "
    "the code path, not the claims",
    nopt=dict(iterations=2, num_steps=5, n_templates=4, diffusion_repeats=1),
    sweep_nopt=dict(iterations=2, num_steps=5, n_templates=4, diffusion_repeats=1),
    train="smoke",
    replicates=1,
    widths={"convnet": {"width": 16}, "resnet_ap10": {"width": 16}, "resnet18": {"width": 16}},
    timm={
        "timm_resnet18": dict(_NARROW_TIMM),
        "timm_resnet34": dict(_NARROW_TIMM),
        "timm_resnet101": dict(_NARROW_TIMM),
        "densenet121": dict(growth_rate=8),
    },
    timm_epochs=10,
    lossless_epochs=1,
    classes=10,
    ipcs=dict(
        low=[1, 2],
        sweep=[1],
        high=[4, 8],
        stage=[4, 8],
        trigger=[1, 2, 3],
        trigger_ipc=2,
        lossless_ipc=4,
        cross=[1],
        scaling=[1, 2, 5],
        figure=[1, 2],
        doped=[1, 2, 5],
        export=2,
        law=[1, 2],
    ),
    archs=dict(
        low=["convnet", "resnet_ap10", "resnet18"],
        high=["convnet"],
        stage="convnet",
        law=["convnet", "resnet_ap10"],
        sweep="convnet",
        cross=["timm_resnet18", "mobilenetv2_100", "efficientnet_b0"],
        lossless=["timm_resnet18"],
        student="timm_resnet18",
    ),
    models=dict(
        teacher_epochs=3,
        teacher_args=dict(_NARROW_TIMM),
        backbone_epochs=2,
        backbone_subset=256,
        samples_per_class=5,
        check_steps=10,
    ),
)

_CPU_TIMM = dict(channels=(16, 32, 64, 128), stem_width=16)
_ALL_TIMM = ["timm_resnet18", "timm_resnet34", "timm_resnet101", "efficientnet_b0", "densenet121"]

#: digits, paper profile: the paper's protocol sized for a 2-core CPU (SPEC §2).
DIGITS_PAPER = Budget(
    note="the paper's protocol at the embedded scale, sized for a 2-core CPU (SPEC §2); narrow "
    "networks; the batch's wall time is recorded in its trace (data/bench/batch_*.json, shown by "
    "notebook 51)",
    # 100 SGD iterations per step (paper 200), each real latent diffused once per step (paper >= 5)
    # and 100 templates per class (paper >= 200): one 10-class NOpt set at the paper's settings
    # took ≈ 2.3 min with 2 threads (measured 2026-11 on the 2-core CPU:
    # data/bench/digits_cpu2_paper_settings_batched.json); the sweeps use 20 iterations.
    nopt=dict(iterations=100, num_steps=50, diffusion_repeats=1, n_templates=100),
    sweep_nopt=dict(iterations=20, num_steps=50, diffusion_repeats=1, n_templates=100),
    train="paper",
    replicates=5,
    # ConvNet-3 at 32 channels, ResNets at 16 (full: 128 and 64). Measured 2026-11 on the 2-core
    # CPU when this profile was sized: on random real IPC-10 digits (1,000 steps, hard labels,
    # seed 0) they reached 92.9 / 95.6 / 94.7 % in 12 / 39 / 97 s (1 thread) against 95.8 % for the
    # full-width ConvNet-3 in ~46 s; ConvNet-3 at width 16 fell to 83.8 %.
    widths={"convnet": {"width": 32}, "resnet_ap10": {"width": 16}, "resnet18": {"width": 16}},
    timm={
        "timm_resnet18": dict(_CPU_TIMM),
        "timm_resnet34": dict(_CPU_TIMM),
        "timm_resnet101": dict(_CPU_TIMM),
        "densenet121": dict(growth_rate=16),
    },
    timm_epochs=75,
    lossless_epochs=15,
    classes=None,
    ipcs=dict(
        low=[1, 5, 10],
        sweep=[1, 5],
        high=[20, 40, 70, 100],
        stage=[20, 40, 70],
        trigger=[1, 5, 10, 20, 40],
        trigger_ipc=10,
        lossless_ipc=70,
        cross=[10],
        scaling=[1, 2, 5, 10, 20, 40],
        figure=[1, 10],
        doped=[1, 5, 10, 20, 40, 80, 120],
        export=20,
        law=[1, 2, 5, 10, 20],
    ),
    archs=dict(
        low=["convnet", "resnet_ap10"],
        high=["convnet"],
        stage="convnet",
        sweep="convnet",
        law=["convnet", "resnet_ap10"],
        cross=["timm_resnet18", "mobilenetv2_100", "efficientnet_b0"],
        lossless=list(_ALL_TIMM),
        student="timm_resnet18",
    ),
    models=dict(
        teacher_epochs=40,
        backbone_epochs=300,
        backbone_subset=None,
        samples_per_class=100,
        check_steps=50,
    ),
)


def imagenet_paper(low, high, trigger, trigger_ipc, cross, hours) -> Budget:
    """The paper's own settings for an ImageNet dataset: its IPC schedules (``low``, ``high``,
    ``trigger``, ``trigger_ipc``, ``cross``) and how long its batch takes (``hours``, for the
    note)."""
    return Budget(
        note=f"the paper's own settings (full widths, the paper's epochs and App. D protocol): it "
        f"wants a GPU; at least {hours} on one H100-class GPU, estimated from the benchmark "
        f"recorded 2026-11 on one H100 (0.66 s per NOpt image, data/bench/"
        f"dit_xl2_h100_bf16.json), which timed NOpt with 100 stand-in real latents per class: "
        f"aligning to a full class (about 950–1,300 images) costs more, not yet measured",
        nopt=dict(iterations=200, num_steps=50, diffusion_repeats=5, n_templates=200),
        sweep_nopt=dict(iterations=200, num_steps=50, diffusion_repeats=5, n_templates=200),
        train="full",
        replicates=5,
        widths={"convnet": {"depth": 6}},
        timm={},
        timm_epochs=None,
        lossless_epochs=None,
        classes=None,
        ipcs=dict(
            low=low,
            sweep=low,
            high=high,
            stage=high[:3],
            trigger=trigger,
            trigger_ipc=trigger_ipc,
            lossless_ipc=700,
            cross=cross,
            scaling=low,
            figure=low[:1],
            doped=[50, 100, 200, 400],
            export=100,
            law=low,
        ),
        archs=dict(
            low=["convnet", "resnet_ap10", "resnet18"],
            high=["convnet", "resnet_ap10", "resnet18"],
            law=["convnet", "resnet18"],
            stage="resnet18",
            sweep="resnet_ap10",
            cross=["timm_resnet18", "mobilenetv2_100", "efficientnet_b0"],
            lossless=list(_ALL_TIMM),
            student="timm_resnet18",
        ),
        models=dict(teacher_epochs=60, samples_per_class=20, check_steps=50),
    )


#: mnist, paper profile: digits' CPU-sized protocol in latent space (ConvNet-3 only in Tables 1/2:
#: 28-px trainings cost more) and IPCs for 400 images per class.
MNIST_PAPER = replace(
    DIGITS_PAPER,
    note="the paper's protocol at the embedded scale in latent space, sized for a 2-core CPU as "
    "digits' (narrow networks; ConvNet-3 alone in Tables 1/2, as 28-px trainings cost "
    "more)",
    archs=dict(DIGITS_PAPER.archs, low=["convnet"]),
    ipcs=dict(
        DIGITS_PAPER.ipcs,
        high=[70, 130, 230, 330],
        stage=[70, 130, 230],
        trigger=[1, 5, 10, 20, 40, 80],
        trigger_ipc=20,
        lossless_ipc=230,
        doped=[1, 5, 10, 20, 40, 80, 160, 300],
        export=40,
    ),
    models=dict(recipe="mnist", samples_per_class=100, check_steps=50),
)

#: A folder dataset: the smoke sizes with notebook 00's tiny recipe (dsco.recipes.TINY) ...
FOLDER_SMOKE = replace(SMOKE, models=dict(SMOKE.models, recipe="tiny"))
#: ... and mnist's paper sizes with the mnist recipe's model sizes, trained on the user's tree.
FOLDER_PAPER = replace(
    MNIST_PAPER,
    note="the embedded default's CPU-sized protocol, with the mnist recipe's model sizes trained "
    "on your data by notebook 00 (measured in 2026-12 when the shipped mnist recipe was "
    "trained: 4,000 images of 28 px took 77 min on 2 busy cores; a GPU makes it minutes)",
    models=dict(recipe="mnist", samples_per_class=100, check_steps=50),
)
