"""Eq 14: the valid pose nearest to each frame (`project`), by the compiled solver or SLSQP.

Each frame ``x0`` (J, 3) is replaced by the pose ``x`` minimising ``0.5 |x - x0|^2``
among the poses whose bones have their reference lengths and whose angle and plane rows
(`rows`) hold. Frames are independent. The compiled Newton SQP (`solver`, `_kernel`)
solves nearly every frame in a few iterations; a frame it does not finish is solved
again with ten times the iterations, and what that leaves goes to SciPy's SLSQP with the
rows' analytic Jacobians, started from the best iterate so far. Every frame keeps the
best pose any of them found (`_better`): one that gave up on a singular step keeps its
last finite iterate, so no NaN gets through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._compiled import available
from ..errors import SkvisError
from .constraints import (
    ConstraintSet,
    check_constraints,
    check_count,
    check_flag,
    check_positive,
    check_reference,
    checked_sequence,
)
from .program import Plan, Program, exact_lengths, program, unstick
from .rows import evaluate, violation
from .solver import compile_in_progress, solve_compiled, solver_ready

__all__ = ["ProjectionInfo", "project", "project_slsqp", "slsqp_frame", "Solver"]

Solver = Literal["auto", "compiled", "slsqp"]
_SOLVERS = ("auto", "compiled", "slsqp")

# The most iterations a solver may be asked for (a bound on the work of one call).
_MAX_ITER = 1_000_000


@dataclass(frozen=True)
class ProjectionInfo:
    """How `project` got each frame's pose.

    Attributes
    ----------
    unchanged : ndarray of bool, shape (T,)
        The frame was already valid (to ``tol``) and is returned as it is.
    iterations : ndarray of int, shape (T,)
        Newton iterations of the compiled solver (0 for unchanged frames and for frames
        solved by SLSQP alone).
    fallback : ndarray of bool, shape (T,)
        SLSQP finished the frame: ``solver="slsqp"``, ``"auto"`` while the compiled
        solver was being compiled in another thread, or the compiled solver did not
        converge (then SLSQP starts from its best iterate and the better pose is kept).
    max_violation : ndarray of float, shape (T,)
        Largest remaining violation of the returned pose: bone lengths in metres, the
        inequalities in their own units (about radians).
    """

    unchanged: NDArray[np.bool_]
    iterations: NDArray[np.intp]
    fallback: NDArray[np.bool_]
    max_violation: NDArray[np.float64]


@overload
def project(
    sequence: ArrayLike,
    constraints: ConstraintSet,
    reference_lengths: ArrayLike | None = ...,
    *,
    tol: float = ...,
    max_iter: int = ...,
    solver: Solver = ...,
    return_info: Literal[False] = ...,
) -> NDArray[np.floating]: ...


@overload
def project(
    sequence: ArrayLike,
    constraints: ConstraintSet,
    reference_lengths: ArrayLike | None = ...,
    *,
    tol: float = ...,
    max_iter: int = ...,
    solver: Solver = ...,
    return_info: Literal[True],
) -> tuple[NDArray[np.floating], ProjectionInfo]: ...


def project(
    sequence: ArrayLike,
    constraints: ConstraintSet,
    reference_lengths: ArrayLike | None = None,
    *,
    tol: float = 1e-6,
    max_iter: int = 100,
    solver: Solver = "auto",
    return_info: bool = False,
) -> NDArray[np.floating] | tuple[NDArray[np.floating], ProjectionInfo]:
    """Eq 14: the valid pose nearest to each frame, for a whole sequence at once.

    Each frame ``x0`` (J, 3) is replaced by the pose ``x`` that minimises
    ``sum_j |x_j - x0_j|^2`` among the poses whose bones have their reference lengths and
    whose angles lie in their ranges. Frames are independent. Each is solved by a
    compiled Newton SQP (`skvis_widgets.anatomy._kernel`: joint space, exact Hessian, a
    block factorisation along the skeleton's tree); a frame it does not finish in
    ``max_iter`` iterations is solved again with ten times as many, then by SLSQP. A
    300-frame, 25-joint sequence takes about 20 ms (``benchmarks/bench_projection.py``).
    The first call in a new environment compiles the solver (seconds; numba caches it on
    disk); `prepare_solver` does that ahead, in the background if asked.

    Parameters
    ----------
    sequence : array_like, shape (T, J, 3)
        Joint positions in metres, J the constraints' topology's joint count.
    constraints : ConstraintSet
        From `anatomical_constraints`.
    reference_lengths : array_like, shape (B,), optional
        Bone lengths in metres, in the order of ``topology.bones``; default the mean
        length of each bone over ``sequence`` (`reference_bone_lengths`).
    tol : float
        A frame is done when its last Newton step moved no joint more than ``tol``
        metres and its angle constraints hold to ``tol`` (about radians). Bone lengths
        are exact to rounding whatever ``tol``. Frames already valid to ``tol`` are
        returned unchanged.
    max_iter : int
        Newton iterations before a frame is handed to the next solver (rare; see
        ``return_info``).
    solver : {"auto", "compiled", "slsqp"}
        ``"compiled"``: the compiled solver (compiling it first if needed, or waiting for
        the compile under way). ``"slsqp"``: SciPy's SLSQP frame by frame (about 100
        times slower; the same optimum to 1 %). ``"auto"``: the compiled solver, except
        while another thread compiles it (`prepare_solver` with ``background=True``):
        then SLSQP, so that the call does not wait, and the compiled solver for the
        frames left once that compile is done.
    return_info : bool
        Also return a `ProjectionInfo`.

    Returns
    -------
    ndarray, shape (T, J, 3)
        The projected sequence, in the input's floating dtype (float64 for integers).
    ProjectionInfo
        Only with ``return_info=True``.

    Raises
    ------
    SkvisError
        For a sequence that is not (T, J, 3) with T >= 1 and J the topology's joint
        count, non-finite coordinates, bad reference lengths, ``tol`` not a positive
        finite number, ``max_iter`` not an int from 1 to 1,000,000, an unknown
        ``solver``, or ``return_info`` not a bool. Also, naming the frames, where no solver found a pose that holds
        every constraint to ``max(10 tol, 1e-5)`` (none is known: degenerate frames,
        collinear or with joints on top of each other, are started from turned arms);
        never a pose with NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from skvis_widgets.skeleton import KINECT_V2
    >>> cs = anatomical_constraints(KINECT_V2)
    >>> x0 = np.random.default_rng(0).normal(0.0, 0.2, (4, 25, 3))  # no skeleton at all
    >>> ref = reference_bone_lengths(x0, KINECT_V2)
    >>> x = project(x0, cs, ref)
    >>> res = constraint_residuals(x, cs, ref)  # metres for bones, degrees for angles
    >>> bool(res[:, :24].max() < 1e-12), bool(res[:, 24:].max() < 1e-3)
    (True, True)
    """
    constraints = check_constraints(constraints)
    tol = check_positive(tol, "tol", "a positive finite number of metres")
    max_iter = check_count(max_iter, "max_iter", 1, _MAX_ITER)
    return_info = check_flag(return_info, "return_info")
    arr = np.asarray(sequence) if not isinstance(sequence, np.ndarray) else sequence
    x0 = checked_sequence(arr, constraints.topology)
    ref = check_reference(x0, constraints, reference_lengths)
    if solver not in _SOLVERS:
        raise SkvisError(f"solver = {solver!r}; expected one of {', '.join(_SOLVERS)}")
    prog, pl = program(constraints, ref)
    T = x0.shape[0]

    out = x0.copy()
    unchanged = violation(x0, prog) <= tol
    iterations = np.zeros(T, dtype=np.intp)
    fallback = np.zeros(T, dtype=bool)
    todo = np.nonzero(~unchanged)[0]
    if todo.size:
        with np.errstate(all="ignore"):  # overflow on a singular step is caught after it
            x, it, fb = _solve(x0[todo], prog, pl, tol, max_iter, solver)
        out[todo], iterations[todo], fallback[todo] = x, it, fb
    viol = violation(out, prog)
    limit = max(10.0 * tol, 1e-5)
    bad = ~(viol <= limit)  # NaN included
    if bad.any():  # the last resort: no frame of the tests and probes comes here
        frames = np.nonzero(bad)[0]
        shown = ", ".join(f"frame {t} (violation {viol[t]:.3g})" for t in frames[:10])
        raise SkvisError(
            f"project: no solver found a valid pose for {frames.size} of {T} frames: "
            f"{shown}{', ...' if frames.size > 10 else ''}; expected every constraint "
            f"to hold to {limit:.3g}"
        )
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    result = out.astype(dtype, copy=False)
    if return_info:
        return result, ProjectionInfo(unchanged, iterations, fallback, viol)
    return result


def _solve(
    xt: NDArray, prog: Program, pl: Plan, tol: float, max_iter: int, solver: str
) -> tuple[NDArray, NDArray, NDArray]:
    """Frames xt (n, J, 3) projected: poses, compiled iterations, solved by SLSQP."""
    n = len(xt)
    x, it = xt.copy(), np.zeros(n, dtype=np.intp)
    fallback = np.zeros(n, dtype=bool)
    compiled = solver == "compiled" or (
        solver == "auto" and available() and not compile_in_progress()
    )
    if not compiled:
        # SLSQP from each frame (unstuck), until the compile in another thread is done
        # ("auto"): then the compiled solver takes the frames that are left.
        for k in range(n):
            if solver == "auto" and solver_ready():
                left = slice(k, n)
                x[left], it[left], fallback[left] = _solve(
                    xt[left], prog, pl, tol, max_iter, solver
                )
                break
            start = unstick(xt[k : k + 1], prog)[0]
            x[k] = exact_lengths(slsqp_frame(xt[k], prog, start, 1e-10, 500)[0], prog)
            fallback[k] = True
        return x, it, fallback
    x, conv, it = solve_compiled(xt, prog, pl, tol, max_iter)
    if not conv.all():
        # A frame with every joint near one line, nearly symmetric about it, can take
        # hundreds of iterations along a flat valley.
        rest = np.nonzero(~conv)[0]
        long = min(10 * max_iter, _MAX_ITER)
        xr, conv[rest], it_r = solve_compiled(xt[rest], prog, pl, tol, long)
        x[rest] = _better(xt[rest], x[rest], xr, prog)
        it[rest] += it_r
    for f in np.nonzero(~conv)[0]:  # SLSQP from the best iterate; the better pose is kept
        fallback[f] = True
        start = x[f] if np.isfinite(x[f]).all() else unstick(xt[f : f + 1], prog)[0]
        pose = exact_lengths(slsqp_frame(xt[f], prog, start, 1e-10, 500)[0], prog)
        x[f] = _better(xt[f][None], x[f][None], pose[None], prog)[0]
    return x, it, fallback


def _better(x0: NDArray, a: NDArray, b: NDArray, prog: Program) -> NDArray:
    """Per frame of x0 (T, J, 3), of two candidate poses a, b (T, J, 3) the valid one
    (to 1e-6) nearer to x0; of two invalid ones the less invalid; a pose that is not
    finite never wins over one that is. Both must have exact bone lengths."""

    def score(c: NDArray) -> tuple[NDArray, NDArray]:
        ok = np.isfinite(c).all(axis=(1, 2))
        v = np.where(ok, violation(np.where(ok[:, None, None], c, 0.0), prog), np.inf)
        f = np.where(ok, ((np.where(ok[:, None, None], c, 0.0) - x0) ** 2).sum(axis=(1, 2)), np.inf)
        return v, f

    (va, fa), (vb, fb) = score(a), score(b)
    valid_a, valid_b = va <= 1e-6, vb <= 1e-6
    take_b = np.where(valid_a != valid_b, valid_b, np.where(valid_a, fb < fa, vb < va))
    return np.where(take_b[:, None, None], b, a)


def slsqp_frame(
    x0: NDArray, prog: Program, start: NDArray, ftol: float, maxiter: int
) -> tuple[NDArray, bool]:
    """SciPy SLSQP on one frame (J, 3) with analytic Jacobians; (pose, success)."""
    from scipy.optimize import minimize

    J = x0.shape[0]
    flat0 = x0.reshape(-1)
    cache: dict[str, NDArray] = {}

    def rows(z: NDArray) -> tuple[NDArray, NDArray]:
        if "z" not in cache or not np.array_equal(cache["z"], z):
            c, A = evaluate(z.reshape(1, J, 3), prog)
            cache.update(z=z.copy(), c=c[0], A=A[0].reshape(prog.m, 3 * J))
        return cache["c"], cache["A"]

    def objective(z: NDArray) -> tuple[float, NDArray]:
        r = z - flat0
        return float(r @ r), 2.0 * r

    ne = prog.n_eq
    res = minimize(
        objective,
        start.reshape(-1),
        jac=True,
        method="SLSQP",
        constraints=[
            {"type": "eq", "fun": lambda z: rows(z)[0][:ne], "jac": lambda z: rows(z)[1][:ne]},
            {"type": "ineq", "fun": lambda z: rows(z)[0][ne:], "jac": lambda z: rows(z)[1][ne:]},
        ],
        options={"ftol": ftol, "maxiter": maxiter},
    )
    return res.x.reshape(J, 3), bool(res.success)


def project_slsqp(
    sequence: ArrayLike,
    constraints: ConstraintSet,
    reference_lengths: ArrayLike | None = None,
    *,
    ftol: float = 1e-12,
    maxiter: int = 500,
) -> NDArray[np.float64]:
    """Eq 14 frame by frame with SciPy's SLSQP: the slow reference for `project`.

    Same problem and constraint functions (with analytic Jacobians) as `project`, each
    frame solved on its own, starting from the frame itself.

    Parameters
    ----------
    sequence : array_like, shape (T, J, 3)
        Joint positions in metres.
    constraints : ConstraintSet
    reference_lengths : array_like, shape (B,), optional
        Metres; default `reference_bone_lengths` of ``sequence``.
    ftol, maxiter : float, int
        Passed to SLSQP.

    Returns
    -------
    ndarray, shape (T, J, 3), float64
        The projected poses in metres.
    """
    constraints = check_constraints(constraints)
    ftol = check_positive(ftol, "ftol", "a positive finite number")
    maxiter = check_count(maxiter, "maxiter", 1, _MAX_ITER)
    x0 = checked_sequence(sequence, constraints.topology)
    prog = program(constraints, check_reference(x0, constraints, reference_lengths))[0]
    start = unstick(x0, prog)
    return np.stack([slsqp_frame(x0[t], prog, start[t], ftol, maxiter)[0] for t in range(len(x0))])
