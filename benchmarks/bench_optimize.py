"""How long one activation-maximization iteration takes on an NTU-sized case.

    python benchmarks/bench_optimize.py [--frames 300] [--hidden 150] [--iterations 6]
                                        [--repeat 3] [--threads 1]

The case: a random-weight ``SkeletonLSTM(25, 60, 150)`` (Kinect v2) and a real NTU RGB+D
recording, ``tests/data/ntu/S001C001P001R001A001.skeleton`` (its main body, normalized),
played forward and back to ``--frames`` frames. Target: class 0.

For ``gradient="full"`` and ``"paper"``, with and without the anatomical constraints (and
once with ``support`` and ``temporal`` added), it runs ``--iterations`` iterations
(``tol=0``, so no early stop unless no step helps) and prints the time per iteration (the
fastest of ``--repeat`` runs after a warm-up), the share of the time spent in
`skvis_widgets.anatomy.project`, and its calls per iteration (one per trial step: a
halved step costs one more projection and forward pass; with ``temporal``, one more per
round of acceleration bounding). The same-run baseline is one forward pass of the model
(no gradient) on the sequence: an iteration's cost is printed in forward passes too, which
compares across machines and loads better than seconds. Target: an iteration well under
a second on 2 cores.

Not a test: it prints figures. ``--threads`` (default 1) sets torch's intra-op threads
for the whole run: on a machine whose cores are busy with other jobs, several threads
per operation wait on each other and every figure becomes noise. ``0`` keeps torch's
default.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # one BLAS thread unless told otherwise, before numpy loads
    _n = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), "1")
    if _n != "0":
        for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(_var, _n)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from skvis_widgets import KINECT_V2, optimize, sequence_constraints  # noqa: E402
from skvis_widgets.data import main_body, normalize_sequence, read_ntu_skeleton  # noqa: E402
from skvis_widgets.model import SkeletonLSTM  # noqa: E402

NTU = Path(__file__).resolve().parent.parent / "tests" / "data" / "ntu"


def ntu_sequence(frames: int) -> np.ndarray:
    """The main body of a real NTU recording, normalized, looped forward and back."""
    body = main_body(read_ntu_skeleton(NTU / "S001C001P001R001A001.skeleton"))
    seq = normalize_sequence(body, KINECT_V2)
    loop = np.concatenate([seq, seq[::-1]])
    return np.ascontiguousarray(loop[np.arange(frames) % len(loop)])


class ProjectionTimer:
    """Wraps the `project` that the `Anatomy` constraint calls, to add up its time."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._orig = sequence_constraints.project

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self._orig(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def __enter__(self) -> ProjectionTimer:
        sequence_constraints.project = self
        return self

    def __exit__(self, *exc) -> None:
        sequence_constraints.project = self._orig


def run(model, seq, iterations: int, repeat: int, **kwargs) -> tuple[float, float, float, int]:
    """(seconds per iteration, projection share, project calls per iteration, iterations)."""
    optimize.maximize_activation(model, seq, target=0, iterations=1, progress=False, **kwargs)
    best = None
    for _ in range(repeat):
        with ProjectionTimer() as timer:
            t0 = time.perf_counter()
            r = optimize.maximize_activation(
                model, seq, target=0, iterations=iterations, tol=0.0, progress=False, **kwargs
            )
            total = time.perf_counter() - t0
        k = max(r.iterations_run, 1)
        calls = timer.calls / k
        figures = (total / k, timer.seconds / total, calls, r.iterations_run)
        if best is None or figures[0] < best[0]:
            best = figures
    assert best is not None
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=150)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", default="1", help="as --threads=N; 0: torch's default")
    args = ap.parse_args()
    if args.threads != "0":
        torch.set_num_threads(int(args.threads))
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}"
    )
    seq = ntu_sequence(args.frames)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SkeletonLSTM(25, 60, args.hidden).eval()
    model.metadata["topology"] = KINECT_V2.name
    x = torch.as_tensor(seq[None])
    with torch.no_grad():
        model(x)
        fwd = []
        for _ in range(5):
            t0 = time.perf_counter()
            model(x)
            fwd.append(time.perf_counter() - t0)
    t_fwd = min(fwd)
    print(
        f"SkeletonLSTM(25, 60, {args.hidden}), {args.frames} real NTU frames "
        f"({KINECT_V2.name}); one forward pass {1e3 * t_fwd:.1f} ms (the baseline)"
    )
    cases = [
        ("full", dict(gradient="full", constraints=True)),
        ("full", dict(gradient="full", constraints=False)),
        ("paper", dict(gradient="paper", constraints=True)),
        ("paper", dict(gradient="paper", constraints=False)),
        ("full", dict(gradient="full", constraints=True, support=True, temporal=0.01)),
    ]
    print(
        f"{'gradient':8s} {'options':42s} {'ms/iter':>8s} {'fwd passes':>10s} "
        f"{'projecting':>10s} {'project calls/iter':>18s}"
    )
    for name, kw in cases:
        per, share, calls, k = run(model, seq, args.iterations, args.repeat, **kw)
        opts = ", ".join(f"{a}={b}" for a, b in kw.items() if a != "gradient")
        proj = f"{100 * share:9.0f}%" if calls else f"{'-':>10s}"
        note = "" if k == args.iterations else f"  (stopped after {k} iterations)"
        print(
            f"{name:8s} {opts:42s} {1e3 * per:8.1f} {per / t_fwd:10.0f} {proj} {calls:18.1f}{note}"
        )


if __name__ == "__main__":
    main()
