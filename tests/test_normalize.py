from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from skvis_widgets import MSR_ACTION3D, SkvisError
from skvis_widgets.data import body_frame, normalize_sequence, read_msr_action3d

RAW = read_msr_action3d(Path(__file__).parent / "data" / "msr" / "a01_s01_e01_skeleton3D.txt")


def test_body_frame_definition():
    out = normalize_sequence(RAW, MSR_ACTION3D)
    ix = MSR_ACTION3D.index
    first = out[0]
    np.testing.assert_allclose(first[ix("spine_base")], 0, atol=1e-6)
    up = first[ix("head")] - (first[ix("ankle_left")] + first[ix("ankle_right")]) / 2
    # y points up the body: the ankles-to-head axis has no x or z component in frame 0.
    np.testing.assert_allclose(up[[0, 2]], 0, atol=1e-6)
    assert up[1] > 1.0  # a standing adult
    spine = first[ix("spine_shoulder")] - first[ix("spine_base")]
    assert spine[1] > 0
    across = (first[ix("hip_right")] - first[ix("hip_left")]) + (
        first[ix("shoulder_right")] - first[ix("shoulder_left")]
    )
    assert across[0] > 0 and abs(across[2]) < 1e-5


def test_inverse_round_trip():
    out, frame = normalize_sequence(RAW, MSR_ACTION3D, return_frame=True)
    np.testing.assert_allclose(frame.invert(out), RAW, atol=1e-5)
    assert np.allclose(frame.rotation @ frame.rotation.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(frame.rotation) == pytest.approx(1.0)


def test_rigid_motion_invariance():
    # Rotating and moving the recording in the camera changes nothing after normalization.
    rot = Rotation.from_euler("xyz", [20, -75, 10], degrees=True).as_matrix()
    moved = (RAW.astype(np.float64) @ rot.T + [1.5, -0.3, 2.0]).astype(np.float32)
    np.testing.assert_allclose(
        normalize_sequence(moved, MSR_ACTION3D), normalize_sequence(RAW, MSR_ACTION3D), atol=2e-5
    )


def test_preserves_bone_lengths():
    out = normalize_sequence(RAW, MSR_ACTION3D)
    for p, c in MSR_ACTION3D.bones:
        np.testing.assert_allclose(
            np.linalg.norm(out[:, c] - out[:, p], axis=-1),
            np.linalg.norm(RAW[:, c] - RAW[:, p], axis=-1),
            atol=1e-5,
        )


def test_degenerate_first_frame_falls_back():
    seq = RAW.copy()
    seq[0] = seq[0, 0]  # all joints coincide in frame 0
    frame = body_frame(seq, MSR_ACTION3D)
    np.testing.assert_allclose(frame.origin, RAW[1, MSR_ACTION3D.index("spine_base")], atol=1e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((0, 20, 3)), "zero frames"),
        (np.zeros((5, 25, 3)), "25 joints"),
        (np.full((5, 20, 3), np.nan), "NaN"),
        (np.zeros((5, 20)), r"expected shape \(T, J, 3\)"),
        (np.zeros((5, 20, 3)), "no frame has a usable body axis"),
    ],
)
def test_bad_input(bad, match):
    with pytest.raises(SkvisError, match=match):
        normalize_sequence(bad, MSR_ACTION3D)
