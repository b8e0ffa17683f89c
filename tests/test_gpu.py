"""The sensitivity engine on a CUDA device: the same results as on the CPU.

Runs where ``torch.cuda.is_available()``; elsewhere every test skips and says why.
Standalone: ``pytest tests/test_gpu.py``.

References are the CPU engine on the same float64 model (itself checked against
autograd, finite differences and Captum in ``test_saliency.py``); tolerances are
absolute on values of order 0.01-1: 1e-10 (the same arithmetic, reordered by other
kernels).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from skvis_widgets.saliency import (
    class_map,
    instantaneous_jacobian,
    iter_unit_sensitivity,
    joint_sensitivity,
    unit_sensitivity,
)

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device (torch.cuda.is_available() is False): the GPU path is not exercised",
)

GPU = 1e-10
J, C, H, T = 4, 3, 5, 7
CONFIGS = [("lstm", 1), ("lstm", 2), ("gru", 1), ("gru", 2)]


def make_model(cell: str = "lstm", layers: int = 1, *, hidden: int = H):
    # the same model as test_saliency.make_model, written here so the file runs alone
    from torch import nn

    from skvis_widgets.model import SkeletonLSTM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SkeletonLSTM(J, C, hidden, cell=cell, num_layers=layers)
        for p in model.parameters():
            nn.init.uniform_(p, -0.8, 0.8)
    rng = np.random.default_rng(0)
    model.set_standardization(rng.normal(0, 0.2, J * 3), rng.uniform(0.5, 1.5, J * 3))
    return model.double().eval()


def ragged(n: int = 4, t: int = T) -> tuple[np.ndarray, np.ndarray]:
    xs = np.random.default_rng(1).normal(0, 0.5, (n, t, J, 3))
    lengths = np.array([t, 5, 2, t - 1][:n])
    return xs, lengths


@pytest.mark.parametrize("cell,layers", CONFIGS)
@pytest.mark.parametrize("mode", ["instantaneous", "through_time"])
def test_cuda_equals_cpu(cell, layers, mode):
    cpu = make_model(cell, layers)
    gpu = make_model(cell, layers).cuda()
    xs, lengths = ragged()
    pairs = [
        (unit_sensitivity, {"mode": mode}),
        (joint_sensitivity, {"mode": mode, "target": [0, 2, 1, 1]}),
        (joint_sensitivity, {"mode": mode, "unit": 3}),
    ]
    if mode == "instantaneous":
        pairs.append((instantaneous_jacobian, {}))
    for fn, kw in pairs:
        want = fn(cpu, xs, lengths=lengths, **kw)
        got = fn(gpu, xs, lengths=lengths, **kw)
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=0, atol=GPU, err_msg=fn.__name__)
    assert next(gpu.parameters()).is_cuda  # the model stays where it was


def test_cuda_batch_equals_loop_and_streaming_equals_one_call():
    gpu = make_model().cuda()
    xs, lengths = ragged()
    whole = unit_sensitivity(gpu, xs, lengths=lengths, chunk_size=2)
    for n, length in enumerate(lengths):
        np.testing.assert_allclose(
            whole[n, :, :length], unit_sensitivity(gpu, xs[n, :length]), rtol=0, atol=GPU
        )
    for sl, units in iter_unit_sensitivity(gpu, xs, lengths=lengths, batch_size=3):
        np.testing.assert_allclose(units, whole[sl], rtol=0, atol=GPU)
    out = np.empty_like(whole)
    unit_sensitivity(gpu, xs, lengths=lengths, out=out)
    np.testing.assert_allclose(out, whole, rtol=0, atol=GPU)
    for n, length in enumerate(lengths):
        np.testing.assert_allclose(
            class_map(whole[n, :, :length], gpu, 1),
            joint_sensitivity(gpu, xs[n, :length], target=1),
            rtol=1e-10,
        )


def test_cuda_class_map_in_blocks_of_frames():
    from skvis_widgets.saliency import _coordinate_maps

    gpu = make_model("lstm", 1).cuda()
    xs, lengths = ragged(3, t=40)
    kw = {"mode": "instantaneous", "normalize": True, "layer": -1, "chunk_size": None}
    ref, _ = _coordinate_maps(gpu, xs, target=2, unit=None, lengths=lengths, **kw)
    got, _ = _coordinate_maps(gpu, xs, target=2, unit=None, lengths=lengths, t_block=6, **kw)
    np.testing.assert_allclose(got, ref, rtol=0, atol=GPU)


@pytest.mark.parametrize("mode", ["instantaneous", "through_time"])
def test_host_synchronizations_do_not_grow_with_the_frames(mode):
    """Nothing goes to the host inside the engine's loops: a call on 8 frames and one on
    64 frames synchronize with the device the same number of times (counted by torch's
    sync debug mode, one warning per synchronizing operation)."""

    def syncs(t: int) -> int:
        gpu = make_model().cuda()
        xs, lengths = ragged(2, t)
        unit_sensitivity(gpu, xs, lengths=lengths[:2], mode=mode)  # warm-up
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                unit_sensitivity(gpu, xs, lengths=lengths[:2], mode=mode, chunk_size=2)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in seen)

    assert syncs(8) == syncs(64)
