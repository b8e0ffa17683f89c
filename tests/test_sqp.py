"""The compiled projection solver (`skvis_widgets.anatomy._kernel`) against independent
computations: its rows against the numpy rows (`anatomy.rows.evaluate`), its Lagrangian
Hessian against finite differences of gradients written separately (those numpy rows),
its block factorisation against a dense solve, and `project` with it against `project`
with SLSQP."""

from __future__ import annotations

import numpy as np
import pytest
from test_anatomy import assert_valid, load_msr, load_ntu  # the same real files and checks

import skvis_widgets.anatomy as anatomy
from skvis_widgets._compiled import BackgroundCompile
from skvis_widgets.anatomy import _kernel as _sqp
from skvis_widgets.anatomy import (
    anatomical_constraints,
    constraint_residuals,
    project,
    reference_bone_lengths,
)
from skvis_widgets.anatomy import program as _prog
from skvis_widgets.anatomy.rows import evaluate
from skvis_widgets.errors import SkvisError
from skvis_widgets.skeleton import KINECT_V2, MSR_ACTION3D


def _state(topo, x, seed):
    """A frame's plan, rows and random multipliers (every row's weight nonzero)."""
    cs = anatomical_constraints(topo)
    ref = reference_bone_lengths(x[None], topo)
    prog = _prog.compile_program(cs, ref)
    pl = _prog.plan(prog)
    rng = np.random.default_rng(seed)
    J = topo.num_joints
    m = prog.n_ineq
    lam = rng.normal(0.0, 0.05, J)
    lam[pl.root] = 0.0
    mu = rng.uniform(0.001, 0.01, m)
    u = np.zeros((J, 3))
    u[prog.child] = (x[prog.child] - x[prog.parent]) / ref[:, None]
    h = np.zeros(m)
    A = np.zeros((m, J, 3))
    _sqp._rows(x, pl.ang_idx, pl.ang_sn, pl.ang_sc, pl.plane_idx, pl.plane_inv, h, A, True)
    geo = (pl.pairs, pl.root, pl.parent, pl.length, pl.ang_idx, pl.ang_sn, pl.plane_idx)
    geo += (pl.plane_inv, pl.row_j)
    return prog, pl, lam, mu, u, h, A, geo


def _dense(K, J):
    """The (4J, 4J) matrix of the blocks."""
    return K.transpose(0, 2, 1, 3).reshape(4 * J, 4 * J)


def _real_frame(topo, t):
    """Frame t of a real recording: NTU drinking (Kinect v2) or MSR high throw."""
    if topo is KINECT_V2:
        return load_ntu("S001C001P001R001A001.skeleton")[t]
    return load_msr("a06_s02_e01_skeleton3D.txt")[t]


def _exact_lengths(topo, x0):
    """x0 with every bone at the mean length (the solver's iterates have exact bones)."""
    cs = anatomical_constraints(topo)
    ref = reference_bone_lengths(x0[None], topo)
    prog = _prog.compile_program(cs, ref)
    u = _prog.unit(x0[None, prog.child] - x0[None, prog.parent], np.zeros((1, 1, 3)))
    return _prog.fk(x0[None, prog.root], u, prog)[0]


@pytest.mark.parametrize("topo", [KINECT_V2, MSR_ACTION3D], ids=lambda t: t.name)
def test_lagrangian_hessian_matches_finite_differences(topo):
    # Hess of L = 0.5 |x - x0|^2 - sum lam_b c_b - sum mu_i h_i, with the bones as
    # c_b = (|x_c - x_p|^2 - L_b^2) / (2 L_b) and the angle and plane rows as numpy
    # writes them (`rows.evaluate`), by central differences of the gradient: exact
    # for the quadratic terms, O(eps^2) for the plane's cubic one.
    rng = np.random.default_rng(0)
    frame = _real_frame(topo, 10 if topo is KINECT_V2 else 20)
    x = _exact_lengths(topo, frame + rng.normal(0.0, 0.02, frame.shape))
    x0 = x + rng.normal(0.0, 0.03, x.shape)
    prog, pl, lam, mu, u, h, A, geo = _state(topo, x, 1)
    J, m = topo.num_joints, prog.n_ineq
    K = np.zeros((J, J, 4, 4))
    _sqp._assemble(K, x, u, lam, mu, np.zeros(m), A, m, False, geo)
    W = _dense(K, J).reshape(J, 4, J, 4)[:, :3, :, :3].reshape(3 * J, 3 * J)

    def grad(xf):
        xx = xf.reshape(J, 3)
        g = (xx - x0).copy()
        d = xx[prog.child] - xx[prog.parent]
        lam_b = lam[prog.child]
        gb = (lam_b / prog.length)[:, None] * d
        np.add.at(g, prog.child, -gb)
        np.add.at(g, prog.parent, gb)
        _, Ar = evaluate(xx[None], prog)
        g -= np.tensordot(mu, Ar[0, prog.n_eq :], axes=1)
        return g.ravel()

    eps = 1e-5
    fd = np.empty((3 * J, 3 * J))
    for k in range(3 * J):
        e = np.zeros(3 * J)
        e[k] = eps
        fd[:, k] = (grad(x.ravel() + e) - grad(x.ravel() - e)) / (2 * eps)
    assert np.abs(W - W.T).max() < 1e-12
    np.testing.assert_allclose(W, fd, atol=1e-7, rtol=0)
    # and the plane row is really in it: without its multiplier W changes
    if prog.plane_idx.size:
        mu2 = mu.copy()
        mu2[-1] = 0.0
        K2 = np.zeros_like(K)
        _sqp._assemble(K2, x, u, lam, mu2, np.zeros(m), A, m, False, geo)
        assert np.abs(_dense(K2, J) - _dense(K, J)).max() > 1e-3


@pytest.mark.parametrize("topo", [KINECT_V2, MSR_ACTION3D], ids=lambda t: t.name)
def test_block_factorisation_solves_the_kkt_system(topo):
    rng = np.random.default_rng(2)
    x = _exact_lengths(topo, _real_frame(topo, 40 if topo is KINECT_V2 else 10))
    prog, pl, lam, mu, u, h, A, geo = _state(topo, x, 3)
    J, m = topo.num_joints, prog.n_ineq
    caug = np.zeros(m)
    caug[[0, m - 1]] = 1.0 / (A[[0, m - 1]] ** 2).sum(axis=(1, 2))  # two rows added
    K = np.zeros((J, J, 4, 4))
    _sqp._assemble(K, x, u, 0.2 * lam, 0.1 * mu, caug, A, m, False, geo)
    dense = _dense(K, J).copy()
    deg = int(np.diff(pl.nb_ptr).max())
    Pinv, T = np.zeros((J, 4, 4)), np.zeros((J, deg, 4, 4))
    fac = (K, Pinv, T, pl.order, pl.nb_ptr, pl.nb_idx)
    shifted = _sqp._factor(*fac, pl.root, 1e-3)
    assert not shifted  # a modest state: the exact matrix is factored
    rhs = rng.normal(size=(J, 4, 2))
    rhs[pl.root, 3] = 0.0  # the root's dummy multiplier
    X = np.zeros_like(rhs)
    R = rhs.copy()
    for q in range(2):
        _sqp._solve1(fac, R, X, q)
    ref = np.linalg.solve(dense, rhs.reshape(4 * J, 2))
    np.testing.assert_allclose(X.reshape(4 * J, 2), ref, atol=1e-9 * np.abs(ref).max())


def test_elimination_plan_is_leaves_first_with_no_fill_outside_the_pattern():
    cs = anatomical_constraints(KINECT_V2)
    prog = _prog.compile_program(cs, np.ones(24))
    pl = _prog.plan(prog)
    rank = {int(j): k for k, j in enumerate(pl.order)}
    assert pl.order[-1] == KINECT_V2.root
    for p, c in KINECT_V2.bones:  # every child before its parent
        assert rank[c] < rank[p]
    pattern = {tuple(p) for p in pl.pairs.tolist()}
    for c in range(25):  # eliminating c only couples blocks already in the pattern
        later = pl.nb_idx[pl.nb_ptr[c] : pl.nb_ptr[c + 1]].tolist()
        for i in later:
            assert rank[i] > rank[c] and (i, c) in pattern
            for j in later:
                assert (i, j) in pattern
    # the pattern is small: tree edges, the rows' couplings, no dense fill
    assert len(pl.pairs) < 4 * 25


def test_project_gives_the_same_poses_with_the_compiled_solver_and_with_slsqp():
    ntu = load_ntu("S001C001P001R001A001.skeleton")
    cs = anatomical_constraints(KINECT_V2)
    ref = reference_bone_lengths(ntu, KINECT_V2)
    x0 = ntu[::4] + np.random.default_rng(5).normal(0, 0.04, ntu[::4].shape)
    x_c, info_c = project(x0, cs, ref, solver="compiled", return_info=True)
    x_n, info_n = project(x0, cs, ref, solver="slsqp", return_info=True)
    for x in (x_c, x_n):
        assert_valid(x, cs, ref)
    assert not info_c.fallback.any()
    assert info_n.fallback[~info_n.unchanged].all() and not info_n.iterations.any()
    f_c, f_n = (((x - x0) ** 2).sum(axis=(1, 2)) for x in (x_c, x_n))
    # Same local minimum on nearly every frame; never more than 1 % farther.
    assert (f_c <= 1.01 * f_n + 1e-12).all()
    same = np.abs(f_c / f_n - 1.0) < 1e-6
    assert same.mean() >= 0.95
    # The compiled solver converges quadratically: few iterations on most frames.
    assert np.median(info_c.iterations[~info_c.unchanged]) <= 8


def test_compiled_solver_handles_degenerate_and_far_frames():
    cs = anatomical_constraints(KINECT_V2)
    ntu = load_ntu("S001C001P001R001A001.skeleton")
    ref = reference_bone_lengths(ntu, KINECT_V2)
    x0 = np.repeat(ntu[:1], 3, axis=0)
    x0[0] = 0.0  # every joint at one point
    x0[1] += np.random.default_rng(1).normal(0, 10.0, (25, 3))  # a 10 m step
    x0[2, 10:] = x0[2, 9]  # half the joints coincident
    x = project(x0, cs, ref)
    assert np.isfinite(x).all()
    res = constraint_residuals(x, cs, ref)
    assert res[:, :24].max() < 1e-9 and res[:, 24:].max() < 1e-3


def test_kernel_stops_a_frame_at_a_singular_step_instead_of_returning_nan():
    # Collinear frames started from their own bone directions (no `_start_dirs`): the
    # angle and plane rows sit at a stationary point, their multipliers overflow. The
    # kernel returned NaN poses reported converged; now such a frame stops at its last
    # finite iterate, unconverged, and a converged one is valid.
    throw = load_msr("a06_s02_e01_skeleton3D.txt")
    cs = anatomical_constraints(MSR_ACTION3D)
    ref = reference_bone_lengths(throw, MSR_ACTION3D)
    x0 = np.zeros_like(throw[:12])
    x0[..., 0] = throw[:12, :, 0]
    prog = _prog.compile_program(cs, ref)
    u = np.zeros_like(x0)
    u[:, prog.child] = _prog.unit(
        x0[:, prog.child] - x0[:, prog.parent], _prog.fallback_dirs(len(prog.child))[None]
    )
    x, conv, _ = _sqp.solve(x0, u, x0[:, prog.root], _prog.plan(prog), 1e-6, 100)
    assert np.isfinite(x).all()
    assert_valid(x[conv], cs, ref)
    np.testing.assert_allclose(constraint_residuals(x, cs, ref)[:, :19], 0.0, atol=1e-9)


def test_prepare_solver_compiles_it_for_every_topology():
    assert anatomy.prepare_solver() is True
    assert len(_sqp._solve_frames.signatures) == 1  # one specialisation serves all
    x0 = load_msr("a06_s02_e01_skeleton3D.txt")[:3] + 0.02
    project(x0, anatomical_constraints(MSR_ACTION3D))
    assert len(_sqp._solve_frames.signatures) == 1


_READ_ONLY_IMPORT = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import skvis_widgets.anatomy as anatomy
    import skvis_widgets.saliency  # its kernel is decorated at import too
    from skvis_widgets import _compiled
    from skvis_widgets.anatomy import _kernel as _sqp
import numpy as np
assert anatomy.__file__.startswith({root!r}), anatomy.__file__
notes = [str(w.message) for w in caught if "cannot cache" in str(w.message)]
assert len(notes) == 1, notes  # said once, not once per function
assert "NUMBA_CACHE_DIR" in notes[0]
assert _compiled.cached() is False
# the kernel's functions still compile and run (uncached): forward kinematics of a chain
x, u = np.zeros((3, 3)), np.zeros((3, 3))
u[1:, 1] = 1.0
_sqp._fk(x, np.array([1.0, 0.0, 0.0]), u, np.array([-1, 0, 1]), np.array([0.0, 0.5, 0.25]),
         np.array([1, 2]), 0)
assert np.allclose(x, [[1, 0, 0], [1, 0.5, 0], [1, 0.75, 0]]), x
print("ok")
"""


def test_import_works_where_numba_cannot_cache(tmp_path):
    # A read-only install with no writable home: numba finds no place for its cache
    # (`cache=True` raised "no locator available" at import). Read-only permissions do not
    # bind root, so the places numba tries are made impossible instead: the packages'
    # __pycache__ are regular files, and the user cache directory lies under one.
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import skvis_widgets

    root = tmp_path / "site"
    pkg = root / "skvis_widgets"
    shutil.copytree(
        Path(skvis_widgets.__file__).parent,
        pkg,
        ignore=shutil.ignore_patterns("__pycache__", "*.npz", "pretrained"),
    )
    for init in pkg.rglob("__init__.py"):  # every package, the kernel's included
        (init.parent / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    for p in [*pkg.rglob("*"), pkg, root]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(
        HOME=str(blocker),
        XDG_CACHE_HOME=str(blocker / "cache"),
        PYTHONPATH=str(root),
        PYTHONDONTWRITEBYTECODE="1",
    )
    try:
        run = subprocess.run(
            [sys.executable, "-c", _READ_ONLY_IMPORT.format(root=str(root))],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


@pytest.mark.parametrize("topo", [KINECT_V2, MSR_ACTION3D], ids=lambda t: t.name)
def test_kernel_rows_equal_the_numpy_rows(topo):
    # The angle and plane rows are written once in numpy (`rows.evaluate`); the kernel's
    # jitted copy must give the same values and gradients, on real and random poses.
    rng = np.random.default_rng(4)
    frame = _real_frame(topo, 7)
    for x in (frame, frame + rng.normal(0.0, 0.05, frame.shape), rng.normal(0, 0.3, frame.shape)):
        prog, pl, _, _, _, h, A, _ = _state(topo, x, 0)
        c, An = evaluate(x[None], prog)
        np.testing.assert_allclose(h, c[0, prog.n_eq :], rtol=0, atol=1e-12)
        np.testing.assert_allclose(A, An[0, prog.n_eq :], rtol=0, atol=1e-12)


def test_auto_does_not_wait_for_a_compile_in_another_thread(monkeypatch):
    # A compile held in a background thread (an Event stands for the seconds numba
    # takes): project(solver="auto") must answer at once, with SLSQP, a valid pose.
    import threading

    from skvis_widgets.anatomy import solver

    started, release = threading.Event(), threading.Event()

    def held_compile():
        started.set()
        assert release.wait(timeout=600)

    state = BackgroundCompile(held_compile)
    monkeypatch.setattr(solver, "_STATE", state)
    try:
        assert anatomy.prepare_solver(background=True) is False
        assert started.wait(timeout=600)
        assert not anatomy.solver_ready() and solver.compile_in_progress()
        ntu = load_ntu("S001C001P001R001A001.skeleton")[:6]
        cs = anatomical_constraints(KINECT_V2)
        ref = reference_bone_lengths(ntu, KINECT_V2)
        x0 = ntu + np.random.default_rng(2).normal(0, 0.04, ntu.shape)
        x, info = project(x0, cs, ref, return_info=True)  # returns while the compile waits
        assert not release.is_set() and state.thread.is_alive()
        assert_valid(x, cs, ref)
        assert info.fallback[~info.unchanged].all() and not info.iterations.any()
        np.testing.assert_allclose(x, project(x0, cs, ref, solver="slsqp"))
    finally:
        release.set()
    state.thread.join(timeout=600)
    assert anatomy.solver_ready() and not solver.compile_in_progress()
    assert anatomy.prepare_solver(background=True) is True  # nothing more to do


def test_a_failed_background_compile_is_raised_by_the_next_blocking_call(monkeypatch):
    from skvis_widgets.anatomy import solver

    def broken():
        raise RuntimeError("no compiler here")

    state = BackgroundCompile(broken)
    monkeypatch.setattr(solver, "_STATE", state)
    anatomy.prepare_solver(background=True)
    state.thread.join(timeout=600)
    assert not anatomy.solver_ready() and isinstance(state.error, RuntimeError)
    with pytest.raises(RuntimeError, match="no compiler here"):
        anatomy.prepare_solver()


def test_unknown_solver_is_refused():
    cs = anatomical_constraints(MSR_ACTION3D)
    x0 = load_msr("a06_s02_e01_skeleton3D.txt")[:2]
    with pytest.raises(SkvisError, match="solver = 'newton'; expected one of auto, compiled"):
        project(x0, cs, solver="newton")


def test_auto_hands_the_frames_left_to_the_compiled_solver_once_it_is_ready(monkeypatch):
    import threading

    from skvis_widgets.anatomy import projection, solver

    release = threading.Event()

    def held_compile():
        assert release.wait(timeout=600)
        solver._warm_up()  # the real kernel (from numba's cache by now)

    state = BackgroundCompile(held_compile)
    monkeypatch.setattr(solver, "_STATE", state)
    real = projection.slsqp_frame
    calls = []

    def first_frame_then_ready(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        release.set()  # the compile ends while SLSQP solves the first frame
        assert state.ready.wait(timeout=600)
        return out

    monkeypatch.setattr(projection, "slsqp_frame", first_frame_then_ready)
    anatomy.prepare_solver(background=True)
    ntu = load_ntu("S001C001P001R001A001.skeleton")[:8]
    cs = anatomical_constraints(KINECT_V2)
    ref = reference_bone_lengths(ntu, KINECT_V2)
    x0 = ntu + np.random.default_rng(6).normal(0, 0.04, ntu.shape)
    x, info = project(x0, cs, ref, return_info=True)
    assert_valid(x, cs, ref)
    moved = np.nonzero(~info.unchanged)[0]
    assert len(calls) == 1 and info.fallback[moved[0]] and not info.fallback[moved[1:]].any()
    assert (info.iterations[moved[1:]] > 0).all()


def test_background_compiles_run_in_the_order_they_were_started():
    """The explorer starts the sensitivity kernel's compile before the solver's: the second
    waits, queued (and says it is in progress, so that no caller compiles it meanwhile),
    until the first is done; one background thread runs both and then ends."""
    import threading

    order, release = [], threading.Event()

    def first():
        order.append("first")
        assert release.wait(600)

    a = BackgroundCompile(first)
    b = BackgroundCompile(lambda: order.append("second"))
    a.start()
    b.start()
    b.start()  # queued once
    assert a.thread is b.thread and a.in_progress() and b.in_progress()
    assert not b.ready.is_set() and order in ([], ["first"])
    release.set()
    a.thread.join(600)
    assert order == ["first", "second"] and a.ready.is_set() and b.ready.is_set()
    assert not a.in_progress() and not b.in_progress() and not a.thread.is_alive()
    c = BackgroundCompile(lambda: order.append("third"))
    c.start()  # a new worker once the last one ended
    c.thread.join(600)
    assert order[-1] == "third" and c.ready.is_set() and c.thread is not a.thread
