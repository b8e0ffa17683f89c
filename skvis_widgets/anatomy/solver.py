"""The compiled solver of eq 14, its compilation and whether it is ready.

numba compiles the kernel (`_kernel`) on its first call in a process, or loads it from
its disk cache. A compile from nothing takes seconds, so it can run in a background
thread (`prepare_solver(background=True)`, as the explorer does when it opens) while
`project(..., solver="auto")` uses SLSQP for the calls that come before it is done
(`compile_in_progress`): no caller waits on another thread's compile.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .._compiled import BackgroundCompile, available
from . import _kernel
from .program import Plan, Program, fk, start_dirs

__all__ = ["prepare_solver", "solver_ready", "compile_in_progress", "solve_compiled"]


def _warm_up() -> None:
    """Compile (or load) the kernel: one tiny projection (a 20-joint sequence; the one
    specialisation serves every topology)."""
    from ..skeleton import KINECT_V1
    from .constraints import anatomical_constraints, reference_bone_lengths
    from .program import program

    cs = anatomical_constraints(KINECT_V1)
    x0 = np.random.default_rng(0).normal(0.0, 0.2, (1, KINECT_V1.num_joints, 3))
    prog, pl = program(cs, reference_bone_lengths(x0, KINECT_V1))
    _run(x0, prog, pl, 1e-6, 2)


_STATE = BackgroundCompile(_warm_up)


def prepare_solver(background: bool = False) -> bool:
    """Compile `project`'s solver now, or load it from numba's disk cache.

    The first `project` call in a new environment otherwise does it (a few seconds,
    once; later processes load the cached code in a fraction of a second). Safe to call
    from any thread, any number of times.

    Parameters
    ----------
    background : bool
        Compile in a daemon thread and return at once. Until it is done,
        ``project(..., solver="auto")`` uses SLSQP instead of waiting (`solver_ready`
        says when it is done). The explorer does this when it opens, so that its first
        activation maximization starts at once.

    Returns
    -------
    bool
        Whether the compiled solver is ready (always True without ``background``, where
        numba is available; False where numba is missing: `project` then uses SLSQP).
    """
    if not available():
        return False
    if background:
        _STATE.start()
    else:
        _STATE.ensure()
    return _STATE.ready.is_set()


def solver_ready() -> bool:
    """Whether the compiled solver is compiled (or loaded) in this process."""
    return _STATE.ready.is_set()


def compile_in_progress() -> bool:
    """Whether another call is compiling the solver right now."""
    return _STATE.in_progress()


def _run(
    x0: NDArray, prog: Program, pl: Plan, tol: float, max_iter: int
) -> tuple[NDArray, NDArray, NDArray]:
    T, J, _ = x0.shape
    u = np.zeros((T, J, 3))
    u[:, prog.child] = start_dirs(x0, prog)
    placed = fk(x0[:, prog.root], u[:, prog.child], prog)
    r = x0[:, prog.root] + (x0 - placed).mean(axis=1)
    x, conv, it = _kernel.solve(x0, u, r, pl, tol, max_iter)
    conv &= np.isfinite(x).all(axis=(1, 2))  # the kernel stops before NaN; be sure
    return x, conv, it


def solve_compiled(
    x0: NDArray, prog: Program, pl: Plan, tol: float, max_iter: int
) -> tuple[NDArray, NDArray, NDArray]:
    """The compiled SQP on frames x0 (T, J, 3) from each frame's `start_dirs` and its
    best-placed root (compiling it first if needed). Returns the poses (T, J, 3),
    converged (T,) and iterations (T,)."""
    _STATE.ensure()
    return _run(x0, prog, pl, tol, max_iter)
