"""The embedded engine: one data directory, one frozen base model, one catalog.

Data directory layout::

    DATA_DIR/lmdb/          LMDB environment (data.mdb, lock.mdb): the source of truth
    DATA_DIR/catalog.index  FAISS index of the catalog, derived, rebuilt when needed

The store records the base model's fingerprint when it is created and refuses
to open with any other model. Open one ``Engine`` per process (LMDB handles
must not cross ``fork()``); any number of processes may open the same directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import DimensionMismatchError, ModelMismatchError
from ..storage.catalog_store import CatalogStore
from ..storage.lmdb_env import LmdbEnvironment
from .catalog import Catalog, Hit
from .config import EngineConfig
from .encoder import BaseEncoder, Encoder
from .index_keeper import IndexKeeper

INDEX_FILE = "catalog.index"
LMDB_DIR = "lmdb"


class Engine:
    """Entry point of the SDK: ``with Engine("data") as engine: engine.search("...")``."""

    def __init__(
        self,
        data_dir: Path | str,
        config: EngineConfig | None = None,
        *,
        encoder: Encoder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or EngineConfig()
        self.data_dir = Path(data_dir)
        self.encoder: Encoder = encoder or BaseEncoder(
            self.config.model_dir,
            threads=self.config.encoder_threads,
            batch_size=self.config.encode_batch_size,
        )
        self.env = LmdbEnvironment(
            self.data_dir / LMDB_DIR,
            map_size=self.config.lmdb_map_size,
            max_readers=self.config.lmdb_max_readers,
        )
        try:
            store = CatalogStore(self.env)
            self.identity = store.initialize(self.encoder.fingerprint, self.encoder.dimension)
            if self.identity.model_fingerprint != self.encoder.fingerprint:
                raise ModelMismatchError(self.identity.model_fingerprint, self.encoder.fingerprint)
            if self.identity.dimension != self.encoder.dimension:
                raise DimensionMismatchError(self.identity.dimension, self.encoder.dimension)
            keeper = IndexKeeper(
                self.env,
                store,
                self.config,
                self.data_dir / INDEX_FILE,
                stamp=f"{self.identity.store_id}/{self.identity.model_fingerprint}",
                dimension=self.identity.dimension,
            )
        except BaseException:
            self.env.close()
            raise
        self.catalog = Catalog(store, keeper, self.encoder, self.config, clock)
        self._closed = False

    # -- conveniences over the catalog ---------------------------------------------------

    def search(self, text: str, n: int = 10, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        return self.catalog.search(text, n, filters)

    def similar(
        self, item_id: str, n: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        return self.catalog.similar(item_id, n, filters)

    # -- operations ----------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return self.identity.model_fingerprint

    def save_index(self) -> bool:
        """Persist the catalog index now (it is also saved on ``close``)."""
        return self.catalog.keeper.save()

    def rebuild_index(self) -> None:
        self.catalog.keeper.rebuild()
        self.catalog.keeper.save(force=True)

    def info(self) -> dict[str, Any]:
        keeper = self.catalog.keeper
        keeper.sync()
        index = keeper.index
        index_file = keeper.path
        lmdb_stat = self.env.stat()
        return {
            "data_dir": str(self.data_dir.resolve()),
            "store_id": self.identity.store_id,
            "model_fingerprint": self.identity.model_fingerprint,
            "dimension": self.identity.dimension,
            "items": self.catalog.count(),
            "catalog_seq": index.seq,
            "index": {
                "type": index.kind,
                "vectors": index.ntotal,
                "tombstones": len(index.dead),
                "file_bytes": index_file.stat().st_size if index_file.exists() else 0,
            },
            "lmdb": {
                "file_bytes": self.env.file_size(),
                "used_bytes": lmdb_stat["used_bytes"],
                "entries": lmdb_stat["entries"],
            },
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.catalog.keeper.close()
        finally:
            self.env.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
