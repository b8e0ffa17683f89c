"""`JointHeatmap`: a joints-by-time map (bqplot GridHeatMap) with a frame cursor.

Rows are joints in anatomical order, grouped by body part (head and torso, left arm,
right arm, left leg, right leg: `skvis_widgets.export.part_rows`, the order of the
exported pages) with a line between groups; columns are frames, centred on integer
ticks. Clicking a cell sets `frame`; hovering a cell names its joint, frame and value (a
browser tooltip, and `hovered` on the kernel side). The colours come from a
`skvis_widgets.colors.ColorScale`, the scene's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T

from ..colors import COLORMAPS, ColorScale, to_hex
from ..errors import SkvisError
from ..export import part_rows
from ..skeleton import Topology, display_name

__all__ = ["JointHeatmap", "frame_ticks", "grid_heatmap"]


def frame_ticks(num_frames: int, most: int = 8) -> np.ndarray:
    """Integer frame ticks inside ``0 .. num_frames - 1``: steps of 1, 2, 5, 10, 20, 50..."""
    n = max(int(num_frames), 1)
    steps = (base * 10**p for p in range(12) for base in (1, 2, 5))
    step = next(s for s in steps if (n - 1) // s + 1 <= most)
    return np.arange(0, n, step, dtype=np.float64)


def grid_heatmap(
    row: np.ndarray,
    column: np.ndarray,
    color: np.ndarray,
    scales: dict[str, Any],
    *,
    labels: tuple[str, str, str],
    formats: tuple[str, str, str],
) -> bq.GridHeatMap:
    """A bqplot grid whose cells are selected on click and described on hover: the one
    form of the explorer's joints-by-time map and of the atlases' units-by-classes map.

    ``labels`` and ``formats`` name and format the tooltip's row, column and value.
    """
    return bq.GridHeatMap(
        row=row,
        column=column,
        color=color,
        scales=scales,
        stroke=None,
        interactions={"click": "select", "hover": "tooltip"},
        tooltip=bq.Tooltip(
            fields=["row", "column", "color"], labels=list(labels), formats=list(formats)
        ),
        selected_style={"stroke": "#1f77b4", "stroke-width": "2px"},
    )


class JointHeatmap(W.VBox):
    """A ``(J, T)`` heatmap of per-joint values over time with a cursor on `frame`.

    Parameters
    ----------
    topology : Topology or sequence of str
        Rows: a topology's joints in anatomical groups, or plain joint names (rows
        in the given order, no groups).
    colors : sequence of str
        Colour ramp from 0 to the largest value (default: the scene's YlOrRd).
    height : str
        CSS height of the figure.

    Attributes
    ----------
    frame : int
        The frame under the cursor; set by clicking a cell.
    hovered : str
        ``"elbow left, frame 12: 0.83"`` for the cell under the mouse (cleared when new
        values are shown).
    order : tuple of int
        The joint index of each row, top to bottom.
    """

    frame = T.Int(0)
    hovered = T.Unicode("")

    def __init__(
        self,
        topology: Topology | Sequence[str],
        *,
        colors: Sequence[str] | None = None,
        height: str = "330px",
        **kwargs,
    ) -> None:
        if isinstance(topology, Topology):
            rows, groups = part_rows(topology)
            names = [topology.pretty(r) for r in rows]
            self.order = tuple(int(r) for r in rows)
            self.groups = tuple(groups)
            self.joint_names = tuple(topology.pretty(i) for i in range(topology.num_joints))
        else:
            self.joint_names = tuple(display_name(n) for n in topology)
            self.order = tuple(range(len(self.joint_names)))
            self.groups = ()
            names = list(self.joint_names)
        j = len(self.order)
        self._row_names = tuple(names)
        stops = list(colors) if colors is not None else list(to_hex(COLORMAPS["YlOrRd"]))
        self._col_scale = bq.LinearScale(min=-0.5, max=0.5)
        self._row_scale = bq.OrdinalScale(reverse=True)
        self._color_scale = bq.ColorScale(colors=stops, min=0.0, max=1.0)
        self.mark = grid_heatmap(
            np.array(names),
            np.arange(3, dtype=np.float64) - 0.5,
            np.zeros((j, 2)),
            {"row": self._row_scale, "column": self._col_scale, "color": self._color_scale},
            labels=("joint", "frame", "value"),
            formats=("", "d", ".3g"),
        )
        # Lines on a 0..1 scale (1 = top) across the whole map: the frame cursor and the
        # separators between body parts (rows have equal height, no padding).
        self._unit_scale = bq.LinearScale(min=0.0, max=1.0)
        self.cursor = bq.Lines(
            x=np.array([0.0, 0.0]),
            y=np.array([0.0, 1.0]),
            scales={"x": self._col_scale, "y": self._unit_scale},
            colors=["#1f77b4"],
            stroke_width=2.5,
        )
        # head and torso read as one group (the trunk): no line between them
        cuts = [
            a
            for k, (name, a, _) in enumerate(self.groups)
            if a > 0 and not (name == "torso" and self.groups[k - 1][0] == "head")
        ]
        self.separators = bq.Lines(
            x=np.array([[-0.5, 0.5]] * max(len(cuts), 1)),
            y=np.array([[1 - a / j] * 2 for a in cuts] or [[2.0, 2.0]]),
            scales={"x": self._col_scale, "y": self._unit_scale},
            colors=["#333333"],
            stroke_width=1.5,
        )
        self._x_axis = bq.Axis(
            scale=self._col_scale, label="frame", tick_format="d", tick_values=np.array([0.0])
        )
        self._y_axis = bq.Axis(scale=self._row_scale, side="left", tick_style={"font-size": "12px"})
        self.figure = bq.Figure(
            marks=[self.mark, self.separators, self.cursor],
            axes=[self._x_axis, self._y_axis],
            fig_margin={"top": 8, "bottom": 38, "left": 110, "right": 12},
            padding_x=0.0,
            padding_y=0.0,
            display_toolbar=False,  # its pan/zoom buttons popped up over the map
            layout=W.Layout(width="100%", height=height),
        )
        self._label = W.HTML("", layout=W.Layout(min_height="18px"))
        self._num_frames = 1
        self.mark.observe(self._on_selected, "selected")
        self.mark.on_element_click(self._on_click)
        self.mark.on_hover(self._on_hover)
        super().__init__(children=[self.figure, self._label], **kwargs)
        self.add_class("skvis-heatmap")

    # -- data -----------------------------------------------------------------------------
    @property
    def values(self) -> np.ndarray:
        """``(T, J)``: the values shown now, joints in the topology's order."""
        shown = np.asarray(self.mark.color)[:, : self._num_frames]
        out = np.empty_like(shown)
        out[list(self.order)] = shown
        return out.T

    def show(
        self,
        values: np.ndarray,
        *,
        title: str = "",
        vmax: float | None = None,
        scale: ColorScale | None = None,
    ) -> None:
        """Show ``(T, J)`` values (a new array; one message for the colours).

        ``scale`` (the scene's `ColorScale`) sets the colours: one top for the whole
        map, or, scaled per frame, each frame divided by its own top (the cells then
        hold ``value / top``, as the legend says). Else ``vmax`` fixes the top of the
        ramp (default: the largest value). Clears the hover text.
        """
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != len(self.order):
            raise SkvisError(f"heatmap values of shape {v.shape}: expected (T, {len(self.order)})")
        if not np.isfinite(v).all():
            v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
        t = v.shape[0]
        if scale is not None and scale.per_frame:
            v = scale.unit_values(v)
            top = 1.0
        elif scale is not None:
            top = scale.top
        else:
            top = float(vmax) if vmax is not None else float(v.max(initial=0.0))
        top = top if top > 0 else 1.0
        cells = v[:, list(self.order)].T
        if t == 1:
            # bqplot squeezes a one-column map to 1-D; draw a one-frame sequence twice as wide.
            cells = np.repeat(cells, 2, axis=1)
        with self.mark.hold_sync():
            # The colours first: bqplot checks the columns against the colours' shape.
            self.mark.color = np.ascontiguousarray(cells)
            if cells.shape[1] + 1 != len(self.mark.column):
                self.mark.column = np.arange(cells.shape[1] + 1, dtype=np.float64) - 0.5
            if self._color_scale.max != top:
                self._color_scale.max = top
        if t != self._num_frames or self._col_scale.max != t - 0.5:
            self._num_frames = t
            with self._col_scale.hold_sync():
                self._col_scale.min, self._col_scale.max = -0.5, t - 0.5
            self._x_axis.tick_values = frame_ticks(t)
            self.separators.x = np.array([[-0.5, t - 0.5]] * len(self.separators.y))
        self._x_axis.label = title or "frame"
        self.clear_hover()
        self._move_cursor(self.frame)

    def clear_hover(self) -> None:
        """Forget the hovered cell (the values under it changed)."""
        self.hovered = ""
        self._label.value = ""
        if self.mark.selected is not None:
            self.mark.selected = None

    # -- cursor and events --------------------------------------------------------------
    @T.observe("frame")
    def _on_frame(self, change) -> None:
        self._move_cursor(change["new"])

    def _move_cursor(self, frame: int) -> None:
        x = float(min(max(frame, 0), self._num_frames - 1))
        self.cursor.x = np.array([x, x])

    def _set_frame_from_column(self, column) -> None:
        try:
            k = int(column)
        except (TypeError, ValueError):
            return
        if 0 <= k < self._num_frames:
            self.frame = k

    def _on_selected(self, change) -> None:
        sel = change["new"]
        if sel is not None and len(sel):
            self._set_frame_from_column(np.asarray(sel)[-1][1])

    def _on_click(self, _mark, event) -> None:
        data = event.get("data") or {}
        if isinstance(data, dict) and "columnNum" in data:
            self._set_frame_from_column(data["columnNum"])

    def _on_hover(self, _mark, event) -> None:
        data = event.get("data") or {}
        if not isinstance(data, dict) or "rowNum" not in data:
            return
        r, c = int(data["rowNum"]), int(data.get("columnNum", 0))
        if not (0 <= r < len(self._row_names)):
            return
        value = data.get("color")
        text = f"{self._row_names[r]}, frame {c}"
        if isinstance(value, (int, float)):
            text += f": {value:.3g}"
        self.hovered = text
        self._label.value = f"<span style='font-size:12px;color:#444'>{text}</span>"
