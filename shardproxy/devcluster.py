"""An embedded cluster on one machine, all real processes: N milvus-lite nodes, one Redis
(valkey), one proxy. Ports are remembered in ``DATA_DIR/cluster.json`` so a restart on the same
data dir finds its nodes (and their data) again."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

from shardproxy import procs
from shardproxy.procs import ManagedProcess

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

    def _layout(self) -> dict:
        path = self.data_dir / "cluster.json"
        if path.exists():
            layout = json.loads(path.read_text())
        else:
            layout = {"redis_port": procs.free_port(self.host), "nodes": []}
        while len(layout["nodes"]) < self.nodes:
            i = len(layout["nodes"])
            layout["nodes"].append({"id": f"node-{i}", "port": procs.free_port(self.host)})
        if self.proxy_port:
            layout["proxy_port"] = self.proxy_port
        layout.setdefault("proxy_port", procs.free_port(self.host))
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
            for spec in layout["nodes"][: self.nodes]:
                node = procs.start_milvus(self.data_dir / spec["id"], spec["port"], self.host, name=spec["id"])
                self.milvus.append(node)
                log.info("milvus %s ready at %s", spec["id"], node.address)
            self.start_proxy(layout["proxy_port"])
            self.register_nodes([(spec["id"], f"{self.host}:{spec['port']}") for spec in layout["nodes"][: self.nodes]])
            if self.with_worker:
                worker = procs.start_embed_worker(self.redis_url, self.proxy_uri, self.data_dir / "embed-worker.log")
                self.extra.append(worker)
                log.info("embedding worker started (pid %d, log %s)", worker.pid, worker.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def start_proxy(self, port: int | None = None) -> ManagedProcess:
        port = port or (self.proxy.port if self.proxy else None)
        self.proxy = procs.start_proxy(
            self.redis_url, port, self.host, log_path=self.data_dir / "proxy.log", extra_env=self.proxy_env
        )
        log.info("proxy ready at %s", self.proxy.address)
        return self.proxy

    def admin(self) -> admin_pb2_grpc.ShardAdminStub:
        channel = grpc.insecure_channel(self.proxy_address)
        return admin_pb2_grpc.ShardAdminStub(channel)

    def register_nodes(self, nodes: list[tuple[str, str]]) -> None:
        stub = self.admin()
        known = {n.id for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes}
        for node_id, address in nodes:
            if node_id in known:
                continue
            stub.AddNode(admin_pb2.AddNodeRequest(address=address, id=node_id), timeout=60)
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
        for p in [*self.extra, self.proxy, *self.milvus, self.redis]:
            if p is not None:
                try:
                    p.stop()
                except Exception as exc:  # noqa: BLE001
                    log.warning("stopping %s: %s", p.name, exc)

    def wait_forever(self) -> None:
        while True:
            for p in [self.redis, self.proxy, *self.milvus, *self.extra]:
                if p is not None and not p.alive():
                    log.error("%s exited with code %s (log: %s)", p.name, p.proc.returncode, p.log_path)
            time.sleep(2)
