"""The shared checks (`skvis_widgets._checks`, `skvis_widgets.limits`): model input, eval mode
without touching the caller's module (several threads, a model in train mode), memory caps,
and the small validation holes of the reliability issue."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import skvis_widgets
from skvis_widgets.data import SkeletonDataset
from skvis_widgets.errors import SkvisError
from skvis_widgets.metrics import deletion_curve
from skvis_widgets.model import SkeletonLSTM
from skvis_widgets.optimize import ascent_direction, maximize_activation
from skvis_widgets.saliency import (
    class_map,
    joint_sensitivity,
    rank_units,
    sensitivity_colors,
    unit_sensitivity,
)

J, C, H, T = 20, 4, 12, 15


def sequence(seed: int = 1, t: int = T) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.3, (t, J, 3)).astype(np.float32)


def flags(model: torch.nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


# ---------------------------------------------------------------------------------------------
# Eval mode that never writes the caller's flags
# ---------------------------------------------------------------------------------------------
def test_engines_leave_a_training_model_untouched_across_threads(make_model):
    """Three threads of engines on one model in train mode while a fourth watches its
    flags: nothing ever switches them, and every result is the eval-mode one."""
    model = make_model(J, C, H, num_layers=2, dropout=0.5, train=True)
    seq = sequence()
    sal = np.abs(seq).sum(-1)
    ref_model = make_model(
        J, C, H, num_layers=2, dropout=0.5
    )  # same seed: the same weights, in eval mode
    ref_map = joint_sensitivity(ref_model, seq, target=1)
    ref_curve = deletion_curve(ref_model, seq, sal, target=1, steps=6).probabilities
    ref_probs = ref_model.classify(seq)

    before = flags(model)
    changed: list[list[bool]] = []
    done = threading.Event()
    errors: list[BaseException] = []
    results: dict[str, list[np.ndarray]] = {"map": [], "curve": [], "probs": []}

    def watch() -> None:
        while not done.is_set():
            now = flags(model)
            if now != before:
                changed.append(now)

    def work(kind: str) -> None:
        try:
            for _ in range(6):
                if kind == "map":
                    out = joint_sensitivity(model, seq, target=1)
                elif kind == "curve":
                    out = deletion_curve(model, seq, sal, target=1, steps=6).probabilities
                else:
                    out = model.classify(seq)
                results[kind].append(out)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    workers = [threading.Thread(target=work, args=(k,)) for k in results]
    watcher.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    watcher.join()

    assert not errors, errors
    assert not changed, f"the model's training flags changed during evaluation: {changed[0]}"
    assert flags(model) == before and model.training
    for out in results["map"]:
        np.testing.assert_allclose(out, ref_map, rtol=1e-5, atol=1e-7)
    for out in results["curve"]:  # dropout active would scatter these
        np.testing.assert_allclose(out, ref_curve, rtol=1e-5, atol=1e-7)
    for out in results["probs"]:
        np.testing.assert_allclose(out, ref_probs, rtol=1e-5, atol=1e-9)


def test_eval_view_shares_the_weights_and_follows_updates(make_model):
    from skvis_widgets._checks import eval_view

    model = make_model(J, C, H, num_layers=2, dropout=0.5, train=True)
    with eval_view(model) as view:
        assert view is not model and not view.training and model.training
        assert view.rnn.weight_ih_l0 is model.rnn.weight_ih_l0
        with torch.no_grad():  # a training step updates the weights in place
            model.fc.weight.add_(1.0)
        assert torch.equal(view.fc.weight, model.fc.weight)
    eval_model = model.eval()
    with eval_view(eval_model) as view:
        assert view is eval_model  # nothing to change: no copy


def test_eval_view_falls_back_to_a_lock_for_modules_that_refuse_copying():
    from skvis_widgets import _checks

    class Uncopyable(SkeletonLSTM):
        def __deepcopy__(self, memo):
            raise TypeError("holds a handle")

    torch.manual_seed(0)
    model = Uncopyable(J, C, H, dropout=0.5).train()
    _checks._warned_copy = False
    with pytest.warns(RuntimeWarning, match="cannot be copied"):
        with _checks.eval_view(model) as view:
            assert view is model and not model.training
    assert model.training and model.drop.training


# ---------------------------------------------------------------------------------------------
# The model checks its input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "lengths", "match"),
    [
        (np.full((1, T, J, 3), np.nan, np.float32), None, "NaN or infinite"),
        (np.full((1, T, J, 3), np.inf, np.float32), None, "NaN or infinite"),
        (np.zeros((1, T, 25, 3), np.float32), None, r"25 joints.*expects 20 joints"),
        (np.zeros((1, T, 75), np.float32), None, r"\(1, 15, 75\).*\(B, T, 60\)"),
        (np.zeros((2, T, J, 3), np.float32), [T, 2.7], "whole numbers"),
        (np.zeros((2, T, J, 3), np.float32), [T, T + 1], r"lengths must be in 1\.\.15"),
        (np.zeros((1, T, J, 3), np.complex64), None, "real numbers"),
        ("abc", None, "cannot convert"),
    ],
)
def test_forward_rejects_bad_input(x, lengths, match, make_model):
    model = make_model(J, C, H)
    inp = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    with pytest.raises(SkvisError, match=match):
        model(inp, lengths)
    with pytest.raises(SkvisError, match=match):
        model.frame_logits(inp, lengths)


def test_forward_accepts_flat_features_and_keeps_gradients(make_model):
    model = make_model(J, C, H)
    x = torch.as_tensor(sequence()[None]).requires_grad_()
    out = model(x)
    out[0, 1].backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    torch.testing.assert_close(model(x.detach().reshape(1, T, J * 3)), out.detach())


def test_hidden_states_layer_out_of_range(make_model):
    model = make_model(J, C, H, num_layers=2, train=True)
    with pytest.raises(SkvisError, match=r"layer 5 out of range for 2 layer"):
        model.hidden_states(torch.zeros(1, T, J, 3), layer=5)
    with pytest.raises(SkvisError, match="layer must be an int"):
        model.hidden_states(torch.zeros(1, T, J, 3), layer=1.0)


def test_predict_checks_every_sequence_and_pads_like_forward(make_model):
    model = make_model(J, C, H, num_layers=2, dropout=0.5, train=True)
    seqs = [sequence(1, 9), sequence(2, T)]
    probs = model.predict(seqs)
    assert model.training  # left as it was
    ref = make_model(J, C, H, num_layers=2, dropout=0.5)
    np.testing.assert_allclose(probs[0], ref.classify(seqs[0]), rtol=1e-5)
    np.testing.assert_allclose(probs[1], ref.classify(seqs[1]), rtol=1e-5)
    bad = sequence(3).copy()
    bad[4, 7, 1] = np.nan
    with pytest.raises(SkvisError, match=r"sequences\[1\].*frame 4, joint 7"):
        model.predict([seqs[0], bad])
    with pytest.raises(SkvisError, match=r"sequences\[0\].*zero frames"):
        model.predict([np.zeros((0, J, 3))])


# ---------------------------------------------------------------------------------------------
# Resource limits
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_limit():
    previous = skvis_widgets.set_memory_limit(50 * 2**20)
    yield
    skvis_widgets.set_memory_limit(previous)


def test_all_unit_sensitivity_refuses_a_result_over_the_limit(small_limit, make_model):
    model = make_model(J, C, H)
    batch = np.zeros((300, 200, J, 3), np.float32)  # result: 300*12*200*60*4 = 173 MB
    with pytest.raises(SkvisError, match=r"fewer sequences per call") as err:
        unit_sensitivity(model, batch)
    estimate = float(str(err.value).split("needs about ")[1].split(" MiB")[0])
    assert estimate >= 300 * H * 200 * J * 3 * 4 / 2**20  # at least the result itself
    # the same batch, one class at a time, fits
    assert joint_sensitivity(model, batch[:2], target=0).shape == (2, 200, J)


def test_maximization_history_over_the_limit(small_limit, make_model):
    model = make_model(J, C, H)
    seq = sequence(t=2000)  # 480 kB a step
    with pytest.raises(SkvisError, match=r"history of 200 iterations.*fewer iterations"):
        maximize_activation(model, seq, target=0, iterations=200, constraints=False)


def test_memory_limit_default_and_validation(monkeypatch):
    from skvis_widgets import limits

    previous = skvis_widgets.set_memory_limit(None)
    try:
        import os

        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        assert skvis_widgets.memory_limit() == phys // 2
        monkeypatch.setenv("SKVIS_MEMORY_LIMIT", "3e9")
        skvis_widgets.set_memory_limit(None)
        assert skvis_widgets.memory_limit() == 3 * 10**9
        for bad in (0, -1, float("nan"), "1GB", True):
            with pytest.raises(SkvisError, match="memory limit"):
                skvis_widgets.set_memory_limit(bad)
        monkeypatch.setenv("SKVIS_MEMORY_LIMIT", "lots")
        with pytest.raises(SkvisError, match="SKVIS_MEMORY_LIMIT"):
            limits._default_limit()
    finally:
        monkeypatch.delenv("SKVIS_MEMORY_LIMIT", raising=False)
        skvis_widgets.set_memory_limit(previous)


def test_deletion_curve_bounds_steps_and_streams_its_batch(make_model):
    model = make_model(J, C, H)
    seq = sequence(t=54)
    sal = np.abs(seq).sum(-1)
    with pytest.raises(SkvisError, match=r"steps can be at most 1080"):
        deletion_curve(model, seq, sal, target=0, steps=10**4)
    # the most steps allowed still runs, in bounded chunks, with the same points as
    # a direct computation at a few of them
    curve = deletion_curve(model, seq, sal, target=0, steps=1080, seeds=(0,))
    assert curve.probabilities.shape == (1081,)
    few = deletion_curve(model, seq, sal, target=0, steps=4, seeds=(0,))
    np.testing.assert_allclose(curve.probabilities[::270], few.probabilities, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Small holes
# ---------------------------------------------------------------------------------------------
def test_small_validation_holes(make_model):
    model = make_model(J, C, H)
    seq = sequence()
    with pytest.raises(SkvisError, match="chunk_size must be a positive int"):
        joint_sensitivity(model, seq, target=0, chunk_size=True)
    with pytest.raises(SkvisError, match=r"positive vmax \(a number\)"):
        sensitivity_colors(np.ones((3, 4)), scale="global", vmax="1")
    s = unit_sensitivity(model, seq)
    s[2, 3, 4, 1] = np.nan
    with pytest.raises(SkvisError, match="unit_sens of shape .* NaN"):
        class_map(s, model, 0)
    with pytest.raises(SkvisError, match="unit_sens of shape .* NaN"):
        rank_units(model, 0, by="sensitivity", unit_sens=s)
    w = model.fc.weight.detach().clone()
    w[0, 0] = float("inf")
    with pytest.raises(SkvisError, match="FC weight .* NaN or infinite"):
        class_map(np.abs(s[:, :, :, 0]) * 0, w, 0)


def test_dataset_labels_and_subsets():
    seqs = [sequence(i) for i in range(3)]
    with pytest.raises(SkvisError, match=r"whole numbers.*1\.7"):
        SkeletonDataset.from_arrays(seqs, [1.7, 0.2, 0], "msr_action3d", ["a", "b"])
    with pytest.raises(SkvisError, match=r"whole numbers.*'walk'"):
        SkeletonDataset.from_arrays(seqs, ["walk", "run", "walk"], "msr_action3d", ["a", "b"])
    ds = SkeletonDataset.from_arrays(seqs, [1.0, 0.0, 1.0], "msr_action3d", ["a", "b"])
    assert ds.labels.tolist() == [1, 0, 1]
    assert len(ds.subset([])) == 0
    assert ds.subset([-1]).ids == (ds.ids[2],)
    assert ds.subset(ds.labels == 1).labels.tolist() == [1, 1]
    with pytest.raises(SkvisError, match="index 3 out of range for 3"):
        ds.subset([3])
    with pytest.raises(SkvisError, match="boolean mask must have shape"):
        ds.subset([True, False])
    with pytest.raises(SkvisError, match="expected ints"):
        ds.subset([0.5])


def test_maximization_runs_inside_inference_mode(make_model):
    model = make_model(J, C, H)
    seq = sequence()
    ref = maximize_activation(model, seq, target=1, iterations=2, constraints=False)
    with torch.inference_mode():
        got = maximize_activation(model, seq, target=1, iterations=2, constraints=False)
        d = ascent_direction(model, seq, target=1)
    np.testing.assert_allclose(got.history, ref.history, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d, ascent_direction(model, seq, target=1), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The one sequence checker, the model-sequence checker, the small checks, the contract
# ---------------------------------------------------------------------------------------------
def test_as_sequence_converts_and_shares_memory():
    from skvis_widgets._checks import as_sequence

    seq = sequence()
    out = as_sequence(seq, "msr_action3d")
    assert out.dtype == np.float32 and out.shape == (T, J, 3)
    assert np.shares_memory(out, seq)  # nothing to convert: no copy
    # (T, J*3) with a known joint count, lists of ints, tensors and float64
    flat = as_sequence(seq.reshape(T, -1), num_joints=J)
    np.testing.assert_array_equal(flat, seq)
    ints = as_sequence([[[1, 2, 3]]], num_joints=1)
    assert ints.dtype == np.float32 and ints.tolist() == [[[1.0, 2.0, 3.0]]]
    t = torch.tensor(seq, requires_grad=True)
    np.testing.assert_array_equal(as_sequence(t), seq)
    d = as_sequence(seq, dtype=np.float64)
    assert d.dtype == np.float64 and np.array_equal(d, seq.astype(np.float64))
    # the re-export under skvis_widgets.data is the same function
    from skvis_widgets.data import as_sequence as public

    assert public is as_sequence


@pytest.mark.parametrize(
    "value, kwargs, match",
    [
        ([[[0.0, 0, 0]], [[0.0, 0]]], {}, r"sequence: cannot be read as an array"),
        (np.array([[["a", "b", "c"]]]), {}, r"dtype <U1; expected real numbers"),
        (np.ones((2, 1, 3), bool), {}, r"dtype bool; expected real numbers"),
        (np.ones((2, 1, 3), complex), {}, r"dtype complex128; expected real numbers"),
        (np.ones((4, 3)), {}, r"expected shape \(T, J, 3\), got \(4, 3\)"),
        (
            np.ones((4, 20, 2)),
            {"topology": "msr_action3d"},
            r"\(T, J, 3\) with J = 20 for topology 'msr_action3d', got \(4, 20, 2\)",
        ),
        (
            np.ones((4, 25, 3)),
            {"topology": "msr_action3d"},
            r"has 25 joints \(shape \(4, 25, 3\)\); topology 'msr_action3d' expects 20 joints",
        ),
        (np.ones((4, 5, 3)), {"num_joints": 6}, r"has 5 joints .*num_joints expects 6"),
        (np.ones((0, 20, 3)), {}, r"zero frames \(shape \(0, 20, 3\)\)"),
        (np.ones((4, 20, 3)), {"topology": "kinect_v1", "num_joints": 25}, "disagrees"),
    ],
)
def test_as_sequence_names_the_problem(value, kwargs, match):
    from skvis_widgets._checks import as_sequence

    with pytest.raises(SkvisError, match=match):
        as_sequence(value, **kwargs)


def test_as_sequence_names_the_first_non_finite_joint():
    from skvis_widgets import MSR_ACTION3D
    from skvis_widgets._checks import as_sequence

    seq = sequence()
    seq[3, 7, 1] = np.nan
    seq[9, 0, 0] = np.inf
    joint = MSR_ACTION3D.joint_names[7]
    with pytest.raises(SkvisError, match=rf"walk: .*frame 3, joint 7 '{joint}'; 2 in all"):
        as_sequence(seq, MSR_ACTION3D, name="walk")
    with pytest.raises(SkvisError, match=r"frame 3, joint 7; 2 in all"):  # no topology
        as_sequence(seq)
    # a float64 value too big for float32 becomes infinite: caught after the cast
    big = sequence().astype(np.float64)
    big[1, 2, 0] = 1e300
    with pytest.raises(SkvisError, match="frame 1, joint 2"):
        as_sequence(big)
    assert np.isfinite(as_sequence(big, dtype=np.float64)).all()


def test_as_model_sequence_copies_in_the_models_dtype(make_model):
    from skvis_widgets._checks import as_model_sequence

    model = make_model(J, C, H)
    seq = sequence().astype(np.float64) + 1e-9  # not representable in float32
    out = as_model_sequence(model, seq)
    assert out.dtype == np.float32 and not np.shares_memory(out, seq)
    np.testing.assert_array_equal(out, seq.astype(np.float32))
    wide = as_model_sequence(model, seq, dtype=np.float64)  # cast to the model's first
    np.testing.assert_array_equal(wide, seq.astype(np.float32).astype(np.float64))
    same = sequence()
    assert not np.shares_memory(as_model_sequence(model, same), same)
    m64 = make_model(J, C, H, dtype=torch.float64)
    assert as_model_sequence(m64, seq).dtype == np.float64
    np.testing.assert_array_equal(as_model_sequence(m64, seq), seq)
    with pytest.raises(SkvisError, match=r"walk: expected shape \(T, J, 3\), got \(2, 15"):
        as_model_sequence(model, np.stack([same, same]), name="walk")
    with pytest.raises(SkvisError, match=r"19 joints .*the model expects 20"):
        as_model_sequence(model, same[:, :19])
    bad = same.copy()
    bad[2, 4, 0] = np.nan
    with pytest.raises(SkvisError, match=r"NaN or infinite values \(first at frame 2, joint 4\)"):
        as_model_sequence(model, bad)


def test_lengths_index_and_target_checks():
    from skvis_widgets._checks import check_index, check_lengths, check_targets

    assert check_lengths([3, 1.0], 2, 3).tolist() == [3, 1]
    assert check_lengths(torch.tensor([2]), 1, 5).dtype == torch.int64
    with pytest.raises(SkvisError, match="whole numbers of frames"):
        check_lengths([2.7, 3], 2, 3)
    with pytest.raises(SkvisError, match="whole numbers of frames"):
        check_lengths([True, 3], 2, 3)
    with pytest.raises(SkvisError, match=r"lengths must be in 1\.\.3 .*\[0, 4\]"):
        check_lengths([0, 4], 2, 3)
    with pytest.raises(SkvisError, match="1 lengths for a batch of 2"):
        check_lengths([1], 2, 3)
    assert check_index(np.int64(2), 3, "unit") == 2
    assert check_index(torch.tensor(1), 3, "unit") == 1
    with pytest.raises(SkvisError, match=r"unit 3 out of range 0\.\.2"):
        check_index(3, 3, "unit")
    for bad in (True, 1.0, "1"):
        with pytest.raises(SkvisError, match="target must be an int"):
            check_index(bad, 3, "target")
    assert check_targets(1, 3, 4).tolist() == [1, 1, 1]
    assert check_targets([0, 3], 2, 4).tolist() == [0, 3]
    with pytest.raises(SkvisError, match="target must be an int or 2 ints"):
        check_targets([0.0, 1.0], 2, 4)
    with pytest.raises(SkvisError, match=r"target 4 out of range 0\.\.3"):
        check_targets([0, 4], 2, 4)


def test_the_model_contract_protocol(make_model):
    from skvis_widgets._checks import SkeletonClassifier, check_model
    from skvis_widgets.adapters import as_recurrent_classifier

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(J * 3, H)
            self.out = torch.nn.Linear(H, C)

    lstm = make_model(J, C, H)
    wrapped = as_recurrent_classifier(Net(), recurrent="lstm", head="out")
    for model in (lstm, wrapped):
        assert isinstance(model, SkeletonClassifier)
        rnn, fc = check_model(model)
        assert rnn is model.rnn and fc is model.fc
    assert not isinstance(Net(), SkeletonClassifier)  # no rnn / fc / preprocess
    with pytest.raises(SkvisError, match="Net has no 'preprocess'"):
        check_model(Net())
    bi = make_model(J, C, H)
    bi.rnn = torch.nn.LSTM(J * 3, H, bidirectional=True)
    with pytest.raises(SkvisError, match="bidirectional"):
        check_model(bi)


def test_fc_weight_from_a_model_a_layer_or_an_array(make_model):
    from skvis_widgets._checks import fc_weight

    model = make_model(J, C, H)
    w = model.fc.weight.detach().numpy()
    for given in (model, model.fc, model.fc.weight, w):
        got = fc_weight(given)
        assert got.shape == (C, H)
        np.testing.assert_array_equal(got, w)
    with pytest.raises(SkvisError, match="Sequential has no `fc` layer.*as_recurrent_classifier"):
        fc_weight(torch.nn.Sequential())
    with pytest.raises(SkvisError, match=r"\(C, H\) array of numbers, got shape \(3,\)"):
        fc_weight(np.ones(3))
    bad = w.copy()
    bad[1, 2] = np.inf
    with pytest.raises(SkvisError, match=r"FC weight .*NaN or infinite .*index \(1, 2\)"):
        fc_weight(bad)
