"""Container health checks without extra binaries (``grpc_health_probe`` is not on PyPI).

    python -m shardproxy.healthcheck                       # gRPC health of the proxy on $SHARDPROXY_PORT
    python -m shardproxy.healthcheck --grpc host:19530     # gRPC health service of any server
    python -m shardproxy.healthcheck --http http://127.0.0.1:9101/metrics   # e.g. the embed worker

Exit status 0 when healthy (SERVING / HTTP 2xx), 1 otherwise, with one line on stderr saying why.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request


def check_grpc(address: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(address) as channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
    except grpc.RpcError as exc:
        return False, f"{address}: {exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return resp.status == health_pb2.HealthCheckResponse.SERVING, f"{address}: {status}"


def check_http(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator-given URL
            return 200 <= resp.status < 300, f"{url}: HTTP {resp.status}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shardproxy.healthcheck", description=__doc__.split("\n")[0])
    default = f"127.0.0.1:{os.environ.get('SHARDPROXY_PORT', '19530')}"
    parser.add_argument("--grpc", default=None, help=f"HOST:PORT of a gRPC health service (default {default})")
    parser.add_argument("--service", default="", help="service name to check (default: the server as a whole)")
    parser.add_argument("--http", default=None, help="URL that must answer 2xx instead")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.http:
        ok, why = check_http(args.http, args.timeout)
    else:
        ok, why = check_grpc(args.grpc or default, args.service, args.timeout)
    print(("healthy " if ok else "unhealthy ") + why, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
