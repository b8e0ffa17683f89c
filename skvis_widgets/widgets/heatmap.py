"""`JointHeatmap`: a joints-by-time map (bqplot GridHeatMap) with a frame cursor.

Rows are joints (named on the axis), columns are frames. Clicking a cell sets
`frame`; hovering a cell names its joint, frame and value (a browser tooltip,
and `hovered` on the kernel side).
"""

from __future__ import annotations

from collections.abc import Sequence

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T

from ..errors import SkvisError

__all__ = ["JointHeatmap", "SEQUENTIAL_COLORS"]

#: Light (small values) to dark (large values): the stops of
#: ``skvis_widgets.saliency.COLORMAPS["YlOrRd"]``, so that the heatmap and the skeleton agree.
SEQUENTIAL_COLORS = (
    "#ffffcc",
    "#ffeda0",
    "#fed976",
    "#feb24c",
    "#fd8d3c",
    "#fc4e2a",
    "#e31a1c",
    "#bd0026",
    "#800026",
)


class JointHeatmap(W.VBox):
    """A ``(J, T)`` heatmap of per-joint values over time with a cursor on `frame`.

    Parameters
    ----------
    joint_names : sequence of str
        Row labels, one per joint (top to bottom).
    colors : sequence of str
        Colour ramp from 0 to the largest value.
    height : str
        CSS height of the figure.

    Attributes
    ----------
    frame : int
        The frame under the cursor; set by clicking a cell.
    hovered : str
        ``"elbow left, frame 12: 0.83"`` for the cell under the mouse.
    """

    frame = T.Int(0)
    hovered = T.Unicode("")

    def __init__(
        self,
        joint_names: Sequence[str],
        *,
        colors: Sequence[str] = SEQUENTIAL_COLORS,
        height: str = "300px",
        **kwargs,
    ) -> None:
        self.joint_names = tuple(str(n).replace("_", " ") for n in joint_names)
        j = len(self.joint_names)
        self._col_scale = bq.LinearScale(min=0.0, max=1.0)
        self._row_scale = bq.OrdinalScale(reverse=True)
        self._color_scale = bq.ColorScale(colors=list(colors), min=0.0, max=1.0)
        self.mark = bq.GridHeatMap(
            row=np.array(self.joint_names),
            column=np.arange(3, dtype=np.float64),
            color=np.zeros((j, 2)),
            scales={"row": self._row_scale, "column": self._col_scale, "color": self._color_scale},
            stroke=None,
            interactions={"click": "select", "hover": "tooltip"},
            tooltip=bq.Tooltip(
                fields=["row", "column", "color"],
                labels=["joint", "frame", "value"],
                formats=["", "d", ".3f"],
            ),
            selected_style={"stroke": "#1f77b4", "stroke-width": "2px"},
        )
        self._cursor_scale = bq.LinearScale(min=0.0, max=1.0)
        self.cursor = bq.Lines(
            x=np.array([0.5, 0.5]),
            y=np.array([0.0, 1.0]),
            scales={"x": self._col_scale, "y": self._cursor_scale},
            colors=["#1f77b4"],
            stroke_width=2,
        )
        self._x_axis = bq.Axis(scale=self._col_scale, label="frame", tick_format="d", num_ticks=6)
        self._y_axis = bq.Axis(scale=self._row_scale, side="left", tick_style={"font-size": "9px"})
        self.figure = bq.Figure(
            marks=[self.mark, self.cursor],
            axes=[self._x_axis, self._y_axis],
            fig_margin={"top": 10, "bottom": 36, "left": 100, "right": 10},
            padding_x=0.0,
            padding_y=0.0,
            layout=W.Layout(width="100%", height=height),
        )
        self._label = W.HTML("")
        self._num_frames = 2
        self.mark.observe(self._on_selected, "selected")
        self.mark.on_element_click(self._on_click)
        self.mark.on_hover(self._on_hover)
        super().__init__(children=[self.figure, self._label], **kwargs)

    # -- data -----------------------------------------------------------------------------
    @property
    def values(self) -> np.ndarray:
        """``(T, J)``: the values shown now."""
        return np.asarray(self.mark.color).T

    def show(self, values: np.ndarray, *, title: str = "", vmax: float | None = None) -> None:
        """Show ``(T, J)`` values (a new array; one message for the colours).

        ``vmax`` fixes the top of the colour ramp (default: the largest value).
        """
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != len(self.joint_names):
            raise SkvisError(
                f"heatmap values of shape {v.shape}: expected (T, {len(self.joint_names)})"
            )
        v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
        if v.shape[0] == 1:
            # bqplot squeezes a one-column map to 1-D; draw a one-frame sequence twice as wide.
            v = np.repeat(v, 2, axis=0)
        top = float(vmax) if vmax is not None else float(v.max(initial=0.0))
        top = top if top > 0 else 1.0
        t = v.shape[0]
        with self.mark.hold_sync():
            # The colours first: bqplot checks the columns against the colours' shape.
            self.mark.color = np.ascontiguousarray(v.T)
            if v.shape[0] + 1 != len(self.mark.column):
                self.mark.column = np.arange(v.shape[0] + 1, dtype=np.float64)
                self._col_scale.max = float(v.shape[0])
            self._num_frames = t
            if self._color_scale.max != top:
                self._color_scale.max = top
        self._x_axis.label = title or "frame"
        self._move_cursor(self.frame)

    # -- cursor and events --------------------------------------------------------------
    @T.observe("frame")
    def _on_frame(self, change) -> None:
        self._move_cursor(change["new"])

    def _move_cursor(self, frame: int) -> None:
        x = float(min(max(frame, 0), self._num_frames - 1)) + 0.5
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
        if not (0 <= r < len(self.joint_names)):
            return
        value = data.get("color")
        text = f"{self.joint_names[r]}, frame {c}"
        if isinstance(value, (int, float)):
            text += f": {value:.3f}"
        self.hovered = text
        self._label.value = f"<span style='font-size:12px;color:#444'>{text}</span>"
