"""A `ConstraintSet` with reference bone lengths, compiled for the solvers (eq 14).

`program` turns constraints and lengths into index arrays (`Program`) and the compiled
solver's elimination plan (`Plan`), once per constraint set and lengths: activation
maximization projects with the same ones at every step, and building them costs about a
tenth of a projection.

Bone coordinates: the root position r and one unit direction u_b per bone,
``x = fk(r, u)`` with ``x_child = x_parent + L_b u_b``. That map is a bijection between
the poses with exact bone lengths and R^3 x (S^2)^B; every solver keeps its iterates
there, so the bone constraints hold by construction.

Degenerate frames (collinear, or a joint moved onto another) can start a solver exactly
at a stationary point of a violated row: an angle of 0 deg, a pelvis with its three
bones parallel. The row's gradient then vanishes on the spheres (LICQ fails), no step
can satisfy it, its multiplier overflows, and the frame's own gradient may hold the pose
there. Every solver therefore starts from `start_dirs`, which turns the arms of such
rows a little (and gives bones of zero length a fixed direction).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import SkvisError
from .constraints import ConstraintSet
from .rows import evaluate

__all__ = ["Program", "Plan", "program", "fk", "start_dirs", "unstick", "exact_lengths"]


@dataclass(frozen=True)
class Program:
    """A ConstraintSet with reference lengths, compiled to index arrays."""

    J: int
    root: int
    n_eq: int  # number of bones
    parent: NDArray  # (B,)
    child: NDArray  # (B,)
    length: NDArray  # (B,) metres
    path: NDArray  # (J, 1 + B) 0/1: x = path @ [r, L_b u_b]
    # inequality rows, angles then planes; in joint indices and in bone indices
    ang_idx: NDArray  # (Ra, 3) arm, vertex, arm
    ang_norm: NDArray  # (Ra,) L_a * L_c
    ang_sign: NDArray  # (Ra,) +1 lower bound, -1 upper bound
    ang_cos: NDArray  # (Ra,) cos of the bound
    ang_bones: NDArray  # (Ra, 2) bones of the two arms
    plane_idx: NDArray  # (Rp, 4) sb, rh, lh, sm
    plane_norm: NDArray  # (Rp,) L_rh L_lh L_sm
    plane_bones: NDArray  # (Rp, 3)
    row_constraint: NDArray  # (m,) index into the ConstraintSet of each row

    @property
    def m(self) -> int:
        return len(self.row_constraint)

    @property
    def n_ineq(self) -> int:
        return self.m - self.n_eq


def compile_program(constraints: ConstraintSet, ref: NDArray) -> Program:
    """`Program` of a constraint set and reference lengths (B,) in metres."""
    topo = constraints.topology
    J, B = topo.num_joints, topo.num_bones
    parent = np.array([p for p, _ in topo.bones], dtype=np.intp).reshape(B)
    child = np.array([c for _, c in topo.bones], dtype=np.intp).reshape(B)
    bone_to = {int(c): b for b, c in enumerate(child)}  # joint -> the bone ending there
    path = np.zeros((J, 1 + B))
    path[:, 0] = 1.0
    for j in range(J):
        k = j
        while k in bone_to:
            b = bone_to[k]
            path[j, 1 + b] = 1.0
            k = int(parent[b])

    def arm(v: int, a: int) -> tuple[int, float]:
        """The bone joining v and a, and +1 if x_a - x_v = +L u_b, else -1."""
        if bone_to.get(a) is not None and parent[bone_to[a]] == v:
            return bone_to[a], 1.0
        return bone_to[v], -1.0

    rows = [k for k, con in enumerate(constraints) if con.kind == "bone"]
    ang: list[tuple] = []
    plane: list[tuple] = []
    for k, con in enumerate(constraints):
        if con.kind == "angle":
            a, v, c = con.joints
            (ba, sa), (bc, sc) = arm(v, a), arm(v, c)
            lo, hi = con.limits  # type: ignore[misc]
            # An upper bound of 180 degrees (or a lower one of 0) always holds: no row.
            for sign, bound, active in ((1.0, lo, lo > 0.0), (-1.0, hi, hi < 180.0)):
                if active:
                    cos = np.cos(np.radians(bound))
                    ang.append((con.joints, ref[ba] * ref[bc], sign, cos, (ba, bc), sa * sc, k))
        elif con.kind == "plane":
            if con.limits != (0.0, 90.0):
                raise SkvisError(f"{con.name}: only the range (0, 90) degrees is supported")
            sb, rh, lh, sm = con.joints
            arms = [arm(sb, j) for j in (rh, lh, sm)]
            bones = tuple(b for b, _ in arms)
            orient = float(np.prod([o for _, o in arms]))
            plane.append((con.joints, float(np.prod(ref[list(bones)])), bones, orient, k))
    return Program(
        J=J,
        root=topo.root,
        n_eq=B,
        parent=parent,
        child=child,
        length=np.asarray(ref, dtype=np.float64),
        path=path,
        ang_idx=np.array([a[0] for a in ang], dtype=np.intp).reshape(-1, 3),
        ang_norm=np.array([a[1] for a in ang], dtype=np.float64),
        ang_sign=np.array([a[2] for a in ang], dtype=np.float64),
        ang_cos=np.array([a[3] for a in ang], dtype=np.float64),
        ang_bones=np.array([a[4] for a in ang], dtype=np.intp).reshape(-1, 2),
        plane_idx=np.array([p[0] for p in plane], dtype=np.intp).reshape(-1, 4),
        plane_norm=np.array([p[1] for p in plane], dtype=np.float64),
        plane_bones=np.array([p[2] for p in plane], dtype=np.intp).reshape(-1, 3),
        row_constraint=np.array(rows + [a[6] for a in ang] + [p[4] for p in plane], dtype=np.intp),
    )


@dataclass(frozen=True)
class Plan:
    """Index arrays for the compiled solver (from `plan`)."""

    root: int
    parent: NDArray  # (J,) parent joint, -1 for the root
    length: NDArray  # (J,) length of the bone ending at the joint, 0 for the root
    fk: NDArray  # (J - 1,) non-root joints, parents first
    order: NDArray  # (J,) elimination order, leaves first, root last
    nb_ptr: NDArray  # (J + 1,) CSR pointers: later neighbours of each joint
    nb_idx: NDArray  # later neighbours (joint indices)
    pairs: NDArray  # (P, 2) every (i, j) block of the pattern, i == j included
    ang_idx: NDArray  # (Ra, 3) arm, vertex, arm
    ang_sn: NDArray  # (Ra,) sign / (L_a L_c)
    ang_sc: NDArray  # (Ra,) sign * cos(bound)
    plane_idx: NDArray  # (Rp, 4) spine base, hip right, hip left, spine mid
    plane_inv: NDArray  # (Rp,) 1 / (L_rh L_lh L_sm)
    row_j: NDArray  # (Ra + Rp, 4) the joints of each inequality row, -1 padded


def plan(prog: Program) -> Plan:
    """The elimination plan for a `Program`."""
    J = prog.J
    parent = np.full(J, -1, dtype=np.int64)
    length = np.zeros(J)
    parent[prog.child] = prog.parent
    length[prog.child] = prog.length
    # Parents first (breadth first from the root) for forward kinematics.
    children: dict[int, list[int]] = {j: [] for j in range(J)}
    for p, c in zip(prog.parent, prog.child, strict=True):
        children[int(p)].append(int(c))
    bfs = [int(prog.root)]
    for j in bfs:
        bfs.extend(children[j])
    # The blocks' pattern: bones, and the couplings of the inequality rows' Hessians.
    adj: dict[int, set[int]] = {j: set() for j in range(J)}

    def link(group) -> None:
        for i in group:
            for k in group:
                if i != k:
                    adj[int(i)].add(int(k))

    for p, c in zip(prog.parent, prog.child, strict=True):
        link((p, c))
    for row in prog.ang_idx:
        link(row)
    for row in prog.plane_idx:
        link(row)
    order = bfs[::-1]  # leaves first, root last
    rank = {j: k for k, j in enumerate(order)}
    later: dict[int, list[int]] = {}
    for j in order:  # symbolic elimination: a joint's later neighbours become a clique
        nbs = sorted((k for k in adj[j] if rank[k] > rank[j]), key=lambda k: rank[k])
        later[j] = nbs
        link(nbs)
    nb_ptr = np.zeros(J + 1, dtype=np.int64)
    nb_idx: list[int] = []
    for j in range(J):
        nb_idx.extend(later[j])
        nb_ptr[j + 1] = len(nb_idx)
    pairs = {(j, j) for j in range(J)}
    pairs |= {(i, k) for i in range(J) for k in adj[i]}
    na = len(prog.ang_idx)
    row_j = np.full((na + len(prog.plane_idx), 4), -1, dtype=np.int64)
    row_j[:na, :3] = prog.ang_idx
    row_j[na:, :] = prog.plane_idx
    return Plan(
        root=int(prog.root),
        parent=parent,
        length=length,
        fk=np.array(bfs[1:], dtype=np.int64),
        order=np.array(order, dtype=np.int64),
        nb_ptr=nb_ptr,
        nb_idx=np.array(nb_idx, dtype=np.int64),
        pairs=np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2),
        ang_idx=np.asarray(prog.ang_idx, dtype=np.int64).reshape(na, 3),
        ang_sn=np.asarray(prog.ang_sign / prog.ang_norm, dtype=np.float64),
        ang_sc=np.asarray(prog.ang_sign * prog.ang_cos, dtype=np.float64),
        plane_idx=np.asarray(prog.plane_idx, dtype=np.int64).reshape(-1, 4),
        plane_inv=np.asarray(1.0 / prog.plane_norm, dtype=np.float64),
        row_j=row_j,
    )


@functools.lru_cache(maxsize=32)
def _program_cached(constraints: ConstraintSet, ref: bytes) -> tuple[Program, Plan]:
    prog = compile_program(constraints, np.frombuffer(ref, dtype=np.float64).copy())
    return prog, plan(prog)


def program(constraints: ConstraintSet, ref: NDArray) -> tuple[Program, Plan]:
    """`compile_program` and `plan` of a constraint set and reference lengths (B,),
    kept for the next call with the same ones (as activation maximization makes, one per
    step). Callers must not write into them."""
    return _program_cached(constraints, np.ascontiguousarray(ref, dtype=np.float64).tobytes())


def fk(r: NDArray, u: NDArray, prog: Program) -> NDArray:
    """Joint positions (T, J, 3) from root positions (T, 3) and bone directions (T, B, 3)."""
    z = np.concatenate([r[:, None], prog.length[:, None] * u], axis=1)
    return prog.path @ z


# Fixed, spread-out directions for bones of zero length, whose direction is undefined:
# any direction is as close as any other, and different ones keep joints apart.
def fallback_dirs(n: int) -> NDArray:
    ang = np.arange(n) * 2.399963  # the golden angle
    d = np.stack([np.cos(ang), np.full(n, 0.5), np.sin(ang)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def unit(v: NDArray, fallback: NDArray) -> NDArray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(n > 1e-12, v / np.where(n > 1e-12, n, 1.0), fallback)


# How far (radians) `start_dirs` turns the arms of a row stuck at a stationary point.
_TILT = 0.1


def start_dirs(x0: NDArray, prog: Program) -> NDArray:
    """Unit bone directions (T, B, 3) where every solver starts: each bone's direction in
    the frame, a fixed one (`fallback_dirs`) for a bone of zero length, and the arms of
    the rows stuck at a stationary point turned a little (see `_stuck_rows`)."""
    B = len(prog.child)
    u = unit(x0[:, prog.child] - x0[:, prog.parent], fallback_dirs(B)[None])
    if prog.n_ineq == 0:
        return u
    # Another spread of fixed directions per round (the first B of the sequence are the
    # fallback ones), in case a turn happened to keep two arms parallel.
    turns = fallback_dirs(4 * B)[B:].reshape(3, B, 3)
    rows_bones = np.concatenate(
        [np.concatenate([prog.ang_bones, prog.ang_bones[:, :1]], axis=1), prog.plane_bones]
    ).reshape(prog.n_ineq, 3)
    frames = np.arange(len(u))
    for k in range(3):
        stuck = _stuck_rows(u[frames], prog)
        some = stuck.any(axis=1)
        if not some.any():
            break
        frames, stuck = frames[some], stuck[some]
        t, i = np.nonzero(stuck)
        move = np.zeros((len(frames), B), dtype=bool)
        move[np.repeat(t, 3), rows_bones[i].ravel()] = True
        tb, b = np.nonzero(move)
        ub = u[frames[tb], b]
        d = turns[k, b] - np.einsum("nd,nd->n", turns[k, b], ub)[:, None] * ub
        d = unit(d, _tangent_basis(ub)[..., 0])
        u[frames[tb], b] = unit(ub + _TILT * d, ub)
    return u


def _stuck_rows(u: NDArray, prog: Program) -> NDArray:
    """Which inequality rows (T, m_in) are violated (or about to be) at a stationary point
    on the spheres: an angle of 0 or 180 degrees, a plane row with its three bones
    parallel (a collinear pose, a joint moved onto another). There the row's gradient
    vanishes on the tangent spaces, so no Newton step can satisfy it (its multiplier
    overflows) while the frame's own gradient can hold the pose there exactly."""
    T = len(u)
    h = evaluate(fk(np.zeros((T, 3)), u, prog), prog, jacobian=False)[0][:, prog.n_eq :]
    # |gradient on the tangent spaces|^2 in unit bone directions: an angle row,
    # 2 (1 - cos^2) with cos = u_a . u_c; the plane row, with its gradients u2 x u3,
    # u3 x u1, u1 x u2 whose radial parts are all det(u1, u2, u3), their squared norms
    # summed less 3 det^2.
    ua, uc = u[:, prog.ang_bones[:, 0]], u[:, prog.ang_bones[:, 1]]
    g_ang = 2.0 * (1.0 - np.einsum("trd,trd->tr", ua, uc) ** 2)
    p1, p2, p3 = (u[:, prog.plane_bones[:, i]] for i in range(3))
    c12 = _cross(p1, p2)
    det = np.einsum("trd,trd->tr", c12, p3)
    g_pl = sum(np.einsum("trd,trd->tr", c, c) for c in (c12, _cross(p2, p3), _cross(p3, p1)))
    grad2 = np.concatenate([g_ang, g_pl - 3.0 * det**2], axis=1)
    return (h < 1e-6) & (grad2 < (0.5 * _TILT) ** 2)


def unstick(x: NDArray, prog: Program) -> NDArray:
    """Joint positions with the bones of zero length pulled apart (see `fallback_dirs`)
    and the stuck rows' arms turned as in `start_dirs`; the other bones keep their
    lengths and directions."""
    bones = x[:, prog.child] - x[:, prog.parent]
    d = np.maximum(np.linalg.norm(bones, axis=-1), 1e-3 * prog.length)
    z = d[..., None] * start_dirs(x, prog)
    moved = (np.abs(z - bones) > 1e-12 * prog.length[:, None]).any(axis=(1, 2))
    if not moved.any():
        return x
    x = x.copy()
    x[moved] = prog.path @ np.concatenate([x[moved, prog.root][:, None], z[moved]], axis=1)
    return x


def exact_lengths(x: NDArray, prog: Program) -> NDArray:
    """Pose x (J, 3) with every bone at its reference length, keeping its direction."""
    u = unit(x[None, prog.child] - x[None, prog.parent], fallback_dirs(len(prog.child))[None])
    return fk(x[None, prog.root], u, prog)[0]


def _cross(a: NDArray, b: NDArray) -> NDArray:
    """Cross product over the last axis (np.cross is slow on small stacked arrays)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _tangent_basis(u: NDArray) -> NDArray:
    """Orthonormal bases (..., 3, 2) of the planes orthogonal to unit vectors u (..., 3)."""
    axis = np.argmin(np.abs(u), axis=-1)
    e = np.zeros_like(u)
    np.put_along_axis(e, axis[..., None], 1.0, axis=-1)
    t1 = _cross(u, e)
    t1 /= np.linalg.norm(t1, axis=-1, keepdims=True)
    return np.stack([t1, _cross(u, t1)], axis=-1)
