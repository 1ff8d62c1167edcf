"""``ownrank serve``: uvicorn with one or more workers over one data directory.

The parent process only prepares what every worker must share (the token
signing secret and the admin key file, created once, before any worker starts),
exports the settings as ``OWNRANK_*`` variables and hands uvicorn the app
*factory*: each worker process builds its own app and opens its own engine in
the app's lifespan, so no LMDB handle crosses a process boundary. With several
workers, Prometheus values go through a fresh multiprocess directory so that
``/metrics`` on any worker reports all of them.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess

from .auth import TokenSigner, admin_keys, load_signer
from .logs import log_config
from .metrics import MULTIPROC_ENV
from .settings import ServiceSettings

APP_FACTORY = "ownrank.service.app:create_app_from_env"


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP listening socket that several workers can each bind (SO_REUSEPORT).

    One socket per worker lets the kernel spread new connections over the
    workers; with one shared socket the worker that wakes first takes them all.
    The protocol is given as TCP so asyncio sets TCP_NODELAY on accepted
    connections (otherwise Nagle's algorithm and delayed ACKs add ~40 ms).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _SocketPerWorker(Multiprocess):
    """uvicorn's worker supervisor, handing every worker it starts (or restarts) a
    listening socket of its own on the same address."""

    def __init__(self, config: uvicorn.Config, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._announced = False
        super().__init__(config, sockets=[])

    @property
    def sockets(self) -> list[socket.socket]:
        """A fresh socket each time uvicorn asks (it asks once per worker it starts)."""
        sock = listening_socket(self._host, self._port)
        if not self._announced:
            self._announced = True
            logging.getLogger("uvicorn.error").info(
                "listening on %s:%d, one socket per worker", self._host, sock.getsockname()[1]
            )
        self._port = sock.getsockname()[1]  # port 0: every later worker joins this one
        return [sock]

    @sockets.setter
    def sockets(self, _value: list[socket.socket]) -> None:
        pass


@dataclass(frozen=True)
class Prepared:
    signer: TokenSigner
    admin_keys: list[str]
    generated_key_file: Path | None  # set when this start wrote a new admin key file


def prepare(settings: ServiceSettings) -> Prepared:
    """Create the shared secret and, if no admin key is configured, an admin key file."""
    key_file = settings.effective_admin_keys_file
    existed = key_file.exists()
    keys = admin_keys(settings)
    generated = key_file if (not existed and key_file.exists()) else None
    return Prepared(load_signer(settings), keys, generated)


METRICS_DIR_PREFIX = "ownrank-metrics-"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22),
    or None if no such process: with the pid it names a process even after pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def make_metrics_dir(root: Path | None = None) -> str:
    """A fresh multiprocess metrics directory named after its owner (this process)."""
    pid = os.getpid()
    prefix = f"{METRICS_DIR_PREFIX}{pid}-{_start_time(pid)}-"
    return tempfile.mkdtemp(prefix=prefix, dir=root)


def _in_use(path: Path) -> bool:
    """Whether a process may still use this metrics directory: the server that made it
    (named in it), or a worker that writes to it (its value files are named after the
    worker's pid, ``counter_1234.db``; workers can outlive a killed parent)."""
    pid, _, rest = path.name.removeprefix(METRICS_DIR_PREFIX).partition("-")
    started = rest.partition("-")[0]
    named = pid.isdigit() and started.isdigit()
    if named and _start_time(int(pid)) == started:
        return True
    workers = {p.stem.rpartition("_")[2] for p in path.glob("*.db")}
    if any(w.isdigit() and _start_time(int(w)) is not None for w in workers):
        return True
    # a directory of an older release (no owner in its name) that no worker wrote to
    # yet may belong to a server still starting: it stays
    return not named and not workers


def remove_stale_metrics_dirs(root: Path | None = None) -> list[Path]:
    """Remove the metrics directories left by servers that died without cleaning up
    (``kill -9``); only those whose owner process is gone. Returns what was removed."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}*"):
        if path.is_dir() and not path.is_symlink() and not _in_use(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def serve(
    settings: ServiceSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """Run the service until interrupted (blocks)."""
    os.environ.update(settings.to_env())
    metrics_dir: str | None = None
    if workers > 1:
        remove_stale_metrics_dirs()
        metrics_dir = make_metrics_dir()
        os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        config = uvicorn.Config(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=log_config(log_level.upper()),
            access_log=False,  # ours logs route templates, not raw paths and query strings
            server_header=False,
            timeout_graceful_shutdown=10,
        )
        if workers > 1:
            _SocketPerWorker(config, host, port).run()
        else:
            uvicorn.Server(config).run()
    finally:
        if metrics_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
