"""`SkeletonScene`: one skeleton pose drawn with pythreejs, readable in depth.

The joints are shaded spheres (point sprites lit from the top left, their colour the
map's) on ONE interleaved buffer (``x y z r g b`` per row); the bones are thick lines
(`LineSegments2`, a width in pixels at any zoom) in their side's colour (left blue, right
green, centre grey: `skvis_widgets.colors.SIDE_COLORS`). A frame is two messages sent
together (joints, bones), painted in the browser's next animation frame. Fog fades what
is far from the camera. A `Picker` names the joint under the mouse (`hovered`, and a
label under the canvas), with the heatmap's names.

A second skeleton (`show_overlay`: the input under or beside a synthesized sequence) is
drawn as a grey ghost, with a purple line from each of its joints to the main one's (the
displacement).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as W
import numpy as np
import pythreejs as p3
import traitlets as T

from .._checks import as_sequence
from ..colors import DEFAULT_JOINT_COLOR, SIDE_COLORS, side_of
from ..errors import SkvisError
from ..skeleton import Topology

__all__ = ["SkeletonScene", "DEFAULT_JOINT_COLOR"]

#: The input's ghost: a mid grey, lighter than the centre bones, darker than the grid.
_OVERLAY_COLOR = (0.62, 0.62, 0.62)
_LINK_COLOR = "#6b3fa0"
_HOVER_HINT = "<span style='font-size:12px;color:#777'>hover a joint to see its name</span>"
#: Bone widths in pixels (main skeleton, the input's ghost, the displacement lines).
_BONE_PX, _GHOST_BONE_PX, _LINK_PX = 6.0, 4.0, 2.5


def _as_points(array, num_joints: int, what: str) -> np.ndarray:
    """One ``(J, 3)`` pose, checked as a one-frame sequence by the package's checker."""
    return as_sequence(np.asarray(array)[None], num_joints=num_joints, name=what)[0]


def _as_colors(colors, num_joints: int) -> np.ndarray:
    if colors is None:
        return np.tile(np.asarray(DEFAULT_JOINT_COLOR, np.float32), (num_joints, 1))
    arr = np.asarray(colors, dtype=np.float32)
    if arr.shape == (3,):
        arr = np.tile(arr, (num_joints, 1))
    if arr.shape != (num_joints, 3):
        raise SkvisError(f"colors of shape {arr.shape}: expected ({num_joints}, 3) RGB in [0, 1]")
    return np.clip(np.nan_to_num(arr, nan=0.5), 0.0, 1.0)


def _sphere_texture(size: int = 64) -> p3.DataTexture:
    """A lit sphere as a point sprite: white where the light hits, darker to the rim.

    Multiplied by the vertex colour, so every joint keeps its map colour with shading
    that makes it read as a ball; a dark rim keeps the light end of the ramp visible on
    a light background.
    """
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    r2 = x**2 + y**2
    inside = r2 <= 1.0
    z = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    light = np.array([-0.4, 0.5, 0.77])
    light /= np.linalg.norm(light)
    # texture rows run bottom-up in WebGL: flip y so the highlight sits top-left
    lambert = np.clip(-x * light[0] + -y * light[1] + z * light[2], 0.0, 1.0)
    shade = 0.45 + 0.55 * lambert
    shade = np.where(r2 > 0.82, 0.35, shade)  # the rim
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = (255 * np.clip(shade, 0, 1))[..., None].astype(np.uint8)
    rgba[..., 3] = np.where(inside, 255, 0)
    return p3.DataTexture(data=rgba, format="RGBAFormat", type="UnsignedByteType")


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


def _index(values) -> p3.BufferAttribute:
    return p3.BufferAttribute(array=np.asarray(values, dtype=np.uint32), normalized=False)


class _JointPicker(p3.Picker):
    """A `Picker` whose picked ``object`` stays in the browser: ipywidgets 8 echoes each
    state update back to the page, and pythreejs cannot re-apply an echoed object reference
    ("Error setting state: t.on is not a function"). ``index`` (the joint; None over
    nothing) is all the scene needs."""

    object = T.Instance(p3.Object3D, allow_none=True)  # not synced


class _Skeleton:
    """Joints (shaded sprites on one interleaved buffer) and bones (thick lines), in a group."""

    def __init__(
        self,
        topology: Topology,
        *,
        point_size: float,
        line_width: float,
        opacity: float = 1.0,
        tint: tuple[float, float, float] | None = None,
    ) -> None:
        j = topology.num_joints
        bones = np.asarray(topology.bones, dtype=np.int64).reshape(-1, 2)
        self.num_joints = j
        self.bones = bones
        sides = [side_of(n) for n in topology.joint_names]
        # a bone's side: its outer joint's (a shoulder-to-spine bone belongs to the arm)
        self.bone_sides = [
            sides[b] if sides[b] != "centre" else sides[a] for a, b in bones.tolist()
        ]
        bone_rgb = np.array(
            [SIDE_COLORS[s] if tint is None else tint for s in self.bone_sides], np.float32
        )
        self.tint = tint
        self.buffer = p3.InterleavedBuffer(array=np.zeros((j, 6), np.float32))
        attrs = {
            "position": p3.InterleavedBufferAttribute(data=self.buffer, itemSize=3, offset=0),
            "color": p3.InterleavedBufferAttribute(data=self.buffer, itemSize=3, offset=3),
        }
        translucent = opacity < 1.0
        self.joints = p3.Points(
            geometry=p3.BufferGeometry(attributes=dict(attrs, index=_index(np.arange(j)))),
            material=p3.PointsMaterial(
                vertexColors="VertexColors",
                size=point_size,
                sizeAttenuation=True,
                map=_sphere_texture(),
                alphaTest=0.5,
                transparent=translucent,
                opacity=opacity,
            ),
        )
        # Bones: screen-space thick lines (LineMaterial's width is in pixels, at any zoom),
        # both ends in the bone's side colour.
        self.bone_lines = p3.LineSegments2(
            geometry=p3.LineSegmentsGeometry(
                positions=np.zeros((len(bones), 2, 3), np.float32),
                colors=np.ascontiguousarray(np.repeat(bone_rgb[:, None], 2, axis=1)),
            ),
            material=p3.LineMaterial(linewidth=float(line_width), vertexColors="VertexColors"),
        )
        self.group = p3.Group(children=[self.bone_lines, self.joints])
        self.positions = np.zeros((j, 3), np.float32)
        self.colors = np.zeros((j, 3), np.float32)

    @property
    def bone_colors(self) -> np.ndarray:
        """``(B, 3)`` RGB of each bone (its side's colour, or the tint)."""
        return np.asarray(self.bone_lines.geometry.colors)[:, 0]

    def draw(self, positions: np.ndarray, colors: np.ndarray) -> None:
        """New arrays (never mutated in place): one message for the joints, one for the bones,
        sent together (the browser paints both in its next animation frame)."""
        self.positions, self.colors = positions, colors
        rows = np.empty((self.num_joints, 6), np.float32)
        rows[:, :3], rows[:, 3:] = positions, colors
        self.buffer.array = rows
        self.bone_lines.geometry.positions = np.ascontiguousarray(positions[self.bones])


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
        Canvas size in pixels (the canvas also scales to the width of its cell:
        `resize` changes its resolution).
    point_size : float
        Joint diameter in metres (spheres shrink with distance).
    display_transform : (3, 3) or (4, 4) array, optional
        Applied to everything drawn through the group's object matrix, so that
        `positions` stay in the data's coordinates.
    background : str
        CSS colour of the canvas.

    Attributes
    ----------
    positions, colors : (J, 3) float32 arrays
        Exactly what is drawn.
    hovered : str
        The name of the joint under the mouse (``""`` when none).
    renderer, camera, controls, picker, grid : the pythreejs objects
    """

    hovered = T.Unicode("")
    hovered_joint = T.Int(None, allow_none=True)

    def __init__(
        self,
        topology: Topology,
        positions: np.ndarray | None = None,
        colors: np.ndarray | None = None,
        *,
        width: int = 620,
        height: int = 500,
        point_size: float = 0.32,
        display_transform: np.ndarray | None = None,
        background: str = "#ffffff",
        **kwargs,
    ) -> None:
        self.topology = topology
        j = topology.num_joints
        self.joint_names = tuple(topology.pretty(i) for i in range(j))
        pos = (
            np.zeros((j, 3), np.float32)
            if positions is None
            else _as_points(positions, j, "positions")
        )
        self._main = _Skeleton(topology, point_size=point_size, line_width=_BONE_PX)
        self._main.draw(pos.copy(), _as_colors(colors, j).copy())
        self._overlay = _Skeleton(
            topology,
            point_size=point_size * 0.85,
            line_width=_GHOST_BONE_PX,
            opacity=0.55,
            tint=_OVERLAY_COLOR,
        )
        self._overlay.group.visible = False
        self._links = p3.LineSegments2(
            geometry=p3.LineSegmentsGeometry(positions=np.zeros((j, 2, 3), np.float32)),
            material=p3.LineMaterial(color=_LINK_COLOR, linewidth=_LINK_PX),
        )
        self._links.visible = False
        self._overlay_positions: np.ndarray | None = None
        self._offset = np.zeros(3, np.float32)
        self.body = p3.Group(children=[self._main.group, self._overlay.group, self._links])
        if display_transform is not None:
            self.body.matrixAutoUpdate = False
            self.body.matrix = _matrix16(display_transform)
        self.grid = p3.GridHelper(
            size=3, divisions=12, colorCenterLine="#b0b0b0", colorGrid="#d8d8d8"
        )
        self.camera = p3.PerspectiveCamera(position=[0.0, 0.3, -3.0], fov=40, aspect=width / height)
        self.fog = p3.Fog(color=background, near=2.0, far=8.0)
        self.scene3d = p3.Scene(
            children=[
                self.body,
                self.grid,
                self.camera,
                # The joints' shading is in their sprite (points take no light); a
                # DirectionalLight would also send its own target back from the browser,
                # which pythreejs cannot re-apply ("t.on is not a function").
                p3.AmbientLight(intensity=1.0),
            ],
            background=background,
            fog=self.fog,
        )
        self.controls = p3.OrbitControls(controlling=self.camera)
        self.picker = _JointPicker(
            controlling=self._main.joints, event="mousemove", pointThreshold=0.06
        )
        self.renderer = p3.Renderer(
            scene=self.scene3d,
            camera=self.camera,
            controls=[self.controls, self.picker],
            width=width,
            height=height,
            antialias=True,
        )
        self.renderer.add_class("skvis-canvas")
        self.label = W.HTML(_HOVER_HINT, layout=W.Layout(min_height="20px"))
        self.picker.observe(self._on_pick, "index")
        self._value_of = None  # joint index -> "0.83 (...)" text, set by the explorer
        super().__init__(children=[self.renderer, self.label], **kwargs)
        self.add_class("skvis-scene")
        self.frame_on(pos)

    # -- what is drawn --------------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        """``(J, 3)`` joint positions drawn now, in the data's coordinates."""
        return self._main.positions

    @property
    def colors(self) -> np.ndarray:
        """``(J, 3)`` RGB joint colours drawn now."""
        return self._main.colors

    @property
    def overlay_positions(self) -> np.ndarray | None:
        """The translucent second skeleton's positions, or None when hidden."""
        return self._overlay_positions

    @property
    def buffer(self) -> np.ndarray:
        """The joints' interleaved ``(J, 6)`` rows drawn now (``x y z r g b``)."""
        return self._main.buffer.array

    @property
    def bone_colors(self) -> np.ndarray:
        """``(B, 3)`` RGB of each bone of `topology.bones`: left blue, right green, centre
        grey (`skvis_widgets.colors.SIDE_COLORS`)."""
        return self._main.bone_colors

    def show(self, positions: np.ndarray, colors: np.ndarray | None = None) -> None:
        """Draw one pose: positions and colours in one message (one paint).

        ``colors=None`` keeps the current colours. Arrays are copied, never shared.
        """
        j = self.topology.num_joints
        pos = _as_points(positions, j, "positions").copy()
        col = self._main.colors if colors is None else _as_colors(colors, j).copy()
        self._main.draw(pos, col)
        if self._overlay_positions is not None and self._links.visible:
            self._draw_links()

    def show_overlay(
        self,
        positions: np.ndarray | None,
        *,
        offset: Sequence[float] = (0.0, 0.0, 0.0),
        links: bool = False,
    ) -> None:
        """Draw a second, translucent skeleton (``None`` hides it).

        ``offset`` (metres, data coordinates) puts it beside the first, as the
        original beside the synthesized skeleton in the paper's figure 5; with the
        default, it is a ghost under the first. ``links`` draws a line from each of
        its joints to the first skeleton's (the displacement).
        """
        if positions is None:
            self._overlay_positions = None
            with self._overlay.group.hold_sync():
                self._overlay.group.visible = False
            self._links.visible = False
            return
        pos = _as_points(positions, self.topology.num_joints, "overlay positions").copy()
        self._overlay_positions = pos
        off = tuple(float(v) for v in offset)
        self._overlay.draw(pos, np.tile(np.asarray(_OVERLAY_COLOR, np.float32), (len(pos), 1)))
        with self._overlay.group.hold_sync():
            if tuple(self._overlay.group.position) != off:
                self._overlay.group.position = off
            self._overlay.group.visible = True
        self._offset = np.asarray(off, np.float32)
        if links:
            self._draw_links()
        self._links.visible = bool(links)

    @property
    def link_positions(self) -> np.ndarray:
        """``(J, 2, 3)``: each displacement line, from the ghost's joint to the skeleton's."""
        return np.asarray(self._links.geometry.positions)

    def _draw_links(self) -> None:
        if self._overlay_positions is None:  # no overlay: nothing to link
            return
        a = self._overlay_positions + self._offset
        pairs = np.stack([a, self._main.positions], 1)
        self._links.geometry.positions = np.ascontiguousarray(pairs, dtype=np.float32)

    # -- hover ----------------------------------------------------------------------------
    def describe_joints(self, describe) -> None:
        """``describe(j) -> str``: the text shown after a hovered joint's name (its value)."""
        self._value_of = describe

    def refresh_hover(self) -> None:
        """Rewrite the hovered joint's label (its value changed: another frame or map)."""
        if self.hovered_joint is not None:
            self._describe(self.hovered_joint)

    def clear_hover(self) -> None:
        """Forget the hovered joint (what is drawn changed under the mouse)."""
        self.hovered_joint = None
        self.hovered = ""
        self.label.value = _HOVER_HINT

    def _on_pick(self, change) -> None:
        # the browser sets `index` to the vertex under the mouse, which is the joint's
        # index (None over nothing)
        idx = self.picker.index
        if idx is None or not 0 <= int(idx) < len(self.joint_names):
            self.clear_hover()
            return
        self._describe(int(idx))

    def _describe(self, j: int) -> None:
        name = self.joint_names[j]
        extra = ""
        if self._value_of is not None:
            try:
                extra = self._value_of(j)
            except Exception:  # noqa: BLE001 - a hover label never fails the widget
                extra = ""
        self.hovered_joint = j
        self.hovered = name
        self.label.value = (
            f"<span class='skvis-joint-name' style='font-size:13px'><b>{name}</b>"
            f"{' &middot; ' + extra if extra else ''}</span>"
        )

    # -- size and camera ----------------------------------------------------------------
    def resize(self, width: int, height: int) -> None:
        """Draw at ``width`` x ``height`` pixels (the canvas still fits its cell)."""
        with self.renderer.hold_sync():
            self.renderer.width, self.renderer.height = int(width), int(height)
        self.camera.aspect = int(width) / int(height)

    def frame_on(self, points: np.ndarray) -> None:
        """Aim the camera at ``points`` (any ``(..., 3)``; e.g. a whole sequence) and fit them.

        Also moves the floor grid under the lowest point and the fog behind the body.
        Non-finite points are ignored.
        """
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        pts = pts[np.isfinite(pts).all(1)]
        if len(pts) == 0 or np.ptp(pts, axis=0).max() < 1e-6:
            lo, hi = np.array([-0.5, -1.0, -0.5]), np.array([0.5, 1.0, 0.5])
        else:
            lo, hi = pts.min(0), pts.max(0)
        center = (lo + hi) / 2
        radius = max(float(np.linalg.norm(hi - lo)) / 2, 0.3)
        dist = 1.05 * radius / np.sin(np.deg2rad(self.camera.fov) / 2)
        # The body-centred frame has the body facing -z: look at it from the front, a little
        # from its right and from above.
        direction = np.array([-0.35, 0.25, -1.0])
        direction /= np.linalg.norm(direction)
        eye = center + dist * direction
        self.camera.position = tuple(float(v) for v in eye)
        self.controls.target = tuple(float(v) for v in center)
        self.camera.lookAt(tuple(float(v) for v in center))
        self.grid.position = (float(center[0]), float(lo[1]), float(center[2]))
        with self.fog.hold_sync():
            self.fog.near = float(dist - radius * 0.5)
            self.fog.far = float(dist + radius * 3.0)
