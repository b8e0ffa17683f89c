"""Colours, in one place: the sensitivity ramps, colour scaling and the skeleton's palette.

Pure numpy (no widget, no torch): the scene, the heatmap, the animation, `export` and
`webpage` all take their colours from here, so that a joint drawn in 3D, its heatmap cell,
a GIF frame and an exported page agree.

A map is drawn through a `ColorScale`: ``values / vmax`` clipped to ``[0, 1]`` and looked
up in a ramp (`COLORMAPS`, light for small). `fit_scale` chooses ``vmax``:

``"frame"``
    each frame's own largest value (the most contrast inside a frame; frames are not
    comparable);
``"sequence"``
    the sequence's largest value (one outlier frame, often the first, can wash out the
    rest);
``"robust"`` (the explorer's default)
    the sequence's 95th percentile, the 5% of joint-frames above it drawn in the darkest
    colour. Measured on 46 MSR Action3D test sequences (every sixth; shipped model; the
    eq-5 map of the true class), the share of joint-frames drawn in the lightest quarter
    of the ramp is 68% with per-sequence scaling (one peak, often early in the sequence,
    sets the scale), 52% at the 99th percentile, 33% at the 95th and 31% per frame: the
    95th percentile keeps nearly the per-frame contrast while frames stay comparable
    (the sequence's largest value is a median 1.8x its 95th percentile);
``"dataset"``
    a value given by the caller (e.g. a percentile over every sample's map), so that
    colours compare across sequences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import SkvisError

__all__ = [
    "COLORMAPS",
    "DEFAULT_JOINT_COLOR",
    "SIDE_COLORS",
    "SCALINGS",
    "ColorScale",
    "fit_scale",
    "check_map",
    "resolve_vmax",
    "sensitivity_colors",
    "to_hex",
    "side_of",
]

#: Sequential colour ramps as RGB stops in [0, 1], evenly spaced from 0 to 1; light is low.
COLORMAPS: Mapping[str, np.ndarray] = {
    # ColorBrewer YlOrRd (9 classes): light yellow -> dark red.
    "YlOrRd": np.array(
        [
            [255, 255, 204],
            [255, 237, 160],
            [254, 217, 118],
            [254, 178, 76],
            [253, 141, 60],
            [252, 78, 42],
            [227, 26, 28],
            [189, 0, 38],
            [128, 0, 38],
        ],
        dtype=np.float64,
    )
    / 255.0,
    # ColorBrewer Greys (9 classes): white -> black.
    "Greys": np.array(
        [
            [255, 255, 255],
            [240, 240, 240],
            [217, 217, 217],
            [189, 189, 189],
            [150, 150, 150],
            [115, 115, 115],
            [82, 82, 82],
            [37, 37, 37],
            [0, 0, 0],
        ],
        dtype=np.float64,
    )
    / 255.0,
}

#: Joint colour when no map is shown (RGB in [0, 1]).
DEFAULT_JOINT_COLOR = (0.27, 0.51, 0.71)

#: Bone colours by side of the body (RGB in [0, 1]): the subject's left limbs blue, right
#: limbs green (hues the YlOrRd joint colours never take, told apart with the common
#: red-green deficiencies), head and torso grey.
SIDE_COLORS: Mapping[str, tuple[float, float, float]] = {
    "left": (0.16, 0.45, 0.82),
    "right": (0.11, 0.62, 0.47),
    "centre": (0.45, 0.45, 0.45),
}

Scaling = Literal["frame", "sequence", "robust", "dataset"]
#: How `fit_scale` chooses the top of the ramp; see the module's docstring.
SCALINGS: tuple[str, ...] = ("frame", "sequence", "robust", "dataset")


def side_of(joint_name: str) -> str:
    """``"left"``, ``"right"`` or ``"centre"`` from a joint's name (``elbow_left``, ...)."""
    parts = str(joint_name).lower().replace("-", "_").split("_")
    if "left" in parts:
        return "left"
    if "right" in parts:
        return "right"
    return "centre"


def to_hex(rgb: Any) -> np.ndarray:
    """RGB in [0, 1], shape ``(..., 3)`` -> ``"#rrggbb"`` strings, shape ``(...)``."""
    a = np.clip(np.rint(np.asarray(rgb, dtype=np.float64) * 255), 0, 255).astype(np.int64)
    flat = a.reshape(-1, 3)
    out = np.array([f"#{r:02x}{g:02x}{b:02x}" for r, g, b in flat], dtype=object)
    return out.reshape(a.shape[:-1])


def _stops(cmap: str | Any) -> np.ndarray:
    if isinstance(cmap, str):
        if cmap not in COLORMAPS:
            raise SkvisError(f"unknown colormap {cmap!r}; available: {list(COLORMAPS)}")
        return COLORMAPS[cmap]
    stops = np.asarray(cmap, dtype=np.float64)
    if stops.ndim != 2 or stops.shape[1] != 3 or len(stops) < 2:
        raise SkvisError(f"cmap stops: expected (K >= 2, 3), got {stops.shape}")
    if stops.min() < 0 or stops.max() > 1:
        raise SkvisError("cmap stops must be RGB values in [0, 1]")
    return stops


def _ramp(u: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """``u`` in [0, 1] -> RGB float32, linear between evenly spaced ``stops``."""
    pos = np.linspace(0.0, 1.0, len(stops))
    return np.stack([np.interp(u, pos, stops[:, ch]) for ch in range(3)], -1).astype(np.float32)


def check_map(
    values: Any, shape: tuple[int, ...] | None = None, *, name: str = "values"
) -> np.ndarray:
    """THE check of a map to colour: finite and non-negative, as float64.

    Parameters
    ----------
    values : array-like
        E.g. a ``(T, J)`` joint map.
    shape : tuple of int, optional
        The shape it must have (``(T, J)``: frames, joints).
    name : str
        What the messages call it.

    Raises
    ------
    SkvisError
        Naming ``name`` and the shape: a wrong shape, NaN or infinite entries, or a
        negative entry (naming the minimum).
    """
    v = np.asarray(values, dtype=np.float64)
    if shape is not None and v.shape != shape:
        axes = " (frames, joints)" if len(shape) == 2 else ""
        raise SkvisError(f"{name} of shape {v.shape}: expected {shape}{axes}")
    if not np.isfinite(v).all():
        raise SkvisError(f"{name} of shape {v.shape} contain NaN or infinite entries")
    if v.size and v.min() < 0:
        raise SkvisError(f"{name} are non-negative; got a minimum of {v.min():g}")
    return v


def resolve_vmax(values: np.ndarray, vmax: float | None) -> float:
    """The value drawn darkest on one scale for every frame: ``vmax``, checked, or (None)
    the largest of ``values`` (1 where that is 0, so an all-zero map draws lightest)."""
    if vmax is None:
        top = float(values.max()) if values.size else 0.0
        return top if top > 0 else 1.0
    if isinstance(vmax, bool) or not isinstance(vmax, (int, float, np.number)):
        raise SkvisError(f"vmax must be a positive number, got {vmax!r}")
    if not np.isfinite(vmax) or vmax <= 0:
        raise SkvisError(f"vmax must be a positive number, got {vmax!r}")
    return float(vmax)


def sensitivity_colors(
    values: Any,
    *,
    scale: Literal["sequence", "global"] = "sequence",
    vmax: float | None = None,
    cmap: str | Any = "YlOrRd",
) -> np.ndarray:
    """Colours for sensitivities: darker for larger, as the paper draws them.

    Parameters
    ----------
    values : ndarray, any shape, non-negative
        E.g. a ``(T, J)`` joint map.
    scale : {"sequence", "global"}
        ``"sequence"``: divide by ``values.max()`` (the darkest colour is the
        sequence's largest value; all zeros stay the lightest). ``"global"``: divide
        by ``vmax`` (required), so colours compare across sequences; values above it
        saturate. (`fit_scale` offers the explorer's other scalings.)
    vmax : float, optional
        Positive; with ``scale="global"`` only.
    cmap : str or array (K, 3)
        A name of `COLORMAPS` or RGB stops in [0, 1], evenly spaced, light first.

    Returns
    -------
    ndarray, shape values.shape + (3,), float32 RGB in [0, 1]
        Linear interpolation between the stops (``np.interp`` per channel).
    """
    v = check_map(values)
    stops = _stops(cmap)
    if scale == "sequence":
        if vmax is not None:
            raise SkvisError("vmax goes with scale='global'; scale='sequence' uses the max")
        top = v.max() if v.size else 0.0
    elif scale == "global":
        if (
            isinstance(vmax, bool)
            or not isinstance(vmax, (int, float, np.number))
            or not np.isfinite(vmax)
            or vmax <= 0
        ):
            raise SkvisError(f"scale='global' needs a positive vmax (a number), got {vmax!r}")
        top = float(vmax)
    else:
        raise SkvisError(f"scale must be 'sequence' or 'global', got {scale!r}")
    u = np.clip(v / top, 0.0, 1.0) if top > 0 else np.zeros_like(v)
    return _ramp(u, stops)


@dataclass(frozen=True)
class ColorScale:
    """How a ``(T, J)`` map becomes colours: ``values[t] / vmax[t]`` in a ramp.

    Attributes
    ----------
    scaling : str
        One of `SCALINGS`.
    vmax : (T,) float64 array
        The value drawn darkest, per frame (all equal but for ``"frame"``); positive.
    quantity : str
        What the values are, e.g. ``"sensitivity to class high throw (eq 5)"``.
    units : str
        Their units, e.g. ``"normalized"`` or ``"cm"``.
    cmap : str
        A name of `COLORMAPS`.
    note : str
        How ``vmax`` was chosen, in words (``"95th percentile of the sequence"``).
    """

    scaling: str
    vmax: np.ndarray
    quantity: str = ""
    units: str = ""
    cmap: str = "YlOrRd"
    note: str = ""

    @property
    def per_frame(self) -> bool:
        return self.scaling == "frame"

    @property
    def top(self) -> float:
        """The largest ``vmax`` (the legend's upper end for a single scale)."""
        return float(self.vmax.max()) if self.vmax.size else 1.0

    def unit_values(self, values: Any, frame: int | None = None) -> np.ndarray:
        """``values / vmax`` clipped to ``[0, 1]``: ``(T, J)``, or ``(J,)`` of ``frame``."""
        v = np.asarray(values, dtype=np.float64)
        top = self.vmax if frame is None else self.vmax[frame]
        if frame is None and v.ndim == 2:
            top = top[: len(v), None]
        return np.clip(v / top, 0.0, 1.0)

    def colors(self, values: Any, frame: int | None = None) -> np.ndarray:
        """RGB float32: ``(T, J, 3)`` for the whole map, or ``(J, 3)`` for ``frame``'s row
        (``values`` then being that row)."""
        return _ramp(self.unit_values(values, frame), COLORMAPS[self.cmap])

    def hex_stops(self) -> list[str]:
        """The ramp's stops as ``"#rrggbb"``, light first (for CSS and bqplot)."""
        return list(to_hex(COLORMAPS[self.cmap]))

    def describe(self) -> str:
        """The scaling and its range in words: ``"robust scale: 0 to 0.83, 95th percentile..."``."""
        unit = f" {self.units}" if self.units and self.units != "normalized" else ""
        if self.per_frame:
            lo, hi = float(self.vmax.min()), float(self.vmax.max())
            rng = f"each frame 0 to its own max ({lo:.3g} to {hi:.3g}{unit})"
        else:
            rng = f"0 to {self.top:.3g}{unit}"
        return f"{self.scaling} scale: {rng}" + (f", {self.note}" if self.note else "")


def _percentile(v: np.ndarray, q: float) -> float:
    """``np.percentile(v, q)`` (linear interpolation) by one partition: the explorer
    scales every map it shows, and ``np.percentile``'s general path costs 4x more."""
    a = np.array(v, dtype=np.float64).ravel()
    pos = q / 100.0 * (a.size - 1)
    k = int(pos)
    if k + 1 >= a.size:
        return float(a.max())
    a.partition((k, k + 1))
    return float(a[k] + (a[k + 1] - a[k]) * (pos - k))


def fit_scale(
    values: Any,
    scaling: str = "robust",
    *,
    vmax: float | None = None,
    percentile: float = 95.0,
    quantity: str = "",
    units: str = "",
    cmap: str = "YlOrRd",
) -> ColorScale:
    """The `ColorScale` of a ``(T, J)`` map under ``scaling`` (one of `SCALINGS`).

    Parameters
    ----------
    values : (T, J) array, non-negative
    scaling : str
        ``"frame"``, ``"sequence"``, ``"robust"`` (``percentile`` of the sequence) or
        ``"dataset"`` (``vmax`` required: the caller's dataset-wide value).
    vmax : float, optional
        With ``"dataset"`` only.
    percentile : float
        In ``(0, 100]``, for ``"robust"``.

    A scale whose top would be 0 (an all-zero map) is 1, so zeros draw lightest.
    """
    v = check_map(values)
    if v.ndim != 2:
        raise SkvisError(f"values of shape {v.shape}: expected (T, J)")
    _stops(cmap)
    if scaling not in SCALINGS:
        raise SkvisError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    if vmax is not None and scaling != "dataset":
        raise SkvisError(f"vmax goes with scaling='dataset', not {scaling!r}")
    t = len(v)
    note = ""
    if scaling == "frame":
        top = v.max(1) if v.size else np.zeros(t)
    elif scaling == "sequence":
        top = np.full(t, v.max() if v.size else 0.0)
        note = "the sequence's largest value"
    elif scaling == "robust":
        if not 0 < percentile <= 100:
            raise SkvisError(f"percentile must be in (0, 100], got {percentile!r}")
        top = np.full(t, _percentile(v, percentile) if v.size else 0.0)
        note = f"{percentile:g}th percentile of the sequence, larger values darkest"
    else:
        if vmax is None or not np.isfinite(vmax) or vmax <= 0:
            raise SkvisError(f"scaling='dataset' needs a positive vmax, got {vmax!r}")
        top = np.full(t, float(vmax))
        note = "one value for every sample"
    top = np.where(top > 0, top, 1.0).astype(np.float64)
    return ColorScale(scaling, top, quantity, units, cmap, note)
