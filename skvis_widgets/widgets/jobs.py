"""`Jobs`: the explorer's one helper for background work.

Every job gets a `threading.Event` it should poll to stop early. Jobs are grouped in
lanes (``"maximization"``, ``"check"``, ``"scale"``):

- `submit` runs a job in a thread of its own. On a busy lane it either refuses
  (``replace=False``: one activation maximization at a time) or lets the running job go
  (cancelled, its result ignored by whoever checks `is_current`) and starts the new one
  at once.
- `post` hands a job to the lane's worker thread, which runs the latest job posted (a
  job still waiting when a newer one comes is dropped, a running one is cancelled) and
  ends after `linger` seconds without work: a burst of posts (scrolling through
  classes) starts no thread per post (a thread start costs ~10 ms on a loaded machine),
  and no idle thread stays behind.

`close` cancels every job and waits for the threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "Jobs"]


@dataclass(eq=False)
class Job:
    """One background job: its lane, cancel event, thread and end."""

    lane: str
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """Started or waiting, and not ended."""
        return not self.done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job's end (up to ``timeout`` s); True when it has ended."""
        if self.thread is threading.current_thread():
            return False
        return self.done.wait(timeout)


def _run(job: Job, fn: Callable[[Job], Any]) -> None:
    try:
        fn(job)
    finally:
        job.done.set()


class Jobs:
    """Background jobs by lane (thread-safe); see the module's docstring."""

    def __init__(self, prefix: str = "skvis", *, linger: float = 5.0) -> None:
        self.prefix = prefix
        self.linger = float(linger)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._current: dict[str, Job] = {}
        self._all: list[Job] = []
        self._pending: dict[str, tuple[Job, Callable[[Job], Any]]] = {}
        self._workers: dict[str, threading.Thread] = {}
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
                target=_run, args=(job, fn), name=f"{self.prefix}-{lane}", daemon=True
            )
            self._current[lane] = job
            self._all = [j for j in self._all if j.alive] + [job]
            job.thread.start()
            return job

    def post(self, lane: str, fn: Callable[[Job], Any]) -> Job | None:
        """Run ``fn(job)`` in the lane's worker thread, after (and instead of) whatever
        was posted before; None when closed."""
        with self._lock:
            if self._closed:
                return None
            old = self._current.get(lane)
            if old is not None:
                old.cancel.set()
            dropped = self._pending.pop(lane, None)
            if dropped is not None:
                dropped[0].done.set()
            job = Job(lane)
            self._current[lane] = job
            self._pending[lane] = (job, fn)
            worker = self._workers.get(lane)
            if worker is None:
                worker = threading.Thread(
                    target=self._work, args=(lane,), name=f"{self.prefix}-{lane}", daemon=True
                )
                self._workers[lane] = worker
                worker.start()
            job.thread = worker
            self._wake.notify_all()
            return job

    def _work(self, lane: str) -> None:
        """A lane's worker: the latest job posted, until `linger` s pass without one."""
        while True:
            with self._lock:
                self._wake.wait_for(
                    lambda: lane in self._pending or self._closed, timeout=self.linger
                )
                item = self._pending.pop(lane, None)
                if item is None or self._closed:
                    if item is not None:
                        item[0].done.set()
                    # under the lock: a later post starts a new worker
                    self._workers.pop(lane, None)
                    return
            job, fn = item
            if job.cancel.is_set():
                job.done.set()
                continue
            try:
                _run(job, fn)
            except Exception:  # noqa: BLE001, S112 - a job reports its own errors
                continue

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
            dropped = self._pending.pop(lane, None)
        if dropped is not None:
            dropped[0].done.set()
        if job is not None:
            job.cancel.set()
        return job

    def wait(self, lane: str, timeout: float | None = None) -> bool:
        """Wait for the lane's current job to end; True when none is running."""
        job = self.current(lane)
        return True if job is None else job.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Cancel every job and wait (up to ``timeout`` s each) for the threads."""
        with self._lock:
            self._closed = True
            jobs, self._all = self._all, []
            jobs += list(self._current.values())
            self._current.clear()
            for job, _ in self._pending.values():
                job.done.set()
            self._pending.clear()
            workers = list(self._workers.values())
            self._wake.notify_all()
        for job in jobs:
            job.cancel.set()
        me = threading.current_thread()
        for thread in {j.thread for j in jobs if j.thread is not None} | set(workers):
            if thread is not me:
                thread.join(timeout)
