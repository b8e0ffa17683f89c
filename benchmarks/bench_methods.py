"""explain() against Captum on the same model and inputs: ratios measured in one run.

    python benchmarks/bench_methods.py [--repeats 15] [--subset 30] [--threads 1]

Cases: one MSR test sequence on the shipped model (H=256); one NTU-size sequence
(T=300, J=25, a random SkeletonLSTM with H=150); a batch of 32 such sequences; the
whole MSR test split (273 sequences, padded with lengths in `explain`; Captum one
sequence at a time, timed on ``--subset`` sequences and extrapolated to 273).
"gradient" is compared with Captum's ``Saliency`` and "integrated_gradients" with
Captum's ``IntegratedGradients`` at equal ``n_steps`` (50) and the same baseline. Times
are the median of ``--repeats`` calls (the split: one call). Ratios > 1: explain is
faster.

The ``floor`` column is the fused LSTM's forward pass alone, without autograd, on the
same inputs (for integrated gradients: on the ``n_steps`` points of the path, for the
split ``n_steps`` times the padded split's forward): any method that needs the gradient
runs that forward and a backward through time whose recursion
(``dh_{t-1} = W_hh^T dgates_t``) costs the same matrix-vector products, so
``Captum / floor`` bounds the ratio any implementation can reach, and ``Captum /
(2 floor)`` is the realistic bound. The last block is a profile of where explain's time
goes. Not a test.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch

from skvis_widgets.data import load_msr_action3d
from skvis_widgets.methods import explain
from skvis_widgets.model import SkeletonLSTM, load_pretrained


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def forward_time(model, x: torch.Tensor, repeats: int, times: int = 1) -> float:
    """Median time of ``times`` no-grad forward passes of ``model`` on ``x``."""

    def run() -> None:
        with torch.no_grad():
            for _ in range(times):
                model(x)

    return median_time(run, repeats)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--subset", type=int, default=30)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
    from captum.attr import IntegratedGradients, Saliency

    print(f"load before: {os.getloadavg()}; {torch.get_num_threads()} torch thread(s)")
    msr = load_pretrained("msr_action3d").eval()
    test = load_msr_action3d().split_cross_subject()[1]
    k = int(np.argmin(np.abs(test.lengths - 40)))
    torch.manual_seed(0)
    ntu = SkeletonLSTM(25, 60, 150).eval()
    g = torch.Generator().manual_seed(0)
    one_ntu = torch.randn((1, 300, 25, 3), generator=g) * 0.3
    batch_ntu = torch.randn((32, 300, 25, 3), generator=g) * 0.3
    cases = [
        (f"MSR, one sequence (T={test.lengths[k]})", msr, torch.tensor(test.sequences[k])[None]),
        ("NTU-size, one sequence (T=300, H=150)", ntu, one_ntu),
        ("NTU-size, batch of 32 (T=300, H=150)", ntu, batch_ntu),
    ]
    rows = []
    for name, model, x in cases:
        sal = Saliency(model)
        tg = torch.full((len(x),), 3)
        t_cap = median_time(lambda: sal.attribute(x, target=tg).sum(-1), args.repeats)  # noqa: B023 - called at once
        t_me = median_time(lambda: explain(model, x, target=3, method="gradient"), args.repeats)  # noqa: B023
        rows.append(("gradient", name, t_cap, t_me, forward_time(model, x, args.repeats)))
    x = cases[0][2]
    base = x.mean(1, keepdim=True).expand_as(x).contiguous()
    ig = IntegratedGradients(msr)
    t_cap = median_time(
        lambda: ig.attribute(x, baselines=base, target=3, n_steps=args.steps), args.repeats
    )
    t_me = median_time(
        lambda: explain(msr, x, target=3, method="integrated_gradients", n_steps=args.steps),
        args.repeats,
    )
    floor = forward_time(msr, x.expand(args.steps, *x.shape[1:]).contiguous(), args.repeats)
    rows.append((f"integrated_gradients ({args.steps} steps)", cases[0][0], t_cap, t_me, floor))

    # the whole split: explain pads it (lengths); Captum runs one sequence at a time
    batch, lengths = test.padded()
    targets = msr.predict(test.sequences).argmax(1)
    sub = np.random.default_rng(0).choice(len(test), args.subset, replace=False)
    for method in ("gradient", "integrated_gradients"):
        opts = {"n_steps": args.steps} if method == "integrated_gradients" else {}
        t0 = time.perf_counter()
        for i in sub:
            xi = torch.tensor(test.sequences[i])[None]
            if method == "gradient":
                Saliency(msr).attribute(xi, target=int(targets[i]))
            else:
                b = xi.mean(1, keepdim=True).expand_as(xi).contiguous()
                IntegratedGradients(msr).attribute(
                    xi, baselines=b, target=int(targets[i]), n_steps=args.steps
                )
        t_cap = (time.perf_counter() - t0) * len(test) / len(sub)
        t0 = time.perf_counter()
        explain(msr, batch, target=targets, lengths=lengths, method=method, **opts)
        t_me = time.perf_counter() - t0
        label = method + (f" ({args.steps} steps)" if opts else "")
        floor = forward_time(msr, torch.as_tensor(batch), 3, args.steps if opts else 1)
        rows.append(
            (label, f"MSR test split (273; Captum on {len(sub)}, extrapolated)", t_cap, t_me, floor)
        )

    print()
    print(
        "| method | case | Captum | explain | ratio | floor | Captum / floor | Captum / 2 floor |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for method, case, tc, tm, tf in rows:
        print(
            f"| {method} | {case} | {tc * 1e3:.1f} ms | {tm * 1e3:.1f} ms | {tc / tm:.2f}x "
            f"| {tf * 1e3:.1f} ms | {tc / tf:.2f}x | {tc / (2 * tf):.2f}x |"
        )
    print(f"\nload after: {os.getloadavg()}")

    from torch.profiler import profile

    with profile() as prof:
        for _ in range(5):
            explain(ntu, one_ntu, target=3, method="gradient")
    print("\nwhere the time goes, explain(gradient) on the T=300 sequence (5 calls):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
