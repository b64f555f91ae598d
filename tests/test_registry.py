"""Tests for dsco.registry: every entry and its budgets, and the measured numbers its prose
prints."""

import re

from dsco import budgets, datasets, nopt, registry, training


def test_registry_entries_and_budgets():
    assert (
        tuple(registry.REGISTRY)
        == datasets.NAMES
        == ("digits", "mnist", "folder", "imagenette", "imagewoof", "imagenet1k")
    )
    for name, e in registry.REGISTRY.items():
        assert e.name == name and set(e.budgets) == set(datasets.PROFILES)
        assert e.kind in ("embedded", "folder", "imagenet") and e.channels in (
            (0,) if e.kind == "folder" else (1, 3)
        )
        assert {"low", "high", "cross", "lossless"} <= set(e.paper)
        for profile, b in e.budgets.items():
            assert isinstance(b, budgets.Budget) and b.note
            assert b.train in training.STEP_BUDGET and b.replicates >= 1
            # every NOpt option of a budget is a synthesize() argument
            assert set(b.nopt) | set(b.sweep_nopt) <= set(nopt.synthesize.__kwdefaults__)
            assert b.ipcs["trigger_ipc"] in b.ipcs["trigger"]
    d = registry.REGISTRY["digits"]
    assert (d.kind, d.image_size, d.backbone["kind"], d.teacher["kind"]) == (
        "embedded",
        8,
        "shipped",
        "shipped",
    )
    n = registry.REGISTRY["imagenette"]
    assert (n.kind, n.image_size, n.backbone, n.teacher["arch"]) == (
        "imagenet",
        None,
        {"kind": "pretrained", "name": "dit-xl-2-256"},
        "resnet18",
    )
    # smoke is one tiny budget for every dataset; the ImageNet paper profile is the paper's own
    # setting
    assert all(
        e.budgets["smoke"] is budgets.SMOKE
        for e in registry.REGISTRY.values()
        if e.kind != "folder"
    )
    folder = registry.REGISTRY["folder"].budgets[
        "smoke"
    ]  # the same sizes, and the tiny recipe for notebook 00
    assert folder.ipcs == budgets.SMOKE.ipcs and folder.models["recipe"] == "tiny"
    m = registry.REGISTRY["mnist"]
    assert (m.kind, m.image_size, m.backbone["name"]) == ("embedded", 28, "latent-ddpm")
    assert m.projector is None  # NOpt's default for its 4×8×8 latents
    assert registry.REGISTRY["folder"].projector == "latent"  # any side: the image size decides it
    paper = registry.REGISTRY["imagewoof"].budgets["paper"]
    assert paper.nopt == {
        **paper.nopt,
        "iterations": 200,
        "diffusion_repeats": 5,
        "n_templates": 200,
    }
    assert (paper.train, paper.replicates) == ("full", 5)
    # digits' paper profile is sized for a 2-core CPU: fewer NOpt iterations than the paper's 200
    dp = d.budgets["paper"]
    assert dp.sweep_nopt["iterations"] <= dp.nopt["iterations"] < nopt.DEFAULTS["iterations"]


def test_measured_numbers_in_printed_text_say_when_and_where():
    """A number measured once and printed by the notebooks (a note, a reason) carries its date."""
    texts = [why for e in registry.REGISTRY.values() for _, why in e.nopt_defaults.values()]
    texts += [b.note for e in registry.REGISTRY.values() for b in e.budgets.values()]
    measured = [t for t in texts if re.search(r"\d ?(min|h|s)\b|MMD² \d", t)]
    assert len(measured) >= 4  # digits' reason and paper note, folder's, the ImageNet ones
    for t in measured:
        assert re.search(r"measured|recorded", t) and re.search(r"20\d\d-\d\d", t), t
