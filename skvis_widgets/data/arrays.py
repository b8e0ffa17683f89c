"""Validation of skeleton arrays: batches, labels and indices.

A sequence is ``(T, J, 3)`` float32, metres (checked by `as_sequence`, which lives in
`skvis_widgets._checks` and is re-exported here); a batch is ``(N, T, J, 3)``,
zero-padded by `pad_sequences`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .._checks import as_sequence
from ..errors import SkvisError

__all__ = ["as_sequence", "pad_sequences", "as_labels", "as_indices"]


def pad_sequences(
    sequences: Sequence[np.ndarray], num_joints: int | None = None, *, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad ``(T_i, J, 3)`` sequences into one batch: THE padder.

    Parameters
    ----------
    sequences : sequence of np.ndarray
        ``(T_i, J, 3)`` each (already checked, e.g. by `as_sequence`).
    num_joints : int, optional
        ``J`` of an empty batch (otherwise read from the first sequence).
    dtype : numpy dtype
        Of the batch.

    Returns
    -------
    batch : np.ndarray
        ``(N, T_max, J, 3)``, zero past each sequence's length (``T_max`` is 1 for an
        empty batch).
    lengths : np.ndarray
        ``(N,)`` int64, each sequence's ``T_i``.
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    if num_joints is None:
        if not len(sequences):
            raise SkvisError("pad_sequences: no sequences and no num_joints")
        num_joints = int(np.shape(sequences[0])[1])
    out = np.zeros((len(sequences), lengths.max(initial=1), num_joints, 3), dtype)
    for k, s in enumerate(sequences):
        if np.shape(s)[1:] != (num_joints, 3):
            raise SkvisError(
                f"pad_sequences: sequence {k} has shape {np.shape(s)}; expected "
                f"(T, {num_joints}, 3)"
            )
        out[k, : len(s)] = s
    return out, lengths


def as_labels(
    labels: object, n: int, *, name: str = "labels", class_names: Iterable[object] | None = None
) -> np.ndarray:
    """``n`` class labels as int64: whole numbers, or (given ``class_names``) the class
    names themselves, mapped to their indices. ``1.7``, or a name that is not a class,
    is an error."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise SkvisError(f"{name}: expected {n} labels, got shape {arr.shape}")
    if arr.dtype.kind in "US" or (arr.dtype == object and n and isinstance(arr[0], str)):
        names = [str(c) for c in class_names] if class_names is not None else None
        index = {c: i for i, c in enumerate(names or [])}
        bad = next((v for v in arr.tolist() if v not in index), None)
        if bad is None and names is not None:
            return np.array([index[v] for v in arr.tolist()], dtype=np.int64)
        shown = ", ".join(map(repr, names[:12])) if names else "none given"
        raise SkvisError(
            f"{name}: class labels must be whole numbers (class indices) or class names; "
            f"{bad!r} is neither (class names: {shown})"
        )
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer)
        or (
            np.issubdtype(arr.dtype, np.floating)
            and np.isfinite(arr).all()
            and (arr == np.round(arr)).all()
        )
    ):
        bad = next((v for v in arr.tolist() if not isinstance(v, int) or isinstance(v, bool)), arr)
        raise SkvisError(
            f"{name}: class labels must be whole numbers (class indices), got {bad!r} "
            f"(dtype {arr.dtype}); map names to indices first, e.g. "
            "class_names.index(name)"
        )
    return arr.astype(np.int64)


def as_indices(indices: object, n: int, *, name: str = "indices") -> np.ndarray:
    """Indices into ``n`` items as int64 in ``0..n-1``: ints (negative count from the end)
    or a boolean mask of length ``n``; an empty list selects nothing."""
    arr = np.asarray(indices)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise SkvisError(f"{name}: a boolean mask must have shape ({n},), got {arr.shape}")
        return np.flatnonzero(arr).astype(np.int64)
    arr = arr.reshape(-1)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise SkvisError(f"{name}: expected ints or a boolean mask, got dtype {arr.dtype}")
    out_of_range = (arr < -n) | (arr >= n)
    if out_of_range.any():
        raise SkvisError(f"{name}: index {int(arr[out_of_range][0])} out of range for {n} items")
    return np.where(arr < 0, arr + n, arr).astype(np.int64)
