"""`SkeletonScene`: one skeleton pose drawn with pythreejs.

Joints are points with a colour each, bones are line segments that share the
joints' position buffer, a grid marks the floor, and orbit controls move the
camera around the body. Updating a frame replaces two buffers (positions and
colours): two comm messages whatever the number of joints.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as W
import numpy as np
import pythreejs as p3

from ..errors import SkvisError
from ..skeleton import Topology

__all__ = ["SkeletonScene", "DEFAULT_JOINT_COLOR"]

#: Joint colour when no sensitivity is shown (RGB in [0, 1]).
DEFAULT_JOINT_COLOR = (0.27, 0.51, 0.71)
_BONE_COLOR = "#505050"
_OVERLAY_COLOR = "#7a7a7a"


def _as_points(array, num_joints: int, what: str) -> np.ndarray:
    arr = np.asarray(array, dtype=np.float32)
    if arr.shape != (num_joints, 3):
        raise SkvisError(f"{what} of shape {arr.shape}: expected ({num_joints}, 3)")
    return np.ascontiguousarray(arr)


def _as_colors(colors, num_joints: int) -> np.ndarray:
    if colors is None:
        return np.tile(np.asarray(DEFAULT_JOINT_COLOR, np.float32), (num_joints, 1))
    arr = np.asarray(colors, dtype=np.float32)
    if arr.shape == (3,):
        arr = np.tile(arr, (num_joints, 1))
    if arr.shape != (num_joints, 3):
        raise SkvisError(f"colors of shape {arr.shape}: expected ({num_joints}, 3) RGB in [0, 1]")
    return np.ascontiguousarray(np.clip(np.nan_to_num(arr, nan=0.5), 0.0, 1.0))


def _disc_texture(size: int = 64, ring: float = 0.18, shade: float = 0.35) -> p3.DataTexture:
    """A round point sprite: a white disc (the vertex colour shows as is) with a dark rim.

    The rim is the joint's colour times ``shade``, so that the light end of the
    colormap stays visible on a light background.
    """
    r = np.hypot(*np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size)))
    rgba = np.zeros((size, size, 4), np.uint8)
    inside = r <= 1.0
    rgba[inside, :3] = np.where(r[inside, None] > 1.0 - ring, int(255 * shade), 255)
    rgba[inside, 3] = 255
    return p3.DataTexture(data=rgba, format="RGBAFormat", type="UnsignedByteType")


def _bone_index(topology: Topology) -> np.ndarray:
    dtype = np.uint16 if topology.num_joints < 65535 else np.uint32
    return np.asarray(topology.bones, dtype=dtype).reshape(-1)


def _matrix16(transform) -> tuple[float, ...]:
    """A 3x3 or 4x4 (row-major, numpy convention) matrix as three.js's column-major 16-tuple."""
    m = np.asarray(transform, dtype=np.float64)
    if m.shape == (3, 3):
        m4 = np.eye(4)
        m4[:3, :3] = m
        m = m4
    if m.shape != (4, 4):
        raise SkvisError(f"display transform of shape {m.shape}: expected (3, 3) or (4, 4)")
    return tuple(float(v) for v in m.T.reshape(-1))


class _Skeleton:
    """Points and bones on one position buffer, inside a group (not a widget of its own)."""

    def __init__(
        self,
        topology: Topology,
        positions: np.ndarray,
        colors: np.ndarray | None,
        *,
        point_size: float,
        opacity: float = 1.0,
        bone_color: str = _BONE_COLOR,
    ) -> None:
        translucent = opacity < 1.0
        self.position = p3.BufferAttribute(array=positions, normalized=False)
        geo_attrs = {"position": self.position}
        if colors is not None:
            self.color = p3.BufferAttribute(array=colors, normalized=False)
            geo_attrs["color"] = self.color
            material = p3.PointsMaterial(
                vertexColors="VertexColors",
                size=point_size,
                sizeAttenuation=True,
                map=_disc_texture(),
                alphaTest=0.5,
                transparent=translucent,
                opacity=opacity,
            )
        else:
            self.color = None
            material = p3.PointsMaterial(
                color=bone_color,
                size=point_size,
                sizeAttenuation=True,
                transparent=translucent,
                opacity=opacity,
            )
        self.points = p3.Points(geometry=p3.BufferGeometry(attributes=geo_attrs), material=material)
        index = p3.BufferAttribute(array=_bone_index(topology), normalized=False)
        self.bones = p3.LineSegments(
            geometry=p3.BufferGeometry(attributes={"position": self.position, "index": index}),
            material=p3.LineBasicMaterial(
                color=bone_color, linewidth=2, transparent=translucent, opacity=opacity
            ),
        )
        self.group = p3.Group(children=[self.bones, self.points])


class SkeletonScene(W.VBox):
    """A 3D view of one skeleton pose.

    Parameters
    ----------
    topology : Topology
        Joints and bones.
    positions : (J, 3) array, optional
        The first pose, in the data's coordinates (metres, ``y`` up for the
        body-centred frame). Zeros when omitted.
    colors : (J, 3) array, optional
        RGB in ``[0, 1]`` per joint.
    width, height : int
        Canvas size in pixels.
    point_size : float
        Joint size in metres (points shrink with distance).
    display_transform : (3, 3) or (4, 4) array, optional
        Applied to everything drawn through the group's object matrix, so that
        `positions` stay in the data's coordinates.
    background : str
        CSS colour of the canvas.

    Attributes
    ----------
    positions, colors : (J, 3) float32 arrays
        Exactly what is drawn (the buffers' arrays).
    renderer, camera, controls, grid : the pythreejs objects
    """

    def __init__(
        self,
        topology: Topology,
        positions: np.ndarray | None = None,
        colors: np.ndarray | None = None,
        *,
        width: int = 480,
        height: int = 420,
        point_size: float = 0.15,
        display_transform: np.ndarray | None = None,
        background: str = "#ffffff",
        **kwargs,
    ) -> None:
        self.topology = topology
        j = topology.num_joints
        pos = (
            np.zeros((j, 3), np.float32)
            if positions is None
            else _as_points(positions, j, "positions")
        )
        self._main = _Skeleton(topology, pos, _as_colors(colors, j), point_size=point_size)
        self._overlay = _Skeleton(
            topology,
            pos.copy(),
            None,
            point_size=point_size * 0.8,
            opacity=0.35,
            bone_color=_OVERLAY_COLOR,
        )
        self._overlay.group.visible = False
        self.body = p3.Group(children=[self._main.group, self._overlay.group])
        if display_transform is not None:
            self.body.matrixAutoUpdate = False
            self.body.matrix = _matrix16(display_transform)
        self.grid = p3.GridHelper(
            size=3, divisions=12, colorCenterLine="#b0b0b0", colorGrid="#d8d8d8"
        )
        self.camera = p3.PerspectiveCamera(position=[0.0, 0.3, -3.0], fov=40, aspect=width / height)
        self.scene3d = p3.Scene(
            children=[self.body, self.grid, self.camera, p3.AmbientLight(intensity=1.0)],
            background=background,
        )
        self.controls = p3.OrbitControls(controlling=self.camera)
        self.renderer = p3.Renderer(
            scene=self.scene3d,
            camera=self.camera,
            controls=[self.controls],
            width=width,
            height=height,
            antialias=True,
        )
        super().__init__(children=[self.renderer], **kwargs)
        self.frame_on(pos)

    # -- what is drawn --------------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        """``(J, 3)`` joint positions drawn now, in the data's coordinates."""
        return self._main.position.array

    @property
    def colors(self) -> np.ndarray:
        """``(J, 3)`` RGB joint colours drawn now."""
        return self._main.color.array

    @property
    def overlay_positions(self) -> np.ndarray | None:
        """The translucent second skeleton's positions, or None when hidden."""
        return self._overlay.position.array if self._overlay.group.visible else None

    def show(self, positions: np.ndarray, colors: np.ndarray | None = None) -> None:
        """Draw one pose: one message for the positions and one for the colours.

        ``colors=None`` keeps the current colours. Arrays are copied, never shared.
        """
        j = self.topology.num_joints
        pos = _as_points(positions, j, "positions").copy()
        col = None if colors is None else _as_colors(colors, j).copy()
        self._main.position.array = pos
        if col is not None:
            self._main.color.array = col

    def show_overlay(
        self, positions: np.ndarray | None, *, offset: Sequence[float] = (0.0, 0.0, 0.0)
    ) -> None:
        """Draw a second, translucent skeleton (``None`` hides it).

        ``offset`` (metres, data coordinates) puts it beside the first, as the
        original beside the synthesized skeleton in the paper's figure 5.
        """
        if positions is None:
            self._overlay.group.visible = False
            return
        pos = _as_points(positions, self.topology.num_joints, "overlay positions").copy()
        with self._overlay.group.hold_sync():
            self._overlay.position.array = pos
            off = tuple(float(v) for v in offset)
            if tuple(self._overlay.group.position) != off:
                self._overlay.group.position = off
            self._overlay.group.visible = True

    # -- camera -------------------------------------------------------------------------------
    def frame_on(self, points: np.ndarray) -> None:
        """Aim the camera at ``points`` (any ``(..., 3)``; e.g. a whole sequence) and fit them.

        Also moves the floor grid under the lowest point. Non-finite points are ignored.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        pts = pts[np.isfinite(pts).all(1)]
        if len(pts) == 0 or np.ptp(pts, axis=0).max() < 1e-6:
            lo, hi = np.array([-0.5, -1.0, -0.5]), np.array([0.5, 1.0, 0.5])
        else:
            lo, hi = pts.min(0), pts.max(0)
        center = (lo + hi) / 2
        radius = max(float(np.linalg.norm(hi - lo)) / 2, 0.3)
        dist = 0.9 * radius / np.sin(np.deg2rad(self.camera.fov) / 2)
        # The body-centred frame has the body facing -z: look at it from the front, a little
        # from its right and from above.
        direction = np.array([-0.35, 0.25, -1.0])
        direction /= np.linalg.norm(direction)
        eye = center + dist * direction
        self.camera.position = tuple(float(v) for v in eye)
        self.controls.target = tuple(float(v) for v in center)
        self.camera.lookAt(tuple(float(v) for v in center))
        self.grid.position = (float(center[0]), float(lo[1]), float(center[2]))
