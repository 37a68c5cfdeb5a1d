"""An embedded cluster on one machine, all real processes: N milvus-lite nodes (plus S spare
nodes, started and registered as ``spare``, outside the ring), one Redis (valkey), P proxies on
the same Redis. Ports are remembered in ``DATA_DIR/cluster.json`` so a restart on the same
data dir finds its nodes (and their data) again."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

from devkit import procs
from devkit.procs import ManagedProcess

log = logging.getLogger(__name__)


@dataclass
class DevCluster:
    data_dir: Path
    nodes: int = 3
    proxy_port: int | None = None
    host: str = "127.0.0.1"
    proxy_env: dict[str, str] = field(default_factory=dict)
    with_worker: bool = False
    external_redis_url: str | None = None
    redis: ManagedProcess | None = None
    milvus: list[ManagedProcess] = field(default_factory=list)
    proxy: ManagedProcess | None = None
    extra: list[ManagedProcess] = field(default_factory=list)
    proxies: int = 1
    spare: int = 0
    replicas: int = 1  # default replication factor of new collections (proxy setting)
    more_proxies: list[ManagedProcess] = field(default_factory=list)
    metrics: bool = False  # /metrics on every proxy, migrator and worker (ports kept in cluster.json)
    web_port: int | None = None  # start the shopper's page (`embed web`) on this port (0 = a free one)
    web: ManagedProcess | None = None
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @property
    def all_proxies(self) -> list[ManagedProcess]:
        return [p for p in [self.proxy, *self.more_proxies] if p is not None]

    @property
    def spare_nodes(self) -> list[ManagedProcess]:
        return self.milvus[self.nodes :]

    @property
    def redis_url(self) -> str:
        if self.external_redis_url:
            return self.external_redis_url
        assert self.redis is not None
        return f"redis://{self.redis.address}/0"

    @property
    def proxy_address(self) -> str:
        assert self.proxy is not None
        return self.proxy.address

    @property
    def proxy_uri(self) -> str:
        return f"http://{self.proxy_address}"

    def connect_kwargs(self, **extra: object) -> dict[str, object]:
        """Keyword arguments for pymilvus (``MilvusClient(**c.connect_kwargs())``,
        ``connections.connect(**...)``, ``AsyncMilvusClient``) that reach this cluster's proxy.
        Tests and tools build proxy clients through this one place, so connection settings the
        proxy needs (credentials, TLS) are added here once."""
        return {"uri": self.proxy_uri, **extra}

    def client(self, **extra: object):  # type: ignore[no-untyped-def]
        """A ``pymilvus.MilvusClient`` connected to the proxy (see :meth:`connect_kwargs`)."""
        from pymilvus import MilvusClient

        return MilvusClient(**self.connect_kwargs(**extra))

    def _layout(self) -> dict:
        path = self.data_dir / "cluster.json"
        if path.exists():
            layout = json.loads(path.read_text())
        else:
            layout = {"redis_port": procs.free_port(self.host), "nodes": []}
        while len(layout["nodes"]) < self.nodes + self.spare:
            i = len(layout["nodes"])
            layout["nodes"].append({"id": f"node-{i}", "port": procs.free_port(self.host)})
        if self.proxy_port:
            layout["proxy_port"] = self.proxy_port
        layout.setdefault("proxy_port", procs.free_port(self.host))
        more = layout.setdefault("more_proxy_ports", [])
        while len(more) < self.proxies - 1:
            more.append(procs.free_port(self.host))
        if self.metrics:
            ports = layout.setdefault("metrics_ports", {})
            for name in ["proxy", *(f"proxy-{i}" for i in range(1, self.proxies)), "migrator", "embed-worker"]:
                ports.setdefault(name, procs.free_port(self.host))
            self.metrics_ports = dict(ports)
        if self.web_port is not None:
            layout["web_port"] = self.web_port or layout.get("web_port") or procs.free_port(self.host)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(layout, indent=2))
        return layout

    def start(self) -> "DevCluster":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        layout = self._layout()
        try:
            if self.external_redis_url:
                log.info("using external redis at %s", self.external_redis_url)
            else:
                self.redis = procs.start_redis(self.data_dir / "redis", layout["redis_port"], self.host)
                log.info("redis ready at %s", self.redis.address)
            specs = layout["nodes"][: self.nodes + self.spare]
            for spec in specs:
                node = procs.start_milvus(self.data_dir / spec["id"], spec["port"], self.host, name=spec["id"])
                self.milvus.append(node)
                log.info("milvus %s ready at %s", spec["id"], node.address)
            self.start_proxy(layout["proxy_port"])
            for i, port in enumerate(layout["more_proxy_ports"][: self.proxies - 1], start=1):
                self.more_proxies.append(self._spawn_proxy(port, f"proxy-{i}"))
            self.register_nodes([(spec["id"], f"{self.host}:{spec['port']}") for spec in specs[: self.nodes]])
            self.register_nodes([(spec["id"], f"{self.host}:{spec['port']}") for spec in specs[self.nodes :]], spare=True)
            if self.with_worker:
                worker_env = {"EMBED_METRICS_PORT": str(self.metrics_ports["embed-worker"])} if self.metrics else {}
                worker = procs.start_embed_worker(self.redis_url, self.proxy_uri, self.data_dir / "embed-worker.log",
                                                  extra_env=worker_env)
                self.extra.append(worker)
                log.info("embedding worker started (pid %d, log %s)", worker.pid, worker.log_path)
            if self.web_port is not None:
                self.web = procs.start_web(self.proxy_uri, self.redis_url, layout["web_port"], self.host,
                                           self.data_dir / "web.log")
                log.info("the page is at %s", self.web_url)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def web_url(self) -> str:
        return f"http://{self.web.address}/" if self.web else ""

    def metrics_endpoints(self) -> dict[str, str]:
        """Process name -> its /metrics URL (the migrator's answers only while a move runs)."""
        started = {p.name for p in [*self.all_proxies, *self.extra]} | {"migrator"}
        return {name: f"http://{self.host}:{port}/metrics" for name, port in self.metrics_ports.items() if name in started}

    def _env(self) -> dict[str, str]:
        """Environment of proxies (and the migrators they start): this checkout on PYTHONPATH,
        so child processes run the same code as the caller."""
        root = Path(__file__).resolve().parent.parent
        paths = [str(root), str(root / "gen")]
        old = os.environ.get("PYTHONPATH")
        return {
            "PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])),
            "SHARDPROXY_MIGRATOR_LOG": str(self.data_dir / "migrator.log"),
            "SHARDPROXY_DEFAULT_REPLICAS": str(self.replicas),
            **self.proxy_env,
        }

    def _spawn_proxy(self, port: int | None, name: str) -> ManagedProcess:
        env = self._env()
        if self.metrics:
            env = {"SHARDPROXY_METRICS_PORT": str(self.metrics_ports[name]),
                   "SHARDPROXY_MIGRATOR_METRICS_PORT": str(self.metrics_ports["migrator"]), **env}
        proxy = procs.start_proxy(
            self.redis_url, port, self.host, log_path=self.data_dir / f"{name}.log", extra_env=env, name=name
        )
        procs.wait_serving(proxy)
        log.info("%s ready at %s", name, proxy.address)
        return proxy

    def start_proxy(self, port: int | None = None) -> ManagedProcess:
        port = port or (self.proxy.port if self.proxy else None)
        self.proxy = self._spawn_proxy(port, "proxy")
        return self.proxy

    def admin(self) -> admin_pb2_grpc.ShardAdminStub:
        channel = grpc.insecure_channel(self.proxy_address)
        return admin_pb2_grpc.ShardAdminStub(channel)

    def register_nodes(self, nodes: list[tuple[str, str]], spare: bool = False) -> None:
        stub = self.admin()
        # wait_for_ready: on a loaded machine the first connection can take longer than one attempt
        known = {n.id for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=120, wait_for_ready=True).nodes}
        for node_id, address in nodes:
            if node_id in known:
                continue
            stub.AddNode(admin_pb2.AddNodeRequest(address=address, id=node_id, spare=spare), timeout=60)
            log.info("registered %s (%s)", node_id, address)

    def restart_node(self, index: int) -> ManagedProcess:
        """Start a stopped (or crashed) Milvus node again on its port and data dir."""
        old = self.milvus[index]
        old.stop()
        node = procs.start_milvus(self.data_dir / old.name, old.port, self.host, name=old.name)
        self.milvus[index] = node
        return node

    def restart_proxy(self) -> None:
        assert self.proxy is not None
        port = self.proxy.port
        self.proxy.stop()
        self.start_proxy(port)

    def stop(self) -> None:
        for p in [self.web, *self.extra, *self.more_proxies, self.proxy, *self.milvus, self.redis]:
            if p is not None:
                try:
                    p.stop()
                except Exception as exc:  # noqa: BLE001
                    log.warning("stopping %s: %s", p.name, exc)

    def wait_forever(self) -> None:
        while True:
            for p in [self.redis, *self.all_proxies, *self.milvus, *self.extra, self.web]:
                if p is not None and not p.alive():
                    log.error("%s exited with code %s (log: %s)", p.name, p.proc.returncode, p.log_path)
            time.sleep(2)
