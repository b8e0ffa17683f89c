"""class_atlas and unit_atlas against loops written here."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from skvis_widgets import MSR_ACTION3D, SkvisError
from skvis_widgets.atlas import class_atlas, time_bins, unit_atlas
from skvis_widgets.data.dataset import SkeletonDataset
from skvis_widgets.methods import explain
from skvis_widgets.metrics import randomized_model
from skvis_widgets.model import SkeletonLSTM
from skvis_widgets.saliency import unit_sensitivity
from skvis_widgets.skeleton import BODY_PARTS


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    seqs = [
        rng.normal(0, 0.3, (int(rng.integers(5, 14)), 20, 3)).astype(np.float32) for _ in range(9)
    ]
    labels = [0, 1, 2, 0, 1, 2, 0, 1, 0]
    ds = SkeletonDataset.from_arrays(
        seqs, labels, MSR_ACTION3D, ("a", "b", "c", "d"), normalize=False, name="small"
    )
    torch.manual_seed(0)
    model = SkeletonLSTM(20, 4, 8).eval()
    return model, ds


def bin_loop(m, k):
    """Mass of a (L, J) map in each of k equal stretches, frame t covering [t/L, (t+1)/L)."""
    n = len(m)
    out = np.zeros((k, m.shape[1]))
    for b in range(k):
        for t in range(n):
            lo, hi = max(b / k, t / n), min((b + 1) / k, (t + 1) / n)
            if hi > lo:
                out[b] += m[t] * (hi - lo) * n
    return out


def test_time_bins_average_equal_stretches():
    np.testing.assert_allclose(time_bins(4, 4), np.eye(4))
    np.testing.assert_allclose(time_bins(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(time_bins(1, 3), np.ones((3, 1)))
    w = time_bins(7, 3)
    np.testing.assert_allclose(w.sum(1), 1)
    np.testing.assert_allclose(w[0], [3 / 7, 3 / 7, 1 / 7, 0, 0, 0, 0])
    with pytest.raises(SkvisError, match="bins"):
        time_bins(5, 0)


@pytest.mark.parametrize("method", ["paper", "gradient"])
def test_class_atlas_equals_a_loop(small, method):
    model, ds = small
    atlas = class_atlas(model, ds, method=method, bins=6, batch_size=4, progress=False)
    parts = [p for p in BODY_PARTS if list(MSR_ACTION3D.part_indices(p))]
    assert atlas.part_names == tuple(parts)
    for key, m in (("maps", model), ("random_maps", randomized_model(model, seed=0))):
        want = np.zeros((4, 6, 20))
        for s, c in zip(ds.sequences, ds.labels, strict=True):
            e = np.abs(explain(m, s, target=int(c), method=method)).astype(np.float64)
            want[c] += bin_loop(e / e.sum(), 6)
        counts = np.bincount(ds.labels, minlength=4)
        np.testing.assert_array_equal(atlas.counts, counts)
        with np.errstate(invalid="ignore"):
            want /= counts[:, None, None]
        np.testing.assert_allclose(getattr(atlas, key)[:3], want[:3], rtol=1e-5, atol=1e-9)
        assert np.isnan(getattr(atlas, key)[3]).all()  # class "d" has no sequence
    np.testing.assert_allclose(atlas.maps[:3].sum((1, 2)), 1, rtol=1e-6)
    for k, p in enumerate(parts):
        idx = list(MSR_ACTION3D.part_indices(p))
        np.testing.assert_allclose(atlas.part_time[..., k], atlas.maps[..., idx].sum(-1))
    np.testing.assert_allclose(atlas.part_shares, atlas.part_time.sum(1))
    assert not np.allclose(atlas.maps[:3], atlas.random_maps[:3])
    assert atlas.leading_parts()[0] in parts
    with pytest.raises(ValueError):
        atlas.maps[0, 0, 0] = 1


def test_class_atlas_cancel_and_validation(small):
    model, ds = small
    ev = threading.Event()
    ev.set()
    atlas = class_atlas(model, ds, method="gradient", cancel=ev, progress=False)
    assert atlas.cancelled and (atlas.counts == 0).all()
    with pytest.raises(SkvisError, match="cancel"):
        class_atlas(model, ds, cancel=True, progress=False)
    with pytest.raises(SkvisError, match="method"):
        class_atlas(model, ds, method="nope", progress=False)
    with pytest.raises(SkvisError, match=".sequences"):
        class_atlas(model, [1, 2], progress=False)


def test_unit_atlas_equals_a_loop(small):
    model, ds = small
    atlas = unit_atlas(model, ds, tuning_samples=None, batch_size=3)
    h_mean, h_abs, peak = [], [], []
    for s in ds.sequences:
        with torch.no_grad():
            h = model.hidden_states(torch.tensor(s)[None])[0].double().numpy()  # (L, H)
        h_mean.append(h.mean(0))
        h_abs.append(np.abs(h).mean(0))
        peak.append(np.abs(h).argmax(0) / (len(s) - 1))
    lab = np.asarray(ds.labels)
    for c in range(3):
        sel = lab == c
        np.testing.assert_allclose(
            atlas.activation[:, c], np.mean(np.array(h_mean)[sel], 0), atol=1e-6
        )
        np.testing.assert_allclose(
            atlas.magnitude[:, c], np.mean(np.array(h_abs)[sel], 0), atol=1e-6
        )
        np.testing.assert_allclose(
            atlas.peak_time[:, c], np.mean(np.array(peak)[sel], 0), atol=1e-9
        )
    assert np.isnan(atlas.activation[:, 3]).all()
    for u in range(8):
        m = atlas.magnitude[u, :3]
        best = m.max()
        rest = (m.sum() - best) / 2
        assert atlas.selectivity[u] == pytest.approx((best - rest) / (best + rest), rel=1e-9)
        assert atlas.preferred_class[u] == int(np.argmax(m))
    parts = atlas.part_names
    want = np.zeros((8, len(parts)))
    for s in ds.sequences:
        per_joint = unit_sensitivity(model, s).sum(axis=(1, 3), dtype=np.float64)  # (H, J)
        for k, p in enumerate(parts):
            want[:, k] += per_joint[:, list(MSR_ACTION3D.part_indices(p))].sum(1)
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(atlas.part_tuning, want, rtol=1e-4)


def test_unit_atlas_orders(small):
    model, ds = small
    atlas = unit_atlas(model, ds, tuning_samples=4)
    assert len(atlas.tuning_indices) == 4
    order = atlas.order("selectivity")
    assert (np.diff(atlas.selectivity[order]) <= 0).all()
    order = atlas.order("preferred_class")
    assert (np.diff(atlas.preferred_class[order]) >= 0).all()
    part = atlas.part_names[1]
    assert (np.diff(atlas.part_tuning[atlas.order(part), 1]) <= 0).all()
    assert sorted(atlas.order("peak_time")) == list(range(8))
    with pytest.raises(SkvisError, match="order by"):
        atlas.order("size")


# ---------------------------------------------------------------------------------------------
# Widgets (Python side: traits and the click handler)
# ---------------------------------------------------------------------------------------------
def _row(method, **kw):
    from skvis_widgets.methods import METHODS
    from skvis_widgets.metrics import CompareRow

    base = dict(
        deletion_auc=0.4, deletion_random_auc=0.7, deletion_beats=0.9, insertion_auc=0.7,
        insertion_random_auc=0.7, insertion_beats=0.5, rho_full=0.2, planted_top1=1.0,
        stability_change=0.1, stability_ris=0.5, seconds=1.0,
    )  # fmt: skip
    base.update(kw)
    label = METHODS[method].label if method in METHODS else f"control: {method}"
    return CompareRow(method=method, label=label, **base)


@pytest.fixture()
def table():
    from skvis_widgets.metrics import CompareTable

    rows = (
        _row("paper", rho_full=0.91, deletion_beats=0.83, planted_top1=0.2),
        _row("gradient"),
        _row("motion", rho_full=1.0, deletion_beats=0.81, planted_top1=0.0),
        _row("random", rho_full=1.0, deletion_beats=0.5, planted_top1=0.0),
    )
    return CompareTable(rows=rows, settings=())


def test_method_selector_shows_the_verdict_of_the_chosen_method(table):
    from skvis_widgets.widgets.atlas import MethodSelector

    sel = MethodSelector()
    assert sel.value == "paper" and "paper" in sel._dropdown.label
    assert sel.verdict.startswith("the paper's class map")  # no table yet: the description
    sel.table = table
    assert "ranks joints mostly by their motion" in sel.verdict
    sel._dropdown.value = "gradient"  # as a user would
    assert sel.value == "gradient" and "passes the randomization check" in sel.verdict
    sel._paper.click()
    assert sel.value == "paper" and sel._dropdown.value == "paper"
    sel.value = "smoothgrad"
    assert "not in the verdict table" in sel.verdict
    sel.recurrent = False
    assert "paper" not in [v for _, v in sel._dropdown.options] and sel._paper.disabled
    with pytest.raises(Exception, match="needs a recurrent model"):
        sel.value = "paper"


def test_unit_heatmap_click_selects_a_unit_and_calls_back(small):
    from skvis_widgets.widgets.atlas import UnitHeatmap

    model, ds = small
    atlas = unit_atlas(model, ds, tuning_samples=3)
    hm = UnitHeatmap(atlas)
    order = atlas.order("selectivity")
    assert hm.mark.row.tolist() == [str(u) for u in order]
    assert hm.mark.color.shape == (8, 4)
    got = []
    hm.on_select(got.append)
    hm._on_click(hm.mark, {"data": {"rowNum": 2, "columnNum": 1}})
    assert hm.unit == int(order[2]) and got == [int(order[2])]
    assert f"unit {order[2]}" in hm._label.value
    hm.on_select(got.append, remove=True)
    hm._on_click(hm.mark, {"data": {"rowNum": 0, "columnNum": 0}})
    assert hm.unit == int(order[0]) and len(got) == 1
    hm._sort.value = "unit"  # re-sorting re-labels the rows; a click follows the new order
    assert hm.order_by == "unit" and hm.mark.row.tolist() == [str(u) for u in range(8)]
    hm._on_click(hm.mark, {"data": {"rowNum": 5}})
    assert hm.unit == 5
    hm.values = "activation"
    np.testing.assert_allclose(hm.mark.color, np.nan_to_num(atlas.activation))
    hm._on_click(hm.mark, {"data": {}})  # not a cell: nothing happens
    assert hm.unit == 5


def test_class_atlas_grid_draws_a_png(small):
    from skvis_widgets.widgets.atlas import ClassAtlasGrid, render_class_atlas

    model, ds = small
    atlas = class_atlas(model, ds, method="gradient", bins=5, progress=False)
    grid = ClassAtlasGrid()
    assert grid.image.value == b""
    grid.atlas = atlas
    png = grid.image.value
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and "9 sequences" in grid._caption.value
    grid.show_random = False
    assert grid.image.value != png
    one = render_class_atlas(atlas, classes=[1])
    import io

    from PIL import Image

    w_all, h_all = Image.open(io.BytesIO(png)).size
    w_one, h_one = Image.open(io.BytesIO(one)).size
    assert h_one < h_all and w_one == w_all  # one row instead of three
    px = np.asarray(Image.open(io.BytesIO(one)).convert("RGB"))
    red = (px[..., 0] > 150) & (px[..., 1] < 100) & (px[..., 2] < 100)
    assert red.sum() > 50  # the trained model's curves are drawn
    with pytest.raises(SkvisError, match="no class"):
        render_class_atlas(atlas, classes=[])
