"""Admin API (our own proto, real gRPC status codes): nodes, ring, cluster status."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from pymilvus.grpc_gen import milvus_pb2
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

from shardproxy import migrator
from shardproxy.cluster import Cluster
from shardproxy.errors import AlreadyExists, FailedPrecondition, InvalidArgument, ProxyError, Unavailable
from shardproxy.metastore import CollectionRecord, NodeRecord, NodeState
from shardproxy.moves import MoveState
from shardproxy.nodepool import CatalogState, NodeClient

log = logging.getLogger(__name__)

_STATE = {
    NodeState.ACTIVE: admin_pb2.NODE_STATE_ACTIVE,
    NodeState.JOINING: admin_pb2.NODE_STATE_JOINING,
    NodeState.DRAINING: admin_pb2.NODE_STATE_DRAINING,
    NodeState.DRAINED: admin_pb2.NODE_STATE_DRAINED,
    NodeState.DOWN: admin_pb2.NODE_STATE_DOWN,
    NodeState.SPARE: admin_pb2.NODE_STATE_SPARE,
}
STATE_NAMES = {v: k.value for k, v in _STATE.items()}

_ADDRESS_RE = re.compile(r"^[A-Za-z0-9.\-_\[\]:]+:\d{1,5}$")


def node_pb(n: NodeRecord) -> admin_pb2.Node:
    return admin_pb2.Node(id=n.id, address=n.address, state=_STATE[n.state], weight=n.weight)


def default_node_id(address: str) -> str:
    return "node-" + re.sub(r"[^A-Za-z0-9]+", "-", address).strip("-")


def admin_rpc(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except ProxyError as exc:
            await context.abort(exc.grpc_code, exc.message)
        except Exception as exc:  # noqa: BLE001
            log.exception("admin %s failed", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    return wrapper


async def collection_rows(client: NodeClient, rec: CollectionRecord) -> int | None:
    """Rows of one collection on one node, or None when the node does not answer."""
    try:
        resp = await client.call(
            "GetCollectionStatistics",
            milvus_pb2.GetCollectionStatisticsRequest(db_name=rec.db, collection_name=rec.name), timeout=5,
        )
    except ProxyError:
        return None
    stats = {kv.key: kv.value for kv in resp.stats}
    return int(stats.get("row_count", 0))


class AdminServicer(admin_pb2_grpc.ShardAdminServicer):
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._lock = asyncio.Lock()

    async def _ring_holds_data(self) -> list[str]:
        """Collections that hold rows on some ring node (moving them needs rebalancing)."""
        holding = []
        for rec in await self.cluster.store.collections():
            counts = await asyncio.gather(*(collection_rows(c, rec) for c in self.cluster.ring_clients()))
            if any(counts):
                holding.append(f"{rec.key} ({sum(c or 0 for c in counts)} rows)")
        return holding

    def _spawn_migrator(self) -> int:
        if not self.cluster.settings.migrator_autostart:
            return 0
        s = self.cluster.settings
        log_path = s.migrator_log or f"/tmp/shardproxy-migrator-{s.port}.log"
        pid = migrator.spawn(s.redis_url, self.cluster.store.prefix, log_path, s.vnodes, s.migrator_metrics_port,
                              s.migrator_max_rows_per_s)
        log.info("migrator started (pid %d, log %s)", pid, log_path)
        return pid

    @admin_rpc
    async def AddNode(self, request: admin_pb2.AddNodeRequest, context: Any) -> admin_pb2.AddNodeResponse:
        address = request.address.strip()
        if not _ADDRESS_RE.match(address):
            raise InvalidArgument(f"invalid node address {address!r}; expected HOST:PORT")
        weight = request.weight or 1
        if weight < 1 or weight > 1000:
            raise InvalidArgument(f"weight {weight} out of range [1, 1000]")
        node = NodeRecord(id=request.id or default_node_id(address), address=address, weight=weight)
        async with self._lock:
            await self.cluster.refresh(force=True)
            known = await self.cluster.store.nodes()
            spare = next((n for n in known if n.address == address and n.state == NodeState.SPARE), None)
            if spare is not None:  # a spare node joins under its registered id
                node.id = request.id or spare.id
                if node.id != spare.id:
                    raise InvalidArgument(f"{address} is registered as spare node {spare.id!r}")
            if request.spare:
                node.state = NodeState.SPARE
            probe = NodeClient(node, timeout_s=5, write_concurrency=1)
            try:
                if not await probe.healthy(timeout=5):
                    raise Unavailable(f"no Milvus server answers at {address}")
                holding = [] if request.spare else await self._ring_holds_data()
                # The new node first receives every collection's DDL (schema, indexes, load).
                await probe.sync(await self.cluster.store.collections(), await CatalogState.load(self.cluster.store))
            finally:
                await probe.close()
            moving = False
            if holding:
                if spare is None:
                    for existing in known:
                        if existing.id == node.id or existing.address == address:
                            raise AlreadyExists(f"node {node.id!r} ({address}) is already registered")
                node.state = NodeState.JOINING
                epoch, target = await self.cluster.moves.start(node, "add")
                moving = True
                log.info("node %s joining; moving data (%s), target epoch %d", node.id, ", ".join(holding), target)
            else:
                epoch = await self.cluster.store.put_node(node, bump_epoch=True, must_be_new=spare is None)
            await self.cluster.refresh(force=True)
            if moving:
                self._spawn_migrator()
        log.info("node %s (%s, weight %d) %s; ring epoch %d", node.id, address, weight, node.state.value, epoch)
        return admin_pb2.AddNodeResponse(node=node_pb(node), ring_epoch=epoch, moving=moving)

    @admin_rpc
    async def DrainNode(self, request: admin_pb2.DrainNodeRequest, context: Any) -> admin_pb2.DrainNodeResponse:
        async with self._lock:
            await self.cluster.refresh(force=True)
            node = await self.cluster.store.node(request.node_id)
            if node.state != NodeState.ACTIVE:
                raise FailedPrecondition(f"node {node.id} is {node.state.value}; only an active node can be drained")
            others = [n for n in self.cluster.nodes if n.id != node.id and n.state == NodeState.ACTIVE]
            if not others:
                raise FailedPrecondition(f"node {node.id} is the last active node; add another before draining it")
            holding = await self._ring_holds_data()
            if holding:
                node.state = NodeState.DRAINING
                epoch, target = await self.cluster.moves.start(node, "drain")
                await self.cluster.refresh(force=True)
                self._spawn_migrator()
                log.info("node %s draining, target epoch %d", node.id, target)
            else:
                node.state = NodeState.DRAINED
                epoch = await self.cluster.store.put_node(node, bump_epoch=True)
                await self.cluster.refresh(force=True)
        return admin_pb2.DrainNodeResponse(node=node_pb(node), ring_epoch=epoch)

    @admin_rpc
    async def ResumeRebalance(self, request: Any, context: Any) -> admin_pb2.ResumeRebalanceResponse:
        ms = await self.cluster.moves.state()
        if not ms.running:
            return admin_pb2.ResumeRebalanceResponse(started=False, message="no rebalance is running")
        if ms.lease_holder:
            return admin_pb2.ResumeRebalanceResponse(
                started=False, migrator_pid=ms.migrator_pid, message="a migrator holds the lease"
            )
        pid = self._spawn_migrator()
        return admin_pb2.ResumeRebalanceResponse(started=bool(pid), migrator_pid=pid, message="migrator started")

    @admin_rpc
    async def AbortRebalance(self, request: Any, context: Any) -> admin_pb2.AbortRebalanceResponse:
        async with self._lock:
            await self.cluster.refresh(force=True)
            ms = await self.cluster.moves.state()
            if not ms.running:
                raise FailedPrecondition("no rebalance is running; nothing to abort")
            node = await self.cluster.store.node(ms.node)
            inverse = {NodeState.JOINING: NodeState.DRAINING, NodeState.DRAINING: NodeState.JOINING}
            if node.state not in inverse:
                raise FailedPrecondition(f"node {node.id} is {node.state.value}, not joining or draining")
            node.state = inverse[node.state]
            epoch, target = await self.cluster.moves.abort(node, ms.reverse_kind)
            stop_migrator(ms)
            await self.cluster.refresh(force=True)
            self._spawn_migrator()
        log.info("rebalance %s %s aborted after %d row(s); reverse move %s, target epoch %d",
                 ms.kind, ms.node, ms.rows_moved, ms.reverse_kind, target)
        return admin_pb2.AbortRebalanceResponse(kind=ms.reverse_kind, node_id=node.id, ring_epoch=epoch,
                                                target_epoch=target, aborted_rows_moved=ms.rows_moved)

    @admin_rpc
    async def ListNodes(self, request: Any, context: Any) -> admin_pb2.ListNodesResponse:
        nodes = await self.cluster.store.nodes()
        return admin_pb2.ListNodesResponse(
            nodes=[node_pb(n) for n in nodes], ring_epoch=await self.cluster.store.epoch()
        )

    @admin_rpc
    async def RemoveNode(self, request: admin_pb2.RemoveNodeRequest, context: Any) -> admin_pb2.RemoveNodeResponse:
        async with self._lock:
            node = await self.cluster.store.node(request.node_id)
            if node.state in (NodeState.JOINING, NodeState.DRAINING):
                raise FailedPrecondition(f"node {node.id} is {node.state.value}; wait for the rebalance to end")
            client = self.cluster.pool.clients.get(node.id)
            if client is not None and node.state not in (NodeState.DRAINED, NodeState.SPARE):
                for rec in await self.cluster.store.collections():
                    rows = await collection_rows(client, rec)
                    if rows is None or rows:
                        raise FailedPrecondition(
                            f"node {node.id} still holds data ({rec.key}: {rows if rows is not None else 'unknown'} rows); "
                            "drain it first"
                        )
            epoch = await self.cluster.store.delete_node(node.id)
            await self.cluster.refresh(force=True)
        log.info("node %s removed; ring epoch %d", node.id, epoch)
        return admin_pb2.RemoveNodeResponse(ring_epoch=epoch)

    @admin_rpc
    async def RebalanceStatus(self, request: Any, context: Any) -> admin_pb2.RebalanceStatusResponse:
        return rebalance_pb(await self.cluster.moves.state(), await self.cluster.store.epoch())

    @admin_rpc
    async def ClusterStatus(self, request: Any, context: Any) -> admin_pb2.ClusterStatusResponse:
        await self.cluster.refresh()
        nodes = await self.cluster.store.nodes()
        out = admin_pb2.ClusterStatusResponse(
            nodes=[node_pb(n) for n in nodes], ring_epoch=await self.cluster.store.epoch()
        )
        clients = [self.cluster.pool.clients[n.id] for n in nodes if n.id in self.cluster.pool.clients]
        for rec in await self.cluster.store.collections():
            counts = await asyncio.gather(*(collection_rows(c, rec) for c in clients))
            vf = rec.default_vector_field() if rec.vector_fields else ""
            cs = admin_pb2.CollectionStatus(
                name=rec.key,  # db/name outside the default database
                total_rows=sum(c or 0 for c in counts),
                dimension=rec.dim(vf) if vf else 0,
                metric_type=rec.metric(vf) if vf else "",
                auto_id=rec.auto_id,
                properties=collection_properties(rec),
            )
            for c, n in zip(clients, counts):
                cs.nodes.append(admin_pb2.CollectionNodeRows(node_id=c.id, rows=n or 0, reachable=n is not None))
            out.collections.append(cs)
        return out


def stop_migrator(ms: MoveState) -> None:
    """Kill the aborted move's migrator when it runs on this host (its lease is already revoked,
    so it could not advance anything; killing it makes sure it stops copying now)."""
    if ms.migrator_pid and ms.migrator_host == socket.gethostname() and ms.migrator_pid != os.getpid():
        try:
            os.kill(ms.migrator_pid, signal.SIGKILL)
            log.info("killed migrator %d of the aborted move", ms.migrator_pid)
        except (ProcessLookupError, PermissionError):
            pass


def rebalance_pb(ms: MoveState, epoch: int) -> admin_pb2.RebalanceStatusResponse:
    out = admin_pb2.RebalanceStatusResponse(
        active=ms.running, target_epoch=ms.target_epoch if ms.running else epoch,
        rows_moved=ms.rows_moved, rows_to_move=ms.rows_to_move, rows_per_second=ms.rate(),
        kind=ms.kind, node_id=ms.node, state=ms.state, eta_seconds=ms.eta_s(),
        migrator_running=bool(ms.lease_holder), migrator_pid=ms.migrator_pid,
        started_at=ms.started_at, finished_at=ms.finished_at, aborted_kind=ms.aborted_kind,
        aborted_rows_moved=ms.aborted_rows_moved,
    )
    for (coll, src), c in sorted(ms.cursors.items()):
        out.cursors.append(admin_pb2.RebalanceCursor(
            collection=coll, source_node=src, rows_scanned=c.scanned, rows_moved=c.moved, done=c.done
        ))
    return out


def collection_properties(rec: CollectionRecord) -> dict[str, str]:
    """The collection's properties as its creator set them (e.g. the model id an image pipeline
    records); the proxy gives them no meaning."""
    return {kv.key: kv.value for kv in rec.create.properties}
