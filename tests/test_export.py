"""Tests for dsco.export: the ImageFolder export round trip, its hashes and refusals, and reading it
with torchvision."""

import json

import pytest
import torch

from dsco import data, export
from dsco.errors import DopingError


@pytest.fixture(scope="module")
def digits_train():
    return data.load("digits", "train")


def test_export_round_trip_hashes_and_tamper(digits_train, tmp_path):
    s = digits_train.sample_per_class(3, seed=0)
    out = export.export(s, tmp_path / "set", method="random", parameters={"ipc": 3}, seeds=[0])
    m = json.loads((out / "manifest.json").read_text())
    assert m["method"] == "random" and m["seeds"] == [0] and "torch" in m["packages"]
    assert m["counts"] == {str(c): 3 for c in range(10)} and len(m["files"]) == 30
    assert m["class_folders"][3] == "03_3" and m["files"][0]["path"].startswith("00_0/")
    back = export.read_export(out)
    assert torch.equal(back.y, s.y) and back.classes == s.classes
    # uint8 quantisation: within half a grey level (0.5 / 127.5); a second round trip is exact
    assert (back.x - s.x).abs().max() <= 0.5 / 127.5 + 1e-6
    again = export.read_export(
        export.export(back, tmp_path / "again", method="copy", parameters={}, seeds=0)
    )
    assert torch.equal(again.x, back.x)
    png = out / m["files"][4]["path"]
    png.write_bytes(png.read_bytes() + b"\0")
    with pytest.raises(DopingError, match=f"SHA-256 mismatch for .*{m['files'][4]['path']}"):
        export.read_export(out)
    assert len(export.read_export(out, verify=False)) == 30


def test_export_rgb_clamps_and_refuses_nonempty(tmp_path):
    x = torch.rand(4, 3, 5, 6) * 2.4 - 1.2  # some values outside [-1, 1]
    y = torch.tensor([1, 0, 1, 1])
    out = export.export(
        (x, y),
        tmp_path / "rgb",
        method="dsco",
        parameters={"g": 4.0},
        seeds=[1, 2],
        classes=["cat", "dog/wolf"],
    )
    m = json.loads((out / "manifest.json").read_text())
    assert (
        export.class_folder(5, "", 1000) == "005"
        and export.class_folder(3, "three", 10) == "03_three"
    )
    assert m["class_folders"] == ["00_cat", "01_dog-wolf"] and m["n_clamped"] == int(
        (x.abs() > 1).sum()
    )
    back = export.read_export(out)
    assert (back.x - x.clamp(-1, 1)).abs().max() <= 0.5 / 127.5 + 1e-6 and torch.equal(back.y, y)
    (out / "00_cat" / "stray.png").write_bytes(b"x")
    with pytest.raises(DopingError, match="stray.png is not in manifest"):
        export.read_export(out)
    with pytest.raises(DopingError, match="not an empty folder"):
        export.export((x, y), out, method="dsco", parameters={}, seeds=0)


def test_export_failure_leaves_nothing(tmp_path):
    with pytest.raises(DopingError, match="C = 1 or 3"):
        export.export(
            (torch.zeros(2, 2, 4, 4), torch.tensor([0, 1])),
            tmp_path / "bad",
            method="m",
            parameters={},
            seeds=0,
        )
    with pytest.raises(DopingError, match="pass classes="):
        export.export(
            (torch.zeros(2, 1, 4, 4), torch.tensor([0, 5])),
            tmp_path / "bad",
            method="m",
            parameters={},
            seeds=0,
            classes=["a", "b"],
        )
    with pytest.raises(
        TypeError
    ):  # fails mid-write (manifest not JSON-able keys) -> no partial tree
        export.export(
            (torch.zeros(2, 1, 4, 4), torch.tensor([0, 1])),
            tmp_path / "bad",
            method="m",
            parameters={(1, 2): 3},
            seeds=0,
        )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DopingError, match="manifest.json"):
        export.read_export(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(DopingError, match="not a dsco export"):
        export.read_export(tmp_path)


def test_torchvision_imagefolder_reads_export(digits_train, tmp_path):
    from torchvision.datasets import ImageFolder

    s = digits_train.sample_per_class(2, seed=1)
    out = export.export(s, tmp_path / "tv", method="random", parameters={}, seeds=[1])
    ds = ImageFolder(str(out))
    assert len(ds) == 20 and len(ds.classes) == 10
    assert [int(c.split("_")[0]) for c in ds.classes] == list(range(10))
    by_file = {p.split("/")[-1]: t for p, t in ds.samples}
    assert [by_file[f"{i:02d}.png"] for i in range(20)] == s.y.tolist()
