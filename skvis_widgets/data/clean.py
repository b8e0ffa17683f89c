"""Cleaning users' own recordings: lost tracking, units, frozen sequences.

Trackers write a lost joint as NaN or as exactly ``(0, 0, 0)`` (the camera's own
position, which no real joint has), and a lost body as a whole frame of them.
Left in, such a joint ends up metres from the body after normalization. Data in
millimetres or centimetres makes every distance 1000 or 100 times too large.

`clean_sequence` finds these and does what ``clean=`` asks (see `CLEAN_MODES`);
`fill_gaps` is the interpolation it uses. `SkeletonDataset.from_arrays` runs it on
every sequence and keeps a `CleaningReport` (and warns when it changed anything).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SkvisError

__all__ = [
    "CLEAN_MODES",
    "CleaningReport",
    "SequenceReport",
    "lost_tracking",
    "fill_gaps",
    "body_height",
    "clean_sequence",
]

#: ``clean=`` modes of `clean_sequence` and `SkeletonDataset.from_arrays`:
#:
#: - ``"auto"`` (default, the safe thing): frames where every joint is lost are
#:   dropped; a joint lost in some frames is filled by linear interpolation between
#:   its neighbouring tracked frames (held at the ends); millimetres and centimetres
#:   are detected and converted (``units="auto"``); constant sequences are kept and
#:   reported.
#: - ``"interpolate"``: every lost joint, whole frames too, is filled; nothing is dropped.
#: - ``"drop"``: every frame with a lost joint is dropped, and constant sequences too.
#: - ``"refuse"``: any lost tracking, a constant sequence or implausible units raise
#:   `SkvisError`.
#: - ``False``: no cleaning (NaN still raises).
CLEAN_MODES = ("auto", "interpolate", "drop", "refuse")

#: The tallest plausible body, metres: a sequence whose body spans more is in other units.
MAX_HEIGHT = 3.0
_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}


@dataclass(frozen=True)
class SequenceReport:
    """What cleaning found and did in one sequence (``index`` into the input)."""

    index: int
    frames: int
    frames_dropped: int = 0
    joints_filled: int = 0
    units: str = "m"
    height: float = float("nan")
    constant: bool = False
    dropped: bool = False
    note: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.frames_dropped or self.joints_filled or self.units != "m" or self.dropped)

    def __str__(self) -> str:
        parts = []
        if self.frames_dropped:
            parts.append(f"{self.frames_dropped} of {self.frames} frames dropped (lost tracking)")
        if self.joints_filled:
            parts.append(f"{self.joints_filled} lost joint positions interpolated")
        if self.units != "m":
            parts.append(f"converted from {self.units} (body {self.height:.0f} {self.units} tall)")
        if self.constant:
            parts.append("constant (every frame the same)" + (", dropped" if self.dropped else ""))
        if self.note:
            parts.append(self.note)
        return f"sequence {self.index}: " + ("; ".join(parts) or "clean")


@dataclass(frozen=True)
class CleaningReport:
    """Per-sequence `SequenceReport` rows of one `SkeletonDataset.from_arrays` call."""

    mode: str
    sequences: tuple[SequenceReport, ...] = field(default=())

    @property
    def frames_dropped(self) -> np.ndarray:
        return np.array([r.frames_dropped for r in self.sequences], dtype=np.int64)

    @property
    def joints_filled(self) -> np.ndarray:
        return np.array([r.joints_filled for r in self.sequences], dtype=np.int64)

    @property
    def dropped(self) -> tuple[int, ...]:
        """Input indices of the sequences left out."""
        return tuple(r.index for r in self.sequences if r.dropped)

    @property
    def changed(self) -> tuple[SequenceReport, ...]:
        return tuple(r for r in self.sequences if r.changed or r.constant or r.note)

    def __str__(self) -> str:
        changed = self.changed
        head = f"cleaning ({self.mode!r}): {len(changed)} of {len(self.sequences)} sequences"
        lines = [str(r) for r in changed[:10]]
        if len(changed) > 10:
            lines.append(f"... and {len(changed) - 10} more (see .cleaning.sequences)")
        if not lines:
            return f"cleaning ({self.mode!r}): nothing to do in {len(self.sequences)} sequences"
        return head + ":\n  " + "\n  ".join(lines)


def lost_tracking(seq: Any, *, zeros: bool = True) -> np.ndarray:
    """``(T, J)`` mask of lost joints: any NaN/inf coordinate, or (with ``zeros``) exactly
    ``(0, 0, 0)``."""
    x = np.asarray(seq, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise SkvisError(f"lost_tracking: expected shape (T, J, 3), got {x.shape}")
    lost = np.asarray(~np.isfinite(x).all(-1))  # (T, J) even for T = 0
    if zeros:
        lost |= (x == 0).all(-1)
    return lost


def fill_gaps(seq: Any, lost: Any = None, *, zeros: bool = True) -> np.ndarray:
    """Fill lost joints (``lost``, default `lost_tracking`) by linear interpolation in time.

    Each joint is interpolated between the nearest frames where it is tracked, and
    held at its first/last tracked position before/after them. Returns a new
    ``(T, J, 3)`` float32 array. Raises `SkvisError` naming the joint when a joint is
    lost in every frame (there is nothing to interpolate from).
    """
    x = np.array(seq, dtype=np.float64)
    mask = lost_tracking(x, zeros=zeros) if lost is None else np.asarray(lost, dtype=bool)
    if mask.shape != x.shape[:2]:
        raise SkvisError(f"fill_gaps: lost has shape {mask.shape}; expected {x.shape[:2]}")
    t = np.arange(len(x))
    for j in np.flatnonzero(mask.any(0)):
        ok = ~mask[:, j]
        if not ok.any():
            raise SkvisError(
                f"fill_gaps: joint {j} is lost in all {len(x)} frames; nothing to interpolate from"
            )
        for c in range(3):
            x[mask[:, j], j, c] = np.interp(t[mask[:, j]], t[ok], x[ok, j, c])
    return x.astype(np.float32)


def body_height(seq: Any) -> float:
    """The body's size: the median over frames of its largest extent along an axis
    (tracked joints only), in the data's units; NaN when no frame has two tracked joints."""
    x = np.asarray(seq, dtype=np.float64)
    lost = lost_tracking(x)
    sizes = []
    for frame, bad in zip(x, lost, strict=True):
        good = frame[~bad]
        if len(good) >= 2:
            sizes.append(float(np.ptp(good, axis=0).max()))
    return float(np.median(sizes)) if sizes else float("nan")


def clean_sequence(
    seq: Any,
    *,
    clean: str | bool = "auto",
    units: str = "auto",
    zeros: bool = True,
    index: int = 0,
    name: str = "sequence",
) -> tuple[np.ndarray | None, SequenceReport]:
    """Clean one ``(T, J, 3)`` sequence (see `CLEAN_MODES`); ``(cleaned, report)``.

    ``units``: ``"auto"`` (millimetres or centimetres detected from a body taller than
    `MAX_HEIGHT`), or ``"m"``, ``"cm"``, ``"mm"`` to say what the data is in. ``zeros``:
    whether exact ``(0, 0, 0)`` joints count as lost (not for data already centred on
    a joint). The cleaned sequence is None when the mode drops the whole sequence.
    """
    if clean not in CLEAN_MODES:
        raise SkvisError(f"clean must be one of {CLEAN_MODES} or False, got {clean!r}")
    if units != "auto" and units not in _UNITS:
        raise SkvisError(f"units must be 'auto' or one of {list(_UNITS)}, got {units!r}")
    try:
        x = np.array(seq, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SkvisError(f"{name}: cannot convert to a float array ({exc})") from None
    if x.ndim != 3 or x.shape[-1] != 3 or len(x) == 0:
        raise SkvisError(f"{name}: expected shape (T, J, 3) with T >= 1, got {x.shape}")
    n_frames = len(x)
    lost = lost_tracking(x, zeros=zeros)
    if clean == "refuse" and lost.any():
        t, j = np.argwhere(lost)[0]
        raise SkvisError(
            f"{name}: lost tracking (NaN or (0, 0, 0)) at {int(lost.sum())} joint positions, "
            f"first at frame {t}, joint {j}; clean='auto' drops lost frames and interpolates "
            "lost joints"
        )
    dropped_frames = 0
    if clean in ("auto", "drop"):
        keep = ~(lost.all(1) if clean == "auto" else lost.any(1))
        if not keep.any():
            raise SkvisError(
                f"{name}: every one of its {n_frames} frames has lost tracking "
                "(NaN or (0, 0, 0) joints); nothing is left to keep"
            )
        dropped_frames = int((~keep).sum())
        x, lost = x[keep], lost[keep]
    filled = int(lost.sum())
    if filled:
        x = fill_gaps(x, lost)
    # units
    height = body_height(x)
    unit = "m" if units == "auto" else units
    note = ""
    if units == "auto" and height > MAX_HEIGHT:
        unit = next((u for u in ("mm", "cm") if 0.3 <= height * _UNITS[u] <= MAX_HEIGHT), "m")
        if unit == "m":
            note = f"implausible size: the body spans {height:.3g} m (more than {MAX_HEIGHT} m)"
            if clean == "refuse":
                raise SkvisError(f"{name}: {note}; pass units='mm' or 'cm', or scale the data")
    elif units != "auto" and height * _UNITS[unit] > MAX_HEIGHT:
        raise SkvisError(
            f"{name}: with units={units!r} the body spans {height * _UNITS[unit]:.3g} m, "
            f"more than {MAX_HEIGHT} m; are the data in other units?"
        )
    x = x * _UNITS[unit]
    constant = len(x) > 1 and bool((np.ptp(x, axis=0) == 0).all())
    if constant and clean == "refuse":
        raise SkvisError(f"{name}: constant (all {len(x)} frames are the same pose)")
    drop_seq = constant and clean == "drop"
    report = SequenceReport(
        index=index,
        frames=n_frames,
        frames_dropped=dropped_frames,
        joints_filled=filled,
        units=unit,
        height=height,
        constant=constant,
        dropped=drop_seq,
        note=note,
    )
    return (None if drop_seq else x.astype(np.float32)), report
