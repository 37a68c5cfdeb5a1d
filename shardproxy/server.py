"""Assembles the proxy's gRPC server: Milvus data plane, admin API, image search, health,
reflection — all on one port."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

from shardproxy import metrics, tracing
from shardproxy.admin import AdminServicer
from shardproxy.auth.setup import ProxyAuth
from shardproxy.cluster import Cluster
from shardproxy.config import ProxySettings
from shardproxy.servicer import MilvusProxyServicer

log = logging.getLogger(__name__)


class ProxyServer:
    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.cluster = Cluster(settings)
        self.auth = ProxyAuth(settings)
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
        admin_pb2_grpc.add_ShardAdminServicer_to_server(AdminServicer(self.cluster), self.server)
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
        if settings.image_search:
            name = self._add_image_search()
            if name:
                services.append(name)
        reflection.enable_server_reflection(services, self.server)

    def _add_image_search(self) -> str | None:
        try:
            from embed.service import add_image_search_service  # type: ignore[import-not-found]
        except ImportError as exc:
            log.info("image search not served: %s", exc)
            return None
        from embed.config import EmbedSettings  # type: ignore[import-not-found]

        add_image_search_service(self.server, self.auth.internal_uri(self.port),
                                 EmbedSettings(token=self.auth.internal_token()))
        from shopbyimage.v1 import image_search_pb2

        return image_search_pb2.DESCRIPTOR.services_by_name["ImageSearch"].full_name

    async def start(self) -> None:
        await self.auth.start()
        await self.cluster.start()
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
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
