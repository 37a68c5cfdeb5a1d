"""Shard metadata in Redis: the node registry, the ring epoch, collection records, id blocks.

Key layout (all keys under one prefix, default ``shardproxy``; documented in the README):

=================================  ======  ===================================================
key                                type    content
=================================  ======  ===================================================
``{p}:nodes``                      hash    node id -> JSON ``{id, address, weight, state}``
``{p}:ring:epoch``                 string  integer, bumped on every ring change
``{p}:events``                     pubsub  ``ring <epoch>`` / ``collection <name>`` notices
``{p}:collections``                set     collection keys (``name`` in ``default``, ``db/name``)
``{p}:collection:{ckey}``          hash    ``create`` (CreateCollectionRequest bytes),
                                           ``index:{field}`` (CreateIndexRequest bytes),
                                           ``loaded`` ("1"/"0"), ``load`` (LoadCollectionRequest
                                           bytes), ``created_at``
``{p}:ids:{ckey}``                 string  auto_id counter; proxies reserve blocks with INCRBY
``{p}:hints:{node}:{ckey}``        hash    pk -> stand-in: writes ``node`` missed (:mod:`shardproxy.hints`)
``{p}:catchup:{node}``             string  lock of the proxy replaying ``node``'s hints
=================================  ======  ===================================================

Collection hashes also hold ``replicas`` (R) and ``write_ack`` (one/quorum/all). ``ckey`` is
:func:`shardproxy.catalog.collection_key`: the bare name in the ``default`` database (the layout
from before databases, so existing data needs no migration), ``db/name`` in other databases.
Databases, aliases and partitions are described in :mod:`shardproxy.catalog`, the move keys
(``{p}:move*``) in :mod:`shardproxy.moves`.

The records themselves (pure data) are in :mod:`shardproxy.records` and re-exported here.

The proxy is stateless: everything it needs to rebuild its routing lives here.
"""

from __future__ import annotations

import json
import time

import redis.asyncio as aioredis
from pymilvus.grpc_gen import milvus_pb2

from shardproxy.catalog import DEFAULT_DB, CatalogStore, collection_key, split_key
from shardproxy.errors import AlreadyExists, NotFound
from shardproxy.records import (  # noqa: F401 - re-exported: the records are imported from here
    RING_STATES, SEARCH_STATES, CollectionRecord, NodeRecord, NodeState,
)

DEFAULT_PREFIX = "shardproxy"


class MetaStore:
    """Async access to the metadata in Redis."""

    def __init__(self, redis_url: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.r: aioredis.Redis = aioredis.from_url(redis_url, decode_responses=False)
        self.catalog = CatalogStore(self.r, prefix)

    # -- keys
    def k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def events_channel(self) -> str:
        return self.k("events")

    async def close(self) -> None:
        await self.r.aclose()

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    # -- nodes and ring
    async def nodes(self) -> list[NodeRecord]:
        raw = await self.r.hgetall(self.k("nodes"))
        return sorted((NodeRecord.from_json(v) for v in raw.values()), key=lambda n: n.id)

    async def node(self, node_id: str) -> NodeRecord:
        raw = await self.r.hget(self.k("nodes"), node_id)
        if raw is None:
            raise NotFound(f"node {node_id!r} is not registered")
        return NodeRecord.from_json(raw)

    async def epoch(self) -> int:
        raw = await self.r.get(self.k("ring", "epoch"))
        return int(raw or 0)

    async def put_node(self, node: NodeRecord, *, bump_epoch: bool, must_be_new: bool = False) -> int:
        """Write a node record (atomically bumping the epoch when the ring changes)."""
        key = self.k("nodes")
        async with self.r.pipeline(transaction=True) as pipe:
            if must_be_new:
                if await self.r.hexists(key, node.id):
                    raise AlreadyExists(f"node {node.id!r} is already registered")
                for existing in await self.nodes():
                    if existing.address == node.address:
                        raise AlreadyExists(
                            f"address {node.address} is already registered as node {existing.id!r}"
                        )
            pipe.hset(key, node.id, node.to_json())
            if bump_epoch:
                pipe.incr(self.k("ring", "epoch"))
            res = await pipe.execute()
        epoch = int(res[-1]) if bump_epoch else await self.epoch()
        await self.publish(f"ring {epoch}")
        return epoch

    async def delete_node(self, node_id: str) -> int:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.hdel(self.k("nodes"), node_id)
            pipe.incr(self.k("ring", "epoch"))
            res = await pipe.execute()
        if not res[0]:
            raise NotFound(f"node {node_id!r} is not registered")
        await self.publish(f"ring {int(res[1])}")
        return int(res[1])

    async def publish(self, message: str) -> None:
        await self.r.publish(self.events_channel, message)

    # -- collections (``key`` is :func:`shardproxy.catalog.collection_key`)
    async def collection_keys(self) -> list[str]:
        """Keys of every collection in every database."""
        names = await self.r.smembers(self.k("collections"))
        return sorted(n.decode() for n in names)

    async def collection_names(self, db: str = DEFAULT_DB) -> list[str]:
        """Bare names of the collections of one database."""
        db = db or DEFAULT_DB
        return sorted(name for d, name in map(split_key, await self.collection_keys()) if d == db)

    async def collection(self, key: str) -> CollectionRecord | None:
        raw = await self.r.hgetall(self.k("collection", key))
        if not raw or b"create" not in raw:
            return None
        create = milvus_pb2.CreateCollectionRequest()
        create.ParseFromString(raw[b"create"])
        db, name = split_key(key)
        rec = CollectionRecord(name=name, create=create, loaded=raw.get(b"loaded") == b"1",
                               replicas=int(raw.get(b"replicas", b"1")), write_ack=raw.get(b"write_ack", b"quorum").decode(),
                               db=db, created_at=float(raw.get(b"created_at", b"0") or 0))
        parts: list[tuple[float, str]] = []
        for k, v in raw.items():
            fkey = k.decode()
            if fkey.startswith("index:"):
                req = milvus_pb2.CreateIndexRequest()
                req.ParseFromString(v)
                rec.indexes[fkey[len("index:") :]] = req
            elif fkey.startswith("partition:"):
                parts.append((float(v), fkey[len("partition:") :]))
            elif fkey.startswith("pload:"):
                rec.loaded_partitions.append(fkey[len("pload:") :])
        rec.partitions = [n for _, n in sorted(parts)]
        rec.loaded_partitions.sort(key=lambda n: rec.partitions.index(n) if n in rec.partitions else -1)
        if b"props" in raw:
            rec.props = json.loads(raw[b"props"])
        if b"load" in raw:
            rec.load = milvus_pb2.LoadCollectionRequest()
            rec.load.ParseFromString(raw[b"load"])
        return rec

    async def collections(self, db: str | None = None) -> list[CollectionRecord]:
        """Records of one database, or (``db`` None) of every database."""
        out = []
        for key in await self.collection_keys():
            if db is not None and split_key(key)[0] != (db or DEFAULT_DB):
                continue
            rec = await self.collection(key)
            if rec is not None:
                out.append(rec)
        return out

    async def create_collection(self, req: milvus_pb2.CreateCollectionRequest, db: str = DEFAULT_DB) -> bool:
        """Record a new collection in ``db``; False if it already exists."""
        ckey = collection_key(db, req.collection_name)
        key = self.k("collection", ckey)
        created = await self.r.hsetnx(key, "create", req.SerializeToString())
        if created:
            await self.r.hset(key, mapping={"loaded": "0", "created_at": repr(time.time())})
            await self.r.sadd(self.k("collections"), ckey)
            await self.publish(f"collection {ckey}")
        return bool(created)

    async def set_replication(self, key: str, replicas: int, write_ack: str) -> None:
        await self.r.hset(self.k("collection", key), mapping={"replicas": str(replicas), "write_ack": write_ack})
        await self.publish(f"collection {key}")

    async def drop_collection(self, key: str) -> None:
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(self.k("collection", key))
            pipe.delete(self.k("ids", key))
            pipe.srem(self.k("collections"), key)
            await pipe.execute()
        await self.publish(f"collection {key}")

    async def rename_collection(self, old_key: str, new_key: str, create: milvus_pb2.CreateCollectionRequest) -> None:
        """Move a collection's record (and its id counter) to a new key."""
        if await self.r.exists(self.k("collection", new_key)):
            raise AlreadyExists(f"duplicated new collection name {split_key(new_key)[1]} with other collection name or alias")
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.rename(self.k("collection", old_key), self.k("collection", new_key))
            pipe.hset(self.k("collection", new_key), "create", create.SerializeToString())
            pipe.srem(self.k("collections"), old_key)
            pipe.sadd(self.k("collections"), new_key)
            await pipe.execute()
        if await self.r.exists(self.k("ids", old_key)):
            await self.r.rename(self.k("ids", old_key), self.k("ids", new_key))
        await self.publish(f"collection {old_key}")
        await self.publish(f"collection {new_key}")

    async def put_create(self, key: str, create: milvus_pb2.CreateCollectionRequest) -> None:
        """Replace the recorded CreateCollection request (a field was added to the schema)."""
        await self.r.hset(self.k("collection", key), "create", create.SerializeToString())
        await self.publish(f"collection {key}")

    async def put_index(self, key: str, req: milvus_pb2.CreateIndexRequest) -> None:
        await self.r.hset(self.k("collection", key), f"index:{req.field_name}", req.SerializeToString())
        await self.publish(f"collection {key}")

    async def drop_index(self, key: str, field_name: str) -> None:
        await self.r.hdel(self.k("collection", key), f"index:{field_name}")
        await self.publish(f"collection {key}")

    async def set_loaded(self, key: str, loaded: bool, req: milvus_pb2.LoadCollectionRequest | None = None) -> None:
        mapping: dict[str, bytes | str] = {"loaded": "1" if loaded else "0"}
        if req is not None:
            mapping["load"] = req.SerializeToString()
        await self.r.hset(self.k("collection", key), mapping=mapping)
        await self.catalog.clear_partition_loads(key)
        await self.publish(f"collection {key}")

    async def reserve_ids(self, key: str, count: int) -> int:
        """Reserve ``count`` consecutive auto ids; returns the first. Unique across proxies."""
        end = await self.r.incrby(self.k("ids", key), count)
        return int(end) - count + 1
