"""Atlases: what a user needs before choosing a class or a hidden unit.

`class_atlas`
    Per class, the mean joint map over its sequences on a normalized time axis
    ``(C, K, J)`` (each map scaled to sum 1, so every sequence weighs the same), its
    body-part shares, and the same for the model with every weight re-initialized:
    what the class's map shows beyond what the architecture and the input give.
`unit_atlas`
    Per hidden unit, its mean activation per class ``(H, C)``, a class-selectivity
    index, its body-part tuning (from its eq-4 sensitivity) and when in the sequence it
    peaks.

Both are pure functions returning frozen dataclasses with read-only arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._checks import check_layer, check_model, check_positive_int, eval_view, first_weight
from .data.arrays import pad_sequences
from .errors import SkvisError
from .results import freeze_fields
from .skeleton import BODY_PARTS, check_model_topology

__all__ = ["ClassAtlas", "UnitAtlas", "class_atlas", "unit_atlas", "time_bins"]


@dataclass(frozen=True, eq=False)
class ClassAtlas:
    """Mean maps per class on a normalized time axis, beside a randomized model's.

    Attributes
    ----------
    method : str
    class_names : tuple of str
    part_names : tuple of str
        `skvis_widgets.skeleton.BODY_PARTS` that have joints in the topology.
    counts : ndarray (C,)
        Sequences per class (0: no sequence; its rows are NaN).
    maps, random_maps : ndarray (C, K, J)
        Mean over the class's sequences of the map (scaled to sum 1) averaged over each
        of ``K`` equal stretches of the sequence (`time_bins`); a row sums to 1.
    part_time, random_part_time : ndarray (C, K, P)
        ``maps`` summed over each part's joints.
    part_shares, random_part_shares : ndarray (C, P)
        ``part_time`` summed over time: each part's share of the class's maps.
    cancelled : bool
    """

    method: str
    class_names: tuple[str, ...]
    part_names: tuple[str, ...]
    counts: np.ndarray
    maps: np.ndarray
    random_maps: np.ndarray
    part_time: np.ndarray
    random_part_time: np.ndarray
    part_shares: np.ndarray
    random_part_shares: np.ndarray
    cancelled: bool = False

    def __post_init__(self) -> None:
        names = ("maps", "random_maps", "part_time", "random_part_time", "part_shares",
                 "random_part_shares")  # fmt: skip
        freeze_fields(self, names, np.float64)
        freeze_fields(self, ("counts",), np.int64)

    def leading_parts(self, randomized: bool = False) -> tuple[str, ...]:
        """The part with the largest share, per class."""
        share = self.random_part_shares if randomized else self.part_shares
        return tuple(
            self.part_names[int(np.nanargmax(s))] if np.isfinite(s).any() else "" for s in share
        )


@dataclass(frozen=True, eq=False)
class UnitAtlas:
    """Per hidden unit: response per class, selectivity, body-part tuning, timing.

    Attributes
    ----------
    layer : int
    class_names, part_names : tuple of str
    activation : ndarray (H, C)
        Mean over the class's sequences of the unit's mean response ``h_t^u`` over the
        valid frames.
    magnitude : ndarray (H, C)
        The same for ``|h_t^u|``.
    selectivity : ndarray (H,)
        Class-selectivity index on ``magnitude`` (Morcos et al. 2018):
        ``(m_max - m_rest) / (m_max + m_rest)``, ``m_rest`` the mean over the other
        classes; 0 for a unit that responds alike to every class, 1 for one class only.
    preferred_class : ndarray (H,) of int
        ``argmax`` of ``magnitude``.
    part_tuning : ndarray (H, P)
        Share of each body part in the unit's eq-4 sensitivity (`unit_sensitivity`,
        instantaneous, eq-3 normalized) summed over frames and sequences; rows sum to 1.
    peak_time : ndarray (H, C)
        Mean over the class's sequences of when ``|h_t^u|`` peaks, as a fraction of the
        sequence (0: first frame, 1: last).
    tuning_indices : ndarray
        The sequences the tuning was computed on (`unit_atlas`'s ``tuning_samples``).
    """

    layer: int
    class_names: tuple[str, ...]
    part_names: tuple[str, ...]
    activation: np.ndarray
    magnitude: np.ndarray
    selectivity: np.ndarray
    preferred_class: np.ndarray
    part_tuning: np.ndarray
    peak_time: np.ndarray
    tuning_indices: np.ndarray

    def __post_init__(self) -> None:
        names = ("activation", "magnitude", "selectivity", "part_tuning", "peak_time")
        freeze_fields(self, names, np.float64)
        freeze_fields(self, ("preferred_class", "tuning_indices"), np.int64)

    @property
    def num_units(self) -> int:
        return int(self.activation.shape[0])

    def order(self, by: str = "selectivity") -> np.ndarray:
        """Unit indices sorted for display: ``"selectivity"`` (most selective first),
        ``"preferred_class"`` (by class, then selectivity), ``"peak_time"`` (early
        first, at the preferred class), ``"unit"``, or a part name (most tuned first)."""
        h = np.arange(self.num_units)
        sel = -self.selectivity
        if by == "unit":
            return h
        if by == "selectivity":
            return np.lexsort((h, sel))
        if by == "preferred_class":
            return np.lexsort((h, sel, self.preferred_class))
        if by == "peak_time":
            return np.lexsort((h, self.peak_time[h, self.preferred_class]))
        if by in self.part_names:
            return np.lexsort((h, -self.part_tuning[:, self.part_names.index(by)]))
        raise SkvisError(
            f"order by must be 'selectivity', 'preferred_class', 'peak_time', 'unit' or a "
            f"part {list(self.part_names)}, got {by!r}"
        )


def time_bins(length: int, bins: int) -> np.ndarray:
    """``(K, L)`` weights: row ``k`` averages a per-frame quantity over the ``k``-th of
    ``K`` equal stretches of a sequence of ``L`` frames (frame ``t`` covering
    ``[t/L, (t+1)/L)``); each row sums to 1, and any ``L`` works (a frame may be shared
    by several bins when ``L < K``)."""
    length = check_positive_int(length, "length")
    bins = check_positive_int(bins, "bins")
    k = np.arange(bins)[:, None]
    t = np.arange(length)[None, :]
    overlap = np.minimum((k + 1) / bins, (t + 1) / length) - np.maximum(k / bins, t / length)
    return np.clip(overlap, 0, None) * bins


def _dataset(dataset: Any) -> tuple[list[Any], np.ndarray, tuple[str, ...], Any]:
    try:
        seqs, labels = dataset.sequences, np.asarray(dataset.labels, np.int64)
    except AttributeError:
        raise SkvisError(
            f"dataset must have .sequences and .labels (a SkeletonDataset), got "
            f"{type(dataset).__name__}"
        ) from None
    if len(seqs) == 0:
        raise SkvisError("the data set is empty")
    names = getattr(dataset, "class_names", None)
    c = int(labels.max()) + 1
    names = tuple(names) if names is not None else tuple(str(i) for i in range(c))
    return list(seqs), labels, names, getattr(dataset, "topology", None)


def _parts(topology: Any, j: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Part names and the ``(J, P)`` 0/1 membership matrix."""
    if topology is None:
        raise SkvisError("the data set has no topology: body parts are unknown")
    names = [p for p in BODY_PARTS if list(topology.part_indices(p))]
    member = np.zeros((j, len(names)))
    for k, p in enumerate(names):
        member[list(topology.part_indices(p)), k] = 1
    return tuple(names), member


def class_atlas(
    model: Any,
    dataset: Any,
    *,
    method: str = "paper",
    bins: int = 20,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
    cancel: Any = None,
) -> ClassAtlas:
    """Per class, the mean joint map over its sequences on a normalized time axis.

    Parameters
    ----------
    model : nn.Module
        Any model `skvis_widgets.methods.explain` takes with ``method``.
    dataset : SkeletonDataset
        Each sequence is explained for its own label.
    method : str
        A key of `skvis_widgets.methods.METHODS`; ``options`` go to `explain`.
    bins : int
        ``K``, stretches of the normalized time axis.
    seed : int
        Of the randomized model (`skvis_widgets.metrics.randomized_model`).
    batch_size : int
        Sequences per `explain` call (sorted by length, to pad little).
    progress, cancel
        A tqdm bar over batches; ``cancel`` (a `threading.Event`) is checked between
        batches; a cancelled atlas averages the sequences done (``cancelled=True``).

    Returns
    -------
    ClassAtlas
    """
    from tqdm.auto import tqdm

    from .methods import explain
    from .metrics import randomized_model

    seqs, labels, names, topology = _dataset(dataset)
    bins = check_positive_int(bins, "bins")
    batch_size = check_positive_int(batch_size, "batch_size")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise SkvisError(f"cancel must be a threading.Event (with is_set), got {cancel!r}")
    if hasattr(model, "metadata"):
        check_model_topology(model, topology, "the dataset")
    j = np.shape(seqs[0])[1]
    parts, member = _parts(topology, j)
    c = len(names)
    opts = dict(options or {})
    models = {"trained": model, "random": randomized_model(model, seed=seed)}
    sums = {k: np.zeros((c, bins, j)) for k in models}
    counts = np.zeros(c, np.int64)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    cancelled = False
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc=f"class atlas ({method})", disable=not progress):
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        x, lengths = pad_sequences([seqs[i] for i in idx])
        for key, m in models.items():
            maps = explain(m, x, target=labels[idx], lengths=lengths, method=method, **opts).astype(
                np.float64
            )
            for k, i in enumerate(idx):
                one = np.abs(maps[k, : lengths[k]])
                total = one.sum()
                if total > 0:
                    one = one / total
                # the mass of the map in each stretch: a row of the class sums to 1
                sums[key][labels[i]] += time_bins(int(lengths[k]), bins) @ one * (lengths[k] / bins)
        np.add.at(counts, labels[idx], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = {k: v / counts[:, None, None] for k, v in sums.items()}
    pt = {k: v @ member for k, v in mean.items()}
    return ClassAtlas(
        method=method,
        class_names=names,
        part_names=parts,
        counts=counts,
        maps=mean["trained"],
        random_maps=mean["random"],
        part_time=pt["trained"],
        random_part_time=pt["random"],
        part_shares=pt["trained"].sum(1),
        random_part_shares=pt["random"].sum(1),
        cancelled=cancelled,
    )


def unit_atlas(
    model: Any,
    dataset: Any,
    *,
    layer: int = -1,
    tuning_samples: int | None = 48,
    seed: int = 0,
    batch_size: int = 16,
) -> UnitAtlas:
    """Per hidden unit of ``layer``: what it responds to, how selectively, where and when.

    Parameters
    ----------
    model : SkeletonLSTM or RecurrentClassifier
    dataset : SkeletonDataset
    layer : int
        The recurrent layer (default the last).
    tuning_samples : int or None
        Sequences (seeded draw, sorted by length) whose eq-4 sensitivity of every unit
        gives the body-part tuning (None: all; the all-unit sensitivity is the costly
        part, ``H * T * J * 3`` values per sequence).
    batch_size : int
        Sequences per `unit_sensitivity` call.

    Returns
    -------
    UnitAtlas
        Activations come from one forward pass over the whole data set.
    """
    from .saliency import unit_sensitivity

    rnn, _ = check_model(model)
    layer = check_layer(rnn.num_layers, layer)
    seqs, labels, names, topology = _dataset(dataset)
    check_model_topology(model, topology, "the dataset")
    j = np.shape(seqs[0])[1]
    parts, member = _parts(topology, j)
    c = len(names)
    x, lengths = pad_sequences(seqs)
    p = first_weight(model)
    with eval_view(model) as m, torch.no_grad():
        # unpacked (a frame's state depends only on earlier frames), masked below
        h = m.hidden_states(torch.as_tensor(x, dtype=p.dtype, device=p.device), layer=layer)
    h = h.double().cpu().numpy()
    t = h.shape[1]
    valid = (np.arange(t)[None] < lengths[:, None])[..., None]
    per_seq = (h * valid).sum(1) / lengths[:, None]  # (N, H)
    mag_seq = (np.abs(h) * valid).sum(1) / lengths[:, None]
    peak = np.argmax(np.where(valid, np.abs(h), -1.0), axis=1) / np.maximum(lengths - 1, 1)[:, None]
    onehot = np.zeros((len(seqs), c))
    onehot[np.arange(len(seqs)), labels] = 1
    counts = onehot.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        activation = (per_seq.T @ onehot) / counts
        magnitude = (mag_seq.T @ onehot) / counts
        peak_time = (peak.T @ onehot) / counts
    present = counts > 0
    mag = magnitude[:, present]
    best = mag.max(1)
    rest = (mag.sum(1) - best) / max(mag.shape[1] - 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        selectivity = np.where(best + rest > 0, (best - rest) / (best + rest), 0.0)
    preferred = np.flatnonzero(present)[np.argmax(mag, 1)]

    n = len(seqs)
    if tuning_samples is None or tuning_samples >= n:
        tidx = np.arange(n)
    else:
        tidx = np.sort(
            np.random.default_rng(seed).choice(
                n, check_positive_int(tuning_samples, "tuning_samples"), replace=False
            )
        )
    tidx = tidx[np.argsort(lengths[tidx], kind="stable")]  # little padding per chunk
    tuning = np.zeros((rnn.hidden_size, len(parts)))
    for i in range(0, len(tidx), batch_size):
        b = tidx[i : i + batch_size]
        xb, lb = pad_sequences([seqs[k] for k in b])
        s = unit_sensitivity(model, xb, lengths=lb, layer=layer)  # (B, H, T, J, 3)
        per_joint = s.sum(axis=(0, 2, 4), dtype=np.float64)  # (H, J)
        tuning += per_joint @ member
    tot = tuning.sum(1, keepdims=True)
    tuning = np.divide(tuning, tot, out=np.zeros_like(tuning), where=tot > 0)
    return UnitAtlas(
        layer=layer,
        class_names=names,
        part_names=parts,
        activation=activation,
        magnitude=magnitude,
        selectivity=selectivity,
        preferred_class=preferred,
        part_tuning=tuning,
        peak_time=peak_time,
        tuning_indices=np.sort(tidx),
    )
