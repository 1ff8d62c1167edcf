"""The index's readers-writer lock: readers share it, a writer has it alone and waits
for the readers inside to leave, and readers that come while a writer waits queue
behind it."""

from __future__ import annotations

import threading
import time

from ownrank.engine.locks import ReadWriteLock


def test_a_writer_waits_for_the_readers_and_new_readers_wait_for_it() -> None:
    lock = ReadWriteLock()
    log: list[str] = []
    first_in, second_in = threading.Event(), threading.Event()
    release_first, release_second = threading.Event(), threading.Event()

    def reader(name: str, inside: threading.Event, release: threading.Event) -> None:
        with lock.reading():
            log.append(f"{name} in")
            inside.set()
            release.wait(5)
            log.append(f"{name} out")

    def writer() -> None:
        with lock.writing():
            log.append("writer in")
            log.append("writer out")

    readers = [
        threading.Thread(target=reader, args=("r1", first_in, release_first)),
        threading.Thread(target=reader, args=("r2", second_in, release_second)),
    ]
    for thread in readers:
        thread.start()
    assert first_in.wait(5) and second_in.wait(5)  # two readers inside at once
    write = threading.Thread(target=writer)
    write.start()
    while not lock._writers_waiting:
        time.sleep(0.001)
    late_in, go_on = threading.Event(), threading.Event()
    go_on.set()
    late = threading.Thread(target=reader, args=("r3", late_in, go_on))
    late.start()
    release_first.set()
    time.sleep(0.05)
    assert "writer in" not in log and not late_in.is_set()  # r2 is still inside
    release_second.set()  # the last reader leaves: the writer goes first, then r3
    for thread in [*readers, write, late]:
        thread.join(5)
    assert log.index("writer in") > log.index("r2 out")
    assert log.index("r3 in") > log.index("writer out")
