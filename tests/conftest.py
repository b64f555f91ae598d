"""Shared test setup: the suite's tensors are tiny, so torch runs on one thread.

Extra threads only add synchronisation overhead at these sizes, and on a shared 2-core machine idle
OpenMP threads spin-wait and stall other processes (measured here: up to 40x slower with 2 threads).
"""
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
