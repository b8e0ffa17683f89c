"""Bring your own data (issue 17): the model carries its skeleton, topologies of one's
own, joint orders, the (N, C, T, V, M) layout, cleaning, metadata splits, training
options and maximization that explains itself. Synthetic data built here (tests/_byod.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skvis_widgets import KINECT_V1, MSR_ACTION3D, SkvisError, Topology, skeleton
from skvis_widgets.data import SkeletonDataset
from skvis_widgets.model import SkeletonLSTM, accuracy, load_model, save_model
from skvis_widgets.optimize import maximize_activation
from skvis_widgets.skeleton import (
    OPENNI_15,
    TOPOLOGIES,
    get_topology,
    model_topology,
    register_topology,
    reorder,
)
from skvis_widgets.train import train_model

# -- a standing body that waves, written once by joint name, in any topology's order --

_POSE = {
    "spine_base": (0.0, 1.00, 0.0),
    "spine_mid": (0.0, 1.25, 0.0),
    "spine_shoulder": (0.0, 1.45, 0.0),
    "neck": (0.0, 1.50, 0.0),
    "head": (0.0, 1.65, 0.0),
}
for _sign, _side in ((-1, "left"), (1, "right")):
    _POSE.update(
        {
            f"shoulder_{_side}": (0.18 * _sign, 1.42, 0.0),
            f"elbow_{_side}": (0.25 * _sign, 1.15, 0.0),
            f"wrist_{_side}": (0.28 * _sign, 0.92, 0.0),
            f"hand_{_side}": (0.29 * _sign, 0.85, 0.0),
            f"hand_tip_{_side}": (0.30 * _sign, 0.78, 0.0),
            f"thumb_{_side}": (0.27 * _sign, 0.82, 0.03),
            f"hip_{_side}": (0.10 * _sign, 0.95, 0.0),
            f"knee_{_side}": (0.10 * _sign, 0.50, 0.02),
            f"ankle_{_side}": (0.10 * _sign, 0.08, 0.0),
            f"foot_{_side}": (0.10 * _sign, 0.03, 0.08),
        }
    )


def wave(topology, frames=12, label=0, phase=0.0, camera=(0.2, 0.0, 3.0)):
    """``(frames, J, 3)`` camera coordinates, metres: class 0 waves the right hand up,
    class 1 the left hand; ``camera`` offsets the body from the camera."""
    topo = get_topology(topology)
    t = np.linspace(0, 1, frames)[:, None]
    out = np.zeros((frames, topo.num_joints, 3), np.float64)
    side = "right" if label == 0 else "left"
    for j, name in enumerate(topo.joint_names):
        p = np.array(_POSE[name], np.float64) + np.asarray(camera)
        out[:, j] = p
        if name in (f"wrist_{side}", f"hand_{side}", f"hand_tip_{side}", f"thumb_{side}"):
            out[:, j, 1] += 0.5 * np.sin(np.pi * t[:, 0] + phase)
    return out.astype(np.float32)


def dataset_arrays(topology, n=8, frames=12):
    """``n`` sequences alternating two classes, with labels."""
    seqs = [wave(topology, frames, i % 2, phase=0.1 * i) for i in range(n)]
    return seqs, np.arange(n) % 2


@pytest.fixture
def tiny(make_model):
    """``tiny(topology, classes=2, record=True)``: a small untrained model; ``record``:
    with its topology in the metadata."""

    def make(topology, classes=2, record=True):
        topo = get_topology(topology)
        return make_model(
            topo.num_joints, classes, 8, topology=topo if record else None, train=True
        )

    return make


def data(topology, n=6, frames=10):
    seqs, labels = dataset_arrays(topology, n, frames)
    return SkeletonDataset.from_arrays(seqs, labels, topology, ["right", "left"])


# -- 1. the model carries its skeleton ----------------------------------------------------
def test_train_model_records_topology_and_maximization_needs_no_topology(tmp_path, tiny):
    ds = data("kinect_v1")
    model = tiny("kinect_v1", record=False)
    train_model(model, ds, epochs=1, progress=False)
    assert model.metadata["topology"] == "kinect_v1"
    assert model.metadata["joint_names"] == list(KINECT_V1.joint_names)
    assert model.metadata["class_names"] == ["right", "left"]
    back = load_model(save_model(model, tmp_path / "m.pt"))
    assert model_topology(back) is KINECT_V1
    # kinect_v1 and msr_action3d both have 20 joints: without the metadata this raised
    # "cannot tell the topology"
    r = maximize_activation(back, ds.sequences[0], target=0, iterations=1, progress=False)
    assert r.constraint_set.topology is KINECT_V1


def test_disagreeing_topology_raises_naming_both(tiny):
    model = tiny("kinect_v1")
    msr = data("msr_action3d", n=2)
    seq = msr.sequences[0]
    with pytest.raises(SkvisError, match=r"'kinect_v1'.*'msr_action3d'.*another order.*reorder"):
        maximize_activation(model, seq, target=0, topology="msr_action3d", progress=False)
    with pytest.raises(SkvisError, match=r"'kinect_v1'.*training data.*'msr_action3d'"):
        train_model(model, msr, epochs=1, progress=False)
    with pytest.raises(SkvisError, match=r"'kinect_v1'.*dataset.*'msr_action3d'"):
        accuracy(model, msr)
    from skvis_widgets.metrics import randomization_test

    with pytest.raises(SkvisError, match=r"'kinect_v1'.*dataset.*'msr_action3d'"):
        randomization_test(model, msr, samples=1)
    with pytest.raises(SkvisError, match="topology 'kinect_v2' has 25 joints"):
        SkeletonLSTM(20, 2, topology="kinect_v2")


def test_explorer_refuses_a_dataset_of_another_joint_order(tiny):
    pytest.importorskip("ipywidgets")
    from skvis_widgets.widgets import SkeletonVis

    model = tiny("msr_action3d")
    with pytest.raises(SkvisError, match=r"'msr_action3d'.*'kinect_v1'"):
        SkeletonVis(model, data("kinect_v1", n=2))


def test_custom_topology_in_a_checkpoint_is_rebuilt(tmp_path, tiny):
    topo = Topology("three_joints_ckpt", ("spine_base", "spine_mid", "head"), ((0, 1), (1, 2)))
    model = tiny(topo)
    back = load_model(save_model(model, tmp_path / "m.pt"))
    got = model_topology(back)
    assert got.joint_names == topo.joint_names and got.bones == topo.bones
    back.metadata["joint_names"] = ["head", "spine_mid", "spine_base"]
    back.metadata["topology"] = "kinect_v1"
    with pytest.raises(SkvisError, match="joint_names .* disagree with topology 'kinect_v1'"):
        model_topology(back)


# -- 2. topologies ------------------------------------------------------------------------
def test_register_topology_makes_a_name_usable_everywhere(request, tiny):
    topo = Topology(
        "my_five",
        ("spine_base", "spine_mid", "head", "hip_left", "hip_right"),
        ((0, 1), (1, 2), (0, 3), (0, 4)),
    )
    with pytest.raises(SkvisError, match="unknown topology 'my_five'.*register_topology"):
        get_topology("my_five")
    assert register_topology(topo) is topo
    request.addfinalizer(lambda: skeleton._REGISTRY.pop("my_five", None))
    assert get_topology("my_five") is topo and "my_five" in TOPOLOGIES
    assert register_topology(topo) is topo  # again: harmless
    other = Topology("my_five", ("spine_base", "head"), ((0, 1),))
    with pytest.raises(SkvisError, match="another topology is registered as 'my_five'"):
        register_topology(other)
    with pytest.raises(SkvisError, match="built-in"):
        register_topology(Topology("kinect_v1", ("spine_base", "head"), ((0, 1),)))
    assert get_topology("kinect_v1") is KINECT_V1
    # usable by name: a dataset, a model's metadata and its check
    seqs = [np.random.default_rng(0).normal(0, 0.1, (4, 5, 3)) for _ in range(2)]
    ds = SkeletonDataset.from_arrays(seqs, [0, 1], "my_five", ["a", "b"], normalize=False)
    model = tiny("my_five")
    assert ds.topology is topo and model_topology(model) is topo
    accuracy(model, ds)


def test_openni_15_topology_normalizes_and_constrains(tiny):
    assert OPENNI_15.num_joints == 15 and get_topology("openni") is OPENNI_15
    seq = wave(OPENNI_15, 6)
    ds = SkeletonDataset.from_arrays([seq], [0], "openni_15", ["a"])
    out = ds.sequences[0]
    # fallbacks: origin at the hips' midpoint (no spine base), up from the feet (no ankles)
    hips = (out[0, OPENNI_15.index("hip_left")] + out[0, OPENNI_15.index("hip_right")]) / 2
    np.testing.assert_allclose(hips, 0, atol=1e-5)
    head = out[0, OPENNI_15.index("head")]
    feet = (out[0, OPENNI_15.index("foot_left")] + out[0, OPENNI_15.index("foot_right")]) / 2
    up = (head - feet) / np.linalg.norm(head - feet)
    np.testing.assert_allclose(up, [0, 1, 0], atol=1e-5)
    assert out[0, OPENNI_15.index("hip_right"), 0] > 0  # x from left to right
    model = tiny(OPENNI_15)
    r = maximize_activation(model, out, target=0, iterations=1, progress=False)
    cs = r.constraint_set
    assert len(cs.of_kind("bone")) == 14
    dropped = dict(cs.dropped)
    assert "angle:spine" in dropped and "spine_base" in dropped["angle:spine"]


def test_normalization_names_the_step_that_needs_a_joint():
    from skvis_widgets.data import normalize_sequence

    topo = Topology("arm_only", ("shoulder_left", "elbow_left", "hand_left"), ((0, 1), (1, 2)))
    with pytest.raises(SkvisError, match=r"normali[sz]ation.*origin.*needs.*spine_base"):
        normalize_sequence(np.random.default_rng(0).normal(size=(3, 3, 3)), topo)


# -- 3. joint orders and the (N, C, T, V, M) layout ----------------------------------------
def test_reorder_by_joint_names():
    v1 = wave(KINECT_V1, 5)
    msr = reorder(v1, KINECT_V1, "msr_action3d")
    for j, name in enumerate(MSR_ACTION3D.joint_names):
        np.testing.assert_array_equal(msr[:, j], v1[:, KINECT_V1.index(name)])
    np.testing.assert_array_equal(reorder(msr, "msr_action3d", "kinect_v1"), v1)
    assert [a.shape for a in reorder([v1, v1[:2]], "kinect_v1", "msr")] == [(5, 20, 3), (2, 20, 3)]
    with pytest.raises(SkvisError, match=r"'kinect_v1' has no neck.*'openni_15' has no spine_base"):
        reorder(v1, "kinect_v1", "openni_15")
    with pytest.raises(SkvisError, match="shape \\(5, 25, 3\\).*20 joints of 'kinect_v1'"):
        reorder(np.zeros((5, 25, 3)), "kinect_v1", "msr_action3d")
    v2 = reorder(wave("kinect_v2", 3), "kinect_v2", "kinect_v1", drop=True)
    assert v2.shape == (3, 20, 3)


def test_data_in_another_joint_order_is_flagged():
    seqs, labels = dataset_arrays("msr_action3d", n=4, frames=5)  # MSR order ...
    with pytest.warns(UserWarning, match="head is below the body centre in 4 of 4.*reorder"):
        SkeletonDataset.from_arrays(seqs, labels, "kinect_v1", ["r", "l"])  # ... said to be v1
    with pytest.raises(SkvisError, match="another order than 'kinect_v1'"):
        SkeletonDataset.from_arrays(seqs, labels, "kinect_v1", ["r", "l"], clean="refuse")
    fixed = reorder(seqs, "msr_action3d", "kinect_v1")
    ds = SkeletonDataset.from_arrays(fixed, labels, "kinect_v1", ["r", "l"], clean="refuse")
    assert all(s[0, KINECT_V1.index("head"), 1] > 0.5 for s in ds.sequences)


def test_from_nctvm_selects_the_main_body():
    seqs, labels = dataset_arrays("kinect_v1", n=3, frames=8)
    n, t, v = 3, 10, 20
    arr = np.zeros((n, 3, t, v, 2), np.float32)  # zero padding past each length
    for i, s in enumerate(seqs):
        arr[i, :, : len(s), :, 1] = s.transpose(2, 0, 1)  # the actor in the second slot
        still = wave("kinect_v1", len(s), camera=(1.5, 0.0, 3.0))[:1].repeat(len(s), 0)
        arr[i, :, : len(s), :, 0] = still.transpose(2, 0, 1)  # a bystander who stands still
    ds = SkeletonDataset.from_nctvm(arr, labels, "kinect_v1", ["right", "left"])
    ref = SkeletonDataset.from_arrays(seqs, labels, "kinect_v1", ["right", "left"])
    assert len(ds) == 3 and ds.lengths.tolist() == [8, 8, 8]
    for a, b in zip(ds.sequences, ref.sequences, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(SkvisError, match=r"\(N, C, T, V, M\).*\(3, 10, 20, 2\)"):
        SkeletonDataset.from_nctvm(arr[0], labels, "kinect_v1", ["right", "left"])
    with pytest.raises(SkvisError, match="V=20.*'kinect_v2' has 25"):
        SkeletonDataset.from_nctvm(arr, labels, "kinect_v2", ["right", "left"])


# -- 4. cleaning with a report ----------------------------------------------------------
def test_lost_joints_are_interpolated_and_lost_frames_dropped_with_a_report():
    seqs, labels = dataset_arrays("kinect_v1", n=3, frames=10)
    raw = [s.copy() for s in seqs]
    elbow = KINECT_V1.index("elbow_right")
    raw[0][4, elbow] = 0.0  # lost tracking written as zeros
    raw[0][7] = 0.0  # a whole frame lost
    raw[1][2, 3] = np.nan
    with pytest.warns(
        UserWarning, match=r"(?s)2 of 3 sequences.*sequence 0: 1 of 10 frames dropped"
    ):
        ds = SkeletonDataset.from_arrays(raw, labels, "kinect_v1", ["right", "left"])
    rep = ds.cleaning
    assert rep.frames_dropped.tolist() == [1, 0, 0] and rep.joints_filled.tolist() == [1, 1, 0]
    assert ds.lengths.tolist() == [9, 10, 10]
    # the filled joint is the mean of its neighbours (linear interpolation), in body frame
    expect = (seqs[0][3, elbow] + seqs[0][5, elbow]) / 2
    np.testing.assert_allclose(
        ds.frames[0].invert(ds.sequences[0][4:5, elbow]), [expect], atol=1e-5
    )
    # no joint ends up metres away from the body (the zeros were 3 m off on main)
    assert np.abs(ds.sequences[0]).max() < 2.0
    with pytest.raises(SkvisError, match="sequence 0: lost tracking .* frame 4, joint"):
        SkeletonDataset.from_arrays(raw, labels, "kinect_v1", ["right", "left"], clean="refuse")
    with pytest.warns(UserWarning):
        dropped = SkeletonDataset.from_arrays(raw, labels, "kinect_v1", ["r", "l"], clean="drop")
    assert dropped.lengths.tolist() == [8, 9, 10]
    with pytest.warns(UserWarning):
        filled = SkeletonDataset.from_arrays(
            raw, labels, "kinect_v1", ["r", "l"], clean="interpolate"
        )
    assert filled.lengths.tolist() == [10, 10, 10] and filled.cleaning.joints_filled[0] == 21


def test_fill_gaps_matches_numpy_interp_and_refuses_a_joint_never_seen():
    from skvis_widgets.data import fill_gaps

    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 4, 3)).astype(np.float32)
    lost = np.zeros((8, 4), bool)
    lost[[0, 3, 4, 7], 2] = True
    y = x.copy()
    y[lost] = np.nan
    out = fill_gaps(y)
    ok = ~lost[:, 2]
    for c in range(3):
        expect = np.interp(np.arange(8), np.flatnonzero(ok), x[ok, 2, c])
        np.testing.assert_allclose(out[:, 2, c], expect, rtol=1e-6)
    np.testing.assert_array_equal(out[:, [0, 1, 3]], x[:, [0, 1, 3]])
    y[:, 1] = 0.0
    with pytest.raises(SkvisError, match="joint 1 is lost in all 8 frames"):
        fill_gaps(y)


def test_millimetres_are_detected_and_constant_sequences_reported():
    seqs, labels = dataset_arrays("kinect_v1", n=2, frames=6)
    ref = SkeletonDataset.from_arrays(seqs, labels, "kinect_v1", ["right", "left"])
    with pytest.warns(UserWarning, match="converted from mm"):
        mm = SkeletonDataset.from_arrays([1000 * s for s in seqs], labels, "kinect_v1", ["r", "l"])
    assert [r.units for r in mm.cleaning.sequences] == ["mm", "mm"]
    np.testing.assert_allclose(mm.sequences[1], ref.sequences[1], atol=1e-4)
    with pytest.raises(SkvisError, match=r"units='m' the body spans 1.6\d*e\+03 m"):
        SkeletonDataset.from_arrays(
            [1000 * s for s in seqs], labels, "kinect_v1", ["r", "l"], units="m"
        )
    np.testing.assert_allclose(
        SkeletonDataset.from_arrays(
            [1000 * s for s in seqs], labels, "kinect_v1", ["r", "l"], units="mm"
        ).sequences[0],
        ref.sequences[0],
        atol=1e-4,
    )
    frozen = [seqs[0], np.repeat(seqs[1][:1], 6, axis=0)]
    with pytest.warns(UserWarning, match="sequence 1: constant"):
        ds = SkeletonDataset.from_arrays(frozen, labels, "kinect_v1", ["r", "l"])
    assert len(ds) == 2 and ds.cleaning.sequences[1].constant
    with pytest.warns(UserWarning):
        ds = SkeletonDataset.from_arrays(frozen, labels, "kinect_v1", ["r", "l"], clean="drop")
    assert len(ds) == 1 and ds.labels.tolist() == [0] and ds.cleaning.dropped == (1,)
    with pytest.raises(SkvisError, match="sequence 1: constant"):
        SkeletonDataset.from_arrays(frozen, labels, "kinect_v1", ["r", "l"], clean="refuse")


def test_string_labels_are_mapped_to_class_names():
    seqs, _ = dataset_arrays("kinect_v1", n=3, frames=5)
    ds = SkeletonDataset.from_arrays(seqs, ["wave", "kick", "wave"], "kinect_v1", ["kick", "wave"])
    assert ds.labels.tolist() == [1, 0, 1]
    ds = SkeletonDataset.from_arrays(seqs, ["wave", "kick", "wave"], "kinect_v1")
    assert ds.class_names == ("kick", "wave") and ds.labels.tolist() == [1, 0, 1]
    with pytest.raises(SkvisError, match="'jump' is neither .*'kick', 'wave'"):
        SkeletonDataset.from_arrays(seqs, ["wave", "jump", "wave"], "kinect_v1", ["kick", "wave"])


# -- 5. metadata columns, splits, training options ----------------------------------------
def test_metadata_columns_and_split_by():
    seqs, labels = dataset_arrays("kinect_v1", n=6, frames=5)
    ds = SkeletonDataset.from_arrays(
        seqs,
        labels,
        "kinect_v1",
        ["r", "l"],
        subjects=[1, 2, 3, 1, 2, 3],
        metadata={"view": [1, 2, 3, 1, 2, 3], "file": [f"f{i}" for i in range(6)]},
    )
    train, test = ds.split_by("view", train=[2, 3])
    assert train.metadata["view"].tolist() == [2, 3, 2, 3] and test.metadata["view"].tolist() == [
        1,
        1,
    ]
    assert test.ids == ("sample 0", "sample 3") and test.metadata["file"].tolist() == ["f0", "f3"]
    train, test = ds.split_by("subject", train=1, test=[3])
    assert train.subjects.tolist() == [1, 1] and test.subjects.tolist() == [3, 3]
    with pytest.raises(SkvisError, match=r"no sample has \[7\]"):
        ds.split_by("view", train=[7])
    with pytest.raises(SkvisError, match=r"\[2\] in both"):
        ds.split_by("view", train=[1, 2], test=[2])
    with pytest.raises(SkvisError, match="no column 'setup'.*view, file"):
        ds.split_by("setup", train=[1])
    with pytest.raises(SkvisError, match="column 'view' has shape \\(2,\\)"):
        SkeletonDataset.from_arrays(
            seqs, labels, "kinect_v1", ["r", "l"], metadata={"view": [1, 2]}
        )


def test_training_defaults_are_the_shipped_recipe_and_threads_are_set(tiny):
    import inspect

    from skvis_widgets.train import DEFAULTS

    params = inspect.signature(train_model).parameters
    for key in ("epochs", "batch_size", "lr", "label_smoothing", "average_last", "seed"):
        assert params[key].default == DEFAULTS[key], key
    assert params["threads"].default == 1
    ds = data("kinect_v1", n=4, frames=6)
    before = torch.get_num_threads()
    seen = []
    models = []
    for _ in range(2):
        model = tiny("kinect_v1")
        train_model(
            model,
            ds,
            epochs=2,
            progress=False,
            device="cpu",
            callback=lambda e, h: seen.append(torch.get_num_threads()),
        )
        models.append(model)
    assert seen == [1, 1, 1, 1] and torch.get_num_threads() == before
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # same seed, threads, build: same model
    with pytest.raises(SkvisError, match="threads"):
        train_model(tiny("kinect_v1"), ds, epochs=1, progress=False, threads=0)
    with pytest.raises(SkvisError, match="device='nowhere'"):
        train_model(tiny("kinect_v1"), ds, epochs=1, progress=False, device="nowhere")


# -- 6. maximization that explains itself ---------------------------------------------------
def test_maximization_says_why_no_step_beat_the_input(tiny):
    from skvis_widgets.anatomy import project, reference_bone_lengths
    from skvis_widgets.optimize import default_constraints

    model = tiny("kinect_v1", classes=6)
    rng = np.random.default_rng(0)
    x0 = wave("kinect_v1", 8) + rng.normal(0, 0.05, (8, 20, 3)).astype(np.float32)
    cset = default_constraints(x0, KINECT_V1)
    valid = project(x0, cset, reference_bone_lengths(x0, KINECT_V1)).astype(np.float32)
    with torch.no_grad():
        drop = (model(torch.from_numpy(x0[None])) - model(torch.from_numpy(valid[None])))[0]
    target = int(drop.argmax())
    assert float(drop[target]) > 1e-3  # projecting the input lowers this logit
    r = maximize_activation(
        model, x0, target=target, step_size=1e-7, max_halvings=0, iterations=3, progress=False
    )
    assert r.iterations_run == 0 and r.converged
    assert r.message.startswith("no step beat the input")
    assert f"lowers the score by {float(drop[target]):.3g}" in r.message
    free = maximize_activation(
        model, x0, target=target, iterations=2, constraints=False, progress=False
    )
    assert free.iterations_run >= 1 and "no step beat" not in free.message and free.message


def test_input_violation_rates_of_the_papers_constraints(tiny):
    model = tiny("kinect_v1")
    x0 = wave("kinect_v1", 10)
    for name in ("hip_left", "hip_right"):
        x0[:5, KINECT_V1.index(name), 1] -= 0.15  # hips far below the spine base
    r = maximize_activation(model, x0, target=0, iterations=1, progress=False)
    sb, hl, hr = (KINECT_V1.index(n) for n in ("spine_base", "hip_left", "hip_right"))
    u, w = x0[:, hl] - x0[:, sb], x0[:, hr] - x0[:, sb]
    cos = (u * w).sum(-1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(w, axis=-1)
    expect = float((np.degrees(np.arccos(cos)) < 100.0).mean())
    assert expect == 0.5
    assert r.input_violation["angle:hips"] == pytest.approx(expect)
    assert r.input_violation["angle:spine"] == 0.0
    # the default set widened the hip limit to what the input shows
    assert r.constraint_set["angle:hips"].limits[0] < 100.0


# -- 7. results that persist, data-set-wide runners -----------------------------------------
def test_save_and_load_results_without_pickle(tmp_path, tiny):
    from skvis_widgets.metrics import deletion_curve
    from skvis_widgets.results import load_results, save_results
    from skvis_widgets.saliency import joint_sensitivity

    model = tiny("kinect_v1")
    seq = data("kinect_v1", n=2).sequences[0]
    jmap = joint_sensitivity(model, seq, target=0)
    curve = deletion_curve(model, seq, jmap, target=0, steps=4)
    r = maximize_activation(model, seq, target=0, iterations=2, progress=False)
    path = save_results(tmp_path / "run", map=jmap, curve=curve, result=r, note="seed 0", k=[1, 2])
    assert path.suffix == ".npz"
    with np.load(path, allow_pickle=False) as z:  # plain arrays and one JSON string
        assert all(z[k].dtype != object for k in z.files)
    back = load_results(path)
    np.testing.assert_array_equal(back["map"], jmap)
    assert back["note"] == "seed 0" and back["k"] == [1, 2]
    np.testing.assert_array_equal(back["curve"].probabilities, curve.probabilities)
    assert back["curve"].auc == curve.auc and back["curve"].seeds == curve.seeds
    got = back["result"]
    np.testing.assert_array_equal(got.history, r.history)
    np.testing.assert_array_equal(got.scores, r.scores)
    assert got.message == r.message and dict(got.input_violation) == dict(r.input_violation)
    assert (
        got.constraint_set.topology is KINECT_V1
        and got.constraint_set.names == r.constraint_set.names
    )
    assert got.constraint_set.dropped == r.constraint_set.dropped
    with pytest.raises(SkvisError, match="object.*no pickle"):
        save_results(tmp_path / "bad", x=np.array([{}], dtype=object))
    with pytest.raises(SkvisError, match="model is a SkeletonLSTM"):
        save_results(tmp_path / "bad", model=model)
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(SkvisError, match="not a skvis_widgets results file"):
        load_results(tmp_path / "plain.npz")


def test_dataset_runners_progress_and_cancel(tiny):
    import threading

    from skvis_widgets.runners import body_part_summary, deletion_curves, maximize_dataset

    model = tiny("kinect_v1")
    ds = data("kinect_v1", n=4, frames=6)
    run = deletion_curves(model, ds, indices=[0, 3], steps=3, progress=False)
    assert run.indices.tolist() == [0, 3] and run.targets.tolist() == [0, 1] and len(run) == 2
    stop = threading.Event()
    calls = []

    def method(m, seq, target):
        calls.append(target)
        if len(calls) == 2:
            stop.set()
        from skvis_widgets.saliency import joint_sensitivity

        return joint_sensitivity(m, seq, target=target)

    run = deletion_curves(model, ds, steps=3, method=method, progress=False, cancel=stop)
    assert run.cancelled and len(run) == 2 and run.indices.tolist() == [0, 1]
    runs = maximize_dataset(model, ds, indices=[1], iterations=1, progress=False)
    assert runs.items[0].constraint_set.topology is KINECT_V1
    summary = body_part_summary(model, ds, 0, progress=False)
    assert summary.indices.tolist() == [0, 2]
    np.testing.assert_allclose(summary.shares.sum(1), 1.0, rtol=1e-9)
    # the motion control: only the waving right hand and wrist move, so the right arm leads
    assert summary.leading_part("motion") == "right_arm"
    np.testing.assert_allclose(summary.controls["random_weights"].sum(), 1.0, rtol=1e-9)
    assert set(summary.top_joints) == set(KINECT_V1.joint_names)
    with pytest.raises(SkvisError, match="'msr_action3d'.*'kinect_v1'"):
        maximize_dataset(tiny("msr_action3d"), ds, progress=False)
