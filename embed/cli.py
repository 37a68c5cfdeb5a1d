"""``embed``: the shop-by-image pipeline CLI (import, worker, status, search, train, serve, web)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from embed.config import EmbedSettings, get_settings

app = typer.Typer(help="Shop-by-image pipeline: import a catalog through a queue of workers, search by image.",
                  no_args_is_help=True, add_completion=False)
err = Console(stderr=True)
out = Console()

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
ProxyOpt = Annotated[str | None, typer.Option("--proxy", help="proxy (Milvus protocol + ImageSearch) address; default EMBED_PROXY")]
RedisOpt = Annotated[str | None, typer.Option("--redis", "--redis-url", help="Redis/Valkey URL of the job queue; default EMBED_REDIS_URL")]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)], force=True)


def _fail(msg: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/] {msg}")
    return typer.Exit(code)


@contextmanager
def _friendly() -> Iterator[None]:
    """Clear messages for unreachable services and model problems instead of tracebacks."""
    import redis
    from pymilvus.exceptions import MilvusException

    from embed.artifacts import ModelFileError
    from embed.errors import PipelineError

    try:
        yield
    except redis.ConnectionError as e:
        raise _fail(f"cannot reach the job queue (Redis/Valkey, EMBED_REDIS_URL / --redis): {e}") from e
    except MilvusException as e:
        raise _fail(f"vector store (proxy, EMBED_PROXY / --proxy): {e}") from e
    except (PipelineError, ModelFileError) as e:
        raise _fail(str(e)) from e


def _preflight(s: EmbedSettings) -> None:
    from embed.preflight import check_proxy, check_redis

    check_redis(s.redis_url)
    if s.model_store_url != s.redis_url:
        check_redis(s.model_store_url)
    check_proxy(s.proxy, s.access())


def _grpc_target(addr: str) -> str:
    return addr.split("://", 1)[-1].rstrip("/")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what happens")] = False,
         token: Annotated[str | None, typer.Option("--token", envvar="SHARDPROXY_TOKEN", show_envvar=True,
                                                   help="proxy token: user:password or an API key")] = None) -> None:
    _setup_logging(verbose)
    if token:
        os.environ["EMBED_TOKEN"] = token  # read by EmbedSettings in every command


@app.command("import")
def import_(
    catalog: Annotated[Path, typer.Argument(help="catalog CSV: product_id,image_path[,attributes...]; paths relative to the CSV")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="collection to fill")],
    proxy: ProxyOpt = None,
    redis_url: RedisOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="show progress and return when every image is indexed or dead-lettered")] = False,
    adapt: Annotated[bool, typer.Option("--adapt/--no-adapt", help="adapt the embedder to the catalog first (cached per catalog)")] = True,
    timeout: Annotated[float | None, typer.Option(help="with --wait: give up after this many seconds")] = None,
) -> None:
    """Enqueue every catalog image on the job queue (the `embed worker` processes index them)."""
    from embed.catalog import CatalogError
    from embed.importer import start_import, wait_for_import

    s = get_settings(proxy=proxy, redis_url=redis_url)
    with _friendly():  # before the minutes of model adaptation
        _preflight(s)
    try:
        with _friendly():
            ticket = start_import(s, catalog, collection, s.proxy, adapt=adapt, console=err)
    except CatalogError as e:
        raise _fail(str(e)) from e
    err.print(f"enqueued {ticket.total} images of {catalog} for collection [bold]{collection}[/] "
              f"(import {ticket.import_id}, model {ticket.model_id})")
    if not wait:
        return
    try:
        with _friendly():
            summary = wait_for_import(s, ticket, s.proxy, console=err, timeout_s=timeout)
    except TimeoutError as e:
        raise _fail(str(e), 2) from e
    rate = summary.indexed / summary.seconds if summary.seconds else 0.0
    err.print(f"[green]done[/]: {summary.indexed} indexed, {summary.dead} dead-lettered of {summary.total} "
              f"in {summary.seconds:.1f} s ({rate:.1f} images/s); collection {collection} holds {summary.rows} vectors")
    for d in summary.dead_letters[:20]:
        err.print(f"  dead letter: {d.get('image_path')}: {d.get('reason')}")


@app.command()
def worker(
    proxy: ProxyOpt = None,
    redis_url: RedisOpt = None,
    consumer: Annotated[str | None, typer.Option(help="consumer name in the group (default host-pid)")] = None,
    claim_idle_ms: Annotated[int, typer.Option(help="reclaim jobs another worker left pending this long")] = 30_000,
    exit_when_idle: Annotated[float | None, typer.Option(help="exit after this many idle seconds")] = None,
) -> None:
    """Index catalog images from the job queue (run several for more throughput)."""
    from embed.worker import Worker

    if not logging.getLogger().isEnabledFor(logging.INFO):
        _setup_logging(True)
    s = get_settings(proxy=proxy, redis_url=redis_url)
    with _friendly():
        _preflight(s)
        w = Worker(s, s.proxy, consumer=consumer, claim_idle_ms=claim_idle_ms, catalog_objects=s.catalog_objects)
        stats = w.run(max_idle_s=exit_when_idle)
    err.print(f"worker {w.consumer} stopped: {stats.images} images indexed, {stats.dead} dead-lettered")


@app.command()
def status(
    redis_url: RedisOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Queue length, pending jobs, dead letters, throughput of recent imports."""
    from embed.queue import JobQueue

    s = get_settings(redis_url=redis_url)
    with _friendly():
        st = JobQueue(s.redis_url, s.stream, s.group).stats()
    if as_json:
        out.print_json(json.dumps(st))
        return
    out.print(f"stream [bold]{st['stream']}[/]: length {st['length']}, lag {st['lag']}, pending {st['pending']}, "
              f"consumers {st['consumers']}, dead letters {st['dead_letters']}, processed {st['processed_total']}")
    t = Table("import", "collection", "done", "dead", "total", "images/s")
    for i in st["imports"]:  # type: ignore[union-attr]
        t.add_row(i["import_id"], i["collection"], str(i["done"]), str(i["dead"]), str(i["total"]), f"{i['images_per_s']:.1f}")
    out.print(t)


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        else:
            files.append(p)
    return files


@app.command()
def search(
    paths: Annotated[list[Path], typer.Argument(help="images, or directories of images")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="collection to search")],
    proxy: ProxyOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="products per object")] = 10,
    filter: Annotated[str, typer.Option(help="Milvus boolean expression over catalog attributes")] = "",
    max_objects: Annotated[int, typer.Option(help="objects per photo (0 = server default)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON line per image")] = False,
) -> None:
    """Search the catalog by image through the proxy's SearchByImage."""
    import grpc

    from shopbyimage.v1 import image_search_pb2 as pb
    from shopbyimage.v1 import image_search_pb2_grpc as pb_grpc

    s = get_settings(proxy=proxy)
    from shardproxy.auth.client import channel as proxy_channel

    channel = proxy_channel(_grpc_target(s.proxy), s.access(), options=[("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.ImageSearchStub(channel)
    failures = 0
    for f in _expand(paths):
        try:
            data = f.read_bytes()
            resp = stub.SearchByImage(pb.SearchByImageRequest(image=data, collection=collection, top_k=top_k,
                                                              filter=filter, max_objects=max_objects), timeout=120)
        except OSError as e:
            failures += 1
            err.print(f"[red]{f}[/]: cannot read: {e}")
            continue
        except grpc.RpcError as e:
            failures += 1
            err.print(f"[red]{f}[/]: {e.code().name}: {e.details()}")  # type: ignore[attr-defined]
            if e.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE):  # type: ignore[attr-defined]
                raise typer.Exit(1) from e
            continue
        objs = [{"box": [round(o.box.x0, 1), round(o.box.y0, 1), round(o.box.x1, 1), round(o.box.y1, 1)],
                 "label": o.label, "score": round(o.score, 4),
                 "matches": [{"product_id": m.product_id, "image_id": m.image_id, "score": round(m.score, 4)}
                             for m in o.matches]} for o in resp.objects]
        if as_json:
            sys.stdout.write(json.dumps({"image": str(f), "objects": objs}) + "\n")
            sys.stdout.flush()
            continue
        t = Table(title=f"{f} ({resp.width}x{resp.height}, model {resp.model_id})")
        for col in ("object", "box", "label", "score", "matches (product: score)"):
            t.add_column(col)
        for i, o in enumerate(objs):
            ms = ", ".join(f"{m['product_id']}: {m['score']:.3f}" for m in o["matches"][:5])
            t.add_row(str(i), " ".join(f"{v:.0f}" for v in o["box"]), o["label"], f"{o['score']:.2f}", ms)
        out.print(t)
    if failures:
        raise typer.Exit(1)


@app.command()
def train(
    catalog: Annotated[Path, typer.Argument(help="catalog CSV")],
    force: Annotated[bool, typer.Option(help="retrain even when cached")] = False,
) -> None:
    """Adapt the embedder to a catalog and train its product detector (synthetic scenes); cached per catalog."""
    from embed.catalog import read_catalog
    from embed.artifactstore import ArtifactStore
    from embed.detrain import ensure_catalog_detector
    from embed.models import register, spec_from_settings
    from embed.train import adapt_to_catalog

    s = EmbedSettings()
    t0 = time.monotonic()
    cat = read_catalog(catalog)
    path = adapt_to_catalog(cat, s, console=err, force=force)
    spec = spec_from_settings(s, projection=path)
    mid = register(spec, s.artifacts_dir)
    with _friendly():
        ArtifactStore(s.model_store_url).publish(spec)
    err.print(f"projection {path} (model {mid}) in {time.monotonic() - t0:.0f} s")
    head = ensure_catalog_detector(cat, s, mid, console=err, force=force)
    if head is not None:
        with _friendly():
            ArtifactStore(s.model_store_url).publish_head(mid, head)
        err.print(f"product detector {head} in {time.monotonic() - t0:.0f} s in all")


@app.command()
def serve(
    milvus: Annotated[str, typer.Option(help="vector store (Milvus protocol) URI the searches go to")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="0 picks a free port (printed)")] = 50151,
) -> None:
    """Serve ImageSearch standalone (development; in production the proxy process serves it)."""
    from embed.service import serve as _serve

    if not logging.getLogger().isEnabledFor(logging.INFO):
        _setup_logging(True)
    asyncio.run(_serve(milvus, host, port))


@app.command()
def web(
    proxy: ProxyOpt = None,
    redis_url: RedisOpt = None,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    collection: Annotated[str, typer.Option("--collection", "-c", help="catalog shown first (default: the first with an image model)")] = "",
) -> None:
    """The shopper's page: upload a photo, see the products (over the proxy's SearchByImage); catalog,
    imports and cluster pages."""
    import uvicorn

    from embed.web.app import create_app

    s = get_settings(proxy=proxy, redis_url=redis_url)
    with _friendly():
        from embed.preflight import check_proxy

        check_proxy(s.proxy, s.access())
    err.print(f"the page: [bold]http://{host}:{port}/[/] (proxy {s.proxy}, queue {s.redis_url})")
    uvicorn.run(create_app(s, collection), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    app()
