"""How much memory one call may take: a cap checked before large allocations.

Torch-free, so ``import skvis_widgets`` stays light.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import SkvisError

__all__ = ["memory_limit", "set_memory_limit", "check_memory"]


def _default_limit() -> int:
    env = os.environ.get("SKVIS_MEMORY_LIMIT")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise SkvisError(
                f"SKVIS_MEMORY_LIMIT={env!r}: expected a number of bytes, e.g. 8e9"
            ) from None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return int(total // 2)


_limit: int | None = None


def memory_limit() -> int:
    """Bytes one call may allocate for its result or working set (see `set_memory_limit`)."""
    global _limit
    if _limit is None:
        _limit = _default_limit()
    return _limit


def set_memory_limit(nbytes: int | float | None) -> int:
    """Set the memory cap; returns the previous one. None restores the default.

    The default is half the machine's physical memory, or ``SKVIS_MEMORY_LIMIT``
    (bytes) from the environment. Functions whose result grows with their input
    (all-unit sensitivity of a big batch, long activation-maximization histories)
    check their estimate against it before allocating and raise `SkvisError` with
    the estimate and how to split the work.
    """
    global _limit
    previous = memory_limit()
    if nbytes is None:
        _limit = _default_limit()
    else:
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, float, np.number)):
            raise SkvisError(f"memory limit must be a number of bytes, got {nbytes!r}")
        if not np.isfinite(nbytes) or nbytes <= 0:
            raise SkvisError(f"memory limit must be positive and finite, got {nbytes!r}")
        _limit = int(nbytes)
    return previous


def _fmt(nbytes: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} B"


def check_memory(nbytes: float, what: str, hint: str) -> None:
    """Raise `SkvisError` naming the estimate and ``hint`` when ``nbytes`` exceeds the cap."""
    cap = memory_limit()
    if nbytes > cap:
        raise SkvisError(
            f"{what} needs about {_fmt(nbytes)}, more than the memory limit of {_fmt(cap)}; "
            f"{hint} (or raise the limit with skvis_widgets.set_memory_limit)"
        )
