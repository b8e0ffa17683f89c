"""Anatomical constraints (paper section 3.2, eqs 8-14): sets, residuals, projection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skvis_widgets.anatomy import (
    ANGLE_CONSTRAINTS,
    anatomical_constraints,
    constraint_residuals,
    project,
    project_slsqp,
    reference_bone_lengths,
)
from skvis_widgets.data import read_ntu_skeleton
from skvis_widgets.errors import SkvisError
from skvis_widgets.skeleton import KINECT_V1, KINECT_V2, MSR_ACTION3D, Topology
from skvis_widgets.skeleton import rest_pose as skeleton_rest_pose

DATA = Path(__file__).parent / "data"
TOPOLOGIES = [KINECT_V2, KINECT_V1, MSR_ACTION3D]
ANGLES = tuple(ANGLE_CONSTRAINTS)  # angle:spine, :shoulders, :hips, :wrist_left, :wrist_right


def rest_pose(topo: Topology) -> np.ndarray:
    """The package's rest pose (`skvis_widgets.skeleton.rest_pose`) as ``(1, J, 3)``."""
    return skeleton_rest_pose(topo)[None]


def load_msr(name: str) -> np.ndarray:
    """A real MSR Action3D file (20 lines per frame, ``x y z confidence``) as (T, 20, 3)."""
    return np.loadtxt(DATA / "msr" / name)[:, :3].reshape(-1, 20, 3)


def load_ntu(name: str) -> np.ndarray:
    """The first body of a real NTU RGB+D ``.skeleton`` file as (T, 25, 3), float64."""
    return read_ntu_skeleton(DATA / "ntu" / name)[0].astype(np.float64)


def angle_columns(cs) -> list[int]:
    return [k for k, c in enumerate(cs) if c.kind != "bone"]


def objective(x: np.ndarray, x0: np.ndarray) -> np.ndarray:
    return ((x - x0) ** 2).sum(axis=(-2, -1))


def assert_valid(x: np.ndarray, cs, ref: np.ndarray) -> None:
    """Bone lengths to 1e-5 m and every angle in its range to 1e-3 deg."""
    assert np.isfinite(x).all()
    res = constraint_residuals(x, cs, ref)
    bones = [k for k, c in enumerate(cs) if c.kind == "bone"]
    assert res[:, bones].max() < 1e-5
    assert res[:, angle_columns(cs)].max() < 1e-3


# --------------------------------------------------------------------------- the sets


@pytest.mark.parametrize("topo", TOPOLOGIES, ids=lambda t: t.name)
def test_every_topology_gets_every_constraint(topo):
    cs = anatomical_constraints(topo)
    assert cs.topology is topo
    assert cs.dropped == ()  # all three have every joint these constraints name
    assert len(cs) == topo.num_bones + len(ANGLES) + 1
    assert cs.names[: topo.num_bones] == tuple(
        f"bone:{topo.joint_names[p]}-{topo.joint_names[c]}" for p, c in topo.bones
    )
    assert cs.names[topo.num_bones :] == (*ANGLES, "plane:pelvis")
    assert [c.kind for c in cs] == ["bone"] * topo.num_bones + ["angle"] * 5 + ["plane"]
    for con in cs:
        assert con.joints == tuple(topo.index(n) for n in con.joint_names)
    spine = cs["angle:spine"]
    assert spine.joint_names == ("spine_base", "spine_mid", "spine_shoulder")
    assert spine.limits == (160.0, 180.0)
    assert cs["angle:shoulders"].limits == (110.0, 180.0)
    assert cs["angle:hips"].limits == (100.0, 180.0)
    assert cs["angle:wrist_left"].joint_names == ("elbow_left", "wrist_left", "hand_left")
    assert cs["angle:wrist_right"].limits == (90.0, 180.0)
    plane = cs["plane:pelvis"]
    assert plane.joint_names == ("spine_base", "hip_right", "hip_left", "spine_mid")
    assert plane.limits == (0.0, 90.0)
    with pytest.raises(SkvisError, match="angle:elbow"):
        cs["angle:elbow"]


def test_missing_joints_and_non_bone_arms_are_dropped_with_the_reason():
    names = ["spine_base", "spine_mid", "spine_shoulder", "head"]
    names += ["shoulder_left", "elbow_left", "shoulder_right", "elbow_right"]
    names += ["hip_left", "hip_right"]
    idx = {n: i for i, n in enumerate(names)}
    bones = [("spine_base", "spine_mid"), ("spine_mid", "spine_shoulder")]
    bones += [("spine_shoulder", "head"), ("spine_shoulder", "shoulder_left")]
    bones += [("shoulder_left", "elbow_left"), ("spine_shoulder", "shoulder_right")]
    bones += [("shoulder_right", "elbow_right")]
    bones += [("spine_mid", "hip_left"), ("spine_mid", "hip_right")]  # hips on the spine mid
    topo = Topology("armless", tuple(names), tuple((idx[p], idx[c]) for p, c in bones))
    cs = anatomical_constraints(topo)
    dropped = dict(cs.dropped)
    assert set(dropped) == {"angle:wrist_left", "angle:wrist_right", "angle:hips", "plane:pelvis"}
    assert "wrist_left" in dropped["angle:wrist_left"] and "no joint" in dropped["angle:wrist_left"]
    assert "not a bone" in dropped["angle:hips"]
    assert "not a bone" in dropped["plane:pelvis"]
    assert cs.names[-2:] == ("angle:spine", "angle:shoulders")


def test_angle_limits_can_be_relaxed_and_are_checked():
    cs = anatomical_constraints(MSR_ACTION3D, angle_limits={"angle:spine": (100, 180)})
    assert cs["angle:spine"].limits == (100.0, 180.0)
    assert cs["angle:hips"].limits == (100.0, 180.0)
    with pytest.raises(SkvisError, match="angle:knee"):
        anatomical_constraints(KINECT_V2, angle_limits={"angle:knee": (0, 90)})
    with pytest.raises(SkvisError, match="lower < upper"):
        anatomical_constraints(KINECT_V2, angle_limits={"angle:spine": (170, 160)})


# --------------------------------------------------------------------------- residuals


@pytest.mark.parametrize("topo", TOPOLOGIES, ids=lambda t: t.name)
def test_rest_pose_has_zero_residuals(topo):
    cs = anatomical_constraints(topo)
    res = constraint_residuals(rest_pose(topo), cs)
    assert res.shape == (1, len(cs))
    np.testing.assert_allclose(res, 0.0, atol=1e-12)


def test_residuals_equal_hand_computed_values():
    topo = KINECT_V2
    cs = anatomical_constraints(topo)
    x0 = rest_pose(topo)
    ref = reference_bone_lengths(x0, topo)
    col = {n: k for k, n in enumerate(cs.names)}
    i = topo.index

    # Spine bent to 150 deg at spine_mid (everything above turned with it): 10 deg short.
    bent = x0.copy()
    t = np.radians(30.0)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    upper = [i(n) for n in topo.joint_names if n not in ("spine_base", "spine_mid")]
    upper = [
        j for j in upper if not topo.joint_names[j].startswith(("hip", "knee", "ankle", "foot"))
    ]
    pivot = bent[0, i("spine_mid")]
    bent[0, upper] = (bent[0, upper] - pivot) @ rot.T + pivot
    res = constraint_residuals(bent, cs, ref)[0]
    assert res[col["angle:spine"]] == pytest.approx(10.0, abs=1e-9)
    assert res[[col[n] for n in cs.names if n.startswith("bone:")]].max() < 1e-12

    # Shoulders dropped to 100 deg at spine_shoulder: 10 deg short.
    low = x0.copy()
    half = np.radians(50.0)
    arm = np.linalg.norm(x0[0, i("shoulder_left")] - x0[0, i("spine_shoulder")])
    for s, side in ((-1, "left"), (1, "right")):
        low[0, i(f"shoulder_{side}")] = x0[0, i("spine_shoulder")] + arm * np.array(
            [s * np.sin(half), -np.cos(half), 0.0]
        )
    res = constraint_residuals(low, cs, ref)[0]
    assert res[col["angle:shoulders"]] == pytest.approx(10.0, abs=1e-9)

    # Head 2 cm higher: the neck-head bone is 2 cm too long, nothing else changes.
    tall = x0.copy()
    tall[0, i("head"), 1] += 0.02
    res = constraint_residuals(tall, cs, ref)[0]
    assert res[col["bone:neck-head"]] == pytest.approx(0.02, abs=1e-12)
    assert np.delete(res, col["bone:neck-head"]).max() == 0.0

    # Spine mid tilted so that it makes 100 deg with the pelvis normal: 10 deg beyond 90.
    tilt = x0.copy()
    sb = x0[0, i("spine_base")]
    n = np.cross(x0[0, i("hip_right")] - sb, x0[0, i("hip_left")] - sb)
    n /= np.linalg.norm(n)
    v = x0[0, i("spine_mid")] - sb
    along = v - (v @ n) * n
    along /= np.linalg.norm(along)
    a = np.radians(100.0)
    tilt[0, i("spine_mid")] = sb + np.linalg.norm(v) * (np.cos(a) * n + np.sin(a) * along)
    res = constraint_residuals(tilt, cs, ref)[0]
    assert res[col["plane:pelvis"]] == pytest.approx(10.0, abs=1e-9)


def test_reference_lengths_are_the_mean_over_the_sequence():
    x = load_msr("a14_s02_e01_skeleton3D.txt")
    ref = reference_bone_lengths(x, MSR_ACTION3D)
    p, c = MSR_ACTION3D.bones[4]
    assert ref.shape == (MSR_ACTION3D.num_bones,)
    assert ref[4] == pytest.approx(np.linalg.norm(x[:, c] - x[:, p], axis=-1).mean(), rel=1e-12)


# --------------------------------------------------------------------------- real poses


def test_real_ntu_frames_satisfy_the_angle_constraints():
    # NTU A001 (drinking water, upright, facing the camera), Kinect v2: the skeleton the
    # paper's limits were written for. Every frame satisfies every angle constraint but
    # the left wrist, which the tracker's noisy hand joint bends past 90 deg on 4 of the
    # 103 frames (by 0.07, 1.4, 23 and 18 deg).
    x = load_ntu("S001C001P001R001A001.skeleton")
    cs = anatomical_constraints(KINECT_V2)
    res = constraint_residuals(x, cs)
    col = {n: k for k, n in enumerate(cs.names)}
    others = [k for k in angle_columns(cs) if k != col["angle:wrist_left"]]
    assert res[:, others].max() == 0.0
    assert np.count_nonzero(res[:, col["angle:wrist_left"]]) == 4


def test_real_msr_frames_satisfy_the_plane_and_wrists_but_not_the_spine_limit():
    # MSR Action3D (Kinect v1) puts its spine joint behind the hip-to-shoulder line: the
    # spine angle is 120-158 deg on these takes, below the paper's 160. The pelvis plane
    # (with the paper's cross-product order) and the wrists hold on every frame.
    cs = anatomical_constraints(MSR_ACTION3D)
    col = {n: k for k, n in enumerate(cs.names)}
    for name in ("a06_s02_e01_skeleton3D.txt", "a14_s02_e01_skeleton3D.txt"):
        res = constraint_residuals(load_msr(name), cs)
        for ok in ("plane:pelvis", "angle:wrist_left", "angle:wrist_right"):
            assert res[:, col[ok]].max() == 0.0, (name, ok)
        spine = res[:, col["angle:spine"]]
        assert spine.min() > 0.0 and np.median(spine) > 20.0, name


# --------------------------------------------------------------------------- projection


def _real_cases():
    rng = np.random.default_rng(7)
    ntu = load_ntu("S001C001P001R001A001.skeleton")
    throw = load_msr("a06_s02_e01_skeleton3D.txt")
    cases = []
    ref = reference_bone_lengths(ntu, KINECT_V2)
    for t, sigma in ((0, 0.04), (50, 0.05), (90, 0.03)):
        cases.append((KINECT_V2, ntu[t] + rng.normal(0, sigma, (25, 3)), ref))
    ref = reference_bone_lengths(throw, MSR_ACTION3D)
    cases.append((MSR_ACTION3D, throw[20] + rng.normal(0, 0.04, (20, 3)), ref))
    # A large step: the right arm thrown 30 cm out and everything else 10 cm.
    step = rng.normal(0, 0.10, (20, 3))
    step[[MSR_ACTION3D.index(n) for n in ("elbow_right", "wrist_right", "hand_right")]] += 0.3
    cases.append((MSR_ACTION3D, throw[30] + step, ref))
    return cases


@pytest.mark.parametrize("case", range(5))
def test_projection_is_valid_and_as_close_as_slsqp(case):
    topo, x0, ref = _real_cases()[case]
    cs = anatomical_constraints(topo)
    x = project(x0[None], cs, ref)
    assert_valid(x, cs, ref)
    xs = project_slsqp(x0[None], cs, ref, ftol=1e-12)
    res = constraint_residuals(xs, cs, ref)
    assert res.max() < 1e-5  # SLSQP found a valid pose too
    assert objective(x, x0) <= 1.01 * objective(xs, x0) + 1e-9


def test_projection_of_a_sequence_is_frame_by_frame():
    x0 = load_msr("a14_s02_e01_skeleton3D.txt")
    cs = anatomical_constraints(MSR_ACTION3D)
    x, info = project(x0, cs, return_info=True)
    ref = reference_bone_lengths(x0, MSR_ACTION3D)
    assert_valid(x, cs, ref)
    assert not info.fallback.any()
    for t in (0, 13, len(x0) - 1):
        np.testing.assert_allclose(project(x0[t : t + 1], cs, ref)[0], x[t], atol=1e-7)


def test_valid_frames_are_returned_unchanged():
    x0 = load_ntu("S001C001P001R001A001.skeleton")[:6]
    cs = anatomical_constraints(KINECT_V2)
    ref = reference_bone_lengths(x0, KINECT_V2)
    valid = project(x0, cs, ref)
    mixed = valid.copy()
    mixed[2] += np.random.default_rng(0).normal(0, 0.05, (25, 3))
    out, info = project(mixed, cs, ref, return_info=True)
    assert info.unchanged.tolist() == [True, True, False, True, True, True]
    assert np.array_equal(out[info.unchanged], valid[info.unchanged])
    assert_valid(out, cs, ref)


def test_degenerate_frames_give_finite_valid_poses():
    cs = anatomical_constraints(KINECT_V2)
    x0 = np.repeat(rest_pose(KINECT_V2), 4, axis=0)
    ref = reference_bone_lengths(x0, KINECT_V2)
    i = KINECT_V2.index
    x0[0, [i("elbow_left"), i("wrist_left"), i("hand_left"), i("hand_tip_left")]] = x0[
        0, i("elbow_left")
    ]
    x0[1] = 0.0  # every joint at one point
    x0[2] += np.random.default_rng(1).normal(0, 10.0, (25, 3))  # a 10 m step
    x0[3] += 100.0  # far away but valid: returned as it is
    x, info = project(x0, cs, ref, return_info=True)
    assert_valid(x, cs, ref)
    assert info.unchanged.tolist() == [False, False, False, True]
    assert np.array_equal(x[3], x0[3])


# --------------------------------------------------------------------------- degenerate frames
#
# Poses where a solver may start at a stationary point of a violated row (an angle of 0
# deg, a pelvis with parallel bones): collinear, a joint moved onto another, all joints at
# one point. `project` returned all-NaN frames for some of these, with max_violation NaN.


def independent_violation(x: np.ndarray, topo: Topology, ref: np.ndarray):
    """Per frame, the largest bone-length error (m) and the largest excess (deg) of the
    paper's angles and of the pelvis angle over their ranges, computed here from the joint
    names with arccos (not with the module's residuals)."""
    i = topo.index
    bones = np.array(topo.bones)
    lengths = np.linalg.norm(x[:, bones[:, 1]] - x[:, bones[:, 0]], axis=-1)
    bone_err = np.abs(lengths - ref).max(axis=1)

    def degrees(u, w):
        cos = (u * w).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(w, axis=-1))
        return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))

    excess = np.zeros(len(x))
    for (a, v, c), (lo, hi) in ANGLE_CONSTRAINTS.values():
        ang = degrees(x[:, i(a)] - x[:, i(v)], x[:, i(c)] - x[:, i(v)])
        excess = np.maximum(excess, np.maximum(lo - ang, ang - hi))
    sb, rh, lh, sm = (x[:, i(n)] for n in ("spine_base", "hip_right", "hip_left", "spine_mid"))
    excess = np.maximum(excess, degrees(np.cross(rh - sb, lh - sb), sm - sb) - 90.0)
    return bone_err, excess


def assert_degenerate_frames_projected(x0, ref, **kw):
    """project(x0) is finite, says so in max_violation, and holds every constraint (by
    the module's residuals and by `independent_violation`)."""
    cs = anatomical_constraints(MSR_ACTION3D)
    x, info = project(x0, cs, ref, return_info=True, **kw)
    assert np.isfinite(x).all(), np.nonzero(~np.isfinite(x).all(axis=(1, 2)))[0]
    assert np.isfinite(info.max_violation).all()
    assert info.max_violation.max() <= 1e-5
    assert_valid(x, cs, ref)
    bone_err, excess = independent_violation(x, MSR_ACTION3D, ref)
    assert bone_err.max() < 1e-5 and excess.max() < 1e-3
    return x, info


def test_collinear_poses_project_to_valid_poses():
    # Real MSR frames (high throw) with every joint moved onto one axis (x: left-right,
    # z: depth) or spread evenly on a vertical line; most gave NaN.
    throw = load_msr("a06_s02_e01_skeleton3D.txt")
    ref = reference_bone_lengths(throw, MSR_ACTION3D)
    frames = []
    for axis, ts in ((0, [5, 6, 9, 10]), (2, [4, 5, 6, 9])):
        on_axis = np.zeros_like(throw[ts])
        on_axis[..., axis] = throw[ts][..., axis]
        frames.append(on_axis)
    line = np.zeros((1, 20, 3))
    line[0, :, 1] = np.linspace(0.0, 1.0, 20)
    assert_degenerate_frames_projected(np.concatenate([*frames, line]), ref)


@pytest.mark.parametrize(
    ("name", "joint", "onto"),
    [
        # two bones apart: the wrist folds to 0 deg (NaN in some frames)
        ("a06_s02_e01_skeleton3D.txt", "hand_right", "elbow_right"),
        ("a14_s06_e02_skeleton3D.txt", "elbow_right", "hand_right"),
        # onto its parent or its child: a bone of zero length
        ("a06_s02_e01_skeleton3D.txt", "hand_right", "wrist_right"),
        ("a06_s02_e01_skeleton3D.txt", "wrist_left", "hand_left"),
        ("a14_s02_e01_skeleton3D.txt", "spine_mid", "spine_base"),
        ("a14_s02_e01_skeleton3D.txt", "spine_base", "hip_right"),
    ],
)
def test_a_joint_moved_onto_another_on_a_real_sequence(name, joint, onto):
    seq = load_msr(name)
    ref = reference_bone_lengths(seq, MSR_ACTION3D)
    i = MSR_ACTION3D.index
    moved = seq.copy()
    moved[:, i(joint)] = seq[:, i(onto)]
    assert_degenerate_frames_projected(moved, ref)


def test_a_random_batch_of_degenerate_frames_projects_to_valid_poses():
    # Frames of the bundled MSR recordings: a random joint moved onto a bone neighbour or
    # onto one two bones away, every joint on a random line, or every joint at one point.
    from skvis_widgets.data import load_msr_action3d

    data = load_msr_action3d(normalize=False)
    rng = np.random.default_rng(11)
    near = {j: set() for j in range(20)}
    for p, c in MSR_ACTION3D.bones:
        near[p].add(c)
        near[c].add(p)
    seq = np.asarray(data.sequences[int(rng.integers(len(data.sequences)))], dtype=np.float64)
    x0 = seq[rng.choice(len(seq), 16)].copy()
    for k, f in enumerate(x0):
        j = int(rng.integers(20))
        if k % 4 == 0:
            f[j] = f[rng.choice(sorted(near[j]))]
        elif k % 4 == 1:
            f[j] = f[rng.choice(sorted(set().union(*(near[n] for n in near[j])) - {j}))]
        elif k % 4 == 2:
            d = rng.normal(size=3)
            f[:] = f[0] + np.outer(rng.uniform(-0.8, 0.8, 20), d / np.linalg.norm(d))
        else:
            f[:] = f[j]
    assert_degenerate_frames_projected(x0, reference_bone_lengths(seq, MSR_ACTION3D))


def test_dtype_follows_the_input():
    cs = anatomical_constraints(MSR_ACTION3D)
    x0 = load_msr("a06_s02_e01_skeleton3D.txt")[:3]
    assert project(x0.astype(np.float32), cs).dtype == np.float32
    assert project(x0, cs).dtype == np.float64


@pytest.mark.parametrize(
    ("shape", "fill", "match"),
    [
        ((5, 24, 3), 0.1, r"24 joints \(shape \(5, 24, 3\)\).*'kinect_v2' expects 25"),
        ((25, 3), 0.1, r"expected shape \(T, J, 3\) with J = 25.*got \(25, 3\)"),
        ((0, 25, 3), 0.1, r"zero frames \(shape \(0, 25, 3\)\)"),
        ((2, 25, 3), np.nan, r"NaN or infinite.*frame 0, joint 0 'spine_base'"),
        ((2, 25, 3), np.inf, r"NaN or infinite"),
    ],
)
def test_bad_sequences_raise(shape, fill, match):
    cs = anatomical_constraints(KINECT_V2)
    bad = np.full(shape, fill)
    for fn in (project, constraint_residuals):
        with pytest.raises(SkvisError, match=match):
            fn(bad, cs)
    if len(shape) == 3 and shape[1] != 25:
        with pytest.raises(SkvisError, match=match):
            reference_bone_lengths(bad, KINECT_V2)


def test_bad_arguments_raise():
    cs = anatomical_constraints(KINECT_V2)
    x0 = rest_pose(KINECT_V2)
    with pytest.raises(SkvisError, match=r"reference_lengths has shape \(3,\); expected \(24,\)"):
        project(x0, cs, np.ones(3))
    with pytest.raises(SkvisError, match="bone 0 .*spine_base-spine_mid.*positive"):
        project(x0, cs, np.zeros(24))
    with pytest.raises(SkvisError, match="ConstraintSet"):
        project(x0, KINECT_V2)
    with pytest.raises(SkvisError, match="tol"):
        project(x0, cs, tol=0.0)
    with pytest.raises(SkvisError, match="Topology"):
        anatomical_constraints("kinect_v2")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"tol": "a"}, r"tol = 'a'; expected a positive finite number"),
        ({"tol": None}, r"tol = None"),
        ({"tol": True}, r"tol = True"),
        ({"tol": float("nan")}, r"tol = nan"),
        ({"tol": -1e-6}, r"tol = -1e-06"),
        ({"tol": np.inf}, r"tol = inf"),
        ({"max_iter": None}, r"max_iter = None; expected an int from 1 to 1000000"),
        ({"max_iter": 2.5}, r"max_iter = 2.5"),
        ({"max_iter": True}, r"max_iter = True"),
        ({"max_iter": "10"}, r"max_iter = '10'"),
        ({"max_iter": 0}, r"max_iter = 0"),
        ({"max_iter": 10**20}, r"max_iter = 100000000000000000000"),
        ({"return_info": 1}, r"return_info = 1; expected True or False"),
    ],
)
def test_bad_solver_parameters_raise_skvis_errors_naming_them(kw, match):
    cs = anatomical_constraints(KINECT_V2)
    x0 = rest_pose(KINECT_V2) + 0.01
    with pytest.raises(SkvisError, match=match):
        project(x0, cs, **kw)


def test_bad_parameters_of_the_other_functions_raise_skvis_errors():
    cs = anatomical_constraints(MSR_ACTION3D)
    x0 = rest_pose(MSR_ACTION3D)
    with pytest.raises(SkvisError, match=r"ftol = '1e-9'"):
        project_slsqp(x0, cs, ftol="1e-9")
    with pytest.raises(SkvisError, match=r"maxiter = 0"):
        project_slsqp(x0, cs, maxiter=0)
    with pytest.raises(SkvisError, match=r"maxiter = True"):
        project_slsqp(x0, cs, maxiter=True)
    with pytest.raises(SkvisError, match=r"reference_lengths: cannot be read as numbers"):
        project(x0, cs, ["a"] * 19)
    with pytest.raises(SkvisError, match="Topology"):
        reference_bone_lengths(x0, "msr_action3d")
    bad_limits = [
        ({"angle:spine": (100,)}, r"angle_limits\['angle:spine'\] = \(100,\)"),
        ({"angle:spine": "ab"}, r"angle_limits\['angle:spine'\] = 'ab'"),
        ({"angle:spine": 100}, r"angle_limits\['angle:spine'\] = 100"),
        ({"angle:spine": (True, 180)}, r"expected \(lower, upper\) in degrees"),
        ({"angle:spine": (float("nan"), 180)}, r"0 <= lower < upper <= 180"),
    ]
    for limits, match in bad_limits:
        with pytest.raises(SkvisError, match=match):
            anatomical_constraints(MSR_ACTION3D, angle_limits=limits)
    with pytest.raises(SkvisError, match="angle_limits = 5; expected a mapping"):
        anatomical_constraints(MSR_ACTION3D, angle_limits=5)


def test_the_compiled_program_is_kept_for_the_same_constraints_and_lengths():
    # project rebuilt the program and the plan on every call (a tenth of its time in
    # activation maximization, which projects with the same ones at every step).
    from skvis_widgets.anatomy.program import program

    ref = reference_bone_lengths(load_msr("a06_s02_e01_skeleton3D.txt"), MSR_ACTION3D)
    prog, pl = program(anatomical_constraints(MSR_ACTION3D), ref)
    again = program(anatomical_constraints(MSR_ACTION3D), list(ref))
    assert again[0] is prog and again[1] is pl
    other = program(anatomical_constraints(MSR_ACTION3D), ref * 1.01)
    assert other[0] is not prog
    np.testing.assert_array_equal(other[0].length, ref * 1.01)
    relaxed = anatomical_constraints(MSR_ACTION3D, angle_limits={"angle:spine": (100, 180)})
    assert program(relaxed, ref)[0] is not prog


def test_widened_to_relaxes_exactly_the_limits_the_sequence_breaks():
    seq = load_msr("a06_s02_e01_skeleton3D.txt")
    paper = anatomical_constraints(MSR_ACTION3D)
    wide = paper.widened_to(seq)
    res = constraint_residuals(seq, wide)
    assert res[:, [not n.startswith("bone:") for n in wide.names]].max() == 0.0  # input valid
    for con in paper.of_kind("angle"):
        a, v, c = (seq[:, j] for j in con.joints)
        u, w = a - v, c - v  # the angle by arccos, a computation of its own
        cos = (u * w).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(w, axis=1)
        ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        lo, hi = wide[con.name].limits
        if ang.min() >= con.limits[0]:
            assert lo == con.limits[0]  # a limit the input respects stays the paper's
        else:
            assert ang.min() - 0.1 - 1e-6 <= lo <= ang.min() + 1e-6 and lo == round(lo, 1)
        assert hi == con.limits[1]
    assert wide["angle:spine"].limits[0] < 160.0  # MSR's spine is bent
    # A sequence that already holds every limit changes nothing; a pelvis it breaks is
    # dropped.
    assert wide.widened_to(seq) is wide
    flipped = seq.copy()
    hr, hl = MSR_ACTION3D.index("hip_right"), MSR_ACTION3D.index("hip_left")
    flipped[:, [hr, hl]] = seq[:, [hl, hr]]
    dropped = paper.widened_to(flipped)
    assert "plane:pelvis" not in dropped and dropped.dropped[-1][0] == "plane:pelvis"
    assert f"on {len(seq)} of {len(seq)} frames" in dropped.dropped[-1][1]
