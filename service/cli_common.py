"""What the ``ownrank`` command modules share: consoles, the common options, opening
the store, and the error exit.

``cli`` (the app and most commands) and ``cli_erasure`` (the erasure commands) both
import from here and never from each other, so neither module's import needs the
other's to have finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..engine.config import EngineConfig
from ..engine.engine import Engine
from ..engine.events import RatingScale
from ..errors import OwnrankError

console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", "-d", envvar="OWNRANK_DATA_DIR", help="Data directory of the store."
    ),
]
ModelDir = Annotated[
    Path | None,
    typer.Option(
        "--model-dir",
        envvar="OWNRANK_MODEL_DIR",
        help="sentence-transformers model directory (default: bundled all-MiniLM-L6-v2).",
    ),
]
Threads = Annotated[int, typer.Option("--threads", min=1, help="Encoder threads.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

DEFAULT_DATA_DIR = Path("ownrank-data")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; return the exit to raise (``raise fail(...)``)."""
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@contextmanager
def open_engine(
    data_dir: Path,
    model_dir: Path | None,
    threads: int = 1,
    rating_scale: RatingScale | None = None,
) -> Iterator[Engine]:
    """Open the store, turning ownrank's typed errors into a clean exit. No warm-up: a
    command makes a call or two, and the first pays what it needs (``ownrank serve``
    opens its own engines, warmed up before ready). ``rating_scale`` None: the store's."""
    config = EngineConfig(
        model_dir=model_dir,
        encoder_threads=threads,
        warm_up_on_open=False,
        rating_scale=rating_scale,
    )
    try:
        engine = Engine(data_dir, config)
    except OwnrankError as exc:
        raise fail(exc.message) from None
    try:
        yield engine
    except OwnrankError as exc:
        raise fail(exc.message) from None
    finally:
        engine.close()
