"""The shopper's page (``embed web``): a Starlette app serving plain HTML/JS, with a JSON API over
the proxy's gRPC SearchByImage, the catalog collection, the import queue and the cluster status.

Every failure reaches the page as ``{"error": kind, "message": text}`` with an HTTP status a person
can act on (not an image, too large, unknown collection, cluster unavailable); never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from embed.config import EmbedSettings
from embed.web.backend import Backend, jpeg_thumbnail

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
_IMAGE_REASON = re.compile(r"invalid image \((\w+)\)")


class PageError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error_for_grpc(code: grpc.StatusCode, details: str, max_mb: float) -> PageError:
    """How a SearchByImage failure reads on the page (pure: unit-tested)."""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        m = _IMAGE_REASON.search(details or "")
        reason = m.group(1) if m else ""
        if reason == "too_large" or reason == "too_many_pixels":
            return PageError(413, "too_large", f"This photo is too large. Please upload an image under {max_mb:.0f} MB "
                                               "and 40 megapixels.")
        if reason in ("not_an_image", "corrupt", "empty"):
            return PageError(400, "not_an_image", "This file is not an image we can read. Please upload a JPEG, PNG "
                                                  "or WebP photo.")
        if "filter" in details.lower() or "expr" in details.lower() or "refused" in details.lower():
            return PageError(400, "bad_filter", f"The filter was not accepted: {details}")
        return PageError(400, "bad_request", details)
    if code == grpc.StatusCode.NOT_FOUND:
        return PageError(404, "no_collection", f"That catalog does not exist ({details}). Import one first.")
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return PageError(409, "model", f"The catalog cannot be searched right now: {details}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return PageError(503, "unavailable", "The catalog search is unavailable right now (the cluster does not "
                                             "answer). Please try again in a moment.")
    return PageError(502, "server", "Something went wrong on our side. Please try again.")


def _collection(request: Request, default: str) -> str:
    name = request.query_params.get("collection") or default
    if not name:
        raise PageError(400, "no_collection", "No catalog selected.")
    return name


def create_app(settings: EmbedSettings, default_collection: str = "") -> Starlette:
    backend = Backend(settings)
    max_bytes = settings.max_image_bytes

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def catalog_page(request: Request) -> Response:
        return FileResponse(STATIC / "catalog.html")

    async def config(request: Request) -> Response:
        cols = await asyncio.to_thread(backend.collections)
        default = default_collection or next((c["name"] for c in cols if c["image_search"]), "")
        return JSONResponse({"collections": cols, "default": default, "max_image_bytes": max_bytes})

    async def search(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > max_bytes + 64 * 1024:
            raise error_for_grpc(grpc.StatusCode.INVALID_ARGUMENT, "invalid image (too_large)", max_bytes / 2**20)
        async with request.form(max_files=1, max_fields=8, max_part_size=max_bytes + 1) as form:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise PageError(400, "no_image", "Choose a photo to search with.")
            data = await upload.read(max_bytes + 1)
            collection = str(form.get("collection") or default_collection)
            flt = str(form.get("filter") or "").strip()
            try:
                top_k = max(1, min(50, int(str(form.get("top_k") or 5))))
            except ValueError:
                raise PageError(400, "bad_request", "top_k must be a number") from None
        if not data:
            raise PageError(400, "not_an_image", "The file is empty. Please upload a JPEG, PNG or WebP photo.")
        if len(data) > max_bytes:
            raise error_for_grpc(grpc.StatusCode.INVALID_ARGUMENT, "invalid image (too_large)", max_bytes / 2**20)
        if not collection:
            raise PageError(400, "no_collection", "No catalog selected. Import a catalog first.")
        try:
            result = await backend.search(data, collection, flt, top_k)
        except grpc.RpcError as e:
            raise error_for_grpc(e.code(), e.details() or "", max_bytes / 2**20) from None  # type: ignore[attr-defined]
        result["found"] = sum(len(o["matches"]) for o in result["objects"])
        return JSONResponse(result)

    async def products(request: Request) -> Response:
        coll = _collection(request, default_collection)
        try:
            page = max(0, int(request.query_params.get("page", "0")))
            size = max(1, min(100, int(request.query_params.get("size", "24"))))
        except ValueError:
            raise PageError(400, "bad_request", "page and size must be numbers") from None
        return JSONResponse(await asyncio.to_thread(backend.products, coll, page, size))

    async def image(request: Request) -> Response:
        coll = _collection(request, default_collection)
        try:
            image_id = int(request.path_params["image_id"])
        except ValueError:
            raise PageError(400, "bad_request", "bad image id") from None
        path = await asyncio.to_thread(backend.image_path, coll, image_id)
        if path is None or not path.is_file():
            raise PageError(404, "no_image", "That catalog image is not available.")
        data = await asyncio.to_thread(jpeg_thumbnail, path)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def scenes(request: Request) -> Response:
        coll = _collection(request, default_collection)
        found = await asyncio.to_thread(backend.scenes, coll)
        return JSONResponse({"collection": coll, "scenes": [
            {"index": i, "url": f"/api/scenes/{i}.jpg?collection={coll}", "products": s.products,
             "boxes": [list(b) for b in s.boxes]} for i, s in enumerate(found)]})

    async def scene_image(request: Request) -> Response:
        coll = _collection(request, default_collection)
        found = await asyncio.to_thread(backend.scenes, coll)
        i = int(request.path_params["index"])
        if not 0 <= i < len(found):
            raise PageError(404, "no_scene", "No such sample scene.")
        return Response(found[i].jpeg, media_type="image/jpeg")

    async def imports(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(backend.imports))

    async def cluster(request: Request) -> Response:
        return JSONResponse(await backend.cluster())

    async def page_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, PageError):
            return JSONResponse({"error": exc.kind, "message": exc.message}, status_code=exc.status)
        if isinstance(exc, HTTPException):
            return JSONResponse({"error": "http", "message": exc.detail}, status_code=exc.status_code)
        if isinstance(exc, grpc.RpcError):
            e = error_for_grpc(exc.code(), exc.details() or "", max_bytes / 2**20)  # type: ignore[attr-defined]
            return JSONResponse({"error": e.kind, "message": e.message}, status_code=e.status)
        name = type(exc).__name__
        if "Connection" in name or "Milvus" in name or "Redis" in name or isinstance(exc, OSError):
            log.warning("%s %s: %s: %s", request.method, request.url.path, name, exc)
            return JSONResponse({"error": "unavailable", "message": "The catalog service is unavailable right now "
                                 "(the cluster does not answer). Please try again in a moment."}, status_code=503)
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": "server", "message": "Something went wrong on our side. Please try again."},
                            status_code=500)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        await backend.close()

    def guarded(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Every failure of an API route becomes a JSON message (the page shows it); none escapes."""

        @functools.wraps(fn)
        async def run(request: Request) -> Response:
            try:
                return await fn(request)
            except Exception as exc:  # noqa: BLE001 - mapped to a message, logged
                return await page_error(request, exc)

        return run

    routes = [
        Route("/", index), Route("/catalog", catalog_page),
        Route("/api/config", guarded(config)), Route("/api/search", guarded(search), methods=["POST"]),
        Route("/api/products", guarded(products)), Route("/api/image/{image_id}", guarded(image)),
        Route("/api/scenes", guarded(scenes)), Route("/api/scenes/{index:int}.jpg", guarded(scene_image)),
        Route("/api/imports", guarded(imports)), Route("/api/cluster", guarded(cluster)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: page_error}, lifespan=lifespan)
