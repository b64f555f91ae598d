"""Tests for dsco.objective: the projectors as the engines run them, and the diffused-target
count."""

import rounding
import torch

from dsco import objective, projector


def test_stack_projectors_equals_each_projector():
    # a grouped convolution over classes, one batch over classes, a vmap: other shapes than each
    # projector on its own class, so equal up to float rounding (tests/rounding.py)
    projs = [projector.make("digits", seed=s) for s in range(3)]
    x = torch.randn(3, 2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ref = torch.stack([p(x[k]) for k, p in enumerate(projs)])
    ref64 = torch.stack([rounding.float64_module(p)(x[k]) for k, p in enumerate(projs)])
    tol = rounding.tolerance(ref, ref64)
    rounding.assert_within(objective.stack_projectors(projs)(x), ref, tol, "grouped convolution")
    others = torch.stack([p(x[k]) for k, p in enumerate(projs[::-1])])
    rounding.assert_distinct(others, ref, tol, "other projectors")
    same = objective.channels_last(projs[0])  # the layout the engines run a shared projector in
    shared_ref = torch.stack([same(xk) for xk in x])
    shared64 = torch.stack([rounding.float64_module(projs[0])(xk) for xk in x])
    tol_shared = rounding.tolerance(shared_ref, shared64)
    rounding.assert_within(
        objective.stack_projectors([projs[0]] * 3)(x),
        shared_ref,
        tol_shared,
        "classes as one batch",
    )
    wrapped = [torch.nn.Sequential(torch.nn.Identity(), p) for p in projs]  # not plain: vmap path
    rounding.assert_within(objective.stack_projectors(wrapped)(x), ref, tol, "vmap")


def test_channels_last_is_the_same_function_and_leaves_the_module_alone():
    proj = projector.make("digits", seed=1)
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    fast = objective.channels_last(proj)
    # another layout: another kernel
    tol = rounding.tolerance(proj(x), rounding.float64_module(proj)(x))
    assert fast is not proj
    rounding.assert_within(fast(x), proj(x), tol, "channels-last")
    rounding.assert_distinct(fast(x.flip(0)), proj(x), tol, "other inputs")
    assert all(p.is_contiguous() for p in proj.parameters())  # the original keeps its layout
    identity = torch.nn.Identity()  # nothing to re-lay-out: returned as it is
    assert objective.channels_last(identity) is identity


def test_n_diffused():
    assert objective.n_diffused(13, 4) == 68  # >= 5 * 13, multiple of 4
    assert objective.n_diffused(2, 10) == 50  # >= 5 * N
    assert objective.n_diffused(20, 10) == 100
