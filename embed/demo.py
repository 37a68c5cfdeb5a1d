"""The demo: import the tuxpaint sample catalog through the queue, then search with scene photos.

``run_demo(proxy_uri, redis_url, console)`` is what ``make demo`` calls once the dev cluster is up
(the proxy serves the Milvus protocol and SearchByImage; an ``embed worker`` consumes the queue,
or pass ``inline_worker=True`` to run one in this process).
"""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from embed.catalog import read_catalog
from embed.config import EmbedSettings
from embed.importer import start_import, wait_for_import
from embed.imageio import read_image_file
from embed.sample_catalog import build_sample_catalog
from embed.scenes import make_scene
from shopbyimage.v1 import image_search_pb2 as pb
from shopbyimage.v1 import image_search_pb2_grpc as pb_grpc

DEMO_COLLECTION = "tuxpaint_demo"
# recognisable products to paste into the demo scenes (by product_id prefix; first match wins)
DEMO_PICKS = [("clothes-t_tshirt", "food-fruit-apple"), ("vehicles-", "sports-"), ("household-", "food-vegetables-"),
              ("clothes-red_highheel", "")]


def _pick(pids: list[str], prefix: str) -> int | None:
    if not prefix:
        return None
    return next((i for i, p in enumerate(pids) if p.startswith(prefix)), None)


def run_demo(proxy_uri: str, redis_url: str, console: Console | None = None, *, inline_worker: bool = False,
             cache_dir: Path = Path(".cache"), collection: str = DEMO_COLLECTION, token: str = "") -> list[str]:
    """Import the sample catalog (adapted, cached), run scene searches; returns printable result lines."""
    console = console or Console()
    settings = EmbedSettings(redis_url=redis_url, proxy=proxy_uri, cache_dir=cache_dir,
                             **({"token": token} if token else {}))
    console.print("[bold]shop-by-image demo[/]: fetching the tuxpaint sample catalog (Debian tuxpaint-stamps-default)")
    csv = build_sample_catalog(cache_dir / "tuxpaint")
    catalog = read_catalog(csv)
    console.print(f"catalog: {len(catalog.items)} products ({csv})")
    ticket = start_import(settings, catalog, collection, proxy_uri, adapt=True, console=console)
    console.print(f"enqueued {ticket.total} images (model {ticket.model_id})")
    stop = threading.Event()
    if inline_worker:
        from embed.worker import Worker

        w = Worker(settings, proxy_uri, consumer="demo-inline")
        t = threading.Thread(target=lambda: w.run(max_idle_s=None), daemon=True)
        t.start()
    summary = wait_for_import(settings, ticket, proxy_uri, console=console, timeout_s=1800)
    if inline_worker:
        w.stop()
    console.print(f"indexed {summary.indexed}, dead-lettered {summary.dead}, {summary.rows} vectors in {collection}")
    pids = [it.product_id for it in catalog.items]
    from shardproxy.auth.client import channel as proxy_channel

    stub = pb_grpc.ImageSearchStub(proxy_channel(proxy_uri, settings.access(),
                                                 options=[("grpc.max_send_message_length", 64 << 20)]))
    qdir = cache_dir / "tuxpaint" / "demo-queries"
    qdir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for n, (a, b) in enumerate(DEMO_PICKS):
        idx = [i for i in (_pick(pids, a), _pick(pids, b)) if i is not None]
        if not idx:
            continue
        scene = make_scene([(pids[i], read_image_file(catalog.items[i].image_path)) for i in idx], seed=777 + n)
        path = qdir / f"scene{n}.jpg"
        path.write_bytes(scene.jpeg)
        resp = stub.SearchByImage(pb.SearchByImageRequest(image=scene.jpeg, collection=collection, top_k=3), timeout=120)
        truth = [pids[i] for i in idx]
        table = Table(title=f"{path}: pasted {', '.join(truth)}")
        for col in ("object", "box", "label", "top matches (product: score)"):
            table.add_column(col)
        found = set()
        for k, o in enumerate(resp.objects):
            ms = ", ".join(f"{'[green]' if m.product_id in truth else ''}{m.product_id}: {m.score:.2f}"
                           f"{'[/]' if m.product_id in truth else ''}" for m in o.matches)
            table.add_row(str(k), f"{o.box.x0:.0f},{o.box.y0:.0f},{o.box.x1:.0f},{o.box.y1:.0f}", o.label, ms)
            if o.matches:
                found.add(o.matches[0].product_id)
        console.print(table)
        hit = [p for p in truth if p in found]
        lines.append(f"{path.name}: pasted {truth}; found at rank 1: {hit}")
    stop.set()
    for line in lines:
        console.print(line)
    return lines
