"""Models people wrote themselves: `as_recurrent_classifier` and the engine on it.

The user's network below is not a SkeletonLSTM: a ``batch_first=False`` two-layer
LSTM, its own per-frame normalization that mixes joints (so the preprocess
Jacobian is a full matrix, computed with torch.func), and a Linear head. The
references use the network's own modules and ``forward``, float64, tolerance
1e-12 (same arithmetic, another order).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skvis_widgets import SkvisError
from skvis_widgets.adapters import (
    RecurrentClassifier,
    as_recurrent_classifier,
    per_frame_jacobian,
    run_layers,
)
from skvis_widgets.saliency import JointSensitivity, joint_sensitivity, unit_sensitivity

J, H, C, T = 5, 6, 4, 6
EXACT = 1e-12


class UserNet(nn.Module):
    """(B, T, J*3) in; time-major LSTM inside; logits of the last frame out."""

    def __init__(self, cell: type[nn.RNNBase] = nn.LSTM, layers: int = 2) -> None:
        super().__init__()
        self.register_buffer("mix", torch.eye(J * 3) + 0.3 * torch.randn(J * 3, J * 3))
        self.register_buffer("shift", 0.1 * torch.randn(J * 3))
        self.rec = cell(J * 3, H, num_layers=layers)  # batch_first=False
        self.classifier = nn.Sequential(nn.Linear(H, C))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh((x - self.shift) @ self.mix.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rec(self.normalize(x).transpose(0, 1))
        return self.classifier(h[-1])


def make_net(cell=nn.LSTM, layers=2, seed=0) -> UserNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UserNet(cell, layers)
        for p in net.rec.parameters():
            nn.init.uniform_(p, -0.8, 0.8)
    return net.double().eval()


def adapt(net: UserNet) -> RecurrentClassifier:
    return as_recurrent_classifier(
        net, recurrent="rec", head="classifier.0", preprocess=net.normalize
    )


def seqs(n=3, seed=1) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).normal(0, 0.5, (n, T, J, 3)))


def test_adapter_follows_the_protocol_and_the_users_forward():
    net = make_net()
    model = adapt(net)
    x = seqs()
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x.flatten(2)), rtol=0, atol=EXACT)
        h = model.hidden_states(x, [T, 2, 4])
        assert h.shape == (3, T, H) and not h[1, 2:].any() and not h[2, 4:].any()
        full = net.rec(net.normalize(x.flatten(2)).transpose(0, 1))[0].transpose(0, 1)
        torch.testing.assert_close(h[0], full[0], rtol=0, atol=EXACT)
        low = model.hidden_states(x, layer=0)
        torch.testing.assert_close(run_layers(net.rec, model.preprocess(x), 0)[0], low)
    assert model.num_joints is None and model.num_classes == C and model.hidden_size == H
    assert model.rnn is net.rec and model.fc is net.classifier[0]
    assert {id(p) for p in model.parameters()} == {id(p) for p in net.parameters()}
    model.train()
    assert net.training and net.rec.training
    model.eval()
    assert not net.training


def test_instantaneous_on_the_adapter_equals_a_replay_of_the_users_lstm():
    net = make_net()
    model = adapt(net)
    x = seqs(1)[0]
    feats = net.normalize(x.flatten(1))[:, None]  # (T, 1, F), time-major
    ref = []
    for t in range(T):
        state = None if t == 0 else tuple(s.detach() for s in net.rec(feats[:t])[1])

        def step(xt, state=state):
            return net.rec(net.normalize(xt.reshape(1, 1, -1)), state)[0][0, 0]

        ref.append(torch.autograd.functional.jacobian(step, x[t]).abs())
    ref = torch.stack(ref, 1).numpy()  # (H, T, J, 3)
    got = unit_sensitivity(model, x, normalize=False)
    np.testing.assert_allclose(got, ref, rtol=0, atol=EXACT)
    assert ref.max() > 0.05


def test_through_time_on_the_adapter_equals_captum_on_the_users_forward():
    from captum.attr import Saliency

    net = make_net()
    model = adapt(net)
    x = seqs()
    ref = Saliency(lambda z: net(z.flatten(2))).attribute(
        x.clone().requires_grad_(True), target=[0, 3, 1], abs=True
    )
    got = JointSensitivity(model).attribute(
        x, target=[0, 3, 1], mode="through_time", normalize=False
    )
    torch.testing.assert_close(got, ref, rtol=0, atol=EXACT)
    # the units of the lower layer, against autograd through the user's modules
    xg = x[1].clone().requires_grad_(True)
    low = net.rec.__class__(J * 3, H).double()
    low.load_state_dict({k: v for k, v in net.rec.state_dict().items() if k.endswith("_l0")})
    h = low(net.normalize(xg.flatten(1))[:, None])[0][-1, 0]
    ref_units = np.stack(
        [torch.autograd.grad(h[u], xg, retain_graph=True)[0].abs().numpy() for u in range(H)]
    )
    got_units = unit_sensitivity(model, x[1], mode="through_time", normalize=False, layer=0)
    np.testing.assert_allclose(got_units, ref_units, rtol=0, atol=EXACT)


def test_gru_adapter_without_preprocess_and_with_submodules():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        gru = nn.GRU(J * 3, H, batch_first=True)
        head = nn.Linear(H, C)
    holder = nn.Module()
    holder.gru = gru
    model = as_recurrent_classifier(holder, gru, head).double()  # head lives outside holder
    assert model.num_joints == J and model.fc is head
    assert any(p is head.weight for p in model.parameters())
    assert head.weight.dtype == torch.float64  # moved with the adapter
    x = seqs(2)
    from captum.attr import Saliency

    ref = Saliency(model).attribute(x.clone().requires_grad_(True), target=2, abs=True)
    got = JointSensitivity(model).attribute(x, target=2, mode="through_time", normalize=False)
    torch.testing.assert_close(got, ref, rtol=0, atol=EXACT)
    inst = unit_sensitivity(model, x, lengths=[T, 3])
    assert inst.shape == (2, H, T, J, 3) and not inst[1, :, 3:].any()


def test_joints_layout_preprocess_and_normalized_maps_are_finite():
    net = make_net(nn.GRU, 1)

    def by_joint(x):  # (B, T, J, 3) -> (B, T, J*3)
        return net.normalize(x.flatten(2))

    model = as_recurrent_classifier(
        net, "rec", "classifier.0", by_joint, preprocess_input="joints", num_joints=J
    )
    x = seqs(1)[0]
    plain = adapt(net)
    np.testing.assert_allclose(
        joint_sensitivity(model, x, target=1), joint_sensitivity(plain, x, target=1), rtol=1e-12
    )
    assert np.isfinite(unit_sensitivity(model, x, mode="through_time")).all()


def test_wrong_joint_count_names_the_shape():
    net = make_net()
    bad = np.zeros((T, J + 1, 3))
    with pytest.raises(SkvisError, match=r"input of shape \(1, 6, 6, 3\) \(wrong joint count"):
        unit_sensitivity(adapt(net), bad)  # J unknown to the adapter: caught by shapes
    cropped = as_recurrent_classifier(net, "rec", "classifier.0", lambda z: z[..., : J * 3 - 3])
    with pytest.raises(SkvisError, match=r"\(1, 6, 5, 3\) gives recurrent input \(1, 6, 12\)"):
        unit_sensitivity(cropped, np.zeros((T, J, 3)))
    known = as_recurrent_classifier(net, "rec", "classifier.0", net.normalize, num_joints=J)
    with pytest.raises(SkvisError, match=r"6 joints \(shape \(6, 6, 3\)\); the model expects 5"):
        unit_sensitivity(known, bad)
    with pytest.raises(SkvisError, match=r"input of shape \(1, 6, 6, 3\)"):
        known(torch.zeros(1, T, J + 1, 3, dtype=torch.float64))
    plain = as_recurrent_classifier(nn.LSTM(12, H), recurrent=nn.LSTM(12, H), head=nn.Linear(H, 2))
    assert plain.num_joints == 4
    with pytest.raises(SkvisError, match=r"5 joints \(shape \(3, 5, 3\)\); the model expects 4"):
        joint_sensitivity(plain, np.zeros((3, 5, 3)), target=0)


def test_adapter_construction_errors():
    net = make_net()
    with pytest.raises(SkvisError, match="no submodule 'lstm'"):
        as_recurrent_classifier(net, "lstm", "classifier.0")
    with pytest.raises(SkvisError, match="head must be an nn.Linear"):
        as_recurrent_classifier(net, "rec", "classifier")
    with pytest.raises(SkvisError, match="nn.LSTM or nn.GRU"):
        as_recurrent_classifier(net, "classifier.0", "classifier.0")
    with pytest.raises(SkvisError, match="bidirectional"):
        as_recurrent_classifier(nn.LSTM(6, 3, bidirectional=True), "", nn.Linear(3, 2))
    with pytest.raises(SkvisError, match="takes 5 inputs"):
        as_recurrent_classifier(net, "rec", nn.Linear(5, 2))
    with pytest.raises(SkvisError, match="not J \\* 3"):
        as_recurrent_classifier(nn.GRU(7, 3), "", nn.Linear(3, 2))
    with pytest.raises(SkvisError, match="callable"):
        as_recurrent_classifier(net, "rec", "classifier.0", preprocess=3)
    with pytest.raises(SkvisError, match="preprocess_input"):
        as_recurrent_classifier(net, "rec", "classifier.0", preprocess_input="frames")


class _OldStyleScale(torch.autograd.Function):
    """An autograd.Function without setup_context: torch.func cannot transform it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 2 * x + x**2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (2 + 2 * x)


def test_per_frame_jacobian_falls_back_when_vmap_cannot_trace():
    x = seqs(2)
    w = torch.randn(J * 3, J * 3, dtype=torch.float64)

    def plain(z):
        f = z.flatten(2) @ w.T
        return 2 * f + f**2

    def old_style(z):
        return _OldStyleScale.apply(z.flatten(2) @ w.T)

    a = per_frame_jacobian(plain, x)
    b = per_frame_jacobian(old_style, x)
    assert a.shape == (2, T, J * 3, J * 3)
    torch.testing.assert_close(b, a, rtol=0, atol=EXACT)
    f = x[1, 2].flatten() @ w.T
    torch.testing.assert_close(a[1, 2], (2 + 2 * f)[:, None] * w, rtol=0, atol=EXACT)
