"""``shardproxy``: serve the proxy, manage nodes, inspect the cluster, run a dev cluster."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Annotated, Optional

import grpc
import typer
from rich.console import Console
from rich.table import Table
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

from shardproxy import cli_verify, devprofile, logs
from shardproxy.admin import STATE_NAMES
from shardproxy.auth import cli as auth_cli
from shardproxy.config import ProxySettings

app = typer.Typer(help="Sharding proxy for Milvus: one Milvus endpoint in front of many nodes.", no_args_is_help=True)
node_app = typer.Typer(help="Register and inspect Milvus nodes.", no_args_is_help=True)
cluster_app = typer.Typer(help="Inspect the cluster.", no_args_is_help=True)
rebalance_app = typer.Typer(help="Data moves between nodes.", no_args_is_help=True)
app.add_typer(node_app, name="node")
app.add_typer(cluster_app, name="cluster")
app.add_typer(rebalance_app, name="rebalance")
app.add_typer(auth_cli.app, name="auth")

console = Console()
err = Console(stderr=True)

ProxyOpt = Annotated[
    Optional[str],
    typer.Option("--proxy", envvar="SHARDPROXY_PROXY",
                 help="admin address of a proxy (HOST:PORT); default: the running `dev up`, else 127.0.0.1:19530"),
]
DEFAULT_PROXY = "127.0.0.1:19530"


def proxy_address(proxy: str | None) -> str:
    """--proxy / SHARDPROXY_PROXY, else the running dev cluster's proxy (dev profile), else the default."""
    if proxy:
        return proxy
    prof = devprofile.read()
    return prof.proxy if prof else DEFAULT_PROXY


TokenOpt = Annotated[
    Optional[str],
    typer.Option("--token", envvar="SHARDPROXY_TOKEN", show_envvar=True,
                 help="user:password (or API key) of a user with the admin role; default: the running `dev up`'s"),
]


def _admin(proxy: str | None, token: str | None = None) -> admin_pb2_grpc.ShardAdminStub:
    """Admin stub with the token and, with SHARDPROXY_CA set, TLS (SHARDPROXY_CLIENT_CERT/KEY: mTLS).
    Without --proxy, token and TLS files also come from the running `dev up` (its dev profile)."""
    from shardproxy.auth.client import access_from_env, channel

    access = access_from_env(token)
    prof = devprofile.read() if not proxy else None
    if prof is not None:
        access = replace(access, token=access.token or prof.token, ca=access.ca or prof.tls_ca,
                         cert=access.cert or prof.tls_cert, key=access.key or prof.tls_key)
    return admin_pb2_grpc.ShardAdminStub(channel(proxy_address(proxy), access))


def _fail(exc: grpc.RpcError, proxy: str | None = None) -> None:
    err.print(f"[red]error[/red] {exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
    if exc.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
        where = proxy_address(proxy)
        err.print(f"no proxy answers at {where}: pass --proxy HOST:PORT or set SHARDPROXY_PROXY"
                  + ("" if proxy or devprofile.read() else f" ({devprofile.hint()})"))
    raise typer.Exit(2)


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address [env SHARDPROXY_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option(help="port [env SHARDPROXY_PORT]")] = None,
    redis_url: Annotated[Optional[str], typer.Option(help="Redis URL [env SHARDPROXY_REDIS_URL]")] = None,
    metrics_port: Annotated[Optional[int], typer.Option(help="/metrics port, 0 = off [env SHARDPROXY_METRICS_PORT]")] = None,
    log_json: Annotated[Optional[bool], typer.Option("--log-json/--log-text", help="JSON log lines")] = None,
) -> None:
    """Run the proxy (Milvus protocol + admin API + health + reflection on one port)."""
    overrides = {k: v for k, v in dict(host=host, port=port, redis_url=redis_url, metrics_port=metrics_port,
                                       log_json=log_json).items() if v is not None}
    settings = ProxySettings(**overrides)
    logs.setup(settings.log_level, settings.log_json)
    from shardproxy.server import serve as run

    asyncio.run(run(settings))


@node_app.command("add")
def node_add(
    address: Annotated[str, typer.Argument(help="HOST:PORT of a Milvus server")],
    proxy: ProxyOpt = None,
    token: TokenOpt = None,
    weight: Annotated[int, typer.Option(help="relative share of the keys")] = 1,
    node_id: Annotated[str, typer.Option("--id", help="node id (default: derived from the address)")] = "",
    spare: Annotated[bool, typer.Option("--spare", help="register as a spare, outside the ring")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the data move to its end")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts (no progress bar)")] = False,
) -> None:
    """Put a Milvus node on the ring; rows whose owner changes move to it online."""
    try:
        resp = _admin(proxy, token).AddNode(
            admin_pb2.AddNodeRequest(address=address, weight=weight, id=node_id, spare=spare), timeout=120
        )
    except grpc.RpcError as exc:
        _fail(exc)
    if not as_json:
        console.print(f"added [bold]{resp.node.id}[/bold] ({resp.node.address}, "
                      f"{STATE_NAMES.get(resp.node.state, '?')}), ring epoch {resp.ring_epoch}")
    final = _follow(proxy, as_json, token=token) if (resp.moving and wait) else None
    if as_json:
        print(json.dumps({"node": resp.node.id, "address": resp.node.address, "ring_epoch": resp.ring_epoch,
                          "moving": resp.moving, "rebalance": final}))


@node_app.command("drain")
def node_drain(
    node_id: Annotated[str, typer.Argument(help="node id")],
    proxy: ProxyOpt = None,
    token: TokenOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the data move to its end")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts (no progress bar)")] = False,
) -> None:
    """Move every row off a node online; it ends `drained`, ready for `node remove`."""
    try:
        resp = _admin(proxy, token).DrainNode(admin_pb2.DrainNodeRequest(node_id=node_id), timeout=120)
    except grpc.RpcError as exc:
        _fail(exc)
    if not as_json:
        console.print(f"[bold]{node_id}[/bold] is {STATE_NAMES.get(resp.node.state, '?')}, ring epoch {resp.ring_epoch}")
    moving = resp.node.state == admin_pb2.NODE_STATE_DRAINING
    final = _follow(proxy, as_json, token=token) if (moving and wait) else None
    if as_json:
        print(json.dumps({"node": node_id, "state": STATE_NAMES.get(resp.node.state, "?"),
                          "ring_epoch": resp.ring_epoch, "rebalance": final}))


def rebalance_dict(resp: admin_pb2.RebalanceStatusResponse) -> dict:
    return {
        "active": resp.active, "state": resp.state or "none", "kind": resp.kind, "node": resp.node_id,
        "target_epoch": resp.target_epoch, "rows_moved": resp.rows_moved, "rows_to_move": resp.rows_to_move,
        "rows_per_second": round(resp.rows_per_second, 1), "eta_seconds": round(resp.eta_seconds, 1),
        "migrator_running": resp.migrator_running, "migrator_pid": resp.migrator_pid,
        "started_at": resp.started_at, "finished_at": resp.finished_at,
        "aborted_kind": resp.aborted_kind, "aborted_rows_moved": resp.aborted_rows_moved,
        "cursors": [{"collection": c.collection, "source": c.source_node, "rows_scanned": c.rows_scanned,
                     "rows_moved": c.rows_moved, "done": c.done} for c in resp.cursors],
    }


def _follow(proxy: str | None, quiet: bool = False, poll_s: float = 0.5, token: str | None = None) -> dict:
    """Poll RebalanceStatus until the move ends; a live rich progress bar unless ``quiet``."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    stub = _admin(proxy, token)

    def status() -> admin_pb2.RebalanceStatusResponse:
        return stub.RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)

    if quiet:
        while (resp := status()).active:
            time.sleep(poll_s)
        return rebalance_dict(resp)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("rows  {task.fields[rate]:>8.0f} rows/s"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        resp = status()
        task = progress.add_task(f"{resp.kind or 'move'} {resp.node_id}", total=None, rate=0.0)
        while True:
            total = resp.rows_to_move if resp.rows_to_move >= 0 else None
            progress.update(task, total=total, completed=resp.rows_moved, rate=resp.rows_per_second)
            if not resp.active:
                break
            if not resp.migrator_running and resp.rows_to_move >= 0:
                progress.console.print("[yellow]no migrator holds the lease[/yellow]; "
                                       "`shardproxy rebalance resume` starts one")
            time.sleep(poll_s)
            resp = status()
    console.print(f"done: {resp.rows_moved:,} row(s) moved, ring epoch {resp.target_epoch}")
    return rebalance_dict(resp)


@node_app.command("remove")
def node_remove(
    node_id: Annotated[str, typer.Argument(help="node id")],
    proxy: ProxyOpt = None,
    token: TokenOpt = None,
) -> None:
    """Remove a node that holds no data."""
    try:
        resp = _admin(proxy, token).RemoveNode(admin_pb2.RemoveNodeRequest(node_id=node_id), timeout=60)
    except grpc.RpcError as exc:
        _fail(exc)
    console.print(f"removed {node_id}, ring epoch {resp.ring_epoch}")


@node_app.command("list")
def node_list(proxy: ProxyOpt = None, token: TokenOpt = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered nodes."""
    try:
        resp = _admin(proxy, token).ListNodes(admin_pb2.ListNodesRequest(), timeout=30)
    except grpc.RpcError as exc:
        _fail(exc)
    nodes = [{"id": n.id, "address": n.address, "state": STATE_NAMES.get(n.state, "?"), "weight": n.weight}
             for n in resp.nodes]
    if as_json:
        print(json.dumps({"ring_epoch": resp.ring_epoch, "nodes": nodes}))
        return
    console.print(nodes_table(nodes, resp.ring_epoch))


def nodes_table(nodes: list[dict], epoch: int) -> Table:
    table = Table(title=f"nodes (ring epoch {epoch})")
    for col in ("id", "address", "state", "weight"):
        table.add_column(col)
    for n in nodes:
        table.add_row(n["id"], n["address"], n["state"], str(n["weight"]))
    return table


def status_dict(resp: admin_pb2.ClusterStatusResponse) -> dict:
    return {
        "ring_epoch": resp.ring_epoch,
        "nodes": [{"id": n.id, "address": n.address, "state": STATE_NAMES.get(n.state, "?"), "weight": n.weight}
                  for n in resp.nodes],
        "collections": [
            {
                "name": c.name, "total_rows": c.total_rows, "dimension": c.dimension, "metric_type": c.metric_type,
                "auto_id": c.auto_id, "properties": dict(sorted(c.properties.items())),
                "nodes": {r.node_id: (r.rows if r.reachable else None) for r in c.nodes},
            }
            for c in resp.collections
        ],
    }


@cluster_app.command("status")
def cluster_status(proxy: ProxyOpt = None, token: TokenOpt = None,
                   as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts")] = False) -> None:
    """Nodes (address, state, weight) and, per collection, rows on each node."""
    try:
        resp = _admin(proxy, token).ClusterStatus(admin_pb2.ClusterStatusRequest(), timeout=60)
    except grpc.RpcError as exc:
        _fail(exc)
    data = status_dict(resp)
    if as_json:
        print(json.dumps(data))
        return
    console.print(nodes_table(data["nodes"], data["ring_epoch"]))
    ids = [n["id"] for n in data["nodes"]]
    state = {n["id"]: n["state"] for n in data["nodes"]}
    cols = Table(title="collections (rows per node)")
    cols.add_column("collection")
    cols.add_column("dim", justify="right")
    cols.add_column("metric")
    for nid in ids:
        cols.add_column(nid, justify="right")
    cols.add_column("total", justify="right")
    cols.add_column("properties")
    for c in data["collections"]:
        per = [c["nodes"].get(nid) for nid in ids]
        cols.add_row(c["name"], str(c["dimension"]), c["metric_type"] or "-",
                     *[("[dim]spare[/dim]" if state.get(nid) == "spare" else "[red]down[/red]") if v is None else f"{v:,}"
                       for nid, v in zip(ids, per)], f"{c['total_rows']:,}",
                     "\n".join(f"{k}={v}" for k, v in c["properties"].items()) or "-")
    console.print(cols)


@rebalance_app.command("status")
def rebalance_status(
    proxy: ProxyOpt = None,
    token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="live progress bar until the move ends")] = False,
) -> None:
    """Progress of the running data move (rows moved / to move, rate, ETA, cursors)."""
    try:
        resp = _admin(proxy, token).RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)
        if watch and resp.active and not as_json:
            _follow(proxy, token=token)
            resp = _admin(proxy, token).RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)
    except grpc.RpcError as exc:
        _fail(exc)
    data = rebalance_dict(resp)
    if as_json:
        print(json.dumps(data))
        return
    if not data["kind"]:
        console.print("no rebalance has run")
        return
    head = "[green]running[/green]" if resp.active else "done"
    total = data["rows_to_move"]
    pct = f" ({100 * data['rows_moved'] / total:.1f}%)" if total > 0 else ""
    console.print(
        f"{head}: {data['kind']} {data['node']}, target epoch {data['target_epoch']}; "
        + (f"(undoing a {data['aborted_kind']} that had moved {data['aborted_rows_moved']:,} row(s)) "
           if data["aborted_kind"] else "")
        + f"{data['rows_moved']:,} / {total if total >= 0 else '?'} row(s){pct}, "
        f"{data['rows_per_second']:,.0f} rows/s"
        + (f", ETA {data['eta_seconds']:.0f} s" if resp.active and data["eta_seconds"] >= 0 else "")
        + ("" if not resp.active else
           (f"; migrator pid {data['migrator_pid']}" if data["migrator_running"] else "; [yellow]no migrator running[/yellow]"))
    )
    table = Table(title="cursors")
    for col in ("collection", "source", "scanned", "moved", "done"):
        table.add_column(col)
    for c in data["cursors"]:
        table.add_row(c["collection"], c["source"], f"{c['rows_scanned']:,}", f"{c['rows_moved']:,}", "yes" if c["done"] else "no")
    console.print(table)


@rebalance_app.command("resume")
def rebalance_resume(proxy: ProxyOpt = None, token: TokenOpt = None) -> None:
    """Start a migrator for the running move if none runs (e.g. after a crash)."""
    try:
        resp = _admin(proxy, token).ResumeRebalance(admin_pb2.ResumeRebalanceRequest(), timeout=30)
    except grpc.RpcError as exc:
        _fail(exc)
    console.print(resp.message + (f" (pid {resp.migrator_pid})" if resp.migrator_pid else ""))


@rebalance_app.command("abort")
def rebalance_abort(
    proxy: ProxyOpt = None,
    token: TokenOpt = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the reverse move to its end")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts (no progress bar)")] = False,
) -> None:
    """Stop the running move and carry back what it had moved: the ring and the data return to
    the previous epoch (an aborted add leaves the node `drained`, an aborted drain `active`)."""
    try:
        resp = _admin(proxy, token).AbortRebalance(admin_pb2.AbortRebalanceRequest(), timeout=120)
    except grpc.RpcError as exc:
        _fail(exc)
    if not as_json:
        console.print(f"aborted after {resp.aborted_rows_moved:,} row(s); {resp.kind} {resp.node_id} "
                      f"carries them back, target epoch {resp.target_epoch}")
    final = _follow(proxy, as_json, token=token) if wait else None
    if as_json:
        print(json.dumps({"kind": resp.kind, "node": resp.node_id, "ring_epoch": resp.ring_epoch,
                          "target_epoch": resp.target_epoch, "aborted_rows_moved": resp.aborted_rows_moved,
                          "rebalance": final}))


@rebalance_app.command("run")
def rebalance_run(
    redis_url: Annotated[Optional[str], typer.Option(envvar="SHARDPROXY_REDIS_URL", help="Redis holding shard metadata; default: the running `dev up`'s, else redis://127.0.0.1:6379/0")] = None,
    prefix: Annotated[str, typer.Option(help="Redis key prefix")] = "shardproxy",
    vnodes: Annotated[int, typer.Option(help="vnodes per unit of weight (as the proxies)")] = 160,
    batch: Annotated[int, typer.Option(help="rows carried per step")] = 1000,
    max_rows_per_s: Annotated[float, typer.Option(help="throttle (0 = none)")] = 0.0,
    wait_lease: Annotated[float, typer.Option(help="seconds to wait for another migrator's lease to expire")] = 0.0,
    metrics_port: Annotated[int, typer.Option(envvar="SHARDPROXY_MIGRATOR_METRICS_PORT",
                                              help="serve /metrics on this port while moving (0 = off)")] = 0,
) -> None:
    """Run the migrator in the foreground: carry the running move to its end (resumes from the
    cursors in Redis; exits at once when no move runs or another migrator holds the lease)."""
    logs.setup("INFO")
    from shardproxy import metrics
    from shardproxy.migrator import LeaseLost, MigratorOptions, run_migrator

    metrics.serve(metrics_port)
    prof = devprofile.read()
    redis_url = redis_url or (prof.redis_url if prof else "redis://127.0.0.1:6379/0")
    try:
        epoch = asyncio.run(run_migrator(redis_url, prefix, MigratorOptions(batch=batch, max_rows_per_s=max_rows_per_s),
                                         vnodes, wait_lease_s=wait_lease))
    except LeaseLost as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(3) from None
    console.print("nothing to do" if epoch < 0 else f"move done, ring epoch {epoch}")


app.command("verify")(cli_verify.verify)
app.command("repair")(cli_verify.repair)


def _add_plugin_commands() -> None:
    """Sub-commands other packages contribute through the ``shardproxy.commands`` entry point group
    (``shardproxy dev`` comes from ``devkit``); one that cannot be imported is left out."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="shardproxy.commands"):
        try:
            sub = ep.load()
        except ImportError:
            continue
        app.add_typer(sub, name=ep.name)


_add_plugin_commands()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
