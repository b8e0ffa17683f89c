"""Standalone views of the atlases and the method choice.

- `ClassAtlasGrid`: small multiples, one row per class and one column per body part, each
  cell the part's share of the class's mean map over normalized time, the trained model's
  (solid) beside the randomized model's (dashed). A matplotlib figure rendered to a PNG
  in an ``ipywidgets.Image`` (crisp at 2x, survives HTML export, no pyplot state).
- `UnitHeatmap`: units by classes (bqplot GridHeatMap), sortable; clicking a unit sets
  `unit` and calls the callbacks registered with `on_select`.
- `MethodSelector`: a Dropdown of `skvis_widgets.methods.METHODS` (the paper's labelled as
  such, one click away) and the verdict line of the chosen method from a `CompareTable`.

Each is a thin view: traits in, a pure function's result drawn; wiring into the
explorer is ``selector.observe(..., "value")`` and ``heatmap.on_select(...)``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from html import escape, unescape
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T

from ..atlas import ClassAtlas, UnitAtlas
from ..colors import COLORMAPS, to_hex
from ..errors import SkvisError
from ..methods import METHODS
from ..metrics import CompareTable, verdict_line
from .heatmap import grid_heatmap
from .panels import labelled_tooltip

__all__ = ["ClassAtlasGrid", "UnitHeatmap", "MethodSelector", "render_class_atlas"]


def render_class_atlas(
    atlas: ClassAtlas,
    *,
    classes: Any = None,
    show_random: bool = True,
    dpi: int = 144,
    cell: tuple[float, float] = (1.15, 0.42),
) -> bytes:
    """PNG bytes of the class-by-part small multiples of ``atlas``.

    ``classes``: indices of the rows to draw (default every class with sequences).
    Every cell shares one y range, so heights compare across classes and parts.
    """
    from matplotlib.figure import Figure

    if classes is None:
        classes = [c for c in range(len(atlas.class_names)) if atlas.counts[c] > 0]
    classes = [int(c) for c in classes]
    if not classes:
        raise SkvisError("the atlas has no class with sequences to draw")
    parts = atlas.part_names
    rows, cols = len(classes), len(parts)
    fig = Figure(figsize=(1.6 + cell[0] * cols, 0.5 + cell[1] * rows), dpi=dpi)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    k = atlas.part_time.shape[1]
    x = (np.arange(k) + 0.5) / k
    top = np.nanmax([np.nanmax(atlas.part_time[classes])] + (
        [np.nanmax(atlas.random_part_time[classes])] if show_random else []
    ))  # fmt: skip
    for r, c in enumerate(classes):
        for q, part in enumerate(parts):
            ax = axes[r][q]
            ax.fill_between(x, atlas.part_time[c, :, q], color="#fc4e2a", alpha=0.35, lw=0)
            ax.plot(x, atlas.part_time[c, :, q], color="#bd0026", lw=1)
            if show_random:
                ax.plot(x, atlas.random_part_time[c, :, q], color="#737373", lw=0.8, ls="--")
            ax.set_ylim(0, top * 1.05 if np.isfinite(top) and top > 0 else 1)
            ax.set_xlim(0, 1)
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
            if r == 0:
                ax.set_title(part.replace("_", " "), fontsize=7)
            if q == 0:
                ax.set_ylabel(
                    atlas.class_names[c].replace("_", " "), fontsize=6, rotation=0, ha="right",
                    va="center",
                )  # fmt: skip
    fig.subplots_adjust(left=1.5 / fig.get_figwidth(), right=0.99, top=1 - 0.3 / fig.get_figheight(),
                        bottom=0.02, wspace=0.08, hspace=0.12)  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


class ClassAtlasGrid(W.VBox):
    """Small multiples of a `ClassAtlas`: class x body part, share over normalized time.

    Attributes
    ----------
    atlas : ClassAtlas or None
    classes : tuple of int
        The rows drawn (empty: every class with sequences).
    show_random : bool
        Draw the randomized model's curves (dashed grey) beside the trained model's.
    """

    atlas = T.Instance(ClassAtlas, allow_none=True)
    classes = T.Tuple()
    show_random = T.Bool(True)

    def __init__(self, atlas: ClassAtlas | None = None, **kwargs: Any) -> None:
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self._caption = W.HTML("")
        self._random_box = W.Checkbox(value=True, description="randomized model", indent=False)
        W.link((self._random_box, "value"), (self, "show_random"))
        super().__init__(children=[self._random_box, self.image, self._caption], **kwargs)
        self.add_class("skvis-class-atlas")
        self.atlas = atlas

    def say(self, html: str) -> None:
        """Show ``html`` under the grid (e.g. "computing ..."), until the next atlas."""
        self._caption.value = html

    @T.observe("atlas", "classes", "show_random")
    def _redraw(self, _change: Any = None) -> None:
        a = self.atlas
        if a is None:
            self.image.value = b""
            self._caption.value = "<i>no atlas yet</i>"
            return
        self.image.value = render_class_atlas(
            a, classes=self.classes or None, show_random=self.show_random
        )
        self._caption.value = (
            f"<span style='font-size:12px;color:#444'>mean {a.method} map per class "
            f"({int(a.counts.sum())} sequences), each body part's share over the sequence "
            f"(start to end); dashed: the same model with random weights</span>"
        )


class UnitHeatmap(W.VBox):
    """Hidden units by classes, sortable; a click on a unit selects it.

    Attributes
    ----------
    atlas : UnitAtlas or None
    values : {"activation", "magnitude", "zscore"}
        What the colour shows: the mean response per class, its magnitude, or the
        magnitude z-scored across classes per unit (default; selectivity stands out).
    order_by : str
        `UnitAtlas.order`'s key.
    unit : int
        The selected unit (-1: none).
    """

    atlas = T.Instance(UnitAtlas, allow_none=True)
    values = T.Enum(("activation", "magnitude", "zscore"), default_value="zscore")
    order_by = T.Unicode("selectivity")
    unit = T.Int(-1)

    def __init__(self, atlas: UnitAtlas | None = None, *, height: str = "420px", **kwargs: Any):
        self._dispatcher = W.CallbackDispatcher()
        self._row_scale = bq.OrdinalScale(reverse=False)
        self._col_scale = bq.OrdinalScale()
        self._color_scale = bq.ColorScale(colors=list(to_hex(COLORMAPS["YlOrRd"])))
        self.mark = grid_heatmap(
            np.array(["0", "1"]),
            np.array(["-", "--"]),
            np.zeros((2, 2)),  # bqplot squeezes a 1 x 1 map to 0-d
            {"row": self._row_scale, "column": self._col_scale, "color": self._color_scale},
            labels=("unit", "class", "value"),
            formats=("", "", ".3f"),
        )
        self._height = height
        self.figure = self._new_figure(
            [
                bq.Axis(scale=self._col_scale, tick_rotate=-45, tick_style={"font-size": "9px"}),
                bq.Axis(
                    scale=self._row_scale,
                    side="left",
                    label="unit",
                    tick_style={"font-size": "8px"},
                ),
            ]  # fmt: skip
        )
        self._sort = labelled_tooltip(
            W.Dropdown(
                description="sort units by",
                tooltip="the order of the heatmap's columns",
                style={"description_width": "initial"},
            )
        )
        self._show = W.ToggleButtons(
            options=[("z-score", "zscore"), ("|h|", "magnitude"), ("h", "activation")],
            tooltips=[
                "mean |activation| per class, z-scored across the classes of each unit",
                "mean |activation| per class",
                "mean signed activation per class",
            ],
            style={"button_width": "70px"},
        )
        W.link((self._show, "value"), (self, "values"))
        self._sort.observe(self._on_sort, "value")
        self._label = W.HTML("")
        self._order = np.zeros(0, np.int64)
        self.mark.on_element_click(self._on_click)
        super().__init__(children=[W.HBox([self._sort, self._show]), self._label], **kwargs)
        self.add_class("skvis-unit-atlas")
        self.atlas = atlas

    def _new_figure(self, axes: list[Any]) -> bq.Figure:
        return bq.Figure(
            marks=[self.mark],
            axes=axes,
            fig_margin={"top": 10, "bottom": 80, "left": 50, "right": 10},
            padding_x=0.0,
            padding_y=0.0,
            layout=W.Layout(width="100%", height=self._height),
        )

    # -- callbacks (ipyleaflet style) ---------------------------------------------------------
    def on_select(self, callback: Callable[[int], Any], remove: bool = False) -> None:
        """Call ``callback(unit)`` when a unit is clicked (``remove=True`` unregisters it)."""
        self._dispatcher.register_callback(callback, remove=remove)

    # -- drawing ----------------------------------------------------------------------------
    @T.observe("atlas")
    def _on_atlas(self, _change: Any) -> None:
        a = self.atlas
        if a is None:
            self._sort.options = []
            return
        kids = tuple(self.children)  # type: ignore[has-type]  # a traitlets descriptor
        if self.figure not in kids:
            # shown from the first atlas on: a figure first laid out in a collapsed panel
            # (the explorer's accordion) keeps a zero size in bqplot, and its placeholder
            # cells would sit among the page's other heatmaps
            self.children = (kids[0], self.figure, *kids[1:])
        opts = [("selectivity", "selectivity"), ("preferred class", "preferred_class"),
                ("peak time", "peak_time"), ("unit", "unit")]  # fmt: skip
        opts += [(f"tuning: {p.replace('_', ' ')}", p) for p in a.part_names]
        with self.hold_trait_notifications():
            self._sort.options = opts
            if self.order_by not in [v for _, v in opts]:
                self.order_by = "selectivity"
            self._sort.value = self.order_by
        self._redraw()

    def _on_sort(self, change: Any) -> None:
        if change["new"]:
            self.order_by = change["new"]

    @T.observe("order_by", "values")
    def _redraw(self, _change: Any = None) -> None:
        a = self.atlas
        if a is None:
            return
        self._order = a.order(self.order_by)
        v = {"activation": a.activation, "magnitude": a.magnitude}.get(self.values)
        if v is None:
            m = a.magnitude
            with np.errstate(invalid="ignore", divide="ignore"):
                v = (m - np.nanmean(m, 1, keepdims=True)) / np.nanstd(m, 1, keepdims=True)
        v = np.nan_to_num(np.asarray(v)[self._order], nan=0.0)
        lo, hi = float(v.min()), float(v.max())
        with self.mark.hold_sync():
            self.mark.color = v
            self.mark.row = np.array([str(u) for u in self._order])
            self.mark.column = np.array(a.class_names)
            self._color_scale.min, self._color_scale.max = lo, hi if hi > lo else lo + 1

    # -- events -----------------------------------------------------------------------------
    def _on_click(self, _mark: Any, event: dict) -> None:
        data = event.get("data") or {}
        if not isinstance(data, dict) or "rowNum" not in data:
            return
        r = int(data["rowNum"])
        if 0 <= r < len(self._order):
            self.select(int(self._order[r]))

    def say(self, html: str) -> None:
        """Show ``html`` under the heatmap (e.g. "computing ..."), until a unit is selected."""
        self._label.value = html

    def select(self, unit: int) -> None:
        """Select ``unit`` as a click would: set `unit`, say what it is, call callbacks."""
        a = self.atlas
        if a is None or not 0 <= unit < a.num_units:
            raise SkvisError(f"unit {unit!r} out of range for the atlas")
        self.unit = int(unit)
        c = int(a.preferred_class[unit])
        part = a.part_names[int(np.argmax(a.part_tuning[unit]))]
        self._label.value = (
            f"<span style='font-size:12px;color:#444'>unit {unit}: prefers "
            f"{a.class_names[c]} (selectivity {a.selectivity[unit]:.2f}), tuned to the "
            f"{part.replace('_', ' ')}, peaks at {a.peak_time[unit, c]:.0%} of the "
            f"sequence</span>"
        )
        self._dispatcher(int(unit))


class MethodSelector(W.VBox):
    """Which map: a Dropdown of the methods and the dataset-level verdict of the chosen one.

    Attributes
    ----------
    value : str
        A key of `METHODS`.
    table : CompareTable or None
        When set (e.g. from `compare_methods` run in the background), the verdict line
        of the chosen method is shown.
    pending : str
        While the verdict is computed: what is being done (shown instead of the verdict,
        with `progress`).
    note : str
        Said after the verdict (e.g. why there is none).
    recurrent : bool
        False hides the methods that need a recurrent model and disables the paper's
        button.
    """

    value = T.Unicode("paper")
    table = T.Instance(CompareTable, allow_none=True)
    pending = T.Unicode("")
    note = T.Unicode("")
    recurrent = T.Bool(True)

    def __init__(self, value: str = "paper", **kwargs: Any) -> None:
        self._dropdown = labelled_tooltip(
            W.Dropdown(
                description="map",
                tooltip="how the map is computed (the verdict below says whether to trust it)",
                layout=W.Layout(width="100%"),
            )
        )
        self._paper = W.Button(
            description="the paper's map", tooltip="eq 5, instantaneous (Patil et al.)",
            icon="book", layout=W.Layout(width="auto", margin="2px 0 2px 90px"),
        )  # fmt: skip
        self._verdict = W.HTML("")
        self.progress = W.FloatProgress(
            value=0, min=0, max=1, description="verdict", layout=W.Layout(display="none")
        )
        self._dropdown.observe(self._on_dropdown, "value")
        self._paper.on_click(lambda _b: setattr(self, "value", "paper"))
        super().__init__(
            children=[self._dropdown, self._paper, self._verdict, self.progress], **kwargs
        )
        self.add_class("skvis-method-selector")
        self._options()
        self.value = value
        self._show()

    def _options(self) -> None:
        names = [m for m, i in METHODS.items() if self.recurrent or not i.recurrent_only]
        self._dropdown.options = [(METHODS[m].label, m) for m in names]
        self._paper.disabled = not self.recurrent
        self._paper.tooltip = (
            "eq 5, instantaneous (Patil et al.)"
            if self.recurrent
            else "the paper's map needs a recurrent model (an LSTM/GRU with an FC head)"
        )

    @T.validate("value")
    def _valid(self, proposal: Any) -> str:
        v = proposal["value"]
        if v not in METHODS:
            raise T.TraitError(f"value must be one of {list(METHODS)}, got {v!r}")
        if METHODS[v].recurrent_only and not self.recurrent:
            raise T.TraitError(f"method {v!r} needs a recurrent model")
        return v

    @T.observe("recurrent")
    def _on_recurrent(self, _change: Any) -> None:
        if not self.recurrent and METHODS[self.value].recurrent_only:
            self.value = "gradient"
        self._options()
        self._dropdown.value = self.value

    def _on_dropdown(self, change: Any) -> None:
        if change["new"] is not None:
            self.value = change["new"]

    @T.observe("value", "table", "pending", "note")
    def _show(self, _change: Any = None) -> None:
        if self._dropdown.value != self.value:
            self._dropdown.value = self.value
        t = self.table
        if self.pending:
            text = self.pending
        elif t is None:
            text = METHODS[self.value].description
        elif self.value in t:
            text = verdict_line(t[self.value], t)
        else:
            text = f"{METHODS[self.value].label}: not in the verdict table"
        if self.note:
            text += f" ({self.note})"
        self.progress.layout.display = None if self.pending else "none"
        self._verdict.value = (
            f"<div class='skvis-verdict' style='font-size:12px;line-height:1.35;color:#444'>"
            f"{escape(text)}</div>"
        )

    @property
    def verdict(self) -> str:
        """The line shown under the selector (plain text)."""
        v = self._verdict.value
        return unescape(v[v.index(">") + 1 : v.rindex("<")])
