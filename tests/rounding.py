"""Tolerances derived from float rounding: the suite's exactness contract (issue: batch-size
invariance is not bit-exact across CPU kernels).

The contract
    Bit-equality is guaranteed only for the *same* computation: same seed, same batch composition
    and shapes, same machine (and thread count). Results computed with different batch shapes,
    chunkings, groupings or memory layouts agree only up to float rounding: the CPU kernels (oneDNN
    convolutions, MKL / OpenBLAS matrix products; AVX2 on one CPU, AVX-512 on another) choose their
    blocking and accumulation order by shape, so the last bits differ, and an iterative procedure (a
    5-step sampler, NOpt's SGD) carries that difference along and may amplify it.

How a test compares two float32 results of different batch shapes
    It runs the same computation once more in float64 (the model deep-copied with ``.double()``, the
    inputs promoted; :func:`float64_backbone`) and bounds the float32 discrepancy by

        tol = max(FACTOR · max|r32 − r64|, FLOOR · max(1, max|r64|))

    ``max|r32 − r64|`` is how far float32 rounding moves *this* result on *this* input, with every
    amplification of the computation included. Why ``FACTOR = 50``: the two float32 runs being
    compared each deviate from the exact result by a rounding error; their difference is at most the
    sum of the two (2×), and another kernel's accumulation order (other blocking, other SIMD width)
    can have a larger error than the order measured here -- the typical error of a sum of K terms
    grows like √K for a sequential order and like √log K for a blocked/pairwise one, a ratio of
    about 10–20 for the reductions of these tiny models (K up to ~1,000). 2 × 20 rounded up to 50.
    ``FLOOR = 1e-6`` (relative to the result's magnitude, absolute for results of order 1) guards
    against a float64 run that happens to agree with float32 almost exactly. A real bug (another
    seed, another class, a shifted noise draw) moves a result by O(1): every test using this module
    also checks (:func:`assert_distinct`) that such a genuinely different result exceeds its
    tolerance by at least :data:`MARGIN`.
"""

from __future__ import annotations

import copy
import os
import types

import torch

FACTOR = 50.0
FLOOR = 1e-6
#: A genuinely different result must exceed the tolerance at least this many times.
MARGIN = 100.0


def max_abs(a, b) -> float:
    """``max |a − b|`` in float64."""
    return float(
        (torch.as_tensor(a).detach().double() - torch.as_tensor(b).detach().double()).abs().max()
    )


def tolerance(r32, r64, factor: float = FACTOR, floor: float = FLOOR) -> float:
    """The tolerance for comparing float32 results of the computation whose float32 result is
    ``r32`` and float64 result is ``r64`` (see the module docstring)."""
    scale = max(1.0, float(torch.as_tensor(r64).detach().double().abs().max()))
    err = max_abs(r32, r64)
    tol = max(factor * err, floor * scale)
    _log("f32-vs-f64", f"scale {scale:.3g}", err, tol)
    return tol


def _log(kind: str, what: str, d: float, tol: float) -> None:
    """With ``DSCO_ROUNDING_LOG=<file>`` every comparison appends one line (the audit's measured
    values)."""
    path = os.environ.get("DSCO_ROUNDING_LOG")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with open(path, "a") as f:
            f.write(f"{test}\t{kind}\t{what}\t{d:.3g}\t{tol:.3g}\n")


def assert_within(a, b, tol: float, what: str = "") -> float:
    """``max|a − b| <= tol``; returns the discrepancy (for the measured values quoted in the
    tests)."""
    d = max_abs(a, b)
    _log("within", what, d, tol)
    assert d <= tol, f"{what}: max |Δ| = {d:.3g} exceeds the rounding tolerance {tol:.3g}"
    return d


def assert_distinct(a, b, tol: float, what: str = "", margin: float = MARGIN) -> float:
    """A genuinely different result: ``max|a − b|`` exceeds ``margin × tol`` (the tolerance cannot
    hide a bug)."""
    d = max_abs(a, b)
    _log("distinct", what, d, tol)
    assert d > margin * tol, (
        f"{what}: a different result differs by only {d:.3g}, not > {margin:g} × {tol:.3g}"
    )
    return d


def float64_backbone(bb):
    """A float64 copy of a :mod:`dsco.backbones` backbone (the model ``.double()``, float64
    forward).

    :func:`dsco.backbones.sample`, ``mean_std`` and NOpt run on it unchanged: the noise is still
    drawn in float32 from the same generators (so the draws are the same) and is promoted by the
    first float64 operation it meets; the schedule's coefficients stay the float32 constants both
    runs share.
    """
    from dsco import digits_ddpm, dit

    bb64 = copy.deepcopy(bb)
    bb64.model.double()
    if isinstance(bb64, dit.DiT):
        bb64.vae.double()

        def _forward(self, z, t, y):
            t = torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)
            return self.model(z.double(), timestep=t, class_labels=y).sample
    elif isinstance(bb64, digits_ddpm.DigitsDDPM):

        def _forward(self, z, t, y):
            return digits_ddpm.DigitsDDPM._forward(self, z.double(), t, y)
    else:
        raise TypeError(f"no float64 path for {type(bb).__name__}")
    bb64._forward = types.MethodType(_forward, bb64)
    return bb64


class _ToFloat64(torch.nn.Module):
    def forward(self, x):
        return x.double()


def float64_module(module: torch.nn.Module) -> torch.nn.Sequential:
    """A float64 copy of ``module`` that promotes its input first (e.g. a projector fed float32
    targets)."""
    return torch.nn.Sequential(_ToFloat64(), copy.deepcopy(module).double())
