"""A readers-writer lock: many concurrent searches, one exclusive index update."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Writer-preferring: once a writer waits, new readers queue behind it."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def reading(self) -> _Reading:
        """A block many threads may be in at once, while no writer is."""
        return _Reading(self)

    def _enter_reading(self) -> None:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def _leave_reading(self) -> None:
        with self._cond:
            self._readers -= 1
            # only a writer waits for the readers to leave
            if self._readers == 0 and self._writers_waiting:
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Reading:
    """``ReadWriteLock.reading``'s block (a class: a generator-based context manager
    costs more than the lock itself, and every ranking call takes it twice)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock._enter_reading()

    def __exit__(self, *_exc: object) -> None:
        self._lock._leave_reading()
