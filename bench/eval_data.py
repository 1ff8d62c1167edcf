"""Loaders for the MovieLens evaluation data described in ``../shared/data/README.md``.

The data is licensed for research use only and must never be copied into this
repository, so everything here reads from a configurable directory: an explicit
argument, else ``$OWNRANK_EVAL_DATA``, else ``../shared/data`` next to the project root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

DatasetName = Literal["ml-1m-half", "ml-100k"]
DATASETS: tuple[DatasetName, ...] = ("ml-1m-half", "ml-100k")
IntArray = npt.NDArray[np.int64]

_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")
_MAX_TEXT_WORDS = 120
MAX_ACTORS = 3


@dataclass(frozen=True)
class Ratings:
    """Parallel arrays of explicit ratings; ids are the original MovieLens integers."""

    user: IntArray
    item: IntArray
    rating: IntArray
    timestamp: IntArray

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, index: npt.NDArray[np.bool_] | IntArray) -> Ratings:
        """Subset by a boolean mask or an index array (keeps the arrays parallel)."""
        return Ratings(*(a[index] for a in (self.user, self.item, self.rating, self.timestamp)))

    def sorted_by_user_time(self) -> Ratings:
        """Order by (user, timestamp, item): the chronological order the protocols use."""
        return self.take(np.lexsort((self.item, self.timestamp, self.user)))


@dataclass
class ItemInfo:
    """What is known about one movie; the optional fields come from ``movies_extrainfos``."""

    title: str
    year: int | None = None
    genres: list[str] = field(default_factory=list)
    release: str | None = None
    rated: str | None = None
    director: str | None = None
    actors: list[str] = field(default_factory=list)
    plot: str | None = None


@dataclass(frozen=True)
class Dataset:
    """One dataset: all its ratings and the catalog (including never-rated movies)."""

    name: str
    ratings: Ratings
    items: dict[int, ItemInfo]


def default_data_dir() -> Path:
    """``$OWNRANK_EVAL_DATA`` if set, else ``<project root>/../shared/data``."""
    env = os.environ.get("OWNRANK_EVAL_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def load_dataset(name: DatasetName, data_dir: Path | None = None) -> Dataset:
    """Load ``name`` from ``data_dir`` (default: :func:`default_data_dir`)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    return (_load_ml1m if name == "ml-1m-half" else _load_ml100k)(root / name)


def item_text(info: ItemInfo, rich: bool = False) -> str:
    """Text to embed for an item.

    Short: ``"Title. Genres: a, b"``. Rich adds director, the first few actors and the
    plot, with the plot truncated so the whole text stays under ~120 words (MiniLM
    truncates at 256 word pieces, so longer text would be cut arbitrarily anyway).
    """
    short = info.title
    if info.genres:
        short += f". Genres: {', '.join(info.genres)}"
    if not rich:
        return short
    parts = [short.rstrip(".") + "."]
    if info.director:
        parts.append(f"Directed by {info.director}.")
    if info.actors:
        parts.append(f"Starring {', '.join(info.actors[:MAX_ACTORS])}.")
    if info.plot:
        budget = _MAX_TEXT_WORDS - sum(len(p.split()) for p in parts)
        words = info.plot.split()
        if len(words) > budget:
            words = [*words[: budget - 1], "..."] if budget > 1 else []
        if words:
            parts.append(" ".join(words))
    return " ".join(parts)


def _split_title(raw: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; titles without a year pass through."""
    raw = raw.strip()
    match = _YEAR_SUFFIX.search(raw)
    if match is None:
        return raw, None
    return raw[: match.start()].strip(), int(match.group(1))


def _iso_date(raw: str, fmt: str) -> str | None:
    """Parse ``raw`` with ``fmt`` into an ISO date; unknown or malformed dates give None."""
    known = _known(raw)
    try:
        return datetime.strptime(known, fmt).date().isoformat() if known else None
    except ValueError:
        return None


def _known(raw: str) -> str | None:
    """OMDb-style fields use ``N/A`` for unknown."""
    raw = raw.strip()
    return None if not raw or raw == "N/A" else raw


def _ratings(path: Path, sep: bytes) -> Ratings:
    """Parse a file of user, item, rating, timestamp rows fast (one split over the file)."""
    table = np.array(path.read_bytes().replace(sep, b" ").split(), dtype=np.int64).reshape(-1, 4)
    return Ratings(*(table[:, i].copy() for i in range(4)))


def _load_ml1m(path: Path) -> Dataset:
    ratings = _ratings(path / "ratings.dat", b"::")
    items: dict[int, ItemInfo] = {}
    for line in (path / "movies.dat").read_text(encoding="iso-8859-1").splitlines():
        if not line.strip():
            continue
        movie_id, raw_title, genres = line.split("::")
        title, year = _split_title(raw_title)
        items[int(movie_id)] = ItemInfo(
            title=title, year=year, genres=[g for g in genres.strip().split("|") if g]
        )
    extra = path / "movies_extrainfos.dat"
    if extra.exists():
        _merge_extrainfos(items, extra)
    return Dataset("ml-1m-half", ratings, items)


def _merge_extrainfos(items: dict[int, ItemInfo], path: Path) -> None:
    """Add rated/release/director/actors/plot; tolerate short rows and unknown ids.

    Layout: ``MovieID::Title::Year::Rated::Released::Genres::Director::Writers::
    Actors::Plot::Poster``; its (IMDb's) title and genres are ignored.
    """
    text = path.read_bytes().decode("utf-8", errors="replace")
    for line in text.splitlines():
        fields = line.split("::")
        if len(fields) < 2 or not fields[0].strip().isdigit():
            continue
        info = items.get(int(fields[0]))
        if info is None:
            continue
        fields += [""] * (10 - len(fields))
        if info.year is None and fields[2].strip()[:4].isdigit():
            info.year = int(fields[2].strip()[:4])
        info.rated = _known(fields[3])
        info.release = _iso_date(fields[4], "%d %b %Y")
        info.director = _known(fields[6])
        actors = _known(fields[8])
        info.actors = [a.strip() for a in actors.split(",") if a.strip()] if actors else []
        info.plot = _known(fields[9])


def _load_ml100k(path: Path) -> Dataset:
    ratings = _ratings(path / "u.data", b"\t")
    genre_names: dict[int, str] = {}
    for line in (path / "u.genre").read_text(encoding="iso-8859-1").splitlines():
        if "|" in line:
            name, index = line.rsplit("|", 1)
            genre_names[int(index)] = name
    n_genres = len(genre_names)
    items: dict[int, ItemInfo] = {}
    for line in (path / "u.item").read_text(encoding="iso-8859-1").splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        title, year = _split_title(fields[1])
        flags = fields[-n_genres:]
        genres = [genre_names[i] for i, flag in enumerate(flags) if flag.strip() == "1"]
        release = _iso_date(fields[2], "%d-%b-%Y")
        if year is None and release is not None:
            year = int(release[:4])
        items[int(fields[0])] = ItemInfo(title=title, year=year, genres=genres, release=release)
    return Dataset("ml-100k", ratings, items)
