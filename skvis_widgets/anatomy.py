"""Anatomical constraints (Patil et al., section 3.2, eqs 8-14) and projection onto them.

The constraint set is written once with canonical joint names and instantiated per
topology (`anatomical_constraints`):

- bone lengths (eqs 9-10): every bone keeps its reference length, by default its mean
  length over the sequence (`reference_bone_lengths`);
- three-joint angles (eq 11 and the text after it), at the middle joint of each triple:

  ======================  =====================================  ==============
  name                    joints (arm, vertex, arm)              range (deg)
  ======================  =====================================  ==============
  ``angle:spine``         spine_base, spine_mid, spine_shoulder  [160, 180]
  ``angle:shoulders``     shoulder_left, spine_shoulder,         [110, 180]
                          shoulder_right
  ``angle:hips``          hip_left, spine_base, hip_right        [100, 180]
  ``angle:wrist_left``    elbow_left, wrist_left, hand_left      [90, 180]
  ``angle:wrist_right``   elbow_right, wrist_right, hand_right   [90, 180]
  ======================  =====================================  ==============

- the four-joint constraint (eqs 12-13), ``plane:pelvis``: with unit vectors from the
  spine base to the right hip, the left hip and the spine mid, the normal
  ``n = v_rh x v_lh`` makes an angle in [0, 90] deg with ``v_sm``, i.e. the scalar triple
  product ``(v_rh x v_lh) . v_sm >= 0``.

`constraint_residuals` says by how much each frame violates each constraint; `project`
solves eq 14, the valid pose nearest to each frame in least squares, for a whole sequence
at once; `project_slsqp` solves the same problem frame by frame with SciPy's SLSQP (the
slow reference the tests and ``benchmarks/bench_projection.py`` compare against).

What real recordings do (checked on every frame of the MSR Action3D and NTU RGB+D files
in ``shared/data``):

- ``plane:pelvis`` holds on 99.8 % of MSR and 99.3 % of NTU frames with the paper's order
  of the cross product (the reverse order would fail nearly all of them), so the paper's
  order is kept.
- NTU (Kinect v2, the skeleton the limits were written for): ``angle:spine`` holds on
  every frame (min 173.5 deg). An upright subject facing the camera (A001, drinking)
  satisfies every constraint except ``angle:wrist_left`` on 4 of 103 frames, where the
  noisy hand joint bends the wrist to 67-89.9 deg. Side views, bending and two-person
  frames break ``angle:shoulders`` (23 % of the 953 sample frames, down to 29 deg),
  ``angle:hips`` (6 %) and the wrists (2-3 %), mostly where the tracker loses the body.
- MSR Action3D (Kinect v1) does not fit the paper's limits: its spine joint sits behind
  the line from hip centre to shoulder centre, so ``angle:spine`` is below 160 deg on
  99.5 % of its 22,365 frames (median 133, 1st-99th percentile 104-158);
  ``angle:shoulders`` (median 112) fails on 32 % and ``angle:hips`` (median 111) on 19 %.
  The wrists hold on all but 12 frames. Projecting MSR frames therefore straightens the
  spine; pass ``angle_limits`` to `anatomical_constraints` to relax it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, overload

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from scipy.linalg.lapack import dpotrf as _potrf
from scipy.linalg.lapack import dpotrs as _potrs

from . import _sqp
from .errors import SkvisError
from .skeleton import Topology

__all__ = [
    "Constraint",
    "ConstraintSet",
    "ProjectionInfo",
    "anatomical_constraints",
    "reference_bone_lengths",
    "constraint_residuals",
    "project",
    "project_slsqp",
    "prepare_solver",
]

Kind = Literal["bone", "angle", "plane"]

#: The paper's three-joint angles: name -> ((arm, vertex, arm), (lower, upper) in degrees).
ANGLE_CONSTRAINTS: Mapping[str, tuple[tuple[str, str, str], tuple[float, float]]] = {
    "angle:spine": (("spine_base", "spine_mid", "spine_shoulder"), (160.0, 180.0)),
    "angle:shoulders": (("shoulder_left", "spine_shoulder", "shoulder_right"), (110.0, 180.0)),
    "angle:hips": (("hip_left", "spine_base", "hip_right"), (100.0, 180.0)),
    "angle:wrist_left": (("elbow_left", "wrist_left", "hand_left"), (90.0, 180.0)),
    "angle:wrist_right": (("elbow_right", "wrist_right", "hand_right"), (90.0, 180.0)),
}

#: The paper's four-joint constraint: (spine_base, hip_right, hip_left, spine_mid), the
#: angle between ``v_rh x v_lh`` and ``v_sm`` in [0, 90] degrees.
PLANE_CONSTRAINTS: Mapping[str, tuple[tuple[str, str, str, str], tuple[float, float]]] = {
    "plane:pelvis": (("spine_base", "hip_right", "hip_left", "spine_mid"), (0.0, 90.0)),
}


@dataclass(frozen=True)
class Constraint:
    """One anatomical constraint of a topology.

    Attributes
    ----------
    name : str
        ``"bone:<parent>-<child>"``, ``"angle:<what>"`` or ``"plane:pelvis"``.
    kind : {"bone", "angle", "plane"}
    joints : tuple of int
        Joint indices: ``(parent, child)`` for a bone; ``(arm, vertex, arm)`` for an angle;
        ``(spine_base, hip_right, hip_left, spine_mid)`` for the plane constraint.
    joint_names : tuple of str
        The same joints by name.
    limits : (float, float) or None
        Allowed range in degrees for angles and the plane constraint (the angle between
        the pelvis normal and the spine); ``None`` for a bone, whose length comes from the
        reference lengths.
    bone : int or None
        For a bone, its index in ``topology.bones`` (and in the reference lengths).
    """

    name: str
    kind: Kind
    joints: tuple[int, ...]
    joint_names: tuple[str, ...]
    limits: tuple[float, float] | None = None
    bone: int | None = None


@dataclass(frozen=True)
class ConstraintSet:
    """The anatomical constraints of one topology, in a fixed order.

    Bones come first, in the order of ``topology.bones``, then the angles, then the plane
    constraint. Iterating gives `Constraint` objects; ``cs["angle:spine"]`` looks one up.

    Attributes
    ----------
    topology : Topology
    constraints : tuple of Constraint
    dropped : tuple of (str, str)
        Constraints of the paper that this topology cannot express, with the reason.
    """

    topology: Topology
    constraints: tuple[Constraint, ...]
    dropped: tuple[tuple[str, str], ...] = ()
    _by_name: Mapping[str, Constraint] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.constraints})

    @property
    def names(self) -> tuple[str, ...]:
        """Constraint names, in order (the columns of `constraint_residuals`)."""
        return tuple(c.name for c in self.constraints)

    def __iter__(self) -> Iterator[Constraint]:
        return iter(self.constraints)

    def __len__(self) -> int:
        return len(self.constraints)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, key: str | int) -> Constraint:
        if isinstance(key, str):
            try:
                return self._by_name[key]
            except KeyError:
                raise SkvisError(
                    f"no constraint {key!r} for topology {self.topology.name!r}; "
                    f"it has: {', '.join(self.names)}"
                ) from None
        return self.constraints[key]

    def of_kind(self, kind: Kind) -> tuple[Constraint, ...]:
        """The constraints of one kind, in order."""
        return tuple(c for c in self.constraints if c.kind == kind)


def anatomical_constraints(
    topology: Topology,
    *,
    angle_limits: Mapping[str, tuple[float, float]] | None = None,
) -> ConstraintSet:
    """The paper's anatomical constraints, instantiated for ``topology``.

    Parameters
    ----------
    topology : Topology
    angle_limits : mapping of str to (float, float), optional
        Replace the range (degrees, ``0 <= lower < upper <= 180``) of some three-joint
        angles, e.g. ``{"angle:spine": (100.0, 180.0)}`` for MSR Action3D, whose real poses
        violate the paper's spine limit (see the module docstring).

    Returns
    -------
    ConstraintSet
        Every bone, each three-joint angle whose three joints the topology has and whose
        two arms are bones, and the plane constraint likewise; the others are listed in
        ``dropped`` with the reason.

    Examples
    --------
    >>> from skvis_widgets.skeleton import KINECT_V2
    >>> cs = anatomical_constraints(KINECT_V2)
    >>> len(cs), cs.names[-1], cs.dropped
    (30, 'plane:pelvis', ())
    """
    _check_topology(topology)
    if angle_limits is not None and not isinstance(angle_limits, Mapping):
        raise SkvisError(
            f"angle_limits = {angle_limits!r}; expected a mapping of angle name to "
            "(lower, upper) degrees"
        )
    limits = dict(angle_limits or {})
    for name, lim in limits.items():
        if name not in ANGLE_CONSTRAINTS:
            raise SkvisError(
                f"angle_limits: unknown angle {name!r}; expected one of {list(ANGLE_CONSTRAINTS)}"
            )
        pair = tuple(lim) if isinstance(lim, (tuple, list, np.ndarray)) else ()
        if len(pair) != 2 or not all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_))
            for v in pair
        ):
            raise SkvisError(
                f"angle_limits[{name!r}] = {lim!r}; expected (lower, upper) in degrees, "
                "0 <= lower < upper <= 180"
            )
        lo, hi = (float(v) for v in pair)
        if not (0.0 <= lo < hi <= 180.0):
            raise SkvisError(
                f"angle_limits[{name!r}] = {lim!r}; expected 0 <= lower < upper <= 180 degrees"
            )
        limits[name] = (lo, hi)

    names = topology.joint_names
    constraints = [
        Constraint(f"bone:{names[p]}-{names[c]}", "bone", (p, c), (names[p], names[c]), None, b)
        for b, (p, c) in enumerate(topology.bones)
    ]
    bone_pairs = {frozenset(bc) for bc in topology.bones}
    dropped: list[tuple[str, str]] = []

    def check(name: str, joints: tuple[str, ...], arms: list[tuple[str, str]]) -> bool:
        missing = [j for j in joints if not topology.has(j)]
        if missing:
            dropped.append(
                (name, f"topology {topology.name!r} has no joint {', '.join(map(repr, missing))}")
            )
            return False
        for a, b in arms:
            if frozenset((topology.index(a), topology.index(b))) not in bone_pairs:
                # The projection uses the arm's fixed bone length (see _Program).
                dropped.append((name, f"{a}-{b} is not a bone of topology {topology.name!r}"))
                return False
        return True

    for name, (joints, lim) in ANGLE_CONSTRAINTS.items():
        a, v, c = joints
        if check(name, joints, [(a, v), (v, c)]):
            idx = tuple(topology.index(j) for j in joints)
            constraints.append(Constraint(name, "angle", idx, joints, limits.get(name, lim)))
    for name, (joints, lim) in PLANE_CONSTRAINTS.items():
        sb, rh, lh, sm = joints
        if check(name, joints, [(sb, rh), (sb, lh), (sb, sm)]):
            idx = tuple(topology.index(j) for j in joints)
            constraints.append(Constraint(name, "plane", idx, joints, lim))
    return ConstraintSet(topology, tuple(constraints), tuple(dropped))


# --------------------------------------------------------------------------- validation


def _as_sequence(sequence: ArrayLike, topology: Topology, what: str = "sequence") -> NDArray:
    try:
        x = np.asarray(sequence)
    except Exception as exc:  # ragged lists and the like
        raise SkvisError(f"{what}: cannot be read as an array ({exc})") from None
    J = topology.num_joints
    expected = f"(T, {J}, 3) with T >= 1 for topology {topology.name!r}"
    if x.ndim != 3 or x.shape[1:] != (J, 3):
        raise SkvisError(f"{what} has shape {x.shape}; expected {expected}")
    if x.shape[0] == 0:
        raise SkvisError(f"{what} has shape {x.shape}, no frames; expected {expected}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise SkvisError(f"{what} has dtype {x.dtype}; expected real numbers")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        t, j, _ = np.argwhere(bad)[0]
        raise SkvisError(
            f"{what} of shape {x.shape} has {int(bad.sum())} non-finite values "
            f"(first at frame {t}, joint {j} {topology.joint_names[j]!r}); expected finite "
            "coordinates in metres"
        )
    return x


def _check_constraints(constraints: ConstraintSet) -> ConstraintSet:
    if not isinstance(constraints, ConstraintSet):
        raise SkvisError(
            f"expected a ConstraintSet from anatomical_constraints(), got "
            f"{type(constraints).__name__}"
        )
    return constraints


# The most iterations a solver may be asked for (a bound on the work of one call).
_MAX_ITER = 1_000_000


def _positive(value: object, what: str, expected: str) -> float:
    """A positive finite real number (bools refused), else SkvisError naming ``what``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise SkvisError(f"{what} = {value!r}; expected {expected}")
    v = float(value)
    if not (np.isfinite(v) and v > 0.0):
        raise SkvisError(f"{what} = {value!r}; expected {expected}")
    return v


def _count(value: object, what: str, lo: int, hi: int) -> int:
    """An int in [lo, hi] (bools refused), else SkvisError naming ``what``."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or not lo <= value <= hi
    ):
        raise SkvisError(f"{what} = {value!r}; expected an int from {lo} to {hi}")
    return int(value)


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise SkvisError(f"{what} = {value!r}; expected True or False")
    return bool(value)


def _check_topology(topology: object) -> Topology:
    if not isinstance(topology, Topology):
        raise SkvisError(f"expected a Topology, got {type(topology).__name__}")
    return topology


def _reference(
    x: NDArray, constraints: ConstraintSet, reference_lengths: ArrayLike | None
) -> NDArray:
    topo = constraints.topology
    if reference_lengths is None:
        ref = _bone_lengths(x, topo).mean(axis=0)
    else:
        try:
            ref = np.asarray(reference_lengths, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise SkvisError(
                f"reference_lengths: cannot be read as numbers ({exc}); expected "
                f"({topo.num_bones},) lengths in metres"
            ) from None
        if ref.shape != (topo.num_bones,):
            raise SkvisError(
                f"reference_lengths has shape {ref.shape}; expected ({topo.num_bones},), one "
                f"length in metres per bone of topology {topo.name!r}"
            )
    bad = ~(np.isfinite(ref) & (ref > 0))
    if bad.any():
        b = int(np.argmax(bad))
        p, c = topo.bones[b]
        raise SkvisError(
            f"reference length of bone {b} ({topo.joint_names[p]}-{topo.joint_names[c]}) is "
            f"{ref[b]!r}; expected a positive finite length in metres"
        )
    return ref


def _bone_lengths(x: NDArray, topology: Topology) -> NDArray:
    bones = np.asarray(topology.bones, dtype=np.intp).reshape(-1, 2)
    return np.linalg.norm(x[:, bones[:, 1]] - x[:, bones[:, 0]], axis=-1)


def reference_bone_lengths(sequence: ArrayLike, topology: Topology) -> NDArray[np.float64]:
    """Mean length of each bone over the sequence (the paper's reference ``b_ij``).

    Parameters
    ----------
    sequence : array_like, shape (T, J, 3)
        Joint positions in metres.
    topology : Topology

    Returns
    -------
    ndarray, shape (B,)
        Metres, in the order of ``topology.bones``.
    """
    x = _as_sequence(sequence, _check_topology(topology))
    return _bone_lengths(x, topology).mean(axis=0)


# --------------------------------------------------------------------------- residuals


def _angles_deg(u: NDArray, w: NDArray) -> tuple[NDArray, NDArray]:
    """Angle between ``u`` and ``w`` (..., 3) in degrees, and whether it is defined."""
    nu = np.linalg.norm(u, axis=-1)
    nw = np.linalg.norm(w, axis=-1)
    ok = (nu > 1e-12) & (nw > 1e-12)
    cos = np.einsum("...d,...d->...", u, w) / np.where(ok, nu * nw, 1.0)
    # atan2 keeps precision near 0 and 180 degrees where arccos does not.
    sin = np.linalg.norm(np.cross(u, w), axis=-1) / np.where(ok, nu * nw, 1.0)
    return np.degrees(np.arctan2(sin, cos)), ok


def constraint_residuals(
    sequence: ArrayLike,
    constraints: ConstraintSet,
    reference_lengths: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """How far each frame violates each constraint; 0 where it is satisfied.

    Parameters
    ----------
    sequence : array_like, shape (T, J, 3)
        Joint positions in metres.
    constraints : ConstraintSet
        From `anatomical_constraints` for the sequence's topology.
    reference_lengths : array_like, shape (B,), optional
        Bone lengths in metres; default `reference_bone_lengths` of ``sequence``.

    Returns
    -------
    ndarray, shape (T, K)
        Columns in the order of ``constraints.names``: ``|length - reference|`` in metres
        for bones; degrees outside the allowed range for angles and for the plane
        constraint. An angle with a zero-length arm is undefined and counts as 0 degrees;
        a pelvis with collinear hips has no normal, lies on the boundary and counts as
        satisfied.
    """
    constraints = _check_constraints(constraints)
    x = _as_sequence(sequence, constraints.topology)
    ref = _reference(x, constraints, reference_lengths)
    out = np.zeros((x.shape[0], len(constraints)))
    lengths = None
    for k, con in enumerate(constraints):
        j = con.joints
        if con.kind == "bone":
            if lengths is None:
                lengths = _bone_lengths(x, constraints.topology)
            out[:, k] = np.abs(lengths[:, con.bone] - ref[con.bone])
            continue
        lo, hi = con.limits  # type: ignore[misc]
        if con.kind == "angle":
            ang, ok = _angles_deg(x[:, j[0]] - x[:, j[1]], x[:, j[2]] - x[:, j[1]])
            ang = np.where(ok, ang, 0.0)
        else:
            sb = x[:, j[0]]
            n = np.cross(x[:, j[1]] - sb, x[:, j[2]] - sb)
            ang, ok = _angles_deg(n, x[:, j[3]] - sb)
            ang = np.where(ok, ang, 90.0)
        out[:, k] = np.maximum(lo - ang, 0.0) + np.maximum(ang - hi, 0.0)
    return out


# --------------------------------------------------------------------------- projection
#
# Eq 14 per frame: minimise f = 0.5 * |x - x0|^2 over the joint positions x (J, 3) subject
# to every bone keeping its reference length and the angle and plane inequalities.
#
# Three solvers, tried in turn. `project` runs the compiled one first (`_sqp.py`, numba):
# a Newton SQP per frame in joint space whose KKT matrix is factored by block elimination
# over the skeleton's tree, O(J) small blocks per iteration, with the exact Hessian
# (plane row included; see that module's docstring). Frames it does not finish (or all,
# where numba is missing) go to the batched numpy solvers below, what they leave to one
# longer compiled run, and what that leaves to SLSQP.
#
# The batched solvers work in bone coordinates: the root position r and one unit direction u_b per
# bone, x = FK(r, u) with x_child = x_parent + L_b u_b. That map is a bijection between
# the poses with exact bone lengths and R^3 x (S^2)^B, so the bone constraints hold by
# construction and the problem becomes one on a product of spheres with a handful of
# inequalities, each a polynomial in the u's:
#   angle  h = s * (cos(bound) - sa sc u_a . u_c) >= 0   (sa, sc = +-1 orient the arms)
#   plane  h = s1 s2 s3 * det(u_rh, u_lh, u_sm) >= 0     (eqs 12-13 for unit vectors)
# It runs a Riemannian Newton SQP, batched over frames (`_newton`): per iteration the
# exact Hessian of the Lagrangian in tangent coordinates (3 + 2B per frame: f's, which is
# gram kron I3 in (r, L u) with gram = F^T F for F the 0/1 root-to-joint path matrix,
# the spheres' curvature, and the angle and plane rows' couplings between bones); an
# active-set loop for the few inequalities; a step along the tangent space mapped back to
# the spheres by normalising each u (a retraction); a backtracking line search on the l1
# merit function f + rho * sum(max(0, -h)). Where that Hessian is not safely positive
# definite (typically on the first iterations, far from a solution) the step is a
# Gauss-Newton one instead, which always is. Near a solution the steps are Newton's and
# converge quadratically: 5-10 iterations for frames perturbed by a few centimetres.
#
# Degenerate frames (collinear, or a joint moved onto another) can start a solver exactly
# at a stationary point of a violated row: an angle of 0 deg, a pelvis with its three
# bones parallel. The row's gradient then vanishes on the spheres (LICQ fails), no step
# can satisfy it, its multiplier overflows, and the frame's own gradient may hold the pose
# there. Every solver therefore starts from `_start_dirs`, which turns the arms of such
# rows a little (and gives bones of zero length a fixed direction); a step that is still
# not finite stops its frame at its last iterate, for the next solver.
#
# `project_slsqp` and the residual checks use the same constraints on joint positions:
#   bones  |x_c - x_p| - L = 0;   angles  s * (cos(bound) - (w_a . w_c) / (L_a L_c)) >= 0
#   plane  ((x_rh - x_sb) x (x_lh - x_sb)) . (x_sm - x_sb) / (L_rh L_lh L_sm) >= 0,
# with w the arm vectors. Every arm is a bone (anatomical_constraints drops constraints
# whose arms are not), so on the poses with exact bone lengths these are the same
# constraints as the bone-coordinate ones and as the paper's unit-vector forms.


@dataclass(frozen=True)
class _Program:
    """A ConstraintSet with reference lengths, compiled to index arrays."""

    J: int
    root: int
    n_eq: int  # number of bones
    parent: NDArray  # (B,)
    child: NDArray  # (B,)
    length: NDArray  # (B,) metres
    path: NDArray  # (J, 1 + B) 0/1: x = path @ [r, L_b u_b]
    gram: NDArray  # (1 + B, 1 + B) Hessian of f in (r, u), to be kron I3
    # inequality rows, angles then planes; in joint indices and in bone indices
    ang_idx: NDArray  # (Ra, 3) arm, vertex, arm
    ang_norm: NDArray  # (Ra,) L_a * L_c
    ang_sign: NDArray  # (Ra,) +1 lower bound, -1 upper bound
    ang_cos: NDArray  # (Ra,) cos of the bound
    ang_bones: NDArray  # (Ra, 2) bones of the two arms
    ang_orient: NDArray  # (Ra,) sa * sc
    plane_idx: NDArray  # (Rp, 4) sb, rh, lh, sm
    plane_norm: NDArray  # (Rp,) L_rh L_lh L_sm
    plane_bones: NDArray  # (Rp, 3)
    plane_orient: NDArray  # (Rp,) s1 s2 s3
    row_constraint: NDArray  # (m,) index into the ConstraintSet of each row

    @property
    def m(self) -> int:
        return len(self.row_constraint)

    @property
    def n_ineq(self) -> int:
        return self.m - self.n_eq


def _compile(constraints: ConstraintSet, ref: NDArray) -> _Program:
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
    scale = np.concatenate([[1.0], ref])

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
    return _Program(
        J=J,
        root=topo.root,
        n_eq=B,
        parent=parent,
        child=child,
        length=np.asarray(ref, dtype=np.float64),
        path=path,
        gram=scale[:, None] * (path.T @ path) * scale[None, :],
        ang_idx=np.array([a[0] for a in ang], dtype=np.intp).reshape(-1, 3),
        ang_norm=np.array([a[1] for a in ang], dtype=np.float64),
        ang_sign=np.array([a[2] for a in ang], dtype=np.float64),
        ang_cos=np.array([a[3] for a in ang], dtype=np.float64),
        ang_bones=np.array([a[4] for a in ang], dtype=np.intp).reshape(-1, 2),
        ang_orient=np.array([a[5] for a in ang], dtype=np.float64),
        plane_idx=np.array([p[0] for p in plane], dtype=np.intp).reshape(-1, 4),
        plane_norm=np.array([p[1] for p in plane], dtype=np.float64),
        plane_bones=np.array([p[2] for p in plane], dtype=np.intp).reshape(-1, 3),
        plane_orient=np.array([p[3] for p in plane], dtype=np.float64),
        row_constraint=np.array(rows + [a[6] for a in ang] + [p[4] for p in plane], dtype=np.intp),
    )


@functools.lru_cache(maxsize=32)
def _program_cached(constraints: ConstraintSet, ref: bytes) -> tuple[_Program, _sqp.Plan]:
    prog = _compile(constraints, np.frombuffer(ref, dtype=np.float64).copy())
    return prog, _sqp.plan(prog)


def _program(constraints: ConstraintSet, ref: NDArray) -> tuple[_Program, _sqp.Plan]:
    """`_compile` and `_sqp.plan` of a constraint set and reference lengths, kept for the
    next call with the same ones (as activation maximization makes, one per step): they
    cost about a tenth of a projection. Callers must not write into them."""
    return _program_cached(constraints, np.ascontiguousarray(ref, dtype=np.float64).tobytes())


def _evaluate(x: NDArray, prog: _Program, jacobian: bool = True) -> tuple[NDArray, NDArray]:
    """Constraint rows on joint positions x (T, J, 3): values ``c`` (T, m), bones first,
    and if asked their gradients ``A`` (T, m, J, 3). Equalities are ``c = 0``,
    inequalities ``c >= 0``."""
    T, J, _ = x.shape
    nb, na = prog.n_eq, len(prog.ang_idx)
    L = prog.length
    d = x[:, prog.child] - x[:, prog.parent]  # (T, B, 3)
    dn = np.sqrt(np.einsum("tbd,tbd->tb", d, d))
    c_bone = dn - L
    a, v, cc = prog.ang_idx.T
    u = x[:, a] - x[:, v]
    w = x[:, cc] - x[:, v]
    s_n = prog.ang_sign / prog.ang_norm
    c_ang = prog.ang_sign * prog.ang_cos - s_n * np.einsum("trd,trd->tr", u, w)
    sb, rh, lh, sm = prog.plane_idx.T
    pa = x[:, rh] - x[:, sb]
    pb = x[:, lh] - x[:, sb]
    pc = x[:, sm] - x[:, sb]
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
    ra = nb + np.arange(na)
    sn = s_n[:, None]
    A[:, ra, a] = -sn * w
    A[:, ra, cc] = -sn * u
    A[:, ra, v] = sn * (u + w)
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


def _violation(x: NDArray, prog: _Program) -> NDArray:
    """Per frame, the largest violation: bones in metres, the rest in their row units."""
    c, _ = _evaluate(x, prog, jacobian=False)
    ineq = np.maximum(-c[:, prog.n_eq :], 0.0)
    return np.concatenate([np.abs(c[:, : prog.n_eq]), ineq], axis=1).max(axis=1, initial=0.0)


# Fixed, spread-out directions for bones of zero length, whose direction is undefined:
# any direction is as close as any other, and different ones keep joints apart.
def _fallback_dirs(n: int) -> NDArray:
    ang = np.arange(n) * 2.399963  # the golden angle
    d = np.stack([np.cos(ang), np.full(n, 0.5), np.sin(ang)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _unit(v: NDArray, fallback: NDArray) -> NDArray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(n > 1e-12, v / np.where(n > 1e-12, n, 1.0), fallback)


# How far (radians) `_start_dirs` turns the arms of a row stuck at a stationary point.
_TILT = 0.1


def _start_dirs(x0: NDArray, prog: _Program) -> NDArray:
    """Unit bone directions (T, B, 3) where every solver starts: each bone's direction in
    the frame, a fixed one (`_fallback_dirs`) for a bone of zero length, and the arms of
    the rows stuck at a stationary point turned a little (see `_stuck_rows`)."""
    B = len(prog.child)
    u = _unit(x0[:, prog.child] - x0[:, prog.parent], _fallback_dirs(B)[None])
    if prog.n_ineq == 0:
        return u
    # Another spread of fixed directions per round (the first B of the sequence are the
    # fallback ones), in case a turn happened to keep two arms parallel.
    turns = _fallback_dirs(4 * B)[B:].reshape(3, B, 3)
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
        d = _unit(d, _tangent_basis(ub)[..., 0])
        u[frames[tb], b] = _unit(ub + _TILT * d, ub)
    return u


def _stuck_rows(u: NDArray, prog: _Program) -> NDArray:
    """Which inequality rows (T, m_in) are violated (or about to be) at a stationary point
    on the spheres: an angle of 0 or 180 degrees, a plane row with its three bones
    parallel (a collinear pose, a joint moved onto another). There the row's gradient
    vanishes on the tangent spaces, so no Newton step can satisfy it (its multiplier
    overflows) while the frame's own gradient can hold the pose there exactly."""
    h, _ = _ineq(u, prog, jacobian=False)
    # |gradient on the tangent spaces|^2 (`_ineq`'s gradients less their radial parts):
    # an angle row, 2 (1 - cos^2) with cos = u_a . u_c; the plane row, with its gradients
    # u2 x u3, u3 x u1, u1 x u2 whose radial parts are all det(u1, u2, u3),
    # their squared norms summed less 3 det^2.
    ua, uc = u[:, prog.ang_bones[:, 0]], u[:, prog.ang_bones[:, 1]]
    g_ang = 2.0 * (1.0 - np.einsum("trd,trd->tr", ua, uc) ** 2)
    p1, p2, p3 = (u[:, prog.plane_bones[:, i]] for i in range(3))
    c12 = _cross(p1, p2)
    det = np.einsum("trd,trd->tr", c12, p3)
    g_pl = sum(np.einsum("trd,trd->tr", c, c) for c in (c12, _cross(p2, p3), _cross(p3, p1)))
    grad2 = np.concatenate([g_ang, g_pl - 3.0 * det**2], axis=1)
    return (h < 1e-6) & (grad2 < (0.5 * _TILT) ** 2)


def _unstick(x: NDArray, prog: _Program) -> NDArray:
    """Joint positions with the bones of zero length pulled apart (see `_fallback_dirs`)
    and the stuck rows' arms turned as in `_start_dirs`; the other bones keep their
    lengths and directions."""
    bones = x[:, prog.child] - x[:, prog.parent]
    d = np.maximum(np.linalg.norm(bones, axis=-1), 1e-3 * prog.length)
    z = d[..., None] * _start_dirs(x, prog)
    moved = (np.abs(z - bones) > 1e-12 * prog.length[:, None]).any(axis=(1, 2))
    if not moved.any():
        return x
    x = x.copy()
    x[moved] = prog.path @ np.concatenate([x[moved, prog.root][:, None], z[moved]], axis=1)
    return x


def _fk(r: NDArray, u: NDArray, prog: _Program) -> NDArray:
    """Joint positions (T, J, 3) from root positions (T, 3) and bone directions (T, B, 3)."""
    z = np.concatenate([r[:, None], prog.length[:, None] * u], axis=1)
    return prog.path @ z


def _ineq(u: NDArray, prog: _Program, jacobian: bool = True) -> tuple[NDArray, NDArray]:
    """Inequality rows in bone coordinates: values (T, m_in) and, if asked, gradients
    (T, m_in, B, 3)."""
    T, B, _ = u.shape
    ua, uc = u[:, prog.ang_bones[:, 0]], u[:, prog.ang_bones[:, 1]]
    so = prog.ang_sign * prog.ang_orient
    h_ang = prog.ang_sign * prog.ang_cos - so * np.einsum("trd,trd->tr", ua, uc)
    p1, p2, p3 = (u[:, prog.plane_bones[:, i]] for i in range(3))
    po = prog.plane_orient
    c12 = _cross(p1, p2)
    h_plane = po * np.einsum("trd,trd->tr", c12, p3)
    if not jacobian:
        return np.concatenate([h_ang, h_plane], axis=1), np.empty(0)
    na = len(so)
    dh = np.zeros((T, na + len(po), B, 3))
    ra = np.arange(na)
    # The arms of an angle are two different bones, so these writes do not collide.
    dh[:, ra, prog.ang_bones[:, 0]] = -so[:, None] * uc
    dh[:, ra, prog.ang_bones[:, 1]] = -so[:, None] * ua
    rp = na + np.arange(len(po))
    pov = po[:, None]
    dh[:, rp, prog.plane_bones[:, 0]] = pov * _cross(p2, p3)
    dh[:, rp, prog.plane_bones[:, 1]] = pov * _cross(p3, p1)
    dh[:, rp, prog.plane_bones[:, 2]] = pov * c12
    return np.concatenate([h_ang, h_plane], axis=1), dh


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


def _modified_cholesky(H: NDArray, delta: float) -> tuple[NDArray, NDArray]:
    """Lower Cholesky factors (T, n, n) of a positive definite modification of each H.

    A pivot that is negative, below ``delta`` or too small for its column is replaced,
    as in Gill and Murray; where H is comfortably positive definite the factor is its
    exact Cholesky factor. Returns the factors and, per matrix, whether any pivot was
    replaced. Vectorised over the stack one column at a time: for these sizes faster
    than one LAPACK call per matrix, and it says which matrices were not definite.
    """
    T, n, _ = H.shape
    Lf = np.zeros_like(H)
    modified = np.zeros(T, dtype=bool)
    beta2 = np.maximum(np.abs(np.einsum("tii->ti", H)).max(axis=1), 1.0)
    for k in range(n):
        row = Lf[:, k, :k]
        d = H[:, k, k] - np.einsum("ti,ti->t", row, row)
        col = H[:, k + 1 :, k] - (Lf[:, k + 1 :, :k] @ row[..., None])[..., 0]
        big = np.abs(col).max(axis=1, initial=0.0)
        d_ok = np.maximum(np.maximum(np.abs(d), delta), big**2 / beta2)
        modified |= d_ok != d
        lkk = np.sqrt(d_ok)
        Lf[:, k, k] = lkk
        Lf[:, k + 1 :, k] = col / lkk[:, None]
    return Lf, modified


def _solve_definite(
    H: NDArray, Hgn: NDArray, kappa: NDArray, rhs: NDArray, try_exact: NDArray
) -> tuple[NDArray, NDArray]:
    """Per frame, solve ``H z = rhs`` where H is safely positive definite, else ``Hg z = rhs``.

    ``Hg = Hgn + max(-kappa, 0)`` on the bones' diagonal: the Gauss-Newton Hessian plus
    the spheres' curvature where it is positive, positive definite by construction.
    Where ``try_exact``, H, else H plus up to 0.1 I, is used if its Cholesky factor has
    no pivot under 1e-3 (the coordinates are scaled to a unit diagonal); else Hg. One
    LAPACK call per frame and try (``potrf`` reports failure per matrix; numpy's batched
    Cholesky only for the whole stack). Returns the solutions (T, n, k) and which frames
    did not use H itself.
    """
    T, n, _ = H.shape
    Z = np.empty_like(rhs)
    modified = np.ones(T, dtype=bool)
    bump = np.repeat(np.maximum(-kappa, 0.0), 2, axis=1)  # (T, n - 3)
    diag = np.arange(n)
    for t in range(T):
        if try_exact[t]:
            # Near a solution the exact Hessian may miss definiteness narrowly (a bound
            # pressing on a bone across a flat direction): a small multiple of I added
            # keeps most of Newton's speed where Gauss-Newton would crawl.
            for shift in (0.0, 1e-3, 1e-2, 1e-1):
                Ht = H[t]
                if shift:
                    Ht = Ht.copy()
                    Ht[diag, diag] += shift
                c, info = _potrf(Ht, lower=1, clean=0)
                if info == 0 and c.diagonal().min() > 0.03:
                    Z[t] = _potrs(c, rhs[t], lower=1)[0]
                    modified[t] = shift > 0.0
                    break
            else:
                shift = -1.0
            if shift >= 0.0:
                continue
        Hg = Hgn[t].copy()
        Hg[np.arange(3, n), np.arange(3, n)] += bump[t]
        c, info = _potrf(Hg, lower=1, clean=0)
        if info != 0:  # only by rounding on a degenerate frame
            Lf, _ = _modified_cholesky(Hg[None], 1e-3)
            Z[t] = _cho_solve(Lf, rhs[t][None])[0]
            continue
        Z[t] = _potrs(c, rhs[t], lower=1)[0]
    return Z, modified


def _cho_solve(Lf: NDArray, b: NDArray) -> NDArray:
    """Solve ``(L L^T) x = b`` for stacks: L (T, n, n) lower triangular, b (T, n, k)."""
    n = Lf.shape[1]
    y = np.empty_like(b)
    for i in range(n):
        y[:, i] = (b[:, i] - (Lf[:, i : i + 1, :i] @ y[:, :i])[:, 0]) / Lf[:, i, i, None]
    x = np.empty_like(b)
    for i in range(n - 1, -1, -1):
        acc = y[:, i] - (Lf[:, i + 1 :, i][:, None] @ x[:, i + 1 :])[:, 0]
        x[:, i] = acc / Lf[:, i, i, None]
    return x


def _newton(
    x0: NDArray, prog: _Program, tol: float, max_iter: int
) -> tuple[NDArray, NDArray, NDArray]:
    """Batched Riemannian Newton SQP in bone coordinates (see the comment above).

    Returns the poses (T, J, 3), converged (T,) and the iterations taken (T,). A frame
    has converged when its inequalities hold to ``tol`` and its last full step moved no
    joint more than ``tol`` metres, i.e. it is a KKT point of eq 14.
    """
    T, J, _ = x0.shape
    B, mi = prog.n_eq, prog.n_ineq
    n = 3 + 2 * B
    L = prog.length
    # Tangent coordinates: 3 for the root, then 2 per bone; grp maps each to its column
    # of the (r, u) Hessian coefficients.
    grp = np.concatenate([np.zeros(3, dtype=np.intp), 1 + np.repeat(np.arange(B), 2)])
    pair = (grp[:, None] * (1 + B) + grp[None, :]).ravel()
    tan = np.arange(3, n)
    # Scale the coordinates so f's Hessian has a unit diagonal: a bone's coordinates are
    # angles whose entries scale with L^2 (a thumb 0.002, the root 25).
    dsc = np.sqrt(np.diag(prog.gram))[grp]
    dss = dsc[:, None] * dsc[None, :]
    gram_s = (prog.gram.ravel()[pair].reshape(n, n)) / dss
    so = prog.ang_sign * prog.ang_orient
    na = len(so)

    # Start from each bone's direction in the frame (`_start_dirs`) and the frame's root:
    # bone lengths hold from the first iterate on.
    u = _start_dirs(x0, prog)
    r = x0[:, prog.root].copy()
    mu = np.zeros((T, mi))
    work = np.zeros((T, mi), dtype=bool)
    converged = np.zeros(T, dtype=bool)
    exact = np.zeros(T, dtype=bool)
    last = np.full(T, np.inf)  # each frame's previous step, metres
    iters = np.zeros(T, dtype=np.intp)
    live = np.arange(T)
    for _ in range(max_iter):
        if live.size == 0:
            break
        nl = live.size
        ul, rl, x0l, mul = u[live], r[live], x0[live], mu[live]
        e = _fk(rl, ul, prog) - x0l
        gz = prog.path.T @ e  # (nl, 1 + B, 3)
        g_r, g_u = gz[:, 0], L[:, None] * gz[:, 1:]
        h, dh = _ineq(ul, prog)
        # The spheres' curvature in the Hessian of the Lagrangian f - mu.h.
        kappa = np.einsum("tbd,tbd->tb", ul, g_u - np.einsum("tm,tmbd->tbd", mul, dh))
        E = _tangent_basis(ul)  # (nl, B, 3, 2)
        Et = E.transpose(0, 1, 3, 2)  # the basis vectors as rows (nl, B, 2, 3)
        V = np.concatenate([np.broadcast_to(np.eye(3), (nl, 3, 3)), Et.reshape(nl, 2 * B, 3)], 1)
        VV = V @ V.transpose(0, 2, 1)
        # Gauss-Newton part: f is quadratic in (r, L u) with Hessian gram kron I3.
        Hgn = gram_s * VV
        H = Hgn.copy()
        H[:, tan, tan] -= np.repeat(kappa, 2, axis=1) / dsc[tan] ** 2
        # The angle rows are bilinear in two bones' directions, the plane row trilinear.
        for i, (ba, bc) in enumerate(prog.ang_bones):
            w = (mul[:, i] * so[i])[:, None, None]
            sa, sc = slice(3 + 2 * ba, 5 + 2 * ba), slice(3 + 2 * bc, 5 + 2 * bc)
            blk = w * (Et[:, ba] @ E[:, bc]) / dss[sa, sc]
            H[:, sa, sc] += blk
            H[:, sc, sa] += blk.transpose(0, 2, 1)
        for i, (b1, b2, b3) in enumerate(prog.plane_bones):
            c = -(mul[:, na + i] * prog.plane_orient[i])[:, None, None]
            w1, w2, w3 = ul[:, b1, None], ul[:, b2, None], ul[:, b3, None]
            E1, E2, E3 = Et[:, b1], Et[:, b2], Et[:, b3]
            for (bi, Ei), (bj, cr) in (
                ((b1, E1), (b2, _cross(E2, w3))),  # det(xi1, xi2, u3)
                ((b1, E1), (b3, _cross(w2, E3))),  # det(xi1, u2, xi3)
                ((b2, E2), (b3, _cross(E3, w1))),  # det(u1, xi2, xi3)
            ):
                si, sj = slice(3 + 2 * bi, 5 + 2 * bi), slice(3 + 2 * bj, 5 + 2 * bj)
                blk = c * (Ei @ cr.transpose(0, 2, 1)) / dss[si, sj]
                H[:, si, sj] += blk
                H[:, sj, si] += blk.transpose(0, 2, 1)
        g = np.concatenate([g_r, (Et @ g_u[..., None])[..., 0].reshape(nl, 2 * B)], 1) / dsc
        a = np.zeros((nl, mi, n))
        a[:, :, 3:] = (Et[:, None] @ dh[..., None]).reshape(nl, mi, 2 * B)
        a /= dsc
        # Only the Hessian on the null space of the active rows matters; across a bound
        # that holds a bone back (a wrist at 90 deg) it is often indefinite. Adding
        # c a a^T for the rows W0 expected in the working set fixes that without changing
        # the step while they stay in it (a.eta = -h there); it shifts their multipliers
        # by -c h, undone below.
        w0 = work[live] | (h < 0.0)
        c_aug = np.where(w0, 1.0 / np.maximum(np.einsum("tin,tin->ti", a, a), 1e-300), 0.0)
        aug = (a.transpose(0, 2, 1) * c_aug[:, None]) @ a
        # Far from a solution the exact Hessian is rarely definite: do not try it there.
        rhs = np.concatenate([a.transpose(0, 2, 1), g[..., None]], axis=2)
        Z, modified = _solve_definite(H + aug, Hgn + aug, kappa / dsc[3::2] ** 2, rhs, exact[live])
        G, hh = Z[..., :mi], Z[..., mi]
        S = a @ G
        s = (a @ hh[..., None])[..., 0]
        mu_new, wl = _active_set(S, s, h, w0)
        eta = ((G @ mu_new[..., None])[..., 0] - hh) / dsc
        mu_new = np.where(wl & w0, mu_new + c_aug * h, mu_new)

        xi_r = eta[:, :3]
        xi_u = (E @ eta[:, 3:].reshape(nl, B, 2, 1))[..., 0]
        dx = _fk(xi_r, xi_u, prog)  # the joints' first-order displacements
        step = np.sqrt(np.einsum("tjd,tjd->tj", dx, dx)).max(axis=1)
        # Backtracking on the l1 merit function f + rho * violation.
        # The penalty only needs to exceed the multipliers; one remembered from a first,
        # wild QP would freeze later steps, so it follows the current ones.
        rho_l = 2.0 * mu_new.max(axis=1, initial=0.0) + 1e-12
        viol0 = np.maximum(-h, 0.0).sum(axis=1)
        phi0 = 0.5 * np.einsum("tjd,tjd->t", e, e) + rho_l * viol0
        slope = np.minimum(np.einsum("tjd,tjd->t", e, dx) - rho_l * viol0, 0.0)
        alpha = np.ones(nl)
        u_t = _unit(ul + xi_u, ul)
        r_t = rl + xi_r
        # Near a solution take full Newton steps: the merit test would reject some of them
        # for second-order growth of the violation (the Maratos effect) or for rounding.
        pending = np.nonzero(step > 1e-4)[0]
        for _ls in range(40):
            if pending.size == 0:
                break
            et = _fk(r_t[pending], u_t[pending], prog) - x0l[pending]
            ht, _ = _ineq(u_t[pending], prog)
            phit = 0.5 * np.einsum("tjd,tjd->t", et, et)
            phit += rho_l[pending] * np.maximum(-ht, 0.0).sum(axis=1)
            bad = phit > phi0[pending] + 1e-4 * alpha[pending] * slope[pending]
            pending = pending[bad]
            alpha[pending] *= 0.5
            ap = alpha[pending, None]
            u_t[pending] = _unit(ul[pending] + ap[..., None] * xi_u[pending], ul[pending])
            r_t[pending] = rl[pending] + ap * xi_r[pending]
        # A frame whose step is not finite, or absurdly long (a singular QP: see the
        # comment above `_Program`), stops at its last iterate, unconverged: `project`
        # keeps the best of its solvers' poses.
        finite = np.isfinite(u_t).all(axis=(1, 2)) & np.isfinite(r_t).all(axis=1)
        finite &= np.isfinite(mu_new).all(axis=1) & (step <= _reach(e, L))
        u_t[~finite], r_t[~finite], mu_new[~finite] = ul[~finite], rl[~finite], mul[~finite]
        u[live], r[live] = u_t, r_t
        exact[live] = ~modified | (step < 0.05)
        mu[live] = mul + alpha[:, None] * (mu_new - mul)
        work[live] = wl & (mu_new > 0.0)
        iters[live] += 1
        ht, _ = _ineq(u_t, prog)
        # Done when the step was under tol, or when a full Newton step shrank 20-fold
        # to under 1e-4 m: convergence is quadratic there, so the next step, all the
        # error left, would be ~ step^3 / previous^2 < 2.5e-7 m; not taking it saves an
        # iteration on most frames.
        newton = ~modified & (alpha == 1.0)
        quad = newton & (step <= 1e-4) & (step <= 0.05 * last[live])
        done = ((step <= tol) | quad) & (np.maximum(-ht, 0.0).max(axis=1, initial=0.0) <= tol)
        last[live] = step
        converged[live[done & finite]] = True
        live = live[~done & finite]
    return _fk(r, u, prog), converged, iters


# The fast solver, `_newton_z`: the same SQP, with the linear algebra of a tree. With the
# bone vectors z_b = L_b u_b as variables and the root always at its optimum for them
# (r = mean_j(x0_j - (Pz z)_j), Pz the (J, B) 0/1 joint-to-bone path matrix), f is a
# quadratic 0.5 (z - z0)' (G kron I3) (z - z0), G = Pz' C Pz (C centring, G positive
# definite), and its gradient is Pz' e. Rows, all exact on the spheres |z_b| = L_b:
#   bone   c_b = (|z_b|^2 - L_b^2) / (2 L_b)           gradient u_b, Hessian I3 / L_b
#   angle  h = s cos(bound) - so (z_a . z_c) / (L_a L_c)   Hessian -so/(L_a L_c) I3 off-diag
#   plane  h = po det(z_1, z_2, z_3) / (L_1 L_2 L_3)
# so the Hessian of the Lagrangian f - lambda.c - mu.h is K kron I3 (K = G - diag(lambda/L)
# + the angle couplings, B x B) plus the plane's 9 x 9 block (left out: the plane row is
# weakly curved at the scale of its multiplier, and its frames converge a little slower).
# A step solves the QP over the tangent spaces (u_b . dz_b = 0) with M = K^-1:
# dz = M (A' y - g), the rows' Schur matrix S = A M A' (M o u u' for the bones, whose
# multipliers are then eliminated, leaving the few inequality rows to `_active_set`).
# Where K is not positive definite the step uses G + diag(max(-lambda/L, 0)), which is.
# Frames it does not finish go to `_newton`.


def _newton_z(
    x0: NDArray, prog: _Program, tol: float, max_iter: int
) -> tuple[NDArray, NDArray, NDArray]:
    """Batched Newton SQP in bone vectors with B x B Hessians (see the comment above).

    Returns the poses (T, J, 3), converged (T,) and the iterations taken (T,), like
    `_newton`.
    """
    T, J, _ = x0.shape
    B, mi = prog.n_eq, prog.n_ineq
    L = prog.length
    Pz = prog.path[:, 1:]  # (J, B)
    Pc = Pz - Pz.mean(axis=0)
    G = Pc.T @ Pc
    na = len(prog.ang_bones)
    so = prog.ang_sign * prog.ang_orient
    po = prog.plane_orient
    # Each inequality row touches up to 3 bones: their indices (mi, 3); an angle's third
    # slot repeats its first bone with a zero gradient.
    idx = np.concatenate(
        [
            np.concatenate([prog.ang_bones, prog.ang_bones[:, :1]], axis=1),
            prog.plane_bones,
        ]
    ).reshape(mi, 3)
    idf = idx.ravel()
    scatter = np.zeros((B, 3 * mi))
    scatter[idf, np.arange(3 * mi)] = 1.0
    ba, bc = prog.ang_bones.T
    ang_w = so / (L[ba] * L[bc])
    rb = np.arange(B)

    def rows(u: NDArray) -> tuple[NDArray, NDArray]:
        """Inequality values (t, mi) and gradients in z (t, 3 mi, 3), slot by slot."""
        t = u.shape[0]
        ua, uc = u[:, ba], u[:, bc]
        h_ang = prog.ang_sign * prog.ang_cos - so * np.einsum("trd,trd->tr", ua, uc)
        p1, p2, p3 = (u[:, prog.plane_bones[:, i]] for i in range(3))
        c23, c31, c12 = _cross(p2, p3), _cross(p3, p1), _cross(p1, p2)
        h_pl = po * np.einsum("trd,trd->tr", c12, p3)
        V = np.zeros((t, mi, 3, 3))
        V[:, :na, 0] = -(so / L[ba])[:, None] * uc
        V[:, :na, 1] = -(so / L[bc])[:, None] * ua
        pb = prog.plane_bones
        V[:, na:, 0] = (po / L[pb[:, 0]])[:, None] * c23
        V[:, na:, 1] = (po / L[pb[:, 1]])[:, None] * c31
        V[:, na:, 2] = (po / L[pb[:, 2]])[:, None] * c12
        return np.concatenate([h_ang, h_pl], axis=1), V.reshape(t, 3 * mi, 3)

    def place(u: NDArray, x0t: NDArray) -> tuple[NDArray, NDArray]:
        """Joint positions with the optimal root, and e = x - x0."""
        xz = Pz @ (L[:, None] * u)
        xz += (x0t - xz).mean(axis=1, keepdims=True)
        return xz, xz - x0t

    u = _start_dirs(x0, prog)
    lam = np.zeros((T, B))
    mu = np.zeros((T, mi))
    work = np.zeros((T, mi), dtype=bool)
    converged = np.zeros(T, dtype=bool)
    last = np.full(T, np.inf)
    iters = np.zeros(T, dtype=np.intp)
    live = np.arange(T)
    for _ in range(max_iter):
        if live.size == 0:
            break
        nl = live.size
        ul, x0l, laml, mul = u[live], x0[live], lam[live], mu[live]
        x, e = place(ul, x0l)
        g = Pz.T @ e  # (nl, B, 3)
        h, Vf = rows(ul)
        K = np.broadcast_to(G, (nl, B, B)).copy()
        K[:, rb, rb] -= laml / L
        wk = mul[:, :na] * ang_w
        K[:, ba, bc] += wk
        K[:, bc, ba] += wk
        Lk, info = torch.linalg.cholesky_ex(torch.from_numpy(K))
        M = torch.cholesky_inverse(Lk).numpy()
        indef = info.numpy() != 0
        modified = np.zeros(nl, dtype=bool)
        w0 = work[live] | (h < 0.0)
        dz, yb, yi, wl = _z_step(M, ul, Vf, g, h, w0, idf, scatter)
        if indef.any():
            # Across an active bound K is often indefinite where the QP is not (the bound
            # holds the negative direction back): those frames take the step in tangent
            # coordinates, with the working set's rows added to make it definite; if
            # that is not enough, a Gauss-Newton step.
            bad = np.nonzero(indef)[0]
            r_, ok = _tangent_step(
                K[bad], ul[bad], Vf[bad], g[bad], h[bad], w0[bad], G, idf, scatter
            )
            good = bad[ok]
            dz[good], yb[good], yi[good], wl[good] = (v[ok] for v in r_)
            fb = bad[~ok]
            if fb.size:
                Kg = np.broadcast_to(G, (fb.size, B, B)).copy()
                Kg[:, rb, rb] += np.maximum(-laml[fb] / L, 0.0)
                Mg_ = np.linalg.inv(Kg)
                r_ = _z_step(Mg_, ul[fb], Vf[fb], g[fb], h[fb], w0[fb], idf, scatter)
                dz[fb], yb[fb], yi[fb], wl[fb] = r_
                modified[fb] = True
        dxz = Pz @ dz
        dx = dxz - dxz.mean(axis=1, keepdims=True)
        step = np.sqrt(np.einsum("tjd,tjd->tj", dx, dx)).max(axis=1)

        rho = 2.0 * yi.max(axis=1, initial=0.0) + 1e-12
        viol0 = np.maximum(-h, 0.0).sum(axis=1)
        phi0 = 0.5 * np.einsum("tjd,tjd->t", e, e) + rho * viol0
        slope = np.minimum(np.einsum("tjd,tjd->t", e, dx) - rho * viol0, 0.0)
        alpha = np.ones(nl)
        dv = dz / L[:, None]
        u_t = _unit(ul + dv, ul)
        pending = np.nonzero(step > 1e-4)[0]
        for _ls in range(40):
            if pending.size == 0:
                break
            _, et = place(u_t[pending], x0l[pending])
            ht = rows(u_t[pending])[0]
            phit = 0.5 * np.einsum("tjd,tjd->t", et, et)
            phit += rho[pending] * np.maximum(-ht, 0.0).sum(axis=1)
            bad = phit > phi0[pending] + 1e-4 * alpha[pending] * slope[pending]
            pending = pending[bad]
            alpha[pending] *= 0.5
            ap = alpha[pending, None, None]
            u_t[pending] = _unit(ul[pending] + ap * dv[pending], ul[pending])
        # As in `_newton`: a frame whose step is not finite or absurd stops, unconverged.
        finite = np.isfinite(u_t).all(axis=(1, 2)) & np.isfinite(yb).all(axis=1)
        finite &= np.isfinite(yi).all(axis=1) & (step <= _reach(e, L))
        u_t[~finite], yb[~finite], yi[~finite] = ul[~finite], laml[~finite], mul[~finite]
        u[live] = u_t
        lam[live] = laml + alpha[:, None] * (yb - laml)
        mu[live] = mul + alpha[:, None] * (yi - mul)
        work[live] = wl & (yi > 0.0)
        iters[live] += 1
        ht = rows(u_t)[0]
        newton = ~modified & (alpha == 1.0)
        quad = newton & (step <= 1e-4) & (step <= 0.05 * last[live])
        done = ((step <= tol) | quad) & (np.maximum(-ht, 0.0).max(axis=1, initial=0.0) <= tol)
        last[live] = step
        converged[live[done & finite]] = True
        live = live[~done & finite]
    return place(u, x0)[0], converged, iters


def _reach(e: NDArray, length: NDArray) -> NDArray:
    """Per frame, the longest sensible step (metres) from a pose that is e (T, J, 3) away
    from its frame: 100 times the skeleton's total bone length plus that distance (the
    compiled solver's bound too)."""
    return 100.0 * (length.sum() + np.sqrt(np.einsum("tjd,tjd->tj", e, e)).max(axis=1))


def _z_step(
    M: NDArray, u: NDArray, Vf: NDArray, g: NDArray, h: NDArray, w0: NDArray, idf, scatter
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """One QP step of `_newton_z` for K^-1 = M: (dz, bone and inequality multipliers,
    working set)."""
    nl, B, _ = u.shape
    mi = h.shape[1]
    # The rows' Schur matrix, blocks: bones (b), inequalities (i).
    Sbb = M * (u @ u.transpose(0, 2, 1))
    MI = M[:, :, idf]  # (nl, B, 3 mi)
    Sbi = (MI * (u @ Vf.transpose(0, 2, 1))).reshape(nl, B, mi, 3).sum(axis=3)
    MII = MI[:, idf, :]
    Sii = (MII * (Vf @ Vf.transpose(0, 2, 1))).reshape(nl, mi, 3, mi, 3).sum(axis=(2, 4))
    Mg = M @ g
    sb = np.einsum("tbd,tbd->tb", u, Mg)
    si = np.einsum("tqd,tqd->tq", Vf, Mg[:, idf]).reshape(nl, mi, 3).sum(axis=2)
    rhs = np.concatenate([Sbi, sb[..., None]], axis=2)
    Ls, info = torch.linalg.cholesky_ex(torch.from_numpy(Sbb))
    X = torch.cholesky_solve(torch.from_numpy(rhs), Ls).numpy()
    bad = np.nonzero(info.numpy() != 0)[0]
    if bad.size:  # an indefinite K (those frames' steps are taken again by the caller)
        Sb, rb = np.nan_to_num(Sbb[bad]), np.nan_to_num(rhs[bad])
        try:
            X[bad] = np.linalg.solve(Sb + 1e-14 * np.eye(B), rb)
        except np.linalg.LinAlgError:  # exactly singular: least squares instead
            X[bad] = np.linalg.pinv(Sb, hermitian=True) @ rb
    Xi, xb = X[..., :mi], X[..., mi]
    St = Sii - Sbi.transpose(0, 2, 1) @ Xi
    st = si - np.einsum("tbi,tb->ti", Sbi, xb)
    yi, wl = _active_set(St, st, h, w0)
    yb = xb - (Xi @ yi[..., None])[..., 0]
    aty = yb[..., None] * u + _scatter_rows(yi, Vf, idf, B)
    return M @ (aty - g), yb, yi, wl


def _tangent_step(
    K: NDArray,
    u: NDArray,
    Vf: NDArray,
    g: NDArray,
    h: NDArray,
    w0: NDArray,
    G: NDArray,
    idf,
    scatter,
) -> tuple[tuple[NDArray, NDArray, NDArray, NDArray], NDArray]:
    """`_z_step` in tangent coordinates (2 per bone) for an indefinite K: the Hessian
    E' (K kron I3) E plus c a a' for the rows expected in the working set (which does
    not change the step while they stay in it). Returns the step as `_z_step` does and,
    per frame, whether that Hessian was (made) positive definite."""
    n, B, _ = u.shape
    mi = h.shape[1]
    E = _tangent_basis(u)  # (n, B, 3, 2)
    Ef = E.transpose(0, 1, 3, 2).reshape(n, 2 * B, 3)  # the basis vectors as rows
    H = np.repeat(np.repeat(K, 2, axis=1), 2, axis=2) * (Ef @ Ef.transpose(0, 2, 1))
    d = np.repeat(np.sqrt(np.diag(G)), 2)
    proj = (Ef[:, idf.reshape(-1, 1) * 2 + np.arange(2)] @ Vf[..., None])[..., 0]
    a = np.zeros((n, mi, B, 2))
    for k in range(3):
        a[:, np.arange(mi), idf[k::3]] += proj[:, k::3]
    a = a.reshape(n, mi, 2 * B) / d
    H /= d[:, None] * d[None, :]
    gt = np.einsum("tbd,tbdk->tbk", g, E).reshape(n, 2 * B) / d
    c_aug = np.where(w0, 1.0 / np.maximum(np.einsum("tin,tin->ti", a, a), 1e-300), 0.0)
    H += (a.transpose(0, 2, 1) * c_aug[:, None]) @ a
    Ht = torch.from_numpy(H)
    Lc, info = torch.linalg.cholesky_ex(Ht)
    ok = (info.numpy() == 0) & (torch.diagonal(Lc, dim1=1, dim2=2).amin(1).numpy() > 0.03)
    for shift in (1e-3, 1e-2, 1e-1):
        if ok.all():
            break
        nb = np.nonzero(~ok)[0]
        L2, info = torch.linalg.cholesky_ex(Ht[nb] + shift * torch.eye(2 * B, dtype=Ht.dtype))
        fine = (info.numpy() == 0) & (torch.diagonal(L2, dim1=1, dim2=2).amin(1).numpy() > 0.03)
        Lc[nb[fine]] = L2[fine]
        ok[nb[fine]] = True
    rhs = np.concatenate([a.transpose(0, 2, 1), gt[..., None]], axis=2)
    Z = torch.cholesky_solve(torch.from_numpy(rhs), Lc).numpy()
    Gm, hh = Z[..., :mi], Z[..., mi]
    S = a @ Gm
    s = (a @ hh[..., None])[..., 0]
    yi, wl = _active_set(S, s, h, w0)
    eta = ((Gm @ yi[..., None])[..., 0] - hh) / d
    yi = np.where(wl & w0, yi + c_aug * h, yi)
    dz = (E @ eta.reshape(n, B, 2, 1))[..., 0]
    # The bones' multipliers from stationarity along u: g + K dz - lam u - A_i' mu = 0.
    res = g + K @ dz - _scatter_rows(yi, Vf, idf, B)
    yb = np.einsum("tbd,tbd->tb", u, res)
    return (dz, yb, yi, wl), ok


def _scatter_rows(y: NDArray, Vf: NDArray, idf: NDArray, B: int) -> NDArray:
    """A_i' y for the inequality rows: (t, B, 3) from multipliers (t, mi) and gradient
    slots Vf (t, 3 mi, 3) on bones idf (3 mi,)."""
    t, mi = y.shape
    out = np.zeros((t, B, 3))
    yv = y[..., None, None] * Vf.reshape(t, mi, 3, 3)
    for k in range(3):
        np.add.at(out, (slice(None), idf[k::3]), yv[:, :, k])
    return out


def _active_set(S: NDArray, s: NDArray, h: NDArray, work: NDArray) -> tuple[NDArray, NDArray]:
    """Multipliers (T, m) and working set (T, m) of the inequality QP of one Newton step.

    With G = H^-1 a^T and hh = H^-1 g, the step is eta = G mu - hh; S = a G and s = a hh,
    so the linearised rows are h + S mu - s. Rows in the working set are held at zero, the
    others must stay >= 0, multipliers must be >= 0. Each pass adds the most violated row,
    else drops the most negative multiplier: a few passes for a few rows.
    """
    T, m = h.shape
    eye_m = np.eye(m)
    wl = work.copy()
    # Jacobi scaling: rows of short bones have far larger entries than the others.
    dg = np.sqrt(np.maximum(np.einsum("tmm->tm", S), 1e-300))
    Sn = S / (dg[:, :, None] * dg[:, None, :])
    mu = np.zeros((T, m))
    done = np.zeros(T, dtype=bool)
    for _ in range(2 * m + 2):
        Sw = np.where(wl[:, :, None] & wl[:, None, :], Sn, eye_m) + 1e-12 * eye_m
        rw = np.where(wl, (s - h) / dg, 0.0)
        mu_new = np.linalg.solve(Sw, rw[..., None])[..., 0] / dg
        mu = np.where(done[:, None], mu, mu_new)
        lin = h + (S @ mu[..., None])[..., 0] - s
        viol = np.where(wl, np.inf, lin)
        neg = np.where(wl, mu, np.inf)
        add = (viol.min(axis=1, initial=np.inf) < -1e-12) & ~done
        drop = (neg.min(axis=1, initial=np.inf) < 0.0) & ~add & ~done
        done |= ~add & ~drop
        if done.all():
            break
        ra = np.nonzero(add)[0]
        wl[ra, np.argmin(viol[ra], axis=1)] = True
        rd = np.nonzero(drop)[0]
        wl[rd, np.argmin(neg[rd], axis=1)] = False
    return mu, wl


@dataclass(frozen=True)
class ProjectionInfo:
    """How `project` got each frame's pose.

    Attributes
    ----------
    unchanged : ndarray of bool, shape (T,)
        The frame was already valid (to ``tol``) and is returned as it is.
    iterations : ndarray of int, shape (T,)
        Newton iterations taken (0 for unchanged frames).
    fallback : ndarray of bool, shape (T,)
        No Newton solver converged in ``max_iter`` iterations and SciPy's SLSQP, started
        from the best of their last iterates, finished the frame (the better of its pose
        and theirs is kept).
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
    return_info: Literal[True],
) -> tuple[NDArray[np.floating], ProjectionInfo]: ...


def project(
    sequence: ArrayLike,
    constraints: ConstraintSet,
    reference_lengths: ArrayLike | None = None,
    *,
    tol: float = 1e-6,
    max_iter: int = 100,
    return_info: bool = False,
) -> NDArray[np.floating] | tuple[NDArray[np.floating], ProjectionInfo]:
    """Eq 14: the valid pose nearest to each frame, for a whole sequence at once.

    Each frame ``x0`` (J, 3) is replaced by the pose ``x`` that minimises
    ``sum_j |x_j - x0_j|^2`` among the poses whose bones have their reference lengths and
    whose angles lie in their ranges. Frames are independent. Each is solved by a
    compiled Newton SQP (`skvis_widgets._sqp`: joint space, exact Hessian, a block
    factorisation along the skeleton's tree); a frame it does not finish in ``max_iter``
    iterations goes to batched numpy solvers (`_newton_z`, then `_newton`; see the
    comments in the source), then to SLSQP. A 300-frame, 25-joint sequence takes about
    20 ms (``benchmarks/bench_projection.py``). The first call in a new environment
    compiles the solver (some seconds; numba caches it on disk).

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
        finite number, ``max_iter`` not an int from 1 to 1,000,000, or ``return_info``
        not a bool. Also, naming the frames, where no solver found a pose that holds
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
    constraints = _check_constraints(constraints)
    tol = _positive(tol, "tol", "a positive finite number of metres")
    max_iter = _count(max_iter, "max_iter", 1, _MAX_ITER)
    return_info = _flag(return_info, "return_info")
    arr = np.asarray(sequence) if not isinstance(sequence, np.ndarray) else sequence
    x0 = _as_sequence(arr, constraints.topology)
    ref = _reference(x0, constraints, reference_lengths)
    prog, pl = _program(constraints, ref)
    T = x0.shape[0]

    out = x0.copy()
    unchanged = _violation(x0, prog) <= tol
    iterations = np.zeros(T, dtype=np.intp)
    fallback = np.zeros(T, dtype=bool)
    todo = np.nonzero(~unchanged)[0]
    if todo.size:
        # The compiled solver first (numpy's batched one where numba is missing); the
        # frames it leaves, the batched bone-coordinate one; then one run ten times
        # longer (a frame with every joint near one line, nearly symmetric about it, can
        # take hundreds of iterations along a flat valley); then SLSQP. Each frame keeps
        # the best pose any of them found (`_better`): one that gave up on a singular
        # step keeps its last finite iterate, so no NaN gets through.
        xt = x0[todo]
        compiled = _sqp.available() and _USE_COMPILED
        with np.errstate(all="ignore"):  # overflow on a singular step is caught after it
            x, conv, it = _solve_all(xt, prog, pl, tol, max_iter, compiled)
            for k in np.nonzero(~conv)[0]:
                fallback[todo[k]] = True
                start = x[k] if np.isfinite(x[k]).all() else _unstick(xt[k : k + 1], prog)[0]
                slsqp = _exact_lengths(_slsqp_frame(xt[k], prog, start, 1e-10, 500)[0], prog)
                x[k] = _better(xt[k][None], x[k][None], slsqp[None], prog)[0]
        out[todo] = x
        iterations[todo] = it
    viol = _violation(out, prog)
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


def _solve_all(
    xt: NDArray, prog: _Program, pl: _sqp.Plan, tol: float, max_iter: int, compiled: bool
) -> tuple[NDArray, NDArray, NDArray]:
    """`project`'s Newton solvers in turn, each on the frames the ones before left
    unconverged (see the comment in `project`); poses, converged, iterations."""
    x, conv, it = (
        _compiled(xt, prog, pl, tol, max_iter) if compiled else _newton_z(xt, prog, tol, max_iter)
    )
    long = min(10 * max_iter, _MAX_ITER)
    stages = [lambda z: _newton(z, prog, tol, max_iter)]
    if compiled:
        stages.insert(0, lambda z: _newton_z(z, prog, tol, max_iter))
        stages.append(lambda z: _compiled(z, prog, pl, tol, long))
    else:
        stages.append(lambda z: _newton_z(z, prog, tol, long))
    for solve in stages:
        if conv.all():
            break
        rest = np.nonzero(~conv)[0]
        xr, conv_r, it_r = solve(xt[rest])
        x[rest] = _better(xt[rest], x[rest], xr, prog)
        conv[rest], it[rest] = conv_r, it[rest] + it_r
    return x, conv, it


# Whether `project` may use the compiled solver (tests switch it off to check the other).
_USE_COMPILED = True


def prepare_solver() -> bool:
    """Compile `project`'s solver now, or load it from numba's disk cache.

    The first `project` call in a new environment otherwise does it (about 10 s, once;
    later processes load the cached code in a fraction of a second). The explorer calls
    this in a background thread when it opens, so that its first activation maximization
    does not wait. Safe to call from any thread, any number of times.

    Returns
    -------
    bool
        Whether the compiled solver is available (False where numba is missing; `project`
        then uses its numpy solvers).
    """
    if not _sqp.available():
        return False
    from .skeleton import KINECT_V1

    cs = anatomical_constraints(KINECT_V1)
    x0 = np.random.default_rng(0).normal(0.0, 0.2, (1, KINECT_V1.num_joints, 3))
    prog, pl = _program(cs, reference_bone_lengths(x0, KINECT_V1))
    _compiled(x0, prog, pl, 1e-6, 2)
    return True


def _compiled(
    x0: NDArray, prog: _Program, pl: _sqp.Plan, tol: float, max_iter: int
) -> tuple[NDArray, NDArray, NDArray]:
    """`_sqp.solve` from each frame's `_start_dirs` and its best-placed root; returns
    poses, converged and iterations like `_newton_z`."""
    T, J, _ = x0.shape
    u = np.zeros((T, J, 3))
    u[:, prog.child] = _start_dirs(x0, prog)
    placed = _fk(x0[:, prog.root], u[:, prog.child], prog)
    r = x0[:, prog.root] + (x0 - placed).mean(axis=1)
    x, conv, it = _sqp.solve(x0, u, r, pl, tol, max_iter)
    conv &= np.isfinite(x).all(axis=(1, 2))  # the kernel stops before NaN; be sure
    return x, conv, it


def _exact_lengths(x: NDArray, prog: _Program) -> NDArray:
    """Pose x (J, 3) with every bone at its reference length, keeping its direction."""
    u = _unit(x[None, prog.child] - x[None, prog.parent], _fallback_dirs(len(prog.child))[None])
    return _fk(x[None, prog.root], u, prog)[0]


def _better(x0: NDArray, a: NDArray, b: NDArray, prog: _Program) -> NDArray:
    """Per frame of x0 (T, J, 3), of two candidate poses a, b (T, J, 3) the valid one
    (to 1e-6) nearer to x0; of two invalid ones the less invalid; a pose that is not
    finite never wins over one that is. Both must have exact bone lengths."""

    def score(c: NDArray) -> tuple[NDArray, NDArray]:
        ok = np.isfinite(c).all(axis=(1, 2))
        v = np.where(ok, _violation(np.where(ok[:, None, None], c, 0.0), prog), np.inf)
        f = np.where(ok, ((np.where(ok[:, None, None], c, 0.0) - x0) ** 2).sum(axis=(1, 2)), np.inf)
        return v, f

    (va, fa), (vb, fb) = score(a), score(b)
    valid_a, valid_b = va <= 1e-6, vb <= 1e-6
    take_b = np.where(valid_a != valid_b, valid_b, np.where(valid_a, fb < fa, vb < va))
    return np.where(take_b[:, None, None], b, a)


def _slsqp_frame(
    x0: NDArray, prog: _Program, start: NDArray, ftol: float, maxiter: int
) -> tuple[NDArray, bool]:
    """SciPy SLSQP on one frame (J, 3) with analytic Jacobians; (pose, success)."""
    from scipy.optimize import minimize

    J = x0.shape[0]
    flat0 = x0.reshape(-1)
    cache: dict[str, NDArray] = {}

    def rows(z: NDArray) -> tuple[NDArray, NDArray]:
        if "z" not in cache or not np.array_equal(cache["z"], z):
            c, A = _evaluate(z.reshape(1, J, 3), prog)
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
    constraints = _check_constraints(constraints)
    ftol = _positive(ftol, "ftol", "a positive finite number")
    maxiter = _count(maxiter, "maxiter", 1, _MAX_ITER)
    x0 = _as_sequence(sequence, constraints.topology)
    prog = _program(constraints, _reference(x0, constraints, reference_lengths))[0]
    start = _unstick(x0, prog)
    return np.stack([_slsqp_frame(x0[t], prog, start[t], ftol, maxiter)[0] for t in range(len(x0))])
