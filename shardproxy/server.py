"""Assembles the proxy's gRPC server: Milvus data plane, admin API, image search, health,
reflection — all on one port."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

from shardproxy import metrics, tracing
from shardproxy.admin import AdminServicer
from shardproxy.auth.setup import ProxyAuth
from shardproxy.background import Background
from shardproxy.cluster import Cluster
from shardproxy.config import ProxySettings
from shardproxy.servicer import MilvusProxyServicer

log = logging.getLogger(__name__)


SERVICES_GROUP = "shardproxy.services"


@dataclass(frozen=True)
class ServiceContext:
    """What a plug-in service is given: ``self_uri`` reaches this proxy's Milvus data plane,
    ``redis_url`` is the cluster's metadata store (a plug-in may keep its own keys there), ``token``
    authenticates calls to ``self_uri`` (the proxy's in-process credential)."""

    self_uri: str
    redis_url: str
    token: str = ""  # a credential for self_uri ("user:password" or an API key); empty with auth off


class ServiceHook(Protocol):
    """An entry point of the ``shardproxy.services`` group: registers one more gRPC service on the
    proxy's server and returns its full name for reflection. Image search plugs in this way
    (``embed.service:register``)."""

    def __call__(self, server: grpc.aio.Server, ctx: ServiceContext) -> str: ...


def add_plugin_services(server: grpc.aio.Server, ctx: ServiceContext) -> list[str]:
    """Register every installed service hook; one that cannot be imported is logged and skipped."""
    from importlib.metadata import entry_points

    names = []
    for ep in entry_points(group=SERVICES_GROUP):
        try:
            hook: ServiceHook = ep.load()
        except ImportError as exc:
            log.info("service %s not served: %s", ep.name, exc)
            continue
        names.append(hook(server, ctx))
        log.info("serving plug-in service %s (%s)", names[-1], ep.value)
    return names


class ProxyServer:
    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.cluster = Cluster(settings)
        self.auth = ProxyAuth(settings)
        self.auth.interceptor.resolve_alias = self.cluster.catalog.resolve  # grants follow aliases
        grpc_limit = max(4 * settings.max_request_bytes, 256 * 1024 * 1024)
        self.server = grpc.aio.server(
            interceptors=self.auth.interceptors,
            options=[
                ("grpc.max_receive_message_length", grpc_limit),
                ("grpc.max_send_message_length", 512 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
                # pymilvus pings every 10 s; accept that instead of answering GOAWAY too_many_pings
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.http2.max_ping_strikes", 0),
            ]
        )
        self.health = health.aio.HealthServicer()
        milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusProxyServicer(self.cluster), self.server)
        self.admin = AdminServicer(self.cluster)
        admin_pb2_grpc.add_ShardAdminServicer_to_server(self.admin, self.server)
        self.background = Background(
            self.cluster.store, self.admin._spawn_migrator, repair_interval_s=settings.repair_interval_s,
            repair_rows_per_s=settings.repair_rows_per_s, vnodes=settings.vnodes,
            watchdog=settings.migrator_watchdog and settings.migrator_autostart,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        services = [
            milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"].full_name,
            admin_pb2.DESCRIPTOR.services_by_name["ShardAdmin"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        self.port = self.auth.bind(self.server)
        if self.port == 0:
            raise OSError(f"cannot bind {settings.address}")
        if settings.image_search:  # setting name kept: turns the plug-in services on/off
            services += add_plugin_services(
                self.server,
                ServiceContext(self.auth.internal_uri(self.port), settings.redis_url, self.auth.internal_token()))
        reflection.enable_server_reflection(services, self.server)

    async def start(self) -> None:
        await self.auth.start()
        await self.cluster.start()
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.background.start()
        metrics.track_cluster(self.cluster)
        metrics.serve(self.settings.metrics_port)
        tracing.setup(self.settings.tracing, "shardproxy", self.settings.proxy_id or self.settings.address,
                      self.settings.otlp_endpoint)
        log.info(
            "shardproxy ready on %s:%d (ring epoch %d, %d node(s), auth %s, tls %s)",
            self.settings.host, self.port, self.cluster.epoch, len(self.cluster.nodes),
            "on" if self.settings.auth_enabled else "OFF", "on" if self.auth.tls else "off",
        )

    async def stop(self, grace: float = 2.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.background.stop()
        await self.server.stop(grace)
        await self.cluster.close()
        await self.auth.close()
        tracing.shutdown()


async def serve(settings: ProxySettings) -> None:
    """Run until SIGINT/SIGTERM."""
    srv = ProxyServer(settings)
    await srv.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await srv.stop()
