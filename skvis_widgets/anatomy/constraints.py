"""The anatomical constraint vocabulary (Patil et al., section 3.2, eqs 8-13) and residuals.

The constraint set is written once with canonical joint names (`ANGLE_CONSTRAINTS`,
`PLANE_CONSTRAINTS`) and instantiated per topology by `anatomical_constraints`;
`ConstraintSet.widened_to` relaxes its limits to what a sequence already breaks, and
`constraint_residuals` says by how much each frame violates each constraint. What real
recordings do with these limits is written in the package docstring
(`skvis_widgets.anatomy`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._checks import as_sequence
from ..errors import SkvisError
from ..skeleton import Topology
from .rows import angles_deg

__all__ = [
    "ANGLE_CONSTRAINTS",
    "PLANE_CONSTRAINTS",
    "Constraint",
    "ConstraintSet",
    "anatomical_constraints",
    "reference_bone_lengths",
    "constraint_residuals",
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

    def widened_to(self, sequence: ArrayLike) -> ConstraintSet:
        """These constraints, relaxed to what ``sequence`` already breaks.

        A three-joint angle range that the sequence leaves is widened to the sequence's
        own extreme angles, rounded outwards to 0.1 degree (never past 0 or 180); the
        plane constraint, whose range `project` cannot change, is dropped (recorded in
        ``dropped`` with the frame count) if any frame breaks it. Bones are kept as they
        are. Used by `skvis_widgets.optimize.default_constraints`: real MSR Action3D
        poses break the paper's spine limit on 99.5 % of frames, and projecting them
        onto it would change the input before the optimizer moves anything.

        Parameters
        ----------
        sequence : array_like, shape (T, J, 3)
            Joint positions in metres, J the topology's joint count.

        Returns
        -------
        ConstraintSet
            The widened set; ``self`` itself where nothing needed widening.

        Examples
        --------
        >>> from skvis_widgets.data import load_msr_action3d
        >>> from skvis_widgets.skeleton import MSR_ACTION3D
        >>> seq = load_msr_action3d().sequences[0]  # doctest: +SKIP
        >>> anatomical_constraints(MSR_ACTION3D).widened_to(seq)["angle:spine"].limits  # doctest: +SKIP
        (119.6, 180.0)
        """
        x = checked_sequence(sequence, self.topology)
        out: list[Constraint] = []
        dropped = list(self.dropped)
        for con in self.constraints:
            if con.kind == "bone":
                out.append(con)
                continue
            ang = angles_deg(x, np.asarray([con.joints]), con.kind)[:, 0]
            lo, hi = con.limits  # type: ignore[misc]
            if con.kind == "plane":
                # undefined (collinear hips) counts as on the boundary: satisfied
                bad = int((np.nan_to_num(ang, nan=90.0) > hi).sum())
                if bad:
                    why = (
                        f"the input breaks it on {bad} of {len(x)} frames, and project() "
                        f"supports only its paper range ({lo:g}, {hi:g}) degrees"
                    )
                    dropped.append((con.name, why))
                    continue
                out.append(con)
                continue
            if np.isnan(ang).all():
                out.append(con)
                continue
            amin, amax = float(np.nanmin(ang)), float(np.nanmax(ang))
            new_lo = min(lo, math.floor(amin * 10) / 10) if amin < lo else lo
            new_hi = max(hi, min(180.0, math.ceil(amax * 10) / 10)) if amax > hi else hi
            out.append(replace(con, limits=(max(0.0, new_lo), new_hi)))
        if tuple(out) == self.constraints and tuple(dropped) == self.dropped:
            return self
        return ConstraintSet(self.topology, tuple(out), tuple(dropped))


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
    for name, (four, lim) in PLANE_CONSTRAINTS.items():
        sb, rh, lh, sm = four
        if check(name, four, [(sb, rh), (sb, lh), (sb, sm)]):
            idx = tuple(topology.index(j) for j in four)
            constraints.append(Constraint(name, "plane", idx, four, lim))
    return ConstraintSet(topology, tuple(constraints), tuple(dropped))


# --------------------------------------------------------------------------- validation


def checked_sequence(sequence: ArrayLike, topology: Topology) -> NDArray:
    """The shared check (`skvis_widgets._checks.as_sequence`), in float64 metres."""
    return as_sequence(sequence, topology, name="sequence", dtype=np.float64)


def check_constraints(constraints: ConstraintSet) -> ConstraintSet:
    if not isinstance(constraints, ConstraintSet):
        raise SkvisError(
            f"expected a ConstraintSet from anatomical_constraints(), got "
            f"{type(constraints).__name__}"
        )
    return constraints


# The most iterations a solver may be asked for (a bound on the work of one call).
_MAX_ITER = 1_000_000


def check_positive(value: object, what: str, expected: str) -> float:
    """A positive finite real number (bools refused), else SkvisError naming ``what``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise SkvisError(f"{what} = {value!r}; expected {expected}")
    v = float(value)
    if not (np.isfinite(v) and v > 0.0):
        raise SkvisError(f"{what} = {value!r}; expected {expected}")
    return v


def check_count(value: object, what: str, lo: int, hi: int) -> int:
    """An int in [lo, hi] (bools refused), else SkvisError naming ``what``."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or not lo <= value <= hi
    ):
        raise SkvisError(f"{what} = {value!r}; expected an int from {lo} to {hi}")
    return int(value)


def check_flag(value: object, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise SkvisError(f"{what} = {value!r}; expected True or False")
    return bool(value)


def _check_topology(topology: object) -> Topology:
    if not isinstance(topology, Topology):
        raise SkvisError(f"expected a Topology, got {type(topology).__name__}")
    return topology


def check_reference(
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
    x = checked_sequence(sequence, _check_topology(topology))
    return _bone_lengths(x, topology).mean(axis=0)


# --------------------------------------------------------------------------- residuals


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
    constraints = check_constraints(constraints)
    x = checked_sequence(sequence, constraints.topology)
    ref = check_reference(x, constraints, reference_lengths)
    out = np.zeros((x.shape[0], len(constraints)))
    bones = [k for k, c in enumerate(constraints) if c.kind == "bone"]
    if bones:
        b = np.array([constraints[k].bone for k in bones], dtype=np.intp)
        out[:, bones] = np.abs(_bone_lengths(x, constraints.topology)[:, b] - ref[b])
    # One call per kind, not per constraint: activation maximization measures every
    # iterate, and the per-call overhead was most of this function's time.
    for kind, undefined in (("angle", 0.0), ("plane", 90.0)):
        cols = [k for k, c in enumerate(constraints) if c.kind == kind]
        if not cols:
            continue
        idx = np.array([constraints[k].joints for k in cols])
        lim = np.array([constraints[k].limits for k in cols], dtype=np.float64)
        ang = np.nan_to_num(angles_deg(x, idx, kind), nan=undefined)
        out[:, cols] = np.maximum(lim[:, 0] - ang, 0.0) + np.maximum(ang - lim[:, 1], 0.0)
    return out
