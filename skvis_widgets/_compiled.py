"""numba, once for the package: `jit` and a compile run once, now or in the background.

The projection solver (`anatomy._kernel`) and the LSTM sensitivity kernel
(`_lstm_kernel`) are compiled with numba. numba compiles a function on its first call
in a process, or loads it from its disk cache; a compile from nothing takes seconds, so
`BackgroundCompile` runs it once, in the caller's thread (`ensure`) or in a daemon
thread (`start`), and says when it is done, so that a caller can take an uncompiled
path meanwhile instead of waiting on another thread's compile.
"""

from __future__ import annotations

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
    raises what it raised; ``start`` runs ``ensure`` in a daemon thread and returns at
    once; ``in_progress`` tells a caller that would otherwise wait.
    """

    def __init__(self, compile_fn: Callable[[], object], name: str) -> None:
        self.compile_fn = compile_fn
        self.name = name
        self.lock = threading.Lock()  # held for the whole compile
        self.start_lock = threading.Lock()  # one background thread at a time
        self.ready = threading.Event()
        self.thread: threading.Thread | None = None
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
        """`ensure` in a daemon thread, once (a thread that is still running is kept)."""
        with self.start_lock:
            if self.ready.is_set() or (self.thread is not None and self.thread.is_alive()):
                return

            def run() -> None:
                try:
                    self.ensure()
                except Exception:  # noqa: BLE001 - kept in `error`; a blocking call re-raises
                    pass

            self.thread = threading.Thread(target=run, name=self.name, daemon=True)
            self.thread.start()

    def in_progress(self) -> bool:
        """Whether a compile is running right now (in any thread)."""
        return not self.ready.is_set() and self.lock.locked()
