"""explain(): each method against an independent computation.

Captum (a test dependency) for the methods it has, with 1e-5 relative tolerance on the
shipped model and MSR test data; central finite differences in float64; integrated
gradients' completeness; an occlusion loop written here; batches against single
sequences; a temporal-convolution classifier (no recurrence) for the model-agnostic
methods.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skvis_widgets import SkvisError
from skvis_widgets.data import load_msr_action3d
from skvis_widgets.methods import METHODS, explain, gauss_legendre
from skvis_widgets.metrics import fill_removed
from skvis_widgets.model import SkeletonLSTM, load_pretrained
from skvis_widgets.saliency import joint_sensitivity

captum_attr = pytest.importorskip("captum.attr")

RTOL = 1e-5  # relative to the map's largest magnitude


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.fixture(scope="module")
def shipped():
    model = load_pretrained("msr_action3d").eval()
    test = load_msr_action3d().split_cross_subject()[1]
    return model, test


@pytest.fixture(scope="module")
def seq(shipped):
    return np.asarray(shipped[1].sequences[3], np.float32)


class TCN(nn.Module):
    """A small temporal-convolution classifier: (N, T, J, 3) -> (N, C), no recurrence."""

    def __init__(self, joints: int = 20, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv1d(joints * 3, 16, 3, padding=1)
        self.conv2 = nn.Conv1d(16, 16, 3, padding=2, dilation=2)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2)
        h = torch.tanh(self.conv2(torch.tanh(self.conv1(h))))
        return self.head(h.mean(-1))


# ---------------------------------------------------------------------------------------------
# Against Captum, on the shipped model
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("absolute", [True, False])
def test_gradient_equals_captum_saliency(shipped, seq, absolute):
    model, _ = shipped
    x = torch.tensor(seq)[None]
    ref = captum_attr.Saliency(model).attribute(x, target=4, abs=absolute)[0].sum(-1).numpy()
    got = explain(model, seq, target=4, method="gradient", abs=absolute)
    if absolute:  # Captum's abs is per coordinate: the sum of |.| is ours
        ref = captum_attr.Saliency(model).attribute(x, target=4)[0].sum(-1).numpy()
    assert got.shape == seq.shape[:2]
    assert rel(got, ref) < RTOL


def test_gradient_x_input_equals_captum(shipped, seq):
    model, _ = shipped
    x = torch.tensor(seq)[None]
    ref = captum_attr.InputXGradient(model).attribute(x, target=2)[0].detach()
    got = explain(model, seq, target=2, method="gradient_x_input", abs=False)
    assert rel(got, ref.sum(-1).numpy()) < RTOL
    got = explain(model, seq, target=2, method="gradient_x_input")
    assert rel(got, ref.abs().sum(-1).numpy()) < RTOL


@pytest.mark.parametrize("baseline", ["mean_pose", "rest_pose", "zeros"])
def test_integrated_gradients_equal_captum(shipped, seq, baseline):
    model, _ = shipped
    x = torch.tensor(seq)[None]
    if baseline == "mean_pose":
        base = x.mean(1, keepdim=True).expand_as(x).contiguous()
    elif baseline == "rest_pose":
        base = model.feature_mean.reshape(1, 1, -1, 3).expand_as(x).contiguous()
    else:
        base = torch.zeros_like(x)
    ref = (
        captum_attr.IntegratedGradients(model)
        .attribute(x, baselines=base, target=7, n_steps=20)[0]
        .detach()
    )
    got = explain(
        model, seq, target=7, method="integrated_gradients", baseline=baseline, n_steps=20,
        abs=False,
    )  # fmt: skip
    assert rel(got, ref.sum(-1).numpy()) < RTOL


def test_occlusion_with_zero_fill_equals_captum(shipped, seq):
    model, _ = shipped
    t = 4 + 2 * ((len(seq) - 4) // 2)  # Captum's windows then cover every frame
    s = seq[:t]
    x = torch.tensor(s)[None]
    ref = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=(4, 1, 3), strides=(2, 1, 3), baselines=0, target=1
    )[0]
    # every coordinate of a cell gets the cell's value in Captum's result
    got = explain(model, s, target=1, method="occlusion", replace="zero", abs=False)
    assert rel(got, ref[..., 0].numpy()) < RTOL


def test_smoothgrad_is_the_mean_of_captum_saliency_over_the_same_noise(shipped, seq):
    model, _ = shipped
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn((6, 1, *seq.shape), generator=gen, dtype=torch.float64)
    sal = captum_attr.Saliency(model)
    maps = [
        sal.attribute((torch.tensor(seq, dtype=torch.float64)[None] + 0.02 * e).float(), target=3)
        for e in noise
    ]
    ref = torch.stack(maps).mean(0)[0].sum(-1).numpy()
    got = explain(model, seq, target=3, method="smoothgrad", noise=0.02, n_samples=6, seed=5)
    assert rel(got, ref) < RTOL
    again = explain(
        model, seq, target=3, method="smoothgrad", noise=0.02, n_samples=6,
        generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    np.testing.assert_array_equal(got, again)
    other = explain(model, seq, target=3, method="smoothgrad", noise=0.02, n_samples=6, seed=6)
    assert rel(other, got) > 1e-3


def test_paper_methods_are_joint_sensitivity(shipped, seq):
    model, _ = shipped
    np.testing.assert_allclose(
        explain(model, seq, target=5), joint_sensitivity(model, seq, target=5), rtol=1e-6
    )
    np.testing.assert_allclose(
        explain(model, seq, target=5, method="paper_through_time"),
        joint_sensitivity(model, seq, target=5, mode="through_time"),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        explain(model, seq, unit=17), joint_sensitivity(model, seq, unit=17), rtol=1e-6
    )


# ---------------------------------------------------------------------------------------------
# Finite differences, completeness, occlusion loop
# ---------------------------------------------------------------------------------------------
def test_gradient_matches_central_differences_in_float64():
    torch.manual_seed(1)
    model = SkeletonLSTM(20, 4, 12).double().eval()
    rng = np.random.default_rng(0)
    s = rng.normal(0, 0.3, (9, 20, 3))
    got = explain(model, s, target=2, method="gradient", abs=False)
    assert got.dtype == np.float64

    def f(v):
        with torch.no_grad():
            return float(model(torch.tensor(v)[None])[0, 2])

    h = 1e-6
    fd = np.zeros((9, 20))
    for t in range(9):
        for j in range(20):
            for d in range(3):
                up, dn = s.copy(), s.copy()
                up[t, j, d] += h
                dn[t, j, d] -= h
                fd[t, j] += (f(up) - f(dn)) / (2 * h)
    assert rel(got, fd) < 1e-6


def test_unit_gradient_matches_central_differences():
    torch.manual_seed(2)
    model = SkeletonLSTM(20, 4, 12).double().eval()
    s = np.random.default_rng(1).normal(0, 0.3, (6, 20, 3))
    got = explain(model, s, unit=5, method="gradient", abs=False)

    def f(v):
        with torch.no_grad():
            return float(model.hidden_states(torch.tensor(v)[None])[0, -1, 5])

    h = 1e-6
    fd = np.zeros((6, 20))
    for idx in np.ndindex(s.shape):
        up, dn = s.copy(), s.copy()
        up[idx] += h
        dn[idx] -= h
        fd[idx[:2]] += (f(up) - f(dn)) / (2 * h)
    assert rel(got, fd) < 1e-6


def test_integrated_gradients_are_complete_on_a_smooth_model():
    """sum of attributions = o(x) - o(baseline) to 1e-6 relative at 64 steps on a small
    float64 model (a smooth path); the reported error is that difference."""
    torch.manual_seed(3)
    model = SkeletonLSTM(20, 4, 12).double().eval()
    s = np.random.default_rng(2).normal(0, 0.3, (10, 20, 3))
    e = explain(
        model, s, target=1, method="integrated_gradients", baseline="zeros", n_steps=64,
        abs=False, return_info=True,
    )  # fmt: skip
    with torch.no_grad():
        gap = float(
            model(torch.tensor(s)[None])[0, 1] - model(torch.zeros(1, 10, 20, 3).double())[0, 1]
        )
    assert abs(gap) > 1e-2
    assert abs(e.map.sum() - gap) < 1e-6 * abs(gap)
    assert e.completeness_error[0] == pytest.approx(abs(e.map.sum() - gap), abs=1e-9)


def test_integrated_gradients_completeness_on_the_shipped_model(shipped, seq):
    """The shipped model's logit rises steeply along the path (a few percent of it carry
    most of the change), so the quadrature needs many steps: the completeness error falls
    from ~10% of the gap at 32 steps to below 1e-3 at 512 (zeros baseline). The reported
    error is checked against o(x) - o(0) computed here."""
    model, _ = shipped
    x = torch.tensor(seq)[None]
    with torch.no_grad():
        gap = float(model(x)[0, 0] - model(torch.zeros_like(x))[0, 0])
    assert abs(gap) > 0.1
    errs = []
    for n in (32, 512):
        e = explain(
            model, seq, target=0, method="integrated_gradients", baseline="zeros", n_steps=n,
            abs=False, return_info=True,
        )  # fmt: skip
        total = e.map.astype(np.float64).sum()
        assert e.completeness_error[0] == pytest.approx(abs(total - gap), abs=1e-3)
        errs.append(abs(total - gap) / abs(gap))
    assert errs[1] < 1e-3 < errs[0]


def test_gauss_legendre_rule_integrates_polynomials():
    a, w = gauss_legendre(5)
    assert w.sum() == pytest.approx(1.0)
    assert (w * a**7).sum() == pytest.approx(1 / 8)
    assert ((a > 0) & (a < 1)).all()


@pytest.mark.parametrize("occlude", ["windows", "joints", "frames", "parts"])
def test_occlusion_equals_a_loop(shipped, seq, occlude):
    model, _ = shipped
    s = seq[:23]
    t, j = s.shape[:2]
    got = explain(model, s, target=6, method="occlusion", occlude=occlude, abs=False)

    def logit(v):
        with torch.no_grad():
            return float(model(torch.tensor(np.asarray(v, np.float32))[None])[0, 6])

    full = logit(s)
    masks = []
    if occlude == "joints":
        masks = [np.repeat(np.eye(j, dtype=bool)[q][None], t, 0) for q in range(j)]
    elif occlude == "parts":
        topo = load_msr_action3d().topology
        from skvis_widgets.skeleton import BODY_PARTS

        for part in BODY_PARTS:
            m = np.zeros((t, j), bool)
            m[:, list(topo.part_indices(part))] = True
            if m.any():
                masks.append(m)
    else:
        starts = [0, 4, 8, 12, 16, 19]  # window 4, stride 2 ... plus the last frames
        starts = sorted(set(list(range(0, t - 4 + 1, 2)) + [t - 4]))
        for a in starts:
            if occlude == "frames":
                m = np.zeros((t, j), bool)
                m[a : a + 4] = True
                masks.append(m)
            else:
                for q in range(j):
                    m = np.zeros((t, j), bool)
                    m[a : a + 4, q] = True
                    masks.append(m)
    total = np.zeros((t, j))
    count = np.zeros((t, j))
    for m in masks:
        filled = fill_removed(s, m)
        total += m * (full - logit(filled))
        count += m
    ref = total / np.maximum(count, 1)
    assert rel(got, ref) < 1e-4  # float32 logits of 2 * J * windows forward passes


# ---------------------------------------------------------------------------------------------
# Batches, lengths, state
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(METHODS))
def test_batch_equals_one_sequence_at_a_time(shipped, method):
    model, test = shipped
    idx = [0, 5, 9]
    batch, lengths = test.padded(idx)
    targets = [1, 4, 8]
    opts = {"n_samples": 3} if method == "smoothgrad" else {}
    if method == "integrated_gradients":
        opts = {"n_steps": 8}
    out = explain(model, batch, target=targets, lengths=lengths, method=method, **opts)
    assert out.shape == batch.shape[:3]
    for k, (i, c) in enumerate(zip(idx, targets, strict=True)):
        one = explain(model, test.sequences[i], target=c, method=method, **opts)
        if method == "smoothgrad":  # the noise of a batch is drawn for all at once
            continue
        assert rel(out[k, : lengths[k]], one) < 1e-4
        assert (out[k, lengths[k] :] == 0).all()


def test_chunks_do_not_change_the_result(shipped):
    model, test = shipped
    batch, lengths = test.padded([0, 1, 2, 3])
    a = explain(model, batch, target=1, lengths=lengths, method="integrated_gradients", n_steps=6)
    b = explain(
        model, batch, target=1, lengths=lengths, method="integrated_gradients", n_steps=6,
        chunk_size=5,
    )  # fmt: skip
    assert rel(b, a) < 1e-5


def test_model_state_is_left_alone(seq):
    model = SkeletonLSTM(20, 4, 8)
    model.train()
    model.fc.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for method in METHODS:
        explain(model, seq, target=1, method=method)
    assert model.training and all(m.training for m in model.modules())
    assert not model.fc.weight.requires_grad and model.rnn.weight_ih_l0.requires_grad
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# ---------------------------------------------------------------------------------------------
# Any model
# ---------------------------------------------------------------------------------------------
def test_model_agnostic_methods_on_a_temporal_convolution(seq):
    model = TCN().eval()
    x = torch.tensor(seq)[None]
    ref = captum_attr.Saliency(model).attribute(x, target=3)[0].sum(-1).numpy()
    assert rel(explain(model, seq, target=3, method="gradient"), ref) < RTOL
    ref = (
        captum_attr.IntegratedGradients(model)
        .attribute(x, baselines=torch.zeros_like(x), target=3, n_steps=10)[0]
        .detach()
        .sum(-1)
        .numpy()
    )
    got = explain(
        model, seq, target=3, method="integrated_gradients", baseline="zeros", n_steps=10,
        abs=False,
    )  # fmt: skip
    assert rel(got, ref) < RTOL
    for method in ("gradient_x_input", "smoothgrad", "occlusion"):
        out = explain(model, seq, target=3, method=method)
        assert out.shape == seq.shape[:2] and np.isfinite(out).all() and out.max() > 0


def test_a_temporal_convolution_sees_each_sequence_cut_to_its_length(seq):
    model = TCN().eval()
    batch = np.zeros((2, 30, 20, 3), np.float32)
    batch[0, :20], batch[1] = seq[:20], seq[:30]
    out = explain(model, batch, target=[0, 2], lengths=[20, 30], method="gradient")
    assert rel(out[0, :20], explain(model, seq[:20], target=0, method="gradient")) < 1e-5
    assert rel(out[1], explain(model, seq[:30], target=2, method="gradient")) < 1e-5
    assert (out[0, 20:] == 0).all()


@pytest.mark.parametrize("kw", [{"method": "paper"}, {"method": "paper_through_time"}])
def test_recurrent_only_methods_refuse_other_models(seq, kw):
    with pytest.raises(SkvisError, match="needs a recurrent model"):
        explain(TCN(), seq, target=0, **kw)


def test_unit_targets_refuse_other_models(seq):
    with pytest.raises(SkvisError, match="unit= needs a recurrent model"):
        explain(TCN(), seq, unit=0, method="gradient")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, match",
    [
        ({"method": "lrp"}, "method must be one of"),
        ({"method": "gradient", "n_steps": 3}, "takes no option"),
        ({"method": "paper", "abs": False}, "magnitudes only"),
        ({"target": None}, "exactly one of target"),
        ({"unit": 1}, "exactly one of target"),
        ({"target": 99}, "out of range"),
        ({"method": "integrated_gradients", "baseline": "mean"}, "baseline must be one of"),
        ({"method": "integrated_gradients", "baseline": np.zeros((3, 3))}, "baseline of shape"),
        ({"method": "integrated_gradients", "n_steps": 0}, "n_steps must be a positive int"),
        ({"method": "smoothgrad", "noise": -1.0}, "noise must be"),
        ({"method": "occlusion", "occlude": "bones"}, "occlude must be one of"),
        ({"method": "occlusion", "replace": "nothing"}, "replace must be one of"),
    ],
)
def test_bad_arguments_are_named(seq, kw, match):
    model = SkeletonLSTM(20, 4, 8)
    args = {"target": 1, **kw}
    with pytest.raises(SkvisError, match=match):
        explain(model, seq, **args)


def test_bad_sequences_are_named():
    model = SkeletonLSTM(20, 4, 8)
    with pytest.raises(SkvisError, match="joints"):
        explain(model, np.zeros((5, 19, 3)), target=0, method="gradient")
    bad = np.zeros((5, 20, 3))
    bad[2, 3, 1] = np.nan
    with pytest.raises(SkvisError, match="NaN"):
        explain(model, bad, target=0, method="gradient")
    with pytest.raises(SkvisError, match="NaN"):
        explain(TCN(), bad, target=0, method="gradient")
    with pytest.raises(SkvisError, match="lengths"):
        explain(model, np.zeros((2, 5, 20, 3)), target=0, lengths=[5, 6], method="gradient")


def test_methods_describe_themselves():
    assert METHODS["paper"].recurrent_only and "paper" in METHODS["paper"].label
    assert not METHODS["integrated_gradients"].recurrent_only
    assert [m for m, i in METHODS.items() if i.recurrent_only] == ["paper", "paper_through_time"]
    with pytest.raises(TypeError):
        METHODS["x"] = METHODS["paper"]  # type: ignore[index]


def test_package_exports_explain_lazily():
    import subprocess
    import sys

    code = (
        "import sys, skvis_widgets\n"
        "assert 'torch' not in sys.modules, 'torch imported by the package'\n"
        "from skvis_widgets import explain, METHODS\n"
        "assert 'torch' in sys.modules and callable(explain) and 'paper' in METHODS\n"
        "assert not {'ipywidgets', 'bqplot', 'pythreejs'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "kw", [{"cell": "gru"}, {"num_layers": 2}, {"cell": "gru", "num_layers": 2}]
)
def test_gradient_equals_captum_for_gru_and_stacked_models(kw):
    torch.manual_seed(0)
    model = SkeletonLSTM(20, 4, 8, **kw).eval()
    s = np.random.default_rng(0).normal(0, 0.3, (15, 20, 3)).astype(np.float32)
    ref = captum_attr.Saliency(model).attribute(torch.tensor(s)[None], target=1)[0].sum(-1)
    assert rel(explain(model, s, target=1, method="gradient"), ref.numpy()) < RTOL
    for method in METHODS:  # every method runs on them
        assert explain(model, s, target=1, method=method).shape == (15, 20)
