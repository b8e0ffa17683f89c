"""What the explorer shows, computed and cached; no widget code here.

`Analysis` holds a model and a dataset and answers the explorer's questions:
a sample's sequence (checked), its class probabilities, its per-unit
sensitivity (computed once per sample and kept in a small LRU cache), the
joint map for a class or a unit (a cheap re-weighting of the cached per-unit
sensitivity, eq 5), the hidden units ranked for a class, and the accuracy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from .. import methods, metrics, saliency
from .._checks import as_sequence, check_index, fc_weight
from ..errors import SkvisError
from ..model import probabilities

__all__ = ["Analysis", "hidden_size"]


def hidden_size(model: Any) -> int | None:
    """``H``, the recurrent layer's units (None when it cannot be told)."""
    h = getattr(model, "hidden_size", None)
    if isinstance(h, int):
        return h
    try:
        return int(fc_weight(model).shape[1])
    except SkvisError:
        return None


class Analysis:
    """Cached computations for one model and one dataset (thread-safe).

    Parameters
    ----------
    model : SkeletonLSTM or a wrapped recurrent classifier
    dataset : SkeletonDataset
    mode : str
        The derivative of the paper's default method: ``"instantaneous"`` (method
        ``"paper"``) or ``"through_time"`` (``"paper_through_time"``).
    method : str, optional
        The default method, any key of `skvis_widgets.methods.METHODS` (overrides
        ``mode``); the paper's need a recurrent model.
    cache_size : int
        How many (sample, method) per-unit sensitivities to keep (the paper's maps);
        the other methods' maps are kept per (sample, target, unit, method), 16 times
        as many.
    """

    #: method -> derivative kind of `skvis_widgets.saliency.unit_sensitivity`
    METHODS: dict[str, saliency.Mode] = {
        "paper": "instantaneous",
        "paper_through_time": "through_time",
    }

    def __init__(
        self,
        model: Any,
        dataset: Any,
        *,
        mode: str = "instantaneous",
        method: str | None = None,
        cache_size: int = 4,
    ) -> None:
        self.model = model
        self.dataset = dataset
        if mode not in self.METHODS.values():
            raise SkvisError(f"mode must be one of {tuple(self.METHODS.values())}, got {mode!r}")
        self.mode = mode
        #: whether the model is an LSTM/GRU with an FC head (units and the paper's maps)
        self.recurrent = methods.is_recurrent(model)
        self.method = next(m for m, k in self.METHODS.items() if k == mode)
        if method is not None:
            self.method = self.check_method(method)
        self.cache_size = int(cache_size)
        self._lock = threading.RLock()
        self.clear()

    def clear(self) -> None:
        """Forget everything computed (after the model's weights changed)."""
        with self._lock:
            self._probs: dict[int, np.ndarray] = {}
            self._units: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
            self._classes: dict[tuple[int, str], np.ndarray] = {}  # eq 5, every class
            self._all_probs: np.ndarray | None = None
            self._weight: np.ndarray | None = None
            self._faithfulness: dict[tuple[int, int, str], Any] = {}
            self._explained: OrderedDict[tuple, np.ndarray] = OrderedDict()

    # -- data -----------------------------------------------------------------------------
    def sequence(self, i: int) -> np.ndarray:
        """Sample ``i``'s ``(T, J, 3)`` sequence; raises `SkvisError` if it is not finite."""
        check_index(i, len(self.dataset), "sample")
        name = f"sample {i} ({self.dataset.ids[i]})"
        return as_sequence(self.dataset.sequences[i], self.dataset.topology, name=name)

    @property
    def weight(self) -> np.ndarray:
        """FC weight ``(C, H)`` (cached until `clear`)."""
        with self._lock:
            if self._weight is None:
                self._weight = fc_weight(self.model)
            return self._weight

    # -- predictions ------------------------------------------------------------------------
    def probs(self, i: int) -> np.ndarray:
        """Class probabilities ``(C,)`` of sample ``i``."""
        with self._lock:
            if self._all_probs is not None:
                return self._all_probs[i]
            if i not in self._probs:
                p = probabilities(self.model, [self.sequence(i)])[0]
                if not np.all(np.isfinite(p)):
                    raise SkvisError(f"sample {i}: the model's probabilities are not finite")
                self._probs[i] = p
            return self._probs[i]

    def all_probs(self) -> np.ndarray:
        """Class probabilities ``(N, C)`` of the whole dataset (computed once)."""
        with self._lock:
            if self._all_probs is None:
                for i in range(len(self.dataset)):
                    self.sequence(i)  # a clear error for a bad sample
                self._all_probs = probabilities(self.model, list(self.dataset.sequences))
            return self._all_probs

    def accuracy(self, *, use_metadata: bool = True) -> tuple[float | None, str]:
        """``(accuracy, source)``: the model's recorded test accuracy, else measured here."""
        meta = getattr(self.model, "metadata", None) or {}
        if use_metadata and isinstance(meta.get("test_accuracy"), (int, float)):
            return float(meta["test_accuracy"]), "test, recorded"
        probs = self.all_probs()
        if len(probs) == 0:
            return None, "no samples"
        return float((probs.argmax(-1) == self.dataset.labels).mean()), "on this data"

    # -- sensitivity ------------------------------------------------------------------------
    def methods(self) -> tuple[str, ...]:
        """The methods this model allows (the paper's need a recurrent model)."""
        return tuple(
            m for m, info in methods.METHODS.items() if self.recurrent or not info.recurrent_only
        )

    def check_method(self, method: str) -> str:
        """``method`` if this model allows it, else `SkvisError` saying why."""
        if method not in methods.METHODS:
            raise SkvisError(f"method must be one of {tuple(methods.METHODS)}, got {method!r}")
        if method not in self.methods():
            raise SkvisError(
                f"method {method!r} needs a recurrent model (an LSTM/GRU with an FC head); "
                f"this model allows {self.methods()}"
            )
        return method

    def _kind(self, method: str | None) -> tuple[str, saliency.Mode]:
        method = self.method if method is None else method
        if method not in self.METHODS:
            raise SkvisError(f"method must be one of {tuple(self.METHODS)}, got {method!r}")
        return method, self.METHODS[method]

    def unit_sensitivity(self, i: int, method: str | None = None) -> np.ndarray:
        """Per-unit joint sensitivity ``(H, T, J)`` of sample ``i`` (eqs 1-4, cached)."""
        method, kind = self._kind(method)
        key = (i, method)
        with self._lock:
            hit = self._units.get(key)
            if hit is not None:
                self._units.move_to_end(key)
                return hit
        seq = self.sequence(i)
        full = np.asarray(
            saliency.unit_sensitivity(self.model, seq, mode=kind, normalize=True),
            dtype=np.float32,
        )
        if full.ndim != 4 or full.shape[1:] != seq.shape:
            raise SkvisError(
                f"unit_sensitivity returned shape {full.shape}; expected (H, {seq.shape[0]}, "
                f"{seq.shape[1]}, 3)"
            )
        # Eq 4, the sum over x, y, z: three strided adds are ~20x faster than sum(-1) here.
        per_joint = full[..., 0] + full[..., 1] + full[..., 2]
        if not np.all(np.isfinite(per_joint)):
            raise SkvisError(f"sample {i}: the sensitivity is not finite (NaN in the model?)")
        with self._lock:
            self._units[key] = per_joint
            while len(self._units) > self.cache_size:
                self._classes.pop(self._units.popitem(last=False)[0], None)
        return per_joint

    def is_cached(self, i: int, method: str | None = None) -> bool:
        with self._lock:
            return (i, self._kind(method)[0]) in self._units

    def joint_map(
        self, i: int, target: int, unit: int | None = None, method: str | None = None
    ) -> np.ndarray:
        """``(T, J)`` sensitivity of sample ``i`` to class ``target`` (eq 5) or to one unit
        (eq 4), computed by ``method`` (see `METHODS`; default: the analysis's own).

        The explorer's one source of maps. The paper's re-weight the cached per-unit
        sensitivity (no gradient once the sample is cached); the other methods are
        `skvis_widgets.methods.explain` of the sample, cached per (sample, target, unit).
        """
        method = self.check_method(self.method if method is None else method)
        if method not in self.METHODS:
            return self._explain(i, target, unit, method)
        per_joint = self.unit_sensitivity(i, method)
        h = per_joint.shape[0]
        if unit is not None:
            return per_joint[check_index(unit, h, "unit")]
        w = self.weight
        target = check_index(target, w.shape[0], "target")
        return self._class_maps(i, method, per_joint)[target]

    def _class_maps(self, i: int, method: str | None, per_joint: np.ndarray) -> np.ndarray:
        """Eq 5 for every class of sample ``i`` ``(C, T, J)``: ``|W| @ S`` in one product,
        kept with the sample's unit maps.

        A class change then costs a lookup: re-weighting the ``(H, T, J)`` maps for one
        class reads them whole (4.5 MiB at NTU size, ~0.3 ms, a third of the explorer's
        class change); one matrix product for all classes costs ~1 ms once per sample.
        """
        key = (i, self._kind(method)[0])
        with self._lock:
            hit = self._classes.get(key)
        if hit is not None:
            return hit
        h = per_joint.shape[0]
        w = torch.from_numpy(np.abs(self.weight).astype(np.float32))
        maps = (w @ torch.from_numpy(per_joint).reshape(h, -1)).numpy()  # eq 5 (weigh_units)
        maps = maps.reshape(len(w), *per_joint.shape[1:])
        maps.flags.writeable = False
        with self._lock:
            if key in self._units:  # not evicted meanwhile
                self._classes[key] = maps
        return maps

    def _explain(self, i: int, target: int, unit: int | None, method: str) -> np.ndarray:
        key = (i, None if unit is not None else target, unit, method)
        with self._lock:
            hit = self._explained.get(key)
            if hit is not None:
                self._explained.move_to_end(key)
                return hit
        if unit is None:
            if self.recurrent:
                target = check_index(target, self.weight.shape[0], "target")
        values = methods.explain(
            self.model,
            self.sequence(i),
            target=None if unit is not None else int(target),
            unit=unit,
            method=method,
        )
        values = np.asarray(values, dtype=np.float32)
        if not np.all(np.isfinite(values)):
            raise SkvisError(f"sample {i}: the {method} map is not finite (NaN in the model?)")
        values.flags.writeable = False
        with self._lock:
            self._explained[key] = values
            while len(self._explained) > 16 * self.cache_size:
                self._explained.popitem(last=False)
        return values

    def faithfulness(self, i: int, target: int, method: str | None = None):
        """The deletion check of sample ``i``'s class map for ``target`` (cached).

        See `skvis_widgets.metrics.faithfulness_summary`.
        """
        method = self.check_method(self.method if method is None else method)
        key = (i, target, method)
        with self._lock:
            hit = self._faithfulness.get(key)
        if hit is not None:
            return hit
        summary = metrics.faithfulness_summary(
            self.model, self.sequence(i), self.joint_map(i, target, None, method), target
        )
        with self._lock:
            self._faithfulness[key] = summary
        return summary

    def ranked_units(self, target: int) -> tuple[np.ndarray, np.ndarray]:
        """``(units, weights)``: hidden units by decreasing ``|W_c^u|``, with ``W_c^u``
        (none for a model that is not recurrent: it has no units to offer)."""
        if not self.recurrent:
            return np.zeros(0, np.int64), np.zeros(0)
        ranking = saliency.rank_units(self.weight, target, by="weight")
        return np.asarray(ranking.units), np.asarray(ranking.weights)
