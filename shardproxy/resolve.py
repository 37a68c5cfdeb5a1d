"""Which database and which collection a request means.

* The effective database is the request's ``db_name``, else the ``dbname`` metadata header
  (pymilvus sends it for ``MilvusClient(uri=".../mydb")`` and after ``use_database``), else
  ``default``.
* A collection name may be an alias (per database, in Redis); it resolves to the collection it
  points at *now*. Switching an alias is one Redis write, and every proxy drops its cached
  aliases when it hears ``alias {db}`` on the events channel, so readers move to the new
  collection together (the window is the pub/sub delivery, as in Milvus's own proxy cache).

The request is rewritten in place (``db_name`` set, alias replaced by the collection name) so
the nodes, which hold the same databases, get a request they understand.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import Any

from shardproxy.catalog import DEFAULT_DB, CatalogStore

DB_HEADER = "dbname"
# The caller's invocation metadata, set by the RPC wrapper for the handler it runs.
METADATA: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar("metadata", default=())


def effective_db(request: Any, metadata: Iterable[tuple[str, Any]] | None = None) -> str:
    """``db_name`` of the request, else the ``dbname`` header (of ``metadata``, else of the
    request being served), else ``default``."""
    if metadata is None:
        metadata = METADATA.get()
    db = getattr(request, "db_name", "") or ""
    if db:
        return db
    for key, value in metadata or ():
        if key == DB_HEADER and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return DEFAULT_DB


def method_of(request: Any) -> str:
    """The RPC a request message belongs to (``QueryRequest`` -> ``Query``)."""
    name = type(request).__name__
    return name[: -len("Request")] if name.endswith("Request") else name


class CatalogCache:
    """A proxy's cached view of databases and aliases, dropped on pub/sub notices."""

    def __init__(self, catalog: CatalogStore) -> None:
        self.catalog = catalog
        self._aliases: dict[str, dict[str, str]] = {}
        self._dbs: set[str] | None = None

    def invalidate(self, kind: str, arg: str) -> None:
        if kind == "alias":
            self._aliases.pop(arg, None)
        elif kind == "database":
            self._dbs = None
            self._aliases.pop(arg, None)

    def clear(self) -> None:
        self._aliases.clear()
        self._dbs = None

    async def has_database(self, db: str) -> bool:
        if db in ("", DEFAULT_DB):
            return True
        if self._dbs is None or db not in self._dbs:
            self._dbs = set(await self.catalog.databases())
        return db in self._dbs

    async def aliases(self, db: str) -> dict[str, str]:
        got = self._aliases.get(db)
        if got is None:
            got = self._aliases[db] = await self.catalog.aliases(db)
        return got

    async def resolve(self, db: str, name: str) -> str:
        """The collection ``name`` means in ``db`` (itself unless it is an alias)."""
        return (await self.aliases(db)).get(name, name)
