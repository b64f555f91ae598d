"""Shared test setup: the suite's tensors are tiny, so torch runs on one thread, in the tests and in
every kernel or subprocess they start.

Extra threads only add synchronisation overhead at these sizes, and on a shared 2-core machine idle
OpenMP threads spin-wait and stall other processes (measured here: up to 40x slower with 2 threads).
``make test`` runs the suite in two pytest-xdist workers (``-n 2 --dist loadgroup``), so a batch
test's kernels share the cores with the other worker's tests: one thread each keeps them from
spinning.
"""

import pytest
import torch

from dsco.runner import _THREAD_VARS


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        for name in _THREAD_VARS:
            mp.setenv(name, "1")
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def nette_params(tmp_path_factory):
    """The offline ImageNette stand-in of :mod:`dsco.fixtures` (a 10-class wnid tree with 10 train
    and 4 val images per class, a tiny random DiT-XL/2-class transformer + VAE and a narrow timm
    ResNet-18 teacher), made once per test module: the ``-p`` parameters of ``dsco run --dataset
    imagenette``."""
    from dsco import fixtures

    return fixtures.make(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture
def nette_ds(nette_params):
    """A fresh ``imagenette`` smoke Dataset on the fixture (its loaded splits and models are not
    shared)."""
    from dsco import datasets

    return datasets.get("imagenette", "smoke", **nette_params)


@pytest.fixture(scope="module")
def unet():
    """The digits DDPM with random weights and a tiny UNet, 10 sampling steps (once per module)."""
    from dsco import backbones, digits_ddpm

    return backbones.load(
        "digits-ddpm", random_weights=True, config=digits_ddpm.TINY_UNET, num_steps=10
    )


@pytest.fixture(scope="module")
def tiny_dit():
    """A DiT-XL/2-class transformer and VAE with random weights at tiny sizes, 10 sampling steps
    (once per module)."""
    from dsco import backbones, dit

    return backbones.load(
        "dit-xl-2-256",
        random_weights=True,
        config=dit.TINY_DIT,
        vae_config=dit.TINY_VAE,
        num_steps=10,
    )
