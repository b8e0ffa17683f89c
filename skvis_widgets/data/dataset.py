"""`SkeletonDataset`: normalized sequences with labels, subjects and a topology."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import SkvisError
from ..skeleton import Topology, get_topology
from .arrays import as_indices, as_labels, as_sequence
from .normalize import BodyFrame, normalize_sequence

__all__ = ["SkeletonDataset"]


@dataclass
class SkeletonDataset:
    """Skeleton sequences with class labels.

    Attributes
    ----------
    sequences : list of ndarray, each (T_i, J, 3) float32
        Body-centred (see `skvis_widgets.data.normalize_sequence`), metres.
    labels : ndarray (N,) int64
        Class indices into ``class_names``.
    subjects : ndarray (N,) int
        Performer of each sequence (-1 when unknown).
    class_names : tuple of str
    topology : Topology
    name : str
    frames : list of BodyFrame or None
        The transform each sequence was normalized with (``frames[i].invert``
        gives camera coordinates back); None for data given already normalized.
    ids : tuple of str
        A name per sequence (a file stem, or ``"sample 12"``).
    """

    sequences: list[np.ndarray]
    labels: np.ndarray
    subjects: np.ndarray
    class_names: tuple[str, ...]
    topology: Topology
    name: str = "dataset"
    frames: list[BodyFrame | None] | None = None
    ids: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.sequences)
        labels = np.asarray(self.labels).reshape(-1)
        self.labels = as_labels(labels, len(labels), name=f"{self.name}: labels")
        self.subjects = np.asarray(self.subjects, dtype=np.int64).reshape(-1)
        self.class_names = tuple(self.class_names)
        if len(self.labels) != n or len(self.subjects) != n:
            raise SkvisError(
                f"{self.name}: {n} sequences but {len(self.labels)} labels and "
                f"{len(self.subjects)} subjects"
            )
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            bad = int(self.labels[(self.labels < 0) | (self.labels >= len(self.class_names))][0])
            raise SkvisError(
                f"{self.name}: label {bad} is out of range; expected 0..{len(self.class_names) - 1} "
                f"for {len(self.class_names)} classes"
            )
        if not self.ids:
            self.ids = tuple(f"sample {i}" for i in range(n))
        if len(self.ids) != n:
            raise SkvisError(f"{self.name}: {n} sequences but {len(self.ids)} ids")
        if self.frames is None:
            self.frames = [None] * n

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        sequences: Sequence[np.ndarray] | np.ndarray,
        labels: Sequence[int] | np.ndarray,
        topology: Topology | str,
        class_names: Sequence[str],
        subjects: Sequence[int] | np.ndarray | None = None,
        *,
        normalize: bool = True,
        name: str = "dataset",
        ids: Sequence[str] | None = None,
    ) -> SkeletonDataset:
        """A dataset from users' own arrays.

        Parameters
        ----------
        sequences : sequence of (T_i, J, 3) arrays, or an (N, T, J, 3) array
            Camera (or any) coordinates in metres.
        labels : (N,) ints in ``[0, len(class_names))``
        topology : Topology or its name
        class_names : the names of the classes
        subjects : (N,) ints, optional
        normalize : bool
            Move each sequence into its body-centred frame (default). Pass False
            for data that is already normalized.
        """
        topology = get_topology(topology)
        seqs, frames = [], []
        for i, s in enumerate(sequences):
            arr = as_sequence(s, topology, name=f"{name}: sequence {i}")
            if normalize:
                arr, frame = normalize_sequence(arr, topology, return_frame=True)
            else:
                frame = None
            seqs.append(arr)
            frames.append(frame)
        labels = as_labels(labels, len(seqs), name=f"{name}: labels")
        if subjects is None:
            subjects = -np.ones(len(seqs), dtype=np.int64)
        return cls(
            seqs,
            labels,
            np.asarray(subjects),
            tuple(class_names),
            topology,
            name,
            frames,
            tuple(ids) if ids is not None else (),
        )

    # -- container protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        """``(sequence, label)`` of sample ``i``."""
        return self.sequences[i], int(self.labels[i])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_joints(self) -> int:
        return self.topology.num_joints

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> SkeletonDataset:
        """A dataset of the samples at ``indices`` (ints or a boolean mask)."""
        idx = as_indices(indices, len(self))
        return SkeletonDataset(
            [self.sequences[i] for i in idx],
            self.labels[idx],
            self.subjects[idx],
            self.class_names,
            self.topology,
            self.name,
            [self.frames[i] for i in idx],
            tuple(self.ids[i] for i in idx),
        )

    def split_cross_subject(
        self, train_subjects: Sequence[int] | None = None
    ) -> tuple[SkeletonDataset, SkeletonDataset]:
        """``(train, test)`` by performer.

        The default is the standard MSR Action3D protocol: odd subjects train, even
        subjects test. Pass ``train_subjects`` for another protocol.
        """
        if train_subjects is None:
            train_mask = self.subjects % 2 == 1
        else:
            train_mask = np.isin(self.subjects, np.asarray(train_subjects))
        if (self.subjects < 0).any():
            raise SkvisError(f"{self.name}: subjects are unknown (-1); cannot split by subject")
        return self.subset(train_mask), self.subset(~train_mask)

    def indices_of_class(self, c: int) -> np.ndarray:
        return np.flatnonzero(self.labels == c)

    def padded(self, indices: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(batch, lengths)``: sequences zero-padded to ``(N, T_max, J, 3)``."""
        idx = range(len(self)) if indices is None else indices
        seqs = [self.sequences[i] for i in idx]
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        out = np.zeros((len(seqs), lengths.max(initial=1), self.num_joints, 3), np.float32)
        for k, s in enumerate(seqs):
            out[k, : len(s)] = s
        return out, lengths

    def __repr__(self) -> str:
        return (
            f"SkeletonDataset({self.name!r}: {len(self)} sequences, {self.num_classes} classes, "
            f"{self.topology.label or self.topology.name})"
        )
