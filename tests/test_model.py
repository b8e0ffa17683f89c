import pickle
import warnings

import numpy as np
import pytest
import torch

from skvis_widgets import SkvisError
from skvis_widgets.data import SkeletonDataset, load_msr_action3d
from skvis_widgets.model import (
    SkeletonLSTM,
    accuracy,
    load_model,
    load_pretrained,
    save_model,
    train_model,
)


@pytest.fixture(params=[("lstm", 1), ("gru", 1), ("lstm", 2)], ids=["lstm", "gru", "lstm2"])
def model(request):
    cell, layers = request.param
    torch.manual_seed(0)
    m = SkeletonLSTM(20, 7, hidden_size=16, cell=cell, num_layers=layers).eval()
    m.set_standardization(np.linspace(-0.1, 0.1, 60), np.linspace(0.5, 1.5, 60))
    return m


def test_shapes(model):
    x = torch.randn(3, 11, 20, 3)
    assert model(x).shape == (3, 7)
    assert model(x.reshape(3, 11, 60)).shape == (3, 7)
    assert model.hidden_states(x).shape == (3, 11, 16)
    assert model.frame_logits(x).shape == (3, 11, 7)
    p = model.classify(x[0].numpy())
    assert p.shape == (7,) and p.sum() == pytest.approx(1.0) and (p >= 0).all()


def test_lengths_equal_unpadded_runs(model):
    x = torch.randn(3, 11, 20, 3)
    lengths = [11, 6, 1]
    logits = model(x, lengths)
    hidden = model.hidden_states(x, lengths)
    for b, n in enumerate(lengths):
        alone = model(x[b : b + 1, :n])
        torch.testing.assert_close(logits[b], alone[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            hidden[b, :n], model.hidden_states(x[b : b + 1, :n])[0], atol=1e-5, rtol=1e-5
        )
        assert not hidden[b, n:].any()
    # forward is the FC layer on the last valid hidden state
    last = hidden[torch.arange(3), torch.tensor(lengths) - 1]
    torch.testing.assert_close(model.fc(last), logits, atol=1e-5, rtol=1e-5)


def test_hidden_states_of_lower_layer_are_differentiable():
    torch.manual_seed(1)
    m = SkeletonLSTM(20, 4, hidden_size=8, num_layers=2).eval()
    x = torch.randn(1, 5, 20, 3, requires_grad=True)
    h0 = m.hidden_states(x, layer=0)
    ref = torch.nn.LSTM(60, 8, batch_first=True)
    ref.load_state_dict(
        {k.replace("_l0", "_l0"): v for k, v in m.rnn.state_dict().items() if "_l0" in k}
    )
    torch.testing.assert_close(h0, ref(m.preprocess(x))[0])
    h0[0, -1, 3].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert m.rnn.weight_ih_l0.grad is not None


def test_save_load_round_trip(model, tmp_path):
    model.metadata = {"class_names": list("abcdefg"), "test_accuracy": 0.5}
    path = save_model(model, tmp_path / "m.pt")
    loaded = load_model(path)
    x = torch.randn(2, 9, 20, 3)
    torch.testing.assert_close(loaded(x, [9, 4]), model(x, [9, 4]), atol=0, rtol=0)
    assert loaded.metadata == model.metadata and loaded.config == model.config
    assert not loaded.training


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_cannot_run_code(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save(
        {"format": "skvis-widgets/model-v1", "config": "{}", "state_dict": {}, "x": Evil()}, bad
    )
    with pytest.raises(SkvisError, match="not a skvis_widgets model file"):
        load_model(bad)
    other = tmp_path / "other.pt"
    other.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(SkvisError, match="not a skvis_widgets model file"):
        load_model(other)
    with pytest.raises(SkvisError, match="no such model file"):
        load_model(tmp_path / "missing.pt")


def test_wrong_input_raises(model):
    with pytest.raises(SkvisError, match=r"\(2, 5, 25, 3\).*20 joints"):
        model(torch.zeros(2, 5, 25, 3))
    with pytest.raises(SkvisError, match="zero frames"):
        model(torch.zeros(2, 0, 20, 3))
    with pytest.raises(SkvisError, match="lengths must be in 1..5"):
        model(torch.zeros(2, 5, 20, 3), [5, 0])
    with pytest.raises(SkvisError, match=r"\(4, 25, 3\).*model expects 20 joints"):
        model.classify(np.zeros((4, 25, 3)))
    with pytest.raises(SkvisError, match="NaN"):
        model.classify(np.full((4, 20, 3), np.nan))
    with pytest.raises(SkvisError, match="cell must be"):
        SkeletonLSTM(20, 3, cell="rnn")


def _toy(seed=0):
    # Two classes told apart by the motion of one hand: learnable in a few epochs.
    rng = np.random.default_rng(seed)
    from skvis_widgets.skeleton import MSR_ACTION3D

    base = np.zeros((20, 3), np.float32)
    ix = MSR_ACTION3D.index
    for name, pos in {
        "spine_base": (0, 0, 0), "spine_mid": (0, 0.25, 0), "spine_shoulder": (0, 0.5, 0),
        "head": (0, 0.7, 0), "shoulder_left": (-0.2, 0.45, 0), "shoulder_right": (0.2, 0.45, 0),
        "hip_left": (-0.1, -0.05, 0), "hip_right": (0.1, -0.05, 0),
    }.items():  # fmt: skip
        base[ix(name)] = pos
    seqs, labels = [], []
    for i in range(40):
        y = i % 2
        t = np.linspace(0, 1, 12)[:, None]
        s = np.repeat(base[None], 12, 0) + rng.normal(0, 0.01, (12, 20, 3)).astype(np.float32)
        s[:, ix("hand_right"), 1] += (0.5 * t if y else -0.5 * t)[:, 0]
        seqs.append(s)
        labels.append(y)
    return SkeletonDataset.from_arrays(
        seqs, labels, MSR_ACTION3D, ["down", "up"], np.arange(40) % 4
    )


def test_training_learns_is_reproducible_and_keeps_global_rng():
    data = _toy()
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        m = SkeletonLSTM(20, 2, hidden_size=8)
        # a short fast recipe (the defaults are the shipped model's 60-epoch one)
        hist = train_model(
            m,
            data,
            epochs=15,
            batch_size=8,
            lr=0.005,
            label_smoothing=0.0,
            average_last=0,
            seed=3,
            progress=False,
        )
        results.append((m, hist))
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    torch.manual_seed(123)
    m3 = SkeletonLSTM(20, 2, hidden_size=8)
    torch.manual_seed(0)
    train_model(m3, data, epochs=1, batch_size=8, seed=3, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched
    (m1, h1), (m2, h2) = results
    assert h1.loss == h2.loss
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert h1.loss[-1] < h1.loss[0]
    assert accuracy(m1, data) >= 0.9
    assert not m1.training


def test_training_rejects_mismatched_data():
    with pytest.raises(SkvisError, match="dataset has 20 joints, the model expects 25"):
        train_model(SkeletonLSTM(25, 2), _toy(), epochs=1, progress=False)
    with pytest.raises(SkvisError, match="2 classes.*3 outputs"):
        train_model(SkeletonLSTM(20, 3), _toy(), epochs=1, progress=False)


def test_pretrained_msr_action3d_accuracy():
    model = load_pretrained("msr_action3d")
    assert not model.training
    md = model.metadata
    assert md["dataset"] == "MSR Action3D" and md["topology"] == "msr_action3d"
    assert len(md["class_names"]) == 20 and md["hidden_size"] == model.hidden_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, test = load_msr_action3d().split_cross_subject()
    acc = accuracy(model, test)
    assert acc >= 0.70
    assert acc == pytest.approx(md["test_accuracy"], abs=1e-9)
    with pytest.raises(SkvisError, match="no pretrained model"):
        load_pretrained("ntu120")


def test_lower_layer_states_leave_the_global_rng_alone():
    m = SkeletonLSTM(20, 4, hidden_size=8, num_layers=2).eval()
    before = torch.random.get_rng_state()
    m.hidden_states(torch.zeros(1, 3, 20, 3), layer=0)
    assert torch.equal(torch.random.get_rng_state(), before)
