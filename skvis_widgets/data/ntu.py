"""Reader for the raw NTU RGB+D ``.skeleton`` files (Kinect v2, 25 joints).

The format, one value group per line (CRLF or LF line endings)::

    T                                 frame count
    then T times:
        B                             body count of this frame
        then B times:
            id clip hlc hls hrc hrs restricted lean_x lean_y tracking   (10 fields)
            25                        joint count
            25 lines of 12 values: x y z (metres, camera coordinates),
                depth x y, colour x y, orientation w x y z, tracking state

Only ``x y z`` are read. The joint order is the one of
`skvis_widgets.skeleton.KINECT_V2`.

Dataset: A. Shahroudy, J. Liu, T.-T. Ng, G. Wang, "NTU RGB+D: A Large Scale
Dataset for 3D Human Activity Analysis", CVPR 2016 (non-commercial research use).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SkvisError
from ._files import DEFAULT_MAX_ABS, check_max_abs, is_number, read_text, to_coordinates

__all__ = ["read_ntu_skeleton", "main_body", "NTU_NUM_JOINTS"]

#: Joints per body in NTU RGB+D (Kinect v2).
NTU_NUM_JOINTS = 25

_BODY_FIELDS = 10
_JOINT_FIELDS = 12
# The dense output may take this many bytes per byte of the file, and at least
# _MIN_OUT_BYTES: a real file gives well under 1 (a body-frame is ~2.7 kB of text and
# 300 bytes of output), many short-lived body ids a few.
_OUT_BYTES_PER_FILE_BYTE = 16
_MIN_OUT_BYTES = 16 * 2**20


def _show(line: str) -> str:
    line = line.strip()
    return repr(line if len(line) <= 60 else line[:57] + "...")


def _count(line: str) -> int | None:
    """A line holding one integer (optional sign, at most 18 ASCII digits), or None."""
    if line.isascii() and line.isdigit() and len(line) <= 18:  # the usual case, quick
        return int(line)
    s = line.strip()
    digits = s[1:] if s[:1] in ("+", "-") else s
    # More digits than any count a file can hold (and than int() takes from a str).
    return int(s) if digits.isascii() and digits.isdigit() and len(digits) <= 18 else None


def read_ntu_skeleton(
    path: str | os.PathLike[str], *, max_abs: float = DEFAULT_MAX_ABS
) -> np.ndarray:
    """Read one NTU RGB+D ``.skeleton`` file.

    Parameters
    ----------
    path : str or path-like
        The ``.skeleton`` file, a regular file of at most 32 MiB. CRLF and LF line
        endings are both accepted.
    max_abs : float, keyword-only
        Plausibility bound in metres: a coordinate with ``|x|``, ``|y|`` or ``|z|``
        above it is an error (default 10 m; a Kinect sees a few metres). ``inf``
        turns the bound off, not the check that values are finite in float32.

    Returns
    -------
    numpy.ndarray
        Shape ``(M, T, 25, 3)``, ``float32``: joint positions ``x, y, z`` in metres,
        in the Kinect camera coordinates exactly as written in the file. ``M`` is the
        number of distinct body ids in the file, in order of first appearance; ``T``
        is the frame count of the first line. Where a body is absent from a frame,
        its 25 joints are NaN. A file whose frames all hold zero bodies gives
        ``M = 0``. Present joints are finite with ``|value| <= max_abs``.

    Raises
    ------
    SkvisError
        For a path that is not a readable regular file (missing, a directory, a FIFO,
        a device, no permission, over 32 MiB), naming the path; and for a malformed
        file: empty, a first line that is not a positive frame count, fewer frames
        than announced (truncated), a body count that is not a non-negative integer,
        a body line without its 10 fields, the same body id twice in one frame, a
        joint count other than 25, a joint line without its 12 fields (a file cut
        inside its last line), non-numeric, NaN or infinite coordinates (also after
        the cast to float32), a coordinate beyond ``max_abs``, non-blank text after
        the last frame, or more distinct body ids than the file's size can justify
        (the ``(M, T, 25, 3)`` array may take at most 16 bytes per byte of the file,
        or 16 MiB for a small file). The message names the file, the 1-based line
        number and what was expected.
    """
    path = Path(path)
    max_abs = check_max_abs(max_abs)
    num_ids, num_frames, body, frame, xyz = _parse(
        path, read_text(path, "an NTU RGB+D .skeleton file"), max_abs
    )
    out = np.full((num_ids, num_frames, NTU_NUM_JOINTS, 3), np.nan, dtype=np.float32)
    out[body, frame] = xyz
    return out


def _parse(
    path: Path, text: str, max_abs: float
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """The file's distinct body count, frame count, and per body record its body and
    frame index and its ``(25, 3)`` float32 joints (checked)."""
    # A body id costs bytes in the file, but a frame without it still gets its 25 NaN
    # joints in the dense output: bound the output by the file's size.
    max_out_bytes = max(_MIN_OUT_BYTES, _OUT_BYTES_PER_FILE_BYTE * len(text))
    lines = text.splitlines()

    def fail(i: int, msg: str) -> SkvisError:
        return SkvisError(f"{path}: line {i + 1}: {msg}")

    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    if end == 0:
        raise fail(0, "empty file; expected the frame count")

    num_frames = _count(lines[0])
    if num_frames is None:
        raise fail(0, f"expected the frame count (an integer), got {_show(lines[0])}")
    if num_frames <= 0:
        raise fail(0, f"expected a positive frame count, got {num_frames}")
    frame_bytes = num_frames * NTU_NUM_JOINTS * 3 * 4  # one body's share of the output

    def truncated(i: int, frame: int, what: str) -> SkvisError:
        return fail(
            i,
            f"file ends after line {end} in frame {frame + 1} of {num_frames} "
            f"(truncated); expected {what}",
        )

    body_ids: dict[str, int] = {}
    starts: list[int] = []  # 0-based index of the first joint line of each body record
    owner_body: list[int] = []
    owner_frame: list[int] = []
    i = 1
    for t in range(num_frames):
        if i >= end:
            raise truncated(i, t, "the body count")
        num_bodies = _count(lines[i])
        if num_bodies is None:
            raise fail(
                i, f"expected the body count of frame {t + 1} (an integer), got {_show(lines[i])}"
            )
        if num_bodies < 0:
            raise fail(i, f"expected a non-negative body count, got {num_bodies}")
        i += 1
        if num_bodies == 0:
            continue
        seen: set[str] = set()
        for _ in range(num_bodies):
            if i >= end:
                raise truncated(i, t, "a body line")
            fields = lines[i].split()
            if len(fields) != _BODY_FIELDS:
                raise fail(
                    i,
                    f"expected a body line of {_BODY_FIELDS} fields (body id first), "
                    f"got {len(fields)}: {_show(lines[i])}",
                )
            bid = fields[0]
            if bid in seen:
                raise fail(i, f"body id {bid} appears twice in frame {t + 1}")
            seen.add(bid)
            if bid not in body_ids and (len(body_ids) + 1) * frame_bytes > max_out_bytes:
                raise fail(
                    i,
                    f"body id {_show(bid)} is distinct body {len(body_ids) + 1}: with {num_frames} "
                    f"frames the (M, T, 25, 3) float32 array would take "
                    f"{(len(body_ids) + 1) * frame_bytes / 2**20:.2f} MiB, more than the "
                    f"{max_out_bytes / 2**20:.2f} MiB a file of {len(text)} bytes can "
                    f"justify; expected a few bodies per recording",
                )
            m = body_ids.setdefault(bid, len(body_ids))
            i += 1
            if i >= end:
                raise truncated(i, t, "the joint count")
            num_joints = _count(lines[i])
            if num_joints != NTU_NUM_JOINTS:
                raise fail(i, f"expected the joint count {NTU_NUM_JOINTS}, got {_show(lines[i])}")
            i += 1
            if i + NTU_NUM_JOINTS > end:
                raise truncated(end, t, f"{NTU_NUM_JOINTS} joint lines from line {i + 1}")
            for k in range(i, i + NTU_NUM_JOINTS):
                # All 12 fields, so that a file cut inside its last line (its z, say)
                # is an error, not a shorter number.
                n = len(lines[k].split())
                if n != _JOINT_FIELDS:
                    raise fail(
                        k,
                        f"expected a joint line of {_JOINT_FIELDS} fields (x y z first), "
                        f"got {n}: {_show(lines[k])}",
                    )
            starts.append(i)
            owner_body.append(m)
            owner_frame.append(t)
            i += NTU_NUM_JOINTS
    if i < end:
        raise fail(
            i,
            f"expected the end of the file after {num_frames} frames, got {_show(lines[i])}",
        )
    if not starts:
        empty = np.zeros((0, NTU_NUM_JOINTS, 3), dtype=np.float32)
        none = np.zeros(0, dtype=np.intp)
        return len(body_ids), num_frames, none, none, empty

    def joint_line(row: int) -> int:
        return starts[row // NTU_NUM_JOINTS] + row % NTU_NUM_JOINTS

    joint_lines = [lines[k] for s in starts for k in range(s, s + NTU_NUM_JOINTS)]
    try:
        values = np.loadtxt(
            joint_lines, dtype=np.float64, comments=None, usecols=(0, 1, 2), ndmin=2
        )
    except ValueError as exc:
        for row, line in enumerate(joint_lines):
            if not all(is_number(v) for v in line.split()[:3]):
                raise fail(
                    joint_line(row), f"expected numeric joint coordinates x y z, got {_show(line)}"
                ) from None
        raise SkvisError(f"{path}: joint coordinates x y z are not numeric: {exc}") from None

    def bad(row: int, reason: str) -> SkvisError:
        k = joint_line(row)
        return fail(k, f"{reason}: {_show(lines[k])}")

    xyz = to_coordinates(values, max_abs, bad).reshape(-1, NTU_NUM_JOINTS, 3)
    return len(body_ids), num_frames, np.asarray(owner_body), np.asarray(owner_frame), xyz


def main_body(array: np.ndarray) -> np.ndarray:
    """The body NTU RGB+D's own preprocessing keeps: the one that moves most.

    Motion of a body is the sum over its joints and axes of the variance of the
    coordinate over the frames where it is present (NaN values ignored). Ties go
    to the body that appears first.

    Parameters
    ----------
    array : numpy.ndarray
        Shape ``(M, T, 25, 3)``, as returned by `read_ntu_skeleton`, ``M >= 1``.

    Returns
    -------
    numpy.ndarray
        Shape ``(T, 25, 3)``, a copy of the chosen body, same dtype and units
        (metres). Frames where the chosen body is absent stay NaN: nothing is
        filled in. For ``M = 1`` this is the single body.

    Raises
    ------
    SkvisError
        If ``array`` is not numeric of shape ``(M, T, 25, 3)`` with ``M, T >= 1``, or
        if no body has a single finite coordinate.
    """
    try:
        a = np.asarray(array)
    except Exception as exc:  # ragged nested sequences and the like
        raise SkvisError(f"main_body: expected an array of shape (M, T, 25, 3): {exc}") from None
    if a.dtype.kind not in "fiu":
        raise SkvisError(f"main_body: expected a numeric array, got dtype {a.dtype}")
    if a.ndim != 4 or a.shape[2:] != (NTU_NUM_JOINTS, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise SkvisError(
            f"main_body: expected shape (M, T, {NTU_NUM_JOINTS}, 3) with M, T >= 1, got {a.shape}"
        )
    if a.shape[0] == 1:
        return a[0].copy()
    x = a.astype(np.float64)
    finite = np.isfinite(x)
    if not finite.any(axis=(1, 2, 3)).any():
        raise SkvisError("main_body: no body has a finite coordinate")
    count = finite.sum(axis=1)  # (M, 25, 3)
    xz = np.where(finite, x, 0.0)
    safe = np.maximum(count, 1)
    mean = xz.sum(axis=1) / safe
    sq = np.where(finite, (x - mean[:, None]) ** 2, 0.0).sum(axis=1) / safe
    motion = sq.sum(axis=(1, 2))
    motion[~finite.any(axis=(1, 2, 3))] = -np.inf
    return a[int(np.argmax(motion))].copy()
