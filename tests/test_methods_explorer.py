"""The explorer's method selector, its dataset-level verdict and the atlas panels (no
browser): driven through traits, maps checked against `explain` called in the test."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from skvis_widgets.methods import DEFAULT_METHOD, METHODS, explain
from skvis_widgets.model import SkeletonLSTM
from skvis_widgets.saliency import joint_sensitivity


@pytest.fixture(scope="module")
def dataset(msr_slice):
    """2 samples of each of the first 4 classes, cut to 30 frames."""
    return msr_slice(30)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SkeletonLSTM(20, 20, 12).eval()


class TemporalConv(nn.Module):
    """A small temporal-convolution classifier, (N, T, J, 3) -> (N, C): no recurrence."""

    def __init__(self, joints: int = 20, classes: int = 20) -> None:
        super().__init__()
        self.conv = nn.Conv1d(joints * 3, 16, 5, padding=2)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[:2]
        h = torch.relu(self.conv(x.reshape(n, t, -1).transpose(1, 2)))
        return self.head(h.mean(-1))


@pytest.fixture
def vis(model, dataset):
    from skvis_widgets.widgets import SkeletonVis

    v = SkeletonVis(model, dataset, sample=1, target=2)
    yield v
    v.close()


def test_the_explorer_opens_with_the_default_method_chosen_from_the_table(vis, model, dataset):
    assert DEFAULT_METHOD == "gradient" and vis.method == DEFAULT_METHOD
    sel = vis.method_panels.selector
    assert sel in vis.views.children and vis.views.method_dropdown not in vis.views.children
    assert sel.value == DEFAULT_METHOD
    expected = explain(model, dataset.sequences[1], target=2, method="gradient")
    np.testing.assert_allclose(vis.shown.values, expected, rtol=1e-5, atol=1e-8)
    # the paper's map is listed, labelled as the paper's
    labels = dict((v, k) for k, v in sel._dropdown.options)
    assert "the paper's" in labels["paper"] and not sel._paper.disabled


@pytest.mark.parametrize("method", ["paper", "integrated_gradients", "gradient_x_input"])
def test_the_selector_changes_the_map(vis, model, dataset, method):
    sel = vis.method_panels.selector
    before = vis.shown.values.copy()
    sel._dropdown.value = method  # as the user picks it
    assert vis.method == method and sel.value == method
    seq = dataset.sequences[1]
    if method == "paper":
        expected = joint_sensitivity(model, seq, target=2)
    else:
        expected = explain(model, seq, target=2, method=method)
    np.testing.assert_allclose(vis.shown.values, expected, rtol=1e-4, atol=1e-7)
    assert not np.allclose(vis.shown.values, before)
    # the legend calls only the paper's eq-3 maps "normalized"
    assert vis.shown.scale.units == ("normalized" if method.startswith("paper") else "")
    vis.method = "gradient"  # and back, from the explorer's side
    assert sel.value == "gradient" and sel._dropdown.value == "gradient"


def test_the_papers_map_is_one_click_away(vis):
    vis.method_panels.selector._paper.click()
    assert vis.method == "paper" and "eq 5" in vis.legend.label


def test_the_verdict_is_computed_in_the_background_and_cached(vis, model, dataset):
    from skvis_widgets.widgets.method_panel import verdict_table

    panels = vis.method_panels
    assert panels.selector.pending.startswith("checking gradient")
    assert panels.wait_verdict(300)
    line = panels.selector.verdict
    assert line.startswith("gradient: beats random deletion on ") and "randomization" in line
    table = panels.selector.table
    assert [r.method for r in table.rows] == ["gradient", "motion", "random"]
    assert verdict_table(model, dataset, "gradient")["gradient"] is table["gradient"]  # cached
    vis.method = "paper"  # a new method: pending until its row is computed
    assert panels.selector.table is None and "eq 5" in panels.selector.pending
    assert panels.wait_verdict(300)
    assert panels.selector.verdict.startswith("eq 5, instantaneous (the paper's): ")


def test_a_verdict_can_be_cancelled(model, dataset):
    from skvis_widgets.widgets.method_panel import verdict_table

    cancel = threading.Event()
    cancel.set()
    torch.manual_seed(1)
    fresh = SkeletonLSTM(20, 20, 12).eval()  # nothing cached for it
    assert verdict_table(fresh, dataset, "gradient", cancel=cancel) is None


def test_clicking_a_unit_in_the_unit_atlas_sets_the_target(vis, model, dataset):
    panels = vis.method_panels
    heat = panels.unit_heatmap
    index = [i for i, w in enumerate(vis.more.children) if w is heat][0]
    assert heat.atlas is None  # computed when its panel is opened
    vis.more.selected_index = index
    assert panels.wait_atlases(120) and heat.atlas is not None
    row = 3
    unit = int(heat.atlas.order(heat.order_by)[row])
    heat._on_click(heat.mark, {"data": {"rowNum": row}})  # bqplot's click message
    assert vis.unit == unit and vis.targets.unit_dropdown.value == unit
    expected = explain(model, dataset.sequences[1], unit=unit, method="gradient")
    np.testing.assert_allclose(vis.shown.values, expected, rtol=1e-5, atol=1e-8)


def test_the_class_atlas_follows_the_method(vis):
    panels = vis.method_panels
    index = [i for i, w in enumerate(vis.more.children) if w is panels.class_grid][0]
    vis.more.selected_index = index
    assert panels.wait_atlases(120)
    assert panels.class_grid.atlas.method == "gradient" and panels.class_grid.image.value
    vis.method = "gradient_x_input"
    assert panels.wait_atlases(120)
    assert panels.class_grid.atlas.method == "gradient_x_input"


def test_a_model_that_is_not_recurrent_opens_with_units_and_the_paper_disabled(dataset):
    from skvis_widgets.widgets import SkeletonVis

    torch.manual_seed(0)
    net = TemporalConv().eval()
    vis = SkeletonVis(net, dataset, sample=2)
    try:
        assert vis.method == DEFAULT_METHOD and not METHODS[vis.method].recurrent_only
        sel = vis.method_panels.selector
        assert vis.targets.unit_dropdown.disabled and sel._paper.disabled
        offered = [v for _, v in sel._dropdown.options]
        assert "paper" not in offered and "paper_through_time" not in offered
        assert vis.method_panels.unit_heatmap is None
        label = int(dataset.labels[2])
        expected = explain(net, dataset.sequences[2], target=label, method="gradient")
        np.testing.assert_allclose(vis.shown.values, expected, rtol=1e-5, atol=1e-8)
        vis.unit = 3  # refused, shown
        assert vis.unit is None and "recurrent" in vis.error.value
        vis.method = "paper"
        assert vis.method == "gradient" and "recurrent" in vis.error.value
        vis.method = "integrated_gradients"
        expected = explain(net, dataset.sequences[2], target=label, method="integrated_gradients")
        np.testing.assert_allclose(vis.shown.values, expected, rtol=1e-5, atol=1e-8)
        assert "recurrent model" in sel.verdict
    finally:
        vis.close()
