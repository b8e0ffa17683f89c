"""Training of `SkeletonLSTM` (the paper's recipe plus augmentation), and the shipped model.

`train_model` trains any `SkeletonLSTM` on a `SkeletonDataset`; `train_msr_action3d`
is the recipe behind ``load_pretrained("msr_action3d")``, and
``python -m skvis_widgets.train msr_action3d`` (or ``skvis-train``) runs it: it trains on
the cross-subject training half of MSR Action3D (odd subjects), measures the model on
the test half (even subjects), and writes it with its metadata to
``skvis_widgets/pretrained/msr_action3d.pt`` (or ``--out``). Reproducible from ``--seed``.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_positive_int
from .data import SkeletonDataset, load_msr_action3d
from .data.arrays import pad_sequences
from .errors import SkvisError
from .model import PRETRAINED, SkeletonLSTM, accuracy, save_model
from .skeleton import check_model_topology, topology_metadata

__all__ = [
    "train_model",
    "TrainingHistory",
    "TRAINING_DEFAULTS",
    "DEFAULTS",
    "SHIPPED_THREADS",
    "train_msr_action3d",
    "main",
]

#: The training recipe of the shipped model (`train_model`'s defaults; with
#: ``hidden_size=256, dropout=0.5`` for the model it is ``skvis_widgets.train.DEFAULTS``).
TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 60,
    "batch_size": 32,
    "lr": 0.002,
    "label_smoothing": 0.1,
    "average_last": 20,
    "seed": 0,
}


@dataclass
class TrainingHistory:
    """Per-epoch training loss and accuracies (``val_accuracy`` only with a validation set)."""

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _bone_order(bones: tuple[tuple[int, int], ...], root: int) -> list[tuple[int, int]]:
    """Bones sorted parent-first (a joint's parent bone comes before its children)."""
    placed = {root}
    order: list[tuple[int, int]] = []
    while len(order) < len(bones):
        for p, c in bones:
            if p in placed and c not in placed:
                placed.add(c)
                order.append((p, c))
    return order


def _augment(
    seqs: list[np.ndarray],
    rng: np.random.Generator,
    *,
    rotate_deg: float,
    scale: float,
    jitter: float,
    speed: float,
    bone_scale: float = 0.0,
    crop: float = 0.0,
    bones: list[tuple[int, int]] | None = None,
) -> list[np.ndarray]:
    """Small rotations about the vertical (y), scaling, per-bone length changes,
    trimming of the ends, speed changes and jitter: the nuisances between subjects."""
    out = []
    for s in seqs:
        a = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
        c, n = np.cos(a), np.sin(a)
        rot = np.array([[c, 0, n], [0, 1, 0], [-n, 0, c]], np.float32)
        s = (s @ rot.T) * rng.uniform(1 - scale, 1 + scale)
        if bone_scale and bones:
            # Longer or shorter bones: move each child with its parent, then stretch the bone.
            f = rng.uniform(1 - bone_scale, 1 + bone_scale, len(bones)).astype(np.float32)
            new = s.copy()
            for k, (p, ch) in enumerate(bones):
                new[:, ch] = new[:, p] + (s[:, ch] - s[:, p]) * f[k]
            s = new
        if crop and len(s) > 8:
            most = max(1, int(len(s) * crop))
            s = s[rng.integers(0, most) : len(s) - rng.integers(0, most)]
        if speed and len(s) > 2:
            t_new = max(2, int(round(len(s) / rng.uniform(1 - speed, 1 + speed))))
            pos = np.linspace(0, len(s) - 1, t_new)
            lo = np.floor(pos).astype(int)
            hi = np.minimum(lo + 1, len(s) - 1)
            w = (pos - lo)[:, None, None].astype(np.float32)
            s = s[lo] * (1 - w) + s[hi] * w
        s = s + rng.normal(0, jitter, s.shape).astype(np.float32)
        out.append(s.astype(np.float32))
    return out


def train_model(
    model: SkeletonLSTM,
    train: SkeletonDataset,
    val: SkeletonDataset | None = None,
    *,
    epochs: int = TRAINING_DEFAULTS["epochs"],
    batch_size: int = TRAINING_DEFAULTS["batch_size"],
    lr: float = TRAINING_DEFAULTS["lr"],
    lr_step: int | None = None,
    weight_decay: float = 0.0,
    frame_loss: float = 0.0,
    label_smoothing: float = TRAINING_DEFAULTS["label_smoothing"],
    average_last: int = TRAINING_DEFAULTS["average_last"],
    rotate_deg: float = 30.0,
    scale: float = 0.1,
    bone_scale: float = 0.1,
    crop: float = 0.125,
    jitter: float = 0.01,
    speed: float = 0.15,
    seed: int = TRAINING_DEFAULTS["seed"],
    progress: bool = True,
    callback: Callable[[int, TrainingHistory], Any] | None = None,
    threads: int | None = 1,
    device: str | torch.device | None = None,
) -> TrainingHistory:
    """Train a `SkeletonLSTM` on a `SkeletonDataset` (the paper's recipe, plus augmentation).

    The defaults are the shipped model's recipe (`TRAINING_DEFAULTS`; the paper's
    rate was 0.005 over 150 epochs). Adam with initial rate ``lr``, divided by 10 after
    ``lr_step`` epochs (default two thirds of ``epochs``); gradients clipped to
    norm 1. Each batch is augmented with rotations of up to ``rotate_deg`` about
    the vertical axis, scaling by up to ``scale``, per-bone length changes of up
    to ``bone_scale``, trimming up to a fraction ``crop`` off each end, speed
    changes of up to ``speed`` and Gaussian jitter of ``jitter`` metres. The loss is the cross-entropy of the last
    valid frame's logits plus ``frame_loss`` times the mean cross-entropy of every
    frame's logits (which gives the recurrent layer a signal at every step).
    Input standardization is computed from ``train`` and stored in the model.
    ``average_last=k`` ends with the mean of the weights after each of the last
    ``k`` epochs (Polyak / stochastic weight averaging), which generalizes better
    on small data sets.

    The model records the data's topology and class names in ``metadata`` (a model
    that already records a topology must match the data's: same joint names in the
    same order, else `SkvisError` naming both).

    ``threads``: torch's CPU threads while training (default 1, restored after;
    None leaves torch's setting). ``device``: move the model there first (default:
    where it is).

    Reproducible: the same ``seed``, data, thread count, device and torch build give
    the same model (the global random state is left as it was). A different thread
    count changes the order of floating-point sums and so the model (on MSR Action3D,
    0.949 vs 0.889 test accuracy at 1 and 2 threads from the same seed).
    ``callback(epoch, history)`` runs after each epoch (for a live explorer);
    returning True from it stops training.
    """
    if threads is not None:
        threads = check_positive_int(threads, "threads")
    if device is not None:
        try:
            model.to(torch.device(device))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise SkvisError(f"device={device!r}: cannot move the model there ({exc})") from None
    for data, what in ((train, "the training data"), (val, "the validation data")):
        if data is not None and getattr(data, "topology", None) is not None:
            check_model_topology(model, data.topology, f"{what} ({getattr(data, 'name', '')!r})")
    if getattr(train, "topology", None) is not None and "topology" not in model.metadata:
        model.metadata.update(topology_metadata(train.topology))
    if getattr(train, "class_names", None) is not None:
        model.metadata.setdefault("class_names", list(train.class_names))
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(
            model,
            train,
            val,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            lr_step=lr_step,
            weight_decay=weight_decay,
            frame_loss=frame_loss,
            label_smoothing=label_smoothing,
            average_last=average_last,
            rotate_deg=rotate_deg,
            scale=scale,
            bone_scale=bone_scale,
            crop=crop,
            jitter=jitter,
            speed=speed,
            seed=seed,
            progress=progress,
            callback=callback,
        )
    finally:
        torch.set_num_threads(old_threads)


def _train(
    model: SkeletonLSTM, train: SkeletonDataset, val: SkeletonDataset | None, **kw: Any
) -> TrainingHistory:
    """The training loop of `train_model` (arguments checked there)."""
    epochs, batch_size, lr, seed = kw["epochs"], kw["batch_size"], kw["lr"], kw["seed"]
    lr_step, weight_decay, frame_loss = kw["lr_step"], kw["weight_decay"], kw["frame_loss"]
    label_smoothing = kw["label_smoothing"]
    average_last = min(int(kw["average_last"]), int(epochs))  # at most every epoch
    rotate_deg, scale, bone_scale = kw["rotate_deg"], kw["scale"], kw["bone_scale"]
    crop, jitter, speed = kw["crop"], kw["jitter"], kw["speed"]
    progress, callback = kw["progress"], kw["callback"]

    if train.num_joints != model.num_joints:
        raise SkvisError(
            f"dataset has {train.num_joints} joints, the model expects {model.num_joints}"
        )
    if train.num_classes != model.num_classes:
        raise SkvisError(
            f"dataset has {train.num_classes} classes, the model has {model.num_classes} outputs"
        )
    bones = _bone_order(train.topology.bones, train.topology.root)
    frames = np.concatenate([s.reshape(len(s), -1) for s in train.sequences])
    model.set_standardization(frames.mean(0), frames.std(0))
    rng = np.random.default_rng(seed)
    device = model.feature_mean.device
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, lr_step or max(1, (2 * epochs) // 3), 0.1)
    history = TrainingHistory()
    averaged: dict[str, torch.Tensor] = {}
    labels = torch.as_tensor(train.labels)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bar = tqdm(range(epochs), desc="training", disable=not progress)
        for epoch in bar:
            model.train()
            order = rng.permutation(len(train))
            total, correct, count = 0.0, 0, 0
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                seqs = _augment(
                    [train.sequences[k] for k in idx],
                    rng,
                    rotate_deg=rotate_deg,
                    scale=scale,
                    jitter=jitter,
                    speed=speed,
                    bone_scale=bone_scale,
                    crop=crop,
                    bones=bones,
                )
                batch, lens = pad_sequences(seqs, model.num_joints)
                x, lengths = torch.from_numpy(batch), torch.from_numpy(lens)
                y = labels[idx].to(device)
                x = x.to(device)
                frame = model.frame_logits(x, lengths)
                last = frame[torch.arange(len(idx)), lengths.to(device) - 1]
                loss = nn.functional.cross_entropy(last, y, label_smoothing=label_smoothing)
                if frame_loss:
                    mask = (torch.arange(x.shape[1])[None] < lengths[:, None]).to(device)
                    ce = nn.functional.cross_entropy(
                        frame.transpose(1, 2), y[:, None].expand(-1, x.shape[1]), reduction="none"
                    )
                    loss = loss + frame_loss * (ce * mask).sum() / mask.sum()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                total += float(loss.detach()) * len(idx)
                correct += int((last.argmax(-1) == y).sum())
                count += len(idx)
            sched.step()
            if average_last and epoch >= epochs - average_last:
                k = epoch - (epochs - average_last)
                state = {n: v.detach().clone() for n, v in model.state_dict().items()}
                if k == 0:
                    averaged = state
                else:  # the running mean of the last k + 1 epochs' weights
                    averaged = {n: averaged[n] + (state[n] - averaged[n]) / (k + 1) for n in state}
                if epoch == epochs - 1:
                    model.load_state_dict(averaged)
            history.loss.append(total / count)
            history.train_accuracy.append(correct / count)
            postfix = {"loss": f"{total / count:.3f}", "train": f"{correct / count:.2f}"}
            if val is not None:
                acc = accuracy(model, val)
                history.val_accuracy.append(acc)
                postfix["val"] = f"{acc:.3f}"
            bar.set_postfix(postfix)
            if callback is not None and callback(epoch, history):
                break
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


#: The recipe of the shipped model (hyperparameters in the units of `train_model`,
#: whose defaults are the training part, `TRAINING_DEFAULTS` above).
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
