"""The explorer and its parts, driven through their traits (no browser)."""

from __future__ import annotations

import html
import threading
from types import SimpleNamespace

import ipywidgets as W
import numpy as np
import pytest
import torch
from torch import nn

from skvis_widgets._compiled import BackgroundCompile
from skvis_widgets.data import SkeletonDataset
from skvis_widgets.model import SkeletonLSTM
from skvis_widgets.skeleton import MSR_ACTION3D


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(msr_slice):
    """2 samples of each of the first 4 classes, cut to 40 frames."""
    return msr_slice(40)


@pytest.fixture
def model(make_model):
    """An untrained 20-joint LSTM, 20 classes (MSR Action3D's), 16 units."""
    return make_model(20, 20, 16)


@pytest.fixture
def vis(model, dataset):
    from skvis_widgets.widgets import SkeletonVis

    return SkeletonVis(model, dataset, sample=0, method="paper")  # the paper's maps are checked


def _links():
    from ipywidgets.widgets.widget import _instances
    from ipywidgets.widgets.widget_link import Link

    return [w for w in _instances.values() if isinstance(w, Link)]


@pytest.fixture
def held(monkeypatch):
    """Every activation maximization started waits, in its thread, until the test sets
    ``held.release`` (``held.started`` is set once one waits): the test acts during a run
    with no race and no sleep."""
    from skvis_widgets import optimize

    started, release = threading.Event(), threading.Event()
    real = optimize.maximize_activation

    def held_run(*args, **kwargs):
        started.set()
        if not release.wait(60):
            raise RuntimeError("the test never released the maximization")
        return real(*args, **kwargs)

    monkeypatch.setattr(optimize, "maximize_activation", held_run)
    yield SimpleNamespace(started=started, release=release)
    release.set()


def _luminance(rgb):
    return np.asarray(rgb) @ np.array([0.299, 0.587, 0.114])


# -- the parts -------------------------------------------------------------------------------------
def test_exports():
    import skvis_widgets.widgets as w

    for name in ("SkeletonVis", "SkeletonScene", "Timeline", "AnimatedSkeleton"):
        assert name in w.__all__ and hasattr(w, name)


def test_scene_show_replaces_buffers(dataset):
    from skvis_widgets.widgets import SkeletonScene

    seq = dataset.sequences[0]
    scene = SkeletonScene(MSR_ACTION3D, seq[0])
    before = scene.positions
    colors = np.random.default_rng(0).random((20, 3))
    scene.show(seq[5], colors)
    np.testing.assert_array_equal(scene.positions, seq[5])
    np.testing.assert_allclose(scene.colors, colors, rtol=1e-6)
    assert scene.positions is not before  # replaced, not mutated in place
    assert scene.positions.dtype == np.float32
    with pytest.raises(ValueError, match=r"positions: has 10 joints"):
        scene.show(seq[5][:10])
    scene.show_overlay(seq[0], offset=(1.0, 0.0, 0.0))
    np.testing.assert_array_equal(scene.overlay_positions, seq[0])
    scene.show_overlay(None)
    assert scene.overlay_positions is None


def test_timeline_links_and_heatmap_events():
    from skvis_widgets.export import part_rows
    from skvis_widgets.widgets import Timeline
    from skvis_widgets.widgets.heatmap import frame_ticks

    tl = Timeline(MSR_ACTION3D, 30)
    values = np.random.default_rng(0).random((30, 20))
    tl.show(values)
    np.testing.assert_allclose(tl.heatmap.values, values)  # in joint order again
    # rows in anatomical order, grouped by body part, with a separator between groups
    rows, groups = part_rows(MSR_ACTION3D)
    assert tl.heatmap.order == tuple(rows)
    assert list(tl.heatmap.mark.row) == [MSR_ACTION3D.pretty(r) for r in rows]
    # separators between head-and-torso, left arm, right arm, left leg, right leg
    names = [g[0] for g in groups]
    assert names[:2] == ["head", "torso"]
    cuts = sorted(1 - np.asarray(tl.heatmap.separators.y)[:, 0])
    np.testing.assert_allclose(cuts, [a / 20 for _, a, _ in groups[2:]])
    # integer ticks inside the range
    ticks = np.asarray(tl.heatmap._x_axis.tick_values)
    assert ticks[0] == 0 and ticks[-1] <= 29 and np.all(ticks == np.round(ticks))
    for n in (1, 2, 9, 55, 300):
        t = frame_ticks(n)
        assert t[0] == 0 and t[-1] <= n - 1 and len(t) <= 8
    tl.frame = 7
    assert tl.slider.value == 7 and tl.heatmap.cursor.x[0] == 7.0
    tl.slider.value = 9  # the browser moves the slider
    assert tl.frame == 9
    tl.frame = 99
    assert tl.frame == 29
    # Clicking a cell selects it (bqplot's click interaction) and jumps to its frame.
    tl.heatmap.mark.selected = np.array([[4, 12]])
    assert tl.frame == 12
    r = rows.index(MSR_ACTION3D.joint_names.index("elbow_left"))
    tl.heatmap._on_hover(
        None, {"event": "hover", "data": {"rowNum": r, "columnNum": 3, "color": 0.5}}
    )
    assert tl.heatmap.hovered.startswith("elbow left, frame 3")
    tl.show(values * 2)  # new values: the hover text is stale, and cleared
    assert tl.heatmap.hovered == ""
    tl.fps = 25
    assert tl.play.interval == 40
    links = _links()
    assert any(
        lk.source == (tl.play, "value") and lk.target == (tl.slider, "value") for lk in links
    )


def test_animated_skeleton_plays_in_the_browser(dataset):
    from skvis_widgets.widgets import AnimatedSkeleton

    seq = dataset.sequences[0]
    colors = np.random.default_rng(0).random((len(seq), 20, 3))
    anim = AnimatedSkeleton(seq, MSR_ACTION3D, colors)
    assert anim.scatter.x.shape == (len(seq), 20)
    assert anim.scatter.color.shape == (len(seq), 20, 3)
    assert anim.play.max == len(seq) - 1
    links = _links()
    targets = {lk.target for lk in links if lk.source == (anim.slider, "value")}
    assert (anim.scatter, "sequence_index") in targets and (anim.mesh, "sequence_index") in targets


def test_animation_survives_html_export(vis, dataset, tmp_path):
    from ipywidgets.embed import embed_minimal_html

    vis.select(sample=2, target=1, frame=4)
    anim = vis.animated()
    np.testing.assert_array_equal(anim.sequence, dataset.sequences[2])
    expected = vis.analysis.joint_map(2, 1)
    darkest = _luminance(np.asarray(anim.scatter.color)).argmin(axis=1)
    np.testing.assert_array_equal(darkest, expected.argmax(axis=1))
    out = tmp_path / "anim.html"
    embed_minimal_html(out, views=[anim], title="skeleton")
    html = out.read_text()
    # The state (all frames) and the browser-side links travel inside the page.
    assert "LinkModel" in html and "sequence_index" in html and "ScatterModel" in html


def test_class_maps_of_the_analysis_equal_eq5_of_its_unit_maps(vis, model):
    # the explorer's class change is a lookup in eq 5 for every class at once; each class
    # must equal `class_map` (one class re-weighted) of the same cached unit maps
    from skvis_widgets.saliency import class_map

    analysis = vis.analysis
    units = analysis.unit_sensitivity(3)
    for target in range(analysis.weight.shape[0]):
        got = analysis.joint_map(3, target)
        np.testing.assert_allclose(got, class_map(units, model, target), rtol=1e-5, atol=1e-7)
        assert got.shape == units.shape[1:] and got.dtype == np.float32
    np.testing.assert_array_equal(analysis.joint_map(3, 0, unit=5), units[5])


def test_error_area_clears_by_source_and_keeps_the_header():
    from skvis_widgets.widgets.panels import ErrorArea

    area = ErrorArea()
    area.show(ValueError("no accuracy"), context="accuracy", source="header")
    for k in range(5):
        area.show(f"view error {k}", source="view")
    lines = area.message.splitlines()
    assert len(lines) == ErrorArea.max_items  # the oldest went, the header's stayed
    assert lines[0] == "accuracy: ValueError: no accuracy" and lines[-1] == "view error 4"
    area.show("sample refused", source="input:sample")
    area.clear(keep=("header", "input:"))
    assert area.message.splitlines() == ["accuracy: ValueError: no accuracy", "sample refused"]
    area.clear("input:sample")
    assert area.message == "accuracy: ValueError: no accuracy" and "Error" in area.value
    area.clear()
    assert area.message == "" and area.value == ""


# -- the explorer --------------------------------------------------------------------------------
def test_frame_sets_the_position_buffer(vis, dataset):
    seq = dataset.sequences[0]
    for k in (0, 13, len(seq) - 1):
        vis.frame = k
        np.testing.assert_array_equal(vis.scene.positions, seq[k])
        assert vis.timeline.slider.value == k
    vis.timeline.slider.value = 3  # from the browser
    assert vis.frame == 3
    np.testing.assert_array_equal(vis.scene.positions, seq[3])
    vis.timeline.heatmap.mark.selected = np.array([[2, 15]])  # a click on the heatmap
    assert vis.frame == 15
    np.testing.assert_array_equal(vis.scene.positions, seq[15])


def test_sensitivity_is_computed_once_per_sample(vis, monkeypatch):
    from skvis_widgets import saliency

    calls = []
    original = saliency.unit_sensitivity

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(saliency, "unit_sensitivity", counting)
    for c in (1, 2, 3):
        vis.target = c
    vis.unit = 5
    vis.frame = 9
    assert calls == []  # classes and units only re-weight the cached sensitivity
    vis.sample = 3
    vis.target = 0
    assert calls == [1]
    vis.sample = 0  # still cached
    assert calls == [1]


def test_target_darkest_joint_is_most_sensitive(vis, dataset, model):
    from skvis_widgets import saliency

    vis.frame = 20
    seq = dataset.sequences[0]
    for c in (3, 1):
        vis.target = c
        expected = saliency.joint_sensitivity(model, seq, target=c)[20]
        assert np.argmin(_luminance(vis.scene.colors)) == np.argmax(expected)
        np.testing.assert_allclose(vis.timeline.heatmap.values[20], expected, rtol=1e-4, atol=1e-7)


def test_unit_target_and_ranking(vis, dataset, model):
    from skvis_widgets import saliency

    w = model.fc.weight.detach().numpy()[vis.target]
    ranked = [v for _, v in vis.targets.unit_dropdown.options][1:]
    assert ranked[0] == int(np.argmax(np.abs(w)))
    assert f"{w[ranked[0]]:+.3f}" in vis.targets.unit_dropdown.options[1][0]
    vis.frame = 5
    vis.unit = ranked[2]
    expected = saliency.joint_sensitivity(model, dataset.sequences[0], unit=ranked[2])[5]
    assert np.argmin(_luminance(vis.scene.colors)) == np.argmax(expected)
    vis.unit = None
    assert vis.targets.unit_dropdown.value == vis.targets.CLASS_ITSELF  # shown, not blank
    vis.targets.unit_dropdown.value = ranked[1]  # the user picks a unit
    assert vis.unit == ranked[1]
    vis.targets.unit_dropdown.value = vis.targets.CLASS_ITSELF
    assert vis.unit is None


def test_sample_change_and_select(vis, dataset):
    vis.sample = 5
    assert vis.samples.class_filter.value == dataset.labels[5]
    np.testing.assert_array_equal(vis.scene.positions, dataset.sequences[5][vis.frame])
    assert "predicted" in vis.samples.info.value
    vis.samples.sample_dropdown.value = 4  # the user picks another sample
    assert vis.sample == 4
    vis.select(sample=2, target=3, unit=1, frame=8)
    assert (vis.sample, vis.target, vis.unit, vis.frame) == (2, 3, 1, 8)
    np.testing.assert_array_equal(vis.scene.positions, dataset.sequences[2][8])
    assert vis.analysis.is_cached(2)


def test_state_round_trip(vis, model, dataset):
    from skvis_widgets.widgets import SkeletonVis

    vis.select(sample=3, target=2, unit=4, frame=11, view="maximization")
    state = vis.get_state()
    for k, v in dict(sample=3, target=2, unit=4, frame=11, view="maximization").items():
        assert state[k] == v
    other = SkeletonVis(model, dataset)
    other.set_state({k: state[k] for k in ("sample", "target", "unit", "view", "frame")})
    assert (other.sample, other.target, other.unit, other.view, other.frame) == (
        3,
        2,
        4,
        "maximization",
        11,
    )
    np.testing.assert_array_equal(other.scene.positions, dataset.sequences[3][11])


def test_activation_maximization_in_a_thread(vis, dataset):
    seen = []
    vis.maximization.progress.observe(lambda ch: seen.append(threading.current_thread()), "value")
    vis.select(view="maximization", frame=6)
    vis.iterations = 3
    assert vis.maximization.layout.display is None
    thread = vis.run_maximization()
    assert thread is not None and thread is not threading.main_thread()
    assert vis.wait(60) and vis.error.message == ""
    assert seen and all(t is thread for t in seen)
    history = np.asarray(vis.result.history)
    last = len(history) - 1
    assert 1 <= last <= 3 and vis.iteration == last  # the final step is shown first
    seq = dataset.sequences[0]
    np.testing.assert_array_equal(history[0], seq)
    # after the run the view jumps to the frame the run moved most (a loop, not numpy)
    moved = [
        sum(float(np.sqrt(((history[last][t][j] - seq[t][j]) ** 2).sum())) for j in range(20))
        for t in range(len(seq))
    ]
    assert vis.frame == int(np.argmax(moved))
    vis.frame = 6
    for k in sorted({0, 1, last}):
        vis.maximization.iteration_slider.value = k  # the iteration slider
        np.testing.assert_allclose(vis.scene.positions, history[k][6])
        np.testing.assert_array_equal(vis.scene.overlay_positions, seq[6])  # the ghost
        # a displacement line from each of the ghost's joints to the result's
        np.testing.assert_allclose(vis.scene.link_positions[:, 0], seq[6], atol=1e-6)
        np.testing.assert_allclose(vis.scene.link_positions[:, 1], history[k][6], atol=1e-6)
        status = vis.maximization.status.value
        assert f"iteration {k}/{last}" in status and "score = logit of class" in status
        if k == 0:  # the input's own bone-length noise is labelled as such
            assert "the input's own deviations" in status and "residuals" not in status
        else:
            assert "constraint residuals of the synthesized sequence" in status
        # the joints carry the displacement in cm, on one scale for the history
        disp = 100 * np.linalg.norm(history[k][6] - seq[6], axis=-1)
        assert vis.legend.label.startswith("displacement from the input (cm)")
        assert "grey skeleton: the input" in vis.legend.value
        np.testing.assert_allclose(vis.shown.values[6], disp, rtol=1e-4, atol=1e-4)
        # why the run stopped, in the optimizer's words, at the final step only
        assert vis.result.message and (html.escape(vis.result.message) in status) == (k == last)
        broken = [
            n for n, r in vis.result.input_violation.items() if r > 0 and not n.startswith("bone:")
        ]
        assert ("the input breaks the paper's limits" in status) == bool(broken)
    vis.frame = 9
    np.testing.assert_allclose(vis.scene.positions, history[last][9])
    vis.view = "sensitivity"
    np.testing.assert_array_equal(vis.scene.positions, seq[9])
    assert vis.scene.overlay_positions is None


def test_cancel_stops_the_maximization(vis):
    vis.view = "maximization"
    vis.iterations = 200
    assert vis.maximization.iterations_slider.value == 200  # widened, not clamped
    thread = vis.run_maximization()
    vis.cancel_maximization()
    assert vis.wait(60) and not thread.is_alive()
    assert vis.result.cancelled and len(vis.result.history) < 201
    assert not vis.maximization.running and not vis.maximization.run_button.disabled


def _writable_copy(dataset):
    """The same samples, each sequence a copy a test may damage."""
    return SkeletonDataset.from_arrays(
        [s.copy() for s in dataset.sequences],
        dataset.labels,
        MSR_ACTION3D,
        dataset.class_names,
        normalize=False,
    )


def test_nan_sample_shows_an_error_and_keeps_working(model, dataset):
    from skvis_widgets.widgets import SkeletonVis

    ds = _writable_copy(dataset)
    ds.sequences[1][4, 7, 0] = np.nan
    vis = SkeletonVis(model, ds)
    header_error = vis.error.message  # the accuracy needs every sample (see the next test)
    vis.sample = 1
    assert "NaN or infinite" in vis.error.message and "frame 4" in vis.error.message
    assert "Error" in vis.error.value
    vis.sample = 2
    assert vis.error.message == header_error  # the sample's error is gone, not the header's
    np.testing.assert_array_equal(vis.scene.positions, ds.sequences[2][vis.frame])


def test_the_header_keeps_its_error(model, dataset):
    """A header that could not measure the accuracy says why, and keeps saying it while
    the rest of the explorer redraws (issue 11, item 10)."""
    from skvis_widgets.widgets import SkeletonVis

    ds = _writable_copy(dataset)
    ds.sequences[5][2, 3, 1] = np.inf  # a sample the accuracy needs, not the one shown
    vis = SkeletonVis(model, ds, sample=0)
    assert "could not be measured" in vis.header.value
    assert vis.error.message.startswith("accuracy:"), vis.error.message
    assert "sample 5" in vis.error.message
    for change in (dict(sample=2), dict(target=3), dict(sample=0, view="maximization")):
        vis.select(**change)
        assert "accuracy:" in vis.error.message and "sample 5" in vis.error.message, change
    bad = "first at frame 2, joint 3"
    vis.sample = 5  # its own error joins the header's
    assert vis.error.message.count(bad) == 2
    vis.sample = 1
    assert vis.error.message.count(bad) == 1 and "accuracy:" in vis.error.message
    ds.sequences[5][2, 3, 1] = 0.0  # repaired: the next refresh measures it
    vis.refresh()
    assert vis.error.message == "" and "on this data" in vis.header.value


def test_a_model_that_raises_is_shown_not_raised(dataset):
    from skvis_widgets.widgets import SkeletonVis

    class Broken(SkeletonLSTM):
        def preprocess(self, x):  # every path (classify, saliency, optimize) goes through it
            raise RuntimeError("broken preprocess")

    torch.manual_seed(0)
    vis = SkeletonVis(Broken(20, 20, 8).eval(), dataset, method="paper")
    assert "broken" in vis.error.message
    vis.frame = 3  # still responds
    np.testing.assert_array_equal(vis.scene.positions, dataset.sequences[0][3])
    vis.view = "maximization"
    vis.run_maximization()
    assert vis.wait(30)
    assert "activation maximization" in vis.error.message and "broken" in vis.error.message


def test_refresh_picks_up_new_weights(vis, model):
    before = vis.samples.info.value
    p_before = vis.analysis.probs(vis.sample).copy()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    assert np.allclose(vis.analysis.probs(vis.sample), p_before)  # cached until refresh
    vis.refresh()
    assert not np.allclose(vis.analysis.probs(vis.sample), p_before)
    assert vis.samples.info.value != before
    assert "on this data" in vis.header.value


def test_users_own_model_and_arrays():
    from skvis_widgets.adapters import as_recurrent_classifier
    from skvis_widgets.widgets import SkeletonVis

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(60, 12)
            self.out = nn.Linear(12, 3)

        def forward(self, x):  # (B, T, J, 3)
            h, _ = self.lstm(x.flatten(2).transpose(0, 1))
            return self.out(h[-1])

    torch.manual_seed(1)
    rng = np.random.default_rng(0)
    arrays = rng.normal(0, 0.3, (6, 25, 20, 3)).astype(np.float32)
    ds = SkeletonDataset.from_arrays(arrays, [0, 1, 2, 0, 1, 2], "msr_action3d", ["a", "b", "c"])
    vis = SkeletonVis(as_recurrent_classifier(Net(), recurrent="lstm", head="out"), ds)
    assert vis.error.message == "", vis.error.message
    assert "12" in vis.header.value and "on this data" in vis.header.value
    vis.select(sample=4, target=2, frame=10)
    np.testing.assert_array_equal(vis.scene.positions, ds.sequences[4][10])


def test_faithfulness_panel_checks_the_current_class_map(vis, model, dataset):
    from skvis_widgets import metrics

    for sample, target in [(0, int(dataset.labels[0])), (3, 2)]:
        vis.select(sample=sample, target=target, unit=None)
        assert vis.wait_faithfulness(60)
        shown = vis.faithfulness.summary
        ref = metrics.faithfulness_summary(
            model, dataset.sequences[sample], vis.analysis.joint_map(sample, target), target
        )
        assert shown.deletion.target == target
        np.testing.assert_allclose(shown.deletion.probabilities, ref.deletion.probabilities)
        assert shown.score == pytest.approx(ref.score, nan_ok=True)
        np.testing.assert_allclose(vis.faithfulness.curve.y, ref.deletion.probabilities)
        assert vis.faithfulness.figure.layout.display is None
        # a y axis fitted to the curves, and a legend for both lines
        top = max(np.max(vis.faithfulness.curve.y), np.max(vis.faithfulness.random.y))
        assert vis.faithfulness._y.max == pytest.approx(min(1.0, 1.1 * top))
        # the legend above the plot (never over the curves) names both lines
        legend = vis.faithfulness.legend
        assert legend.layout.display is None
        assert "most salient" in legend.value and "random order" in legend.value
        assert vis.faithfulness.figure in vis.faithfulness.children
    vis.unit = 1
    assert vis.faithfulness.summary is None
    assert "class itself" in vis.faithfulness.message.value
    # collapsed, no blank band; the plot out of the page (bqplot lays out a hidden figure at
    # zero size and logs negative sizes)
    assert vis.faithfulness.figure.layout.display == "none"
    assert vis.faithfulness.figure not in vis.faithfulness.children
    vis.unit = None
    assert vis.wait_faithfulness(60) and vis.faithfulness.figure in vis.faithfulness.children
    vis.view = "maximization"  # the trust panel applies to sensitivity maps only
    assert vis.faithfulness.layout.display == "none"
    assert vis.faithfulness.figure not in vis.faithfulness.children
    vis.view = "sensitivity"
    assert vis.faithfulness.layout.display is None
    assert vis.wait_faithfulness(60) and vis.faithfulness.figure in vis.faithfulness.children


# -- issue 11, item 10: threads, runs and refused values ---------------------------------------
def test_close_stops_the_explorers_threads(model, dataset):
    from skvis_widgets.widgets import SkeletonVis

    before = set(threading.enumerate())
    explorers = [SkeletonVis(model, dataset, sample=i % len(dataset)) for i in range(8)]
    busy = explorers[0]
    busy.select(view="maximization")
    busy.iterations = 500
    run = busy.run_maximization()
    assert run is not None
    explorers[1].select(sample=3, target=2)  # a deletion check in flight
    for vis in explorers:
        vis.close()
    assert not run.is_alive()
    left = [
        t.name
        for t in set(threading.enumerate()) - before
        if t.name.startswith("skvis-") and t.name != "skvis-prepare-solver"
    ]
    assert left == [], f"threads left by closed explorers: {sorted(left)}"
    # The solver's warm-up is one thread per process, not one per explorer.
    warm_ups = [t for t in threading.enumerate() if t.name == "skvis-prepare-solver"]
    assert len(warm_ups) <= 1
    assert busy.run_maximization() is None  # closed: nothing starts


def test_refresh_during_a_run_cancels_it_and_run_starts_again(vis, held):
    vis.select(view="maximization")
    vis.iterations = 3
    first = vis.run_maximization()
    assert first is not None and held.started.wait(60)
    vis.refresh()
    assert not vis.running
    assert not vis.maximization.running and not vis.maximization.run_button.disabled
    second = vis.run_maximization()
    assert second is not None and second is not first, "Run after refresh did not start"
    held.release.set()
    assert vis.wait(60)
    first.join(60)
    assert not first.is_alive()
    # What is shown is the new run's result (the old one, cancelled, was let go).
    result = vis.result
    assert result is not None and not result.cancelled
    assert 2 <= len(result.history) <= 4 and vis.iteration == len(result.history) - 1
    assert vis.error.message == "" and not vis.maximization.running


def test_a_kept_result_is_shown_at_its_final_step(vis, dataset, held):
    vis.select(view="maximization", frame=5)
    vis.iterations = 3
    target = vis.target
    assert vis.run_maximization() is not None and held.started.wait(60)
    vis.target = target + 1  # during the run
    held.release.set()
    assert vis.wait(60) and vis.error.message == ""
    assert vis.iteration == 0  # no result for this target: the input
    np.testing.assert_array_equal(vis.scene.positions, dataset.sequences[0][5])
    history = np.asarray(vis.result.history)
    last = len(history) - 1
    assert last >= 1 and not np.allclose(history[last], history[0])

    def shows_the_final_step():
        assert vis.iteration == last and vis.maximization.iteration_slider.value == last
        np.testing.assert_allclose(vis.scene.positions, history[last][5])
        assert f"iteration {last}/{last}" in vis.maximization.status.value

    vis.target = target  # back to the state the result was made for
    shows_the_final_step()
    vis.iteration = 0  # the user looks at the input, goes elsewhere, and comes back
    vis.sample = 3
    vis.sample = 0
    vis.frame = 5
    shows_the_final_step()


@pytest.mark.parametrize("how", ["python", "browser"])
def test_refused_values_are_shown_not_raised(vis, dataset, monkeypatch, how):
    sent = []
    monkeypatch.setattr(vis, "send_state", lambda key=None: sent.append(key))
    vis.select(sample=2, target=1, unit=3, frame=4)
    kept = dict(sample=2, target=1, unit=3, view="sensitivity", method="paper")
    refused = [
        ("sample", len(dataset)),
        ("sample", -1),
        ("sample", "3"),
        ("target", dataset.num_classes),
        ("unit", 16),  # the model has 16 hidden units
        ("unit", -2),
        ("view", "nonsense"),
        ("method", "nonsense"),
    ]
    for k, (name, value) in enumerate(refused):
        if how == "python":
            setattr(vis, name, value)
        else:
            vis.set_state({name: value})
            assert sent[-1] == name  # the browser is told the value kept
        assert getattr(vis, name) == kept[name]
        last = vis.error.message.splitlines()[-1]
        assert last.startswith(f"{name} = {value!r} refused, kept {kept[name]!r}: TraitError"), last
        vis.frame = 6 + k  # the widget keeps working
        np.testing.assert_array_equal(vis.scene.positions, dataset.sequences[2][6 + k])
    assert (vis.sample, vis.target, vis.unit, vis.view) == (2, 1, 3, "sensitivity")
    # A good value clears its trait's error; the others' stay.
    vis.view = "maximization"
    assert "view =" not in vis.error.message and "unit =" in vis.error.message
    # From the browser, several traits at once: the good ones are applied.
    vis.set_state({"target": 99, "sample": 3, "frame": 7})
    assert (vis.sample, vis.target, vis.frame) == (3, 1, 7)
    assert "target = 99 refused" in vis.error.message.splitlines()[-1]
    np.testing.assert_array_equal(vis.scene.positions, dataset.sequences[3][7])


def test_bad_constructor_arguments_raise_skvis_errors(model, dataset):
    from skvis_widgets.errors import SkvisError
    from skvis_widgets.widgets import SkeletonVis

    with pytest.raises(SkvisError, match=r"sample 8 out of range 0\.\.7"):
        SkeletonVis(model, dataset, sample=8)
    with pytest.raises(SkvisError, match=r"target 20 out of range 0\.\.19"):
        SkeletonVis(model, dataset, target=20)
    with pytest.raises(SkvisError, match="sample must be an int"):
        SkeletonVis(model, dataset, sample=1.5)


# -- issue 12: colour, legend, depth, left and right ---------------------------------------
def test_color_scales_against_a_loop():
    from skvis_widgets.colors import COLORMAPS, fit_scale, sensitivity_colors

    rng = np.random.default_rng(1)
    v = rng.gamma(1.0, size=(30, 7))
    v[0] *= 20  # one frame dominates
    for scaling in ("frame", "sequence", "robust"):
        scale = fit_scale(v, scaling, quantity="q", units="normalized")
        for t in range(30):
            if scaling == "frame":
                top = max(v[t])
            elif scaling == "sequence":
                top = max(max(row) for row in v)
            else:  # 95th percentile, numpy's linear interpolation written out
                flat = sorted(float(x) for x in v.ravel())
                pos = 0.95 * (len(flat) - 1)
                lo = int(pos)
                top = flat[lo] + (pos - lo) * (flat[lo + 1] - flat[lo])
            expected = sensitivity_colors(v[t], scale="global", vmax=top)
            np.testing.assert_allclose(scale.colors(v[t], t), expected, atol=1e-6)
    # robust keeps contrast where one frame dominates: fewer joint-frames stay light
    light = {s: (fit_scale(v, s).unit_values(v) < 0.25).mean() for s in ("sequence", "robust")}
    assert light["robust"] < light["sequence"]
    d = fit_scale(v, "dataset", vmax=2.0)
    assert d.top == 2.0 and "dataset scale: 0 to 2" in d.describe()
    np.testing.assert_allclose(
        d.colors(v)[1, 1], sensitivity_colors(v[1, 1], scale="global", vmax=2.0)
    )
    assert fit_scale(np.zeros((3, 2))).top == 1.0  # all zeros: lightest, no division by 0
    for q in (0.5, 50.0, 99.9, 100.0):  # the partition against numpy's percentile
        assert fit_scale(v, percentile=q).top == pytest.approx(np.percentile(v, q), rel=1e-12)
    assert fit_scale(np.full((1, 1), 3.0)).top == 3.0
    for kwargs, match in [
        ({"scaling": "nope"}, "scaling must be one of"),
        ({"scaling": "dataset"}, "positive vmax"),
        ({"scaling": "robust", "vmax": 1.0}, "vmax goes with"),
        ({"percentile": 0}, "percentile must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            fit_scale(v, **kwargs)
    assert len(COLORMAPS["YlOrRd"]) == 9


def test_legend_and_the_scene_share_one_scale(vis, dataset):
    from skvis_widgets.colors import fit_scale

    vis.frame = 10
    values = vis.analysis.joint_map(0, vis.target)
    scale = fit_scale(values, "robust")
    np.testing.assert_allclose(vis.scene.colors, scale.colors(values[10], 10), atol=1e-6)
    assert vis.legend.label.startswith(f"sensitivity to class {dataset.class_names[vis.target]}")
    assert "robust scale: 0 to" in vis.legend.label and "95th percentile" in vis.legend.label
    assert vis.timeline.heatmap._color_scale.max == pytest.approx(scale.top)
    assert vis.heatmap_legend is vis.legend  # the same legend above the heatmap
    vis.scaling = "frame"
    np.testing.assert_allclose(
        vis.scene.colors, fit_scale(values, "frame").colors(values[10], 10), atol=1e-6
    )
    assert "frame scale" in vis.legend.label
    assert vis.timeline.heatmap.values.max() == pytest.approx(1.0)  # each frame over its top
    vis.scaling = "dataset"  # computed in the background over every sample, then drawn
    assert vis._jobs.wait("scale", 120)
    tops = np.concatenate([vis.analysis.joint_map(i, vis.target).ravel() for i in range(8)])
    assert vis.shown.scale.top == pytest.approx(np.percentile(tops, 95), rel=1e-6)
    assert "dataset scale" in vis.legend.label


def test_left_and_right_bones_differ_and_joints_are_named_on_hover(vis, dataset):
    from skvis_widgets.colors import SIDE_COLORS

    scene = vis.scene
    names = MSR_ACTION3D.joint_names
    main = scene._main
    # bones on the left are blue, on the right green, in the centre grey
    bones = MSR_ACTION3D.bones
    for side, joint in (("left", "elbow_left"), ("right", "elbow_right"), ("centre", "head")):
        j = names.index(joint)
        b = next(k for k, bone in enumerate(bones) if bone[1] == j)
        np.testing.assert_allclose(scene.bone_colors[b], SIDE_COLORS[side], atol=1e-6)
    # the bones are thick lines joining the joints drawn now
    np.testing.assert_array_equal(
        main.bone_lines.geometry.positions, scene.positions[np.asarray(bones)]
    )
    assert main.bone_lines.material.linewidth >= 4  # pixels
    # one interleaved buffer: the joints' rows are what `positions` and `colors` say
    np.testing.assert_array_equal(scene.buffer[:, :3], scene.positions)
    np.testing.assert_array_equal(scene.buffer[:, 3:], scene.colors)
    assert main.joints.geometry.attributes["position"].data is main.buffer
    # the browser's picker reports a joint: its name (the heatmap's) and value show
    j = names.index("hand_right")
    scene.picker.set_state({"index": j})
    assert "object" not in scene.picker.keys  # not echoed back (pythreejs cannot apply it)
    assert scene.hovered == "hand right" == MSR_ACTION3D.pretty(j)
    value = vis.shown.values[vis.frame, j]
    assert "hand right" in scene.label.value and f"{value:.3g}" in scene.label.value
    # another frame: the label gives the hovered joint's value at that frame, never a stale one
    other = (vis.frame + 5) % len(vis.shown.values)
    vis.frame = other
    value = vis.shown.values[other, j]
    assert f"{value:.3g}" in scene.label.value and f"at frame {other}" in scene.label.value
    # another target: what was hovered is forgotten (the map under the mouse changed)
    vis.target = (vis.target + 1) % dataset.num_classes
    assert scene.hovered == "" and "hand right" not in scene.label.value
    scene.picker.set_state({"index": j})
    scene.picker.set_state({"index": None})
    assert scene.hovered == ""


def test_run_callbacks_can_be_removed_and_panels_added(vis):
    calls = []

    def count():
        calls.append(1)

    vis.maximization.on_run(vis.run_maximization, remove=True)
    vis.maximization.on_run(count)
    vis.maximization.run_button.click()
    vis.maximization.on_run(count, remove=True)
    vis.maximization.run_button.click()
    assert calls == [1] and not vis.running and vis.result is None
    n = len(vis.more.children)  # the atlases of `vis.method_panels`
    assert vis.more.layout.display == ("none" if n == 0 else None)  # no empty accordion
    extra = W.HTML("atlas")
    vis.add_panel(extra, "another atlas")
    assert vis.more.children[n:] == (extra,) and vis.more.get_title(n) == "another atlas"
    assert vis.more.layout.display is None


def test_every_control_has_a_tooltip(vis):
    controls = [
        vis.samples.class_filter, vis.samples.sample_dropdown, vis.targets.class_dropdown,
        vis.targets.unit_dropdown, vis.views.method_dropdown, vis.scaling_dropdown,
        vis.maximization.iterations_slider, vis.maximization.constraints_box,
        vis.maximization.run_button, vis.maximization.cancel_button,
        vis.maximization.iteration_slider, *vis.maximization._jump.values(),
        vis.timeline.play, vis.timeline.slider, vis.timeline.fps_dropdown,
        vis.exporter.save_button, vis.exporter.html_button,
    ]  # fmt: skip
    missing = [c for c in controls if not c.tooltip]
    assert missing == []
    assert len(vis.views.toggle.tooltips) == 2


def test_the_first_screen_is_a_correct_sample_whose_map_beats_random(model, dataset):
    from skvis_widgets.widgets import SkeletonVis

    vis = SkeletonVis(model, dataset)
    probs = vis.analysis.all_probs()
    correct = [i for i in range(len(dataset)) if probs[i].argmax() == dataset.labels[i]]
    if correct:
        assert vis.sample in correct
        beats = [
            i
            for i in correct[:6]
            if vis.analysis.faithfulness(i, int(dataset.labels[i])).beats_random
        ]
        assert vis.sample == (beats[0] if beats else correct[0])
    else:
        assert vis.sample == 0
    vis.close()


def test_the_first_run_starts_while_the_solver_compiles(model, dataset, monkeypatch):
    # A fresh environment: the explorer starts the solver's compile in the background when
    # it opens (an Event stands for numba's seconds). Its first maximization must not wait
    # for it: the run's thread projects with SLSQP and never asks the compiled solver.
    from skvis_widgets.anatomy import projection, solver
    from skvis_widgets.widgets import SkeletonVis

    started, release = threading.Event(), threading.Event()

    def held_compile():
        started.set()
        if not release.wait(600):
            raise RuntimeError("the test never released the compile")

    state = BackgroundCompile(held_compile)
    monkeypatch.setattr(solver, "_STATE", state)
    # which threads projected with which solver (the explorer's other background jobs,
    # e.g. the verdict's stability check, project too)
    slsqp, compiled = set(), set()
    real_slsqp, real_compiled = projection.slsqp_frame, projection.solve_compiled

    def counted(calls, real):
        def call(*args, **kwargs):
            calls.add(threading.current_thread())
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(projection, "slsqp_frame", counted(slsqp, real_slsqp))
    monkeypatch.setattr(projection, "solve_compiled", counted(compiled, real_compiled))
    try:
        vis = SkeletonVis(model, dataset, sample=0)
        assert started.wait(600) and solver.compile_in_progress()
        assert state.thread is not None  # the explorer started it, in the background
        vis.select(view="maximization")
        vis.iterations = 2
        run = vis.run_maximization()
        assert run is not None
        assert vis.wait(120) and vis.error.message == "", vis.error.message
        assert len(vis.result.history) >= 2 and not state.ready.is_set()  # done, compile held
        assert run in slsqp and run not in compiled
    finally:
        release.set()
    state.thread.join(timeout=600)
    assert state.ready.is_set() and not solver.compile_in_progress()
    vis.close()
