"""What makes a candidate of activation maximization valid: constraint objects.

`skvis_widgets.optimize.maximize_activation` takes a list of them
(``constraints=[Anatomy(), Support(), Acceleration(0.01)]``) and knows nothing of any
one: each is bound to the input (`SequenceConstraint.bind`), and the bound object says
which residual columns it adds, how far a sequence violates it, and how to make a
sequence satisfy it. A new constraint is a new class here, not a change to the optimizer.

Two kinds, by what they act on:

- pose constraints (``kind = "pose"``: `Anatomy`, `Support`) act on each frame; they are
  applied in the list's order on every candidate, and always last, so they hold exactly;
- trajectory constraints (``kind = "trajectory"``: `Acceleration`) act across frames;
  they are alternated with the pose constraints (`make_valid`) and may reject a
  candidate that still breaks them.

The full text of each (what it enforces, why, what it costs) is in the module docstring
of `skvis_widgets.optimize`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import numpy as np

from .anatomy import ConstraintSet, constraint_residuals, project, reference_bone_lengths
from .errors import SkvisError
from .skeleton import Topology

__all__ = [
    "SequenceConstraint",
    "BoundConstraint",
    "Anatomy",
    "Support",
    "Acceleration",
    "BoundAnatomy",
    "BoundSupport",
    "BoundAcceleration",
    "SUPPORT_JOINTS",
    "make_valid",
]

#: Joints that can carry the body, lowest first looked for (the topology keeps those it has).
SUPPORT_JOINTS = ("foot_left", "foot_right", "ankle_left", "ankle_right")

#: The vertical axis of the package's body frame (`normalize_sequence`: y up the body).
_UP = 1

Kind = Literal["pose", "trajectory"]


class BoundConstraint(Protocol):
    """A constraint bound to one input sequence (from `SequenceConstraint.bind`)."""

    kind: Kind
    names: tuple[str, ...]  # its columns of the residuals
    enforced: bool  # False: only measured

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """How far each frame of x (T, J, 3) violates it: (T, len(names)), 0 where it holds."""
        ...

    def apply(self, y: np.ndarray, pose: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        """y (T, J, 3) made to satisfy it. ``pose`` makes a sequence satisfy every pose
        constraint (a trajectory constraint alternates with it; None for a pose one)."""
        ...

    def holds(self, y: np.ndarray) -> bool:
        """Whether y satisfies it to its tolerance (pose constraints: always after apply)."""
        ...


class SequenceConstraint(Protocol):
    """A constraint on activation maximization's candidates, before it sees the input."""

    kind: ClassVar[Kind]

    def bind(
        self, x0: np.ndarray, topology: Topology | None, pose: Callable[[np.ndarray], np.ndarray]
    ) -> BoundConstraint:
        """Bind to the input x0 (T, J, 3), metres. For a trajectory constraint,
        ``pose`` makes a sequence satisfy every pose constraint of the list (bound
        first): ``pose(x0)`` is the input made valid."""
        ...


def _need_topology(topology: Topology | None, what: str) -> Topology:
    if topology is None:
        raise SkvisError(
            f"{what} needs the sequence's topology: pass topology= (no "
            "model.metadata['topology'], and more than one or no known topology has the "
            "sequence's joint count)"
        )
    return topology


# ----------------------------------------------------------------------------- anatomy
@dataclass(frozen=True)
class Anatomy:
    """Eq 14: every candidate projected onto anatomical constraints (`anatomy.project`)
    with the reference bone lengths of the input (its mean over frames, as in the paper).

    Parameters
    ----------
    constraint_set : ConstraintSet, optional
        Default: `default_constraints` of the input (the paper's, widened where the input
        breaks them).
    enforce : bool
        False: only measure the residuals (figure 2(a), unconstrained steps).
    """

    constraint_set: ConstraintSet | None = None
    enforce: bool = True
    kind: ClassVar[Kind] = "pose"

    def bind(self, x0, topology, pose=None) -> BoundAnatomy:
        cset = self.constraint_set
        if cset is None:
            topo = _need_topology(topology, "the anatomical constraints")
            cset = _default(x0, topo)
        elif not isinstance(cset, ConstraintSet):
            raise SkvisError(
                f"Anatomy(constraint_set=...) must be a ConstraintSet, got {type(cset).__name__}"
            )
        ref = reference_bone_lengths(x0, cset.topology)
        return BoundAnatomy(cset, ref, bool(self.enforce))


def _default(x0: np.ndarray, topology: Topology) -> ConstraintSet:
    from .anatomy import anatomical_constraints

    return anatomical_constraints(topology).widened_to(x0)


@dataclass(frozen=True, eq=False)
class BoundAnatomy:
    constraint_set: ConstraintSet
    reference_lengths: np.ndarray
    enforced: bool
    kind: Kind = "pose"

    @property
    def names(self) -> tuple[str, ...]:
        return self.constraint_set.names

    def residuals(self, x: np.ndarray) -> np.ndarray:
        return constraint_residuals(x, self.constraint_set, self.reference_lengths)

    def apply(self, y: np.ndarray, pose=None) -> np.ndarray:
        if not self.enforced:
            return y
        return project(y, self.constraint_set, self.reference_lengths)

    def holds(self, y: np.ndarray) -> bool:
        return True


# ----------------------------------------------------------------------------- support
@dataclass(frozen=True)
class Support:
    """The lowest foot stays on the floor (not in the paper).

    Parameters
    ----------
    mode : {"frame", "floor"}
        ``"frame"``: in every frame the lowest support joint (`SUPPORT_JOINTS`) keeps the
        height it had in the input frame. ``"floor"``: one floor plane, the lowest
        support-joint height over the whole input. The pose is translated vertically
        (which keeps bones and angles).
    """

    mode: Literal["frame", "floor"] = "frame"
    kind: ClassVar[Kind] = "pose"

    def __post_init__(self) -> None:
        if self.mode not in ("frame", "floor"):
            raise SkvisError(f"support must be True, False, 'frame' or 'floor', got {self.mode!r}")

    def bind(self, x0, topology, pose=None) -> BoundSupport:
        topo = _need_topology(topology, "support")
        feet = [topo.index(n) for n in SUPPORT_JOINTS if topo.has(n)]
        if not feet:
            raise SkvisError(
                f"support needs a foot or ankle joint ({', '.join(SUPPORT_JOINTS)}); topology "
                f"{topo.name!r} has none"
            )
        low = x0[:, feet, _UP].astype(np.float64).min(axis=1)
        floor = low if self.mode == "frame" else np.full(len(x0), low.min())
        return BoundSupport(self.mode, feet, floor)


@dataclass(frozen=True, eq=False)
class BoundSupport:
    mode: str
    feet: list[int]
    floor: np.ndarray
    kind: Kind = "pose"
    names: tuple[str, ...] = ("support:floor",)
    enforced: bool = True

    def residuals(self, x: np.ndarray) -> np.ndarray:
        low = x[:, self.feet, _UP].astype(np.float64).min(axis=1)
        return np.abs(low - self.floor)[:, None]

    def apply(self, y: np.ndarray, pose=None) -> np.ndarray:
        """Translate each frame vertically so that its lowest support joint is on the floor."""
        low = y[:, self.feet, _UP].min(axis=1)
        out = y.copy()
        out[..., _UP] += (self.floor - low)[:, None].astype(y.dtype)
        return out

    def holds(self, y: np.ndarray) -> bool:
        return True


# ------------------------------------------------------------------------ acceleration
@dataclass(frozen=True)
class Acceleration:
    """At most ``bound`` metres/frame^2 of acceleration added to any joint (not in the
    paper), relative to the input made valid by the pose constraints.

    Parameters
    ----------
    bound : float
        Metres/frame^2, positive.
    tol : float, optional
        How far above ``bound`` an accepted candidate may stay; default 5 % of ``bound``.
    max_rounds : int
        Most rounds of acceleration bounding and pose projection per candidate.
    """

    bound: float
    tol: float | None = None
    max_rounds: int = 10
    kind: ClassVar[Kind] = "trajectory"

    def __post_init__(self) -> None:
        ok = isinstance(self.bound, (int, float, np.integer, np.floating)) and not isinstance(
            self.bound, (bool, np.bool_)
        )
        if not ok or not (np.isfinite(self.bound) and self.bound > 0):
            raise SkvisError(f"temporal must be a positive number, got {self.bound!r}")
        if self.tol is not None and not (np.isfinite(self.tol) and self.tol >= 0):
            raise SkvisError(f"temporal_tol must be a non-negative number, got {self.tol!r}")

    def bind(self, x0, topology, pose) -> BoundAcceleration:
        base = pose(x0).astype(np.float64)
        tol = 0.05 * self.bound if self.tol is None else self.tol
        return BoundAcceleration(float(self.bound), float(tol), max(1, self.max_rounds), base)


@dataclass(frozen=True, eq=False)
class BoundAcceleration:
    bound: float
    tol: float
    max_rounds: int
    base: np.ndarray  # the input made valid (float64)
    kind: Kind = "trajectory"
    names: tuple[str, ...] = ("temporal:acceleration",)
    enforced: bool = True

    def residuals(self, x: np.ndarray) -> np.ndarray:
        acc = np.zeros(len(x))
        if len(x) > 2:
            excess = acceleration(x.astype(np.float64) - self.base) - self.bound
            acc[1:-1] = np.maximum(excess, 0.0).max(axis=1)
        return acc[:, None]

    def holds(self, y: np.ndarray) -> bool:
        if len(y) < 3:
            return True
        return bool(acceleration(y.astype(np.float64) - self.base).max() <= self.bound + self.tol)

    def apply(self, y: np.ndarray, pose: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        """Alternate the acceleration bound (on the displacement from ``base``) with the
        pose constraints, up to ``max_rounds`` times; the pose constraints run last."""
        if len(y) < 3 or pose is None:
            return y
        for _ in range(self.max_rounds):
            if self.holds(y):
                return y
            d = bound_acceleration(y.astype(np.float64) - self.base, self.bound, 0.1 * self.tol)
            y = pose((self.base + d).astype(y.dtype))
        return y


def acceleration(v: np.ndarray) -> np.ndarray:
    """``|v_{t+1} - 2 v_t + v_{t-1}|`` per interior frame and joint: ``(T-2, J)``."""
    a = v[2:] - 2 * v[1:-1] + v[:-2]
    return np.sqrt(np.einsum("tjd,tjd->tj", a, a))


def bound_acceleration(
    d: np.ndarray, bound: float, tol: float, max_sweeps: int = 500
) -> np.ndarray:
    """The nearest ``d'`` (T, J, 3) with ``|a_t(d')| <= bound`` at every interior frame.

    Dykstra's algorithm over the three families of constraints ``t = 1, 2, 3 (mod 3)``: in
    a family the frames ``t-1, t, t+1`` of different constraints are disjoint, so a
    family's projection is exact and vectorized: an excess ``e`` of ``a_t`` moves the
    three frames by ``(-1, 2, -1) e / 6``.
    """
    n = len(d)
    if n < 3:
        return d
    y = np.asarray(d, dtype=np.float64).copy()
    families = [np.arange(1 + r, n - 1, 3) for r in range(3)]
    families = [c for c in families if c.size]
    incr = [np.zeros_like(y) for _ in families]
    for sweep in range(max_sweeps):
        for k, c in enumerate(families):
            z = y + incr[k]  # a fresh array: y is left to the previous family's increment
            a = z[c + 1] - 2 * z[c] + z[c - 1]
            norm = np.sqrt(np.einsum("tjd,tjd->tj", a, a))[..., None]
            e = a * np.maximum(0.0, 1.0 - bound / np.maximum(norm, 1e-300))
            y = z.copy()
            y[c - 1] -= e / 6
            y[c] += e / 3
            y[c + 1] -= e / 6
            incr[k] = z - y
        if sweep % 5 == 4 and acceleration(y).max() <= bound + tol:
            break
    return y


# --------------------------------------------------------------------------- together
def make_valid(bound: Sequence[BoundConstraint], y: np.ndarray) -> tuple[np.ndarray, bool]:
    """A candidate y (T, J, 3) made valid: every pose constraint in order, then each
    trajectory constraint (alternated with the pose ones); and whether every trajectory
    constraint holds."""
    poses = [b for b in bound if b.kind == "pose"]

    def pose(z: np.ndarray) -> np.ndarray:
        for b in poses:
            z = b.apply(z, None)
        return z

    y = pose(y)
    ok = True
    for b in bound:
        if b.kind == "trajectory":
            y = b.apply(y, pose)
            ok = ok and b.holds(y)
    return y, ok
