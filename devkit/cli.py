"""``shardproxy dev ...``: an embedded cluster of real processes on this machine. Registered on the
``shardproxy`` CLI through the ``shardproxy.commands`` entry point group (see pyproject.toml)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from shardproxy import devprofile, logs

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
    web: Annotated[bool, typer.Option("--web/--no-web", help="serve the shopper's page (`embed web`)")] = True,
    web_port: Annotated[int, typer.Option(help="the page's port (0 = a free one)")] = 8080,
    observability: Annotated[bool, typer.Option(
        "--observability", help="also run a real Prometheus (Debian's package, installed if missing) "
                                "scraping every process, with deploy/prometheus/alerts.yml loaded")] = False,
    engine: Annotated[str, typer.Option(
        help="milvus-lite, or milvus: each node a real Milvus standalone (PyPI's milvus package, "
             "`pip install -e '.[real-milvus]'`; ~0.3 GiB RAM per idle node, ~40 s to start)")] = "milvus-lite",
    root_password: Annotated[Optional[str], typer.Option(
        help="root's password (default: generated, kept in DATA_DIR/root_password, printed in the ready line)")] = None,
    auth: Annotated[bool, typer.Option("--auth/--no-auth", help="require tokens (Milvus RBAC)")] = True,
    tls: Annotated[bool, typer.Option("--tls", help="serve TLS with a throwaway CA (DATA_DIR/tls/ca.pem)")] = False,
    mtls: Annotated[bool, typer.Option("--mtls", help="TLS and require client certificates (DATA_DIR/tls/client.*)")] = False,
) -> None:
    """Start N real Milvus servers, Redis, the proxy, a worker and the page, /metrics on every process;
    record their endpoints in the dev profile (``shardproxy`` and ``embed`` use them by default);
    stay in the foreground (Ctrl-C stops all)."""
    if engine not in ("milvus-lite", "milvus"):
        console.print(f"[red]error[/red] unknown engine {engine!r}: use milvus-lite or milvus")
        raise typer.Exit(2)
    logs.setup("INFO")
    from devkit.devcluster import DevCluster  # noqa: PLC0415 (heavy imports only when run)

    cluster = DevCluster(data_dir=data_dir.resolve(), nodes=nodes, proxy_port=port, with_worker=worker,
                         proxies=proxies, spare=spare, replicas=replicas, external_redis_url=redis_url,
                         metrics=True, web_port=web_port if web else None, engine=engine,
                         auth=auth, root_password=root_password, tls=tls or mtls, mtls=mtls)
    prom = None

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        try:
            cluster.start()
        except (ValueError, FileNotFoundError) as exc:  # wrong engine for the data dir, milvus not installed
            console.print(f"[red]error[/red] {exc}")
            raise typer.Exit(2) from None
        kwargs = ", ".join(f"{k}={v!r}" for k, v in cluster.connect_kwargs().items()).replace("'", '"')
        console.print(
            f"[green]ready[/green] proxy at [bold]{cluster.proxy_address}[/bold]"
            + (f", token {cluster.token}" if cluster.token else " (auth off)")
            + f" (pymilvus: MilvusClient({kwargs})), redis at {cluster.redis_url}, "
            f"{cluster.nodes} Milvus node(s) ({engine}), data in {data_dir}",
            soft_wrap=True, highlight=False,
        )
        if cluster.token:
            console.print(f"  admin CLI: export SHARDPROXY_TOKEN={cluster.token}"
                          + (f" SHARDPROXY_CA={cluster.certs().ca}" if cluster.tls else ""),
                          soft_wrap=True, highlight=False)
        for p in cluster.more_proxies:
            console.print(f"  also proxy at [bold]{p.address}[/bold]")
        for n in cluster.spare_nodes:
            console.print(f"  spare Milvus node at {n.address}: `shardproxy node add {n.address}`")
        for name, url in cluster.metrics_endpoints().items():
            console.print(f"  metrics of {name}: {url}" + (" (while a move runs)" if name == "migrator" else ""))
        if observability:
            prom = start_observability(cluster)
            console.print(f"  prometheus at [bold]http://{prom.address}[/bold] (alerts: http://{prom.address}/alerts)")
        if cluster.web:
            console.print(f"  the shopper's page at [bold]{cluster.web_url}[/bold]")
        path = devprofile.write(devprofile.DevProfile(
            proxy=cluster.proxy_address, redis_url=cluster.redis_url, pid=os.getpid(), data_dir=str(cluster.data_dir),
            web=cluster.web_url, prometheus=f"http://{prom.address}" if prom else "",
            metrics=cluster.metrics_endpoints(), **_profile_access(cluster)))
        console.print(f"  endpoints recorded in {path}: `shardproxy` and `embed` commands find this cluster by default")
        sys.stdout.flush()
        cluster.wait_forever()
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        devprofile.remove(os.getpid())
        if prom is not None:
            prom.stop()
        cluster.stop()
        console.print("stopped")


def _profile_access(cluster: "DevCluster") -> dict[str, str]:  # noqa: F821
    """Token and TLS files for the dev profile, so `shardproxy` and `embed` reach an auth/TLS cluster."""
    acc = cluster.access()
    return {"token": acc.token, "tls_ca": acc.ca, "tls_cert": acc.cert, "tls_key": acc.key}


def start_observability(cluster: "DevCluster", scrape_interval: str = "5s") -> "procs.ManagedProcess":  # noqa: F821
    """A real Prometheus scraping every process of ``cluster`` with our alert rules loaded (what
    ``dev up --observability`` runs; ``scripts/dashboard_preview.py`` draws the dashboard from it)."""
    from devkit import procs, syspkg

    binary = syspkg.prometheus()
    targets: dict[str, list[str]] = {}
    for name, url in cluster.metrics_endpoints().items():  # job names as in deploy/prometheus/prometheus.yml
        job = "shardproxy" if name.startswith("proxy") else name  # migrator, embed-worker
        targets.setdefault(job, []).append(url.split("://", 1)[1].split("/", 1)[0])
    rules = [Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"]
    return procs.start_prometheus(binary, cluster.data_dir / "prometheus", targets, [r for r in rules if r.exists()],
                                  scrape_interval=scrape_interval)


