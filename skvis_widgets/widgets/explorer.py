"""`SkeletonVis`: the paper's explorer (section 3.3), composed of small widgets.

::

    Header                                   (data, classes, units, skeleton, accuracy)
    ErrorArea
    SampleSelector | SkeletonScene (canvas, hovered joint's name)
    TargetSelector | ColorLegend
    ViewPanel      |
    Faithfulness   |
    Timeline: Play, fps, frame slider; ColorLegend; joints-by-time heatmap
    More (an accordion: `add_panel` puts extra panels here)

The state is in traits (`sample`, `target`, `unit`, `view`, `method`, `scaling`,
`iterations`, `iteration`, `frame`, `constraints`); the panels' traits are linked to
them. One observer turns the state into a `Shown` (pure functions of
`skvis_widgets.widgets.viewmodel`, the map from ONE call, `Analysis.joint_map(sample,
target, unit, method)`) and assigns it to the `shown` trait; its observer hands it to the
scene, the heatmap, the legends and the panels. Activation maximization and the
deletion check run as background `Jobs`; `close` stops them.

Errors never reach the notebook: a state trait set to a value it refuses (from
Python, a link, or the browser through `set_state`) keeps its value and the error is
shown in the error area, as are the errors of every update.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from types import EllipsisType
from typing import Any

import ipywidgets as W
import numpy as np
import traitlets as T

from .. import anatomy, optimize
from .._checks import check_index
from ..errors import SkvisError
from ..export import save_animation as _save_animation
from ..saliency import prepare_kernel
from ..skeleton import check_model_topology
from ..webpage import write_html
from .analysis import Analysis, hidden_size
from .animation import AnimatedSkeleton
from .jobs import Job, Jobs
from .method_panel import DEFAULT_METHOD, MethodPanels
from .panels import (
    VIEWS,
    ColorLegend,
    ErrorArea,
    ExportPanel,
    FaithfulnessPanel,
    Header,
    MaximizationPanel,
    SampleSelector,
    TargetSelector,
    ViewPanel,
    labelled_tooltip,
)
from .scene import SkeletonScene
from .timeline import Timeline
from .viewmodel import Shown, maximization_view, sensitivity_view

__all__ = ["SkeletonVis"]


def _shows_errors(source: str, context: str = ""):
    """Run an update; show any exception in the explorer's error area (under ``source``)
    instead of raising it."""

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown to the user, the widget keeps working
                self.error.show(exc, context=context, source=source)
                return None

        return wrapper

    return decorate


#: The old names of the views (``mode=`` before 0.4), still accepted by `select`.
_OLD_VIEWS = {"activation_maximization": "maximization"}
#: The legend's words for a method.
_METHOD_WORDS = {"paper": "eq 5", "paper_through_time": "eq 5 through time"}
_STYLE = """<style>
.skvis-scene canvas { width: 100% !important; height: auto !important; }
.skvis-explorer .widget-html-content { white-space: normal; }
</style>"""


class SkeletonVis(W.VBox):
    """Explore what a recurrent skeleton classifier learned.

    Parameters
    ----------
    model : SkeletonLSTM, or any model wrapped by
        `skvis_widgets.adapters.as_recurrent_classifier`
    dataset : SkeletonDataset
    sample : int, optional
        The first input sequence (an index into ``dataset``). Default: the first
        correctly classified sample whose class map beats random deletion orders (a
        first screen whose map means something), else the first correct one, else 0.
    target : int, optional
        The first target class (default: the sample's label). An out-of-range ``sample``
        or ``target`` raises `SkvisError`; later, out-of-range values are shown in the
        error area and not applied.
    method : str, optional
        The map's method, a key of `skvis_widgets.methods.METHODS`: ``"paper"`` (eq 5
        with the instantaneous derivative, eq 1; a click away, labelled as the paper's),
        ``"paper_through_time"``, ``"gradient"`` (the default, `DEFAULT_METHOD`: it
        passes every check of `compare_methods`), ``"integrated_gradients"``, ...
        A model that is not recurrent (any module mapping ``(N, T, J, 3)`` to ``(N, C)``)
        gets the model-agnostic methods only, and no unit targets.
    sensitivity_mode : str, optional
        The same, by its derivative's name (``"instantaneous"`` or ``"through_time"``).

    Attributes
    ----------
    sample, target, unit, view, method, scaling, iterations, iteration, frame,
    constraints : traits
        The explorer's state; ``observe`` and ``link`` them. ``view`` is
        ``"sensitivity"`` or ``"maximization"``; ``scaling`` one of
        `skvis_widgets.colors.SCALINGS` (default ``"robust"``).
    shown : Shown
        What is displayed for the state (frozen; observe it).
    scene : SkeletonScene
        ``scene.positions`` and ``scene.colors`` are what is drawn, in the
        dataset's coordinates.
    timeline : Timeline
    header, samples, targets, views, maximization, faithfulness, legend, error,
    exporter, more : the panels (``more``: an accordion for extra panels, `add_panel`)
    result : MaximizationResult or None
        The last activation maximization (shown when the state is the one it was run for).

    Examples
    --------
    >>> from skvis_widgets.model import load_pretrained
    >>> from skvis_widgets.data import load_msr_action3d
    >>> vis = SkeletonVis(load_pretrained("msr_action3d"),
    ...                   load_msr_action3d().split_cross_subject()[1])  # doctest: +SKIP
    >>> vis.select(sample=3, target=5)  # doctest: +SKIP
    """

    sample = T.Int(0).tag(sync=True)
    target = T.Int(0).tag(sync=True)
    unit = T.Int(None, allow_none=True).tag(sync=True)
    view = T.Enum([v for _, v in VIEWS], default_value="sensitivity").tag(sync=True)
    method = T.Unicode("paper").tag(sync=True)
    scaling = T.Enum(("frame", "sequence", "robust", "dataset"), default_value="robust").tag(
        sync=True
    )
    iterations = T.Int(12).tag(sync=True)
    iteration = T.Int(0).tag(sync=True)
    frame = T.Int(0).tag(sync=True)
    constraints = T.Bool(True).tag(sync=True)
    shown = T.Instance(Shown, allow_none=True)

    #: The state traits: a value one of them refuses is shown, never raised.
    _STATE = frozenset(
        (
            "sample", "target", "unit", "view", "method", "scaling", "iterations",
            "iteration", "frame", "constraints",
        )
    )  # fmt: skip

    def __init__(
        self,
        model: Any,
        dataset: Any,
        *,
        sample: int | None = None,
        target: int | None = None,
        method: str | None = None,
        sensitivity_mode: str | None = None,
        **kwargs,
    ) -> None:
        if len(dataset) == 0:
            raise SkvisError("SkeletonVis needs a dataset with at least one sample")
        check_model_topology(model, dataset.topology, "the dataset")  # same joints, order
        if method is not None and sensitivity_mode is not None:
            raise SkvisError("give method or sensitivity_mode, not both")
        mode = sensitivity_mode or Analysis.METHODS.get(method or "", "instantaneous")
        # compile (or load) the sensitivity kernel and the projection solver in the
        # background, once per process, before any job needs them: until each is ready,
        # its callers take the torch path / SLSQP instead of waiting for it
        param = next(model.parameters(), None)  # (any module opens: maybe none)
        if param is not None:
            prepare_kernel(param.dtype, background=True)
        anatomy.prepare_solver(background=True)
        self.model = model
        self.dataset = dataset
        self.analysis = Analysis(
            model, dataset, mode=mode, method=None if sensitivity_mode else method or DEFAULT_METHOD
        )
        first = (
            self._first_sample() if sample is None else check_index(sample, len(dataset), "sample")
        )
        target = int(dataset.labels[first]) if target is None else target
        target = check_index(target, dataset.num_classes, "target")
        topo = dataset.topology
        self.result: optimize.MaximizationResult | None = None
        self._result_key: tuple | None = None
        self._iteration_of = None  # the result whose history `iteration` indexes
        self._jobs = Jobs()
        self._lock = threading.RLock()
        self._generation = 0
        self._shown_key: tuple | None = None
        self._framed: tuple | None = None  # what the camera was last aimed at
        self._dataset_vmax: dict[tuple, float] = {}

        self.header = Header()
        self.error = ErrorArea()
        self.samples = SampleSelector(dataset.class_names, dataset.labels, dataset.ids)
        self.targets = TargetSelector(dataset.class_names)
        self.maximization = MaximizationPanel()
        self.views = ViewPanel(self.maximization)
        self.faithfulness = FaithfulnessPanel()
        self.exporter = ExportPanel()
        self.scaling_dropdown = labelled_tooltip(
            W.Dropdown(
                options=[
                    ("robust (95th percentile)", "robust"),
                    ("per frame", "frame"),
                    ("per sequence (max)", "sequence"),
                    ("dataset-wide", "dataset"),
                ],
                value="robust",
                description="colours",
                tooltip="how map values become colours (the legend shows the range)",
                layout=W.Layout(width="100%"),
            )
        )
        self.scene = SkeletonScene(topo)
        self.scene.describe_joints(self._joint_value)
        self.legend = ColorLegend()
        self.timeline = Timeline(topo, 1)
        # one legend (one message per change) shown twice: under the 3D view and above
        # the heatmap, whose colours follow the same scale
        self.heatmap_legend = self.legend
        self.timeline.children = (
            self.timeline.children[0],
            self.heatmap_legend,
            *self.timeline.children[1:],
        )
        self.more = W.Accordion(children=[], layout=W.Layout(width="100%"))
        self.more.layout.display = "none"
        controls = W.VBox(
            [
                self.samples,
                self.targets,
                self.views,
                self.scaling_dropdown,
                self.faithfulness,
                self.exporter,
            ],
            layout=W.Layout(width="360px", min_width="320px", padding="0 10px 0 0"),
        )
        view_box = W.VBox(
            [self.scene, self.legend], layout=W.Layout(flex="1 1 auto", min_width="360px")
        )
        super().__init__(
            children=[
                W.HTML(_STYLE),
                self.header,
                self.error,
                W.HBox([controls, view_box], layout=W.Layout(width="100%")),
                self.timeline,
                self.more,
            ],
            **kwargs,
        )
        self.add_class("skvis-explorer")

        # Initial state before the links and observers act on it.
        self.set_trait("sample", first)
        self.set_trait("target", target)
        self.set_trait("method", self.analysis.method)
        self.method_panels = MethodPanels(self)  # the method selector, verdicts, atlases
        for a in [
            ("sample", self.samples),
            ("target", self.targets),
            ("unit", self.targets),
            ("view", self.views),
            ("method", self.views),
            ("scaling", self.scaling_dropdown, "value"),
            ("iterations", self.maximization),
            ("constraints", self.maximization),
            ("iteration", self.maximization),
            ("frame", self.timeline),
        ]:
            T.link((self, a[0]), (a[1], a[2] if len(a) > 2 else a[0]))
        self.maximization.on_run(self.run_maximization)
        self.maximization.on_cancel(self.cancel_maximization)
        self.exporter.on_save(self._save_clicked)
        self.exporter.on_html(self._html_clicked)
        self._update_header()
        self._update_ranking()
        if self._update_view():
            self._update_prediction()
        self._ready = True  # from now on, refused values are shown, not raised

    def _first_sample(self, candidates: int = 6) -> int:
        """The first correctly classified sample whose class map beats random deletion
        (checking at most ``candidates``), else the first correct one, else 0."""
        try:
            probs = self.analysis.all_probs()
        except Exception:  # noqa: BLE001 - the explorer still opens, and shows the error
            return 0
        labels = np.asarray(self.dataset.labels)
        correct = np.flatnonzero(probs.argmax(-1) == labels)
        for i in correct[:candidates]:
            try:
                if self.analysis.faithfulness(int(i), int(labels[i])).beats_random:
                    return int(i)
            except Exception:  # noqa: BLE001 - try the next one
                continue
        return int(correct[0]) if len(correct) else 0

    # -- errors in, never out ---------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._STATE and self.__dict__.get("_ready", False):
            try:
                super().__setattr__(name, value)
            except Exception as exc:  # noqa: BLE001 - shown in the widget, the value kept
                self._refused(name, value, exc)
            else:
                self.error.clear(f"input:{name}")
            return
        super().__setattr__(name, value)

    def _refused(self, name: str, value: Any, exc: BaseException) -> None:
        """Show why trait ``name`` refused ``value`` (it keeps its value)."""
        kept = getattr(self, name)
        self.error.show(
            exc, context=f"{name} = {value!r} refused, kept {kept!r}", source=f"input:{name}"
        )

    # -- validation -----------------------------------------------------------------------
    @T.validate("sample")
    def _valid_sample(self, proposal) -> int:
        i = int(proposal["value"])
        if not 0 <= i < len(self.dataset):
            raise T.TraitError(f"sample {i} is out of range 0..{len(self.dataset) - 1}")
        return i

    @T.validate("target")
    def _valid_target(self, proposal) -> int:
        c = int(proposal["value"])
        if not 0 <= c < self.dataset.num_classes:
            raise T.TraitError(f"target {c} is out of range 0..{self.dataset.num_classes - 1}")
        return c

    @T.validate("unit")
    def _valid_unit(self, proposal):
        u = proposal["value"]
        if u is None:
            return None
        h = hidden_size(self.model)
        if not self.analysis.recurrent:
            raise T.TraitError("unit targets need a recurrent model (an LSTM/GRU with an FC head)")
        if u < 0 or (h is not None and u >= h):
            raise T.TraitError(f"unit {u} is out of range 0..{(h or 1) - 1}")
        return int(u)

    @T.validate("method")
    def _valid_method(self, proposal) -> str:
        try:
            return self.analysis.check_method(str(proposal["value"]))
        except SkvisError as exc:
            raise T.TraitError(str(exc)) from None

    @T.validate("frame")
    def _valid_frame(self, proposal) -> int:
        n = len(self.shown.positions) if self.shown is not None else 1
        return int(min(max(int(proposal["value"]), 0), n - 1))

    @T.validate("iterations")
    def _valid_iterations(self, proposal) -> int:
        return max(int(proposal["value"]), 1)

    @T.validate("iteration")
    def _valid_iteration(self, proposal) -> int:
        steps = self._num_steps()
        return int(min(max(int(proposal["value"]), 0), steps - 1))

    # -- public API -------------------------------------------------------------------------
    def select(
        self,
        *,
        sample: int | None = None,
        target: int | None = None,
        unit: int | None | EllipsisType = ...,
        frame: int | None = None,
        view: str | None = None,
        method: str | None = None,
        mode: str | None = None,
    ) -> None:
        """Set several traits at once and redraw once.

        ``unit=None`` targets the class itself; leave ``unit`` out to keep it. ``mode``
        is the old name of ``view`` (``"activation_maximization"`` is ``"maximization"``).
        """
        if mode is not None:
            view = _OLD_VIEWS.get(mode, mode)
        with self._lock:
            # The observers run once the hold ends, with every trait already set: the
            # first redraws for the new state, the others find it drawn.
            with self.hold_trait_notifications():
                if sample is not None:
                    self.sample = sample
                if target is not None:
                    self.target = target
                if not isinstance(unit, EllipsisType):  # ... (the default): keep it
                    self.unit = unit
                if view is not None:
                    self.view = view
                if method is not None:
                    self.method = method
            if frame is not None:
                self.frame = frame

    def add_panel(self, widget: W.Widget, title: str) -> None:
        """Add ``widget`` under the heatmap, in the "more" accordion, titled ``title``."""
        self.more.children = (*self.more.children, widget)
        self.more.set_title(len(self.more.children) - 1, title)
        self.more.layout.display = None

    def set_state(self, sync_data) -> None:
        """Apply a state (e.g. from `get_state`, or the browser's); the sample first, since
        the frame's range depends on it.

        Each trait is set on its own: a value it refuses is shown in the error area, the
        trait keeps its value (sent back to the browser) and the others are still set.
        """
        data = dict(sync_data)
        for name in sorted(data, key=lambda k: k != "sample"):
            try:
                super().set_state({name: data[name]})
            except Exception as exc:  # noqa: BLE001 - shown in the widget, the value kept
                self._refused(name, data[name], exc)
                if name in self.keys:
                    self.send_state(name)
            else:
                self.error.clear(f"input:{name}")

    def refresh(self) -> None:
        """Pick up new weights (e.g. during training): clear caches, recompute, redraw.

        A maximization still running (on the old weights) is cancelled and let go: it
        no longer shows anything, and Run starts a new one at once.
        """
        with self._lock:
            self._detach_run()
            self._generation += 1
            self.analysis.clear()
            self._dataset_vmax.clear()
            self.result = None
            self._result_key = None
            self._update_header(use_metadata=False)
            self._update_ranking()
            if self._update_view():
                self._update_prediction()

    def close(self, timeout: float | None = 60.0) -> None:
        """Stop the explorer's background jobs and close the widget.

        Cancels the maximization and the deletion check and waits (up to ``timeout`` s
        each) for their threads to end. The solver's one-off compile thread, shared by
        every explorer of the process, ends by itself.
        """
        if "_lock" not in self.__dict__:  # __init__ failed (close is also called by __del__)
            super().close()
            return
        with self._lock:
            self._detach_run()
        self._jobs.close(timeout)
        self.method_panels.close(timeout)
        super().close()

    def animated(self, **kwargs: Any) -> AnimatedSkeleton:
        """What is shown now (the input, or the maximization step) with its colours, as an
        `AnimatedSkeleton` that plays in the browser and in exported HTML."""
        with self._lock:
            shown = self._displayed()
            return AnimatedSkeleton(
                shown.positions, self.dataset.topology, shown.all_colors(), **kwargs
            )

    def _displayed(self) -> Shown:
        """`shown`, or `SkvisError` before anything is (the constructor draws the first)."""
        if self.shown is None:
            raise SkvisError("nothing is shown yet")
        return self.shown

    def _view(self) -> dict:
        """What is shown now, as arguments of `skvis_widgets.export.save_animation` and
        `skvis_widgets.webpage.write_html`."""
        with self._lock:
            shown = self._displayed()
            names = self.dataset.class_names
            what = f"class {names[self.target]}" if self.unit is None else f"unit {self.unit}"
            view: dict[str, Any] = {
                "sequence": shown.positions,
                "values": None,
                "vmax": None,
                "title": f"{self.dataset.ids[self.sample]}: {what}",
            }
            scale = shown.scale
            if shown.values is not None and scale is not None:
                label = scale.quantity + (f" ({scale.units})" if scale.units else "")
                if scale.per_frame:  # each frame over its own top: the exports draw the ratio
                    view["values"] = scale.unit_values(shown.values)
                    view["vmax"] = 1.0
                    label += ", each frame over its largest value"
                else:
                    view["values"] = shown.values
                    view["vmax"] = scale.top
                view["label"] = label
            if shown.original is not None:
                view["original"] = shown.original
                view["title"] += f", iteration {self.iteration}"
            return view

    def save_animation(self, path, **kwargs: Any):
        """Write what is shown now (the input coloured by the map, or the maximization step
        beside the input) as a GIF or MP4; see `skvis_widgets.export.save_animation` for
        ``kwargs`` (``fps``, ``camera``, ...). Returns its `AnimationInfo`."""
        view = self._view()
        return _save_animation(
            path, view.pop("sequence"), view.pop("values"), topology=self.dataset.topology,
            **{**view, **kwargs},
        )  # fmt: skip

    def export_html(self, path, **kwargs: Any):
        """Write what is shown now as one HTML page that plays offline (skeleton in the
        map's colours, the heatmap, Play and a frame slider; see
        `skvis_widgets.webpage.write_html`). Returns the path."""
        view = self._view()
        return write_html(
            path, view.pop("sequence"), self.dataset.topology, view.pop("values"),
            **{**view, **kwargs},
        )  # fmt: skip

    def _save_clicked(self) -> None:
        self._export(self.save_animation, self.exporter.path, "animation")

    def _html_clicked(self) -> None:
        self._export(self.export_html, str(Path(self.exporter.path).with_suffix(".html")), "page")

    def _export(self, write, path: str, what: str) -> None:
        self.exporter.report(f"writing {path} ...")
        try:
            write(path)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the widget keeps working
            self.exporter.report(f"could not write {path}")
            self.error.show(exc, context=f"saving the {what}", source="export")
            return
        self.error.clear("export")
        self.exporter.report(f"wrote the {what} to {path}")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running activation maximization; True when none is running."""
        return self._jobs.wait("maximization", timeout)

    def wait_faithfulness(self, timeout: float | None = None) -> bool:
        """Wait for the running deletion check; True when none is running."""
        return self._jobs.wait("check", timeout)

    @property
    def running(self) -> bool:
        """An activation maximization is running (and shown)."""
        return self._jobs.busy("maximization")

    # -- observers ---------------------------------------------------------------------------
    @T.observe("sample")
    def _on_sample(self, change) -> None:
        with self._lock:
            self.error.clear(keep=("header", "input:"))
            if self._update_view():  # a sample it cannot read is shown once, not twice
                self._update_prediction()

    @T.observe("target")
    def _on_target(self, change) -> None:
        with self._lock:
            self._update_view()  # what is drawn first; then the unit list (150 options)
            self._update_ranking()

    @T.observe("unit", "view", "method", "scaling", "constraints", "iterations", "iteration")
    def _on_state(self, change) -> None:
        with self._lock:
            self._update_view()

    @T.observe("frame")
    def _on_frame(self, change) -> None:
        with self._lock:
            self._draw_frame()

    @T.observe("shown")
    def _on_shown(self, change) -> None:
        """Hand what is shown to the scene, the heatmap, the legends and the panels."""
        shown: Shown = change["new"]
        if shown is None:
            return
        if shown.camera != self._framed:
            self._framed = shown.camera
            self.scene.frame_on(shown.camera_points)
        n = len(shown.positions)
        self.timeline.num_frames = n
        if self.frame >= n:
            self.set_trait("frame", n - 1)
        self.timeline.show(shown.values, title=shown.title, scale=shown.scale)
        self._draw_frame()  # the two drawn messages first, then the legend's
        self.legend.show(shown.scale)
        self.scene.clear_hover()  # the hovered joint's value is stale
        if self.view == "maximization":
            self.maximization.report(shown.status)

    # -- updates ----------------------------------------------------------------------------
    @_shows_errors("header", context="accuracy")
    def _update_header(self, use_metadata: bool = True) -> None:
        ds = self.dataset
        info = dict(
            name=getattr(ds, "name", "data"),
            num_samples=len(ds),
            num_classes=ds.num_classes,
            hidden_units=hidden_size(self.model),
            skeleton=ds.topology.label or ds.topology.name,
        )
        try:
            acc, source = self.analysis.accuracy(use_metadata=use_metadata)
        except Exception:
            self.header.update(**info, accuracy=None, accuracy_source="could not be measured")
            raise
        self.header.update(**info, accuracy=acc, accuracy_source=source)
        self.error.clear("header")

    @_shows_errors("view")
    def _update_ranking(self) -> None:
        units, weights = self.analysis.ranked_units(self.target)
        self.targets.set_ranking(units, weights)

    @_shows_errors("view")
    def _update_prediction(self) -> None:
        try:
            probs = self.analysis.probs(self.sample)
        except Exception:
            self.samples.show_prediction(None)
            raise
        self.samples.show_prediction(probs)

    def _shown_result(self):
        """The maximization result for the current state, or None."""
        return self.result if self._result_key == self._current_key() else None

    def _num_steps(self) -> int:
        r = self._shown_result()
        return 1 if r is None else int(len(r.history))

    def _current_key(self) -> tuple:
        return (self.sample, self.target, self.unit, self.iterations, self.constraints)

    def _what(self) -> str:
        names = self.dataset.class_names
        return f"class {names[self.target]}" if self.unit is None else f"unit {self.unit}"

    def _score_name(self) -> str:
        if self.unit is None:
            return f"logit of class {self.dataset.class_names[self.target]}"
        return f"activation of unit {self.unit} (h, between -1 and 1)"

    @_shows_errors("view")
    def _update_view(self) -> bool:
        """Compute what the state shows (once per state) and assign it to `shown`; True
        unless it failed (the error area says why)."""
        result = self._shown_result()
        maximizing = self.view == "maximization"
        if maximizing and result is not self._iteration_of:
            # Another result is shown (a new run, or the state came back to a kept one):
            # show it at its final step, not at whatever step the previous one was.
            self._iteration_of = result
            self.maximization.num_steps = self._num_steps()
            if result is not None and self.iteration != len(result.history) - 1:
                self.iteration = len(result.history) - 1  # its observer redraws
                return True
        self.maximization.num_steps = self._num_steps()
        key = (
            self.sample, self.target, self.unit, self.view, self.method, self.scaling,
            self.iteration if maximizing else None, id(result) if maximizing else None,
            self._generation, self._dataset_vmax.get(self._scale_key()),
        )  # fmt: skip
        if key == self._shown_key:
            return True
        try:
            seq = self.analysis.sequence(self.sample)
        except SkvisError:
            self.samples.show_prediction(None)
            raise
        camera = ("input", self.sample, len(seq))
        if maximizing:
            shown = maximization_view(
                seq, result, self.iteration, score_name=self._score_name(), camera=camera
            )
        else:
            try:
                values = self.analysis.joint_map(self.sample, self.target, self.unit, self.method)
            except Exception:
                # the model failed: still draw the data, so that the user can browse it
                self._shown_key = None
                self.shown = Shown(positions=seq, camera=camera, camera_points=seq)
                raise
            shown = sensitivity_view(
                seq,
                values,
                what=self._what(),
                method=_METHOD_WORDS.get(self.method, self.method).replace(
                    "eq 5", "eq 5" if self.unit is None else "eq 4"
                ),
                scaling=self.scaling,
                dataset_vmax=self._dataset_vmax.get(self._scale_key()),
                camera=camera,
                # eq 3 normalizes only the paper's maps
                units="normalized" if self.method.startswith("paper") else "",
            )
        self._shown_key = key
        # the colour scaling applies to maps; a run has one scale for its whole history
        self.scaling_dropdown.layout.display = "none" if maximizing else None
        self.shown = shown
        self._update_faithfulness()
        if not maximizing and self.scaling == "dataset":
            self._start_dataset_scale()
        return True

    def _scale_key(self) -> tuple:
        return (self.target, self.unit, self.method)

    def _joint_value(self, j: int) -> str:
        """The hover label's text after joint ``j``'s name."""
        shown = self.shown
        if shown is None or shown.values is None:
            return ""
        k = min(self.frame, len(shown.values) - 1)
        units = shown.scale.units if shown.scale is not None else ""
        units = "" if units == "normalized" else f" {units}"
        return f"{shown.values[k, j]:.3g}{units} at frame {k}"

    def _update_faithfulness(self) -> None:
        """Start the deletion check of the current class map in the background (it runs
        the model some forty times, after a short pause so that scrolling through classes
        does not start one per class); the panel says "checking" until it is done."""
        panel = self.faithfulness
        if self.view != "sensitivity":
            panel.collapse()  # the trust panel applies to sensitivity maps
            self._jobs.detach("check")
            return
        panel.collapse(False)
        if self.unit is not None:
            self._jobs.detach("check")
            panel.show_text(
                "The deletion check measures the class probability: choose "
                "'the class itself' as the target to check a class map."
            )
            return
        panel.show_text("checking the map against random deletion orders ...")
        sample, target, method = self.sample, self.target, self.method

        def check(job: Job) -> None:
            if job.cancel.wait(0.3):  # superseded while pausing
                return
            try:
                summary = self.analysis.faithfulness(sample, target, method)
            except Exception as exc:  # noqa: BLE001 - shown in the panel, the widget keeps working
                with self._lock:
                    if self._jobs.is_current(job) and not job.cancel.is_set():
                        panel.show_text(f"could not check this map: {exc}")
                return
            with self._lock:
                if self._jobs.is_current(job) and not job.cancel.is_set():
                    panel.show(summary)

        self._jobs.post("check", check)

    def _start_dataset_scale(self) -> None:
        """Compute the dataset-wide top of the colour scale (95th percentile of every
        sample's map for this target) in the background; redraw when it is known."""
        key = self._scale_key()
        if key in self._dataset_vmax:
            return
        target, unit, method = key
        generation = self._generation

        def compute(job: Job) -> None:
            parts = []
            for i in range(len(self.dataset)):
                if job.cancel.is_set():
                    return
                parts.append(self.analysis.joint_map(i, target, unit, method).ravel())
            vmax = float(np.percentile(np.concatenate(parts), 95.0)) if parts else 1.0
            with self._lock:
                if generation == self._generation and not job.cancel.is_set():
                    self._dataset_vmax[key] = vmax if vmax > 0 else 1.0
                    self._update_view()

        self._jobs.post("scale", compute)

    def _draw_frame(self) -> None:
        """Draw the current frame of what is shown: one message in the sensitivity view."""
        shown = self.shown
        if shown is None:
            return
        k = min(self.frame, len(shown.positions) - 1)
        self.scene.show(shown.positions[k], shown.colors(k))
        if shown.original is not None:
            self.scene.show_overlay(shown.original[k], links=True)
        elif self.scene.overlay_positions is not None:
            self.scene.show_overlay(None)
        self.scene.refresh_hover()  # the hovered joint's value, at this frame

    # -- activation maximization ----------------------------------------------------------
    def run_maximization(self) -> threading.Thread | None:
        """Start activation maximization for the current state in a background thread.

        Returns the thread (`wait` joins it); None if one is already running (or the
        explorer is closed, or the sample cannot be read: the error area says why).
        When it ends, the view jumps to the frame the run changed most.
        """
        with self._lock:
            key = self._current_key()
            try:
                seq = self.analysis.sequence(key[0])
            except SkvisError as exc:
                self.error.show(exc, context="activation maximization", source="maximization")
                return None
            generation = self._generation
            job = self._jobs.submit(
                "maximization",
                lambda job: self._maximize(job, key, seq, generation),
                replace=False,
            )
            if job is None:
                return None
            self.maximization.running = True
            self.maximization.progress.max = key[3]
            self.error.clear("maximization")
            return job.thread

    def _maximize(self, job: Job, key: tuple, seq: np.ndarray, generation: int) -> None:
        """The maximization job: run the optimizer, then show its result if ``job`` is
        still the one shown (not let go by `refresh` or `close`)."""
        sample, target, unit, iterations, constraints = key

        def shown() -> bool:  # call with `_lock` held
            return self._jobs.is_current(job) and generation == self._generation

        def callback(iteration: int, partial: Any) -> None:
            score = np.asarray(partial.scores, dtype=np.float64).reshape(-1)
            with self._lock:
                if shown():
                    self.maximization.progress.value = int(min(iteration, iterations))
                    self.maximization.report(
                        f"running: iteration {iteration}/{iterations}, "
                        f"{self._score_name()} {score[-1]:.4g}"
                    )

        try:
            result = optimize.maximize_activation(
                self.model,
                seq,
                target=target if unit is None else None,
                unit=unit,
                iterations=iterations,
                constraints=constraints,
                topology=self.dataset.topology,
                callback=callback,
                cancel=job.cancel,
                progress=False,
            )
            if not np.all(np.isfinite(np.asarray(result.history))):
                raise SkvisError("activation maximization diverged (non-finite poses)")
            with self._lock:
                if not shown():
                    return
                self.result = result
                self._result_key = key
                self.maximization.progress.bar_style = "warning" if result.cancelled else "success"
                self.maximization.running = False
                if key == self._current_key() and self.view == "maximization":
                    self._update_view()
                    if self.shown is not None and self.shown.focus is not None:
                        self.frame = self.shown.focus  # where the run changed most
        except Exception as exc:  # noqa: BLE001 - a failed run is shown, never raised
            with self._lock:
                if shown():
                    self.maximization.progress.bar_style = "danger"
                    self.maximization.report("failed")
                    self.error.show(exc, context="activation maximization", source="maximization")
        finally:
            with self._lock:
                if self._jobs.is_current(job):
                    self.maximization.running = False

    def cancel_maximization(self) -> None:
        """Ask a running activation maximization to stop (it keeps the steps done)."""
        self._jobs.cancel("maximization")

    def _detach_run(self) -> None:
        """Cancel the running maximization and let it go: it shows nothing any more
        (call with `_lock` held)."""
        if self._jobs.detach("maximization") is not None:
            self.maximization.running = False
