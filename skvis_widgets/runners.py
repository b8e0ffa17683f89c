"""Data-set-wide runs: the deletion check, maximization and body-part shares over samples.

Each runner walks the chosen samples of a `SkeletonDataset` with a tqdm bar
(``progress``) and checks ``cancel`` (a `threading.Event`) before each sample; a
cancelled run returns what it finished, with ``cancelled=True``. The model's
recorded topology must agree with the data set's (`check_model_topology`).
Results can be written with `skvis_widgets.results.save_results`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import SkeletonClassifier, check_model
from .data.arrays import as_indices
from .errors import SkvisError
from .metrics import PerturbationCurve, as_explainer, deletion_curve, randomized_model
from .optimize import MaximizationResult, maximize_activation
from .saliency import body_part_totals
from .skeleton import BODY_PARTS, check_model_topology

__all__ = [
    "DatasetRun",
    "BodyPartSummary",
    "deletion_curves",
    "maximize_dataset",
    "body_part_summary",
]


@dataclass(frozen=True)
class DatasetRun:
    """One result per sample: ``items[k]`` for sample ``indices[k]`` with ``targets[k]``."""

    indices: np.ndarray
    targets: np.ndarray
    items: tuple[Any, ...]
    cancelled: bool = False

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class BodyPartSummary:
    """Where a class's joint maps put their weight, over samples, beside controls.

    Attributes
    ----------
    target : int
    parts : tuple of str
        The body parts (`skvis_widgets.skeleton.BODY_PARTS`).
    shares : ndarray (N, P)
        Per sample, each part's share of the map (summed over frames), summing to 1.
    mean_share : ndarray (P,)
    joint_share : ndarray (J,)
        The mean share of each joint.
    top_joints : tuple of str
        Joint names by ``joint_share``, largest first.
    controls : dict of str to ndarray (P,)
        The mean part shares of the controls: ``"random_weights"`` (the same maps from
        the model with every layer re-initialized: what the architecture alone gives)
        and ``"motion"`` (each joint's path length: what plain movement gives). A
        finding about the model is one its map shows and the controls do not.
    indices : ndarray (N,)
    cancelled : bool
    """

    target: int
    parts: tuple[str, ...]
    shares: np.ndarray
    mean_share: np.ndarray
    joint_share: np.ndarray
    top_joints: tuple[str, ...]
    controls: dict[str, np.ndarray]
    indices: np.ndarray
    cancelled: bool = False

    def leading_part(self, control: str | None = None) -> str:
        """The part with the largest mean share (of the map, or of a control)."""
        share = self.mean_share if control is None else self.controls[control]
        return self.parts[int(np.argmax(share))]


def _samples(
    model: SkeletonClassifier, dataset: Any, indices: Any, targets: Any
) -> tuple[np.ndarray, np.ndarray]:
    try:
        n, labels = len(dataset), np.asarray(dataset.labels)
    except (AttributeError, TypeError):
        raise SkvisError(
            f"dataset must be a SkeletonDataset (sequences, labels, topology), got "
            f"{type(dataset).__name__}"
        ) from None
    check_model(model)
    check_model_topology(model, getattr(dataset, "topology", None), "the dataset")
    idx = np.arange(n) if indices is None else as_indices(indices, n)
    if targets is None or (isinstance(targets, str) and targets == "label"):
        tg = labels[idx]
    elif np.ndim(targets) == 0:
        tg = np.full(len(idx), int(targets))
    else:
        tg = np.asarray(targets).reshape(-1)
        if len(tg) != len(idx):
            raise SkvisError(f"{len(idx)} samples but {len(tg)} targets")
    return idx, tg.astype(np.int64)


def _walk(
    idx: np.ndarray,
    what: str,
    progress: bool,
    cancel: Any,
    run: Callable[[int, int], Any],
) -> tuple[list[Any], bool]:
    from tqdm.auto import tqdm

    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise SkvisError(f"cancel must be a threading.Event (with is_set), got {cancel!r}")
    out: list[Any] = []
    with tqdm(total=len(idx), desc=what, disable=not progress) as bar:
        for k, i in enumerate(idx):
            if cancel is not None and cancel.is_set():
                return out, True
            out.append(run(k, int(i)))
            bar.update(1)
    return out, False


def deletion_curves(
    model: SkeletonClassifier,
    dataset: Any,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    targets: Any = "label",
    method: Any = "instantaneous",
    normalize: bool = True,
    progress: bool = True,
    cancel: Any = None,
    **kwargs: Any,
) -> DatasetRun:
    """`deletion_curve` for each sample (default every one), on the map of ``method``
    (as in `skvis_widgets.metrics.randomization_test`) for ``targets`` (default each
    sample's label; an int for one class). ``kwargs`` go to `deletion_curve`."""
    idx, tg = _samples(model, dataset, indices, targets)
    explain = as_explainer(method, normalize)

    def one(k: int, i: int) -> PerturbationCurve:
        seq = dataset.sequences[i]
        return deletion_curve(
            model, seq, explain(model, seq, int(tg[k])), target=int(tg[k]), **kwargs
        )

    items, cancelled = _walk(idx, "deletion curves", progress, cancel, one)
    return DatasetRun(idx[: len(items)], tg[: len(items)], tuple(items), cancelled)


def maximize_dataset(
    model: SkeletonClassifier,
    dataset: Any,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    targets: Any = "label",
    progress: bool = True,
    cancel: Any = None,
    **kwargs: Any,
) -> DatasetRun:
    """`maximize_activation` from each sample (default every one) for ``targets``
    (default each sample's label). ``kwargs`` go to `maximize_activation` (its own bar
    is off); ``cancel`` also stops the sample in progress."""
    idx, tg = _samples(model, dataset, indices, targets)
    kwargs.setdefault("topology", getattr(dataset, "topology", None))

    def one(k: int, i: int) -> MaximizationResult:
        return maximize_activation(
            model, dataset.sequences[i], target=int(tg[k]), progress=False, cancel=cancel, **kwargs
        )

    items, cancelled = _walk(idx, "maximization", progress, cancel, one)
    cancelled = cancelled or any(r.cancelled for r in items)
    return DatasetRun(idx[: len(items)], tg[: len(items)], tuple(items), cancelled)


def body_part_summary(
    model: SkeletonClassifier,
    dataset: Any,
    target: int,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    controls: Sequence[str] = ("random_weights", "motion"),
    method: Any = "instantaneous",
    normalize: bool = True,
    seed: int = 0,
    progress: bool = True,
    cancel: Any = None,
) -> BodyPartSummary:
    """Body-part and joint shares of ``target``'s maps over samples (default: the samples
    of class ``target``), with the controls of the case-study notebooks (see
    `BodyPartSummary`)."""
    known = ("random_weights", "motion")
    bad = [c for c in controls if c not in known]
    if bad:
        raise SkvisError(f"unknown controls {bad!r}; expected some of {known}")
    if indices is None:
        indices = np.flatnonzero(np.asarray(dataset.labels) == int(target))
        if len(indices) == 0:
            raise SkvisError(f"body_part_summary: no sample of class {target}")
    idx, tg = _samples(model, dataset, indices, int(target))
    topo = dataset.topology
    explain = as_explainer(method, normalize)
    random_model = randomized_model(model, seed=seed) if "random_weights" in controls else None
    parts = tuple(BODY_PARTS)

    def shares(joint_map: Any) -> tuple[np.ndarray, np.ndarray]:
        per_joint = np.abs(np.asarray(joint_map, dtype=np.float64)).sum(0)
        total = per_joint.sum()
        per_joint = per_joint / total if total > 0 else per_joint
        by_part = body_part_totals(per_joint, topo)
        return np.array([float(by_part[p]) for p in parts]), per_joint

    def one(k: int, i: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        seq = np.asarray(dataset.sequences[i])
        part, joint = shares(explain(model, seq, int(target)))
        ctrl = {}
        if random_model is not None:
            ctrl["random_weights"] = shares(explain(random_model, seq, int(target)))[0]
        if "motion" in controls:
            path = np.linalg.norm(np.diff(seq.astype(np.float64), axis=0), axis=-1)
            ctrl["motion"] = shares(path if len(path) else np.zeros((1, seq.shape[1])))[0]
        return part, joint, ctrl

    items, cancelled = _walk(idx, f"body parts of class {target}", progress, cancel, one)
    if not items:
        raise SkvisError("body_part_summary: cancelled before the first sample")
    part_share = np.stack([it[0] for it in items])
    joint_share = np.stack([it[1] for it in items]).mean(0)
    order = np.argsort(-joint_share, kind="stable")
    return BodyPartSummary(
        target=int(target),
        parts=parts,
        shares=part_share,
        mean_share=part_share.mean(0),
        joint_share=joint_share,
        top_joints=tuple(topo.joint_names[j] for j in order),
        controls={c: np.stack([it[2][c] for it in items]).mean(0) for c in controls},
        indices=idx[: len(items)],
        cancelled=cancelled,
    )
