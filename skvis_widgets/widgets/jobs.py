"""`Jobs`: the explorer's one helper for background work.

Each job runs in its own daemon thread with a `threading.Event` it should poll to stop
early. Jobs are grouped in lanes (``"maximization"``, ``"check"``): `submit` on a busy
lane either refuses (``replace=False``: one activation maximization at a time) or lets
the running job go (cancelled, its result ignored by whoever checks `current`) and starts
the new one at once. `close` cancels every job and waits for their threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "Jobs"]


@dataclass(eq=False)
class Job:
    """One background job: its lane, cancel event and thread."""

    lane: str
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job's end (up to ``timeout`` s); True when it has ended."""
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)
        return not self.alive


class Jobs:
    """Background jobs by lane (thread-safe); see the module's docstring."""

    def __init__(self, prefix: str = "skvis") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._current: dict[str, Job] = {}
        self._all: list[Job] = []
        self._closed = False

    def submit(self, lane: str, fn: Callable[[Job], Any], *, replace: bool = True) -> Job | None:
        """Run ``fn(job)`` in a new thread; None when closed, or when ``lane`` is busy
        and ``replace`` is False. With ``replace``, the lane's running job is cancelled
        and let go."""
        with self._lock:
            if self._closed:
                return None
            old = self._current.get(lane)
            if old is not None and old.alive:
                if not replace:
                    return None
                old.cancel.set()
            job = Job(lane)
            job.thread = threading.Thread(
                target=fn, args=(job,), name=f"{self.prefix}-{lane}", daemon=True
            )
            self._current[lane] = job
            self._all = [j for j in self._all if j.alive] + [job]
            job.thread.start()
            return job

    def current(self, lane: str) -> Job | None:
        """The lane's latest job (running or not), None after `detach`."""
        with self._lock:
            return self._current.get(lane)

    def is_current(self, job: Job) -> bool:
        with self._lock:
            return self._current.get(job.lane) is job

    def busy(self, lane: str) -> bool:
        job = self.current(lane)
        return job is not None and job.alive

    def cancel(self, lane: str) -> None:
        """Ask the lane's job to stop (it keeps what it did)."""
        job = self.current(lane)
        if job is not None:
            job.cancel.set()

    def detach(self, lane: str) -> Job | None:
        """Cancel the lane's job and let it go: it is no longer `current`."""
        with self._lock:
            job = self._current.pop(lane, None)
        if job is not None:
            job.cancel.set()
        return job

    def wait(self, lane: str, timeout: float | None = None) -> bool:
        """Wait for the lane's current job; True when none is running."""
        job = self.current(lane)
        return True if job is None else job.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Cancel every job and wait (up to ``timeout`` s each) for its thread."""
        with self._lock:
            self._closed = True
            jobs, self._all = self._all, []
            self._current.clear()
        for job in jobs:
            job.cancel.set()
        for job in jobs:
            job.wait(timeout)
