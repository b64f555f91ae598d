"""Tests for dsco.devices: the datasheet peak of a GPU by name and precision."""

import pytest

from dsco import devices


def test_peak_table():
    assert devices.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4)
    assert devices.peak_tflops("NVIDIA H100 PCIe", "bf16") == pytest.approx(756.5)
    assert devices.peak_tflops("NVIDIA H200", "tf32") == pytest.approx(494.7)
    assert devices.peak_tflops("Tesla T4", "bf16") is None
