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
from .model import PRETRAINED, SkeletonLSTM, accuracy, save_model, train_model

DEFAULTS = {"hidden_size": 128, "epochs": 150, "batch_size": 32, "lr": 0.005, "seed": 0}


def train_msr_action3d(
    hidden_size: int = DEFAULTS["hidden_size"],
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    seed: int = DEFAULTS["seed"],
    progress: bool = True,
) -> SkeletonLSTM:
    """The recipe behind ``load_pretrained("msr_action3d")``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped all-zero recording
        data = load_msr_action3d()
    train, test = data.split_cross_subject()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SkeletonLSTM(data.num_joints, data.num_classes, hidden_size=hidden_size)
    history = train_model(
        model, train, test, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress
    )
    model.metadata = {
        "dataset": data.name,
        "topology": data.topology.name,
        "class_names": list(data.class_names),
        "hidden_size": hidden_size,
        "split": "cross-subject: odd subjects train, even subjects test",
        "num_train": len(train),
        "num_test": len(test),
        "train_accuracy": accuracy(model, train),
        "test_accuracy": accuracy(model, test),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "training_seconds": round(history.seconds, 1),
        "trained_on": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
    }
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=["msr_action3d"])
    for k, v in DEFAULTS.items():
        p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    out = args.out or Path(__file__).parent / "pretrained" / PRETRAINED[args.dataset]
    start = time.perf_counter()
    model = train_msr_action3d(args.hidden_size, args.epochs, args.batch_size, args.lr, args.seed)
    save_model(model, out)
    m = model.metadata
    print(
        f"test accuracy {m['test_accuracy']:.3f} (train {m['train_accuracy']:.3f}), "
        f"{time.perf_counter() - start:.0f} s; wrote {out} ({out.stat().st_size / 1e3:.0f} kB)"
    )


if __name__ == "__main__":
    main()
