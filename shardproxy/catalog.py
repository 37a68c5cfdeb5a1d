"""The proxy's catalog in Redis beside the collection records: databases, aliases and partitions.

Milvus keeps these in its root coordinator; the proxy keeps them in Redis so that every proxy
answers the same and a node that joins (or restarts) is brought to the recorded state.

=====================================  ======  ===============================================
key                                    type    content
=====================================  ======  ===============================================
``{p}:databases``                      hash    db name -> JSON ``{properties, created_at, id}``
                                               (``default`` is implicit and never stored)
``{p}:aliases:{db}``                   hash    alias -> collection name (same database)
``{p}:collection:{ckey}``              hash    also ``partition:{name}`` (creation time, one
                                               field per partition the user created) and
                                               ``pload:{name}`` ("1" while the partition is
                                               loaded on its own), ``props`` (JSON of
                                               properties set by AlterCollection)
``{p}:compaction:{id}``                string  JSON node -> that node's compaction id, for the
                                               proxy's compaction id (expires after a week)
``{p}:flush:{ts}``                     string  JSON node -> ``{ts: {coll: flush ts}, segs:
                                               {coll: [segment ids]}}`` for the proxy's
                                               synthetic flush ts (expires after a day)
=====================================  ======  ===============================================

``ckey`` is a collection's id in Redis keys (:func:`collection_key`): its bare name in the
``default`` database, which is exactly the layout from before databases existed (nothing to
migrate), and ``{db}/{name}`` in any other database (Milvus names never contain ``/``).

Changes are announced on ``{p}:events`` as ``collection {ckey}``, ``alias {db}`` and
``database {db}``; every proxy drops its cached copy when it hears one.
"""

from __future__ import annotations

import json
import time
import zlib

import redis.asyncio as aioredis

from shardproxy.errors import AlreadyExists, InvalidArgument, NotFound

DEFAULT_DB = "default"
DEFAULT_PARTITION = "_default"
MAX_DATABASES = 64  # Milvus rootCoord.maxDatabaseNum


def collection_key(db: str, name: str) -> str:
    """A collection's id in Redis keys: the bare name in ``default``, ``db/name`` elsewhere."""
    return name if db in ("", DEFAULT_DB) else f"{db}/{name}"


def split_key(key: str) -> tuple[str, str]:
    """(db, name) of a :func:`collection_key`."""
    db, sep, name = key.partition("/")
    return (db, name) if sep else (DEFAULT_DB, key)


def synthetic_id(*parts: str) -> int:
    """A stable positive id for a catalog object (database, partition) that is the same on every
    proxy and never one node's own id: the nodes number their objects independently."""
    raw = "\x00".join(parts).encode()
    return (zlib.crc32(raw) << 20 | zlib.adler32(raw) & 0xFFFFF) & 0x7FFFFFFFFFFFFFFF or 1


class CatalogStore:
    """Async access to databases, aliases and partition records in Redis."""

    def __init__(self, r: aioredis.Redis, prefix: str) -> None:
        self.r = r
        self.prefix = prefix

    def k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _publish(self, message: str) -> None:
        await self.r.publish(self.k("events"), message)

    # -- databases
    async def databases(self) -> dict[str, dict]:
        """Every database with its record, ``default`` first, the others by creation time."""
        raw = await self.r.hgetall(self.k("databases"))
        others = {k.decode(): json.loads(v) for k, v in raw.items()}
        out: dict[str, dict] = {DEFAULT_DB: {"properties": {}, "created_at": 0.0, "id": 1}}
        for name, rec in sorted(others.items(), key=lambda kv: (kv[1].get("created_at", 0), kv[0])):
            out[name] = rec
        return out

    async def database(self, name: str) -> dict | None:
        if name in ("", DEFAULT_DB):
            raw_default = await self.r.hget(self.k("databases"), DEFAULT_DB)
            return json.loads(raw_default) if raw_default else {"properties": {}, "created_at": 0.0, "id": 1}
        raw = await self.r.hget(self.k("databases"), name)
        return json.loads(raw) if raw else None

    async def has_database(self, name: str) -> bool:
        return name in ("", DEFAULT_DB) or bool(await self.r.hexists(self.k("databases"), name))

    async def create_database(self, name: str, properties: dict[str, str]) -> None:
        if name == DEFAULT_DB or await self.r.hexists(self.k("databases"), name):
            raise AlreadyExists(f"database already exist: {name}")
        if await self.r.hlen(self.k("databases")) + 1 >= MAX_DATABASES:
            raise InvalidArgument(
                f"database number ({MAX_DATABASES}) exceeds max configuration ({MAX_DATABASES})"
            )
        rec = {"properties": properties, "created_at": time.time(), "id": synthetic_id("db", name)}
        if not await self.r.hsetnx(self.k("databases"), name, json.dumps(rec, sort_keys=True)):
            raise AlreadyExists(f"database already exist: {name}")
        await self._publish(f"database {name}")

    async def alter_database(self, name: str, set_props: dict[str, str], delete_keys: list[str]) -> None:
        rec = await self.database(name)
        if rec is None:
            raise NotFound(f"database not found[database={name}]")
        props = dict(rec.get("properties", {}))
        props.update(set_props)
        for key in delete_keys:
            props.pop(key, None)
        rec["properties"] = props
        await self.r.hset(self.k("databases"), name, json.dumps(rec, sort_keys=True))
        await self._publish(f"database {name}")

    async def drop_database(self, name: str) -> None:
        await self.r.hdel(self.k("databases"), name)
        await self.r.delete(self.k("aliases", name))
        await self._publish(f"database {name}")

    # -- aliases
    async def aliases(self, db: str) -> dict[str, str]:
        raw = await self.r.hgetall(self.k("aliases", db or DEFAULT_DB))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def resolve_alias(self, db: str, alias: str) -> str | None:
        raw = await self.r.hget(self.k("aliases", db or DEFAULT_DB), alias)
        return raw.decode() if raw is not None else None

    async def set_alias(self, db: str, alias: str, collection: str, *, create: bool) -> None:
        """Create (``create``) or switch an alias: one HSET, atomic for every reader."""
        key = self.k("aliases", db or DEFAULT_DB)
        if create:
            if not await self.r.hsetnx(key, alias, collection):
                current = await self.resolve_alias(db, alias)
                raise AlreadyExists(
                    f"alias exists and already aliased to another collection, alias: {alias}, "
                    f"collection: {current}, other collection: {collection}"
                )
        else:
            await self.r.hset(key, alias, collection)
        await self._publish(f"alias {db or DEFAULT_DB}")

    async def drop_alias(self, db: str, alias: str) -> bool:
        removed = await self.r.hdel(self.k("aliases", db or DEFAULT_DB), alias)
        await self._publish(f"alias {db or DEFAULT_DB}")
        return bool(removed)

    async def drop_aliases_of(self, db: str, collection: str) -> None:
        for alias, target in (await self.aliases(db)).items():
            if target == collection:
                await self.r.hdel(self.k("aliases", db or DEFAULT_DB), alias)
        await self._publish(f"alias {db or DEFAULT_DB}")

    # -- partitions (fields of the collection hash)
    def _ckey(self, ckey: str) -> str:
        return self.k("collection", ckey)

    async def add_partition(self, ckey: str, name: str) -> bool:
        added = await self.r.hsetnx(self._ckey(ckey), f"partition:{name}", repr(time.time()))
        await self._publish(f"collection {ckey}")
        return bool(added)

    async def drop_partition(self, ckey: str, name: str) -> None:
        await self.r.hdel(self._ckey(ckey), f"partition:{name}", f"pload:{name}")
        await self._publish(f"collection {ckey}")

    async def set_partitions_loaded(self, ckey: str, names: list[str], loaded: bool) -> None:
        if not names:
            return
        if loaded:
            await self.r.hset(self._ckey(ckey), mapping={f"pload:{n}": "1" for n in names})
        else:
            await self.r.hdel(self._ckey(ckey), *[f"pload:{n}" for n in names])
        await self._publish(f"collection {ckey}")

    async def clear_partition_loads(self, ckey: str) -> None:
        fields = [k for k in await self.r.hkeys(self._ckey(ckey)) if k.startswith(b"pload:")]
        if fields:
            await self.r.hdel(self._ckey(ckey), *fields)

    async def set_properties(self, ckey: str, props: dict[str, str]) -> None:
        await self.r.hset(self._ckey(ckey), "props", json.dumps(props, sort_keys=True))
        await self._publish(f"collection {ckey}")

    # -- ids the proxy hands out for work the nodes track under their own ids
    async def put_compaction(self, compaction_id: int, per_node: dict[str, int]) -> None:
        await self.r.set(self.k("compaction", str(compaction_id)), json.dumps(per_node), ex=7 * 24 * 3600)

    async def compaction(self, compaction_id: int) -> dict[str, int] | None:
        raw = await self.r.get(self.k("compaction", str(compaction_id)))
        return {k: int(v) for k, v in json.loads(raw).items()} if raw else None

    async def put_flush(self, flush_ts: int, per_node: dict[str, dict]) -> None:
        await self.r.set(self.k("flush", str(flush_ts)), json.dumps(per_node), ex=24 * 3600)

    async def flush(self, flush_ts: int) -> dict[str, dict] | None:
        raw = await self.r.get(self.k("flush", str(flush_ts)))
        return json.loads(raw) if raw else None
