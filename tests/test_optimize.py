"""Activation maximization (section 3.2): scores, constraints, directions, control, errors.

The real case is the bundled model on the first "high throw" (class 5) of the MSR Action3D
test split. Directions are checked in float64 on small models against independent
computations: eq 7 against autograd through a one-step replay of the recurrent layer
from the detached state at t - 1, weighted by the FC row; the full direction against
autograd of ``model(x)``.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings

import numpy as np
import pytest
import torch

from skvis_widgets import KINECT_V1, KINECT_V2, MSR_ACTION3D, SkvisError, Topology
from skvis_widgets.anatomy import anatomical_constraints, project
from skvis_widgets.model import SkeletonLSTM
from skvis_widgets.optimize import (
    MaximizationResult,
    ascent_direction,
    default_constraints,
    maximize_activation,
)
from skvis_widgets.saliency import instantaneous_jacobian
from skvis_widgets.sequence_constraints import acceleration as _acceleration
from skvis_widgets.sequence_constraints import bound_acceleration as _bound_acceleration

THROW = 5
FEET = [MSR_ACTION3D.index(n) for n in ("foot_left", "foot_right", "ankle_left", "ankle_right")]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on busy shared cores, two threads wait on each other ~100x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    from skvis_widgets.model import load_pretrained

    return load_pretrained("msr_action3d")


@pytest.fixture(scope="module")
def throw():
    from skvis_widgets.data import load_msr_action3d

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped all-zero recording
        _, test = load_msr_action3d().split_cross_subject()
    return np.asarray(test.sequences[int(test.indices_of_class(THROW)[0])])


@pytest.fixture(scope="module")
def run(model, throw):
    return maximize_activation(model, throw, target=THROW, progress=False)


def bone_errors(history: np.ndarray, topology: Topology, ref: np.ndarray) -> np.ndarray:
    """``|length - reference|`` per iterate, frame and bone, metres (computed here)."""
    b = np.asarray(topology.bones)
    lengths = np.linalg.norm(history[..., b[:, 1], :] - history[..., b[:, 0], :], axis=-1)
    return np.abs(lengths - ref)


# -- the throw -----------------------------------------------------------------------------
def test_throw_score_rises_and_every_iterate_is_valid(model, throw, run):
    r = run
    k = r.iterations_run
    assert k >= 2 and len(r.history) == len(r.scores) == len(r.residuals) == k + 1
    assert r.history.shape == (k + 1, *throw.shape) and r.history.dtype == np.float32
    np.testing.assert_array_equal(r.history[0], throw)
    with torch.no_grad():
        logit = float(model(torch.as_tensor(throw[None]))[0, THROW])
    assert r.scores[0] == pytest.approx(logit, rel=1e-5)
    assert r.scores[1] > r.scores[0]
    assert np.all(np.diff(r.scores) > 0)
    assert r.target == THROW and r.unit is None and r.gradient == "full" and r.constrained
    # every iterate after the input: bones exact (measured here), angles in their ranges
    ref = np.mean(bone_errors(throw[None], MSR_ACTION3D, 0.0)[0], axis=0)
    np.testing.assert_allclose(r.reference_lengths, ref, rtol=1e-6)
    assert bone_errors(r.history[1:], MSR_ACTION3D, ref).max() < 1e-5
    assert bone_errors(throw[None], MSR_ACTION3D, ref).max() > 1e-3  # the input's vary
    names = r.constraint_names
    assert r.residuals.shape == (k + 1, len(throw), len(names))
    bones = np.array([n.startswith("bone:") for n in names])
    assert r.residuals[1:][..., bones].max() < 1e-5
    assert r.residuals[1:][..., ~bones].max() < 1e-3  # degrees
    np.testing.assert_allclose(r.max_residuals, r.residuals.max(axis=1))
    np.testing.assert_array_equal(r.final, r.history[-1])


def test_default_constraints_keep_the_paper_limits_the_input_respects(throw, run):
    cs = run.constraint_set
    assert cs == default_constraints(throw, MSR_ACTION3D)
    paper = anatomical_constraints(MSR_ACTION3D)
    widened = 0
    for c in paper.of_kind("angle"):
        lo, hi = cs[c.name].limits
        assert lo <= c.limits[0] and hi >= c.limits[1]
        a, v, w = (throw[:, j].astype(np.float64) for j in c.joints)
        u1, u2 = a - v, w - v
        cos = (
            np.einsum("td,td->t", u1, u2) / np.linalg.norm(u1, axis=1) / np.linalg.norm(u2, axis=1)
        )
        ang = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        if ang.min() < c.limits[0]:  # widened to what the input shows, 0.1 deg outwards
            widened += 1
            assert ang.min() - 0.1 <= lo <= ang.min() + 1e-9
        else:
            assert lo == c.limits[0]
    assert widened >= 1  # MSR's spine is bent: the paper's 160 deg does not hold
    assert cs["angle:spine"].limits[0] < 160.0


def test_unconstrained_run_breaks_bones_as_in_figure_2a(model, throw, run):
    r = maximize_activation(
        model, throw, target=THROW, constraints=False, iterations=3, progress=False
    )
    assert not r.constrained and r.iterations_run >= 1
    assert np.all(np.diff(r.scores) > 0)
    err = bone_errors(r.history[1:], MSR_ACTION3D, r.reference_lengths)
    assert err.max() > 0.01  # some bone off by more than a centimetre
    bones = np.array([n.startswith("bone:") for n in r.constraint_names])
    np.testing.assert_allclose(r.residuals[1:][..., bones], err, atol=1e-6)  # measured anyway


def test_paper_gradient_and_unit_target_on_the_throw(model, throw):
    r = maximize_activation(
        model, throw, target=THROW, gradient="paper", iterations=4, progress=False
    )
    assert r.gradient == "paper" and np.all(np.diff(r.scores) > 0) and r.iterations_run >= 1
    unit = int(np.argmax(model.fc.weight.detach()[THROW].numpy()))
    u = maximize_activation(model, throw, unit=unit, iterations=3, progress=False)
    with torch.no_grad():
        h = float(model.hidden_states(torch.as_tensor(throw[None]))[0, -1, unit])
    assert u.unit == unit and u.target is None
    assert u.scores[0] == pytest.approx(h, rel=1e-5, abs=1e-7)
    assert u.iterations_run >= 1 and np.all(np.diff(u.scores) > 0)


# -- directions against independent computations ---------------------------------------------
J, H, C, T = 4, 5, 3, 7


def small_seq(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.5, (T, J, 3))


def replay(model: SkeletonLSTM, x: torch.Tensor, weights: torch.Tensor, layer: int) -> np.ndarray:
    """``sum_u weights[u] dh_t^u / dx_t`` with the state at t - 1 held fixed, (T, J, 3)."""
    rnn = model.rnn
    trunc = type(rnn)(rnn.input_size, rnn.hidden_size, num_layers=layer + 1, batch_first=True)
    trunc.load_state_dict(
        {k: v for k, v in rnn.state_dict().items() if int(k.rsplit("_l", 1)[1]) <= layer}
    )
    trunc = trunc.double()
    feats = model.preprocess(x[None]).detach()
    out = []
    for t in range(len(x)):
        state = None if t == 0 else trunc(feats[:, :t])[1]
        if isinstance(state, tuple):
            state = tuple(s.detach() for s in state)
        elif state is not None:
            state = state.detach()
        xt = x[t].clone().requires_grad_(True)
        h = trunc(model.preprocess(xt[None, None]), state)[0][0, 0]
        (g,) = torch.autograd.grad(h @ weights, xt)
        out.append(g.numpy())
    return np.stack(out)


@pytest.mark.parametrize("cell,layers", [("lstm", 1), ("gru", 1), ("lstm", 2)])
def test_paper_direction_is_eq7(cell, layers, small_model):
    m = small_model(cell, layers)
    x = torch.as_tensor(small_seq())
    for c in range(C):
        got = ascent_direction(m, x.numpy(), target=c, gradient="paper")
        ref = replay(m, x, m.fc.weight.detach()[c], layers - 1)
        assert got.shape == (T, J, 3) and got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
        assert np.abs(ref).max() > 0.05
    for layer in range(layers):
        got = ascent_direction(m, x.numpy(), unit=2, layer=layer, gradient="paper")
        np.testing.assert_allclose(got, replay(m, x, torch.eye(H)[2].double(), layer), atol=1e-12)
        # the saliency helper behind it: signed rows, |.| of them is unit_sensitivity's
        jac = instantaneous_jacobian(m, x, layer=layer)
        assert jac.shape == (H, T, J, 3) and (jac < 0).any() and (jac > 0).any()


@pytest.mark.parametrize("cell,layers", [("lstm", 1), ("gru", 2)])
def test_full_direction_is_the_gradient_of_the_score(cell, layers, small_model):
    m = small_model(cell, layers)
    x = torch.as_tensor(small_seq()).requires_grad_(True)
    (ref,) = torch.autograd.grad(m(x[None])[0, 1], x)
    got = ascent_direction(m, x.detach().numpy(), target=1)
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-12)
    (ref,) = torch.autograd.grad(m.hidden_states(x[None], layer=0)[0, -1, 3], x)
    got = ascent_direction(m, x.detach().numpy(), unit=3, layer=0)
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=1e-12)
    assert m.rnn.weight_ih_l0.grad is None


@pytest.mark.parametrize("gradient", ["full", "paper"])
def test_a_step_moves_the_most_moved_joint_step_size_metres(gradient, small_model):
    m = small_model()
    x = small_seq()
    r = maximize_activation(
        m,
        x,
        target=0,
        gradient=gradient,
        constraints=False,
        iterations=1,
        step_size=0.02,
        max_halvings=12,
        progress=False,
    )
    assert r.iterations_run == 1 and r.constraint_names == () and r.constraint_set is None
    d = ascent_direction(m, x, target=0, gradient=gradient)
    step = r.step_sizes[0]
    assert step in [0.02 / 2**k for k in range(13)]
    expected = x + step * d / np.linalg.norm(d, axis=-1).max()
    np.testing.assert_allclose(r.history[1], expected, atol=1e-12)
    assert np.linalg.norm(r.history[1] - x, axis=-1).max() == pytest.approx(step)


# -- control: callback, cancel, convergence, model state ---------------------------------------
def test_callback_runs_after_each_iteration_with_the_partial_result(model, throw):
    seen = []

    def callback(it, partial):
        assert isinstance(partial, MaximizationResult)
        seen.append((it, partial.iterations_run, len(partial.history), partial.scores[-1]))

    r = maximize_activation(
        model, throw, target=THROW, iterations=4, tol=0.0, callback=callback, progress=False
    )
    assert [s[0] for s in seen] == list(range(1, r.iterations_run + 1))
    assert all(it == k and n == k + 1 for it, k, n, _ in seen)
    np.testing.assert_allclose([s[3] for s in seen], r.scores[1:])


def test_cancel_from_the_callback_stops_within_one_iteration(model, throw):
    cancel = threading.Event()
    calls = []

    def callback(it, partial):
        calls.append(it)
        if it == 1:
            cancel.set()

    r = maximize_activation(
        model,
        throw,
        target=THROW,
        iterations=12,
        tol=0.0,
        callback=callback,
        cancel=cancel,
        progress=False,
    )
    assert r.cancelled and not r.converged
    assert r.iterations_run <= 2 and calls == list(range(1, r.iterations_run + 1))
    assert len(r.history) == r.iterations_run + 1
    already = maximize_activation(model, throw, target=THROW, cancel=cancel, progress=False)
    assert already.cancelled and already.iterations_run == 0 and already.history.shape[0] == 1


def test_converges_when_no_step_helps_and_stops_on_a_small_gain(small_model):
    m = small_model()
    x = small_seq()
    r = maximize_activation(
        m, x, target=0, constraints=False, iterations=500, step_size=0.05, progress=False
    )
    assert r.converged and not r.cancelled and r.iterations_run < 500
    assert np.all(np.diff(r.scores) > 0)
    loose = maximize_activation(
        m, x, target=0, constraints=False, iterations=500, tol=0.5, progress=False
    )
    assert loose.converged and loose.iterations_run < r.iterations_run


def test_progress_bar_counts_the_iterations(capsys, small_model):
    r = maximize_activation(small_model(), small_seq(), target=0, constraints=False, iterations=3)
    err = capsys.readouterr().err
    assert "activation maximization" in err and f"{r.iterations_run}/3" in err


def test_result_is_frozen(run):
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.converged = True  # type: ignore[misc]
    for name in ("history", "scores", "residuals", "step_sizes", "reference_lengths"):
        arr = getattr(run, name)
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[(0,) * arr.ndim] = 1.0


def test_model_modes_and_requires_grad_restored_and_no_grad_left(throw):
    from skvis_widgets.model import load_pretrained

    m = load_pretrained("msr_action3d")
    m.train()
    m.fc.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in m.named_parameters()}
    for gradient in ("full", "paper"):
        maximize_activation(m, throw, target=THROW, iterations=2, gradient=gradient, progress=False)
        assert m.training and all(mod.training for mod in m.modules())
        assert {n: p.requires_grad for n, p in m.named_parameters()} == flags
        assert all(p.grad is None for p in m.parameters())


# -- the options beyond the paper ------------------------------------------------------------
def test_support_keeps_the_lowest_foot_on_the_floor(model, throw):
    low0 = throw[:, FEET, 1].astype(np.float64).min(axis=1)
    r = maximize_activation(model, throw, target=THROW, iterations=4, support=True, progress=False)
    assert r.support == "frame" and r.iterations_run >= 1
    low = r.history[:, :, FEET, 1].astype(np.float64).min(axis=2)
    np.testing.assert_allclose(low, np.broadcast_to(low0, low.shape), atol=1e-6)
    assert r.constraint_names[-1] == "support:floor" and r.residuals[..., -1].max() < 1e-6
    bones = np.array([n.startswith("bone:") for n in r.constraint_names])
    assert r.residuals[1:][..., bones].max() < 1e-5  # a vertical shift keeps the skeleton
    f = maximize_activation(
        model, throw, target=THROW, iterations=2, support="floor", progress=False
    )
    low = f.history[1:, :, FEET, 1].astype(np.float64).min(axis=2)
    np.testing.assert_allclose(low, low0.min(), atol=1e-6)


def test_temporal_bounds_the_added_acceleration(model, throw):
    bound = 0.01
    r = maximize_activation(
        model, throw, target=THROW, iterations=4, temporal=bound, progress=False
    )
    assert r.temporal == bound and r.iterations_run >= 1 and np.all(np.diff(r.scores) > 0)
    base = project(throw, r.constraint_set, r.reference_lengths).astype(np.float64)
    added = np.stack([_acceleration(h.astype(np.float64) - base) for h in r.history[1:]])
    assert added.max() <= bound * 1.05 + 1e-9
    col = r.constraint_names.index("temporal:acceleration")
    np.testing.assert_allclose(
        r.residuals[1:, 1:-1, col], np.maximum(added - bound, 0).max(-1), atol=1e-6
    )
    free = maximize_activation(model, throw, target=THROW, iterations=4, progress=False)
    free_added = max(_acceleration(h.astype(np.float64) - base).max() for h in free.history[1:])
    assert free_added > 2 * bound  # without the option the bound does not hold by itself
    assert bone_errors(r.history[1:], MSR_ACTION3D, r.reference_lengths).max() < 1e-5


def test_acceleration_bound_is_the_nearest_point():
    """Dykstra's answer against SLSQP on the same small convex problem."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    d = np.cumsum(rng.normal(0, 0.05, (7, 2, 3)), axis=0)
    bound = 0.02
    got = _bound_acceleration(d, bound, 1e-9, max_sweeps=20000)
    assert _acceleration(got).max() <= bound + 1e-8

    def cons(z):
        return bound**2 - _acceleration(z.reshape(d.shape)).ravel() ** 2

    ref = minimize(
        lambda z: ((z - d.ravel()) ** 2).sum(),
        d.ravel(),
        jac=lambda z: 2 * (z - d.ravel()),
        constraints=[{"type": "ineq", "fun": cons}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    ).x.reshape(d.shape)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.abs(got - d).max() > 0.01


# -- topology and bad input ------------------------------------------------------------------
def test_topology_from_the_joint_count_for_a_25_joint_model():
    from pathlib import Path

    from skvis_widgets.data import main_body, normalize_sequence, read_ntu_skeleton

    path = Path(__file__).parent / "data" / "ntu" / "S001C001P001R001A001.skeleton"
    seq = normalize_sequence(main_body(read_ntu_skeleton(path)), KINECT_V2)[:40]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = SkeletonLSTM(25, 60, 32).eval()
    r = maximize_activation(m, seq, target=3, iterations=2, progress=False)
    assert r.constraint_set.topology is KINECT_V2 and np.all(np.diff(r.scores) > 0)
    assert r.residuals[1:][..., : KINECT_V2.num_bones].max() < 1e-5


def test_bad_input_raises_skvis_error(model, throw):
    def call(seq=throw, m=model, **kw):
        kw.setdefault("target", THROW)
        return maximize_activation(m, seq, progress=False, **kw)

    bad = [
        (dict(seq=throw[:, :19]), "19 joints"),
        (dict(seq=throw[:, :, :2]), "shape"),
        (dict(seq=np.where(np.arange(20)[None, :, None] == 3, np.nan, throw)), "NaN"),
        (dict(seq=throw[:0]), "zero frames"),
        (dict(seq="not a sequence"), "float array"),
        (dict(target=None), "exactly one"),
        (dict(unit=3), "exactly one"),
        (dict(target=20), "out of range"),
        (dict(target=-1), "out of range"),
        (dict(target=1.5), "must be an int"),
        (dict(target=True), "must be an int"),
        (dict(target=None, unit=model.hidden_size), "out of range"),
        (dict(gradient="adam"), "gradient"),
        (dict(step_size=0.0), "step_size"),
        (dict(step_size=float("nan")), "step_size"),
        (dict(iterations=-1), "iterations"),
        (dict(support="ceiling"), "support"),
        (dict(temporal=-0.1), "temporal"),
        (dict(constraints="yes"), "constraints"),
        (dict(cancel=object()), "cancel"),
        (dict(topology="kinect_v2"), "25 joints"),
        (dict(layer=3), "layer"),
    ]
    for kwargs, words in bad:
        with pytest.raises(SkvisError, match=words):
            call(**kwargs)
    # a topology without the joints support needs
    no_feet = Topology(
        "no_feet",
        tuple(
            n if n not in ("foot_left", "foot_right", "ankle_left", "ankle_right") else f"x_{n}"
            for n in MSR_ACTION3D.joint_names
        ),
        MSR_ACTION3D.bones,
    )
    # twenty joints without metadata: MSR Action3D or Kinect v1? Constraints need to know.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        anon = SkeletonLSTM(20, 20, 16).eval()
    with pytest.raises(SkvisError, match="foot or ankle"):
        call(m=anon, topology=no_feet, support=True)
    # the model records msr_action3d: another topology= is refused, naming both
    with pytest.raises(SkvisError, match="'msr_action3d'.*topology= has 'no_feet'.*lacks"):
        call(topology=no_feet, support=True)
    with pytest.raises(SkvisError, match="topology="):
        call(m=anon)
    assert call(m=anon, constraints=False, iterations=1).constraint_set is None
    assert call(m=anon, topology=MSR_ACTION3D, iterations=1).constraint_set.topology is MSR_ACTION3D
    with pytest.raises(SkvisError, match="topology"):
        call(constraints=anatomical_constraints(KINECT_V2))
    with pytest.raises(SkvisError, match="metadata"):  # 20 joints, but not the model's
        call(constraints=anatomical_constraints(KINECT_V1))
    paper = anatomical_constraints(MSR_ACTION3D)
    assert call(constraints=paper, iterations=1).constraint_set is paper


def test_constraint_objects_give_the_keywords_results(model, throw):
    from skvis_widgets.optimize import Acceleration, Anatomy, Support

    seq = throw[:40]
    kw = maximize_activation(
        model, seq, target=THROW, iterations=2, support="floor", temporal=0.02, progress=False
    )
    objs = maximize_activation(
        model,
        seq,
        target=THROW,
        iterations=2,
        constraints=[Anatomy(), Acceleration(0.02), Support("floor")],
        progress=False,
    )
    np.testing.assert_array_equal(kw.history, objs.history)
    np.testing.assert_array_equal(kw.residuals, objs.residuals)
    assert kw.constraint_names == objs.constraint_names
    assert (objs.support, objs.temporal, objs.constrained) == ("floor", 0.02, True)


def test_a_new_constraint_needs_no_change_to_the_optimizer(model, throw):
    # A constraint written outside the package: the wrists never rise above the head.
    from dataclasses import dataclass

    head = MSR_ACTION3D.index("head")
    hands = [MSR_ACTION3D.index(n) for n in ("hand_left", "hand_right")]

    @dataclass(frozen=True)
    class Bound:
        kind = "pose"
        names = ("hands:below_head",)
        enforced = True

        def residuals(self, x):
            over = x[:, hands, 1] - x[:, head, 1][:, None]
            return np.maximum(over, 0.0).max(axis=1, keepdims=True)

        def apply(self, y, pose):
            y = y.copy()
            y[:, hands, 1] = np.minimum(y[:, hands, 1], y[:, head, 1][:, None])
            return y

        def holds(self, y):
            return True

    class HandsBelowHead:
        kind = "pose"

        def bind(self, x0, topology, pose):
            return Bound()

    r = maximize_activation(
        model,
        throw[:40],
        target=THROW,
        iterations=2,
        constraints=[HandsBelowHead()],
        progress=False,
    )
    assert r.constraint_names[-1] == "hands:below_head"
    assert r.residuals[1:, :, -1].max() == 0.0
    assert not r.constrained  # the anatomical constraints are measured, not enforced
