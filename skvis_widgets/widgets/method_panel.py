"""The explorer's method choice, its dataset-level verdict and the two atlases.

`MethodPanels(vis)` wires, through `SkeletonVis`'s public traits only:

- a `MethodSelector` in place of the view panel's map dropdown, linked to ``vis.method``
  (the paper's map one click away, labelled as the paper's; a model that is not
  recurrent gets the model-agnostic methods only, and the unit dropdown disabled);
- the verdict of the chosen method on the data set (`skvis_widgets.metrics
  .compare_methods` on a seeded subsample, beside the motion and random controls),
  computed in the background (cancellable, with a progress bar), cached per (model
  weights, data set, method) and shown as one line (`verdict_line`) when ready;
- a `ClassAtlasGrid` and (recurrent models) a `UnitHeatmap` in the explorer's "more"
  accordion, each computed in the background the first time its panel is opened (the
  class atlas again when the method changes); clicking a unit makes it the explorer's
  target.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

import traitlets as T

from ..atlas import class_atlas, unit_atlas
from ..methods import DEFAULT_METHOD, METHODS
from ..metrics import CONTROLS, CompareRow, CompareTable, compare_methods
from .atlas import ClassAtlasGrid, MethodSelector, UnitHeatmap
from .jobs import Job, Jobs

__all__ = ["MethodPanels", "DEFAULT_METHOD", "VERDICT_SETTINGS", "verdict_table"]

#: `compare_methods` settings of the explorer's verdicts: a seeded subsample, enough to
#: tell a map that ranks joints by their motion from one that follows the model (the
#: README's table uses every test sequence).
VERDICT_SETTINGS: dict[str, Any] = {
    "samples": 24,
    "steps": 10,
    "seeds": (0, 1),
    "randomization_samples": 8,
    "stability_samples": 6,
    "perturbations": 2,
}

# model -> {(weights, id(dataset), row name): CompareRow}; weak, so a model let go is forgotten
_ROWS: weakref.WeakKeyDictionary[Any, dict[tuple, CompareRow]] = weakref.WeakKeyDictionary()
_ROWS_LOCK = threading.Lock()
# every panel's jobs, stopped at exit: a verdict still running in a daemon thread while
# the interpreter shuts down would die inside torch
_ALL_JOBS: weakref.WeakSet[Jobs] = weakref.WeakSet()


@atexit.register
def _stop_all(timeout: float = 5.0) -> None:
    for jobs in list(_ALL_JOBS):
        jobs.close(timeout)


def _weights_key(model: Any) -> tuple:
    """Changes when the model's weights do (an optimizer step bumps each tensor's version)."""
    return tuple((id(p), p._version) for p in model.parameters())


def verdict_table(
    model: Any,
    dataset: Any,
    method: str,
    *,
    cancel: threading.Event | None = None,
    callback: Any = None,
    settings: dict[str, Any] | None = None,
) -> CompareTable | None:
    """``method``'s row of `compare_methods` with the control rows (cached per model
    weights, data set and method); None when cancelled."""
    settings = dict(VERDICT_SETTINGS if settings is None else settings)
    base = (_weights_key(model), id(dataset), tuple(sorted(settings.items())))
    with _ROWS_LOCK:
        cache = _ROWS.setdefault(model, {})
        rows: dict[str, CompareRow | None] = {
            name: cache.get(base + (name,)) for name in (method, *CONTROLS)
        }
    missing = [name for name, row in rows.items() if row is None]
    if missing:
        table = compare_methods(
            model,
            dataset,
            methods=[m for m in missing if m not in CONTROLS],
            controls=any(m in CONTROLS for m in missing),
            progress=False,
            cancel=cancel,
            callback=callback,
            **settings,
        )
        if table.cancelled:
            return None
        with _ROWS_LOCK:
            for row in table.rows:
                cache[base + (row.method,)] = row
                rows[row.method] = row
    done = [rows[name] for name in (method, *CONTROLS)]
    return CompareTable(
        rows=tuple(r for r in done if r is not None),
        settings=tuple(settings.items()),
    )


class MethodPanels:
    """The method selector, its verdict and the atlases of one explorer (see the module).

    Attributes
    ----------
    selector : MethodSelector
    class_grid : ClassAtlasGrid
    unit_heatmap : UnitHeatmap or None
        None for a model that is not recurrent (it has no units).
    """

    def __init__(self, vis: Any) -> None:
        self.vis = vis
        self.recurrent = bool(vis.analysis.recurrent)
        self._jobs = Jobs("skvis-methods")
        _ALL_JOBS.add(self._jobs)
        self.selector = MethodSelector(value=DEFAULT_METHOD)
        self.selector.recurrent = self.recurrent
        allowed = vis.analysis.methods()
        vis.views.set_methods([(METHODS[m].label, m) for m in allowed])
        # the selector takes the map dropdown's place (the dropdown stays linked, unseen)
        vis.views.children = tuple(
            self.selector if c is vis.views.method_dropdown else c for c in vis.views.children
        )
        T.link((vis, "method"), (self.selector, "value"))
        vis.observe(self._on_view, "view")
        vis.observe(self._on_method, "method")
        if not self.recurrent:
            unit = vis.targets.unit_dropdown
            unit.disabled = True
            unit.tooltip = "hidden units need a recurrent model (an LSTM/GRU with an FC head)"

        self.class_grid = ClassAtlasGrid()
        vis.add_panel(self.class_grid, "class atlas: mean map per class and body part")
        self._panels: dict[int, str] = {len(vis.more.children) - 1: "class"}
        self.unit_heatmap: UnitHeatmap | None = None
        if self.recurrent:
            self.unit_heatmap = UnitHeatmap(height="360px")
            self.unit_heatmap.on_select(self._on_unit)
            vis.add_panel(self.unit_heatmap, "unit atlas: units by classes (click a unit)")
            self._panels[len(vis.more.children) - 1] = "unit"
        vis.more.observe(self._on_open, "selected_index")
        self._start_verdict()

    # -- the method and its verdict -------------------------------------------------------------
    def _on_view(self, change: Any) -> None:
        self.selector.layout.display = "none" if change["new"] == "maximization" else None

    def _on_method(self, _change: Any) -> None:
        self._start_verdict()
        if self._panel_open("class"):
            self._start_class_atlas()

    def _start_verdict(self) -> None:
        """Show the cached verdict of the current method, or compute it in the background."""
        vis, sel = self.vis, self.selector
        method = vis.method
        if not self.recurrent:
            self._jobs.detach("verdict")
            sel.pending = ""
            sel.table = None
            sel.note = (
                "the data-set verdict needs a recurrent model: its randomization check "
                "re-initializes the LSTM"
            )
            return
        n = min(len(vis.dataset), VERDICT_SETTINGS["samples"])
        sel.table = None
        sel.pending = f"checking {METHODS[method].label} on {n} sequences of the data set ..."
        sel.progress.value = 0

        def work(job: Job) -> None:
            if job.cancel.wait(0.5):  # a quick run through the methods starts nothing
                return

            def callback(done: int, total: int) -> None:
                if self._jobs.is_current(job):
                    sel.progress.value = done / max(total, 1)

            try:
                table = verdict_table(
                    vis.model, vis.dataset, method, cancel=job.cancel, callback=callback
                )
            except Exception as exc:  # noqa: BLE001 - shown in the panel, the widget keeps working
                if self._jobs.is_current(job) and not job.cancel.is_set():
                    sel.pending = f"could not check {METHODS[method].label}: {exc}"
                return
            if table is not None and self._jobs.is_current(job) and not job.cancel.is_set():
                with sel.hold_trait_notifications():
                    sel.table = table
                    sel.pending = ""

        self._jobs.post("verdict", work)

    def wait_verdict(self, timeout: float | None = None) -> bool:
        """Wait for the verdict being computed; True when none is running."""
        return self._jobs.wait("verdict", timeout)

    # -- the atlases ------------------------------------------------------------------------------
    def _panel_open(self, which: str) -> bool:
        return self._panels.get(self.vis.more.selected_index) == which

    def _on_open(self, change: Any) -> None:
        which = self._panels.get(change["new"])
        if which == "class" and (
            self.class_grid.atlas is None or self.class_grid.atlas.method != self.vis.method
        ):
            self._start_class_atlas()
        elif which == "unit" and self.unit_heatmap is not None and self.unit_heatmap.atlas is None:
            self._start_unit_atlas()

    def _start_class_atlas(self) -> None:
        vis, grid = self.vis, self.class_grid
        method = vis.method
        grid.say(f"<i>computing the {METHODS[method].label} class atlas ...</i>")

        def work(job: Job) -> None:
            try:
                atlas = class_atlas(
                    vis.model, vis.dataset, method=method, progress=False, cancel=job.cancel
                )
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                if self._jobs.is_current(job):
                    grid.say(f"could not compute the class atlas: {exc}")
                return
            if self._jobs.is_current(job) and not atlas.cancelled:
                grid.atlas = atlas

        self._jobs.post("class_atlas", work)

    def _start_unit_atlas(self) -> None:
        vis, heat = self.vis, self.unit_heatmap
        assert heat is not None
        heat.say("<i>computing the unit atlas ...</i>")

        def work(job: Job) -> None:
            try:
                atlas = unit_atlas(vis.model, vis.dataset)
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                if self._jobs.is_current(job):
                    heat.say(f"could not compute the unit atlas: {exc}")
                return
            if self._jobs.is_current(job) and not job.cancel.is_set():
                heat.atlas = atlas
                heat.say("<i>click a unit to make it the explorer's target</i>")

        self._jobs.post("unit_atlas", work)

    def wait_atlases(self, timeout: float | None = None) -> bool:
        """Wait for the atlases being computed; True when none is running."""
        return self._jobs.wait("class_atlas", timeout) and self._jobs.wait("unit_atlas", timeout)

    def _on_unit(self, unit: int) -> None:
        self.vis.select(unit=int(unit), view="sensitivity")

    def close(self, timeout: float | None = 60.0) -> None:
        """Cancel the background work and wait for it."""
        self._jobs.close(timeout)
