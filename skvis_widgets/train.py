"""Train the shipped model: ``python -m skvis_widgets.train msr_action3d``.

Trains a `SkeletonLSTM` on the cross-subject training half of MSR Action3D (odd
subjects), measures it on the test half (even subjects), and writes it with its
metadata to ``skvis_widgets/pretrained/msr_action3d.pt`` (or ``--out``).
Reproducible from ``--seed``.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import torch

from .data import load_msr_action3d
from .model import (
    PRETRAINED,
    TRAINING_DEFAULTS,
    SkeletonLSTM,
    accuracy,
    save_model,
    train_model,
)
from .skeleton import topology_metadata

#: The recipe of the shipped model (hyperparameters in the units of `train_model`,
#: whose defaults are the training part, `skvis_widgets.model.TRAINING_DEFAULTS`).
DEFAULTS = {"hidden_size": 256, "dropout": 0.5, **TRAINING_DEFAULTS}


#: Torch CPU threads the shipped model was trained with: the same seed at another thread
#: count gives another model (floating-point sums in another order).
SHIPPED_THREADS = 2


def train_msr_action3d(
    progress: bool = True, threads: int = SHIPPED_THREADS, **overrides: float
) -> SkeletonLSTM:
    """The recipe behind ``load_pretrained("msr_action3d")`` (`DEFAULTS`, or ``overrides``),
    at ``threads`` torch threads (default `SHIPPED_THREADS`, as the shipped model).

    Trains on the cross-subject training half (odd subjects) of the usual
    557-recording protocol and stores the test half's accuracy in ``metadata``.
    The test half only reports progress: there is no early stopping or
    model selection on it.
    """
    cfg = {**DEFAULTS, **overrides}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped all-zero recording
        data = load_msr_action3d()
    train, test = data.split_cross_subject()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg["seed"])
        model = SkeletonLSTM(
            data.num_joints,
            data.num_classes,
            hidden_size=cfg["hidden_size"],
            dropout=cfg["dropout"],
        )
    history = train_model(
        model,
        train,
        test,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        label_smoothing=cfg["label_smoothing"],
        average_last=cfg["average_last"],
        seed=cfg["seed"],
        progress=progress,
        threads=threads,
    )
    model.metadata = {
        "dataset": data.name,
        **topology_metadata(data.topology),
        "class_names": list(data.class_names),
        "hidden_size": cfg["hidden_size"],
        "split": "cross-subject, 557-recording protocol: odd subjects train, even subjects test",
        "num_train": len(train),
        "num_test": len(test),
        "train_accuracy": accuracy(model, train),
        "test_accuracy": accuracy(model, test),
        "recipe": cfg,
        "training_seconds": round(history.seconds, 1),
        "trained_on": f"{platform.machine()}, torch {torch.__version__}, {threads} threads",
    }
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=["msr_action3d"])
    for k, v in DEFAULTS.items():
        p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    p.add_argument("--threads", type=int, default=SHIPPED_THREADS)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    out = args.out or Path(__file__).parent / "pretrained" / PRETRAINED[args.dataset]
    start = time.perf_counter()
    overrides = {k: getattr(args, k) for k in DEFAULTS}
    model = train_msr_action3d(threads=args.threads, **overrides)
    save_model(model, out)
    m = model.metadata
    print(
        f"test accuracy {m['test_accuracy']:.3f} (train {m['train_accuracy']:.3f}), "
        f"{time.perf_counter() - start:.0f} s; wrote {out} ({out.stat().st_size / 1e3:.0f} kB)"
    )


if __name__ == "__main__":
    main()
