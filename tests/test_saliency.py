"""The sensitivity engine (eqs 1-5) against independent references.

References, all in float64 on small models:

- instantaneous: a one-step replay of the model's own ``nn.LSTM``/``nn.GRU`` (its
  first ``k + 1`` layers) from the detached states it reached at ``t - 1``, fed a
  length-1 input, differentiated by ``torch.autograd.functional.jacobian``;
- through time: ``torch.autograd.grad`` of ``model.hidden_states`` / ``model(x)``,
  and Captum's ``Saliency``;
- both: central finite differences.

Tolerances are absolute on values of order 0.01-1: 1e-12 against autograd (the
same arithmetic in another order), 1e-8 against finite differences (step 1e-6).
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from skvis_widgets import MSR_ACTION3D, SkvisError
from skvis_widgets.model import SkeletonLSTM
from skvis_widgets.saliency import (
    COLORMAPS,
    JointSensitivity,
    body_part_totals,
    class_map,
    instantaneous_jacobian,
    joint_sensitivity,
    rank_units,
    sensitivity_colors,
    unit_sensitivity,
)

J, H, C, T = 4, 5, 3, 7
EXACT = 1e-12
FD = 1e-8
CONFIGS = [("lstm", 1), ("lstm", 2), ("gru", 1), ("gru", 2)]


def make_seq(t: int = T, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.5, (t, J, 3))


def truncated_rnn(model: SkeletonLSTM, layers: int) -> nn.RNNBase:
    """The first ``layers`` layers of the model's recurrent module, as a module of its own."""
    rnn = model.rnn
    out = type(rnn)(rnn.input_size, rnn.hidden_size, num_layers=layers, batch_first=True)
    out.load_state_dict(
        {k: v for k, v in rnn.state_dict().items() if int(k.rsplit("_l", 1)[1]) < layers}
    )
    return out.double()


def replay_jacobian(model: SkeletonLSTM, x: torch.Tensor, layer: int) -> np.ndarray:
    """``(H, T, J, 3)`` signed dh_t/dx_t: one-step replays from the detached states at t-1."""
    rnn = truncated_rnn(model, layer + 1)
    feats = model.preprocess(x[None]).detach()
    out = []
    for t in range(x.shape[0]):
        state = None if t == 0 else rnn(feats[:, :t])[1]
        if state is not None:
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

        def step(xt, state=state):
            return rnn(model.preprocess(xt[None, None]), state)[0][0, 0]

        out.append(torch.autograd.functional.jacobian(step, x[t]))  # (H, J, 3)
    return torch.stack(out, 1).numpy()


def autograd_through_time(model, x: torch.Tensor, lengths, layer: int) -> np.ndarray:
    """``(N, H, T, J, 3)`` signed dh_{L-1}/dx, one backward pass per sample and unit."""
    x = x.clone().requires_grad_(True)
    hs = model.hidden_states(x, lengths, layer=layer)
    out = np.zeros((x.shape[0], hs.shape[-1], *x.shape[1:]))
    for n, length in enumerate(lengths):
        for u in range(hs.shape[-1]):
            (g,) = torch.autograd.grad(hs[n, length - 1, u], x, retain_graph=True)
            out[n, u] = g[n].numpy()
    return out


# -- exactness ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,layers", CONFIGS)
def test_instantaneous_equals_one_step_replay(cell, layers, small_model, engine):
    model = small_model(cell, layers)
    x = torch.as_tensor(make_seq())
    for layer in range(layers):
        ref = np.abs(replay_jacobian(model, x, layer))
        got = unit_sensitivity(model, x, normalize=False, layer=layer)
        assert got.shape == (H, T, J, 3) and got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=0, atol=EXACT)
        assert ref.max() > 0.05  # a test that can fail
        signed = instantaneous_jacobian(model, x, layer=layer)
        np.testing.assert_allclose(signed, replay_jacobian(model, x, layer), rtol=0, atol=EXACT)
    # the kernel serves an LSTM's first layer (both calls), the torch path the rest
    kernel = engine["path"] == "kernel" and cell == "lstm"
    assert engine["calls"] == (2 if kernel else 0)


@pytest.mark.parametrize("cell,layers", CONFIGS)
def test_through_time_equals_autograd_on_a_ragged_batch(cell, layers, small_model):
    model = small_model(cell, layers)
    x = torch.as_tensor(np.stack([make_seq(seed=s) for s in range(3)]))
    lengths = [T, 3, 5]
    for layer in range(layers):
        ref = np.abs(autograd_through_time(model, x, lengths, layer))
        got = unit_sensitivity(
            model, x, mode="through_time", normalize=False, layer=layer, lengths=lengths
        )
        assert got.shape == (3, H, T, J, 3)
        np.testing.assert_allclose(got, ref, rtol=0, atol=EXACT)
        assert not got[1, :, 3:].any() and not got[2, :, 5:].any()


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1)])
def test_both_modes_against_central_finite_differences(cell, layers, small_model):
    model = small_model(cell, layers)
    x = torch.as_tensor(make_seq(t=5))
    layer = layers - 1
    eps = 1e-6
    rnn = truncated_rnn(model, layer + 1)
    fd_inst = np.zeros((H, 5, J, 3))
    fd_tt = np.zeros((H, 5, J, 3))
    with torch.no_grad():
        feats = model.preprocess(x[None])
        for t in range(5):
            state = None if t == 0 else rnn(feats[:, :t])[1]
            for j in range(J):
                for d in range(3):
                    plus, minus = x.clone(), x.clone()
                    plus[t, j, d] += eps
                    minus[t, j, d] -= eps
                    step = [
                        rnn(model.preprocess(z[t][None, None]), state)[0][0, 0]
                        for z in (plus, minus)
                    ]
                    fd_inst[:, t, j, d] = ((step[0] - step[1]) / (2 * eps)).numpy()
                    last = [model.hidden_states(z[None], layer=layer)[0, -1] for z in (plus, minus)]
                    fd_tt[:, t, j, d] = ((last[0] - last[1]) / (2 * eps)).numpy()
    got_inst = unit_sensitivity(model, x, normalize=False, layer=layer)
    got_tt = unit_sensitivity(model, x, mode="through_time", normalize=False, layer=layer)
    np.testing.assert_allclose(got_inst, np.abs(fd_inst), rtol=0, atol=FD)
    np.testing.assert_allclose(got_tt, np.abs(fd_tt), rtol=0, atol=FD)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1)])
def test_class_through_time_equals_captum_saliency_and_autograd(cell, layers, small_model):
    from captum.attr import Saliency

    model = small_model(cell, layers)
    x = torch.as_tensor(np.stack([make_seq(seed=s) for s in range(3)]))
    lengths = torch.tensor([T, 4, 6])
    targets = [2, 0, 1]
    ref = Saliency(model).attribute(
        x.clone().requires_grad_(True), target=targets, abs=True, additional_forward_args=(lengths,)
    )
    got = JointSensitivity(model).attribute(
        x, target=targets, additional_forward_args=(lengths,), mode="through_time", normalize=False
    )
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got, ref, rtol=0, atol=EXACT)
    # and plain autograd, through joint_sensitivity's sum over the axes
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg, lengths)[torch.arange(3), targets].sum(), xg)
    js = joint_sensitivity(
        model, x, target=targets, mode="through_time", normalize=False, lengths=lengths
    )
    np.testing.assert_allclose(js, g.abs().sum(-1).numpy(), rtol=0, atol=EXACT)


def test_float32_default_model_matches_captum():
    from captum.attr import Saliency

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SkeletonLSTM(20, 20, 128).eval()
    x = torch.as_tensor(
        np.random.default_rng(0).normal(0, 0.3, (2, 30, 20, 3)), dtype=torch.float32
    )
    ref = Saliency(model).attribute(x.clone().requires_grad_(True), target=5, abs=True)
    got = JointSensitivity(model).attribute(x, target=5, mode="through_time", normalize=False)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-7)
    u = unit_sensitivity(model, x[0])
    assert u.dtype == np.float32 and u.shape == (128, 30, 20, 3) and np.isfinite(u).all()


# -- eqs 3, 4, 5 -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["instantaneous", "through_time"])
def test_normalization_is_eq3(mode, small_model):
    model = small_model("lstm", 2)
    x = make_seq()
    raw = unit_sensitivity(model, x, mode=mode, normalize=False)
    got = unit_sensitivity(model, x, mode=mode, normalize=True)
    with torch.no_grad():
        h = model.hidden_states(torch.as_tensor(x)[None])[0].numpy()  # (T, H)
    sigma_x = x.std(0)  # (J, 3), population std over the frames
    sigma_h = h.std(0)  # (H,)
    expected = raw * sigma_x[None, None] / sigma_h[:, None, None, None]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_constant_coordinate_and_constant_unit_give_zero_not_nan(small_model):
    model = small_model("lstm", 1)
    with torch.no_grad():  # unit 2: all weights and the cell-input bias zero -> g = c = h = 0
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            p = getattr(model.rnn, name)
            p.view(4, H, -1)[:, 2] = 0
        model.rnn.weight_hh_l0[:, 2] = 0
    x = make_seq()
    x[:, 1, 2] = 0.37  # joint 1, z: never moves
    for mode in ("instantaneous", "through_time"):
        s = unit_sensitivity(model, x, mode=mode)
        assert np.isfinite(s).all()
        assert not s[:, :, 1, 2].any()
        assert not s[2].any()
        assert s[[0, 1, 3, 4]].max() > 0.01
        raw = unit_sensitivity(model, x, mode=mode, normalize=False)
        assert raw[[0, 1, 3, 4], :, 1, 2].max() > 0  # the zeros come from eq 3, not the gradient
    one_frame = unit_sensitivity(model, x[:1])
    assert one_frame.shape == (H, 1, J, 3) and not one_frame.any()


@pytest.mark.parametrize("mode", ["instantaneous", "through_time"])
def test_unit_map_is_eq4_and_class_map_is_eq5(mode, small_model):
    model = small_model("gru", 2)
    x = make_seq()
    units = unit_sensitivity(model, x, mode=mode)
    for u in (0, 3):
        np.testing.assert_allclose(
            joint_sensitivity(model, x, unit=u, mode=mode), units[u].sum(-1), rtol=1e-13
        )
    low = unit_sensitivity(model, x, mode=mode, layer=0)
    np.testing.assert_allclose(
        joint_sensitivity(model, x, unit=1, mode=mode, layer=0), low[1].sum(-1), rtol=1e-13
    )
    w = np.abs(model.fc.weight.detach().numpy())
    for c in range(C):
        eq5 = np.einsum("u,utj->tj", w[c], units.sum(-1))
        np.testing.assert_allclose(class_map(units, model, c), eq5, rtol=1e-13)
        np.testing.assert_allclose(class_map(units.sum(-1), w, c), eq5, rtol=1e-13)
        if mode == "instantaneous":
            np.testing.assert_allclose(joint_sensitivity(model, x, target=c), eq5, rtol=1e-13)
            coords = JointSensitivity(model).attribute(torch.as_tensor(x)[None], target=c)[0]
            np.testing.assert_allclose(
                coords.numpy(), np.einsum("u,utjd->tjd", w[c], units), rtol=1e-13
            )


def test_class_map_on_a_batch_and_its_errors(small_model):
    model = small_model("lstm", 1)
    xs = np.stack([make_seq(seed=s) for s in range(2)])
    units = unit_sensitivity(model, xs, lengths=[T, 4])
    maps = class_map(units, model, 1)
    assert maps.shape == (2, T, J)
    np.testing.assert_allclose(maps[1], class_map(units[1], model, 1), rtol=1e-13)
    with pytest.raises(SkvisError, match="units"):
        class_map(units[:, :3], model, 1)
    with pytest.raises(SkvisError, match="target 7 out of range"):
        class_map(units, model, 7)
    with pytest.raises(SkvisError, match=r"\(C, H\)"):
        class_map(units, np.ones(H), 0)


# -- batches, chunks, state --------------------------------------------------------------------
@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1)])
@pytest.mark.parametrize("mode", ["instantaneous", "through_time"])
def test_batch_with_lengths_equals_one_sequence_at_a_time(cell, layers, mode, small_model):
    model = small_model(cell, layers)
    xs = np.stack([make_seq(seed=s) for s in range(4)])
    xs[2, 5:] = 1e3  # padding content must not matter
    lengths = np.array([T, 5, 5, 2])
    batch = unit_sensitivity(model, xs, mode=mode, lengths=lengths)
    assert batch.shape == (4, H, T, J, 3)
    for n, length in enumerate(lengths):
        alone = unit_sensitivity(model, xs[n, :length], mode=mode)
        np.testing.assert_allclose(batch[n, :, :length], alone, rtol=1e-10, atol=1e-14)
        assert not batch[n, :, length:].any()
    chunked = unit_sensitivity(model, xs, mode=mode, lengths=lengths, chunk_size=1)
    np.testing.assert_allclose(chunked, batch, rtol=1e-12, atol=1e-15)
    jmap = joint_sensitivity(model, xs, target=1, mode=mode, lengths=lengths, chunk_size=3)
    for n, length in enumerate(lengths):
        np.testing.assert_allclose(
            jmap[n, :length],
            joint_sensitivity(model, xs[n, :length], target=1, mode=mode),
            rtol=1e-10,
            atol=1e-14,
        )


def test_model_state_is_restored_and_train_mode_gives_eval_result(small_model):
    model = small_model("lstm", 2)
    model.drop.p = 0.5
    model.rnn.dropout = 0.5
    x = make_seq()
    ref = unit_sensitivity(model, x)
    model.train()
    model.fc.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    xt = torch.as_tensor(x).requires_grad_(True)
    for mode in ("instantaneous", "through_time"):
        out = unit_sensitivity(model, xt, mode=mode)
        joint_sensitivity(model, xt, target=0, mode=mode)
        if mode == "instantaneous":
            np.testing.assert_array_equal(out, ref)
    JointSensitivity(model).attribute(xt[None], target=1)
    assert model.training and all(m.training for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters()) and xt.grad is None
    model.fc.weight.requires_grad_(True)


def test_backends_flags_untouched(small_model):
    before = (torch.backends.cudnn.enabled, torch.backends.cudnn.deterministic)
    unit_sensitivity(small_model("gru", 1), make_seq(), mode="through_time")
    assert (torch.backends.cudnn.enabled, torch.backends.cudnn.deterministic) == before


def test_bad_input_raises_skvis_error_naming_the_shape(small_model):
    model = small_model("lstm", 2)
    x = make_seq()
    with pytest.raises(SkvisError, match="exactly one of target"):
        joint_sensitivity(model, x)
    with pytest.raises(SkvisError, match="exactly one of target"):
        joint_sensitivity(model, x, target=0, unit=1)
    with pytest.raises(SkvisError, match=r"5 joints \(shape \(7, 5, 3\)\); the model expects 4"):
        unit_sensitivity(model, np.zeros((T, 5, 3)))
    with pytest.raises(SkvisError, match=r"expected shape \(T, J, 3\)"):
        unit_sensitivity(model, np.zeros((T, J * 3)))
    bad = x.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(SkvisError, match="NaN or infinite values \\(first at frame 3, joint 2\\)"):
        unit_sensitivity(model, bad)
    with pytest.raises(SkvisError, match="zero frames"):
        unit_sensitivity(model, np.zeros((0, J, 3)))
    with pytest.raises(SkvisError, match="unit 5 out of range 0..4"):
        joint_sensitivity(model, x, unit=5)
    with pytest.raises(SkvisError, match="target 3 out of range 0..2"):
        joint_sensitivity(model, x, target=3)
    with pytest.raises(SkvisError, match="target"):
        joint_sensitivity(model, x, target=1.5)
    with pytest.raises(SkvisError, match="mode must be one of"):
        unit_sensitivity(model, x, mode="integrated")
    with pytest.raises(SkvisError, match="layer 2 out of range"):
        unit_sensitivity(model, x, layer=2)
    with pytest.raises(SkvisError, match="not the last"):
        joint_sensitivity(model, x, target=0, layer=0)
    xs = np.stack([x, x])
    with pytest.raises(SkvisError, match=r"lengths must be in 1..7"):
        unit_sensitivity(model, xs, lengths=[7, 0])
    with pytest.raises(SkvisError, match="3 lengths for a batch of 2"):
        unit_sensitivity(model, xs, lengths=[7, 1, 1])
    with pytest.raises(SkvisError, match="lengths are for a batch"):
        unit_sensitivity(model, x, lengths=[7])
    with pytest.raises(SkvisError, match="chunk_size"):
        unit_sensitivity(model, xs, chunk_size=0)
    with pytest.raises(SkvisError, match="as_recurrent_classifier"):
        unit_sensitivity(nn.Linear(3, 3), x)


def test_import_does_not_pull_in_widget_libraries():
    code = (
        "import sys, skvis_widgets.saliency, skvis_widgets.adapters\n"
        "bad = [m for m in ('ipywidgets', 'pythreejs', 'ipyvolume', 'bqplot', 'matplotlib', "
        "'captum') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# -- helpers for the explorer ------------------------------------------------------------------
def test_rank_units_by_weight_and_by_sensitivity(small_model):
    model = small_model("lstm", 1)
    w = model.fc.weight.detach().numpy()
    r = rank_units(model, 2)
    np.testing.assert_array_equal(r.units, np.argsort(-np.abs(w[2]), kind="stable"))
    np.testing.assert_array_equal(r.weights, w[2][r.units])
    assert r.by == "weight" and r.target == 2 and np.all(np.diff(r.scores) <= 0)
    units = unit_sensitivity(model, make_seq())
    s = rank_units(w, 2, by="sensitivity", unit_sens=units)
    expected = np.abs(w[2]) * units.reshape(H, -1).mean(1)
    np.testing.assert_array_equal(s.units, np.argsort(-expected, kind="stable"))
    np.testing.assert_allclose(s.scores, expected[s.units])
    batch = rank_units(w, 2, by="sensitivity", unit_sens=units[None].sum(-1))
    np.testing.assert_array_equal(batch.units, s.units)
    with pytest.raises(SkvisError, match="needs unit_sens"):
        rank_units(model, 2, by="sensitivity")
    with pytest.raises(SkvisError, match="by must be"):
        rank_units(model, 2, by="gradient")
    with pytest.raises(SkvisError, match="target 3 out of range"):
        rank_units(model, 3)


def test_body_part_totals_partition_the_msr_skeleton():
    rng = np.random.default_rng(0)
    jmap = rng.random((6, MSR_ACTION3D.num_joints))
    parts = body_part_totals(jmap, MSR_ACTION3D)
    assert list(parts) == ["head", "torso", "left_arm", "right_arm", "left_leg", "right_leg"]
    assert all(v.shape == (6,) for v in parts.values())
    np.testing.assert_allclose(sum(parts.values()), jmap.sum(1))  # every joint in one part
    knee = MSR_ACTION3D.index("knee_left")
    one = np.zeros((1, MSR_ACTION3D.num_joints))
    one[0, knee] = 2.0
    assert {k: float(v[0]) for k, v in body_part_totals(one, MSR_ACTION3D).items()}["left_leg"] == 2
    with pytest.raises(SkvisError, match=r"expected \(T, 20\)"):
        body_part_totals(np.zeros((6, 25)), MSR_ACTION3D)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def test_sensitivity_colors_ramp_and_scaling():
    values = np.array([[0.0, 1.0, 2.0, 4.0]])
    rgb = sensitivity_colors(values)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert np.all(np.diff(_luminance(rgb[0])) < 0)  # darker for larger
    np.testing.assert_allclose(rgb[0, 0], COLORMAPS["YlOrRd"][0], atol=1e-7)  # 0 -> lightest
    np.testing.assert_allclose(rgb[0, -1], COLORMAPS["YlOrRd"][-1], atol=1e-7)  # max -> darkest
    # per sequence: invariant to a common scale; global: compares across sequences
    np.testing.assert_array_equal(sensitivity_colors(values * 10), rgb)
    glob = sensitivity_colors(values, scale="global", vmax=8.0)
    np.testing.assert_allclose(glob[0, -1], sensitivity_colors(np.array([0.5, 1.0]))[0], atol=1e-6)
    np.testing.assert_array_equal(
        sensitivity_colors(values * 100, scale="global", vmax=8.0)[0, 1:],
        np.repeat(rgb[:1, -1], 3, 0),
    )  # saturates above vmax
    assert np.all(sensitivity_colors(np.zeros((3, 2))) == rgb[0, 0])
    grey = sensitivity_colors(values, cmap="Greys")
    np.testing.assert_allclose(grey[0, :, 0], grey[0, :, 1])
    custom = sensitivity_colors(values, cmap=[[1, 1, 1], [0, 0, 0]])
    np.testing.assert_allclose(custom[0, :, 0], [1, 0.75, 0.5, 0], atol=1e-7)
    for kwargs, match in [
        ({"scale": "global"}, "positive vmax"),
        ({"vmax": 1.0}, "vmax goes with scale='global'"),
        ({"cmap": "jet"}, "unknown colormap"),
        ({"scale": "frame"}, "scale must be"),
    ]:
        with pytest.raises(SkvisError, match=match):
            sensitivity_colors(values, **kwargs)
    with pytest.raises(SkvisError, match="non-negative"):
        sensitivity_colors(-values)
    with pytest.raises(SkvisError, match="NaN"):
        sensitivity_colors(np.array([np.nan]))


# -- the shipped model on the bundled data -----------------------------------------------------
def test_pretrained_model_on_the_msr_test_split():
    from captum.attr import Saliency

    from skvis_widgets.data import load_msr_action3d
    from skvis_widgets.model import load_pretrained

    model = load_pretrained("msr_action3d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped all-zero recording
        _, test = load_msr_action3d().split_cross_subject()
    idx = [int(test.indices_of_class(c)[0]) for c in (5, 13)]  # high throw, forward kick
    batch, lengths = test.padded(idx)
    units = unit_sensitivity(model, batch, lengths=lengths)
    assert units.shape == (2, model.hidden_size, batch.shape[1], 20, 3)
    assert np.isfinite(units).all()
    for k, i in enumerate(idx):
        length = int(lengths[k])
        alone = unit_sensitivity(model, test.sequences[i])
        np.testing.assert_allclose(units[k, :, :length], alone, rtol=1e-5, atol=1e-7)
        jmap = class_map(alone, model, int(test.labels[i]))
        np.testing.assert_allclose(
            joint_sensitivity(model, test.sequences[i], target=int(test.labels[i])),
            jmap,
            rtol=1e-5,
        )
        assert jmap.max() > 0
    x = torch.as_tensor(batch)
    ref = Saliency(model).attribute(
        x.clone().requires_grad_(True),
        target=[5, 13],
        abs=True,
        additional_forward_args=(torch.as_tensor(lengths),),
    )
    got = JointSensitivity(model).attribute(
        x, target=[5, 13], additional_forward_args=lengths, mode="through_time", normalize=False
    )
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)


def test_affine_scan_equals_the_sequential_recurrence():
    from skvis_widgets.saliency import _affine_scan

    rng = np.random.default_rng(0)
    for t in (1, 2, 37, 64):
        a = torch.as_tensor(rng.uniform(0, 1, (2, t, 3)))
        b = torch.as_tensor(rng.normal(0, 1, (2, t, 3)))
        c, ref = torch.zeros(2, 3, dtype=torch.float64), []
        for s in range(t):
            c = a[:, s] * c + b[:, s]
            ref.append(c)
        torch.testing.assert_close(_affine_scan(a, b), torch.stack(ref, 1), rtol=1e-13, atol=1e-14)


def test_long_float32_backward_stays_off_subnormals_and_matches_float64(small_model):
    model64 = small_model("lstm", 1, hidden=16)
    model32 = small_model("lstm", 1, hidden=16).float()
    x = make_seq(t=400)
    u64 = unit_sensitivity(model64, x, mode="through_time", normalize=False)
    u32 = unit_sensitivity(model32, x, mode="through_time", normalize=False)
    assert u32.dtype == np.float32
    assert not ((u32 > 0) & (u32 < np.finfo(np.float32).tiny)).any()
    assert (u64[:, :50] < 1e-20).any()  # the far past has decayed: the flush was exercised
    np.testing.assert_allclose(u32, u64, rtol=0, atol=1e-6 * u64.max())
    sequence = np.ascontiguousarray(x, dtype=np.float32)
    sequence.flags.writeable = False  # a read-only input is fine and left as it was
    np.testing.assert_array_equal(unit_sensitivity(model32, sequence), unit_sensitivity(model32, x))


# -- batches against loops, blocks of frames, streaming, memory --------------------------------
def _ragged(n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    xs = np.stack([make_seq(seed=seed + s) for s in range(n)])
    lengths = np.array([T, 5, 2, T, 6][:n])
    xs[1, 5:] = 1e3  # padding content must not matter
    return xs, lengths


@pytest.mark.parametrize("cell,layers", CONFIGS)
@pytest.mark.parametrize("mode", ["instantaneous", "through_time"])
def test_every_batched_function_equals_a_loop_over_sequences(
    cell, layers, mode, small_model, engine
):
    """Batch == one sequence at a time (1e-12 abs on O(1) float64 values), any chunk size."""
    model = small_model(cell, layers)
    xs, lengths = _ragged()
    calls = {
        "unit_sensitivity": lambda s, **kw: unit_sensitivity(model, s, mode=mode, **kw),
        "class": lambda s, **kw: joint_sensitivity(model, s, target=2, mode=mode, **kw),
        "unit": lambda s, **kw: joint_sensitivity(model, s, unit=3, mode=mode, **kw),
    }
    if mode == "instantaneous":
        calls["instantaneous_jacobian"] = lambda s, **kw: instantaneous_jacobian(model, s, **kw)
    for name, call in calls.items():
        for chunk in (None, 1, 2):
            batch = call(xs, lengths=lengths, chunk_size=chunk)
            for n, length in enumerate(lengths):
                alone = call(xs[n, :length])
                got = (
                    batch[n, :, :length]
                    if name.endswith(("sensitivity", "jacobian"))
                    else (batch[n, :length])
                )
                np.testing.assert_allclose(got, alone, rtol=0, atol=EXACT, err_msg=name)
                past = batch[n, :, length:] if got.ndim == 4 else batch[n, length:]
                assert not past.any(), name


@pytest.mark.parametrize("cell,layers", CONFIGS)
@pytest.mark.parametrize("normalize", [True, False])
def test_blocks_of_frames_equal_one_block(cell, layers, normalize, small_model):
    """A long sequence's class and unit maps, computed a few frames at a time, carrying the
    recurrent state and the eq-3 spreads across blocks, equal the one-block result."""
    from skvis_widgets.saliency import _coordinate_maps

    model = small_model(cell, layers)
    xs, lengths = _ragged(3)
    for kw in ({"target": [0, 2, 1], "unit": None}, {"target": None, "unit": 4}):
        maps = [
            _coordinate_maps(
                model,
                xs,
                mode="instantaneous",
                normalize=normalize,
                layer=-1,
                lengths=lengths,
                chunk_size=None,
                t_block=t_block,
                **kw,
            )[0]
            for t_block in (None, 1, 2, 3)
        ]
        for got in maps[1:]:
            np.testing.assert_allclose(got, maps[0], rtol=0, atol=EXACT)


def test_class_maps_are_eq5_of_the_unit_maps_on_a_float32_batch():
    """The tiled eq 5 inside joint_sensitivity == class_map of the all-unit maps (float32,
    rtol 1e-5: the same sum in another order), on sequences long enough for several blocks
    of frames and tiles of units."""
    from skvis_widgets import saliency

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = SkeletonLSTM(J, C, 40).eval()
    xs = np.random.default_rng(4).normal(0, 0.4, (3, 90, J, 3)).astype(np.float32)
    lengths = np.array([90, 61, 30])
    units = unit_sensitivity(model, xs, lengths=lengths)
    old = saliency._BLOCK_STATE, saliency._TILE
    saliency._BLOCK_STATE, saliency._TILE = 4096, 2048  # several blocks and tiles
    try:
        maps = joint_sensitivity(model, xs, target=[1, 0, 2], lengths=lengths)
    finally:
        saliency._BLOCK_STATE, saliency._TILE = old
    for n, c in enumerate([1, 0, 2]):
        np.testing.assert_allclose(maps[n], class_map(units[n], model, c), rtol=1e-5, atol=1e-7)


def test_streaming_equals_one_call(tmp_path, small_model):
    """iter_unit_sensitivity and out= (an array, a numpy.memmap) give exactly one call's maps."""
    from skvis_widgets.saliency import iter_unit_sensitivity

    model = small_model("lstm", 1)
    xs, lengths = _ragged()
    whole = unit_sensitivity(model, xs, lengths=lengths)
    seen = []
    for sl, units in iter_unit_sensitivity(model, xs, lengths=lengths, batch_size=2):
        seen.append(sl)
        np.testing.assert_array_equal(units, unit_sensitivity(model, xs[sl], lengths=lengths[sl]))
        np.testing.assert_allclose(units, whole[sl], rtol=0, atol=EXACT)
    assert seen == [slice(0, 2), slice(2, 4), slice(4, 5)]
    store = np.lib.format.open_memmap(tmp_path / "u.npy", "w+", np.float64, whole.shape)
    assert unit_sensitivity(model, xs, lengths=lengths, out=store) is store
    store.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "u.npy"), whole)
    one = np.empty(whole.shape[1:])
    unit_sensitivity(model, xs[0], out=one)
    np.testing.assert_array_equal(one, unit_sensitivity(model, xs[0]))
    with pytest.raises(SkvisError, match=r"out of shape \(5, 5, 7, 4, 3\).*float32"):
        unit_sensitivity(model, xs, lengths=lengths, out=np.empty(whole.shape, np.float32))
    with pytest.raises(SkvisError, match="expected shape"):
        unit_sensitivity(model, xs, lengths=lengths, out=np.empty((5, H, T, J)))
    with pytest.raises(SkvisError, match="batch_size"):
        next(iter_unit_sensitivity(model, xs, batch_size=0))
    with pytest.raises(SkvisError, match=r"\(N, T, J, 3\)"):
        next(iter_unit_sensitivity(model, xs[0]))


_PEAK = """
import sys, threading, time
import numpy as np, torch
from skvis_widgets.model import load_pretrained
from skvis_widgets.saliency import joint_sensitivity

def anon():
    # anonymous resident memory: what allocations take (file-backed pages of the shared
    # libraries, which a loaded machine evicts and faults back, are left out)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon:"))

model = load_pretrained("msr_action3d")
rng = np.random.default_rng(0)
def walk(t):
    steps = np.cumsum(rng.normal(0, 0.01, (t, 20, 3)), 0)
    return (rng.normal(0, 0.3, (1, 20, 3)) + steps).astype(np.float32)
joint_sensitivity(model, walk(50), target=3)  # first-call allocations
x = walk(int(sys.argv[1]))
before = peak = anon()
done = threading.Event()
def watch():
    global peak
    while not done.is_set():
        peak = max(peak, anon())
        time.sleep(0.0005)
watcher = threading.Thread(target=watch)
watcher.start()
out = joint_sensitivity(model, x, target=3)
done.set()
watcher.join()
print(max(peak, anon()) - before, out.nbytes)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("frames", [3000, 6000])
def test_class_map_peak_memory_does_not_grow_with_units_times_frames(frames):
    """eq 5 on one long sequence (MSR model, H=256): the first engine built the (H, T, J, 3)
    intermediate (282 MiB at T=3000 measured this way on the first engine); now the peak
    is the input, the result and a working set that does not grow with T."""
    run = subprocess.run(
        [sys.executable, "-c", _PEAK, str(frames)], capture_output=True, text=True, check=True
    )
    grew, out_bytes = map(int, run.stdout.split())
    whole = 256 * frames * 20 * 3 * 4  # the all-unit intermediate, for scale
    assert grew < 32 * 2**20, f"peak grew {grew / 2**20:.1f} MiB for a {out_bytes} B result"
    assert grew < whole / 8


# -- the compiled kernel -----------------------------------------------------------------------
def test_the_kernel_forward_is_the_lstm_forward():
    """`_lstm_kernel.forward`'s outputs are nn.LSTM's (float64: 1e-13; float32: 2e-6 abs
    on outputs in [-1, 1]), and its coefficients are `_local`'s, which the replay test checks."""
    from skvis_widgets import _lstm_kernel
    from skvis_widgets.saliency import _local, _weights

    for dtype, tol in ((torch.float64, 1e-13), (torch.float32, 2e-6)):
        torch.manual_seed(3)
        rnn = nn.LSTM(6, 8, batch_first=True).to(dtype)
        with torch.no_grad():
            for p in rnn.parameters():
                p.mul_(4)  # saturating gates: tanh and sigmoid near +-1 too
        x = torch.randn(1, 40, 6, dtype=dtype) * 2
        w = _weights(rnn, 0)
        with torch.no_grad():
            ref = rnn(x)[0][0]
            coef_ref = _local("lstm", x, ref[None], w)["coef"][0]  # (T, G, H)
            xp = (x[0] @ w[0].T + w[2] + w[3]).numpy()
        h, coef = np.empty((40, 8), xp.dtype), np.empty((40, 32), xp.dtype)
        assert _lstm_kernel.ready(xp.dtype, wait=True)
        _lstm_kernel.forward(xp, w[1].T.contiguous().numpy(), h, coef)
        assert np.abs(ref.numpy()).max() > 0.9  # saturated units are in the test
        np.testing.assert_allclose(h, ref.numpy(), rtol=0, atol=tol)
        np.testing.assert_allclose(coef.reshape(40, 4, 8), coef_ref.numpy(), rtol=0, atol=tol)


def test_the_kernel_equals_the_torch_path_on_a_float32_batch(monkeypatch):
    """Every kernel case against the torch path on a float32 NTU-like model: all units,
    normalized or not, signed, a ragged batch in chunks, into a caller's array.
    Tolerance 2e-6 relative to each result's largest value (float32 rounding)."""
    from skvis_widgets import _lstm_kernel
    from skvis_widgets.model import SkeletonLSTM

    torch.manual_seed(0)
    model = SkeletonLSTM(25, 10, 24).eval()
    rng = np.random.default_rng(0)
    xs = np.cumsum(rng.normal(0, 0.02, (3, 60, 25, 3)), 1).astype(np.float32)
    lengths = [60, 33, 7]
    calls = {
        "all": lambda: unit_sensitivity(model, xs, lengths=lengths),
        "raw": lambda: unit_sensitivity(model, xs, lengths=lengths, normalize=False),
        "one chunk each": lambda: unit_sensitivity(model, xs, lengths=lengths, chunk_size=1),
        "signed": lambda: instantaneous_jacobian(model, xs, lengths=lengths),
        "out": lambda: unit_sensitivity(
            model, xs, lengths=lengths, out=np.full((3, 24, 60, 25, 3), 7.0, np.float32)
        ),
    }
    assert _lstm_kernel.ready(np.float32, wait=True)
    real = _lstm_kernel.unit_blocks
    used = []
    monkeypatch.setattr(  # one entry per sequence (its call for the first units, u0 = 0)
        _lstm_kernel, "unit_blocks", lambda *a: (a[-2] == 0 and used.append(1), real(*a))
    )
    fast = {name: call() for name, call in calls.items()}
    assert len(used) == 5 * 3  # one per sequence: the kernel did them all
    monkeypatch.setattr(_lstm_kernel, "ready", lambda *a, **k: False)
    for name, call in calls.items():
        ref = call()
        assert fast[name].dtype == ref.dtype == np.float32 and fast[name].shape == ref.shape
        scale = np.abs(ref).max()
        assert scale > 0, name
        np.testing.assert_allclose(fast[name], ref, rtol=0, atol=2e-6 * scale, err_msg=name)
        past = fast[name][2, :, 7:] if ref.ndim == 5 else fast[name][2, 7:]
        assert not past.any(), name  # padding frames are zero, whatever out held
    assert len(used) == 15  # the torch path never called the kernel


def test_a_call_during_the_kernels_compile_takes_the_torch_path_at_once(monkeypatch):
    """The kernel's compile held in a background thread (an Event stands for the seconds
    numba takes): a call answers at once through the torch path; once the compile is done,
    calls take the kernel; `prepare_kernel` says which."""
    import threading

    from skvis_widgets import _lstm_kernel
    from skvis_widgets._compiled import BackgroundCompile
    from skvis_widgets.saliency import prepare_kernel

    started, release = threading.Event(), threading.Event()

    def held_compile():
        started.set()
        if not release.wait(600):
            raise RuntimeError("the test never released the compile")
        _lstm_kernel._warm_up(np.float32)

    state = BackgroundCompile(held_compile)
    monkeypatch.setitem(_lstm_kernel._COMPILES, np.float32, state)
    real = _lstm_kernel.unit_blocks
    used = []
    monkeypatch.setattr(  # one entry per sequence (its call for the first units, u0 = 0)
        _lstm_kernel, "unit_blocks", lambda *a: (a[-2] == 0 and used.append(1), real(*a))
    )
    from skvis_widgets.model import SkeletonLSTM

    torch.manual_seed(1)
    model = SkeletonLSTM(20, 5, 12).eval()
    seq = np.random.default_rng(2).normal(0, 0.1, (30, 20, 3)).astype(np.float32)
    try:
        assert prepare_kernel(background=True) is False
        assert started.wait(600) and state.in_progress()
        during = unit_sensitivity(model, seq)  # returns while the compile is held
        assert not release.is_set() and state.thread is not None and state.thread.is_alive()
        assert not used
    finally:
        release.set()
    state.thread.join(timeout=600)
    assert state.ready.is_set() and prepare_kernel() is True
    used.clear()  # (the compile's own warm-up calls)
    after = unit_sensitivity(model, seq)
    assert len(used) == 1
    np.testing.assert_allclose(after, during, rtol=0, atol=2e-6 * np.abs(during).max())
    assert prepare_kernel(torch.float16) is False  # no kernel for other dtypes


def test_the_kernel_on_several_threads_gives_the_same_maps(monkeypatch):
    """With torch's intra-op threads above one, the kernel shares sequences and units among
    threads: every value is computed by one call, as with one thread (bit for bit)."""
    import threading

    from skvis_widgets import _lstm_kernel
    from skvis_widgets.model import SkeletonLSTM

    torch.manual_seed(4)
    model = SkeletonLSTM(20, 6, 17).eval()
    xs = np.random.default_rng(5).normal(0, 0.1, (3, 25, 20, 3)).astype(np.float32)
    lengths = [25, 9, 16]
    assert _lstm_kernel.ready(np.float32, wait=True)
    workers = set()
    real = _lstm_kernel.unit_blocks

    def counted(*args):
        workers.add(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(_lstm_kernel, "unit_blocks", counted)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = unit_sensitivity(model, xs, lengths=lengths)
        assert workers == {threading.current_thread().name}
        torch.set_num_threads(3)
        workers.clear()
        three = unit_sensitivity(model, xs, lengths=lengths)
    finally:
        torch.set_num_threads(before)
    assert workers and all(name.startswith("skvis-lstm-kernel") for name in workers)
    assert np.abs(one).max() > 0
    np.testing.assert_array_equal(three, one)
