"""The one executor of the data plane: sends planned per-node requests and applies the failure
policy, the same way for every RPC (the Vitess vtgate split: handlers plan with
:class:`shardproxy.placement.Placement`, this module executes).

* :meth:`Scatter.each` / :meth:`Scatter.call_all`: DDL and other all-or-nothing fan-outs; any
  unreachable node fails the call (one :class:`Unavailable` naming every failed node);
  :meth:`Scatter.first`: the first node that answers (describe).
* :meth:`Scatter.read` / :meth:`Scatter.read_each`: reads that tolerate down nodes while every
  shard keeps a live replica; otherwise the partial-result policy decides
  (:func:`shardproxy.coverage.decide`). A node that forgot its load state ("not loaded",
  Milvus code 101) is re-synced and asked again once.
  Fan-out reads ask a covering set of replicas and hedge to a spare one when a node is slower
  than its threshold (budgeted); a node whose circuit opens while we wait is given up.
* :meth:`Scatter.write_rows` (:mod:`shardproxy.sloppy`): inserts/upserts with R > 1, sloppy quorum: stand-ins with hints
  for replicas that are out, fail or hang; rows acknowledged once ``write_ack`` copies are
  durable; copies of failed insert rows undone.
* :meth:`Scatter.write`: R = 1 writes and deletes; with replication, nodes whose circuit is open
  are not called and every key a replica missed is recorded for hinted handoff.

Everywhere: an :class:`Unavailable` node opens its circuit (``mark_failed``; the health loop
closes it), a node skipped because its circuit is open counts a node error, other errors
propagate unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shardproxy import metrics
from shardproxy.catalog import DEFAULT_DB
from shardproxy.config import ProxySettings
from shardproxy.coverage import COMPLETE, Coverage, decide
from shardproxy.errors import DeadlineBeforeSend, DeadlineExceeded, NodeError, ProxyError, Unavailable
from shardproxy.hedged import gather_covering
from shardproxy.hedging import HedgeBudget, hedge_delay
from shardproxy.hints import UNDO
from shardproxy.latency import LatencyTracker
from shardproxy.metastore import CollectionRecord
from shardproxy.nodepool import NodeClient
from shardproxy.placement import Placement
from shardproxy.sloppy import SloppyWrites, WriteOutcome  # noqa: F401 - WriteOutcome re-exported

log = logging.getLogger(__name__)

_ROTATION = itertools.count()  # spreads covering reads over the replicas
MILVUS_CODE_NOT_LOADED = 101  # merr.ErrCollectionNotLoaded and legacy ErrorCode.CollectionNotLoaded
WRITE_METHODS = frozenset({"Insert", "Upsert"})

Key = int | str
NodeCall = Callable[[NodeClient], Awaitable[Any]]


class NodeSet(Protocol):
    """What the executor needs from the cluster (:class:`shardproxy.cluster.Cluster` is one)."""

    settings: ProxySettings
    hedge_budget: HedgeBudget

    @property
    def latency(self) -> LatencyTracker: ...
    def client(self, node_id: str) -> NodeClient: ...
    def is_live(self, node_id: str) -> bool: ...
    def has_hints(self, node_id: str) -> bool: ...
    def mark_failed(self, node_id: str) -> None: ...
    def placement(self, rec: CollectionRecord) -> Placement: ...
    async def collection(self, name: str, db: str = ...) -> CollectionRecord: ...
    async def sync_nodes(self, clients: Iterable[NodeClient]) -> None: ...
    async def add_hints(self, node_id: str, collection: str, pks: Iterable[Key], standin: str = "",
                        again: bool = False, in_flight: bool = False) -> bool: ...
    async def touch_hints(self, collection: str, by_node: dict[str, list[Key]]) -> None: ...


@dataclass
class Gathered:
    """Answers of a scattered read, by node, and what the answer did not cover."""

    results: dict[str, Any] = field(default_factory=dict)
    coverage: Coverage = COMPLETE


def require_all(clients: Sequence[NodeClient], results: Sequence[Any]) -> dict[str, Any]:
    """All-or-nothing: one :class:`Unavailable` naming every unreachable node, else the first
    other error, else the answers by node id."""
    failed = [(c, r) for c, r in zip(clients, results) if isinstance(r, Unavailable)]
    if failed:
        names = ", ".join(f"{c.id} ({c.address})" for c, _ in failed)
        raise Unavailable(f"node(s) unavailable: {names}; {failed[0][1].message}")
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return {c.id: r for c, r in zip(clients, results)}


async def fan_out(clients: Iterable[NodeClient], call: NodeCall) -> dict[str, Any]:
    """Run ``call`` on every client in parallel, all-or-nothing (see :func:`require_all`)."""
    clients = list(clients)
    results = await asyncio.gather(*(call(c) for c in clients), return_exceptions=True)
    return require_all(clients, results)


class NotCalled(Unavailable):
    """A node not called because its circuit is open: nothing was sent."""


def unknown_outcome(result: Any) -> bool:
    """A write whose effect on the node is unknown: unreachable or no answer in time (it may have
    landed, or land later); a node's own error status means it refused the write, and a node not
    called got nothing."""
    return (isinstance(result, (Unavailable, DeadlineExceeded, asyncio.CancelledError))
            and not isinstance(result, (NotCalled, DeadlineBeforeSend)))


def is_not_loaded(exc: NodeError) -> bool:
    return MILVUS_CODE_NOT_LOADED in (exc.status.code, exc.status.error_code)


class Scatter(SloppyWrites):
    def __init__(self, nodes: NodeSet) -> None:
        self.nodes = nodes

    # -- one node
    async def _resyncing(self, client: NodeClient, collection: str, call: NodeCall, db: str = DEFAULT_DB) -> Any:
        """A read on one node. A node that restarted forgets its load state (milvus-lite does);
        when it answers "collection not loaded" for a collection recorded as loaded, bring it
        back to the recorded state and retry once, instead of failing until the next health
        check."""
        try:
            return await call(client)
        except NodeError as exc:
            if not is_not_loaded(exc):
                raise
            rec = await self.nodes.collection(collection, db or DEFAULT_DB)
            if not rec.loaded:
                raise
            log.info("node %s lost the load state of %s; re-syncing", client.id, rec.name)
            client.synced = False
            await self.nodes.sync_nodes([client])
            return await call(client)

    async def call(self, client: NodeClient, method: str, request: Any) -> Any:
        """One read request on one node, re-synced and retried once after "not loaded"."""
        return await self._resyncing(client, request.collection_name, lambda c: c.call(method, request),
                                     getattr(request, "db_name", DEFAULT_DB))

    def _skipped(self, node_id: str, method: str) -> None:
        """A node not called because its circuit is open: the request went without it."""
        metrics.NODE_ERRORS.labels(node=node_id, method=method).inc()

    async def _gather(self, clients: Sequence[NodeClient], call: NodeCall) -> list[Any]:
        raw = await asyncio.gather(*(call(c) for c in clients), return_exceptions=True)
        for c, r in zip(clients, raw):
            if isinstance(r, Unavailable):
                self.nodes.mark_failed(c.id)
        return raw

    # -- all or nothing (DDL)
    async def each(self, clients: Iterable[NodeClient], call: NodeCall) -> dict[str, Any]:
        """Run ``call`` on every client in parallel; every one must answer."""
        clients = list(clients)
        return require_all(clients, await self._gather(clients, call))

    async def call_all(self, method: str, request: Any, clients: Iterable[NodeClient]) -> dict[str, Any]:
        return await self.each(clients, lambda c: c.call(method, request))

    async def first(self, clients: Iterable[NodeClient], method: str, request: Any) -> Any | None:
        """Ask the clients one after another; the first answer, or None when none answers."""
        for client in clients:
            try:
                return await client.call(method, request)
            except Unavailable:
                self.nodes.mark_failed(client.id)
            except ProxyError:
                continue
        return None

    # -- reads
    async def read(self, rec: CollectionRecord, method: str, reqs: Mapping[str, Any],
                   allow_partial: bool, fanout: bool = False) -> Gathered:
        """Send one read request per node (``reqs`` by node id); see :meth:`read_each`."""
        return await self.read_each(rec, method, list(reqs), lambda c: c.call(method, reqs[c.id]), allow_partial,
                                    fanout)

    async def read_each(self, rec: CollectionRecord, method: str, node_ids: Sequence[str], call: NodeCall,
                        allow_partial: bool, fanout: bool = False) -> Gathered:
        """Run ``call`` on live nodes among ``node_ids``, hedged (:mod:`shardproxy.hedged`).

        ``fanout`` (every node answers the same request: search, filter query): ask a set of
        replicas covering the ring, hedge to a spare replica when one is slower than its
        threshold, stop when the answers cover the ring (:meth:`Placement.read_plan`).
        Otherwise every node in ``node_ids`` must answer. A node that fails, or whose circuit
        opens while we wait, is given up (and replaced by a spare when there is one). What is
        still not covered goes to the partial policy: UNAVAILABLE naming the missing shards,
        or (``allow_partial``) the answer of the live nodes with a partial :class:`Coverage`."""
        placement = self.nodes.placement(rec)
        for nid in node_ids:
            if not self.nodes.is_live(nid):
                self._skipped(nid, method)
        if fanout:
            first, spare, covers = placement.read_plan(node_ids, self.nodes.is_live, next(_ROTATION),
                                                       self.nodes.has_hints)
        else:
            first, spare = [n for n in node_ids if self.nodes.is_live(n)], []
            need = frozenset(node_ids)
            covers = lambda got: need <= got  # noqa: E731
        s, tracker = self.nodes.settings, self.nodes.latency
        got = await gather_covering(
            first, spare, lambda n: self._resyncing(self.nodes.client(n), rec.name, call, rec.db), covers,
            lambda n: hedge_delay(tracker, n, method, factor=s.hedge_factor, min_s=s.hedge_min_s, max_s=s.hedge_max_s),
            self.nodes.hedge_budget, is_live=self.nodes.is_live,
        )
        if got.hedges:
            metrics.HEDGES.labels(method=method).inc(len(got.hedges))
            if got.hedge_won:
                metrics.HEDGE_WINS.labels(method=method).inc()
        if got.retries:
            metrics.READ_RETRIES.labels(method=method).inc(len(got.retries))
        for nid in got.failed:
            self.nodes.mark_failed(nid)
        out = Gathered(results=got.results)
        if not got.complete:
            down = {n for n in node_ids if n not in got.results}
            failed = [f"{n}: {m}" for n, m in got.failed.items()]
            out.coverage = decide(placement.missing_shards(down), down, failed, allow_partial)
            if out.coverage.partial:
                metrics.PARTIAL_RESULTS.labels(method=method).inc()
        return out

    # -- writes
    async def write(self, rec: CollectionRecord, method: str, reqs: Mapping[str, Any],
                    keys: Mapping[str, Sequence[Key]] | None = None) -> dict[str, Any]:
        """Send one write per node (``reqs`` by node id) through the node's write slot; answers
        or exceptions by node id, for the caller's policy (ack tally, all-or-nothing).

        Nodes whose circuit is open are not called (a write sent to a hung node may land when it
        resumes, after the caller was told it failed). With R > 1 and ``keys`` (the keys each
        node's request carries) every node that is down or unreachable gets its keys recorded
        for hinted handoff (replayed from the other replicas when it answers again). With R = 1,
        an insert whose outcome on a node is unknown (unreachable, or no answer by the deadline)
        is recorded for undo on that node, and its circuit opened: the node takes no read or write
        until the undo ran (:func:`shardproxy.handoff.replay_batch`), so a client's retry lands
        after it."""
        replicated = rec.replicas > 1 and keys is not None
        out: dict[str, Any] = {}
        called: list[str] = []
        for nid in reqs:
            if not self.nodes.is_live(nid):
                self._skipped(nid, method)
                out[nid] = NotCalled(f"node {nid} is down or not answering (its circuit is open; not called)")
            else:
                called.append(nid)
        clients = [self.nodes.client(n) for n in called]
        try:
            raw = await self._gather(clients, lambda c: c.write(method, rec.key, reqs[c.id]))
        except asyncio.CancelledError:  # the caller went away: what was sent may still land
            if not replicated and method == "Insert" and keys is not None:
                await asyncio.shield(self._undo_later(rec, {n: keys[n] for n in called}))
            raise
        if not replicated and method == "Insert" and keys is not None:
            await self._undo_later(rec, {n: keys[n] for n, r in zip(called, raw) if unknown_outcome(r)})
        for nid, r in zip(called, raw):
            out[nid] = r
            if method in WRITE_METHODS and not isinstance(r, BaseException) and keys is not None:
                metrics.ROWS_ROUTED.labels(node=nid).inc(len(keys[nid]))  # rows the node accepted
        if replicated:
            assert keys is not None
            for nid, r in out.items():
                if isinstance(r, Unavailable):
                    await self.nodes.add_hints(nid, rec.key, keys[nid])
            # after the writes landed: a replay racing with them replays their keys once more
            await self.nodes.touch_hints(rec.key, {n: list(keys[n]) for n, r in out.items()
                                                   if not isinstance(r, BaseException)})
        return {n: out[n] for n in reqs}

    async def _undo_later(self, rec: CollectionRecord, by_node: Mapping[str, Sequence[Key]]) -> None:
        """R = 1 inserts that may land on these nodes after they were reported as failed: record
        them for undo (a hint with the :data:`~shardproxy.hints.UNDO` mark, replayed as a delete
        before the node serves again) and keep the node out until then (circuit open)."""
        for nid, pks in by_node.items():
            if pks:
                self.nodes.mark_failed(nid)
                await self.nodes.add_hints(nid, rec.key, pks, UNDO)
