"""An advisory lock across the processes of one store (``flock``) whose waiter can
give up.

Processes that would do the same work on a shared store take turns through it, and
the later ones find the work done: the service's workers, for instance, each open
the store, and without it each would bring the content-neighbour lists up to date
on its own (the same minutes of computing, once per worker). A thread waiting for
it polls, so a closing engine can stop waiting.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "work.lock"
>>> first, second = ProcessLock(path), ProcessLock(path)
>>> first.acquire(wait=False), second.acquire(wait=False)
(True, False)
>>> first.release(); second.acquire(wait=False)
True
>>> second.release()
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

POLL_SECONDS = 0.1


class ProcessLock:
    """One holder at a time among processes (and among the ``ProcessLock`` objects of
    one process: each has its own open file). Not for sharing between threads: the
    caller serializes its own threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, wait: bool, give_up: Callable[[], bool] = lambda: False) -> bool:
        """Take the lock: at once, or (``wait``) once the holder lets go, unless
        ``give_up()`` turns true first. Returns whether it is held."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a")
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait or give_up():
                    fh.close()
                    return False
                time.sleep(POLL_SECONDS)
                continue
            self._file = fh
            return True

    def release(self) -> None:
        fh, self._file = self._file, None
        if fh is not None:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
