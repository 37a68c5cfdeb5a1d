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
    auth: bool = True  # proxies require a token; root's password is generated unless given
    root_password: str | None = None
    tls: bool = False  # serve TLS with a throwaway CA (certificates under DATA_DIR/tls)
    mtls: bool = False  # ... and require client certificates
    metrics: bool = False  # /metrics on every proxy, migrator and worker (ports kept in cluster.json)
    web_port: int | None = None  # start the shopper's page (`embed web`) on this port (0 = a free one)
    web: ManagedProcess | None = None
    metrics_ports: dict[str, int] = field(default_factory=dict)
    engine: str = "milvus-lite"  # or "milvus": each node a real Milvus standalone (PyPI's milvus package)

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
        return f"{'https' if self.tls or self.mtls else 'http'}://{self.proxy_address}"

    @property
    def token(self) -> str:
        """root's token (``root:PASSWORD``), empty with auth off."""
        return f"root:{self._root_password()}" if self.auth else ""

    def _root_password(self) -> str:
        if self.root_password is None:
            path = self.data_dir / "root_password"
            if not path.exists():
                from shardproxy.auth.passwords import new_password

                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(new_password())
                path.chmod(0o600)
            self.root_password = path.read_text().strip()
        return self.root_password

    def access(self, token: str | None = None):  # type: ignore[no-untyped-def]
        """How a client reaches the proxy: a token (root's unless given) and TLS files."""
        from shardproxy.auth.client import ClientAccess

        certs = self.certs()
        tok = self.token if token is None else token
        if certs is None:
            return ClientAccess(tok)
        return ClientAccess(tok, str(certs.ca), str(certs.client_cert) if self.mtls else "",
                            str(certs.client_key) if self.mtls else "")

    def certs(self):  # type: ignore[no-untyped-def]
        if not (self.tls or self.mtls):
            return None
        from shardproxy.auth.certs import make_dev_certs

        return make_dev_certs(self.data_dir / "tls", hosts=("localhost", self.host))

    def connect_kwargs(self, token: str | None = None, **extra: object) -> dict[str, object]:
        """Keyword arguments for pymilvus (``MilvusClient(**c.connect_kwargs())``,
        ``connections.connect(**...)``, ``AsyncMilvusClient``) that reach this cluster's proxy.
        Tests and tools build proxy clients through this one place, so connection settings the
        proxy needs (credentials, TLS) are added here once. ``token``: another user's
        ``user:password`` or API key instead of root's."""
        from shardproxy.auth.client import pymilvus_kwargs

        return pymilvus_kwargs(self.proxy_address, self.access(token), **extra)

    def client(self, token: str | None = None, **extra: object):  # type: ignore[no-untyped-def]
        """A ``pymilvus.MilvusClient`` connected to the proxy (see :meth:`connect_kwargs`)."""
        from pymilvus import MilvusClient

        return MilvusClient(**self.connect_kwargs(token, **extra))

    def channel(self, address: str | None = None, token: str | None = None,
                options: list[tuple[str, object]] | None = None) -> grpc.Channel:
        """A blocking gRPC channel to the proxy (or ``address``, another proxy of this cluster)
        with the token and TLS settings: for admin, image search and raw Milvus stubs."""
        from shardproxy.auth.client import channel

        return channel(address or self.proxy_address, self.access(token), options)

    def _layout(self) -> dict:
        path = self.data_dir / "cluster.json"
        if path.exists():
            layout = json.loads(path.read_text())
        else:
            layout = {"redis_port": procs.free_port(self.host), "nodes": []}
        while len(layout["nodes"]) < self.nodes + self.spare:
            i = len(layout["nodes"])
            layout["nodes"].append({"id": f"node-{i}", "port": procs.free_port(self.host)})
        if layout.setdefault("engine", self.engine) != self.engine:
            raise ValueError(f"{self.data_dir} holds {layout['engine']} nodes, not {self.engine}: "
                             "use the same --engine or another data dir")
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
                node = self._start_node(spec["id"], spec["port"])
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
                                                  extra_env={**worker_env, **self.client_env()})
                self.extra.append(worker)
                log.info("embedding worker started (pid %d, log %s)", worker.pid, worker.log_path)
            if self.web_port is not None:
                self.web = procs.start_web(self.proxy_uri, self.redis_url, layout["web_port"], self.host,
                                           self.data_dir / "web.log", extra_env=self.client_env())
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
    def _start_node(self, node_id: str, port: int) -> ManagedProcess:
        """One Milvus node of this cluster's engine on its data dir and port."""
        if self.engine == "milvus":
            return procs.start_milvus_standalone(self.data_dir / node_id, port, self.host, name=node_id)
        if self.engine != "milvus-lite":
            raise ValueError(f"unknown engine {self.engine!r}: use milvus-lite or milvus")
        return procs.start_milvus(self.data_dir / node_id, port, self.host, name=node_id)

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
            **self._auth_env(),
            **self.proxy_env,
        }

    def _auth_env(self) -> dict[str, str]:
        env = {"SHARDPROXY_AUTH_ENABLED": "true" if self.auth else "false",
               "SHARDPROXY_AUDIT_LOG": str(self.data_dir / "audit.log")}
        if self.auth:
            self._root_password()
            if self.root_password is not None:
                (self.data_dir / "root_password").write_text(self.root_password)
                (self.data_dir / "root_password").chmod(0o600)
            env.update(SHARDPROXY_ROOT_PASSWORD_FILE=str(self.data_dir / "root_password"),
                       SHARDPROXY_ROOT_PASSWORD_RESET="true")
        certs = self.certs()
        if certs is not None:
            env.update(SHARDPROXY_TLS_CERT=str(certs.server_cert), SHARDPROXY_TLS_KEY=str(certs.server_key))
            if self.mtls:
                env["SHARDPROXY_TLS_CLIENT_CA"] = str(certs.ca)
        return env

    def client_env(self, token: str | None = None) -> dict[str, str]:
        """Environment of client processes (embed worker, CLIs): token and TLS files."""
        acc = self.access(token)
        env = {"SHARDPROXY_TOKEN": acc.token}
        if acc.tls:
            env.update(SHARDPROXY_CA=acc.ca, SHARDPROXY_CLIENT_CERT=acc.cert, SHARDPROXY_CLIENT_KEY=acc.key)
        return env

    def _spawn_proxy(self, port: int | None, name: str) -> ManagedProcess:
        env = self._env()
        if self.metrics:
            env = {"SHARDPROXY_METRICS_PORT": str(self.metrics_ports[name]),
                   "SHARDPROXY_MIGRATOR_METRICS_PORT": str(self.metrics_ports["migrator"]), **env}
        proxy = procs.start_proxy(
            self.redis_url, port, self.host, log_path=self.data_dir / f"{name}.log", extra_env=env, name=name
        )
        self.wait_serving(proxy)
        log.info("%s ready at %s", name, proxy.address)
        return proxy

    def wait_serving(self, proxy: ManagedProcess, timeout: float = 180.0) -> None:
        """Wait until ``proxy`` answers its health check with SERVING (its port opens before it
        serves: the image search plug-in imports torch in between). Health is open without a
        token; the channel carries TLS settings when the cluster serves TLS."""
        procs.wait_serving(proxy, timeout, channel=self.channel(proxy.address))

    def start_proxy(self, port: int | None = None) -> ManagedProcess:
        port = port or (self.proxy.port if self.proxy else None)
        self.proxy = self._spawn_proxy(port, "proxy")
        return self.proxy

    def admin(self, address: str | None = None, token: str | None = None) -> admin_pb2_grpc.ShardAdminStub:
        return admin_pb2_grpc.ShardAdminStub(self.channel(address, token))

    def register_nodes(self, nodes: list[tuple[str, str]], spare: bool = False) -> None:
        stub = self.admin()
        deadline = time.monotonic() + 180
        while True:  # a just-started proxy on a starved machine may not take the first connection in time
            try:
                known = {n.id for n in stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30, wait_for_ready=True).nodes}
                break
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        for node_id, address in nodes:
            if node_id in known:
                continue
            stub.AddNode(admin_pb2.AddNodeRequest(address=address, id=node_id, spare=spare), timeout=60)
            log.info("registered %s (%s)", node_id, address)

    def restart_node(self, index: int) -> ManagedProcess:
        """Start a stopped (or crashed) Milvus node again on its port and data dir."""
        old = self.milvus[index]
        old.stop()
        node = self._start_node(old.name, old.port)
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
        reported: set[str] = set()  # each dead process once, not every 2 s
        while True:
            for p in [self.redis, *self.all_proxies, *self.milvus, *self.extra, self.web]:
                if p is not None and not p.alive() and p.name not in reported:
                    reported.add(p.name)
                    log.error("%s exited with code %s (log: %s)", p.name, p.proc.returncode, p.log_path)
            time.sleep(2)
