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

__all__ = ["read_ntu_skeleton", "main_body", "NTU_NUM_JOINTS"]

#: Joints per body in NTU RGB+D (Kinect v2).
NTU_NUM_JOINTS = 25

_BODY_FIELDS = 10
_F32_MAX = float(np.finfo(np.float32).max)


def _show(line: str) -> str:
    line = line.strip()
    return repr(line if len(line) <= 60 else line[:57] + "...")


def read_ntu_skeleton(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one NTU RGB+D ``.skeleton`` file.

    Parameters
    ----------
    path : str or path-like
        The ``.skeleton`` file. CRLF and LF line endings are both accepted.

    Returns
    -------
    numpy.ndarray
        Shape ``(M, T, 25, 3)``, ``float32``: joint positions ``x, y, z`` in metres,
        in the Kinect camera coordinates exactly as written in the file. ``M`` is the
        number of distinct body ids in the file, in order of first appearance; ``T``
        is the frame count of the first line. Where a body is absent from a frame,
        its 25 joints are NaN. A file whose frames all hold zero bodies gives
        ``M = 0``.

    Raises
    ------
    SkvisError
        For a malformed file: empty, a first line that is not a positive frame
        count, fewer frames than announced (truncated), a body count that is not a
        non-negative integer, a body line without its 10 fields, the same body id
        twice in one frame, a joint count other than 25, a joint line with fewer than
        3 numbers or with non-numeric, NaN or infinite coordinates, or non-blank
        text after the last frame. The message names the file, the 1-based line
        number and what was expected.
    OSError
        If the file cannot be read.
    """
    path = Path(path)
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")  # a trailing "\r" is whitespace to int() and split()

    def fail(i: int, msg: str) -> SkvisError:
        return SkvisError(f"{path}: line {i + 1}: {msg}")

    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    if end == 0:
        raise fail(0, "empty file; expected the frame count")

    try:
        num_frames = int(lines[0])
    except ValueError:
        raise fail(0, f"expected the frame count (an integer), got {_show(lines[0])}") from None
    if num_frames <= 0:
        raise fail(0, f"expected a positive frame count, got {num_frames}")

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
        try:
            num_bodies = int(lines[i])
        except ValueError:
            raise fail(
                i, f"expected the body count of frame {t + 1} (an integer), got {_show(lines[i])}"
            ) from None
        if num_bodies < 0:
            raise fail(i, f"expected a non-negative body count, got {num_bodies}")
        i += 1
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
            m = body_ids.setdefault(bid, len(body_ids))
            i += 1
            if i >= end:
                raise truncated(i, t, "the joint count")
            try:
                num_joints = int(lines[i])
            except ValueError:
                raise fail(
                    i, f"expected the joint count {NTU_NUM_JOINTS}, got {_show(lines[i])}"
                ) from None
            if num_joints != NTU_NUM_JOINTS:
                raise fail(i, f"expected the joint count {NTU_NUM_JOINTS}, got {num_joints}")
            i += 1
            if i + NTU_NUM_JOINTS > end:
                raise truncated(end, t, f"{NTU_NUM_JOINTS} joint lines from line {i + 1}")
            starts.append(i)
            owner_body.append(m)
            owner_frame.append(t)
            i += NTU_NUM_JOINTS
    if i < end:
        raise fail(
            i,
            f"expected the end of the file after {num_frames} frames, got {_show(lines[i])}",
        )

    out = np.full((len(body_ids), num_frames, NTU_NUM_JOINTS, 3), np.nan, dtype=np.float32)
    if not starts:
        return out

    joint_lines = [k for s in starts for k in range(s, s + NTU_NUM_JOINTS)]
    tokens = [lines[k].split(None, 3) for k in joint_lines]
    for k, tok in zip(joint_lines, tokens, strict=True):
        if len(tok) < 3:
            raise fail(k, f"expected a joint line with x y z, got {_show(lines[k])}")
    try:
        values = np.array([v for tok in tokens for v in tok[:3]], dtype=np.float64)
    except ValueError:
        for k, tok in zip(joint_lines, tokens, strict=True):
            try:
                [float(v) for v in tok[:3]]
            except ValueError:
                raise fail(
                    k, f"expected numeric joint coordinates x y z, got {_show(lines[k])}"
                ) from None
        raise  # pragma: no cover - the loop above finds the bad line
    values = values.reshape(len(starts), NTU_NUM_JOINTS, 3)
    ok = np.isfinite(values) & (np.abs(values) <= _F32_MAX)
    if not ok.all():
        r, j = np.argwhere(~ok.all(axis=2))[0]
        k = starts[r] + j
        raise fail(k, f"expected finite joint coordinates x y z, got {_show(lines[k])}")
    out[np.asarray(owner_body), np.asarray(owner_frame)] = values
    return out


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
