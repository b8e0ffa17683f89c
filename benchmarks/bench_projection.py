"""How fast `project` (eq 14) is against SLSQP frame by frame, in one run.

    python benchmarks/bench_projection.py [--frames 300] [--noise 0.04] [--sample 5]
                                          [--repeat 3] [--seed 0] [--threads=1]

The case: a Kinect v2 (25-joint) sequence of ``--frames`` frames, the real NTU RGB+D
recording ``tests/data/ntu/S001C001P001R001A001.skeleton`` (drinking water; played
forward and back to the length needed), or, where that file is missing, a hand-written
upright rest pose; each frame then moved by Gaussian noise of ``--noise`` metres per
coordinate, as an activation-maximization step would. Reference bone lengths: the mean
over the clean sequence.

- `project`: all frames (the fastest of ``--repeat`` runs after a warm-up, whose time is
  printed too: in a new environment it compiles the solver).
- cold start: `prepare_solver()` in a fresh Python process with an empty
  ``NUMBA_CACHE_DIR`` (what a new environment pays once), wall and CPU seconds, next to
  the time of one warm projection of the sequence as its baseline (``--no-cold`` skips
  it: it takes some 15-30 s).
- the baseline: SciPy's SLSQP on each frame on its own, started from the frame, with
  analytic Jacobians of the same constraints (`project_slsqp`'s solver), at the loosest
  ``ftol`` that meets the accuracy asked of `project` (bone lengths to 1e-5 m, angles
  to 1e-3 deg); the script checks that it does. It is timed on every ``--sample``-th
  frame (the faster of two passes) and extrapolated to all frames (the script says so;
  ``--sample 1`` times all).

Both results are checked on the sampled frames: valid, and the same squared distance to
the input within 1 %. Not a test: it prints figures. The machine's load shows in them,
so compare figures of the same run. Target: a ratio >= 50.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One BLAS thread unless told otherwise (``--threads``), set before numpy loads BLAS: on
# a machine whose cores are busy with other jobs, BLAS threads spin waiting on each
# other and every figure becomes noise. It affects both sides alike.
if __name__ == "__main__":
    _n = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), "1")
    if _n != "0":
        for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(_var, _n)

import numpy as np  # noqa: E402

from skvis_widgets.anatomy import (  # noqa: E402
    anatomical_constraints,
    constraint_residuals,
    project,
    reference_bone_lengths,
)
from skvis_widgets.anatomy.program import program  # noqa: E402
from skvis_widgets.anatomy.projection import slsqp_frame  # noqa: E402
from skvis_widgets.data import read_ntu_skeleton  # noqa: E402
from skvis_widgets.skeleton import KINECT_V2  # noqa: E402
from skvis_widgets.skeleton import rest_pose as skeleton_rest_pose  # noqa: E402

NTU = Path(__file__).resolve().parent.parent / "tests" / "data" / "ntu"


def rest_pose() -> np.ndarray:
    """The package's upright Kinect v2 rest pose, (1, 25, 3), 3 m in front of the camera."""
    return skeleton_rest_pose(KINECT_V2)[None] + np.array([0.0, 0.0, 3.0])


def clean_sequence(frames: int) -> tuple[np.ndarray, str]:
    path = NTU / "S001C001P001R001A001.skeleton"
    if path.exists():
        real = read_ntu_skeleton(path)[0].astype(np.float64)  # its first body
        loop = np.concatenate([real, real[::-1]])  # forward and back: no jump
        return loop[np.arange(frames) % len(loop)], f"real NTU frames ({path.name})"
    return np.repeat(rest_pose(), frames, axis=0), "a hand-written rest pose"


_COLD = """
import time
import skvis_widgets.anatomy as anatomy
t, c = time.perf_counter(), time.process_time()
anatomy.prepare_solver()
print(time.perf_counter() - t, time.process_time() - c)
"""


def cold_compile() -> tuple[float, float]:
    """`prepare_solver()` in a new process with an empty numba cache: (wall, CPU) s."""
    root = str(Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        out = subprocess.run(
            [sys.executable, "-c", _COLD], env=env, capture_output=True, text=True, check=True
        )
    wall, cpu = (float(v) for v in out.stdout.split()[-2:])
    return wall, cpu


def accuracy(x: np.ndarray, cs, ref: np.ndarray) -> tuple[float, float]:
    """Worst bone-length error (m) and worst angle violation (deg) over the frames."""
    res = constraint_residuals(x, cs, ref)
    bone = np.array([c.kind == "bone" for c in cs])
    return float(res[:, bone].max()), float(res[:, ~bone].max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--noise", type=float, default=0.04, help="metres per coordinate")
    ap.add_argument("--sample", type=int, default=5, help="time SLSQP on every n-th frame")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cold", dest="cold", action="store_false", help="skip the cold start")
    ap.add_argument(
        "--threads", default="1", help="BLAS threads, as --threads=N; 0: the library default"
    )
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    clean, source = clean_sequence(args.frames)
    rng = np.random.default_rng(args.seed)
    x0 = clean + rng.normal(0.0, args.noise, clean.shape)
    cs = anatomical_constraints(KINECT_V2)
    ref = reference_bone_lengths(clean, KINECT_V2)
    print(
        f"{args.frames} frames x {KINECT_V2.num_joints} joints from {source}, "
        f"+ {100 * args.noise:g} cm Gaussian noise; {len(cs)} constraints"
    )

    t0 = time.perf_counter()
    project(x0, cs, ref)  # warm-up
    print(f"first call: {time.perf_counter() - t0:.2f} s (compiles the solver unless cached)")
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        x, info = project(x0, cs, ref, return_info=True)
        times.append(time.perf_counter() - t0)
    t_ours = min(times)
    it = info.iterations[~info.unchanged]
    print(
        f"project:  {1e3 * t_ours:8.1f} ms for all frames (fastest of {args.repeat}); "
        f"Newton iterations median {np.median(it):.0f}, 90% {np.percentile(it, 90):.0f}, "
        f"max {it.max()}; SLSQP fallback on {info.fallback.sum()} of {args.frames} frames"
    )

    if args.cold:
        wall, cpu = cold_compile()
        print(
            f"cold start: prepare_solver() in a fresh process with an empty numba cache: "
            f"{wall:.1f} s wall, {cpu:.1f} s CPU = {wall / t_ours:.0f} warm projections "
            f"of these {args.frames} frames"
        )

    # The baseline, at the loosest ftol that meets the accuracy asked of project.
    prog = program(cs, ref)[0]
    sample = np.arange(0, args.frames, max(1, args.sample))
    for ftol in (1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        runs = []
        for _ in range(2):  # the faster of two passes, as for project
            t0 = time.perf_counter()
            xs = np.stack([slsqp_frame(x0[t], prog, x0[t], ftol, 1000)[0] for t in sample])
            runs.append(time.perf_counter() - t0)
        t_slsqp = min(runs) / len(sample) * args.frames
        bone, angle = accuracy(xs, cs, ref)
        if bone <= 1e-5 and angle <= 1e-3:
            break
        print(f"  (SLSQP at ftol={ftol:g}: bones {bone:.1e} m, angles {angle:.1e} deg: too loose)")
    extrapolated = (
        ""
        if len(sample) == args.frames
        else (f", timed on {len(sample)} frames (every {args.sample}th) and extrapolated")
    )
    print(f"SLSQP:    {1e3 * t_slsqp:8.1f} ms for all frames at ftol={ftol:g}{extrapolated}")

    b1, a1 = accuracy(x[sample], cs, ref)
    b2, a2 = accuracy(xs, cs, ref)
    d1 = ((x[sample] - x0[sample]) ** 2).sum(axis=(1, 2))
    d2 = ((xs - x0[sample]) ** 2).sum(axis=(1, 2))
    rel = d1 / d2 - 1.0
    print(
        f"accuracy: project bones {b1:.1e} m, angles {a1:.1e} deg; "
        f"SLSQP bones {b2:.1e} m, angles {a2:.1e} deg"
    )
    print(
        f"distance: project / SLSQP - 1 on the sampled frames: max {rel.max():+.2e}, "
        f"min {rel.min():+.2e} (negative: project found the nearer pose)"
    )
    ok = max(b1, b2) <= 1e-5 and max(a1, a2) <= 1e-3 and rel.max() <= 0.01
    print(f"same accuracy: {'yes' if ok else 'NO'}")
    print(f"speed ratio SLSQP / project: {t_slsqp / t_ours:.0f}x (target >= 50x)")


if __name__ == "__main__":
    main()
