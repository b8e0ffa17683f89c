"""Unit sensitivity of a data set larger than memory, streamed with bounded memory.

    python benchmarks/bench_streaming.py [--count 10000] [--frames 300] [--joints 25]
                                         [--hidden 150] [--batch-size 8] [--threads 1]

A synthetic NTU-size data set (``--count`` random-walk sequences of ``--frames``
frames, 25 joints) is written to a ``numpy.memmap`` in a temporary directory; a
random-weight ``SkeletonLSTM`` streams it through `iter_unit_sensitivity`. The
all-unit maps of the whole set would take ``count * H * T * J * 3 * 4`` bytes (135
GB at the defaults: more than this machine's memory and disk); each batch is reduced
as it arrives to what a study keeps, each unit's sensitivity per joint summed over
the frames, ``(count, H, J)``, stored in another memmap.

Prints the peak resident memory (``ru_maxrss``) against the whole result's size and
against one batch's result, and the streaming's time per sequence (the study's
reduction of each batch timed apart) against one `unit_sensitivity` call on one
sequence measured in the same run. Not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from skvis_widgets.model import SkeletonLSTM
from skvis_widgets.saliency import iter_unit_sensitivity, prepare_kernel, unit_sensitivity


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_data(path: Path, count: int, frames: int, joints: int) -> np.memmap:
    """``count`` random walks ``(T, J, 3)`` into a memmap, a thousand at a time."""
    data = np.lib.format.open_memmap(path, "w+", np.float32, (count, frames, joints, 3))
    rng = np.random.default_rng(0)
    for start in range(0, count, 1000):
        k = min(1000, count - start)
        walk = np.cumsum(rng.normal(0, 0.01, (k, frames, joints, 3)), 1, dtype=np.float32)
        data[start : start + k] = rng.normal(0, 0.3, (k, 1, joints, 3)) + walk
    data.flush()
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--joints", type=int, default=25)
    parser.add_argument("--hidden", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    n, t, j, h = args.count, args.frames, args.joints, args.hidden
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SkeletonLSTM(j, 60, h).eval()
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        f"{torch.get_num_threads()} torch thread(s); {n} sequences, T={t}, J={j}, H={h}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(Path(tmp) / "data.npy", n, t, j)
        tuning = np.lib.format.open_memmap(Path(tmp) / "tuning.npy", "w+", np.float32, (n, h, j))
        one = np.ascontiguousarray(data[0])
        prepare_kernel()  # compiled (or loaded) before anything is timed
        unit_sensitivity(model, one)  # warm-up
        t0 = time.perf_counter()
        unit_sensitivity(model, one)
        t_one = time.perf_counter() - t0
        before = peak_rss()
        t0 = time.perf_counter()
        reducing = 0.0  # the study's own work on each batch, not the streaming's
        for sl, units in iter_unit_sensitivity(
            model, data, batch_size=args.batch_size, progress=True
        ):
            t1 = time.perf_counter()
            tuning[sl] = units.sum((2, 4))  # (n, H, J): per unit and joint, over frames and axes
            reducing += time.perf_counter() - t1
        elapsed = time.perf_counter() - t0 - reducing
        tuning.flush()
        after = peak_rss()
    whole = n * h * t * j * 3 * 4
    batch = args.batch_size * h * t * j * 3 * 4
    print(
        f"whole all-unit result {whole / 2**30:.1f} GiB; one batch's {batch / 2**20:.0f} MiB\n"
        f"peak RSS {after / 2**20:.0f} MiB ({before / 2**20:.0f} MiB before streaming): "
        f"{whole / after:.0f}x smaller than the whole result\n"
        f"streaming {elapsed:.1f} s, {elapsed / n * 1e3:.2f} ms per sequence (the reduction "
        f"of each batch, {reducing:.1f} s, not counted); one-sequence call "
        f"{t_one * 1e3:.2f} ms: ratio {elapsed / n / t_one:.2f}"
    )


if __name__ == "__main__":
    main()
