"""Import stage, producer side: read the catalog, fix the model, create the collection, enqueue jobs, wait."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from embed.artifactstore import ArtifactStore
from embed.catalog import Catalog, read_catalog
from embed.config import EmbedSettings
from embed.models import register, spec_from_settings
from embed.queue import JobQueue
from embed.store import connect, count, ensure_collection


@dataclass
class ImportTicket:
    import_id: str
    total: int
    collection: str
    model_id: str


@dataclass
class ImportSummary:
    import_id: str
    total: int
    indexed: int
    dead: int
    seconds: float
    rows: int
    dead_letters: list[dict[str, str]]


def start_import(settings: EmbedSettings, catalog: Catalog | Path, collection: str, proxy: str, *,
                 adapt: bool = True, console: Console | None = None) -> ImportTicket:
    """Fix the model (adapting it to the catalog once, cached), create the collection, enqueue one job per row."""
    cat = catalog if isinstance(catalog, Catalog) else read_catalog(catalog)
    projection = None
    if adapt and settings.projection is None:
        from embed.train import adapt_to_catalog

        projection = adapt_to_catalog(cat, settings, console=console)
    spec = spec_from_settings(settings, projection=projection)
    model_id = register(spec, settings.artifacts_dir)
    store = ArtifactStore(settings.model_store_url)
    store.publish(spec)  # every proxy and worker loads it from there
    client = connect(proxy, settings.access())
    ensure_collection(client, collection, model_id, spec.dim, cat.attribute_types)
    if adapt:  # the catalog's product detector (cached per catalog, like the adaptation)
        from embed.detrain import ensure_catalog_detector

        head = ensure_catalog_detector(cat, settings, model_id, console=console)
        if head is not None:
            store.publish_head(model_id, head)  # proxies and workers on other machines fetch it from there
    queue = JobQueue(settings.redis_url, settings.stream, settings.group)
    import_id, total = queue.enqueue(collection, model_id, cat.items)
    return ImportTicket(import_id, total, collection, model_id)


def wait_for_import(settings: EmbedSettings, ticket: ImportTicket, proxy: str, *, console: Console | None = None,
                    timeout_s: float | None = None, show_progress: bool = True) -> ImportSummary:
    """Block until every job is indexed or dead-lettered, with a progress bar (images/s, ETA)."""
    queue = JobQueue(settings.redis_url, settings.stream, settings.group)
    t0 = time.monotonic()
    console = console or Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]importing[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} img/s"), TextColumn("dead {task.fields[dead]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=not show_progress, transient=False,
    )
    with progress:
        task = progress.add_task(ticket.collection, total=ticket.total, rate=0.0, dead=0)
        while True:
            p = queue.progress(ticket.import_id)
            finished = int(p["done"] + p["dead"])
            elapsed = time.monotonic() - t0
            progress.update(task, completed=finished, rate=p["done"] / elapsed if elapsed > 0 else 0.0, dead=int(p["dead"]))
            if finished >= ticket.total:
                break
            if timeout_s is not None and elapsed > timeout_s:
                raise TimeoutError(f"import {ticket.import_id}: {finished}/{ticket.total} after {elapsed:.0f} s")
            time.sleep(0.3)
    p = queue.progress(ticket.import_id)
    rows = count(connect(proxy, settings.access()), ticket.collection)
    return ImportSummary(ticket.import_id, ticket.total, int(p["done"]), int(p["dead"]), time.monotonic() - t0, rows,
                         queue.dead_letters(ticket.import_id))
