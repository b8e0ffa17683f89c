"""numba, once for the package: `jit` and a compile run once, now or in the background.

The projection solver (`anatomy._kernel`) and the LSTM sensitivity kernel
(`_lstm_kernel`) are compiled with numba. numba compiles a function on its first call
in a process, or loads it from its disk cache; a compile from nothing takes seconds, so
`BackgroundCompile` runs it once, in the caller's thread (`ensure`) or in a daemon
thread (`start`), and says when it is done, so that a caller can take an uncompiled
path meanwhile instead of waiting on another thread's compile.
"""

from __future__ import annotations

import collections
import threading
import warnings
from collections.abc import Callable

try:  # numba is a dependency; without it the callers take their uncompiled paths
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    njit = None  # type: ignore[assignment]

__all__ = ["available", "cached", "jit", "jit_inner", "BackgroundCompile"]

_CACHE = {"on": True}  # whether numba could cache compiled code on disk (False: said once)


def available() -> bool:
    """Whether numba is importable (the compiled paths can run)."""
    return njit is not None


def cached() -> bool:
    """Whether compiled code is cached on disk (False where numba found no place for it)."""
    return _CACHE["on"]


def jit(f, **extra):
    """``numba.njit`` with a disk cache where numba finds a writable place for one.

    Numba decides at decoration time: with no writable ``__pycache__`` beside the
    module, no writable user cache directory and no ``NUMBA_CACHE_DIR`` (a read-only
    install without a home, as in many containers), ``cache=True`` raises
    ``RuntimeError: cannot cache function ...: no locator available``, which would break
    importing the package. Then every function is compiled without a cache, with one
    warning the first time.
    """
    if njit is None:  # pragma: no cover - exercised only where numba is missing
        return f
    opts = {"nogil": True, "error_model": "numpy", **extra}
    if _CACHE["on"]:
        try:
            return njit(cache=True, **opts)(f)
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            _CACHE["on"] = False
            warnings.warn(
                f"skvis_widgets: numba cannot cache compiled code on disk ({exc}); the "
                "projection solver and the sensitivity kernel are compiled in each new "
                "process instead (some seconds on first use). Set NUMBA_CACHE_DIR to a "
                "writable folder to cache them.",
                RuntimeWarning,
                stacklevel=2,
            )
    return njit(cache=False, **opts)(f)


def jit_inner(f):
    """`jit` for a helper only called from compiled code: no CPython wrapper to build."""
    return jit(f, no_cpython_wrapper=True)


class BackgroundCompile:
    """A compile (``compile_fn``) run once per process: whether it is done, the one under way.

    ``ensure`` compiles in the caller's thread, or waits for the compile under way, and
    raises what it raised; ``start`` queues it for the one background thread and returns
    at once; ``in_progress`` (queued or compiling) tells a caller that would otherwise
    wait. Background compiles run one after the other in the order they were started
    (numba compiles one function at a time anyway): the explorer starts the sensitivity
    kernel's (2 s) before the solver's (10 s), so that it is not left waiting behind it.
    """

    def __init__(self, compile_fn: Callable[[], object]) -> None:
        self.compile_fn = compile_fn
        self.lock = threading.Lock()  # held for the whole compile
        self.ready = threading.Event()
        self.queued = False
        self.thread: threading.Thread | None = None  # the background thread that has it
        self.error: BaseException | None = None

    def ensure(self) -> None:
        """Compile now, or wait for the compile under way; raise what it raised."""
        if self.ready.is_set():
            return
        with self.lock:
            if not self.ready.is_set():
                try:
                    self.compile_fn()
                except BaseException as exc:
                    self.error = exc
                    raise
                self.error = None
                self.ready.set()

    def start(self) -> None:
        """Queue `ensure` for the background thread (once: a queued compile stays queued)."""
        with _QUEUE_LOCK:
            if self.ready.is_set() or self.queued:
                return
            self.queued = True
            _QUEUE.append(self)
            worker = _WORKER.get("thread")
            if worker is None:  # (a worker leaves the dict, under this lock, as it ends)
                worker = threading.Thread(target=_work, name="skvis-compile", daemon=True)
                _WORKER["thread"] = worker
                worker.start()
            self.thread = worker

    def in_progress(self) -> bool:
        """Whether a compile is queued or running right now (in any thread)."""
        return not self.ready.is_set() and (self.queued or self.lock.locked())


_QUEUE: collections.deque[BackgroundCompile] = collections.deque()
_QUEUE_LOCK = threading.Lock()
_WORKER: dict[str, threading.Thread] = {}


def _work() -> None:
    """The background thread: the queued compiles in order; it ends when none is left."""
    while True:
        with _QUEUE_LOCK:
            if not _QUEUE:
                del _WORKER["thread"]
                return
            job = _QUEUE[0]
        try:
            job.ensure()
        except Exception:  # noqa: BLE001 - kept in `error`; a blocking call re-raises
            pass
        finally:
            with _QUEUE_LOCK:
                _QUEUE.popleft()
                job.queued = False
