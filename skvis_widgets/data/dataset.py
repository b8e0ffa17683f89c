"""`SkeletonDataset`: normalized sequences with labels, subjects and a topology."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SkvisError
from ..skeleton import Topology, get_topology
from .arrays import as_indices, as_labels, as_sequence, pad_sequences
from .clean import CleaningReport, clean_sequence
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
    metadata : dict of str to ndarray (N,)
        Per-sample columns (view, setup, file, ...), for `split_by`.
    cleaning : CleaningReport or None
        What `from_arrays` found and did (lost tracking, units; see
        `skvis_widgets.data.clean`).
    """

    sequences: list[np.ndarray]
    labels: np.ndarray
    subjects: np.ndarray
    class_names: tuple[str, ...]
    topology: Topology
    name: str = "dataset"
    frames: list[BodyFrame | None] | None = None
    ids: tuple[str, ...] = field(default=())
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    cleaning: CleaningReport | None = None

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
        columns = {}
        for key, values in dict(self.metadata or {}).items():
            col = np.asarray(values)
            if col.ndim != 1 or len(col) != n:
                raise SkvisError(
                    f"{self.name}: metadata column {key!r} has shape {col.shape}; expected ({n},)"
                )
            columns[str(key)] = col
        self.metadata = columns

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        sequences: Sequence[np.ndarray] | np.ndarray,
        labels: Sequence[int] | Sequence[str] | np.ndarray,
        topology: Topology | str,
        class_names: Sequence[str] | None = None,
        subjects: Sequence[int] | np.ndarray | None = None,
        *,
        normalize: bool = True,
        name: str = "dataset",
        ids: Sequence[str] | None = None,
        metadata: Mapping[str, Sequence[Any]] | None = None,
        clean: str | bool = "auto",
        units: str = "auto",
    ) -> SkeletonDataset:
        """A dataset from users' own arrays, cleaned (see below) and normalized.

        Parameters
        ----------
        sequences : sequence of (T_i, J, 3) arrays, or an (N, T, J, 3) array
            Camera (or any) coordinates, in metres (or see ``units``).
        labels : (N,) ints in ``[0, len(class_names))``, or class names
            Names are mapped to their index in ``class_names``; with names and no
            ``class_names``, the classes are the sorted distinct names.
        topology : Topology or its name
        class_names : the names of the classes
        subjects : (N,) ints, optional
        normalize : bool
            Move each sequence into its body-centred frame (default). Pass False
            for data that is already normalized.
        metadata : mapping of str to (N,) values, optional
            Per-sample columns (``{"view": views, "setup": setups}``) for `split_by`.
        clean : {"auto", "interpolate", "drop", "refuse"} or False
            What to do with lost tracking (NaN joints, and with ``normalize`` exact
            ``(0, 0, 0)`` joints), implausible units and constant sequences; see
            `skvis_widgets.data.clean.CLEAN_MODES`. The default drops frames where
            every joint is lost, interpolates lost joints (`fill_gaps`), converts
            millimetres/centimetres and keeps constant sequences; the result's
            ``cleaning`` report gives the counts per sequence, and a warning says
            when anything was changed. Sequences dropped (``clean="drop"`` of
            constant ones) take their labels, subjects, ids and metadata with them.
        units : {"auto", "m", "cm", "mm"}
            What the coordinates are in; ``"auto"`` detects millimetres and
            centimetres from a body larger than 3 m.
        """
        topology = get_topology(topology)
        seqs_in = list(sequences)
        n = len(seqs_in)
        lab = np.asarray(labels)
        if class_names is None:
            if lab.dtype.kind not in "USO":
                raise SkvisError(f"{name}: class_names are needed for integer labels")
            class_names = sorted({str(v) for v in lab.tolist()})
        labels = as_labels(labels, n, name=f"{name}: labels", class_names=class_names)
        subjects = -np.ones(n, dtype=np.int64) if subjects is None else np.asarray(subjects)
        ids = tuple(ids) if ids is not None else tuple(f"sample {i}" for i in range(n))
        if len(ids) != n or len(subjects) != n:
            raise SkvisError(f"{name}: {n} sequences but {len(subjects)} subjects, {len(ids)} ids")
        columns = {k: np.asarray(v) for k, v in dict(metadata or {}).items()}
        for key, col in columns.items():
            if col.shape != (n,):
                raise SkvisError(
                    f"{name}: metadata column {key!r} has shape {col.shape}; expected ({n},)"
                )
        seqs, frames, keep, reports = [], [], [], []
        for i, s in enumerate(seqs_in):
            what = f"{name}: sequence {i}"
            if clean is not False:
                try:
                    s = np.asarray(s, dtype=np.float32)
                except (TypeError, ValueError) as exc:
                    raise SkvisError(f"{what}: cannot convert to a float array ({exc})") from None
                # shapes first (lost values are the cleaning's business)
                shape = as_sequence(np.where(np.isfinite(s), s, 0), topology, name=what).shape
                s = s.reshape(shape)  # (T, J*3) -> (T, J, 3)
                s, one = clean_sequence(
                    s, clean=clean, units=units, zeros=normalize, index=i, name=what
                )
                reports.append(one)
                if s is None:
                    continue
            arr = as_sequence(s, topology, name=what)
            if normalize:
                arr, frame = normalize_sequence(arr, topology, return_frame=True)
            else:
                frame = None
            seqs.append(arr)
            frames.append(frame)
            keep.append(i)
        report = CleaningReport(str(clean), tuple(reports)) if clean is not False else None
        if report is not None and report.changed:
            warnings.warn(f"{name}: {report}", stacklevel=2)
        if normalize and topology.has("head") and seqs:
            # The body frame puts the spine base (or the hips) at the origin with y up to
            # the head: a head below it in most first frames means another joint order.
            head = topology.index("head")
            low = sum(float(s[0, head, 1]) < 0 for s in seqs)
            if low > len(seqs) / 2:
                msg = (
                    f"{name}: after normalization the head is below the body centre in {low} "
                    f"of {len(seqs)} sequences: are the joints in another order than "
                    f"{topology.name!r}'s? (skvis_widgets.skeleton.reorder maps one order "
                    "to another)"
                )
                if clean == "refuse":
                    raise SkvisError(msg)
                warnings.warn(msg, stacklevel=2)
        k = np.asarray(keep, dtype=np.int64)
        return cls(
            seqs,
            labels[k],
            subjects[k],
            tuple(class_names),
            topology,
            name,
            frames,
            tuple(ids[i] for i in keep),
            {key: col[k] for key, col in columns.items()},
            report,
        )

    @classmethod
    def from_nctvm(
        cls,
        array: Any,
        labels: Sequence[int] | Sequence[str] | np.ndarray,
        topology: Topology | str,
        class_names: Sequence[str] | None = None,
        subjects: Sequence[int] | np.ndarray | None = None,
        **kwargs: Any,
    ) -> SkeletonDataset:
        """A dataset from the ``(N, C, T, V, M)`` arrays of ST-GCN-style preprocessing.

        ``C = 3`` coordinates, ``T`` frames (zero-padded at the end), ``V`` joints
        (the topology's, in its order), ``M`` bodies. Per sample, trailing all-zero
        frames (the padding) are cut and the main body is kept: the one that moves
        most, as `skvis_widgets.data.main_body` chooses for NTU RGB+D (the sum of
        the variances of its coordinates over the frames it is present in; absent
        means all zeros). Then as `from_arrays` (``**kwargs``: ``clean``, ``units``,
        ``metadata``, ...), which cleans the chosen body's lost joints.
        """
        topo = get_topology(topology)
        try:
            a = np.asarray(array, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise SkvisError(f"from_nctvm: cannot convert to a float array ({exc})") from None
        if a.ndim != 5 or a.shape[1] != 3 or min(a.shape) == 0:
            raise SkvisError(
                f"from_nctvm: expected an (N, C, T, V, M) array with C = 3 and no empty axis, "
                f"got shape {a.shape}"
            )
        if a.shape[3] != topo.num_joints:
            raise SkvisError(
                f"from_nctvm: the array has V={a.shape[3]} joints (shape {a.shape}); topology "
                f"{topo.name!r} has {topo.num_joints}"
            )
        seqs = []
        for i, sample in enumerate(a.transpose(0, 4, 2, 3, 1)):  # (M, T, V, 3)
            present = np.isfinite(sample).all(-1) & (sample != 0).any(-1)  # (M, T, V)
            frames = np.flatnonzero(present.any(axis=(0, 2)))
            if len(frames) == 0:
                raise SkvisError(f"from_nctvm: sample {i} has no body in any frame (all zeros)")
            sample, present = sample[:, : frames[-1] + 1], present[:, : frames[-1] + 1]
            seqs.append(sample[_most_motion(sample, present)].astype(np.float32))
        return cls.from_arrays(seqs, labels, topo, class_names, subjects, **kwargs)

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
        frames = self.frames or [None] * len(self)  # filled in by __post_init__
        return SkeletonDataset(
            [self.sequences[i] for i in idx],
            self.labels[idx],
            self.subjects[idx],
            self.class_names,
            self.topology,
            self.name,
            [frames[i] for i in idx],
            tuple(self.ids[i] for i in idx),
            {key: col[idx] for key, col in self.metadata.items()},
            self.cleaning,
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

    def column(self, field: str) -> np.ndarray:
        """A per-sample column: ``"subject"`` (the subjects), ``"label"``, ``"id"`` or a
        ``metadata`` key."""
        fixed = {"subject": self.subjects, "label": self.labels, "id": np.asarray(self.ids)}
        if field in fixed:
            return fixed[field]
        if field not in self.metadata:
            raise SkvisError(
                f"{self.name}: no column {field!r}; it has: "
                f"{', '.join(list(fixed) + list(self.metadata))}"
            )
        return self.metadata[field]

    def split_by(
        self, field: str, train: Sequence[Any] | Any, test: Sequence[Any] | Any = None
    ) -> tuple[SkeletonDataset, SkeletonDataset]:
        """``(train, test)`` by a column's values: e.g. ``split_by("view", train=[2, 3])``
        (cross-view), ``split_by("subject", train=[1, 3, 5])``.

        ``test`` defaults to every other value. A value that no sample has, or a value
        in both lists, raises `SkvisError`.
        """
        col = self.column(field)

        def values(v: Any) -> np.ndarray:
            return np.asarray([v] if np.ndim(v) == 0 else list(v))

        tr = values(train)
        present = set(col.tolist())
        missing = [v for v in tr.tolist() if v not in present]
        te = None if test is None else values(test)
        if te is not None:
            missing += [v for v in te.tolist() if v not in present]
            both = set(tr.tolist()) & set(te.tolist())
            if both:
                raise SkvisError(f"split_by({field!r}): {sorted(both)!r} in both train and test")
        if missing:
            raise SkvisError(
                f"split_by({field!r}): no sample has {missing!r}; values are {sorted(present)!r}"
            )
        train_mask = np.isin(col, tr)
        test_mask = ~train_mask if te is None else np.isin(col, te)
        return self.subset(train_mask), self.subset(test_mask)

    def indices_of_class(self, c: int) -> np.ndarray:
        return np.flatnonzero(self.labels == c)

    def padded(self, indices: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(batch, lengths)``: sequences zero-padded to ``(N, T_max, J, 3)``."""
        idx = range(len(self)) if indices is None else indices
        return pad_sequences([self.sequences[i] for i in idx], self.num_joints)

    def __repr__(self) -> str:
        return (
            f"SkeletonDataset({self.name!r}: {len(self)} sequences, {self.num_classes} classes, "
            f"{self.topology.label or self.topology.name})"
        )


def _most_motion(bodies: np.ndarray, present: np.ndarray) -> int:
    """Index of the body (``(M, T, V, 3)``, ``present`` ``(M, T, V)``) that moves most:
    the sum over joints and axes of its coordinates' variance over the frames where it
    is present (the rule of `skvis_widgets.data.main_body`); ties go to the first."""
    w = present[..., None].astype(np.float64)
    count = np.maximum(w.sum(axis=1), 1.0)  # (M, V, 1)
    x = np.where(w > 0, bodies, 0.0)
    mean = x.sum(axis=1) / count
    var = (w * (x - mean[:, None]) ** 2).sum(axis=1) / count
    motion = np.where(present.any(axis=(1, 2)), var.sum(axis=(1, 2)), -1.0)
    return int(np.argmax(motion))
