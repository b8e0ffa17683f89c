"""`SkeletonVis`: the paper's explorer (section 3.3), composed of small widgets.

::

    Header                                   (samples, classes, units, skeleton, accuracy)
    ErrorArea
    SampleSelector | SkeletonScene
    TargetSelector |
    ModePanel      |
    Timeline: Play + frame slider, joints-by-time heatmap

The state is in traits (`sample`, `target`, `unit`, `mode`, `iterations`,
`iteration`, `frame`, `constraints`); the panels' traits are linked to them.
Observers ask `Analysis` (cached saliency) or the optimizer for arrays and hand
them to the scene and the timeline. Activation maximization runs in a thread, the
deletion check in another (which ends when it has nothing left to check); `close`
stops both.

Errors never reach the notebook: a state trait set to a value it refuses (from
Python, a link, or the browser through `set_state`) keeps its value and the error is
shown in the error area, as are the errors of every update.
"""

from __future__ import annotations

import functools
import html
import operator
import threading
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import numpy as np
import traitlets as T

from ..errors import SkvisError
from ..skeleton import check_model_topology
from .analysis import Analysis, hidden_size
from .heatmap import SEQUENTIAL_COLORS
from .panels import (
    MODES,
    ErrorArea,
    ExportPanel,
    FaithfulnessPanel,
    Header,
    MaximizationPanel,
    ModePanel,
    SampleSelector,
    TargetSelector,
)
from .scene import SkeletonScene
from .timeline import Timeline

__all__ = ["SkeletonVis"]


def _prepare_solver() -> None:
    """`anatomy.prepare_solver`, quietly: a failure shows where the solver is used."""
    try:
        from ..anatomy import prepare_solver

        prepare_solver()
    except Exception:  # noqa: BLE001 - reported by the maximization that needs it
        pass


_warm_up_lock = threading.Lock()
_warm_up: threading.Thread | None = None


def _warm_up_solver() -> None:
    """Compile (or load) the projection solver in the background, once per process (the
    first explorer starts it; it ends by itself), so that the first maximization does not
    wait for it."""
    global _warm_up
    with _warm_up_lock:
        if _warm_up is None:
            _warm_up = threading.Thread(
                target=_prepare_solver, name="skvis-prepare-solver", daemon=True
            )
            _warm_up.start()


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


class _LatestWorker:
    """Runs the latest job submitted in one background thread, which ends when it has
    nothing left to do (so no idle thread stays behind); a job still waiting when a newer
    one comes is cancelled (its result would be stale)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._pending: tuple[Any, Future] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, fn) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                future.cancel()
                return future
            if self._pending is not None:
                self._pending[1].cancel()
            self._pending = (fn, future)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._thread = None  # under the lock: a later submit starts a new thread
                    return
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on it
                future.set_exception(exc)

    def close(self, timeout: float | None = None) -> None:
        """Cancel what waits, and wait (up to ``timeout`` s) for the running job to end."""
        with self._lock:
            self._closed = True
            job, self._pending = self._pending, None
            thread = self._thread
        if job is not None:
            job[1].cancel()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


@dataclass
class _Run:
    """One activation maximization: its cancel event and its thread."""

    cancel: threading.Event
    thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def _index(value: Any, n: int, what: str) -> int:
    try:
        i = operator.index(value)
    except TypeError:
        raise SkvisError(f"{what} must be an integer, got {value!r}") from None
    if not 0 <= i < n:
        raise SkvisError(f"{what} {i} is out of range 0..{n - 1}")
    return i


def _colors(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """``(T, J)`` values -> ``(T, J, 3)`` RGB, darker for larger (the package's colormap)."""
    from .. import saliency

    if vmax is None:
        return np.asarray(saliency.sensitivity_colors(values, scale="sequence"), np.float32)
    return np.asarray(saliency.sensitivity_colors(values, scale="global", vmax=vmax), np.float32)


def _describe_residuals(residuals: np.ndarray, names: tuple[str, ...]) -> str:
    """One line: the worst violation of the bones (cm) and of the angles (degrees)."""
    r = np.abs(np.asarray(residuals, dtype=np.float64))
    if r.size == 0:
        return "no constraints measured"
    worst = r.reshape(-1, r.shape[-1]).max(0) if r.ndim > 1 else r
    if len(names) != len(worst):
        return f"constraint residuals: max {worst.max():.3g}"
    bones = [v for n, v in zip(names, worst, strict=True) if n.startswith("bone")]
    others = [(v, n) for n, v in zip(names, worst, strict=True) if not n.startswith("bone")]
    parts = []
    if bones:
        parts.append(f"bone lengths within {100 * max(bones):.2g} cm")
    if others:
        v, n = max(others)
        unit = " deg" if n.startswith(("angle", "plane")) else ""
        parts.append(f"worst other: {n} {v:.2g}{unit}")
    return "constraint residuals: " + ", ".join(parts)


class SkeletonVis(W.VBox):
    """Explore what a recurrent skeleton classifier learned.

    Parameters
    ----------
    model : SkeletonLSTM, or any model wrapped by
        `skvis_widgets.adapters.as_recurrent_classifier`
    dataset : SkeletonDataset
    sample : int
        The first input sequence (an index into ``dataset``).
    target : int, optional
        The first target class (default: the sample's label). An out-of-range ``sample``
        or ``target`` raises `SkvisError`; later, out-of-range values are shown in the
        error area and not applied.
    sensitivity_mode : str
        ``"instantaneous"`` (the paper's eq 1) or another mode of
        `skvis_widgets.saliency.unit_sensitivity`.

    Attributes
    ----------
    sample, target, unit, mode, iterations, iteration, frame, constraints : traits
        The explorer's state; ``observe`` and ``link`` them.
    scene : SkeletonScene
        ``scene.positions`` and ``scene.colors`` are what is drawn, in the
        dataset's coordinates.
    timeline : Timeline
    header, samples, targets, modes, maximization, error, exporter : the panels
        (``exporter``: Save animation and Export HTML of the current view, see
        `save_animation` and `export_html`)
    result : MaximizationResult or None
        The activation maximization shown (its ``history[iteration]``).

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
    mode = T.Enum([m for _, m in MODES], default_value="sensitivity").tag(sync=True)
    iterations = T.Int(12).tag(sync=True)
    iteration = T.Int(0).tag(sync=True)
    frame = T.Int(0).tag(sync=True)
    constraints = T.Bool(True).tag(sync=True)

    #: The state traits: a value one of them refuses is shown, never raised.
    _STATE = frozenset(
        ("sample", "target", "unit", "mode", "iterations", "iteration", "frame", "constraints")
    )

    def __init__(
        self,
        model: Any,
        dataset: Any,
        *,
        sample: int = 0,
        target: int | None = None,
        sensitivity_mode: str = "instantaneous",
        **kwargs,
    ) -> None:
        if len(dataset) == 0:
            raise SkvisError("SkeletonVis needs a dataset with at least one sample")
        check_model_topology(model, dataset.topology, "the dataset")  # same joints, order
        first = _index(sample, len(dataset), "sample")
        target = int(dataset.labels[first]) if target is None else target
        target = _index(target, dataset.num_classes, "target")
        self.model = model
        self.dataset = dataset
        self.analysis = Analysis(model, dataset, mode=sensitivity_mode)
        topo = dataset.topology
        self.result = None
        self._result_key: tuple | None = None
        self._iteration_of = None  # the result whose history `iteration` indexes
        self._run: _Run | None = None  # the maximization shown (None: none, or detached)
        self._runs: list[_Run] = []  # every maximization started and maybe still running
        self._closed = False
        self._lock = threading.RLock()
        self._batch = False
        self._generation = 0
        # What is displayed for the current state: (T, J, 3) positions per step of the
        # history, (T, J, 3) colours, (T, J) heatmap values.
        self._sequence = np.zeros((1, topo.num_joints, 3), np.float32)
        self._positions = self._sequence
        self._frame_colors: np.ndarray | None = None
        # the map behind the colours: (T, J) values, the value drawn darkest, its label
        self._frame_values: np.ndarray | None = None
        self._frame_vmax: float | None = None
        self._frame_label = ""
        self._overlay_offset = (1.0, 0.0, 0.0)
        self._framed: tuple | None = None  # what the camera was last aimed at

        self.header = Header()
        self.error = ErrorArea()
        self.samples = SampleSelector(dataset.class_names, dataset.labels, dataset.ids)
        self.targets = TargetSelector(dataset.class_names)
        self.maximization = MaximizationPanel()
        self.modes = ModePanel(self.maximization)
        self.faithfulness = FaithfulnessPanel()
        self.exporter = ExportPanel()
        self._faith_key: tuple | None = None
        self._faith_future: Future | None = None
        self._checks = _LatestWorker("skvis-check")
        self.scene = SkeletonScene(topo)
        self.timeline = Timeline(topo.joint_names, 1, colors=SEQUENTIAL_COLORS)
        controls = W.VBox(
            [self.samples, self.targets, self.modes, self.faithfulness, self.exporter],
            layout=W.Layout(width="360px", min_width="320px", padding="0 10px 0 0"),
        )
        super().__init__(
            children=[
                self.header,
                self.error,
                W.HBox([controls, self.scene]),
                self.timeline,
            ],
            **kwargs,
        )
        self.add_class("skvis-explorer")

        # Initial state before the links, so that no observer runs on half-built state.
        with self.hold_trait_notifications():
            self._batch = True
            self.sample = first
            self.target = target
        self._batch = False
        for a, b in [
            ("sample", self.samples),
            ("target", self.targets),
            ("unit", self.targets),
            ("mode", self.modes),
            ("iterations", self.maximization),
            ("constraints", self.maximization),
            ("iteration", self.maximization),
            ("frame", self.timeline),
        ]:
            T.link((self, a), (b, a))
        self.maximization.on_run(self.run_maximization)
        self.maximization.on_cancel(self.cancel_maximization)
        self.exporter.on_save(self._save_clicked)
        self.exporter.on_html(self._html_clicked)
        self._update_header()
        self._update_all()
        self._ready = True  # from now on, refused values are shown, not raised
        _warm_up_solver()

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
        if u < 0 or (h is not None and u >= h):
            raise T.TraitError(f"unit {u} is out of range 0..{(h or 1) - 1}")
        return int(u)

    @T.validate("frame")
    def _valid_frame(self, proposal) -> int:
        return int(min(max(int(proposal["value"]), 0), len(self._sequence) - 1))

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
        unit: int | None | type[Ellipsis] = ...,
        frame: int | None = None,
        mode: str | None = None,
    ) -> None:
        """Set several traits at once and redraw once.

        ``unit=None`` targets the class itself; leave ``unit`` out to keep it.
        """
        with self._lock:
            self._batch = True
            try:
                if sample is not None:
                    self.sample = sample
                if target is not None:
                    self.target = target
                if unit is not ...:
                    self.unit = unit
                if mode is not None:
                    self.mode = mode
            finally:
                self._batch = False
            self._update_all()
            if frame is not None:
                self.frame = frame

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
            self.result = None
            self._result_key = None
            self._update_header(use_metadata=False)
            self._update_all()

    def close(self, timeout: float | None = 60.0) -> None:
        """Stop the explorer's threads and close the widget.

        Cancels the maximization and the deletion check and waits (up to ``timeout`` s
        each) for their threads to end. The solver's one-off warm-up thread, shared by
        every explorer of the process, ends by itself.
        """
        if "_lock" not in self.__dict__:  # __init__ failed (close is also called by __del__)
            super().close()
            return
        with self._lock:
            self._closed = True
            self._detach_run()
            runs, self._runs = self._runs, []
        for run in runs:
            run.cancel.set()
        self._checks.close(timeout)
        me = threading.current_thread()
        for run in runs:
            if run.thread is not None and run.thread is not me:
                run.thread.join(timeout)
        super().close()

    def animated(self, **kwargs: Any):
        """What is shown now (the input, or the maximization step) with its colours, as an
        `AnimatedSkeleton` that plays in the browser and in exported HTML."""
        from .animation import AnimatedSkeleton

        with self._lock:
            return AnimatedSkeleton(
                self._positions, self.dataset.topology, self._frame_colors, **kwargs
            )

    def _set_map(self, values, *, vmax: float | None = None, label: str = "") -> None:
        """What colours the joints: ``(T, J)`` values (None: one colour), scaled to ``vmax``
        (None: the values' largest)."""
        if values is None:
            self._frame_values = self._frame_colors = self._frame_vmax = None
            self._frame_label = ""
            return
        values = np.asarray(values)
        self._frame_colors = _colors(values, vmax=vmax)
        self._frame_values = values
        self._frame_vmax = vmax
        self._frame_label = label

    def _view(self) -> dict:
        """What is shown now, as arguments of `skvis_widgets.export.save_animation` and
        `skvis_widgets.webpage.write_html`."""
        with self._lock:
            names = self.dataset.class_names
            what = f"class {names[self.target]}" if self.unit is None else f"unit {self.unit}"
            view: dict[str, Any] = {
                "sequence": self._positions,
                "values": self._frame_values,
                "vmax": self._frame_vmax,
                "title": f"{self.dataset.ids[self.sample]}: {what}",
            }
            if self._frame_label:
                view["label"] = self._frame_label
            if self.mode == "activation_maximization" and self._positions is not self._sequence:
                view["original"] = self._sequence
                view["title"] += f", iteration {self.iteration}"
            return view

    def save_animation(self, path, **kwargs: Any):
        """Write what is shown now (the input coloured by the map, or the maximization step
        beside the input) as a GIF or MP4; see `skvis_widgets.export.save_animation` for
        ``kwargs`` (``fps``, ``camera``, ...). Returns its `AnimationInfo`."""
        from ..export import save_animation

        view = self._view()
        return save_animation(
            path, view.pop("sequence"), view.pop("values"), topology=self.dataset.topology,
            **{**view, **kwargs},
        )  # fmt: skip

    def export_html(self, path, **kwargs: Any):
        """Write what is shown now as one HTML page that plays offline (skeleton in the
        map's colours, the heatmap, Play and a frame slider; see
        `skvis_widgets.webpage.write_html`). Returns the path."""
        from ..webpage import write_html

        view = self._view()
        return write_html(
            path, view.pop("sequence"), self.dataset.topology, view.pop("values"),
            **{**view, **kwargs},
        )  # fmt: skip

    def _save_clicked(self) -> None:
        self._export(self.save_animation, self.exporter.path, "animation")

    def _html_clicked(self) -> None:
        from pathlib import Path

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
        run = self._run
        if run is not None and run.thread is not None:
            run.thread.join(timeout)
            return not run.thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        """An activation maximization is running (and shown)."""
        run = self._run
        return run is not None and run.alive

    # -- observers ---------------------------------------------------------------------------
    # `_batch` is only set with `_lock` held, so it is read under the lock too: a thread
    # finishing a maximization never makes the notebook's thread skip an update.
    @T.observe("sample")
    def _on_sample(self, change) -> None:
        with self._lock:
            if not self._batch:
                self._update_all()

    @T.observe("target", "unit")
    def _on_target(self, change) -> None:
        with self._lock:
            if self._batch:
                return
            if change["name"] == "target":
                self._update_ranking()
            self._update_values()

    @T.observe("mode", "constraints", "iterations", "iteration")
    def _on_mode(self, change) -> None:
        with self._lock:
            if not self._batch:
                self._update_values()

    @T.observe("frame")
    def _on_frame(self, change) -> None:
        with self._lock:
            if not self._batch:
                self._draw_frame()

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

    def _update_all(self) -> None:
        """Everything that depends on the sample, then the values for the target.

        Each step shows its own error and the others still run: a model that fails
        still lets the user browse the data. The errors of the header and of refused
        values stay shown.
        """
        self.error.clear(keep=("header", "input:"))
        self._update_ranking()
        if self._update_sample():
            self._update_prediction()
            self._update_values()

    @_shows_errors("view")
    def _update_sample(self) -> bool:
        try:
            seq = self.analysis.sequence(self.sample)
        except SkvisError:
            self.samples.show_prediction(None)
            raise
        self._sequence = self._positions = seq
        self._set_map(None)
        self._frame_camera(("input", self.sample, len(seq)), seq)
        self.timeline.num_frames = len(seq)
        if self.frame >= len(seq):
            self._set_quietly("frame", len(seq) - 1)
        self._draw_frame()
        return True

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

    @_shows_errors("view")
    def _update_values(self) -> None:
        """Colours and heatmap for the current mode, target and iteration (no new gradients)."""
        seq = self._sequence
        if self.mode == "sensitivity":
            self.scene.show_overlay(None)
            self._frame_camera(("input", self.sample, len(seq)), seq)
            values = self.analysis.joint_map(self.sample, self.target, self.unit)
            what = (
                f"class {self.dataset.class_names[self.target]}"
                if self.unit is None
                else f"unit {self.unit}"
            )
            self._positions = seq
            self._set_map(values, label=f"sensitivity to {what} (normalized)")
            self.timeline.show(values, title=f"frame (sensitivity to {what})")
        else:
            self._update_maximization_view()
        self._update_faithfulness()
        self._draw_frame()

    def _update_faithfulness(self) -> None:
        """Start the deletion check of the current class map in the background (it runs
        the model some forty times); the panel says "checking" until it is done."""
        panel = self.faithfulness
        key = (self.sample, self.target, self._generation)
        self._faith_key = key
        if self.mode != "sensitivity":
            panel.show_text("The deletion check applies to sensitivity maps.")
            return
        if self.unit is not None:
            panel.show_text(
                "The deletion check measures the class probability: choose "
                "'the class itself' as the target to check a class map."
            )
            return
        panel.show_text("checking the map against random deletion orders ...")
        sample, target = self.sample, self.target

        def check() -> None:
            try:
                summary = self.analysis.faithfulness(sample, target)
            except Exception as exc:  # noqa: BLE001 - shown in the panel, the widget keeps working
                with self._lock:
                    if self._faith_key == key:
                        panel.show_text(f"could not check this map: {exc}")
                return
            with self._lock:
                if self._faith_key == key:
                    panel.show(summary)

        self._faith_future = self._checks.submit(check)

    def wait_faithfulness(self, timeout: float | None = None) -> bool:
        """Wait for the running deletion check; True when none is running."""
        future = self._faith_future
        if future is not None:
            try:
                future.result(timeout)
            except TimeoutError:
                return False
            except CancelledError:  # superseded by a newer check, or the explorer closed
                return True
        return True

    def _update_maximization_view(self) -> None:
        seq = self._sequence
        result = self._shown_result()
        self.maximization.num_steps = 1 if result is None else len(result.history)
        if result is not self._iteration_of:
            # Another result is shown (a new run, or the state came back to a kept one):
            # show it at its final step, not at whatever step the previous one was.
            self._iteration_of = result
            if result is not None:
                self._set_quietly("iteration", len(result.history) - 1)
        if result is None:
            self._positions = seq
            self._set_map(None)
            self.scene.show_overlay(None)
            self._frame_camera(("input", self.sample, len(seq)), seq)
            self.timeline.show(None, title="frame (run activation maximization to see a history)")
            self.maximization.report(
                "Shows the input. Press <b>Run</b> to climb the "
                + ("unit's activation." if self.unit is not None else "class score.")
            )
            return
        k = min(self.iteration, len(result.history) - 1)
        history = np.asarray(result.history, dtype=np.float32)
        pos = history[k]
        disp = np.linalg.norm(history - history[0], axis=-1)  # (K+1, T, J), metres
        vmax = float(disp.max()) or 1.0
        self._positions = pos
        self._set_map(disp[k], vmax=vmax, label="displacement from the input (m)")
        self.timeline.show(disp[k], vmax=vmax, title="frame (displacement from the input, m)")
        # The original beside the synthesized skeleton, on the screen's left as in figure 5
        # (the camera looks at the body's front, so +x is to the viewer's left).
        width = float(np.ptp(history[..., 0]))
        self._overlay_offset = (width + 0.3, 0.0, 0.0)
        both = np.concatenate([history.reshape(-1, 3), (seq + self._overlay_offset).reshape(-1, 3)])
        self._frame_camera(("maximization", id(result)), both)
        self.maximization.report(self._describe_step(result, k))

    def _set_quietly(self, name: str, value: Any) -> None:
        """Set a trait without its observer redrawing (the caller draws)."""
        self._batch, was = True, self._batch
        try:
            setattr(self, name, value)
        finally:
            self._batch = was

    def _frame_camera(self, key: tuple, points: np.ndarray) -> None:
        """Aim the camera at ``points`` when what is shown changed (not at every frame, so
        that the user's orbit stays while scrubbing)."""
        if key != self._framed:
            self._framed = key
            self.scene.frame_on(points)

    def _describe_step(self, result, k: int) -> str:
        scores = np.asarray(getattr(result, "scores", []), dtype=np.float64).reshape(-1)
        n = len(result.history) - 1
        if k == 0:
            step = "the input"
        elif k == n:
            step = "converged" if getattr(result, "converged", False) else f"step {k} (last)"
            if getattr(result, "cancelled", False):
                step += ", cancelled"
        else:
            step = f"step {k}"
        parts = [f"iteration {k}/{n}: <b>{step}</b>"]
        if len(scores) > k:
            parts.append(f"score {scores[k]:.4g} (input {scores[0]:.4g})")
        residuals = getattr(result, "residuals", None)
        if residuals is not None and len(residuals) > k:
            parts.append(_describe_residuals(residuals[k], getattr(result, "constraint_names", ())))
        message = getattr(result, "message", "")
        if k == n and message:  # why the run stopped, in the optimizer's words
            parts.append(html.escape(message))
        # Where the input itself breaks one of the paper's limits, that limit was widened
        # for the run (default_constraints): say which and how often.
        violation = getattr(result, "input_violation", None) or {}
        # (bone lengths are never widened: a recording's own length noise is not news)
        broken = sorted(
            ((r, name) for name, r in violation.items() if r > 0 and not name.startswith("bone:")),
            reverse=True,
        )
        if broken:
            parts.append(
                "the input breaks the paper's limits: "
                + ", ".join(f"{html.escape(name)} on {r:.0%} of frames" for r, name in broken[:3])
            )
        return "<br>".join(parts)

    @_shows_errors("view")
    def _draw_frame(self) -> None:
        """Draw the current frame of what is displayed (call with `_lock` held)."""
        positions = self._positions
        k = min(self.frame, len(positions) - 1)
        colors = None if self._frame_colors is None else self._frame_colors[k]
        if colors is None:
            colors = np.tile(np.float32([0.27, 0.51, 0.71]), (positions.shape[1], 1))
        self.scene.show(positions[k], colors)
        if self.mode == "activation_maximization" and positions is not self._sequence:
            self.scene.show_overlay(self._sequence[k], offset=self._overlay_offset)

    # -- activation maximization ----------------------------------------------------------
    def run_maximization(self) -> threading.Thread | None:
        """Start activation maximization for the current state in a background thread.

        Returns the thread (`wait` joins it); None if one is already running (or the
        explorer is closed, or the sample cannot be read: the error area says why).
        """
        with self._lock:
            if self._closed or self.running:
                return None
            key = self._current_key()
            try:
                seq = self.analysis.sequence(key[0])
            except SkvisError as exc:
                self.error.show(exc, context="activation maximization", source="maximization")
                return None
            run = _Run(threading.Event())
            run.thread = threading.Thread(
                target=self._maximize,
                args=(run, key, seq, self._generation),
                name="skvis-maximization",
                daemon=True,
            )
            self._runs = [r for r in self._runs if r.alive] + [run]
            self._run = run
            self.maximization.running = True
            self.maximization.progress.max = key[3]
            self.error.clear("maximization")
            run.thread.start()
            return run.thread

    def _maximize(self, run: _Run, key: tuple, seq: np.ndarray, generation: int) -> None:
        """The maximization thread: run the optimizer, then show its result if ``run`` is
        still the one shown (not let go by `refresh` or `close`)."""
        from .. import optimize

        sample, target, unit, iterations, constraints = key

        def shown() -> bool:  # call with `_lock` held
            return self._run is run and generation == self._generation

        def callback(iteration: int, partial: Any) -> None:
            score = np.asarray(getattr(partial, "scores", [np.nan]), dtype=np.float64).reshape(-1)
            with self._lock:
                if shown():
                    self.maximization.progress.value = int(min(iteration, iterations))
                    self.maximization.report(
                        f"running: iteration {iteration}/{iterations}, score {score[-1]:.4g}"
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
                cancel=run.cancel,
                progress=False,
            )
            if not np.all(np.isfinite(np.asarray(result.history))):
                raise SkvisError("activation maximization diverged (non-finite poses)")
            with self._lock:
                if not shown():
                    return
                self.result = result
                self._result_key = key
                self.maximization.progress.bar_style = (
                    "warning" if getattr(result, "cancelled", False) else "success"
                )
                if key == self._current_key():
                    self.maximization.num_steps = len(result.history)
                    self._iteration_of = result
                    self._set_quietly("iteration", len(result.history) - 1)
                    if self.mode == "activation_maximization":
                        self._update_values()
        except Exception as exc:  # noqa: BLE001 - a failed run is shown, never raised
            with self._lock:
                if shown():
                    self.maximization.progress.bar_style = "danger"
                    self.maximization.report("failed")
                    self.error.show(exc, context="activation maximization", source="maximization")
        finally:
            with self._lock:
                if self._run is run:
                    self.maximization.running = False

    def cancel_maximization(self) -> None:
        """Ask a running activation maximization to stop (it keeps the steps done)."""
        run = self._run
        if run is not None:
            run.cancel.set()

    def _detach_run(self) -> None:
        """Cancel the running maximization and let it go: it shows nothing any more
        (call with `_lock` held)."""
        run, self._run = self._run, None
        if run is not None:
            run.cancel.set()
            self.maximization.running = False
