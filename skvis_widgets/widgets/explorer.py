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
them to the scene and the timeline. Activation maximization runs in a thread.
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import ipywidgets as W
import numpy as np
import traitlets as T

from ..errors import SkvisError
from .analysis import Analysis, hidden_size
from .heatmap import SEQUENTIAL_COLORS
from .panels import (
    MODES,
    ErrorArea,
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


def _shows_errors(method):
    """Run an observer; show any exception in the explorer's error area instead of raising."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the widget keeps working
            self.error.show(exc)
            return None

    return wrapper


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
        The first target class (default: the sample's label).
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
    header, samples, targets, modes, maximization, error : the panels
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
        self.model = model
        self.dataset = dataset
        self.analysis = Analysis(model, dataset, mode=sensitivity_mode)
        topo = dataset.topology
        self.result = None
        self._result_key: tuple | None = None
        self._thread: threading.Thread | None = None
        self._cancel: threading.Event | None = None
        self._lock = threading.RLock()
        self._batch = False
        self._generation = 0
        # What is displayed for the current state: (T, J, 3) positions per step of the
        # history, (T, J, 3) colours, (T, J) heatmap values.
        self._sequence = np.zeros((1, topo.num_joints, 3), np.float32)
        self._positions = self._sequence
        self._frame_colors: np.ndarray | None = None
        self._overlay_offset = (1.0, 0.0, 0.0)
        self._framed: tuple | None = None  # what the camera was last aimed at

        self.header = Header()
        self.error = ErrorArea()
        self.samples = SampleSelector(dataset.class_names, dataset.labels, dataset.ids)
        self.targets = TargetSelector(dataset.class_names)
        self.maximization = MaximizationPanel()
        self.modes = ModePanel(self.maximization)
        self.faithfulness = FaithfulnessPanel()
        self._faith_key: tuple | None = None
        self._faith_future: Future | None = None
        self._faith_pool: ThreadPoolExecutor | None = None
        self.scene = SkeletonScene(topo)
        self.timeline = Timeline(topo.joint_names, 1, colors=SEQUENTIAL_COLORS)
        controls = W.VBox(
            [self.samples, self.targets, self.modes, self.faithfulness],
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
        n = len(dataset)
        first = int(min(max(sample, 0), n - 1))
        with self.hold_trait_notifications():
            self._batch = True
            self.sample = first
            self.target = int(dataset.labels[first]) if target is None else int(target)
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
        self._update_header()
        self._update_all()
        # Compile (or load) the projection solver while the user looks around, so that
        # the first maximization does not wait for it.
        threading.Thread(target=_prepare_solver, name="skvis-prepare-solver", daemon=True).start()

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
        """Apply a state (e.g. from `get_state`); the sample first, since the frame's range
        depends on it."""
        data = dict(sync_data)
        if "sample" in data:
            super().set_state({"sample": data.pop("sample")})
        super().set_state(data)

    def refresh(self) -> None:
        """Pick up new weights (e.g. during training): clear caches, recompute, redraw."""
        self.cancel_maximization()
        with self._lock:
            self._generation += 1  # a maximization still running used the old weights
            self.analysis.clear()
            self.result = None
            self._result_key = None
            self._update_header(use_metadata=False)
            self._update_all()

    def animated(self, **kwargs: Any):
        """What is shown now (the input, or the maximization step) with its colours, as an
        `AnimatedSkeleton` that plays in the browser and in exported HTML."""
        from .animation import AnimatedSkeleton

        with self._lock:
            return AnimatedSkeleton(
                self._positions, self.dataset.topology, self._frame_colors, **kwargs
            )

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running activation maximization; True when none is running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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
    @_shows_errors
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

    @_shows_errors
    def _update_ranking(self) -> None:
        units, weights = self.analysis.ranked_units(self.target)
        self.targets.set_ranking(units, weights)

    def _update_all(self) -> None:
        """Everything that depends on the sample, then the values for the target.

        Each step shows its own error and the others still run: a model that fails
        still lets the user browse the data.
        """
        self.error.clear()
        self._update_ranking()
        if self._update_sample():
            self._update_prediction()
            self._update_values()

    @_shows_errors
    def _update_sample(self) -> bool:
        try:
            seq = self.analysis.sequence(self.sample)
        except SkvisError:
            self.samples.show_prediction(None)
            raise
        self._sequence = self._positions = seq
        self._frame_colors = None
        self._frame_camera(("input", self.sample, len(seq)), seq)
        self.timeline.num_frames = len(seq)
        if self.frame >= len(seq):
            self._batch, was = True, self._batch
            try:
                self.frame = len(seq) - 1
            finally:
                self._batch = was
        self._draw_frame()
        return True

    @_shows_errors
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

    @_shows_errors
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
            self._frame_colors = _colors(values)
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
        if self._faith_pool is None:
            self._faith_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skvis-check")
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

        self._faith_future = self._faith_pool.submit(check)

    def wait_faithfulness(self, timeout: float | None = None) -> bool:
        """Wait for the running deletion check; True when none is running."""
        future = self._faith_future
        if future is not None:
            try:
                future.result(timeout)
            except TimeoutError:
                return False
        return True

    def _update_maximization_view(self) -> None:
        seq = self._sequence
        result = self._shown_result()
        self.maximization.num_steps = 1 if result is None else len(result.history)
        if result is None:
            self._positions = seq
            self._frame_colors = None
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
        self._frame_colors = _colors(disp[k], vmax=vmax)
        self.timeline.show(disp[k], vmax=vmax, title="frame (displacement from the input, m)")
        # The original beside the synthesized skeleton, on the screen's left as in figure 5
        # (the camera looks at the body's front, so +x is to the viewer's left).
        width = float(np.ptp(history[..., 0]))
        self._overlay_offset = (width + 0.3, 0.0, 0.0)
        both = np.concatenate([history.reshape(-1, 3), (seq + self._overlay_offset).reshape(-1, 3)])
        self._frame_camera(("maximization", id(result)), both)
        self.maximization.report(self._describe_step(result, k))

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
        return "<br>".join(parts)

    @_shows_errors
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

        Returns the thread (`wait` joins it); None if one is already running.
        """
        if self.running:
            return None
        from .. import optimize

        key = self._current_key()
        sample, target, unit, iterations, constraints = key
        generation = self._generation
        try:
            seq = self.analysis.sequence(sample)
        except SkvisError as exc:
            self.error.show(exc)
            return None
        cancel = threading.Event()
        self._cancel = cancel
        self.maximization.running = True
        self.maximization.progress.max = iterations
        self.error.clear()

        def callback(iteration: int, partial: Any) -> None:
            self.maximization.progress.value = int(min(iteration, iterations))
            score = np.asarray(getattr(partial, "scores", [np.nan]), dtype=np.float64).reshape(-1)
            self.maximization.report(
                f"running: iteration {iteration}/{iterations}, score {score[-1]:.4g}"
            )

        def work() -> None:
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
                    cancel=cancel,
                    progress=False,
                )
                history = np.asarray(result.history)
                if not np.all(np.isfinite(history)):
                    raise SkvisError("activation maximization diverged (non-finite poses)")
                with self._lock:
                    if generation != self._generation:
                        return  # the weights changed meanwhile (refresh)
                    self.result = result
                    self._result_key = key
                    self.maximization.progress.bar_style = (
                        "warning" if getattr(result, "cancelled", False) else "success"
                    )
                    if key == self._current_key():
                        self._batch, was = True, self._batch
                        try:
                            self.maximization.num_steps = len(result.history)
                            self.iteration = len(result.history) - 1
                        finally:
                            self._batch = was
                        if self.mode == "activation_maximization":
                            self._update_values()
            except Exception as exc:  # noqa: BLE001 - a failed run is shown, never raised
                self.maximization.progress.bar_style = "danger"
                self.maximization.report("failed")
                self.error.show(exc, context="activation maximization")
            finally:
                self.maximization.running = False

        thread = threading.Thread(target=work, name="skvis-maximization", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def cancel_maximization(self) -> None:
        """Ask a running activation maximization to stop (it keeps the steps done)."""
        if self._cancel is not None:
            self._cancel.set()
