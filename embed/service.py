"""gRPC ``ImageSearch`` servicer (grpc.aio), registered by the proxy with ``add_image_search_service``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from pymilvus.exceptions import MilvusException

from embed.artifacts import ModelFileError
from embed.config import EmbedSettings
from embed.errors import CollectionNotFound, ModelConfigError, ModelMismatch
from embed.imageio import InvalidImage
from embed.query import QueryEngine, SearchResult
from shopbyimage.v1 import image_search_pb2 as pb
from shopbyimage.v1 import image_search_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The one place where pipeline errors become gRPC status codes."""
    if isinstance(exc, InvalidImage):
        return grpc.StatusCode.INVALID_ARGUMENT, f"invalid image ({exc.reason}): {exc}"
    if isinstance(exc, CollectionNotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, ModelMismatch | ModelConfigError | ModelFileError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, MilvusException):
        msg = str(exc)
        if "filter" in msg.lower() or "expr" in msg.lower() or "parse" in msg.lower():
            return grpc.StatusCode.INVALID_ARGUMENT, f"vector store refused the search: {msg}"
        return grpc.StatusCode.UNAVAILABLE, f"vector store error: {msg}"
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def to_proto(res: SearchResult) -> pb.SearchByImageResponse:
    return pb.SearchByImageResponse(
        objects=[
            pb.DetectedObject(
                box=pb.Box(x0=o.box[0], y0=o.box[1], x1=o.box[2], y1=o.box[3]),
                label=o.label,
                score=o.score,
                matches=[pb.ProductMatch(product_id=m.product_id, image_id=m.image_id, score=m.score) for m in o.matches],
            )
            for o in res.objects
        ],
        model_id=res.model_id,
        width=res.width,
        height=res.height,
        timings_ms={k: 1000 * v for k, v in res.timings.items()},
    )


class ImageSearchServicer(pb_grpc.ImageSearchServicer):
    def __init__(self, engine: QueryEngine) -> None:
        self.engine = engine

    async def SearchByImage(  # noqa: N802 (gRPC naming)
        self, request: pb.SearchByImageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchByImageResponse:
        if not request.collection:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "collection is required")
        if request.top_k < 0 or request.max_objects < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "top_k and max_objects must not be negative")
        try:
            res = await asyncio.to_thread(
                self.engine.search_image, request.image, request.collection,
                top_k=request.top_k, filter=request.filter, max_objects=request.max_objects,
            )
        except Exception as e:  # mapped in one place; the service keeps serving
            code, msg = status_for(e)
            log.log(logging.ERROR if code == grpc.StatusCode.INTERNAL else logging.INFO,
                    "SearchByImage %s: %s", code.name, msg)
            await context.abort(code, msg)
        log.info("SearchByImage %s: %d objects, %.0f ms", request.collection, len(res.objects),
                 1000 * sum(res.timings.values()))
        return to_proto(res)


def add_image_search_service(
    server: grpc.aio.Server, milvus_uri: str, settings: EmbedSettings | None = None
) -> ImageSearchServicer:
    """Register the ImageSearch servicer on ``server``; models load lazily on the first request
    (a missing or invalid model config answers FAILED_PRECONDITION, it never crashes the server)."""
    servicer = ImageSearchServicer(QueryEngine(settings or EmbedSettings(), milvus_uri))
    pb_grpc.add_ImageSearchServicer_to_server(servicer, server)
    return servicer


def register(server: grpc.aio.Server, ctx: Any) -> str:
    """The proxy's ``shardproxy.services`` entry point: serve ImageSearch on the proxy's port,
    searching through the proxy itself (``ctx.self_uri``); models a collection needs are fetched
    from the cluster's Redis (``ctx.redis_url``) unless EMBED_ARTIFACTS_URL names another store.
    Returns the service's full name."""
    settings = EmbedSettings()
    if not settings.artifacts_url:
        settings = settings.model_copy(update={"artifacts_url": ctx.redis_url})
    # ctx.self_uri is the proxy's own plain loopback port: the proxy's in-process credential, no TLS
    # (nor a token or CA from the environment or a dev profile, meant for outside clients)
    settings = settings.model_copy(update={"token": getattr(ctx, "token", ""), "token_file": "", "tls_ca": "",
                                           "tls_cert": "", "tls_key": ""})
    add_image_search_service(server, ctx.self_uri, settings)
    return pb.DESCRIPTOR.services_by_name["ImageSearch"].full_name


async def serve(milvus_uri: str, host: str = "127.0.0.1", port: int = 0, settings: EmbedSettings | None = None,
                ready: asyncio.Event | None = None) -> None:
    """Run a standalone ImageSearch server (for development and tests; production uses the proxy)."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    add_image_search_service(server, milvus_uri, settings)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"ImageSearch serving on {host}:{bound} (vector store {milvus_uri})", flush=True)
    if ready is not None:
        ready.set()
    await server.wait_for_termination()
