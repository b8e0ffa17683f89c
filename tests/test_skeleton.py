import numpy as np
import pytest

from skvis_widgets import KINECT_V1, KINECT_V2, MSR_ACTION3D, SkvisError, Topology, get_topology
from skvis_widgets.skeleton import BODY_PARTS, TOPOLOGIES

# The joint order and bones of ../shared/data/README.md, written out independently.
MSR_README_JOINTS = [
    "left shoulder", "right shoulder", "shoulder centre", "spine", "left hip", "right hip",
    "hip centre", "left elbow", "right elbow", "left wrist", "right wrist", "left hand",
    "right hand", "left knee", "right knee", "left ankle", "right ankle", "left foot",
    "right foot", "head",
]  # fmt: skip
MSR_README_BONES = [
    (7, 4), (4, 3), (3, 20), (3, 1), (3, 2), (1, 8), (2, 9), (8, 10), (9, 11), (10, 12),
    (11, 13), (7, 5), (7, 6), (5, 14), (6, 15), (14, 16), (15, 17), (16, 18), (17, 19),
]  # fmt: skip
NTU_README_JOINTS = [
    "spine base", "spine mid", "neck", "head", "left shoulder", "left elbow", "left wrist",
    "left hand", "right shoulder", "right elbow", "right wrist", "right hand", "left hip",
    "left knee", "left ankle", "left foot", "right hip", "right knee", "right ankle",
    "right foot", "spine shoulder", "left hand tip", "left thumb", "right hand tip",
    "right thumb",
]  # fmt: skip


def canonical(readme_name: str) -> str:
    """README wording -> canonical name, by the rules of the issue."""
    special = {
        "hip centre": "spine_base",
        "spine": "spine_mid",
        "shoulder centre": "spine_shoulder",
    }
    if readme_name in special:
        return special[readme_name]
    words = readme_name.split()
    if words[0] in ("left", "right"):
        return "_".join(words[1:]) + "_" + words[0]
    return "_".join(words)


def test_sizes():
    assert (KINECT_V2.num_joints, KINECT_V2.num_bones) == (25, 24)
    assert (KINECT_V1.num_joints, KINECT_V1.num_bones) == (20, 19)
    assert (MSR_ACTION3D.num_joints, MSR_ACTION3D.num_bones) == (20, 19)


def test_msr_matches_readme_order_and_bones():
    assert list(MSR_ACTION3D.joint_names) == [canonical(n) for n in MSR_README_JOINTS]
    ours = {frozenset(b) for b in MSR_ACTION3D.bones}
    readme = {frozenset((p - 1, c - 1)) for p, c in MSR_README_BONES}
    assert ours == readme


def test_ntu_matches_readme_order():
    assert list(KINECT_V2.joint_names) == [canonical(n) for n in NTU_README_JOINTS]


def test_kinect_v1_sdk_order():
    expected = ["spine_base", "spine_mid", "spine_shoulder", "head"]
    for side in ("left", "right"):
        expected += [f"{j}_{side}" for j in ("shoulder", "elbow", "wrist", "hand")]
    for side in ("left", "right"):
        expected += [f"{j}_{side}" for j in ("hip", "knee", "ankle", "foot")]
    assert list(KINECT_V1.joint_names) == expected


@pytest.mark.parametrize("topo", list(TOPOLOGIES.values()), ids=list(TOPOLOGIES))
def test_bones_join_real_joints_and_make_a_tree(topo):
    for p, c in topo.bones:
        assert 0 <= p < topo.num_joints and 0 <= c < topo.num_joints and p != c
    # the spine base, or (OpenNI, which has none) the torso joint
    assert topo.joint_names[topo.root] == ("spine_base" if topo.has("spine_base") else "spine_mid")
    # Every bone's parent is closer to the root than its child: walk from the root.
    depth = {topo.root: 0}
    changed = True
    while changed:
        changed = False
        for p, c in topo.bones:
            if p in depth and c not in depth:
                depth[c] = depth[p] + 1
                changed = True
    assert len(depth) == topo.num_joints


@pytest.mark.parametrize("topo", list(TOPOLOGIES.values()), ids=list(TOPOLOGIES))
def test_same_name_same_anatomy(topo):
    # Canonical names mean the same bone wherever both joints exist.
    named = {(topo.joint_names[p], topo.joint_names[c]) for p, c in topo.bones}
    for bone in (
        ("spine_base", "spine_mid"),
        ("elbow_left", "wrist_left"),
        ("knee_right", "ankle_right"),
    ):
        assert bone in named or not topo.has(*bone)
    if topo.name == "openni_15":  # no wrists or ankles: the hand and foot hang one joint up
        assert {("elbow_left", "hand_left"), ("knee_right", "foot_right")} <= named
    for part, joints in topo.body_parts.items():
        assert set(joints) <= set(BODY_PARTS[part])
        assert joints, part
    covered = {j for joints in topo.body_parts.values() for j in joints}
    assert covered == set(topo.joint_names)


def test_index_and_unknown_joint():
    assert KINECT_V2.index("spine_shoulder") == 20
    assert MSR_ACTION3D.index("spine_base") == 6
    with pytest.raises(SkvisError, match="thumb_left.*msr_action3d"):
        MSR_ACTION3D.index("thumb_left")
    assert MSR_ACTION3D.part_of("hand_left") == "left_arm"


def test_get_topology():
    assert get_topology("kinect_v2") is KINECT_V2
    assert get_topology("NTU") is KINECT_V2
    assert get_topology("sysu") is KINECT_V1
    assert get_topology(MSR_ACTION3D) is MSR_ACTION3D
    with pytest.raises(SkvisError, match="unknown topology"):
        get_topology("kinect_v9")


def test_frozen_and_validating():
    with pytest.raises(AttributeError):
        KINECT_V2.name = "x"  # type: ignore[misc]
    with pytest.raises(SkvisError, match="does not join"):
        Topology("bad", ("a", "b"), ((0, 5),))
    with pytest.raises(SkvisError, match="tree"):
        Topology("cycle", ("a", "b", "c"), ((0, 1), (1, 2), (2, 0)))
    with pytest.raises(SkvisError, match="unique"):
        Topology("dup", ("a", "a"), ((0, 1),))


@pytest.mark.parametrize("topo", list(TOPOLOGIES.values()), ids=lambda t: t.name)
def test_rest_pose_in_every_topology(topo):
    from skvis_widgets.skeleton import REST_POSE, rest_pose

    pose = rest_pose(topo)
    assert pose.shape == (topo.num_joints, 3) and pose.dtype == np.float64
    for j, name in enumerate(topo.joint_names):
        assert tuple(pose[j]) == REST_POSE[name]
    # upright and symmetric: the head above the spine base, left mirrors right in x
    assert pose[topo.index("head"), 1] > pose[topo.index("knee_left"), 1] + 1.0
    left, right = pose[topo.index("elbow_left")], pose[topo.index("elbow_right")]
    np.testing.assert_array_equal(left * [-1, 1, 1], right)
    pose[0] = 9.0  # a fresh array: the next call is unchanged
    assert rest_pose(topo)[0, 0] != 9.0


def test_rest_pose_names_unknown_joints_and_display_names():
    from skvis_widgets.skeleton import display_name, rest_pose

    odd = Topology("odd", ("spine_base", "tail"), ((0, 1),))
    with pytest.raises(SkvisError, match=r"'odd': no rest position for joint\(s\) \['tail'\]"):
        rest_pose(odd)
    assert display_name("hand_tip_left") == "hand tip left"
    assert [KINECT_V2.pretty(j) for j in range(2)] == ["spine base", "spine mid"]
