"""``shardproxy dev ...``: an embedded cluster of real processes on this machine. Registered on the
``shardproxy`` CLI through the ``shardproxy.commands`` entry point group (see pyproject.toml)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from shardproxy import logs

dev_app = typer.Typer(help="An embedded cluster of real processes on this machine.", no_args_is_help=True)
console = Console()


@dev_app.command("up")
def dev_up(
    nodes: Annotated[int, typer.Option(help="Milvus nodes to start", min=1, max=16)] = 3,
    port: Annotated[int, typer.Option(help="proxy port")] = 19530,
    data_dir: Annotated[Path, typer.Option(help="where nodes, Redis and logs keep their files")] = Path(".data/dev"),
    worker: Annotated[bool, typer.Option("--worker/--no-worker", help="start one embedding worker")] = True,
    proxies: Annotated[int, typer.Option(help="proxies on the same Redis (ports PORT, then free ones)", min=1, max=8)] = 1,
    spare: Annotated[int, typer.Option(help="extra Milvus nodes started as spares, outside the ring, for `node add`", min=0, max=8)] = 0,
    replicas: Annotated[int, typer.Option(help="replication factor R of new collections", min=1, max=8)] = 1,
    redis_url: Annotated[Optional[str], typer.Option(
        envvar="SHARDPROXY_REDIS_URL", help="use this Redis instead of starting one")] = None,
) -> None:
    """Start N real Milvus servers, Redis and the proxy; stay in the foreground (Ctrl-C stops all)."""
    logs.setup("INFO")
    from devkit.devcluster import DevCluster  # noqa: PLC0415 (heavy imports only when run)

    cluster = DevCluster(data_dir=data_dir.resolve(), nodes=nodes, proxy_port=port, with_worker=worker,
                         proxies=proxies, spare=spare, replicas=replicas, external_redis_url=redis_url)

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        cluster.start()
        console.print(
            f"[green]ready[/green] proxy at [bold]{cluster.proxy_address}[/bold] "
            f"(pymilvus: MilvusClient(uri=\"{cluster.proxy_uri}\")), redis at {cluster.redis_url}, "
            f"{cluster.nodes} Milvus node(s), data in {data_dir}",
        )
        for p in cluster.more_proxies:
            console.print(f"  also proxy at [bold]{p.address}[/bold]")
        for n in cluster.spare_nodes:
            console.print(f"  spare Milvus node at {n.address}: `shardproxy node add {n.address}`")
        sys.stdout.flush()
        cluster.wait_forever()
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        cluster.stop()
        console.print("stopped")


