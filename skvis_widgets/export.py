"""Pictures that leave the notebook: figures for papers and animations (matplotlib).

Figures (each a `matplotlib.figure.Figure` with a title and a labelled colour bar; save
them with ``fig.savefig("fig.pdf")`` or ``.svg`` for vector output):

- `frames_figure`: frames of a sequence with per-joint colours (the paper's figure 4,
  early and late frames).
- `maximization_figure`: one frame of the input, after one iteration and at convergence
  of an activation maximization (figure 5).
- `constraint_figure`: one step without and one with the anatomical constraints
  (figure 2).
- `heatmap_figure`: joints by time, rows grouped by body part.

Animations: `save_animation` writes a GIF (Pillow) or an MP4 (ffmpeg, from the
``imageio-ffmpeg`` wheel or the system's) of a skeleton coloured by a map, with the
colour bar, the frame number and a title, from a fixed or orbiting camera; given a
`~skvis_widgets.optimize.MaximizationResult` it draws the original and the synthesized
sequence side by side.

The skeleton is drawn in 2D, projected orthographically: the body-centred frame has
``y`` up and the body facing ``-z``, so the default view (``azimuth=0``) looks at its
front: ``+x`` is drawn on the viewer's left, as in the explorer.

Colours are those of `skvis_widgets.colors.sensitivity_colors` (the explorer's), so a
joint has the same colour here, in the explorer and in the exported HTML page.

This module imports no widget library.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from .colors import COLORMAPS, check_map, resolve_vmax, sensitivity_colors
from .data.arrays import as_sequence
from .errors import SkvisError
from .skeleton import BODY_PARTS, Topology, get_topology

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not with this module
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    class PanelFigure(Figure):
        """What the figure functions return: a Figure that holds its panels."""

        skvis_axes: list[Axes]
        skvis_rows: tuple[int, ...]


__all__ = [
    "sensitivity_cmap",
    "project",
    "draw_skeleton",
    "frames_figure",
    "maximization_figure",
    "constraint_figure",
    "heatmap_figure",
    "part_rows",
    "save_animation",
    "AnimationInfo",
]

_BONE_COLOR = "#505050"
_GHOST_COLOR = "#b0b0b0"
_EDGE_SHADE = 0.35


# -- colours ------------------------------------------------------------------------------------
def sensitivity_cmap(cmap: str = "YlOrRd"):
    """The package's colormap (`skvis_widgets.colors.COLORMAPS`) as a matplotlib colormap.

    Linear between the same evenly spaced stops as `sensitivity_colors`, so the colour
    bar matches the joints' colours.
    """
    from matplotlib.colors import LinearSegmentedColormap

    if cmap not in COLORMAPS:
        raise SkvisError(f"unknown colormap {cmap!r}; available: {list(COLORMAPS)}")
    return LinearSegmentedColormap.from_list(f"skvis_{cmap}", COLORMAPS[cmap], N=1024)


def _colors(values: np.ndarray, vmax: float, cmap: str) -> np.ndarray:
    return sensitivity_colors(values, scale="global", vmax=vmax, cmap=cmap)


def _panels(fig: Figure, axes: Sequence[Axes], rows: Sequence[int] | None = None) -> PanelFigure:
    """``fig`` with its panels as ``fig.skvis_axes`` (and a heatmap's joint per row as
    ``fig.skvis_rows``), the attributes the figure functions document."""
    out = cast("PanelFigure", fig)
    out.skvis_axes = list(axes)
    if rows is not None:
        out.skvis_rows = tuple(rows)
    return out


def _topology(topology: Topology | str) -> Topology:
    return get_topology(topology)


# -- projection and drawing ---------------------------------------------------------------------
def project(points: Any, azimuth: float = 0.0, elevation: float = 0.0) -> np.ndarray:
    """Orthographic projection of ``(..., 3)`` points to ``(..., 3)``: screen x, y and depth.

    The camera turns ``azimuth`` degrees about the vertical axis (``y``) and looks down
    by ``elevation`` degrees. At 0/0 it looks at the body's front (the body faces
    ``-z``): ``+x`` is on the screen's left; depth grows away from the camera.
    """
    p = np.asarray(points, dtype=np.float64)
    a, e = np.deg2rad(azimuth), np.deg2rad(elevation)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    # turn about y, then tilt about the screen's horizontal axis
    xr = x * np.cos(a) + z * np.sin(a)
    zr = -x * np.sin(a) + z * np.cos(a)
    yr = y * np.cos(e) + zr * np.sin(e)
    depth = -y * np.sin(e) + zr * np.cos(e)
    return np.stack([-xr, yr, depth], axis=-1)


@dataclass
class _SkeletonArtists:
    bones: Any
    joints: Any


def draw_skeleton(
    ax,
    positions: Any,
    topology: Topology | str,
    colors: Any = None,
    *,
    azimuth: float = 0.0,
    elevation: float = 0.0,
    joint_size: float = 60.0,
    bone_color: str = _BONE_COLOR,
    alpha: float = 1.0,
    zorder: float = 2.0,
) -> _SkeletonArtists:
    """Draw one pose on a 2D axes: bones as a line collection, joints as a scatter.

    Parameters
    ----------
    ax : matplotlib Axes
    positions : (J, 3) array, metres
    topology : Topology or name
    colors : (J, 3) RGB in [0, 1], or None (the bone colour)
    azimuth, elevation : degrees, see `project`

    Returns
    -------
    an object with ``bones`` (LineCollection) and ``joints`` (PathCollection); the
    joints' face colours are ``colors`` in the joints' order (they are not depth-sorted,
    so that ``joints.get_facecolors()[j]`` is joint ``j``).
    """
    from matplotlib.collections import LineCollection

    topo = _topology(topology)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.shape != (topo.num_joints, 3) or not np.isfinite(pos).all():
        raise SkvisError(
            f"positions of shape {pos.shape}: expected finite ({topo.num_joints}, 3) metres"
        )
    xy = project(pos, azimuth, elevation)[:, :2]
    bones = LineCollection(
        [xy[[p, c]] for p, c in topo.bones],
        colors=bone_color,
        linewidths=2.0,
        alpha=alpha,
        zorder=zorder,
        capstyle="round",
    )
    ax.add_collection(bones)
    if colors is None:
        face = np.tile(np.asarray(_rgb(bone_color)), (topo.num_joints, 1))
    else:
        face = np.asarray(colors, dtype=np.float64)
        if face.shape != (topo.num_joints, 3):
            raise SkvisError(f"colors of shape {face.shape}: expected ({topo.num_joints}, 3)")
    joints = ax.scatter(
        xy[:, 0],
        xy[:, 1],
        s=joint_size,
        c=np.clip(face, 0, 1),
        edgecolors=np.clip(face * _EDGE_SHADE, 0, 1),
        linewidths=1.0,
        alpha=alpha,
        zorder=zorder + 0.5,
    )
    return _SkeletonArtists(bones, joints)


def _rgb(color: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def _limits(points: np.ndarray, azimuth: float = 0.0, elevation: float = 0.0, pad: float = 0.1):
    """Equal-aspect screen limits that hold ``points`` (any ``(..., 3)``) projected."""
    xy = project(np.asarray(points).reshape(-1, 3), azimuth, elevation)[:, :2]
    lo, hi = xy.min(0), xy.max(0)
    center, half = (lo + hi) / 2, float((hi - lo).max()) / 2 + pad
    return (center[0] - half, center[0] + half), (center[1] - half, center[1] + half)


def _orbit_limits(points: np.ndarray, pad: float = 0.1):
    """Screen limits for a camera that turns all the way round: the horizontal radius."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    c = (p.min(0) + p.max(0)) / 2
    r = float(np.hypot(p[:, 0] - c[0], p[:, 2] - c[2]).max())
    half = max(r, float(np.ptp(p[:, 1])) / 2) + pad
    return (-c[0] - half, -c[0] + half), (c[1] - half, c[1] + half)


def _style(ax, xlim, ylim) -> None:
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def _colorbar(fig, axes, vmax: float, label: str, cmap: str):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(0.0, vmax), cmap=sensitivity_cmap(cmap))
    bar = fig.colorbar(mappable, ax=axes, shrink=0.8, pad=0.02)
    bar.set_label(label)
    return bar


def _frame_index(frame: Any, n: int, what: str = "frame") -> int:
    from ._checks import check_index

    return check_index(frame, n, what)


def part_rows(topology: Topology | str) -> tuple[list[int], list[tuple[str, int, int]]]:
    """Joint order grouped by body part, for heatmaps.

    Returns the joint index of each row (the parts of `BODY_PARTS` in order, each part's
    joints in the topology's order, then any joint of no part) and, per non-empty part,
    ``(part, first row, end row)``.
    """
    topo = _topology(topology)
    rows: list[int] = []
    groups: list[tuple[str, int, int]] = []
    for part in BODY_PARTS:
        idx = topo.part_indices(part)
        if idx:
            groups.append((part, len(rows), len(rows) + len(idx)))
            rows.extend(idx)
    rows.extend(j for j in range(topo.num_joints) if j not in rows)
    return rows, groups


# -- figures --------------------------------------------------------------------------------------
def frames_figure(
    sequence: Any,
    values: Any,
    topology: Topology | str,
    frames: Sequence[int] | None = None,
    *,
    title: str = "Joint sensitivity",
    label: str = "sensitivity (normalized)",
    vmax: float | None = None,
    cmap: str = "YlOrRd",
    azimuth: float = 0.0,
    elevation: float = 0.0,
    panel_size: float = 2.6,
):
    """Frames of a sequence with per-joint colours: the paper's figure 4.

    Parameters
    ----------
    sequence : (T, J, 3) array, metres
    values : (T, J) array, non-negative (e.g. a joint sensitivity map)
    topology : Topology or name
    frames : frame indices, default an early and a late frame (15 % and 85 % of the way)
    title : the figure's title
    label : the colour bar's label (say the unit)
    vmax : the value drawn darkest (default the map's largest over the whole sequence,
        so panels compare)

    Returns
    -------
    matplotlib.figure.Figure with one axes per frame (``fig.skvis_axes``) and a colour bar.
    """
    import matplotlib.pyplot as plt

    topo = _topology(topology)
    seq = as_sequence(sequence, topo)
    v = check_map(values, seq.shape[:2])
    t = len(seq)
    if frames is None:
        frames = sorted({round(0.15 * (t - 1)), round(0.85 * (t - 1))})
    frames = [_frame_index(f, t) for f in frames]
    if not frames:
        raise SkvisError("frames is empty: expected at least one frame index")
    top = resolve_vmax(v, vmax)
    colors = _colors(v, top, cmap)
    fig, grid = plt.subplots(
        1,
        len(frames),
        figsize=(panel_size * len(frames) + 1.2, panel_size + 0.6),
        squeeze=False,
        layout="constrained",
    )
    axes = list(grid[0])
    xlim, ylim = _limits(seq[frames], azimuth, elevation)
    for i, (ax, f) in enumerate(zip(axes, frames, strict=True)):
        letter = chr(ord("a") + i) if i < 26 else str(i + 1)
        draw_skeleton(ax, seq[f], topo, colors[f], azimuth=azimuth, elevation=elevation)
        _style(ax, xlim, ylim)
        ax.set_title(f"({letter}) frame {f + 1} of {t}", fontsize=10)
    _colorbar(fig, axes, top, label, cmap)
    fig.suptitle(title)
    return _panels(fig, axes)


def _displacement(history: np.ndarray) -> np.ndarray:
    """``(K+1, T, J)``: how far each joint moved from the input, metres."""
    return np.linalg.norm(history - history[:1], axis=-1)


def _history(result: Any, topo: Topology) -> np.ndarray:
    history = np.asarray(getattr(result, "history", None), dtype=np.float64)
    if history.ndim != 4 or history.shape[2:] != (topo.num_joints, 3) or len(history) < 2:
        raise SkvisError(
            f"result history of shape {history.shape}: expected (K+1 >= 2, T, "
            f"{topo.num_joints}, 3), a MaximizationResult with at least one iteration"
        )
    if not np.isfinite(history).all():
        raise SkvisError("result history has NaN or infinite coordinates")
    return history


def _default_frame(disp: np.ndarray) -> int:
    """The frame the last iterate moved most (summed over joints)."""
    return int(np.argmax(disp[-1].sum(-1)))


def maximization_figure(
    result: Any,
    topology: Topology | str,
    frame: int | None = None,
    *,
    title: str = "Activation maximization",
    cmap: str = "YlOrRd",
    azimuth: float = 0.0,
    elevation: float = 0.0,
    panel_size: float = 2.6,
):
    """One frame of the input, after one iteration and at convergence: the paper's figure 5.

    Joints are coloured by how far they moved from the input (metres; one scale for the
    three panels); the input is drawn in grey behind the later panels.

    Parameters
    ----------
    result : MaximizationResult (``history`` of shape ``(K+1, T, J, 3)``, ``K >= 1``)
    topology : Topology or name
    frame : the frame shown, default the one the last iterate moved most

    Returns
    -------
    Figure with three axes (``fig.skvis_axes``) and a colour bar.
    """
    import matplotlib.pyplot as plt

    topo = _topology(topology)
    history = _history(result, topo)
    disp = _displacement(history)
    f = _default_frame(disp) if frame is None else _frame_index(frame, history.shape[1])
    steps = [0, 1, len(history) - 1]
    names = ["input", "after one iteration", _last_name(result, len(history) - 1)]
    top = resolve_vmax(disp, None)
    fig, axes = plt.subplots(
        1, 3, figsize=(3 * panel_size + 1.2, panel_size + 0.7), layout="constrained"
    )
    axes = list(axes)
    xlim, ylim = _limits(history[:, f], azimuth, elevation)
    for letter, ax, k, name in zip("abc", axes, steps, names, strict=True):
        if k:
            draw_skeleton(
                ax, history[0, f], topo, None, bone_color=_GHOST_COLOR, alpha=0.6, zorder=1,
                azimuth=azimuth, elevation=elevation, joint_size=25,
            )  # fmt: skip
        draw_skeleton(
            ax, history[k, f], topo, _colors(disp[k, f], top, cmap),
            azimuth=azimuth, elevation=elevation,
        )  # fmt: skip
        _style(ax, xlim, ylim)
        ax.set_title(f"({letter}) {name}", fontsize=10)
    _colorbar(fig, axes, top, "displacement from the input (m)", cmap)
    fig.suptitle(f"{title}, frame {f + 1} of {history.shape[1]}")
    return _panels(fig, axes)


def _last_name(result: Any, k: int) -> str:
    if getattr(result, "converged", False):
        return f"at convergence (iteration {k})"
    return f"after {k} iterations"


def _max_bone_error(result: Any, k: int) -> float | None:
    names = tuple(getattr(result, "constraint_names", ()))
    res = getattr(result, "residuals", None)
    if res is None or not names:
        return None
    r = np.abs(np.asarray(res, dtype=np.float64))
    cols = [i for i, n in enumerate(names) if n.startswith("bone")]
    if r.ndim != 3 or len(r) <= k or not cols or r.shape[2] != len(names):
        return None
    return float(r[k][:, cols].max())


def constraint_figure(
    unconstrained: Any,
    constrained: Any,
    topology: Topology | str,
    frame: int | None = None,
    *,
    title: str = "One step of activation maximization",
    cmap: str = "YlOrRd",
    azimuth: float = 0.0,
    elevation: float = 0.0,
    panel_size: float = 3.0,
):
    """One iteration without and one with the anatomical constraints: the paper's figure 2.

    Parameters
    ----------
    unconstrained, constrained : MaximizationResult from the same input
        (``maximize_activation(..., constraints=False)`` and ``constraints=True``).
    topology : Topology or name
    frame : the frame shown, default the one the unconstrained step moved most

    Each panel shows the pose after the first iteration over the input in grey, joints
    coloured by their displacement (metres, one scale); the worst bone-length error is
    in the panel's title when the result measured it.

    Returns
    -------
    Figure with two axes (``fig.skvis_axes``) and a colour bar.
    """
    import matplotlib.pyplot as plt

    topo = _topology(topology)
    free, held = _history(unconstrained, topo), _history(constrained, topo)
    if free.shape[1:] != held.shape[1:] or not np.allclose(free[0], held[0], atol=1e-6):
        raise SkvisError(
            "constraint_figure needs two maximizations of the same input; got inputs of "
            f"shapes {free.shape[1:]} and {held.shape[1:]} that differ"
        )
    d_free, d_held = _displacement(free[:2]), _displacement(held[:2])
    f = _default_frame(d_free) if frame is None else _frame_index(frame, free.shape[1])
    top = resolve_vmax(np.stack([d_free[1], d_held[1]]), None)
    fig, axes = plt.subplots(
        1, 2, figsize=(2 * panel_size + 1.2, panel_size + 0.7), layout="constrained"
    )
    axes = list(axes)
    both = np.concatenate([free[:2, f], held[:2, f]])
    xlim, ylim = _limits(both, azimuth, elevation)
    panels = [
        ("(a) without anatomical constraints", unconstrained, free, d_free),
        ("(b) with anatomical constraints", constrained, held, d_held),
    ]
    for ax, (name, result, hist, disp) in zip(axes, panels, strict=True):
        draw_skeleton(
            ax, hist[0, f], topo, None, bone_color=_GHOST_COLOR, alpha=0.6, zorder=1,
            azimuth=azimuth, elevation=elevation, joint_size=25,
        )  # fmt: skip
        draw_skeleton(
            ax, hist[1, f], topo, _colors(disp[1, f], top, cmap),
            azimuth=azimuth, elevation=elevation,
        )  # fmt: skip
        _style(ax, xlim, ylim)
        err = _max_bone_error(result, 1)
        extra = "" if err is None else f"\nbone lengths within {100 * err:.2g} cm"
        ax.set_title(name + extra, fontsize=10)
    _colorbar(fig, axes, top, "displacement from the input (m)", cmap)
    fig.suptitle(f"{title}, frame {f + 1} of {free.shape[1]}")
    return _panels(fig, axes)


def heatmap_figure(
    values: Any,
    topology: Topology | str,
    *,
    title: str = "Joint sensitivity over time",
    label: str = "sensitivity (normalized)",
    vmax: float | None = None,
    cmap: str = "YlOrRd",
    figsize: tuple[float, float] = (8.0, 4.5),
):
    """A joints-by-time heatmap, rows grouped by body part (`skeleton.BODY_PARTS`).

    Rows run through the body parts in `BODY_PARTS` order (head, torso, arms, legs),
    each part's joints in the topology's order, with a line between parts and the
    part's name on the right. ``fig.skvis_rows`` holds the joint index of each row
    (top to bottom).

    Parameters
    ----------
    values : (T, J) array, non-negative
    topology : Topology or name
    label : the colour bar's label (say the unit)
    vmax : the value drawn darkest (default the largest)

    Returns
    -------
    Figure with one heatmap axes (``fig.skvis_axes``) and a colour bar.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    topo = _topology(topology)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise SkvisError(f"values of shape {v.shape}: expected (T, {topo.num_joints})")
    v = check_map(v, (v.shape[0], topo.num_joints))
    if len(v) == 0:
        raise SkvisError(f"values of shape {v.shape}: expected at least one frame")
    top = resolve_vmax(v, vmax)
    rows, groups = part_rows(topo)
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    image = ax.imshow(
        v[:, rows].T,
        aspect="auto",
        interpolation="nearest",
        cmap=sensitivity_cmap(cmap),
        norm=Normalize(0.0, top),
        extent=(0.5, len(v) + 0.5, len(rows) - 0.5, -0.5),
    )
    ax.set_yticks(range(len(rows)), [topo.pretty(j) for j in rows], fontsize=7)
    ax.set_xlabel("frame")
    for part, start, stop in groups:
        if start:
            ax.axhline(start - 0.5, color="k", linewidth=0.8)
        ax.annotate(
            part.replace("_", " "),
            xy=(1.0, (start + stop) / 2 - 0.5),
            xycoords=("axes fraction", "data"),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    bar = fig.colorbar(image, ax=ax, pad=0.12)
    bar.set_label(label)
    ax.set_title(title)
    return _panels(fig, [ax], rows)


# -- animations -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnimationInfo:
    """What `save_animation` wrote.

    Attributes
    ----------
    path : Path
    frames : int
        Frames written (one per frame of the sequence).
    size : (width, height) in pixels
    joint_pixels : ndarray (frames, panels, J, 2)
        Where each joint's centre is in each written frame, pixel column and row from
        the top-left corner (for checks and for overlays).
    """

    path: Path
    frames: int
    size: tuple[int, int]
    joint_pixels: np.ndarray


def _writer(path: Path, fps: float):
    from matplotlib import animation

    suffix = path.suffix.lower()
    if suffix == ".gif":
        # matplotlib takes any positive fps (a frame lasts 1000 / fps ms); its stub says int
        return animation.PillowWriter(fps=fps), None  # type: ignore[arg-type]
    if suffix == ".mp4":
        exe = None
        try:
            import imageio_ffmpeg

            exe = imageio_ffmpeg.get_ffmpeg_exe()
        except Exception:  # noqa: BLE001 - fall back to an ffmpeg matplotlib finds
            exe = None
        if exe is None and not animation.writers.is_available("ffmpeg"):
            raise SkvisError(
                f"{path}: writing MP4 needs ffmpeg; install the imageio-ffmpeg wheel "
                "(pip install imageio-ffmpeg) or put ffmpeg on the PATH, or write a .gif"
            )
        writer = animation.FFMpegWriter(  # fps: as for PillowWriter above
            fps=fps,  # type: ignore[arg-type]
            codec="libx264",
            extra_args=["-pix_fmt", "yuv420p", "-crf", "18"],
        )
        return writer, exe
    raise SkvisError(f"{path}: unknown animation format {suffix!r}; expected .gif or .mp4")


def save_animation(
    path: str | os.PathLike,
    sequence: Any,
    values: Any = None,
    *,
    topology: Topology | str,
    fps: float = 15.0,
    title: str = "",
    label: str = "sensitivity (normalized)",
    vmax: float | None = None,
    cmap: str = "YlOrRd",
    camera: Literal["fixed", "orbit"] = "fixed",
    azimuth: float = 0.0,
    elevation: float = 10.0,
    size: tuple[float, float] | None = None,
    dpi: int = 80,
    original: Any = None,
    progress: bool | None = None,
) -> AnimationInfo:
    """Write a GIF or MP4 of a skeleton sequence coloured by a map.

    Parameters
    ----------
    path : ``*.gif`` (Pillow) or ``*.mp4`` (H.264 through ffmpeg: the ``imageio-ffmpeg``
        wheel's, else one on the PATH; a `SkvisError` says so when there is none)
    sequence : (T, J, 3) array, metres; or a `MaximizationResult`, drawn as its input
        (``history[0]``) beside the synthesized sequence (``history[-1]``), joints
        coloured by their displacement from the input (metres) unless ``values`` is
        given
    values : (T, J) non-negative array, optional; None draws every joint in one colour
        and no colour bar
    topology : Topology or name
    fps : frames per second
    title : drawn above the skeleton; the frame number is drawn under it
    label : the colour bar's label (say the unit)
    vmax : the value drawn darkest (default the map's largest)
    camera : ``"fixed"`` or ``"orbit"`` (one turn about the vertical axis over the sequence)
    azimuth, elevation : the camera's start, degrees (see `project`)
    size : figure size in inches (default by the number of panels); ``dpi`` pixels an inch
    original : (T, J, 3) array, optional: drawn on the left of ``sequence`` (e.g. the
        input of an activation maximization), in the lightest colour of the map
    progress : show a tqdm bar; default for sequences of more than 100 frames

    Returns
    -------
    AnimationInfo
    """
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib import animation

    path = Path(path)
    topo = _topology(topology)
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0:
        raise SkvisError(f"fps must be a positive number, got {fps!r}")
    if camera not in ("fixed", "orbit"):
        raise SkvisError(f"camera must be 'fixed' or 'orbit', got {camera!r}")
    if not path.parent.is_dir():
        raise SkvisError(f"{path}: the folder {path.parent} does not exist")
    writer, exe = _writer(path, fps)

    if hasattr(sequence, "history"):
        if original is not None:
            raise SkvisError("original goes with a sequence; a MaximizationResult has its own")
        history = _history(sequence, topo).astype(np.float32)
        original, seq = history[0], history[-1]
        if values is None:
            values = _displacement(history[[0, -1]])[1]
            label = "displacement from the original (m)"
    else:
        seq = as_sequence(sequence, topo)
    panels, names = [seq], [""]
    v = None if values is None else check_map(values, seq.shape[:2])
    panel_values = [v]
    if original is not None:
        orig = as_sequence(original, topo, name="original")
        if orig.shape != seq.shape:
            raise SkvisError(
                f"original of shape {orig.shape}: expected the sequence's shape {seq.shape}"
            )
        # the original on the left, as in the paper's figure 5
        panels, names = [orig, seq], ["original", "synthesized"]
        panel_values = [None if v is None else np.zeros_like(v), v]
    top = 1.0 if v is None else resolve_vmax(v, vmax)
    t = len(panels[0])
    colors = [None if v is None else _colors(v, top, cmap) for v in panel_values]
    n = len(panels)
    has_bar = colors[0] is not None
    figsize = size or (3.2 * n + (1.1 if has_bar else 0.2), 4.0)
    if progress is None:
        progress = t > 100

    with matplotlib.rc_context({"animation.ffmpeg_path": exe} if exe else {}):
        fig, grid = plt.subplots(1, n, figsize=figsize, dpi=dpi, squeeze=False)
        axes = list(grid[0])
        try:
            if camera == "orbit":
                lims = [_orbit_limits(p) for p in panels]
                lims = [_merge(lims)] * n
            else:
                lims = [_merge([_limits(p, azimuth, elevation) for p in panels])] * n
            artists = []
            for ax, pos, col, name, lim in zip(axes, panels, colors, names, lims, strict=True):
                art = draw_skeleton(
                    ax, pos[0], topo, None if col is None else col[0],
                    azimuth=azimuth, elevation=elevation, joint_size=70,
                )  # fmt: skip
                _style(ax, *lim)
                if name:
                    ax.set_title(name, fontsize=10)
                artists.append(art)
            if has_bar:
                _colorbar(fig, axes, top, label, cmap)
            if title:
                fig.suptitle(title)
            counter = fig.text(0.02, 0.02, "", fontsize=9, family="monospace")
            fig.canvas.draw()  # the layout (and the axes' transforms) before the first frame
            width, height = (int(round(v)) for v in fig.canvas.get_width_height())
            pixels = np.zeros((t, n, topo.num_joints, 2))

            def update(k: int):
                az = azimuth + (360.0 * k / t if camera == "orbit" else 0.0)
                for i, (art, pos, col) in enumerate(zip(artists, panels, colors, strict=True)):
                    xy = project(pos[k], az, elevation)[:, :2]
                    art.bones.set_segments([xy[[p, c]] for p, c in topo.bones])
                    art.joints.set_offsets(xy)
                    if col is not None:
                        art.joints.set_facecolors(col[k])
                        art.joints.set_edgecolors(np.clip(col[k] * _EDGE_SHADE, 0, 1))
                    disp_xy = axes[i].transData.transform(xy)
                    pixels[k, i, :, 0] = disp_xy[:, 0]
                    pixels[k, i, :, 1] = height - disp_xy[:, 1]
                counter.set_text(f"frame {k + 1:>{len(str(t))}}/{t}")
                return [a for art in artists for a in (art.bones, art.joints)] + [counter]

            anim = animation.FuncAnimation(
                fig, update, frames=t, interval=1000.0 / fps, blit=False, repeat=False
            )
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=t, desc=f"writing {path.name}", unit="frame")

            def step(i: int, total: int) -> None:
                if bar is not None:
                    bar.update(1)

            try:
                anim.save(str(path), writer=writer, dpi=dpi, progress_callback=step)
            except (OSError, RuntimeError, ValueError) as exc:
                raise SkvisError(f"{path}: could not write the animation ({exc})") from exc
            finally:
                if bar is not None:
                    bar.close()
        finally:
            plt.close(fig)
    return AnimationInfo(path, t, (width, height), pixels)


def _merge(limits):
    """One pair of equal-size limits that hold every panel's."""
    (x0, x1), (y0, y1) = limits[0]
    for (a0, a1), (b0, b1) in limits[1:]:
        x0, x1, y0, y1 = min(x0, a0), max(x1, a1), min(y0, b0), max(y1, b1)
    return (x0, x1), (y0, y1)
