"""How fast the sensitivity engine is, against the straightforward baseline, in one run.

    python benchmarks/bench_saliency.py [--frames 300] [--joints 25] [--hidden 150] [--threads 1]

NTU-sized case: a random-weight ``SkeletonLSTM(25, 60, 150)`` and a random-walk
sequence of 300 frames (the time does not depend on the values).

- all-unit instantaneous sensitivity ``(H, T, J, 3)`` against its floor, the LSTM
  forward pass plus writing an array of the result's size (target: within 1.5x),
  and against the baseline: one autograd backward pass per unit per frame, through
  a one-step replay of the cell (``nn.LSTMCell`` with the model's weights) from the
  state at ``t - 1``. The baseline is timed on a sample of frames (all H units each)
  and extrapolated to all T frames; the script says so and checks that both agree
  on the sampled frames. Target: >= 1000x.
- eq 5 class map for a new class once the unit sensitivity is cached (target < 10 ms);
- all-unit through-time sensitivity;
- the whole MSR Action3D test split (bundled) as one padded batch;
- batches against loops (``--no-batches`` skips it): every public function that takes a
  batch (``unit_sensitivity``, ``joint_sensitivity`` for a class, both modes) on N = 1,
  32 NTU-size sequences and on N = 1, 32, 273 MSR test sequences, one call against a
  Python loop of one-sequence calls into a preallocated array (each sequence at its
  own length); the batch writes into the same kind of array (``out=``) where the
  function takes one. ``loop / batch`` >= 1 means the batch is at least as fast per
  sequence (the target).

Not a test: it prints figures. Timings are the fastest of ``--repeat`` runs after a
warm-up (the baseline: its fastest frame, times T); the machine's load shows in
them, so compare figures of the same run.
``--threads`` (default 1) sets torch's intra-op threads for the whole run, the
baseline included: on a machine whose cores are busy with other jobs, several
threads per operation wait on each other and every figure becomes noise. ``0``
keeps torch's default.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from skvis_widgets import _lstm_kernel
from skvis_widgets.model import SkeletonLSTM
from skvis_widgets.saliency import (
    class_map,
    joint_sensitivity,
    prepare_kernel,
    unit_sensitivity,
)


def timed(fn: Callable[[], object], repeat: int, warm_up: bool = True) -> tuple[float, object]:
    """Fastest of ``repeat`` calls (after one warm-up call) in seconds, and the last result.

    The minimum, as ``timeit`` advises: on a shared machine the other figures
    measure the other jobs.
    """
    out = fn() if warm_up else None
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def random_walk(frames: int, joints: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start = rng.normal(0, 0.3, (1, joints, 3))
    return (start + np.cumsum(rng.normal(0, 0.01, (frames, joints, 3)), 0)).astype(np.float32)


def baseline(model: SkeletonLSTM, seq: np.ndarray, frames: list[int]) -> tuple[float, np.ndarray]:
    """Seconds per frame of: replay one LSTM step, then one backward pass per unit.

    Returns the fastest frame's seconds over ``frames`` (each frame does the same
    work) and their ``(H, len(frames), J, 3)`` sensitivities (unnormalized) for the
    agreement check.
    """
    rnn = model.rnn
    cell = nn.LSTMCell(rnn.input_size, rnn.hidden_size)
    cell.load_state_dict(
        {k.removesuffix("_l0"): v for k, v in rnn.state_dict().items() if k.endswith("_l0")}
    )
    x = torch.as_tensor(seq)
    with torch.no_grad():  # the states before each frame (setup, not timed)
        feats = model.preprocess(x[None])[0]
        h = torch.zeros(1, rnn.hidden_size)
        c = torch.zeros(1, rnn.hidden_size)
        states = []
        for t in range(len(seq)):
            states.append((h, c))
            h, c = cell(feats[t : t + 1], (h, c))
    out = np.zeros((rnn.hidden_size, len(frames), *seq.shape[1:]), np.float32)
    times = []
    for k, t in enumerate(frames):
        t0 = time.perf_counter()
        xt = x[t].clone().requires_grad_(True)
        h_t, _ = cell(model.preprocess(xt[None, None])[0], states[t])
        for u in range(rnn.hidden_size):
            (g,) = torch.autograd.grad(h_t[0, u], xt, retain_graph=True)
            out[u, k] = g.abs().numpy()
        times.append(time.perf_counter() - t0)
    return min(times), out


def floor(model: SkeletonLSTM, seq: np.ndarray) -> np.ndarray:
    """What no all-unit engine can skip: the LSTM forward pass, and writing a result of
    ``(H, T, J, 3)`` values into a fresh array."""
    with torch.no_grad():
        model.rnn(model.preprocess(torch.as_tensor(seq)[None]))
    out = np.empty((model.hidden_size, *seq.shape), np.float32)
    out.fill(1.0)
    return out


def batch_against_loop(
    label: str, model: SkeletonLSTM, batch: np.ndarray, lengths: np.ndarray, labels: np.ndarray
) -> list[tuple[str, str, str]]:
    """``loop / batch`` for every public batched function (see the module docstring)."""
    n = len(batch)
    seqs = [batch[i, : lengths[i]] for i in range(n)]
    units = np.zeros((n, model.hidden_size, *batch.shape[1:]), np.float32)
    rows = [(f"{label}: N={n}, T<={batch.shape[1]}, H={model.hidden_size}", "", "")]
    for mode in ("instantaneous", "through_time"):

        def unit_batch(mode: str = mode) -> None:
            unit_sensitivity(model, batch, lengths=lengths, mode=mode, out=units)

        def unit_loop(mode: str = mode) -> None:
            for i, s in enumerate(seqs):
                units[i, :, : len(s)] = unit_sensitivity(model, s, mode=mode)

        def class_batch(mode: str = mode) -> None:
            joint_sensitivity(model, batch, target=labels, lengths=lengths, mode=mode)

        def class_loop(mode: str = mode) -> None:
            maps = np.zeros(batch.shape[:3], np.float32)
            for i, s in enumerate(seqs):
                maps[i, : len(s)] = joint_sensitivity(model, s, target=int(labels[i]), mode=mode)

        for name, one, many in (
            ("unit_sensitivity", unit_batch, unit_loop),
            ("joint_sensitivity(target=)", class_batch, class_loop),
        ):
            repeat = 3 if n * batch.shape[1] <= 32 * 300 else 1
            t_one, _ = timed(one, repeat)
            t_many, _ = timed(many, repeat)
            rows.append(
                (
                    f"  {name}, {mode}",
                    f"{t_many / t_one:.2f}x",
                    f"loop / batch ({t_one * 1e3 / n:.2f} vs {t_many * 1e3 / n:.2f} ms per seq)",
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--joints", type=int, default=25)
    parser.add_argument("--hidden", type=int, default=150)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--sample-frames", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-batches", action="store_true", help="skip batch against loop")
    args = parser.parse_args()
    t, j, hdim = args.frames, args.joints, args.hidden
    if args.threads > 0:
        torch.set_num_threads(args.threads)  # a benchmark script: the process is ours

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SkeletonLSTM(j, args.classes, hdim).eval()
    seq = random_walk(t, j)
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"SkeletonLSTM({j}, {args.classes}, {hdim}), random weights; T={t}"
    )
    rows: list[tuple[str, str, str]] = []
    t0 = time.perf_counter()
    prepare_kernel()
    print(f"compiled kernel ready in {time.perf_counter() - t0:.2f} s (from numba's cache if any)")

    # -- instantaneous, all units, against one backward per unit per frame ----------------------
    t_inst, units = timed(lambda: unit_sensitivity(model, seq), args.repeat)
    ready = _lstm_kernel.ready
    _lstm_kernel.ready = lambda *a, **k: False  # the torch path (GPUs, GRUs, stacked layers)
    try:
        t_torch, torch_units = timed(lambda: unit_sensitivity(model, seq), args.repeat)
    finally:
        _lstm_kernel.ready = ready
    same = float(np.abs(units - torch_units).max() / np.abs(torch_units).max())
    frames = np.linspace(0, t - 1, args.sample_frames).round().astype(int).tolist()
    per_frame, sampled = baseline(model, seq, frames)
    t_base = per_frame * t
    raw = unit_sensitivity(model, seq, normalize=False)[:, frames]
    agree = float(np.abs(raw - sampled).max())
    print(
        f"baseline: timed {len(frames)} frames x {hdim} units = {len(frames) * hdim} backward "
        f"passes ({per_frame * 1e3:.1f} ms per frame), extrapolated to {t} frames x {hdim} units "
        f"= {t * hdim} passes; max |difference| from ours on those frames: {agree:.1e}"
    )
    t_floor, _ = timed(lambda: floor(model, seq), args.repeat)
    rows.append(("instantaneous, all units (H,T,J,3)", f"{t_inst * 1e3:.1f} ms", ""))
    rows.append(("floor: LSTM forward + writing (H,T,J,3)", f"{t_floor * 1e3:.1f} ms", ""))
    rows.append(("  ratio to the floor", f"{t_inst / t_floor:.2f}x", "target <= 1.5x"))
    rows.append(
        (
            "  the torch path (no numba, GPU, GRU, stacked)",
            f"{t_torch * 1e3:.1f} ms",
            f"{t_torch / t_floor:.2f}x the floor; max rel. difference {same:.1e}",
        )
    )
    rows.append(
        (
            "baseline: 1 backward per unit per frame",
            f"{t_base:.2f} s",
            f"extrapolated from {len(frames)} frames",
        )
    )
    rows.append(("speed-up", f"{t_base / t_inst:.0f}x", "target >= 1000x"))

    # -- eq 5 for a new class from the cached unit sensitivity ---------------------------------
    per_joint = np.ascontiguousarray(units.sum(-1))
    classes = iter(range(10**9))
    t_cm, _ = timed(lambda: class_map(units, model, next(classes) % args.classes), 20)
    t_cmj, _ = timed(lambda: class_map(per_joint, model, next(classes) % args.classes), 20)
    rows.append(("class map (eq 5) from (H,T,J,3)", f"{t_cm * 1e3:.2f} ms", "target < 10 ms"))
    rows.append(("class map (eq 5) from (H,T,J)", f"{t_cmj * 1e3:.2f} ms", "the explorer's cache"))

    # -- through time ---------------------------------------------------------------------------
    t_tt, _ = timed(lambda: unit_sensitivity(model, seq, mode="through_time"), 3)
    rows.append(("through time, all units (H,T,J,3)", f"{t_tt * 1e3:.0f} ms", ""))
    t_ttc, _ = timed(
        lambda: joint_sensitivity(model, seq, target=0, mode="through_time"), args.repeat
    )
    rows.append(("through time, one class (T,J)", f"{t_ttc * 1e3:.1f} ms", ""))

    # -- the MSR Action3D test split, one batch ---------------------------------------------------
    from skvis_widgets.data import load_msr_action3d

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped all-zero recording
        _, test = load_msr_action3d().split_cross_subject()
    batch, lengths = test.padded()
    try:
        from skvis_widgets.model import load_pretrained

        msr = load_pretrained("msr_action3d")
        which = "pretrained"
    except Exception:  # noqa: BLE001 - not shipped yet: the same shape with random weights
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            msr = SkeletonLSTM(test.num_joints, test.num_classes, 128).eval()
        which = "random weights"
    n, tmax = batch.shape[:2]
    label = f"MSR test split: N={n}, T<={tmax}, H={msr.hidden_size} ({which})"
    t_msr, out = timed(lambda: unit_sensitivity(msr, batch, lengths=lengths), 1)
    rows.append((label, "", ""))
    rows.append(
        ("  instantaneous, all units", f"{t_msr:.2f} s", f"{out.nbytes / 2**20:.0f} MiB out")
    )
    del out
    t_msrc, _ = timed(lambda: joint_sensitivity(msr, batch, target=test.labels, lengths=lengths), 1)
    rows.append(("  instantaneous, class maps (true class)", f"{t_msrc:.2f} s", ""))
    t_msrt, _ = timed(
        lambda: joint_sensitivity(
            msr, batch, target=test.labels, lengths=lengths, mode="through_time"
        ),
        1,
    )
    rows.append(("  through time, class maps (true class)", f"{t_msrt:.2f} s", ""))
    t_msru, _ = timed(
        lambda: unit_sensitivity(msr, batch, lengths=lengths, mode="through_time"), 1, False
    )
    rows.append(("  through time, all units", f"{t_msru:.2f} s", "one run"))

    if not args.no_batches:
        rng = np.random.default_rng(1)
        ntu = np.stack([random_walk(t, j, seed=s) for s in range(32)])
        ntu_labels = rng.integers(0, args.classes, 32)
        for k in (1, 32):
            rows += batch_against_loop("NTU size", model, ntu[:k], np.full(k, t), ntu_labels[:k])
        for k in (1, 32, n):
            rows += batch_against_loop(
                "MSR test split", msr, batch[:k], lengths[:k], np.asarray(test.labels)[:k]
            )

    width = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
