"""The compiled per-frame solver of eq 14 (`project`): a Newton SQP in joint space, in numba.

Each frame is solved on its own, in compiled code (numba), which removes the per-call
overhead that bounds a solver written as batched numpy operations.

The problem, for one frame ``x0`` (J, 3)::

    minimise 0.5 |x - x0|^2   over joint positions x (J, 3)
    subject to  c_b(x) = (|x_c - x_p|^2 - L_b^2) / (2 L_b) = 0     for every bone b = (p, c)
                h_i(x) >= 0                                       angle and plane rows

with the rows of `rows.evaluate` (`_rows` below is their jitted copy). Iterates keep every bone at its reference length
exactly: a step moves the root and turns the bones (``u_b <- unit(x_c - x_p + dx_c - dx_p)``,
then forward kinematics), so ``c_b = 0`` at every iterate.

A step solves the SQP subproblem with the exact Hessian of the Lagrangian
``W = I - sum_b lambda_b Hess c_b - sum_i mu_i Hess h_i``. In joint space W is block
sparse: 3 x 3 blocks on the bones' edges and, for an angle (a, v, c), between its two arms;
for the plane row between the three joints around the spine base. The equality part of
the KKT matrix ``[[W, A_b'], [A_b, 0]]`` is factored by block elimination with one 4 x 4
block per joint (its displacement and the multiplier of the bone ending there), leaves
first, along a pattern worked out once per constraint set (`program.plan`): no fill beyond that
pattern, so a factorisation costs O(J) small blocks, not O(J^3). The few inequality rows
go through their Schur complement and a small primal active-set loop, as in the batched
solver. A pivot whose tangent (2 x 2) part is not safely positive definite is shifted
until it is (the step is then a descent step, not Newton's); rows expected in the working
set are added as ``a a' / |a|^2`` to W first, which makes the Hessian definite across a
bound without changing the step (their multipliers are corrected after).

Globalisation: backtracking on the l1 merit function ``f + rho * sum max(-h, 0)``, as in
the batched solver. A frame is done when its last full Newton step moved no joint more
than ``tol`` (or shrank 20-fold below 1e-4 m, quadratic convergence) and its rows hold to
``tol``. Frames not done after ``max_iter`` are reported unconverged; so is a frame whose
step is not finite (it stops at its last, finite, iterate). `project` hands them to SLSQP.

Cold start: numba compiles every jitted function for each distinct set of argument
types it is called with, and a constant argument (``0``, ``True``) is typed as a literal,
i.e. a separate specialization of the callee. The kernel therefore passes run-time values
(``zero``, ``yes``, ``no`` below) where it would pass constants, and its internal helpers
have no CPython wrapper (`jit_inner`): each costs a compile and an optimized module
of its own. The helpers the tests call from Python keep theirs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .._compiled import jit, jit_inner

# ---------------------------------------------------------------------------------------
# The kernel. Plain loops over small arrays, written for numba's nopython mode.


@jit
def _fk(x, r, u, pl_parent, pl_length, fk, root):
    """Joint positions from the root r (3,) and unit bone directions u (J, 3) (row j:
    the bone ending at joint j)."""
    x[root, 0] = r[0]
    x[root, 1] = r[1]
    x[root, 2] = r[2]
    for k in range(fk.shape[0]):
        j = fk[k]
        p = pl_parent[j]
        L = pl_length[j]
        for d in range(3):
            x[j, d] = x[p, d] + L * u[j, d]


@jit
def _rows(x, ang_idx, ang_sn, ang_sc, plane_idx, plane_inv, h, A, grad):
    """Inequality values h (m,) and, with ``grad``, their gradients A (m, J, 3) (zero
    off the rows' joints)."""
    na = ang_idx.shape[0]
    for i in range(na):
        a, v, c = ang_idx[i, 0], ang_idx[i, 1], ang_idx[i, 2]
        sn = ang_sn[i]
        uw = 0.0
        for d in range(3):
            ud = x[a, d] - x[v, d]
            wd = x[c, d] - x[v, d]
            uw += ud * wd
            if grad:
                A[i, a, d] = -sn * wd
                A[i, c, d] = -sn * ud
                A[i, v, d] = sn * (ud + wd)
        h[i] = ang_sc[i] - sn * uw
    for k in range(plane_idx.shape[0]):
        i = na + k
        sb, rh, lh, sm = plane_idx[k, 0], plane_idx[k, 1], plane_idx[k, 2], plane_idx[k, 3]
        s = plane_inv[k]
        pa0, pa1, pa2 = x[rh, 0] - x[sb, 0], x[rh, 1] - x[sb, 1], x[rh, 2] - x[sb, 2]
        pb0, pb1, pb2 = x[lh, 0] - x[sb, 0], x[lh, 1] - x[sb, 1], x[lh, 2] - x[sb, 2]
        pc0, pc1, pc2 = x[sm, 0] - x[sb, 0], x[sm, 1] - x[sb, 1], x[sm, 2] - x[sb, 2]
        # gradients: d/dpa = pb x pc, d/dpb = pc x pa, d/dpc = pa x pb
        gc = (pa1 * pb2 - pa2 * pb1, pa2 * pb0 - pa0 * pb2, pa0 * pb1 - pa1 * pb0)
        h[i] = s * (gc[0] * pc0 + gc[1] * pc1 + gc[2] * pc2)
        if grad:
            ga = (pb1 * pc2 - pb2 * pc1, pb2 * pc0 - pb0 * pc2, pb0 * pc1 - pb1 * pc0)
            gb = (pc1 * pa2 - pc2 * pa1, pc2 * pa0 - pc0 * pa2, pc0 * pa1 - pc1 * pa0)
            for d in range(3):
                A[i, rh, d] = s * ga[d]
                A[i, lh, d] = s * gb[d]
                A[i, sm, d] = s * gc[d]
                A[i, sb, d] = -s * (ga[d] + gb[d] + gc[d])


@jit_inner
def _add_iso(K, i, j, w):
    """K[i, j] += w I3 and K[j, i] += w I3 (once if i == j)."""
    for d in range(3):
        K[i, j, d, d] += w
        if i != j:
            K[j, i, d, d] += w


@jit_inner
def _skew_add(K, i, j, w, p0, p1, p2):
    """K[i, j] += w [p]x and K[j, i] += (w [p]x)' = -w [p]x, with
    [p]x = [[0, -p2, p1], [p2, 0, -p0], [-p1, p0, 0]]."""
    for a, b, sign in ((i, j, 1.0), (j, i, -1.0)):
        v = sign * w
        K[a, b, 0, 1] -= v * p2
        K[a, b, 0, 2] += v * p1
        K[a, b, 1, 0] += v * p2
        K[a, b, 1, 2] -= v * p0
        K[a, b, 2, 0] -= v * p1
        K[a, b, 2, 1] += v * p0


@jit
def _assemble(K, x, u, lam, mu, caug, A, m, convex, geo):
    """The KKT blocks K (J, J, 4, 4) of the equality part, on the pattern. With
    ``convex`` the Hessian keeps only its positive semidefinite parts (the bones whose
    curvature term is positive, the added working-set rows): a Gauss-Newton Hessian.
    ``geo``: the plan's arrays (see `_solve_frames`)."""
    pairs, root, pl_parent, pl_length, ang_idx, ang_sn, plane_idx, plane_inv, row_j = geo
    for q in range(pairs.shape[0]):
        i, j = pairs[q, 0], pairs[q, 1]
        for r in range(4):
            for s in range(4):
                K[i, j, r, s] = 0.0
    J = x.shape[0]
    for j in range(J):
        for d in range(3):
            K[j, j, d, d] = 1.0
    K[root, root, 3, 3] = 1.0  # the root has no bone: a dummy multiplier
    for c in range(J):
        p = pl_parent[c]
        if p < 0:
            continue
        w = -lam[c] / pl_length[c]
        if convex and w < 0.0:
            w = 0.0
        _add_iso(K, c, c, w)
        _add_iso(K, p, p, w)
        _add_iso(K, c, p, -w)
        for d in range(3):
            K[c, c, 3, d] = u[c, d]
            K[c, c, d, 3] = u[c, d]
            K[c, p, 3, d] = -u[c, d]
            K[p, c, d, 3] = -u[c, d]
    na = ang_idx.shape[0]
    for i in range(na):
        w = mu[i] * ang_sn[i]
        if w == 0.0 or convex:
            continue
        a, v, c = ang_idx[i, 0], ang_idx[i, 1], ang_idx[i, 2]
        _add_iso(K, a, c, w)
        _add_iso(K, a, v, -w)
        _add_iso(K, c, v, -w)
        _add_iso(K, v, v, 2.0 * w)
    for k in range(plane_idx.shape[0]):
        i = na + k
        w = -mu[i] * plane_inv[k]
        if w == 0.0 or convex:
            continue
        sb, rh, lh, sm = plane_idx[k, 0], plane_idx[k, 1], plane_idx[k, 2], plane_idx[k, 3]
        pa0, pa1, pa2 = x[rh, 0] - x[sb, 0], x[rh, 1] - x[sb, 1], x[rh, 2] - x[sb, 2]
        pb0, pb1, pb2 = x[lh, 0] - x[sb, 0], x[lh, 1] - x[sb, 1], x[lh, 2] - x[sb, 2]
        pc0, pc1, pc2 = x[sm, 0] - x[sb, 0], x[sm, 1] - x[sb, 1], x[sm, 2] - x[sb, 2]
        # Hessian of det(pa, pb, pc): (a, b) -[pc]x, (a, c) [pb]x, (b, c) -[pa]x; in joint
        # coordinates pa = x_rh - x_sb etc., the spine base's blocks follow from those
        # (its own block is zero: the three are skew).
        _skew_add(K, rh, lh, -w, pc0, pc1, pc2)
        _skew_add(K, rh, sm, w, pb0, pb1, pb2)
        _skew_add(K, lh, sm, -w, pa0, pa1, pa2)
        # (rh, sb) = -((a,b) + (a,c)) = [pc]x - [pb]x = [pc - pb]x
        _skew_add(K, rh, sb, w, pc0 - pb0, pc1 - pb1, pc2 - pb2)
        # (lh, sb) = -((b,a) + (b,c)) = -([pc]x' ... ) = -[pc]x + [pa]x = [pa - pc]x
        _skew_add(K, lh, sb, w, pa0 - pc0, pa1 - pc1, pa2 - pc2)
        # (sm, sb) = -((c,a) + (c,b)) = [pb]x - [pa]x = [pb - pa]x
        _skew_add(K, sm, sb, w, pb0 - pa0, pb1 - pa1, pb2 - pa2)
    for i in range(m):
        ci = caug[i]
        if ci == 0.0:
            continue
        for k1 in range(4):
            r = row_j[i, k1]
            if r < 0:
                break
            for k2 in range(4):
                q = row_j[i, k2]
                if q < 0:
                    break
                for d in range(3):
                    ard = ci * A[i, r, d]
                    for e in range(3):
                        K[r, q, d, e] += ard * A[i, q, e]


@jit_inner
def _pivot(P, is_root, out, delta):
    """out = inverse of the 4 x 4 pivot P, made safely definite where needed.

    Non-root: P = [[W, a], [a', 0]] with |a| = 1; its inverse from a tangent basis E of a
    and R = E' W E (2 x 2), shifted to have eigenvalues >= delta. Root: [[W, 0], [0, 1]],
    W shifted likewise. Returns whether a shift was needed.
    """
    for r in range(4):
        for s in range(4):
            out[r, s] = 0.0
    if is_root:
        # W (3 x 3): shifted until its LDL' pivots are >= delta, then inverted.
        shift = 0.0
        for _ in range(80):
            w00, w11, w22 = P[0, 0] + shift, P[1, 1] + shift, P[2, 2] + shift
            w01, w02, w12 = P[0, 1], P[0, 2], P[1, 2]
            d0 = w00
            d1 = w11 - w01 * w01 / d0 if d0 >= delta else -1.0
            d2 = -1.0
            if d1 >= delta:
                l21 = (w12 - w02 * w01 / d0) / d1
                d2 = w22 - w02 * w02 / d0 - l21 * l21 * d1
            if d2 >= delta:
                c00 = w11 * w22 - w12 * w12
                c01 = w02 * w12 - w01 * w22
                c02 = w01 * w12 - w02 * w11
                c11 = w00 * w22 - w02 * w02
                c12 = w01 * w02 - w00 * w12
                c22 = w00 * w11 - w01 * w01
                det = w00 * c00 + w01 * c01 + w02 * c02
                out[0, 0], out[0, 1], out[0, 2] = c00 / det, c01 / det, c02 / det
                out[1, 0], out[1, 1], out[1, 2] = c01 / det, c11 / det, c12 / det
                out[2, 0], out[2, 1], out[2, 2] = c02 / det, c12 / det, c22 / det
                out[3, 3] = 1.0
                return shift > 0.0
            shift = max(2.0 * shift, delta)
        out[0, 0] = out[1, 1] = out[2, 2] = out[3, 3] = 1.0  # not reached in practice
        return True
    a0, a1, a2 = P[3, 0], P[3, 1], P[3, 2]
    # tangent basis: t1 = unit(a x e) with e the axis where |a| is smallest, t2 = a x t1
    aa0, aa1, aa2 = abs(a0), abs(a1), abs(a2)
    if aa0 <= aa1 and aa0 <= aa2:
        t10, t11, t12 = 0.0, a2, -a1  # a x e0
    elif aa1 <= aa2:
        t10, t11, t12 = -a2, 0.0, a0  # a x e1
    else:
        t10, t11, t12 = a1, -a0, 0.0  # a x e2
    n = np.sqrt(t10 * t10 + t11 * t11 + t12 * t12)
    t10, t11, t12 = t10 / n, t11 / n, t12 / n
    t20 = a1 * t12 - a2 * t11
    t21 = a2 * t10 - a0 * t12
    t22 = a0 * t11 - a1 * t10
    # W t1, W t2, W a (W symmetric), all in scalars: no allocation in the hot loop.
    wt10 = P[0, 0] * t10 + P[0, 1] * t11 + P[0, 2] * t12
    wt11 = P[1, 0] * t10 + P[1, 1] * t11 + P[1, 2] * t12
    wt12 = P[2, 0] * t10 + P[2, 1] * t11 + P[2, 2] * t12
    wt20 = P[0, 0] * t20 + P[0, 1] * t21 + P[0, 2] * t22
    wt21 = P[1, 0] * t20 + P[1, 1] * t21 + P[1, 2] * t22
    wt22 = P[2, 0] * t20 + P[2, 1] * t21 + P[2, 2] * t22
    wa0 = P[0, 0] * a0 + P[0, 1] * a1 + P[0, 2] * a2
    wa1 = P[1, 0] * a0 + P[1, 1] * a1 + P[1, 2] * a2
    wa2 = P[2, 0] * a0 + P[2, 1] * a1 + P[2, 2] * a2
    r00 = t10 * wt10 + t11 * wt11 + t12 * wt12
    r01 = t10 * wt20 + t11 * wt21 + t12 * wt22
    r11 = t20 * wt20 + t21 * wt21 + t22 * wt22
    half = 0.5 * (r00 + r11)
    lo = half - np.sqrt(0.25 * (r00 - r11) ** 2 + r01 * r01)
    shifted = lo < delta
    if shifted:
        r00 += delta - lo
        r11 += delta - lo
    det = r00 * r11 - r01 * r01
    i00, i01, i11 = r11 / det, -r01 / det, r00 / det
    # Q = E R^-1 E'
    e0 = (t10, t11, t12)
    e1 = (t20, t21, t22)
    for r in range(3):
        f0 = i00 * e0[r] + i01 * e1[r]
        f1 = i01 * e0[r] + i11 * e1[r]
        for q in range(3):
            out[r, q] = f0 * e0[q] + f1 * e1[q]
    # x = a - Q W a ; xi = -a'Wa + (Wa)' Q (Wa), with E' W a = (b0, b1)
    b0 = t10 * wa0 + t11 * wa1 + t12 * wa2
    b1 = t20 * wa0 + t21 * wa1 + t22 * wa2
    c0 = i00 * b0 + i01 * b1
    c1 = i01 * b0 + i11 * b1
    a = (a0, a1, a2)
    for r in range(3):
        v = a[r] - (c0 * e0[r] + c1 * e1[r])
        out[r, 3] = v
        out[3, r] = v
    out[3, 3] = -(a0 * wa0 + a1 * wa1 + a2 * wa2) + b0 * c0 + b1 * c1
    return shifted


@jit
def _factor(K, Pinv, T, order, nb_ptr, nb_idx, root, delta):
    """Block elimination of K in place. Pinv (J, 4, 4): pivot inverses; T (J, deg, 4, 4):
    K[i, c] Pinv_c for the later neighbours i of c. Returns whether any pivot was shifted.
    The 4 x 4 products are written out: a helper taking block views made the whole
    projection 20 % slower."""
    shifted = False
    tmp = np.empty((4, 4))
    for k in range(order.shape[0]):
        c = order[k]
        if _pivot(K[c, c], c == root, Pinv[c], delta):
            shifted = True
        lo, hi = nb_ptr[c], nb_ptr[c + 1]
        for s in range(lo, hi):
            i = nb_idx[s]
            for r in range(4):
                for q in range(4):
                    acc = 0.0
                    for z in range(4):
                        acc += K[i, c, r, z] * Pinv[c, z, q]
                    T[c, s - lo, r, q] = acc
        for s in range(lo, hi):
            i = nb_idx[s]
            for s2 in range(s, hi):
                j = nb_idx[s2]
                for r in range(4):
                    for q in range(4):
                        acc = 0.0
                        for z in range(4):
                            acc += T[c, s - lo, r, z] * K[c, j, z, q]
                        tmp[r, q] = acc
                for r in range(4):
                    for q in range(4):
                        K[i, j, r, q] -= tmp[r, q]
                if i != j:
                    for r in range(4):
                        for q in range(4):
                            K[j, i, q, r] = K[i, j, r, q]
    return shifted


@jit
def _solve1(fac, R, X, q):
    """Solve K X = R for column q with the factors of `_factor` (R[..., q] is
    overwritten). Forward: from the leaves, each joint's block pushes into its later
    neighbours (skipped where it is zero: a row's column starts on a few joints); back:
    ``X_c = Pinv_c (R_c - sum_j K[c, j] X_j)`` over the later neighbours j.
    ``fac = (K, Pinv, T, order, nb_ptr, nb_idx)``."""
    K, Pinv, T, order, nb_ptr, nb_idx = fac
    J = order.shape[0]
    for k in range(J):
        c = order[k]
        r0, r1, r2, r3 = R[c, 0, q], R[c, 1, q], R[c, 2, q], R[c, 3, q]
        if r0 == 0.0 and r1 == 0.0 and r2 == 0.0 and r3 == 0.0:
            continue
        lo, hi = nb_ptr[c], nb_ptr[c + 1]
        for s in range(lo, hi):
            i = nb_idx[s]
            for r in range(4):
                R[i, r, q] -= (
                    T[c, s - lo, r, 0] * r0
                    + T[c, s - lo, r, 1] * r1
                    + T[c, s - lo, r, 2] * r2
                    + T[c, s - lo, r, 3] * r3
                )
    for k in range(J - 1, -1, -1):
        c = order[k]
        lo, hi = nb_ptr[c], nb_ptr[c + 1]
        a0, a1, a2, a3 = R[c, 0, q], R[c, 1, q], R[c, 2, q], R[c, 3, q]
        for s in range(lo, hi):
            j = nb_idx[s]
            x0, x1, x2, x3 = X[j, 0, q], X[j, 1, q], X[j, 2, q], X[j, 3, q]
            a0 -= K[c, j, 0, 0] * x0 + K[c, j, 0, 1] * x1 + K[c, j, 0, 2] * x2 + K[c, j, 0, 3] * x3
            a1 -= K[c, j, 1, 0] * x0 + K[c, j, 1, 1] * x1 + K[c, j, 1, 2] * x2 + K[c, j, 1, 3] * x3
            a2 -= K[c, j, 2, 0] * x0 + K[c, j, 2, 1] * x1 + K[c, j, 2, 2] * x2 + K[c, j, 2, 3] * x3
            a3 -= K[c, j, 3, 0] * x0 + K[c, j, 3, 1] * x1 + K[c, j, 3, 2] * x2 + K[c, j, 3, 3] * x3
        for r in range(4):
            X[c, r, q] = (
                Pinv[c, r, 0] * a0 + Pinv[c, r, 1] * a1 + Pinv[c, r, 2] * a2 + Pinv[c, r, 3] * a3
            )


@jit_inner
def _small_solve(M, b, n, out):
    """Solve the n x n system M y = b (copies; partial pivoting)."""
    A = np.empty((n, n))
    y = np.empty(n)
    for r in range(n):
        y[r] = b[r]
        for s in range(n):
            A[r, s] = M[r, s]
    for k in range(n):
        p = k
        best = abs(A[k, k])
        for r in range(k + 1, n):
            if abs(A[r, k]) > best:
                best = abs(A[r, k])
                p = r
        if p != k:
            for s in range(n):
                A[k, s], A[p, s] = A[p, s], A[k, s]
            y[k], y[p] = y[p], y[k]
        piv = A[k, k]
        if abs(piv) < 1e-300:
            piv = 1e-300
        for r in range(k + 1, n):
            f = A[r, k] / piv
            if f != 0.0:
                for s in range(k, n):
                    A[r, s] -= f * A[k, s]
                y[r] -= f * y[k]
    for k in range(n - 1, -1, -1):
        acc = y[k]
        for s in range(k + 1, n):
            acc -= A[k, s] * out[s]
        piv = A[k, k]
        if abs(piv) < 1e-300:
            piv = 1e-300
        out[k] = acc / piv


@jit_inner
def _dot_row(A, row_j, i, X, q):
    """a_i . (displacement part of column q of X), over the row's joints only."""
    acc = 0.0
    for k in range(4):
        j = row_j[i, k]
        if j < 0:
            break
        for d in range(3):
            acc += A[i, j, d] * X[j, d, q]
    return acc


@jit_inner
def _column(fac, R, X, A, row_j, i):
    """Column 1 + i of X: the solution for [a_i; 0]."""
    q = 1 + i
    for j in range(R.shape[0]):
        for d in range(4):
            R[j, d, q] = 0.0
    for k in range(4):
        j = row_j[i, k]
        if j < 0:
            break
        for d in range(3):
            R[j, d, q] = A[i, j, d]
    _solve1(fac, R, X, q)


@jit_inner
def _active_set(fac, R, X, A, row_j, have, S, s, h, work, m, mu, wl, scratch):
    """Multipliers mu (m,) and working set wl (m,) of the inequality QP: rows
    ``h + S mu - s >= 0`` with ``S = a K^-1 a'``, held at 0 in the working set, mu >= 0
    . Each pass adds the most violated row, else drops the
    most negative multiplier. Columns of K^-1 a' are computed when a row first enters
    the working set (most rows never do). ``scratch``: six arrays of size m."""
    idx, M, rhs, sol, lin, dg = scratch
    for i in range(m):
        wl[i] = work[i]
        mu[i] = 0.0
    for _ in range(2 * m + 2):
        n = m * 0  # a run-time zero (module docstring)
        for i in range(m):
            if wl[i]:
                if not have[i]:
                    _column(fac, R, X, A, row_j, i)
                    have[i] = True
                    for k in range(m):
                        if have[k]:
                            S[i, k] = _dot_row(A, row_j, i, X, 1 + k)
                            S[k, i] = S[i, k]
                    dg[i] = np.sqrt(max(S[i, i], 1e-300))
                idx[n] = i
                n += 1
        for r in range(n):
            i = idx[r]
            rhs[r] = (s[i] - h[i]) / dg[i]
            for q in range(n):
                k = idx[q]
                M[r, q] = S[i, k] / (dg[i] * dg[k])
            M[r, r] += 1e-12
        if n:
            _small_solve(M, rhs, n, sol)
        for i in range(m):
            mu[i] = 0.0
        for r in range(n):
            mu[idx[r]] = sol[r] / dg[idx[r]]
        worst, add = -1e-12, -1
        neg, drop = 0.0, -1
        for i in range(m):
            # h + a_i . (z_g + sum_k mu_k G_k) = h - s + sum_k S_ik mu_k
            acc = h[i] - s[i]
            for r in range(n):
                k = idx[r]
                acc += _dot_row(A, row_j, i, X, 1 + k) * mu[k]
            lin[i] = acc
            if not wl[i] and acc < worst:
                worst, add = acc, i
            if wl[i] and mu[i] < neg:
                neg, drop = mu[i], i
        if add >= 0:
            wl[add] = True
        elif drop >= 0:
            wl[drop] = False
        else:
            return


@jit_inner
def _dist2(x, x0, j):
    """|x_j - x0_j|^2."""
    return (x[j, 0] - x0[j, 0]) ** 2 + (x[j, 1] - x0[j, 1]) ** 2 + (x[j, 2] - x0[j, 2]) ** 2


@jit_inner
def _merit(x, x0, h, m, rho):
    f = 0.0
    for j in range(x.shape[0]):
        for d in range(3):
            e = x[j, d] - x0[j, d]
            f += e * e
    v = 0.0
    for i in range(m):
        if h[i] < 0.0:
            v -= h[i]
    return 0.5 * f + rho * v


@jit_inner
def _unit_rows(u, y, fallback, parent):
    for j in range(u.shape[0]):
        if parent[j] < 0:
            continue
        n = np.sqrt(y[j, 0] ** 2 + y[j, 1] ** 2 + y[j, 2] ** 2)
        if n > 1e-12:
            for d in range(3):
                u[j, d] = y[j, d] / n
        else:
            for d in range(3):
                u[j, d] = fallback[j, d]


@jit
def _solve_frames(
    x0s,
    u0s,
    r0s,
    root,
    parent,
    length,
    fk,
    order,
    nb_ptr,
    nb_idx,
    pairs,
    ang_idx,
    ang_sn,
    ang_sc,
    plane_idx,
    plane_inv,
    row_j,
    tol,
    max_iter,
    out,
    conv,
    iters,
):
    """The SQP of the module docstring on each frame t of x0s (T, J, 3), from unit bone
    directions u0s[t] (J, 3; row j: the bone ending at joint j) and root r0s[t] (3,).
    Writes the poses to out (T, J, 3), whether each converged to conv (T,) and its
    iterations to iters (T,). The other arguments are the `Plan`'s arrays. All scratch
    space is allocated once, before the frames."""
    T, J, _ = x0s.shape
    # Run-time values, not literals: see the module docstring (cold start).
    zero = J * 0
    no = J < 0
    yes = not no
    m = ang_idx.shape[0] + plane_idx.shape[0]
    mm = max(m, 1)  # arrays of size m, never empty
    geo = (pairs, root, parent, length, ang_idx, ang_sn, plane_idx, plane_inv, row_j)
    deg = 1
    for j in range(J):
        deg = max(deg, nb_ptr[j + 1] - nb_ptr[j])
    K = np.zeros((J, J, 4, 4))
    Pinv = np.zeros((J, 4, 4))
    Tf = np.zeros((J, deg, 4, 4))
    ncol = 1 + m
    R = np.zeros((J, 4, ncol))
    X = np.zeros((J, 4, ncol))
    x = np.zeros((J, 3))
    xt = np.zeros((J, 3))
    u = np.zeros((J, 3))
    ut = np.zeros((J, 3))
    y = np.zeros((J, 3))
    r = np.zeros(3)
    rt = np.zeros(3)
    lam = np.zeros(J)
    lam_new = np.zeros(J)
    mu = np.zeros(mm)
    mu_new = np.zeros(mm)
    caug = np.zeros(mm)
    work = np.zeros(mm, dtype=np.bool_)
    w0 = np.zeros(mm, dtype=np.bool_)
    wl = np.zeros(mm, dtype=np.bool_)
    h = np.zeros(mm)
    ht = np.zeros(mm)
    A = np.zeros((mm, J, 3))
    At = np.zeros((mm, J, 3))
    S = np.zeros((mm, mm))
    sv = np.zeros(mm)
    dx = np.zeros((J, 3))
    have = np.zeros(mm, dtype=np.bool_)
    scratch = (
        np.zeros(mm, dtype=np.int64),
        np.zeros((mm, mm)),
        np.zeros(mm),
        np.zeros(mm),
        np.zeros(mm),
        np.zeros(mm),
    )
    fac = (K, Pinv, Tf, order, nb_ptr, nb_idx)
    reach = 0.0  # the skeleton's total bone length: no sensible step is 100 times longer
    for j in range(J):
        reach += length[j]
    for t in range(T):
        x0 = x0s[t]
        for j in range(J):
            lam[j] = 0.0
            for d in range(3):
                u[j, d] = u0s[t, j, d]
        for i in range(m):
            mu[i] = 0.0
            work[i] = False
        for d in range(3):
            r[d] = r0s[t, d]
        _fk(x, r, u, parent, length, fk, root)
        last = np.inf
        done = False
        it = 0
        while it < max_iter and not done:
            it += 1
            _rows(x, ang_idx, ang_sn, ang_sc, plane_idx, plane_inv, h, A, yes)
            nw0 = 0
            for i in range(m):
                w0[i] = work[i] or h[i] < 0.0
                nw0 += w0[i]
                if w0[i]:
                    nrm = 0.0
                    for j in range(J):
                        for d in range(3):
                            nrm += A[i, j, d] ** 2
                    caug[i] = 1.0 / max(nrm, 1e-300)
                else:
                    caug[i] = 0.0
            _assemble(K, x, u, lam, mu, caug, A, m, no, geo)
            shifted = _factor(K, Pinv, Tf, order, nb_ptr, nb_idx, root, 1e-3)
            if shifted and nw0 > 0 and last < 0.01:
                # Near a solution a bound often holds back a direction of negative
                # curvature: more weight on the working-set rows makes W definite there
                # (far from one, the working set is a guess: Gauss-Newton is safer).
                for i in range(m):
                    caug[i] *= 100.0
                _assemble(K, x, u, lam, mu, caug, A, m, no, geo)
                shifted = _factor(K, Pinv, Tf, order, nb_ptr, nb_idx, root, 1e-3)
            if shifted:  # not safely definite: a Gauss-Newton step instead
                _assemble(K, x, u, lam, mu, caug, A, m, yes, geo)
                _factor(K, Pinv, Tf, order, nb_ptr, nb_idx, root, 1e-9)
            # The step without inequality multipliers: column 0 of X solves [-g; 0].
            for j in range(J):
                for d in range(3):
                    R[j, d, 0] = x0[j, d] - x[j, d]
                R[j, 3, 0] = 0.0
            _solve1(fac, R, X, zero)
            for i in range(m):
                have[i] = False
                sv[i] = -_dot_row(A, row_j, i, X, zero)  # s = a hh, hh = -z_g
            _active_set(fac, R, X, A, row_j, have, S, sv, h, w0, m, mu_new, wl, scratch)
            step = 0.0
            far = 0.0
            finite = True
            for j in range(J):
                far = max(far, np.sqrt(_dist2(x, x0, j)))
                nrm = 0.0
                for d in range(3):
                    v = X[j, d, 0]
                    for i in range(m):
                        if mu_new[i] != 0.0:
                            v += mu_new[i] * X[j, d, 1 + i]
                    dx[j, d] = v
                    nrm += v * v
                step = max(step, np.sqrt(nrm))
                yv = X[j, 3, 0]
                for i in range(m):
                    if mu_new[i] != 0.0:
                        yv += mu_new[i] * X[j, 3, 1 + i]
                lam_new[j] = -yv
                finite = finite and np.isfinite(nrm) and np.isfinite(yv)
            for i in range(m):
                finite = finite and np.isfinite(mu_new[i])
            if not finite or step > 100.0 * (reach + far):
                # A singular step (a row whose gradient vanishes on the spheres, where
                # LICQ fails, makes its multiplier overflow): not finite, or so long that
                # the merit function, weighted by that multiplier, would take anything.
                # Give up on the frame at its last iterate, unconverged, for
                # `project`'s SLSQP. (max() above drops NaN: the step
                # itself would not show it.)
                break
            rho = 1e-12
            viol0 = 0.0
            for i in range(m):
                if wl[i] and w0[i]:
                    mu_new[i] += caug[i] * h[i]
                rho = max(rho, 2.0 * mu_new[i] + 1e-12)
                if h[i] < 0.0:
                    viol0 -= h[i]
            phi0 = _merit(x, x0, h, m, rho)
            slope = -rho * viol0
            for j in range(J):
                for d in range(3):
                    slope += (x[j, d] - x0[j, d]) * dx[j, d]
            slope = min(slope, 0.0)
            alpha = 1.0
            for _ls in range(41):
                for j in range(J):
                    p = parent[j]
                    if p < 0:
                        continue
                    for d in range(3):
                        y[j, d] = x[j, d] - x[p, d] + alpha * (dx[j, d] - dx[p, d])
                _unit_rows(ut, y, u, parent)
                for d in range(3):
                    rt[d] = r[d] + alpha * dx[root, d]
                _fk(xt, rt, ut, parent, length, fk, root)
                _rows(xt, ang_idx, ang_sn, ang_sc, plane_idx, plane_inv, ht, At, no)
                if step <= 1e-4 or _ls == 40:
                    break
                if _merit(xt, x0, ht, m, rho) <= phi0 + 1e-4 * alpha * slope:
                    break
                alpha *= 0.5
            for j in range(J):
                for d in range(3):
                    finite = finite and np.isfinite(xt[j, d])
            if not finite:  # a step so long that the trial pose overflowed
                break
            for j in range(J):
                for d in range(3):
                    x[j, d] = xt[j, d]
                    u[j, d] = ut[j, d]
                lam[j] += alpha * (lam_new[j] - lam[j])
            for d in range(3):
                r[d] = rt[d]
            viol = 0.0
            for i in range(m):
                mu[i] += alpha * (mu_new[i] - mu[i])
                work[i] = wl[i] and mu_new[i] > 0.0
                viol = max(viol, -ht[i])
            newton = (not shifted) and alpha == 1.0
            quad = newton and step <= 1e-4 and step <= 0.05 * last
            done = (step <= tol or quad) and viol <= tol
            last = step
        for j in range(J):
            for d in range(3):
                out[t, j, d] = x[j, d]
        conv[t] = done
        iters[t] = it


def solve(x0: NDArray, u0: NDArray, r0: NDArray, pl, tol: float, max_iter: int):
    """Project frames x0 (T, J, 3) starting from unit bone directions u0 (T, J, 3) (row j:
    the bone ending at joint j) and roots r0 (T, 3). Returns poses, converged, iterations."""
    T, J, _ = x0.shape
    out = np.empty((T, J, 3))
    conv = np.zeros(T, dtype=np.bool_)
    iters = np.zeros(T, dtype=np.int64)
    _solve_frames(
        np.ascontiguousarray(x0, dtype=np.float64),
        np.ascontiguousarray(u0, dtype=np.float64),
        np.ascontiguousarray(r0, dtype=np.float64),
        pl.root,
        pl.parent,
        pl.length,
        pl.fk,
        pl.order,
        pl.nb_ptr,
        pl.nb_idx,
        pl.pairs,
        pl.ang_idx,
        pl.ang_sn,
        pl.ang_sc,
        pl.plane_idx,
        pl.plane_inv,
        pl.row_j,
        float(tol),
        int(max_iter),
        out,
        conv,
        iters,
    )
    return out, conv, iters
