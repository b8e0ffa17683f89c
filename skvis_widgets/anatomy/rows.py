"""The constraint rows of eqs 9-13 on joint positions, in numpy: the one form of them.

Every arm of an angle and of the pelvis plane is a bone (`anatomical_constraints` drops
the constraints whose arms are not), so on poses with exact bone lengths these rows are
the paper's unit-vector forms:

- bone (eqs 9-10)          ``c = |x_c - x_p| - L = 0``
- angle (eq 11)            ``h = s (cos(bound) - (w_a . w_c) / (L_a L_c)) >= 0``, with
                           ``w_a = x_a - x_v``, ``w_c = x_c - x_v`` the arms and ``s = +1``
                           for a lower bound, ``-1`` for an upper one;
- plane (eqs 12-13)        ``h = ((x_rh - x_sb) x (x_lh - x_sb)) . (x_sm - x_sb)
                           / (L_rh L_lh L_sm) >= 0``.

`evaluate` gives the rows and their Jacobians (the projection's SLSQP path, the checks of
the solvers), `angles_deg` the same geometry in degrees (`constraint_residuals`,
`ConstraintSet.widened_to`). The compiled solver has its own jitted copy of the angle and
plane rows (`_kernel._rows`, numba cannot call numpy's fancy indexing); the tests check
it equal to `evaluate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # the program imports this module
    from .program import Program

__all__ = ["angle_arms", "pelvis_arms", "angles_deg", "evaluate", "violation"]


def angle_arms(x: NDArray, idx: NDArray) -> tuple[NDArray, NDArray]:
    """The two arms ``(x_a - x_v, x_c - x_v)``, each (T, R, 3), of the angles (eq 11)
    with joints ``idx`` (R, 3) = (arm, vertex, arm) in poses x (T, J, 3)."""
    a, v, c = idx[:, 0], idx[:, 1], idx[:, 2]
    return x[:, a] - x[:, v], x[:, c] - x[:, v]


def pelvis_arms(x: NDArray, idx: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """The vectors from the spine base to the right hip, the left hip and the spine mid
    (eqs 12-13), each (T, R, 3), for ``idx`` (R, 4) = (sb, rh, lh, sm)."""
    sb = x[:, idx[:, 0]]
    return x[:, idx[:, 1]] - sb, x[:, idx[:, 2]] - sb, x[:, idx[:, 3]] - sb


def _vector_angle(u: NDArray, w: NDArray) -> tuple[NDArray, NDArray]:
    """Angle between ``u`` and ``w`` (..., 3) in degrees, and whether it is defined."""
    nu = np.linalg.norm(u, axis=-1)
    nw = np.linalg.norm(w, axis=-1)
    ok = (nu > 1e-12) & (nw > 1e-12)
    cos = np.einsum("...d,...d->...", u, w) / np.where(ok, nu * nw, 1.0)
    # atan2 keeps precision near 0 and 180 degrees where arccos does not.
    sin = np.linalg.norm(np.cross(u, w), axis=-1) / np.where(ok, nu * nw, 1.0)
    return np.degrees(np.arctan2(sin, cos)), ok


def angles_deg(x: NDArray, idx: NDArray, kind: str) -> NDArray:
    """The angles of eq 11 (``kind="angle"``, idx (R, 3)) or eqs 12-13 (``"plane"``,
    idx (R, 4): between ``v_rh x v_lh`` and ``v_sm``) in degrees, (T, R), for poses
    x (T, J, 3). Undefined angles (a zero-length arm; collinear hips) are NaN."""
    if kind == "angle":
        u, w = angle_arms(x, idx)
    else:
        pa, pb, w = pelvis_arms(x, idx)
        u = np.cross(pa, pb)
    ang, ok = _vector_angle(u, w)
    return np.where(ok, ang, np.nan)


def evaluate(x: NDArray, prog: Program, jacobian: bool = True) -> tuple[NDArray, NDArray]:
    """Constraint rows on joint positions x (T, J, 3): values ``c`` (T, m), bones first,
    and if asked their gradients ``A`` (T, m, J, 3). Equalities are ``c = 0``,
    inequalities ``c >= 0``."""
    T, J, _ = x.shape
    nb, na = prog.n_eq, len(prog.ang_idx)
    d = x[:, prog.child] - x[:, prog.parent]  # (T, B, 3)
    dn = np.sqrt(np.einsum("tbd,tbd->tb", d, d))
    c_bone = dn - prog.length
    u, w = angle_arms(x, prog.ang_idx)
    s_n = prog.ang_sign / prog.ang_norm
    c_ang = prog.ang_sign * prog.ang_cos - s_n * np.einsum("trd,trd->tr", u, w)
    pa, pb, pc = pelvis_arms(x, prog.plane_idx)
    axb = np.cross(pa, pb)
    c_plane = np.einsum("trd,trd->tr", axb, pc) / prog.plane_norm
    c = np.concatenate([c_bone, c_ang, c_plane], axis=1)
    if not jacobian:
        return c, np.empty(0)
    A = np.zeros((T, prog.m, J, 3))
    rb = np.arange(nb)
    gb = d / np.maximum(dn, 1e-300)[..., None]
    A[:, rb, prog.child] = gb
    A[:, rb, prog.parent] = -gb
    a, v, cc = prog.ang_idx.T
    ra = nb + np.arange(na)
    sn = s_n[:, None]
    A[:, ra, a] = -sn * w
    A[:, ra, cc] = -sn * u
    A[:, ra, v] = sn * (u + w)
    sb, rh, lh, sm = prog.plane_idx.T
    rp = nb + na + np.arange(len(prog.plane_idx))
    pn = prog.plane_norm[:, None]
    g_rh = np.cross(pb, pc) / pn
    g_lh = np.cross(pc, pa) / pn
    g_sm = axb / pn
    A[:, rp, rh] = g_rh
    A[:, rp, lh] = g_lh
    A[:, rp, sm] = g_sm
    A[:, rp, sb] = -(g_rh + g_lh + g_sm)
    return c, A


def violation(x: NDArray, prog: Program) -> NDArray:
    """Per frame (T,), the largest violation: bones in metres, the rest in their row
    units (about radians)."""
    c, _ = evaluate(x, prog, jacobian=False)
    ineq = np.maximum(-c[:, prog.n_eq :], 0.0)
    return np.concatenate([np.abs(c[:, : prog.n_eq]), ineq], axis=1).max(axis=1, initial=0.0)
