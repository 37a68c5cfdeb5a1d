"""``shardproxy verify`` and ``shardproxy repair``: read every node (from the node registry in
Redis) in primary-key order, report what is missing, stray, differing or duplicated, and fix it."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from shardproxy.verify import KINDS, CollectionReport

console = Console()
err = Console(stderr=True)

RedisOpt = Annotated[Optional[str], typer.Option(
    "--redis-url", envvar="SHARDPROXY_REDIS_URL",
    help="Redis holding the shard metadata (as the proxies); default: the running `dev up`'s, else "
         "redis://127.0.0.1:6379/0")]

PrefixOpt = Annotated[str, typer.Option(help="Redis key prefix")]
CollOpt = Annotated[Optional[list[str]], typer.Option("--collection", "-c", help="only this collection (repeatable)")]
RateOpt = Annotated[float, typer.Option(help="read at most this many rows/s (0 = unthrottled)")]


def resolve_redis(redis_url: str | None) -> str:
    from shardproxy import devprofile

    return devprofile.redis_url(redis_url)


def _no_redis(redis_url: str, given: str | None, exc: BaseException) -> None:
    """The error for a failed run; for a Redis that does not answer, which flag to set."""
    from shardproxy import devprofile

    err.print(f"[red]error[/red] {type(exc).__name__}: {exc}")
    if isinstance(exc, (ConnectionError, OSError)) or "connect" in str(exc).lower():
        err.print(devprofile.no_redis(redis_url, given))


def _table(reports: list[CollectionReport]) -> Table:
    t = Table(title="verify")
    for col in ("collection", "node", "rows", *KINDS):
        t.add_column(col, justify="right" if col not in ("collection", "node") else "left")
    for r in reports:
        for n, tally in sorted(r.nodes.items()):
            d = tally.to_dict()
            t.add_row(r.collection, n + (" [red](unreachable)[/red]" if n in r.unreachable else ""),
                      f"{d['rows']:,}", *[(f"[red]{d[k]}[/red]" if d[k] else "0") for k in KINDS])
        t.add_row(r.collection, "[bold]distinct keys[/bold]", f"[bold]{r.rows:,}[/bold]", *[""] * len(KINDS))
    return t


def _run(coro_fn, as_json: bool):  # type: ignore[no-untyped-def]
    """Run with a rich progress bar per collection (none with --json)."""
    if as_json:
        return asyncio.run(coro_fn(None))
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"))
    with Progress(*columns, console=err, transient=False) as progress:
        tasks: dict[str, int] = {}

        def cb(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        return asyncio.run(coro_fn(cb))


def verify(
    collection: CollOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts (no progress bar)")] = False,
    redis_url: RedisOpt = None,
    prefix: PrefixOpt = "shardproxy",
    max_rows_per_s: RateOpt = 0.0,
    batch: Annotated[int, typer.Option(help="rows read per node per step")] = 1000,
    vnodes: Annotated[int, typer.Option(help="vnodes per unit of weight (as the proxies)")] = 160,
) -> None:
    """Read every node in primary-key order and report, per collection and node, rows missing on
    an owner, strays on a non-owner, replicas whose content differs, duplicate keys, and the
    exact count. Exit 0 only when clean (1: findings, 2: error). Online; can run during a move."""
    from shardproxy.metastore import MetaStore
    from shardproxy.verifyscan import ScanOptions, Scanner

    given, redis_url = redis_url, resolve_redis(redis_url)

    async def go(cb):  # type: ignore[no-untyped-def]
        store = MetaStore(redis_url, prefix)
        scanner = Scanner(store, ScanOptions(batch=batch, max_rows_per_s=max_rows_per_s, vnodes=vnodes))
        try:
            await store.r.ping()
            return await scanner.run(collection, progress=cb)
        finally:
            await scanner.close()
            await store.close()

    try:
        reports = _run(go, as_json)
    except KeyError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - redis.ConnectionError and friends
        _no_redis(redis_url, given, exc)
        raise typer.Exit(2) from None
    clean = all(r.clean for r in reports)
    if as_json:
        print(json.dumps({"clean": clean, "collections": [r.to_dict() for r in reports]}))
    else:
        console.print(_table(reports))
        for r in reports:
            if r.unreachable:
                console.print(f"[red]{r.collection}: could not read {', '.join(r.unreachable)}[/red]")
            if r.hinted:
                console.print(f"  {r.collection}: {len(r.hinted)} copies on stand-ins or awaiting hinted handoff "
                              "(not strays; handed back when their replica answers)")
            for f in r.findings[:20]:
                console.print(f"  {r.collection}: {f.kind} pk={f.pk!r} on {f.node}"
                              + (f" (good copy on {f.source})" if f.source and f.source != f.node else ""))
        console.print("[green]clean[/green]" if clean else "[red]NOT clean[/red]: `shardproxy repair` fixes it")
    raise typer.Exit(0 if clean else 1)


def repair(
    collection: CollOpt = None,
    node: Annotated[str, typer.Option("--node", help="only fix findings on this node")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report what would be done, change nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts (no progress bar)")] = False,
    redis_url: RedisOpt = None,
    prefix: PrefixOpt = "shardproxy",
    max_rows_per_s: RateOpt = 0.0,
    vnodes: Annotated[int, typer.Option(help="vnodes per unit of weight (as the proxies)")] = 160,
) -> None:
    """Fix what verify finds: copy missing rows from a good replica, re-converge differing
    replicas, delete strays once their owners hold them. Exit 0 when nothing is left to do."""
    from shardproxy.repair import verify_and_repair
    from shardproxy.verifyscan import ScanOptions

    opts = ScanOptions(max_rows_per_s=max_rows_per_s, vnodes=vnodes)
    given, redis_url = redis_url, resolve_redis(redis_url)
    try:
        out = _run(lambda cb: verify_and_repair(redis_url, prefix, collection, node, dry_run, opts), as_json)
    except Exception as exc:  # noqa: BLE001
        _no_redis(redis_url, given, exc)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps({"dry_run": dry_run, "collections": [
            {"verify": r.to_dict(sample=20), "repair": res.to_dict()} for r, res in out]}))
    else:
        for r, res in out:
            d = res.to_dict()
            console.print(f"{r.collection}: found {r.counts()}; "
                          + ("would copy" if dry_run else "copied") + f" {d['plan']['copies']} row(s) "
                          f"({d['plan']['reconverge']} re-converged), strays "
                          + (f"to delete {d['plan']['strays']}" if dry_run else
                             f"deleted {res.strays_deleted}, kept {res.strays_kept}"))
    if dry_run:
        left = any(res.plan["copies"] or res.plan["strays"] for _, res in out)
    else:
        left = any(res.strays_kept or r.unreachable for r, res in out)
    raise typer.Exit(1 if left else 0)
