"""Anatomical constraints (Patil et al., section 3.2, eqs 8-14) and projection onto them.

The constraint set is written once with canonical joint names and instantiated per
topology (`anatomical_constraints`):

- bone lengths (eqs 9-10): every bone keeps its reference length, by default its mean
  length over the sequence (`reference_bone_lengths`);
- three-joint angles (eq 11 and the text after it), at the middle joint of each triple:

  ======================  =====================================  ==============
  name                    joints (arm, vertex, arm)              range (deg)
  ======================  =====================================  ==============
  ``angle:spine``         spine_base, spine_mid, spine_shoulder  [160, 180]
  ``angle:shoulders``     shoulder_left, spine_shoulder,         [110, 180]
                          shoulder_right
  ``angle:hips``          hip_left, spine_base, hip_right        [100, 180]
  ``angle:wrist_left``    elbow_left, wrist_left, hand_left      [90, 180]
  ``angle:wrist_right``   elbow_right, wrist_right, hand_right   [90, 180]
  ======================  =====================================  ==============

- the four-joint constraint (eqs 12-13), ``plane:pelvis``: with unit vectors from the
  spine base to the right hip, the left hip and the spine mid, the normal
  ``n = v_rh x v_lh`` makes an angle in [0, 90] deg with ``v_sm``, i.e. the scalar triple
  product ``(v_rh x v_lh) . v_sm >= 0``.

`constraint_residuals` says by how much each frame violates each constraint; `project`
solves eq 14, the valid pose nearest to each frame in least squares, for a whole sequence
at once; `project_slsqp` solves the same problem frame by frame with SciPy's SLSQP (the
slow reference the tests and ``benchmarks/bench_projection.py`` compare against).

One job per module:

- `constraints`: the vocabulary (`Constraint`, `ConstraintSet` and its `widened_to`,
  `anatomical_constraints`), reference bone lengths, `constraint_residuals`;
- `rows`: the rows of eqs 9-13 on joint positions in numpy, and their Jacobians (the
  one form of them; the compiled kernel's jitted copy is tested equal to it);
- `program`: a constraint set with reference lengths compiled to index arrays and the
  solver's elimination plan, cached per constraint set and lengths; bone coordinates;
- `_kernel`: the compiled (numba) Newton SQP; `solver`: its compile (`prepare_solver`,
  in the background if asked; `solver_ready`);
- `projection`: `project` (compiled solver, SLSQP for what it leaves) and
  `project_slsqp`.

What real recordings do (checked on every frame of the MSR Action3D and NTU RGB+D files
in ``shared/data``):

- ``plane:pelvis`` holds on 99.8 % of MSR and 99.3 % of NTU frames with the paper's order
  of the cross product (the reverse order would fail nearly all of them), so the paper's
  order is kept.
- NTU (Kinect v2, the skeleton the limits were written for): ``angle:spine`` holds on
  every frame (min 173.5 deg). An upright subject facing the camera (A001, drinking)
  satisfies every constraint except ``angle:wrist_left`` on 4 of 103 frames, where the
  noisy hand joint bends the wrist to 67-89.9 deg. Side views, bending and two-person
  frames break ``angle:shoulders`` (23 % of the 953 sample frames, down to 29 deg),
  ``angle:hips`` (6 %) and the wrists (2-3 %), mostly where the tracker loses the body.
- MSR Action3D (Kinect v1) does not fit the paper's limits: its spine joint sits behind
  the line from hip centre to shoulder centre, so ``angle:spine`` is below 160 deg on
  99.5 % of its 22,365 frames (median 133, 1st-99th percentile 104-158);
  ``angle:shoulders`` (median 112) fails on 32 % and ``angle:hips`` (median 111) on 19 %.
  The wrists hold on all but 12 frames. Projecting MSR frames therefore straightens the
  spine; pass ``angle_limits`` to `anatomical_constraints` to relax it.
"""

from .constraints import (
    ANGLE_CONSTRAINTS,
    PLANE_CONSTRAINTS,
    Constraint,
    ConstraintSet,
    anatomical_constraints,
    constraint_residuals,
    reference_bone_lengths,
)
from .projection import ProjectionInfo, project, project_slsqp
from .solver import prepare_solver, solver_ready

__all__ = [
    "ANGLE_CONSTRAINTS",
    "PLANE_CONSTRAINTS",
    "Constraint",
    "ConstraintSet",
    "ProjectionInfo",
    "anatomical_constraints",
    "reference_bone_lengths",
    "constraint_residuals",
    "project",
    "project_slsqp",
    "prepare_solver",
    "solver_ready",
]
