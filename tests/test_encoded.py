"""Tests for dsco.encoded: the latent cache (tiny generated PNG tree, tiny random AutoencoderKL)."""

import copy

import pytest
import rounding
import torch
from PIL import Image
from test_folders import NETTE, make_tree

from dsco import data, encoded
from dsco.errors import DatasetError


@pytest.fixture
def nette(tmp_path):
    return make_tree(tmp_path / "nette", NETTE)


def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(8,),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    ).eval()


class Counting:
    """An ``encode(x) -> z`` callable that counts how many images it has encoded."""

    def __init__(self, vae):
        self.vae, self.seen = vae, 0

    def __call__(self, x):
        self.seen += len(x)
        return self.vae.encode(x).latent_dist.mean * 0.18215


def test_latent_cache_hit_and_miss(nette, tmp_path):
    cache = tmp_path / "cache"
    enc = Counting(tiny_vae())
    ds = data.load("imagenette", "train", nette, size=16)
    kw = dict(encoder_id="tiny-vae-seed0", cache_dir=cache, batch_size=2, progress=False)
    z = encoded.encode_class(ds, 1, enc, **kw)
    assert (
        z.shape == (3, 4, 16, 16) and enc.seen == 3 and len(list(cache.glob("*.safetensors"))) == 1
    )
    # batches of 2 + 1 against one batch of 3: another batch shape, equal up to float rounding
    # (tests/rounding.py); here |Δ| = 9e-8 against a float32-vs-float64 error of 9e-8 (tolerance
    # 5e-6)
    with torch.no_grad():
        whole = enc(ds.per_class(1))
        vae64 = copy.deepcopy(enc.vae).double()
        whole64 = vae64.encode(ds.per_class(1).double()).latent_dist.mean * 0.18215
    tol = rounding.tolerance(whole, whole64)
    rounding.assert_within(z, whole, tol, "encoded in batches of 2")
    rounding.assert_distinct(z, enc(ds.per_class(2)), tol, "another class")
    enc.seen = 0
    assert (
        torch.equal(encoded.encode_class(ds, 1, enc, **kw), z) and enc.seen == 0
    )  # hit: encoder not called
    assert (
        torch.equal(encoded.latents("imagenette", "train", 1, enc, nette, size=16, **kw), z)
        and enc.seen == 0
    )
    encoded.encode_class(ds, 1, enc, **(kw | {"encoder_id": "other-vae"}))  # miss: another encoder
    assert enc.seen == 3
    encoded.latents("imagenette", "train", 1, enc, nette, size=8, **kw)  # miss: another transform
    assert enc.seen == 6
    encoded.encode_class(ds, 2, enc, **kw)  # miss: another class
    assert enc.seen == 9
    encoded.encode_class(
        data.load("imagenette", "test", nette, size=16), 1, enc, **kw
    )  # miss: another split
    assert enc.seen == 10
    Image.new("RGB", (16, 16), (9, 9, 9)).save(nette / "train" / NETTE[1] / "new.png")
    z4 = encoded.latents(
        "imagenette", "train", 1, enc, nette, size=16, **kw
    )  # miss: another file list
    assert z4.shape[0] == 4 and enc.seen == 14
    assert len(list(cache.glob("*.safetensors"))) == 6 and not list(cache.glob("*.tmp"))


def test_encode_class_needs_encoder_id(nette, tmp_path):
    ds = data.load("imagenette", "train", nette, size=16)
    with pytest.raises(DatasetError, match="needs encoder_id="):
        encoded.encode_class(ds, 0, lambda x: x, cache_dir=tmp_path, progress=False)


def test_encode_in_memory_set_uncached(tmp_path):
    tr = data.load("digits", "train")
    z = encoded.latents(
        "digits", "train", 5, lambda x: 2 * x, cache_dir=tmp_path, batch_size=50, progress=False
    )
    assert torch.equal(z, 2 * tr.per_class(5)) and not list(tmp_path.iterdir())
