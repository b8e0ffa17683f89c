"""The explorer's small control panels.

Each panel is a widget with its own traits and no knowledge of models or
saliency: the explorer links their traits to its own and feeds them what to show.
"""

from __future__ import annotations

import html
import traceback
from collections.abc import Callable, Iterable, Sequence

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T
from ipywidgets import CallbackDispatcher

from ..colors import ColorScale

__all__ = [
    "ErrorArea",
    "Header",
    "SampleSelector",
    "TargetSelector",
    "ViewPanel",
    "MaximizationPanel",
    "FaithfulnessPanel",
    "ExportPanel",
    "ColorLegend",
    "labelled_tooltip",
    "VIEWS",
    "METHODS",
]

#: The explorer's two views: (label, value).
VIEWS = (("Sensitivity", "sensitivity"), ("Activation maximization", "maximization"))

#: The maps the explorer draws (label, value): the paper's eq 5 with the instantaneous
#: derivative (eq 1), and the same through time.
METHODS = (
    ("paper (instantaneous, eq 1-5)", "paper"),
    ("paper, through time", "paper_through_time"),
)

_SMALL = "font-size:12px;line-height:1.35"


def _esc(text: object) -> str:
    return html.escape(str(text))


def labelled_tooltip(widget: W.DOMWidget) -> W.DOMWidget:
    """Make ``widget``'s tooltip show on its description (returns ``widget``).

    ipywidgets 8 drops the tooltip of a dropdown, check box or text box that has a
    description (it sets the title only when the description is empty); the description
    becomes HTML whose text carries the tooltip, so that hovering it explains the control.
    """
    tip, text = getattr(widget, "tooltip", None), getattr(widget, "description", "")
    if tip and text and not getattr(widget, "description_allow_html", False):
        widget.description_allow_html = True
        widget.description = (
            f"<span title='{html.escape(tip, quote=True)}' style='cursor:help'>"
            f"{html.escape(text)}</span>"
        )
    return widget


class ErrorArea(W.HTML):
    """Where errors are shown instead of being raised into the notebook.

    Each error belongs to a ``source`` (what failed: ``"header"``, ``"input"``, ...), so
    that redrawing one part clears its own errors and leaves the others' shown. At most
    `max_items` errors are kept; the oldest go first, those of a source in ``sticky``
    (the header's) last.

    Attributes
    ----------
    message : str
        The errors shown, one per line (``""`` when there is none).
    """

    message = T.Unicode("")
    value: str  # W.HTML's trait, the HTML shown (declared for the type checker only)

    #: How many errors are shown at once.
    max_items = 3

    def __init__(self, *, sticky: tuple[str, ...] = ("header",), **kwargs) -> None:
        super().__init__(**kwargs)
        self.sticky = tuple(sticky)
        self._items: list[tuple[str, str, str]] = []  # (source, text, html)

    def show(self, error: BaseException | str, *, context: str = "", source: str = "") -> None:
        """Add an exception (type, message, last lines of its traceback) or a text."""
        if isinstance(error, BaseException):
            text = f"{type(error).__name__}: {error}"
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__)[-3:])
        else:
            text, tb = str(error), ""
        if context:
            text = f"{context}: {text}"
        details = (
            f"<details><summary>details</summary><pre style='font-size:11px'>{_esc(tb)}</pre>"
            "</details>"
            if tb
            else ""
        )
        items = self._items + [(source, text, f"<div><b>Error</b> {_esc(text)}{details}</div>")]
        while len(items) > self.max_items:
            drop = next((k for k, it in enumerate(items) if it[0] not in self.sticky), 0)
            del items[drop]
        self._render(items)

    def clear(self, source: str | None = None, *, keep: tuple[str, ...] = ()) -> None:
        """Forget the errors of ``source`` (of every source when None), but those whose
        source starts with one of ``keep``."""
        items = [
            it
            for it in self._items
            if (source is not None and it[0] != source) or it[0].startswith(keep)
        ]
        if len(items) != len(self._items):
            self._render(items)

    def _render(self, items: list[tuple[str, str, str]]) -> None:
        self._items = items
        message = "\n".join(text for _, text, _ in items)
        value = (
            "<div style='border-left:4px solid #c0392b;background:#fdecea;padding:4px 8px;"
            f"{_SMALL}'>{''.join(html for _, _, html in items)}</div>"
            if items
            else ""
        )
        with self.hold_sync():
            if self.message != message:
                self.message = message
            if self.value != value:
                self.value = value


class Header(W.HTML):
    """The paper's summary line: samples, classes, hidden units, skeleton, accuracy."""

    def update(
        self,
        *,
        name: str,
        num_samples: int,
        num_classes: int,
        hidden_units: int | None,
        skeleton: str,
        accuracy: float | None,
        accuracy_source: str,
    ) -> None:
        acc = "n/a" if accuracy is None else f"{100 * accuracy:.1f}%"
        units = "?" if hidden_units is None else str(hidden_units)
        items = [
            ("data", name),
            ("samples", num_samples),
            ("classes", num_classes),
            ("hidden units", units),
            ("skeleton", skeleton),
            (f"accuracy ({accuracy_source})", acc),
        ]
        cells = "".join(
            f"<span style='margin-right:16px;white-space:nowrap;display:inline-block'>"
            f"<span style='color:#777'>{_esc(k)}</span> <b>{_esc(v)}</b></span>"
            for k, v in items
        )
        self.value = (
            "<div style='padding:4px 0;border-bottom:1px solid #ddd;font-size:13px'>"
            f"<b style='font-size:15px;margin-right:18px'>SkeletonVis</b>{cells}</div>"
        )


class SampleSelector(W.VBox):
    """Choose the input sequence by class, and see its true and predicted labels.

    Attributes
    ----------
    sample : int
        Index into the dataset.
    """

    sample = T.Int(0)

    def __init__(
        self,
        class_names: Sequence[str],
        labels: np.ndarray,
        ids: Sequence[str],
        **kwargs,
    ) -> None:
        self.class_names = tuple(class_names)
        self.labels = np.asarray(labels)
        self.ids = tuple(ids)
        present = sorted(set(int(c) for c in self.labels))
        self.class_filter = labelled_tooltip(
            W.Dropdown(
                options=[(f"{c}: {self.class_names[c]}", c) for c in present],
                description="class",
                tooltip="list the samples of this class",
                layout=W.Layout(width="100%"),
            )
        )
        self.sample_dropdown = labelled_tooltip(
            W.Dropdown(
                description="sample",
                tooltip="the input sequence (its file id and index)",
                layout=W.Layout(width="100%"),
            )
        )
        self.info = W.HTML("")
        super().__init__(
            children=[
                W.HTML("<b>Input sequence</b>"),
                self.class_filter,
                self.sample_dropdown,
                self.info,
            ],
            **kwargs,
        )
        self._quiet = False  # True while the panel updates its own dropdowns
        self._fill_samples(present[0] if present else None)
        self.class_filter.observe(self._on_class, "value")
        self.sample_dropdown.observe(self._on_dropdown, "value")

    def _fill_samples(self, c: int | None) -> None:
        idx: Sequence[int] = [] if c is None else np.flatnonzero(self.labels == c).tolist()
        opts = [(f"{self.ids[i]} (#{i})", int(i)) for i in idx]
        quiet, self._quiet = self._quiet, True
        try:
            self.sample_dropdown.options = opts
            values = [v for _, v in opts]
            self.sample_dropdown.value = (
                self.sample if self.sample in values else (values[0] if values else None)
            )
        finally:
            self._quiet = quiet

    def _on_class(self, change) -> None:
        if self._quiet or change["new"] is None:
            return
        c = int(change["new"])
        self._fill_samples(c)
        if int(self.labels[self.sample]) != c:
            self.sample = int(self.sample_dropdown.value)

    def _on_dropdown(self, change) -> None:
        if not self._quiet and change["new"] is not None:
            self.sample = int(change["new"])

    @T.observe("sample")
    def _on_sample(self, change) -> None:
        i = change["new"]
        if not (0 <= i < len(self.labels)):
            return
        c = int(self.labels[i])
        quiet, self._quiet = self._quiet, True
        try:
            if self.class_filter.value != c:
                self.class_filter.value = c
                self._fill_samples(c)
            self.sample_dropdown.value = i
        finally:
            self._quiet = quiet

    def show_prediction(self, probs: np.ndarray | None, *, top: int = 5) -> None:
        """True label, predicted label and the ``top`` class probabilities (None: unknown)."""
        i = self.sample
        true = int(self.labels[i]) if 0 <= i < len(self.labels) else -1
        true_name = self.class_names[true] if true >= 0 else "?"
        if probs is None or not np.all(np.isfinite(probs)):
            self.info.value = (
                f"<div style='{_SMALL}'>true <b>{_esc(true_name)}</b>, predicted <b>?</b></div>"
            )
            return
        p = np.asarray(probs, dtype=np.float64)
        pred = int(np.argmax(p))
        ok = "&#10003;" if pred == true else "&#10007;"
        colour = "#2e7d32" if pred == true else "#c0392b"
        rows = []
        for c in np.argsort(-p)[:top]:
            width = max(1, int(round(120 * p[c])))
            bold = "font-weight:bold;" if c == true else ""
            rows.append(
                f"<div style='{bold}display:flex;align-items:center'>"
                f"<span style='width:150px;overflow:hidden;white-space:nowrap'>{_esc(self.class_names[c])}</span>"
                f"<span style='display:inline-block;height:9px;width:{width}px;background:#6a8caf'></span>"
                f"<span style='margin-left:4px'>{100 * p[c]:.1f}%</span></div>"
            )
        self.info.value = (
            f"<div style='{_SMALL}'>true <b>{_esc(true_name)}</b>, predicted "
            f"<b style='color:{colour}'>{_esc(self.class_names[pred])} {ok}</b>"
            f"<div style='margin-top:3px'>{''.join(rows)}</div></div>"
        )


class TargetSelector(W.VBox):
    """The target: a class, or one hidden unit ranked by its weight for that class.

    Attributes
    ----------
    target : int
        Class index.
    unit : int or None
        A hidden unit, or None when the class itself is the target.
    """

    target = T.Int(0)
    unit = T.Int(None, allow_none=True)

    #: The dropdown's value for "the class itself": a Dropdown shows nothing for None.
    CLASS_ITSELF = -1

    def __init__(self, class_names: Sequence[str], **kwargs) -> None:
        self.class_names = tuple(class_names)
        self.class_dropdown = labelled_tooltip(
            W.Dropdown(
                options=[(f"{c}: {n}", c) for c, n in enumerate(self.class_names)],
                description="class",
                tooltip="the class whose score the map explains",
                layout=W.Layout(width="100%"),
            )
        )
        self.unit_dropdown = labelled_tooltip(
            W.Dropdown(
                options=[("the class itself", self.CLASS_ITSELF)],
                value=self.CLASS_ITSELF,
                description="unit",
                tooltip="a hidden unit instead, ranked by its FC weight |W| for the class",
                layout=W.Layout(width="100%"),
            )
        )
        super().__init__(
            children=[W.HTML("<b>Target</b>"), self.class_dropdown, self.unit_dropdown], **kwargs
        )
        T.link((self, "target"), (self.class_dropdown, "value"))
        self._quiet = False  # True while the unit list is refilled
        self.unit_dropdown.observe(self._on_unit_dropdown, "value")

    def _as_option(self, unit: int | None) -> int:
        return self.CLASS_ITSELF if unit is None else int(unit)

    def _on_unit_dropdown(self, change) -> None:
        if not self._quiet and change["new"] is not None:
            self.unit = None if change["new"] == self.CLASS_ITSELF else int(change["new"])

    @T.observe("unit")
    def _on_unit(self, change) -> None:
        value = self._as_option(change["new"])
        if self.unit_dropdown.value != value:
            self.unit_dropdown.value = value

    def set_ranking(self, units: Iterable[int], weights: Iterable[float]) -> None:
        """List the hidden units in this order, each with its weight for the target class."""
        opts: list[tuple[str, int]] = [("the class itself", self.CLASS_ITSELF)]
        opts += [
            (f"unit {int(u)} (w = {float(w):+.3f})", int(u))
            for u, w in zip(units, weights, strict=True)
        ]
        self._quiet = True
        try:
            self.unit_dropdown.options = opts
            self.unit_dropdown.value = self._as_option(self.unit)
        finally:
            self._quiet = False


class MaximizationPanel(W.VBox):
    """Activation maximization: iterations, constraints, Run/Cancel, progress, history scrubber.

    Attributes
    ----------
    iterations : int
        How many hill-climbing steps to run.
    constraints : bool
        Keep the skeleton anatomically valid (eq 14).
    iteration : int
        The step of the history shown (0 is the input).
    num_steps : int
        Length of the history shown (1 before any run).
    running : bool
    """

    iterations = T.Int(12)
    constraints = T.Bool(True)
    iteration = T.Int(0)
    num_steps = T.Int(1)
    running = T.Bool(False)

    def __init__(self, **kwargs) -> None:
        self.iterations_slider = W.IntSlider(
            value=self.iterations,
            min=1,
            max=100,
            description="iterations",
            tooltip="hill-climbing steps to run",
        )
        self.constraints_box = labelled_tooltip(
            W.Checkbox(
                value=self.constraints,
                description="anatomical constraints",
                tooltip="keep bone lengths and joint angles within the paper's limits (eqs 10-14)",
            )
        )
        self.run_button = W.Button(
            description="Run",
            button_style="primary",
            icon="play",
            tooltip="climb the score from the input sequence (runs in the background)",
        )
        self.cancel_button = W.Button(
            description="Cancel", icon="stop", disabled=True, tooltip="stop, keeping the steps done"
        )
        self.progress = W.IntProgress(value=0, min=0, max=self.iterations, description="progress")
        self.iteration_slider = W.IntSlider(
            value=0,
            min=0,
            max=0,
            description="iteration",
            tooltip="the step of the run shown (0: the input)",
        )
        tips = {
            "input": "show the input (iteration 0)",
            "1 step": "show the first step",
            "final": "show the last step",
        }
        self._jump = {
            name: W.Button(description=name, tooltip=tip, layout=W.Layout(width="auto"))
            for name, tip in tips.items()
        }
        self._jump["input"].on_click(lambda _: setattr(self, "iteration", 0))
        self._jump["1 step"].on_click(
            lambda _: setattr(self, "iteration", min(1, self.num_steps - 1))
        )
        self._jump["final"].on_click(lambda _: setattr(self, "iteration", self.num_steps - 1))
        self.status = W.HTML("")
        super().__init__(
            children=[
                self.iterations_slider,
                self.constraints_box,
                W.HBox([self.run_button, self.cancel_button]),
                self.progress,
                self.iteration_slider,
                W.HBox(list(self._jump.values())),
                self.status,
            ],
            **kwargs,
        )
        T.link((self, "iterations"), (self.iterations_slider, "value"))
        T.link((self, "constraints"), (self.constraints_box, "value"))
        T.link((self, "iteration"), (self.iteration_slider, "value"))

        self._run_handlers = CallbackDispatcher()
        self._cancel_handlers = CallbackDispatcher()
        self.run_button.on_click(lambda _: self._run_handlers())
        self.cancel_button.on_click(lambda _: self._cancel_handlers())

    def on_run(self, callback: Callable[[], object], remove: bool = False) -> None:
        """Call ``callback()`` when Run is clicked (``remove=True`` forgets it)."""
        self._run_handlers.register_callback(callback, remove=remove)

    def on_cancel(self, callback: Callable[[], object], remove: bool = False) -> None:
        """Call ``callback()`` when Cancel is clicked (``remove=True`` forgets it)."""
        self._cancel_handlers.register_callback(callback, remove=remove)

    @T.validate("iteration")
    def _clamp(self, proposal) -> int:
        return int(min(max(int(proposal["value"]), 0), self.num_steps - 1))

    @T.observe("num_steps")
    def _on_steps(self, change) -> None:
        top = max(change["new"], 1) - 1
        if self.iteration > top:
            self.iteration = top
        self.iteration_slider.max = top

    @T.observe("iterations")
    def _on_iterations(self, change) -> None:
        # Runs before the link to the slider: widen the slider rather than let it clamp.
        if change["new"] > self.iterations_slider.max:
            self.iterations_slider.max = change["new"]
        self.progress.max = max(change["new"], 1)

    @T.observe("running")
    def _on_running(self, change) -> None:
        running = change["new"]
        with self.run_button.hold_sync(), self.cancel_button.hold_sync():
            self.run_button.disabled = running
            self.cancel_button.disabled = not running
        if running:
            self.progress.value = 0
            self.progress.bar_style = "info"

    def report(self, text: str) -> None:
        self.status.value = f"<div style='{_SMALL}'>{text}</div>"


class ViewPanel(W.VBox):
    """What the explorer shows: the sensitivity map (with the method that computes it) or
    activation maximization, whose controls show in the latter.

    Attributes
    ----------
    view : {"sensitivity", "maximization"}
    method : str
        A value of `METHODS` (the map's method), or one added with `set_methods`.
    maximization : MaximizationPanel
    """

    view = T.Enum([v for _, v in VIEWS], default_value="sensitivity")
    method = T.Unicode("paper")

    def __init__(self, maximization: MaximizationPanel | None = None, **kwargs) -> None:
        self.toggle = W.ToggleButtons(
            options=list(VIEWS),
            value="sensitivity",
            tooltips=[
                "colour each joint by how much the target responds to it (eqs 1-5)",
                "change the input to raise the target's score (eqs 6-14)",
            ],
        )
        self.toggle.style.button_width = "auto"
        self.method_dropdown = labelled_tooltip(
            W.Dropdown(
                options=list(METHODS),
                value="paper",
                description="map",
                tooltip="how the sensitivity map is computed",
                layout=W.Layout(width="100%"),
            )
        )
        self.maximization = maximization or MaximizationPanel()
        self.maximization.layout.display = "none"
        super().__init__(
            children=[W.HTML("<b>View</b>"), self.toggle, self.method_dropdown, self.maximization],
            **kwargs,
        )
        T.link((self, "view"), (self.toggle, "value"))
        T.link((self, "method"), (self.method_dropdown, "value"))

    def set_methods(self, options: Sequence[tuple[str, str]]) -> None:
        """Offer these ``(label, method)`` maps (the current one is kept if offered)."""
        keep = self.method
        self.method_dropdown.options = list(options)
        values = [v for _, v in options]
        self.method = keep if keep in values else values[0]

    @T.observe("view")
    def _on_view(self, change) -> None:
        maximizing = change["new"] == "maximization"
        self.maximization.layout.display = None if maximizing else "none"
        self.method_dropdown.layout.display = "none" if maximizing else None


class ColorLegend(W.HTML):
    """A colour bar: the quantity's name and units, the scaling in force and its range.

    ``show(scale)`` draws a `skvis_widgets.colors.ColorScale`; ``show(None)`` says that
    the joints carry no values.

    Attributes
    ----------
    label : str
        The text of the legend (what is drawn, and how it is scaled), for tests.
    """

    label = T.Unicode("")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_class("skvis-legend")
        self.show(None)

    def show(self, scale: ColorScale | None) -> None:
        if scale is None:
            text = "no map: joints in one colour; bones: left blue, right green"
            self.label = text
            self.value = f"<div style='{_SMALL};color:#555'>{_esc(text)}</div>"
            return
        stops = scale.hex_stops()
        gradient = ", ".join(stops)
        what = scale.quantity + (f" ({scale.units})" if scale.units else "")
        if scale.per_frame:
            lo, hi = "0", "frame max"
        else:
            lo, hi = "0", f"{scale.top:.3g}" + ("+" if scale.scaling == "robust" else "")
        self.label = f"{what}; {scale.describe()}"
        # a run's result is drawn over the input: say which skeleton is which
        ghost = (
            "; grey skeleton: the input, purple lines: each joint's displacement"
            if scale.quantity.startswith("displacement")
            else ""
        )
        value = (
            f"<div class='skvis-colorbar' style='{_SMALL};max-width:560px'>"
            f"<div><b>{_esc(what)}</b></div>"
            "<div style='display:flex;align-items:center;gap:6px'>"
            f"<span>{_esc(lo)}</span>"
            f"<span class='skvis-colorbar-ramp' style='flex:1;height:12px;min-width:120px;"
            f"border:1px solid #999;background:linear-gradient(to right, {gradient})'></span>"
            f"<span>{_esc(hi)}</span></div>"
            f"<div style='color:#666'>{_esc(scale.describe())}; "
            f"bones: left blue, right green{ghost}</div></div>"
        )
        if value != self.value:
            self.value = value


class FaithfulnessPanel(W.VBox):
    """Can the map be trusted? The deletion curve of the current class map against
    random deletion orders, and its score (`skvis_widgets.metrics.faithfulness_summary`).

    ``show(summary)`` draws a summary; ``show_text(text)`` says why there is none.
    """

    def __init__(self, **kwargs) -> None:
        x = bq.LinearScale(min=0.0, max=1.0, allow_padding=False)
        y = bq.LinearScale(min=0.0, max=1.0, allow_padding=False)
        self._y = y
        self.curve = bq.Lines(
            x=[0.0], y=[0.0], scales={"x": x, "y": y}, colors=["#b2182b"], labels=["by the map"]
        )
        self.random = bq.Lines(
            x=[0.0],
            y=[0.0],
            scales={"x": x, "y": y},
            colors=["#888888"],
            line_style="dashed",
            labels=["random order"],
        )
        self.figure = bq.Figure(
            marks=[self.random, self.curve],
            axes=[
                bq.Axis(
                    scale=x,
                    label="fraction of joint-frames deleted",
                    tick_values=[0.0, 0.5, 1.0],
                    tick_format=".1f",
                ),
                bq.Axis(
                    scale=y,
                    orientation="vertical",
                    label="p(class)",
                    num_ticks=4,
                    tick_format=".2g",
                ),
            ],
            fig_margin={"top": 10, "bottom": 40, "left": 45, "right": 18},
            display_toolbar=False,
            layout=W.Layout(width="340px", height="190px"),
        )
        # The legend above the plot, never over the curves (bqplot draws its own inside).
        self.legend = W.HTML(
            f"<div class='skvis-deletion-legend' style='{_SMALL};color:#444'>"
            "<div><span style='color:#b2182b;font-weight:bold'>&#8212;&#8212;</span> deleting "
            "the map's most salient joint-frames first</div>"
            "<div><span style='color:#888888;font-weight:bold'>- - -</span> deleting in random "
            "order (mean of the orders)</div></div>",
            layout=W.Layout(width="340px"),
        )
        self.message = W.HTML(layout=W.Layout(width="340px"))
        title = W.HTML(
            f"<b>Can this map be trusted?</b> <span style='{_SMALL}'>deletion check</span>"
        )
        self._title = title
        self.summary = None
        self._collapsed = False
        super().__init__([title, self.message], **kwargs)
        self.add_class("skvis-faithfulness")

    def show(self, summary) -> None:
        curve = summary.deletion
        fractions = np.asarray(curve.fractions, dtype=np.float64)
        with self.curve.hold_sync(), self.random.hold_sync():
            self.curve.x, self.curve.y = fractions, np.asarray(curve.probabilities, np.float64)
            self.random.x = fractions
            self.random.y = np.asarray(curve.random_probabilities, np.float64).mean(0)
        # a y axis fitted to the curves: a small p(class) must not draw two flat lines
        both = np.concatenate([np.ravel(self.curve.y), np.ravel(self.random.y)])
        both = both[np.isfinite(both)]
        top = float(both.max()) if both.size else 1.0
        with self._y.hold_sync():
            self._y.min, self._y.max = 0.0, min(1.0, 1.1 * top) if top > 0 else 1.0
        self.message.value = f"<div style='{_SMALL}'>{_esc(summary.message)}</div>"
        self.figure.layout.display = self.legend.layout.display = None
        self.summary = summary
        self._arrange()

    def show_text(self, text: str) -> None:
        self.summary = None
        self.message.value = f"<div style='{_SMALL}'>{_esc(text)}</div>"
        self.figure.layout.display = "none"  # no stale curve, and no blank band
        self.legend.layout.display = "none"
        self._arrange()

    def collapse(self, collapsed: bool = True) -> None:
        """Hide the panel without leaving a band (where the check does not apply)."""
        self._collapsed = bool(collapsed)
        self.layout.display = "none" if collapsed else None
        self._arrange()

    def _arrange(self) -> None:
        # The plot is taken out of the page, not hidden, whenever it is not shown: bqplot
        # lays out a hidden figure at zero size, with negative <rect> sizes for its margins.
        plot = self.summary is not None and not self._collapsed
        children = (self._title, self.message, *((self.legend, self.figure) if plot else ()))
        if children != self.children:  # type: ignore[has-type]  # a traitlets descriptor
            self.children = children


class ExportPanel(W.VBox):
    """Save what the explorer shows: an animation (GIF or MP4) or a self-contained HTML page.

    ``path`` is the file name typed (``.gif`` / ``.mp4`` for the animation; the page gets
    the same name with ``.html``); the explorer writes the files and reports here.
    """

    path = T.Unicode("skvis_view.gif").tag(sync=True)

    def __init__(self, **kwargs) -> None:
        self.path_box = labelled_tooltip(
            W.Text(
                description="file",
                tooltip="where Save animation and Export HTML write (.gif, .mp4; .html)",
                layout=W.Layout(width="260px"),
                style={"description_width": "30px"},
            )
        )
        self.save_button = W.Button(
            description="Save animation", icon="film", tooltip="GIF or MP4 of the current view"
        )
        self.html_button = W.Button(
            description="Export HTML", icon="globe", tooltip="one page that plays offline"
        )
        self.status = W.HTML()
        super().__init__(
            [self.path_box, W.HBox([self.save_button, self.html_button]), self.status], **kwargs
        )
        T.link((self, "path"), (self.path_box, "value"))

    def on_save(self, callback: Callable[[], None]) -> None:
        self.save_button.on_click(lambda _: callback())

    def on_html(self, callback: Callable[[], None]) -> None:
        self.html_button.on_click(lambda _: callback())

    def report(self, text: str) -> None:
        self.status.value = f"<div style='{_SMALL}'>{_esc(text)}</div>"
