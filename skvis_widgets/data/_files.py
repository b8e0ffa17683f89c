"""Reading untrusted files (skeleton recordings, checkpoints), and the coordinate checks.

A recording file is read only if it is a regular file of bounded size: a directory,
a FIFO (which would block), ``/dev/zero`` (endless) or any other device is refused
before anything is read. Coordinates come back as float32 and are checked after the
cast: finite, and within a plausibility bound in metres.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from numbers import Real
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import SkvisError

#: Default plausibility bound of the readers, in metres: a Kinect sees people a few
#: metres away, so ``|x|``, ``|y|`` or ``|z|`` above 10 m is a corrupt file.
DEFAULT_MAX_ABS = 10.0

#: The largest file a reader accepts. Real recordings are far smaller (MSR Action3D:
#: under 1 MB; NTU RGB+D: a few MB). Parsing costs up to ~25 bytes of memory per byte
#: of file (a file of 2-character lines), so a reader stays under 1 GB whatever it reads.
MAX_FILE_BYTES = 32 * 2**20

_F32_MAX = float(np.finfo(np.float32).max)


def _mib(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.1f} MiB"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _nonblocking(file: str, flags: int) -> int:
    # Should the path become a FIFO between the stat and the open, the open does not block.
    return os.open(file, flags | getattr(os, "O_NONBLOCK", 0))


@contextmanager
def open_regular(path: Path, what: str) -> Iterator[BinaryIO]:
    """A regular file opened for binary reading, never blocking on what is not one.

    The one place that decides a path is a file worth reading: it must exist, be
    readable and be a regular file (checked before the open and again on the open
    descriptor, which is opened non-blocking, so a FIFO or a device is refused without
    a read). `SkvisError` names the path, what went wrong and ``what`` was expected.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise SkvisError(f"{path}: cannot read ({_reason(exc)}); expected {what}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SkvisError(f"{path}: {_kind(st.st_mode)}, not a regular file; expected {what}")
    try:
        fh = open(path, "rb", buffering=0, opener=_nonblocking)
    except OSError as exc:
        raise SkvisError(f"{path}: cannot read ({_reason(exc)}); expected {what}") from None
    with fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SkvisError(f"{path}: {_kind(st.st_mode)}, not a regular file; expected {what}")
        yield fh


def read_text(path: Path, what: str) -> str:
    """The whole of a regular file, as ASCII text.

    Every byte outside ASCII becomes U+FFFD, which no number parser accepts, so a
    damaged byte is reported on its line rather than read as something else. One
    character per byte: ``len`` of the result is the file's size.

    Parameters
    ----------
    path : Path
        The file.
    what : str
        What the file should be, for the messages (``"an NTU RGB+D .skeleton file"``).

    Raises
    ------
    SkvisError
        If the path does not exist, cannot be read, is not a regular file (directory,
        FIFO, device, socket) or is larger than `MAX_FILE_BYTES`; the message names the
        path.
    """
    with open_regular(path, what) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise _too_large(path, size, what)
        chunks = []
        total = 0
        try:
            # One read of the size stat gives; more only if the file grew (or is a
            # /proc-like file whose size says 0), never past the limit.
            want = min(size, MAX_FILE_BYTES) + 1
            while chunk := fh.read(want):
                chunks.append(chunk)
                total += len(chunk)
                if total > MAX_FILE_BYTES:
                    raise _too_large(path, total, what)
                want = min(2**20, MAX_FILE_BYTES + 1 - total)
        except OSError as exc:
            raise SkvisError(f"{path}: cannot read ({_reason(exc)}); expected {what}") from None
    return b"".join(chunks).decode("ascii", errors="replace")


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def _too_large(path: Path, size: int, what: str) -> SkvisError:
    return SkvisError(
        f"{path}: {_mib(size)} or more, larger than the {_mib(MAX_FILE_BYTES)} a reader "
        f"accepts (a recording is a few MB at most); expected {what}"
    )


def check_max_abs(max_abs: object) -> float:
    """``max_abs`` as a float, if it is a positive number (``inf`` turns the bound off)."""
    if isinstance(max_abs, bool) or not isinstance(max_abs, Real) or not float(max_abs) > 0:
        raise SkvisError(
            f"max_abs must be a positive number of metres (the plausibility bound on "
            f"|x|, |y|, |z|), got {max_abs!r}"
        )
    return float(max_abs)


def is_number(token: str) -> bool:
    """Whether ``token`` is a number as `numpy.loadtxt` reads it (no ``_`` separators)."""
    if "_" in token:
        return False
    try:
        float(token)
    except ValueError:
        return False
    return True


def to_coordinates(
    values: np.ndarray, max_abs: float, fail: Callable[[int, str], SkvisError]
) -> np.ndarray:
    """Rows of ``x y z`` (float64, shape ``(R, 3)``) as float32, checked after the cast.

    ``fail(row, reason)`` makes the error for the first bad row (the caller knows its
    line). A row is bad if a coordinate is NaN or infinite in the file, overflows
    float32, or exceeds ``max_abs`` metres in absolute value.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        r = int(np.argmin(finite))
        if np.isfinite(values[r]).all():
            v = values[r][np.argmax(np.abs(values[r]))]
            raise fail(
                r,
                f"NaN or infinite coordinate after the cast to float32: {v:g} is beyond "
                f"the float32 range (|x| <= {_F32_MAX:.4g}); expected finite x y z in metres",
            )
        raise fail(r, "NaN or infinite coordinate; expected finite x y z in metres")
    if not math.isinf(max_abs):
        plausible = (np.abs(out) <= max_abs).all(axis=1)
        if not plausible.all():
            r = int(np.argmin(plausible))
            v = out[r][np.argmax(np.abs(out[r]))]
            raise fail(
                r,
                f"implausible coordinate {v:g} m: expected |x|, |y|, |z| <= max_abs = "
                f"{max_abs:g} m (pass a larger max_abs to accept it)",
            )
    return out
