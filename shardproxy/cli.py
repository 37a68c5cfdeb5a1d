"""``shardproxy``: serve the proxy, manage nodes, inspect the cluster, run a dev cluster."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.table import Table
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

from shardproxy import logs
from shardproxy.admin import STATE_NAMES
from shardproxy.config import ProxySettings

app = typer.Typer(help="Sharding proxy for Milvus: one Milvus endpoint in front of many nodes.", no_args_is_help=True)
node_app = typer.Typer(help="Register and inspect Milvus nodes.", no_args_is_help=True)
cluster_app = typer.Typer(help="Inspect the cluster.", no_args_is_help=True)
dev_app = typer.Typer(help="An embedded cluster of real processes on this machine.", no_args_is_help=True)
rebalance_app = typer.Typer(help="Data moves between nodes.", no_args_is_help=True)
app.add_typer(node_app, name="node")
app.add_typer(cluster_app, name="cluster")
app.add_typer(dev_app, name="dev")
app.add_typer(rebalance_app, name="rebalance")

console = Console()
err = Console(stderr=True)

ProxyOpt = Annotated[
    str,
    typer.Option("--proxy", envvar="SHARDPROXY_PROXY", help="admin address of a proxy (HOST:PORT)"),
]


def _admin(proxy: str) -> admin_pb2_grpc.ShardAdminStub:
    return admin_pb2_grpc.ShardAdminStub(grpc.insecure_channel(proxy))


def _fail(exc: grpc.RpcError) -> None:
    err.print(f"[red]error[/red] {exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
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
    proxy: ProxyOpt = "127.0.0.1:19530",
    weight: Annotated[int, typer.Option(help="relative share of the keys")] = 1,
    node_id: Annotated[str, typer.Option("--id", help="node id (default: derived from the address)")] = "",
) -> None:
    """Register a Milvus node and put it on the ring."""
    try:
        resp = _admin(proxy).AddNode(admin_pb2.AddNodeRequest(address=address, weight=weight, id=node_id), timeout=120)
    except grpc.RpcError as exc:
        _fail(exc)
    console.print(f"added [bold]{resp.node.id}[/bold] ({resp.node.address}), ring epoch {resp.ring_epoch}")


@node_app.command("remove")
def node_remove(
    node_id: Annotated[str, typer.Argument(help="node id")],
    proxy: ProxyOpt = "127.0.0.1:19530",
) -> None:
    """Remove a node that holds no data."""
    try:
        resp = _admin(proxy).RemoveNode(admin_pb2.RemoveNodeRequest(node_id=node_id), timeout=60)
    except grpc.RpcError as exc:
        _fail(exc)
    console.print(f"removed {node_id}, ring epoch {resp.ring_epoch}")


@node_app.command("list")
def node_list(proxy: ProxyOpt = "127.0.0.1:19530", as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered nodes."""
    try:
        resp = _admin(proxy).ListNodes(admin_pb2.ListNodesRequest(), timeout=30)
    except grpc.RpcError as exc:
        _fail(exc)
    nodes = [{"id": n.id, "address": n.address, "state": STATE_NAMES.get(n.state, "?"), "weight": n.weight}
             for n in resp.nodes]
    if as_json:
        print(json.dumps({"ring_epoch": resp.ring_epoch, "nodes": nodes}))
        return
    table = Table(title=f"nodes (ring epoch {resp.ring_epoch})")
    for col in ("id", "address", "state", "weight"):
        table.add_column(col)
    for n in nodes:
        table.add_row(n["id"], n["address"], n["state"], str(n["weight"]))
    console.print(table)


def status_dict(resp: admin_pb2.ClusterStatusResponse) -> dict:
    return {
        "ring_epoch": resp.ring_epoch,
        "nodes": [{"id": n.id, "address": n.address, "state": STATE_NAMES.get(n.state, "?"), "weight": n.weight}
                  for n in resp.nodes],
        "collections": [
            {
                "name": c.name, "total_rows": c.total_rows, "dimension": c.dimension, "metric_type": c.metric_type,
                "auto_id": c.auto_id, "model_id": c.model_id,
                "nodes": {r.node_id: (r.rows if r.reachable else None) for r in c.nodes},
            }
            for c in resp.collections
        ],
    }


@cluster_app.command("status")
def cluster_status(proxy: ProxyOpt = "127.0.0.1:19530", as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts")] = False) -> None:
    """Nodes (address, state, weight) and, per collection, rows on each node."""
    try:
        resp = _admin(proxy).ClusterStatus(admin_pb2.ClusterStatusRequest(), timeout=60)
    except grpc.RpcError as exc:
        _fail(exc)
    data = status_dict(resp)
    if as_json:
        print(json.dumps(data))
        return
    nodes = Table(title=f"nodes (ring epoch {data['ring_epoch']})")
    for col in ("id", "address", "state", "weight"):
        nodes.add_column(col)
    for n in data["nodes"]:
        nodes.add_row(n["id"], n["address"], n["state"], str(n["weight"]))
    console.print(nodes)
    ids = [n["id"] for n in data["nodes"]]
    cols = Table(title="collections (rows per node)")
    cols.add_column("collection")
    cols.add_column("dim", justify="right")
    cols.add_column("metric")
    for nid in ids:
        cols.add_column(nid, justify="right")
    cols.add_column("total", justify="right")
    for c in data["collections"]:
        per = [c["nodes"].get(nid) for nid in ids]
        cols.add_row(c["name"], str(c["dimension"]), c["metric_type"] or "-",
                     *[("[red]down[/red]" if v is None else f"{v:,}") for v in per], f"{c['total_rows']:,}")
    console.print(cols)


@rebalance_app.command("status")
def rebalance_status(proxy: ProxyOpt = "127.0.0.1:19530", as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Progress of data moves between nodes."""
    try:
        resp = _admin(proxy).RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30)
    except grpc.RpcError as exc:
        _fail(exc)
    data = MessageToDict(resp, always_print_fields_with_no_presence=True)
    if as_json:
        print(json.dumps(data))
    else:
        console.print("a rebalance is running" if resp.active else "no rebalance is running", data)


@dev_app.command("up")
def dev_up(
    nodes: Annotated[int, typer.Option(help="Milvus nodes to start", min=1, max=16)] = 3,
    port: Annotated[int, typer.Option(help="proxy port")] = 19530,
    data_dir: Annotated[Path, typer.Option(help="where nodes, Redis and logs keep their files")] = Path(".data/dev"),
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="start one embedding worker")] = True,
    redis_url: Annotated[Optional[str], typer.Option(
        envvar="SHARDPROXY_REDIS_URL", help="use this Redis instead of starting one")] = None,
) -> None:
    """Start N real Milvus servers, Redis and the proxy; stay in the foreground (Ctrl-C stops all)."""
    logs.setup("INFO")
    from shardproxy.devcluster import DevCluster

    cluster = DevCluster(data_dir=data_dir.resolve(), nodes=nodes, proxy_port=port, with_worker=worker,
                         external_redis_url=redis_url)

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        cluster.start()
        console.print(
            f"[green]ready[/green] proxy at [bold]{cluster.proxy_address}[/bold] "
            f"(pymilvus: MilvusClient(uri=\"{cluster.proxy_uri}\")), redis at {cluster.redis_url}, "
            f"{len(cluster.milvus)} Milvus node(s), data in {data_dir}",
        )
        sys.stdout.flush()
        cluster.wait_forever()
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        cluster.stop()
        console.print("stopped")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
