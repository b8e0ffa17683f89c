"""Faithfulness metrics (`skvis_widgets.metrics`) on cases with a known answer.

- A hand-built LSTM that reads one joint only (joint 2's y, accumulated over the frames):
  deleting that joint first removes the class at once, random orders do not; a map on an
  unused joint does worse than random; a still joint loses nothing under interpolation;
  randomizing its LSTM (not its FC layer) destroys its one-joint map.
- The fill of removed cells against `np.interp`, and the batched curve against one
  `classify` call per perturbed sequence.
- A planted-signal data set (real MSR poses, only the right hand's move decides the class):
  a small LSTM trained on it is explained by the right hand.
- The shipped model on real test sequences: deleting the salient cells first beats random.
- Input validation, frozen results, the caller's model and the global random state untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types

import numpy as np
import pytest
import torch
from torch import nn

from skvis_widgets import MSR_ACTION3D, SkvisError
from skvis_widgets.adapters import as_recurrent_classifier
from skvis_widgets.data import load_msr_action3d
from skvis_widgets.metrics import (
    FaithfulnessSummary,
    PerturbationCurve,
    RandomizationResult,
    _fill,
    _randomized,
    deletion_curve,
    faithfulness_summary,
    insertion_curve,
    planted_signal_dataset,
    randomization_test,
    spearman,
    topk_hit_rate,
)
from skvis_widgets.model import SkeletonLSTM, load_pretrained
from skvis_widgets.saliency import joint_sensitivity
from skvis_widgets.train import train_model

J, T, USED = 4, 20, 2  # the one-joint model reads joint USED's y coordinate


class OneJoint(nn.Module):
    """``c_t = c_{t-1} + tanh(w y_t)`` (forget and input gates open), ``h = tanh(c)``;
    class 0's logit ``6 h_0``, class 1's ``-6 h_0``. Unit 1 reads joint USED's x but the
    head ignores it."""

    def __init__(self, w: float = 0.5) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3 * J, 2, batch_first=True)
        self.out = nn.Linear(2, 2)
        with torch.no_grad():
            for p in (*self.lstm.parameters(), *self.out.parameters()):
                p.zero_()
            h = 2
            self.lstm.bias_ih_l0[0:h] = 10.0  # input gate open
            self.lstm.bias_ih_l0[h : 2 * h] = 10.0  # forget gate open
            self.lstm.bias_ih_l0[3 * h : 4 * h] = 10.0  # output gate open
            self.lstm.weight_ih_l0[2 * h + 0, 3 * USED + 1] = w  # cell input <- y of USED
            self.lstm.weight_ih_l0[2 * h + 1, 3 * USED + 0] = w  # unit 1 <- x of USED
            self.out.weight[0, 0], self.out.weight[1, 0] = 6.0, -6.0


def one_joint_model() -> nn.Module:
    return as_recurrent_classifier(OneJoint(), recurrent="lstm", head="out").double().eval()


def noisy_sequence(seed: int = 0, y_used: float = 0.5) -> np.ndarray:
    """Every joint jitters alike; joint USED's y around ``y_used``, the others' around 0."""
    rng = np.random.default_rng(seed)
    seq = rng.normal(0, 0.3, (T, J, 3))
    seq[:, USED, 1] += y_used
    return seq


def one_hot_map(joint: int) -> np.ndarray:
    sal = np.zeros((T, J))
    sal[:, joint] = 1.0
    return sal


MEAN_POSE = np.zeros((J, 3))
MEAN_POSE[USED, 1] = -0.5  # the class-1 side of the one-joint model


# ---------------------------------------------------------------------------------------------
# Known answers: the one-joint model
# ---------------------------------------------------------------------------------------------
def test_deleting_the_used_joint_drops_the_class_at_once():
    model, seq = one_joint_model(), noisy_sequence()
    p0 = torch.softmax(model(torch.as_tensor(seq)[None]), -1)[0, 0].item()
    curve = deletion_curve(
        model, seq, one_hot_map(USED), target=0, replace="mean_pose", mean_pose=MEAN_POSE
    )
    assert curve.probabilities[0] == pytest.approx(p0, abs=1e-12)
    assert p0 > 0.99
    # joint USED is 1/J of the cells: gone by fraction 1/J, and so is the class
    at = np.searchsorted(curve.fractions, 1 / J)
    assert curve.probabilities[at] < 0.01
    assert (curve.probabilities[at:] < 0.01).all()
    # random orders remove joint USED's cells evenly over the whole range
    assert curve.auc < 0.2
    assert curve.random_auc.min() > 0.35
    assert curve.beats_random and curve.score > 0.6
    assert curve.random_probabilities.shape == (3, 21)
    assert curve.seeds == (0, 1, 2)


def test_a_map_on_an_unused_joint_does_worse_than_random():
    model, seq = one_joint_model(), noisy_sequence()
    curve = deletion_curve(
        model, seq, one_hot_map(0), target=0, replace="mean_pose", mean_pose=MEAN_POSE
    )
    at = np.searchsorted(curve.fractions, 1 / J)
    assert (curve.probabilities[: at + 1] > 0.99).all()  # removing joint 0 changes nothing
    assert not curve.beats_random and curve.score < 0


def test_insertion_of_the_used_joint_restores_the_class_at_once():
    model, seq = one_joint_model(), noisy_sequence()
    curve = insertion_curve(
        model, seq, one_hot_map(USED), target=0, replace="mean_pose", mean_pose=MEAN_POSE
    )
    assert curve.probabilities[0] < 0.01  # every cell at the mean pose: class 1's side
    assert curve.probabilities[-1] > 0.99  # the sequence itself
    at = np.searchsorted(curve.fractions, 1 / J)
    assert (curve.probabilities[at:] > 0.99).all()
    assert curve.auc > 0.7 > curve.random_auc.max()
    assert curve.beats_random and curve.margin > 0.3


def test_curve_ends_agree_between_deletion_and_insertion():
    model, seq = one_joint_model(), noisy_sequence(3)
    sal = np.random.default_rng(0).random((T, J))
    for replace, pose in (("interpolate", None), ("mean_pose", MEAN_POSE), ("zero", None)):
        d = deletion_curve(model, seq, sal, target=1, replace=replace, mean_pose=pose, steps=5)
        i = insertion_curve(model, seq, sal, target=1, replace=replace, mean_pose=pose, steps=5)
        assert d.probabilities[-1] == pytest.approx(i.probabilities[0], abs=1e-12)
        assert d.probabilities[0] == pytest.approx(i.probabilities[-1], abs=1e-12)
        np.testing.assert_allclose(d.random_probabilities[:, -1], i.probabilities[0], atol=1e-12)
        np.testing.assert_allclose(d.fractions, np.linspace(0, 1, 6))


def test_zero_replacement_moves_joints_to_the_origin():
    # every cell at the origin: c = 0, h = 0, equal logits
    model, seq = one_joint_model(), noisy_sequence()
    curve = deletion_curve(model, seq, one_hot_map(USED), target=0, replace="zero")
    assert curve.probabilities[-1] == pytest.approx(0.5, abs=1e-12)


def test_interpolation_repairs_a_joint_that_stands_still():
    # Joint USED's y is constant: filled from its kept frames (or its mean), it is unchanged.
    # A jump to the origin would flip the class instead.
    model = one_joint_model()
    seq = noisy_sequence()
    seq[:, USED, 1] = 0.5
    curve = deletion_curve(model, seq, one_hot_map(USED), target=0)
    np.testing.assert_allclose(curve.probabilities, curve.probabilities[0], atol=1e-12)
    np.testing.assert_allclose(curve.random_probabilities, curve.probabilities[0], atol=1e-12)


def test_fill_matches_np_interp():
    rng = np.random.default_rng(1)
    seq = rng.normal(size=(9, 3, 3))
    removed = rng.random((6, 9, 3)) < 0.6
    removed[0] = True  # nothing kept: the fallback pose
    removed[1, :, 0] = True
    pose = rng.normal(size=(3, 3))
    out = _fill(seq, removed, "interpolate", pose)
    t = np.arange(9)
    for b in range(6):
        for j in range(3):
            kept = ~removed[b, :, j]
            for d in range(3):
                want = np.interp(t, t[kept], seq[kept, j, d]) if kept.any() else pose[j, d]
                np.testing.assert_allclose(out[b, :, j, d], want, atol=1e-12)
    np.testing.assert_array_equal(out[~removed], np.broadcast_to(seq, out.shape)[~removed])
    both = _fill(seq, removed, "mean_pose", pose)
    np.testing.assert_array_equal(both[removed], np.broadcast_to(pose, both.shape)[removed])


def test_batched_curve_matches_one_classify_per_step():
    """The one-forward-pass curve against perturbations rebuilt independently."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SkeletonLSTM(20, 5, 8).double().eval()
    seq = np.random.default_rng(0).normal(0, 0.3, (11, 20, 3))
    sal = np.random.default_rng(1).random((11, 20))
    curve = deletion_curve(model, seq, sal, target=3, steps=7, seeds=(5,))
    order = np.argsort(-sal.reshape(-1), kind="stable")
    t = np.arange(11)
    for k, frac in enumerate(curve.fractions):
        gone = np.zeros(11 * 20, bool)
        gone[order[: int(round(frac * 220))]] = True
        gone = gone.reshape(11, 20)
        pert = seq.copy()
        for j in range(20):
            kept = ~gone[:, j]
            for d in range(3):
                pert[:, j, d] = (
                    np.interp(t, t[kept], seq[kept, j, d]) if kept.any() else seq[:, j, d].mean()
                )
        want = torch.softmax(model(torch.as_tensor(pert)[None]), -1)[0, 3].item()
        assert curve.probabilities[k] == pytest.approx(want, abs=1e-12)


def test_all_steps_and_orders_go_through_one_forward_pass():
    model, seq = one_joint_model(), noisy_sequence()
    batches = []
    hook = model.register_forward_hook(lambda m, args, out: batches.append(out.shape[0]))
    try:
        faithfulness_summary(model, seq, one_hot_map(USED), 0)
    finally:
        hook.remove()
    assert batches == [(1 + 3) * (10 + 1)]


def test_summary_score_and_message():
    model, seq = one_joint_model(), noisy_sequence()
    s = faithfulness_summary(
        model, seq, one_hot_map(USED), 0, mean_pose=MEAN_POSE, replace="mean_pose"
    )
    assert isinstance(s, FaithfulnessSummary)
    ref = s.deletion.random_auc.mean()
    assert s.score == pytest.approx((ref - s.deletion.auc) / ref)
    assert s.beats_random and "beats random" in s.message
    worse = faithfulness_summary(
        model, seq, one_hot_map(0), 0, mean_pose=MEAN_POSE, replace="mean_pose"
    )
    assert not worse.beats_random and "does not beat" in worse.message
    # a class with no probability to lose: no verdict rather than a meaningless ratio
    dead = one_joint_model()
    with torch.no_grad():
        dead.fc.bias[:] = torch.tensor([-40.0, 40.0], dtype=torch.float64)
    none = faithfulness_summary(dead, seq, one_hot_map(USED), 0)
    assert np.isnan(none.score) and not none.beats_random and "no verdict" in none.message


# ---------------------------------------------------------------------------------------------
# Randomization
# ---------------------------------------------------------------------------------------------
def test_spearman_known_values():
    a = np.arange(12.0).reshape(3, 4)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman(a, np.ones_like(a)))
    with pytest.raises(SkvisError, match="different sizes"):
        spearman(a, a[:2])


def test_randomizing_the_lstm_destroys_a_one_joint_map():
    model = one_joint_model()
    data = types.SimpleNamespace(
        sequences=[noisy_sequence(s) for s in range(6)], labels=np.zeros(6, int)
    )
    res = randomization_test(model, data, samples=6)
    assert isinstance(res, RandomizationResult)
    assert res.names == ("fc", "fc+rnn.l0", "rnn.l0")
    assert res.kinds == ("cascade", "cascade", "single")
    assert res.per_sample.shape == (3, 6)
    # the FC layer alone: the map still lives on joint USED only
    assert res["fc"] > 0.8
    # a random LSTM reads every joint: the one-joint map is gone
    assert abs(res.full_cascade) < 0.5
    assert abs(res["rnn.l0"]) < 0.5
    assert res.full_cascade == res["fc+rnn.l0"]


def test_a_model_independent_map_survives_every_randomization():
    def motion(model, seq, target):
        return np.linalg.norm(seq - seq.mean(0), axis=-1)

    model = one_joint_model()
    data = types.SimpleNamespace(sequences=[noisy_sequence(s) for s in range(3)], labels=[0, 1, 0])
    res = randomization_test(model, data, method=motion)
    np.testing.assert_allclose(res.correlation, 1.0)


def test_randomization_cascades_top_down_and_is_seeded():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SkeletonLSTM(20, 3, 6, num_layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seqs = [
        np.random.default_rng(s).normal(0, 0.3, (8, 20, 3)).astype(np.float32) for s in range(4)
    ]
    data = types.SimpleNamespace(sequences=seqs, labels=np.array([0, 1, 2, 0]))
    res = randomization_test(model, data, method="through_time", samples=3, seed=4)
    assert res.names == ("fc", "fc+rnn.l1", "fc+rnn.l1+rnn.l0", "rnn.l1", "rnn.l0")
    assert len(res.indices) == 3 and len(set(res.indices.tolist())) == 3
    np.testing.assert_array_equal(res.targets, data.labels[res.indices])
    again = randomization_test(model, data, method="through_time", samples=3, seed=4)
    np.testing.assert_array_equal(res.per_sample, again.per_sample)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)

    # which weights change, and the same FC draw in every randomization with it
    a = _randomized(model, ["fc", "rnn.l1"], seed=4)
    b = _randomized(model, ["fc"], seed=4)
    assert not torch.equal(a.fc.weight, model.fc.weight)
    assert torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.rnn.weight_hh_l1, model.rnn.weight_hh_l1)
    assert torch.equal(a.rnn.weight_hh_l0, model.rnn.weight_hh_l0)
    assert torch.equal(a.feature_std, model.feature_std)
    bound = 1 / np.sqrt(6)
    assert a.rnn.weight_ih_l1.abs().max() <= bound
    assert not torch.equal(_randomized(model, ["fc"], seed=5).fc.weight, b.fc.weight)


def test_randomization_leaves_the_caller_and_global_state_alone():
    model = one_joint_model()
    model.train()
    model.module.lstm.weight_hh_l0.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002 - the legacy global state
    data = types.SimpleNamespace(sequences=[noisy_sequence(s) for s in range(3)], labels=[0, 1, 0])
    randomization_test(model, data)
    deletion_curve(model, data.sequences[0], one_hot_map(USED), target=0)
    assert model.training and all(m.training for m in model.modules())
    assert not model.module.lstm.weight_hh_l0.requires_grad
    assert model.module.lstm.weight_ih_l0.requires_grad
    assert model.module.lstm.weight_ih_l0.grad is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()  # noqa: NPY002


# ---------------------------------------------------------------------------------------------
# Planted signal
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def one_thread():
    """Small models train several times faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def msr():
    return load_msr_action3d().split_cross_subject()


@pytest.fixture(scope="module")
def planted(msr):
    """A 16-unit LSTM trained (a few seconds) on the planted right-hand task."""
    train, test = msr
    kw = {"frames": 24, "amplitude": 0.06}
    tr = planted_signal_dataset(
        train.sequences, MSR_ACTION3D, ["hand_right"], samples_per_class=100, **kw
    )
    te = planted_signal_dataset(
        test.sequences, MSR_ACTION3D, ["hand_right"], samples_per_class=30, seed=1, **kw
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SkeletonLSTM(MSR_ACTION3D.num_joints, 2, 16)
    with one_thread():
        train_model(
            model, tr, epochs=20, lr=0.01, progress=False, seed=0,
            rotate_deg=10, scale=0.05, bone_scale=0, crop=0, speed=0, jitter=0.005,
        )  # fmt: skip
    return model, te


def test_planted_dataset_puts_the_class_in_the_planted_joint_only(msr):
    train, _ = msr
    ds = planted_signal_dataset(
        train.sequences[:20], MSR_ACTION3D, ["hand_right"], samples_per_class=10, frames=16
    )
    hand = MSR_ACTION3D.index("hand_right")
    assert len(ds) == 20 and ds.num_classes == 2 and ds.class_names[0] == "hand_right up"
    x = np.stack(ds.sequences)
    assert x.shape == (20, 16, 20, 3) and x.dtype == np.float32
    move = x[:, -1, hand, 1] - x[:, 0, hand, 1]
    np.testing.assert_array_equal(move > 0, ds.labels == 0)
    assert np.abs(move).min() > 0.04
    # every other joint is real motion, drawn for either class alike
    others = np.delete(np.arange(20), hand)
    assert not np.allclose(x[0][:, others], x[0][:1, others])
    again = planted_signal_dataset(
        train.sequences[:20], MSR_ACTION3D, ["hand_right"], samples_per_class=10, frames=16
    )
    np.testing.assert_array_equal(np.stack(again.sequences), x)


@pytest.mark.slow  # trains a model (about a minute and a half here)
def test_planted_model_is_explained_by_the_planted_joint(planted):
    model, te = planted
    acc = float((model.predict(te.sequences).argmax(1) == te.labels).mean())
    assert acc >= 0.85  # else the check below would test nothing
    x = np.stack(te.sequences)
    hand = [MSR_ACTION3D.index("hand_right")]
    for mode in ("instantaneous", "through_time"):
        maps = joint_sensitivity(model, x, target=te.labels, mode=mode, normalize=False)
        assert topk_hit_rate(maps, hand, 1) >= 0.8, mode


def test_topk_hit_rate_known_values():
    maps = np.zeros((3, 5, 4)) + [0.0, 0.01, 0.02, 0.03]  # else joints 3 > 2 > 1 > 0
    maps[0, :, 1] = 1  # ranks 1, 3, 2, 0
    maps[1, :, 2] = 1  # ranks 2, 0, 3, 1
    maps[1, :, 0] = 0.5
    maps[2, :, 3] = 1  # ranks 3, 2, 1, 0
    assert topk_hit_rate(maps, [1], 1) == pytest.approx(1 / 3)
    assert topk_hit_rate(maps, [1, 2], 1) == pytest.approx(2 / 3)
    assert topk_hit_rate(maps, [0, 2]) == pytest.approx((0 + 1 + 1 / 2) / 3)
    assert topk_hit_rate(list(maps), [3], 1) == pytest.approx(1 / 3)
    assert topk_hit_rate(maps[0], [1]) == 1.0
    with pytest.raises(SkvisError, match="k must be"):
        topk_hit_rate(maps, [1], 5)
    with pytest.raises(SkvisError, match="expected a name or an index"):
        topk_hit_rate(maps, [7])
    with pytest.raises(SkvisError, match="finite"):
        topk_hit_rate([maps[0], np.full((5, 4), np.nan)], [1])


# ---------------------------------------------------------------------------------------------
# The shipped model on real data
# ---------------------------------------------------------------------------------------------
def test_deleting_salient_cells_beats_random_on_real_test_sequences(msr):
    _, test = msr
    model = load_pretrained("msr_action3d")
    idx = np.random.default_rng(0).choice(len(test), 16, replace=False)
    results = {}
    with one_thread():
        for mode in ("instantaneous", "through_time"):
            wins, aucs, refs = [], [], []
            for i in idx:
                seq = test.sequences[i]
                c = int(model.classify(seq).argmax())
                sal = joint_sensitivity(model, seq, target=c, mode=mode)
                curve = deletion_curve(model, seq, sal, target=c, steps=10)
                wins.append(curve.beats_random)
                aucs.append(curve.auc)
                refs.append(curve.random_auc.mean())
            results[mode] = (np.mean(wins), np.mean(aucs), np.mean(refs))
    # most sequences, and lower AUCs on average (benchmarks/faithfulness.md: 60 sequences)
    for mode, (frac, auc, ref) in results.items():
        assert frac > 0.5 and auc < ref - 0.1, (mode, results)
    assert results["through_time"][0] >= 0.8, results


def test_eq3_maps_of_the_shipped_model_survive_randomization(msr):
    """Eq 3 weighs each coordinate by its spread over the sequence: the paper's map
    mostly says which joints move, whatever the weights (see saliency.py's docstring)."""
    _, test = msr
    model = load_pretrained("msr_action3d")
    res = randomization_test(model, test, samples=4)
    assert res.full_cascade > 0.7


# ---------------------------------------------------------------------------------------------
# Validation and frozen results
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sequence": np.zeros((T, J))}, r"expected shape \(T, J, 3\)"),
        ({"sequence": np.zeros((T, J + 1, 3))}, "has 5 joints"),
        ({"sequence": np.zeros((0, J, 3))}, "zero frames"),
        ({"sequence": np.full((T, J, 3), np.inf)}, "NaN or infinite"),
        ({"sequence": "abc"}, "cannot convert"),
        ({"saliency": np.zeros((T, J + 1))}, r"saliency of shape \(20, 5\)"),
        ({"saliency": np.zeros((T - 1, J))}, "does not match"),
        ({"target": 2}, "target 2 out of range"),
        ({"target": -1}, "out of range"),
        ({"target": 1.0}, "must be an int"),
        ({"target": True}, "must be an int"),
        ({"steps": 0}, "steps must be"),
        ({"steps": 10**4}, rf"steps can be at most {T * J}\b"),
        ({"replace": "origin"}, "replace must be one of"),
        ({"replace": "mean_pose"}, "needs mean_pose"),
        ({"mean_pose": np.zeros((J, 2))}, r"mean_pose: expected shape \(J, 3\)"),
        ({"mean_pose": np.full((J, 3), np.nan)}, "mean_pose: contains NaN"),
        ({"seeds": ()}, "non-empty"),
        ({"seeds": (0.5,)}, "seeds must be"),
    ],
)
def test_curve_validation(change, match):
    args = {
        "sequence": noisy_sequence(),
        "saliency": one_hot_map(USED),
        "target": 0,
        "steps": 4,
        "replace": "interpolate",
        "mean_pose": None,
        "seeds": (0,),
    }
    args.update(change)
    model = one_joint_model()
    seq, sal = args.pop("sequence"), args.pop("saliency")
    for fn in (deletion_curve, insertion_curve):
        with pytest.raises(SkvisError, match=match):
            fn(model, seq, sal, **args)


def test_nan_inputs_are_named():
    model = one_joint_model()
    seq = noisy_sequence()
    seq[4, 1, 2] = np.nan
    with pytest.raises(SkvisError, match="sequence: contains NaN.*frame 4, joint 1"):
        deletion_curve(model, seq, one_hot_map(USED), target=0)
    sal = one_hot_map(USED)
    sal[3, 2] = np.inf
    with pytest.raises(SkvisError, match="saliency: contains NaN.*frame 3, joint 2"):
        faithfulness_summary(model, noisy_sequence(), sal, 0)


def test_randomization_validation():
    model = one_joint_model()
    data = types.SimpleNamespace(sequences=[noisy_sequence()], labels=[0])
    with pytest.raises(SkvisError, match="method must be"):
        randomization_test(model, data, method="gradcam")
    with pytest.raises(SkvisError, match=r"\.sequences and \.labels"):
        randomization_test(model, [noisy_sequence()])
    with pytest.raises(SkvisError, match="target 3 out of range"):
        randomization_test(model, types.SimpleNamespace(sequences=[noisy_sequence()], labels=[3]))
    with pytest.raises(SkvisError, match="indices must be"):
        randomization_test(model, data, indices=[1])
    with pytest.raises(SkvisError, match="samples must be"):
        randomization_test(model, data, samples=0)
    with pytest.raises(SkvisError, match="nothing to do"):
        randomization_test(model, data, cascade=False, single=False)
    with pytest.raises(SkvisError, match="empty"):
        randomization_test(model, types.SimpleNamespace(sequences=[], labels=[]))
    with pytest.raises(SkvisError, match="has 5 joints"):
        randomization_test(
            model, types.SimpleNamespace(sequences=[np.zeros((3, 5, 3))], labels=[0])
        )
    res = randomization_test(model, data, cascade=False)
    assert res.names == ("fc", "rnn.l0")
    with pytest.raises(SkvisError, match="no randomization 'lstm'"):
        res["lstm"]


def test_planted_validation(msr):
    train, _ = msr
    base = train.sequences[:3]
    with pytest.raises(SkvisError, match="unknown joint 'hand'"):
        planted_signal_dataset(base, MSR_ACTION3D, ["hand"])
    with pytest.raises(SkvisError, match="distinct joints"):
        planted_signal_dataset(base, MSR_ACTION3D, [12, 12])
    with pytest.raises(SkvisError, match="axis must be"):
        planted_signal_dataset(base, MSR_ACTION3D, [12], axis=3)
    with pytest.raises(SkvisError, match="base sequence 1"):
        planted_signal_dataset([base[0], np.zeros((5, 25, 3))], MSR_ACTION3D, [12])
    with pytest.raises(SkvisError, match="no base sequences"):
        planted_signal_dataset([], MSR_ACTION3D, [12])


def test_results_are_frozen():
    model, seq = one_joint_model(), noisy_sequence()
    sal = one_hot_map(USED)
    curve = deletion_curve(model, seq, sal, target=0, steps=3)
    assert isinstance(curve, PerturbationCurve)
    with pytest.raises(dataclasses.FrozenInstanceError):
        curve.auc = 0.0
    for name in ("fractions", "probabilities", "random_probabilities", "random_auc"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(curve, name)[0] = 1.0
    assert sal.flags.writeable  # the caller's arrays are not frozen with it
    summary = faithfulness_summary(model, seq, sal, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.score = 1.0
    data = types.SimpleNamespace(sequences=[seq], labels=[0])
    res = randomization_test(model, data)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.names = ()
    with pytest.raises(ValueError, match="read-only"):
        res.correlation[0] = 0.0


# ---------------------------------------------------------------------------------------------
# compare_methods: the verdict table
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compared():
    from skvis_widgets.metrics import compare_methods

    model = load_pretrained("msr_action3d")
    test = load_msr_action3d().split_cross_subject()[1]
    table = compare_methods(
        model, test, methods=["paper", "gradient"], samples=30, randomization_samples=6,
        stability_samples=2, perturbations=2, progress=False, seed=1,
    )  # fmt: skip
    return model, test, table


def test_compare_methods_table_rows_and_values(compared):
    from skvis_widgets.metrics import verdict_line

    _, _, table = compared
    assert [r.method for r in table.rows] == ["paper", "gradient", "motion", "random"]
    assert dict(table.settings)["samples"] == 30
    rnd, motion, grad = table["random"], table["motion"], table["gradient"]
    # the random map is the metric's calibration: its AUC is the random orders' and it
    # beats them about half the time (30 sequences: 0.5 +- 3 standard errors)
    assert abs(rnd.deletion_beats - 0.5) < 0.28 and abs(rnd.insertion_beats - 0.5) < 0.28
    assert rnd.deletion_auc == pytest.approx(rnd.deletion_random_auc, abs=0.05)
    # model-free maps survive randomization exactly; the gradient does not
    assert rnd.rho_full == pytest.approx(1.0) and motion.rho_full == pytest.approx(1.0)
    # the gradient depends on the learned weights more than the paper's eq-3 map does
    assert grad.rho_full < table["paper"].rho_full - 0.1
    assert grad.deletion_beats > 0.75 and grad.deletion_auc < rnd.deletion_auc
    assert np.isnan(grad.planted_top1)  # no planted model given
    assert 0 <= grad.stability_change < 1 and rnd.stability_change == pytest.approx(0.0)
    same = {r.deletion_random_auc for r in table.rows}  # same sequences, same random orders
    assert max(same) - min(same) < 1e-12
    md = table.to_markdown().splitlines()
    assert len(md) == 2 + 4 and md[2].startswith("| eq 5, instantaneous (the paper's) |")
    line = verdict_line(table["paper"], table)
    assert "randomization check" in line or "ranks joints mostly by their motion" in line
    assert ("passes the randomization" in verdict_line(grad, table)) == (grad.rho_full < 0.5)
    assert "calibration" in verdict_line(rnd, table)
    assert table.recommended() in ("paper", "gradient")
    with pytest.raises(SkvisError, match="no row"):
        table["occlusion"]


def test_verdict_line_names_a_motion_map():
    from skvis_widgets.metrics import CompareRow, CompareTable, verdict_line

    def row(method, label, beats, rho):
        return CompareRow(method, label, 0.4, 0.7, beats, 0.7, 0.7, 0.5, rho, 0.2, 0.6, 1.0, 0)

    t = CompareTable(
        rows=(row("paper", "paper", 0.83, 0.91), row("motion", "motion", 0.81, 1.0)),
        settings=(),
    )
    line = verdict_line(t["paper"], t)
    assert "ranks joints mostly by their motion" in line
    assert "misses the planted joint (20%)" in line and "unstable" in line
    assert "fails the randomization check" in verdict_line(t["paper"])  # no motion row to compare


def test_compare_methods_cancel_and_validation(compared):
    import threading

    from skvis_widgets.metrics import compare_methods

    model, test, _ = compared
    ev = threading.Event()
    ev.set()
    t = compare_methods(model, test, methods=["gradient"], samples=3, cancel=ev, progress=False,
                        stability_samples=0)  # fmt: skip
    assert t.cancelled and t.rows == ()
    with pytest.raises(SkvisError, match="unknown methods"):
        compare_methods(model, test, methods=["lrp"], progress=False)
    with pytest.raises(SkvisError, match="cancel"):
        compare_methods(model, test, methods=["gradient"], cancel=1, progress=False)


def test_fill_removed_is_the_deletion_curves_fill():
    rng = np.random.default_rng(0)
    seq = rng.normal(0, 0.3, (8, 20, 3))
    removed = rng.random((3, 8, 20)) < 0.4
    from skvis_widgets.metrics import fill_removed

    out = fill_removed(seq, removed)
    np.testing.assert_array_equal(out[~removed], np.broadcast_to(seq, out.shape)[~removed])
    # a removed cell between kept frames is on the line between them
    b, t, j = np.argwhere(removed[:, 1:-1] & ~removed[:, :-2] & ~removed[:, 2:])[0]
    np.testing.assert_allclose(out[b, t + 1, j], (seq[t, j] + seq[t + 2, j]) / 2)
    np.testing.assert_array_equal(fill_removed(seq, removed[0]), out[0])
    with pytest.raises(SkvisError, match="fill_removed"):
        fill_removed(seq, removed[:, :5])
