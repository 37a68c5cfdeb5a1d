"""One round of the history checker on real processes: a dev cluster (3 milvus-lite nodes, R = 2,
spares for add/drain and the migrator fault, two proxies for the proxy fault), a preload, the
mixed workload for ``duration_s`` while the nemesis runs its seeded plan, then heal, repair,
verify and check the history. ``python -m devkit.jepsen --seed 7 --faults kill-node,pause-node``
replays a round; the history is written as JSON lines next to the cluster's data."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from shopbyimage.v1 import admin_pb2

from devkit.devcluster import DevCluster
from devkit.history import History, check
from devkit.nemesis import FAULTS, Nemesis, schedule
from devkit.workload import Workload, create

log = logging.getLogger(__name__)


def _healed(c: DevCluster, timeout: float = 180.0) -> None:
    """Every ring node active (caught up) and no move running."""
    stub = c.admin()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            nodes = stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes
            moving = stub.RebalanceStatus(admin_pb2.RebalanceStatusRequest(), timeout=30).active
            if not moving and all(n.state in (admin_pb2.NODE_STATE_ACTIVE, admin_pb2.NODE_STATE_SPARE,
                                              admin_pb2.NODE_STATE_DRAINED) for n in nodes):
                return
        except Exception:  # noqa: BLE001 - a proxy restarting
            pass
        time.sleep(1)
    raise TimeoutError("cluster did not heal")


async def _repair_and_verify(redis_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from shardproxy.metastore import MetaStore
    from shardproxy.repair import verify_and_repair
    from shardproxy.verifyscan import ScanOptions, Scanner

    fixed = await verify_and_repair(redis_url, "shardproxy", None, "", False, ScanOptions())
    store = MetaStore(redis_url)
    scanner = Scanner(store)
    try:
        reports = await scanner.run()
    finally:
        await scanner.close()
        await store.close()
    return [res.to_dict() | {"found": rep.counts()} for rep, res in fixed], [r.to_dict() for r in reports]


def run_round(data_dir: Path, seed: int, faults: list[str], duration_s: float = 20.0, preload: int = 200,
              clients: int = 3) -> dict[str, Any]:
    spare = int("add-drain" in faults) + int("kill-migrator" in faults)
    proxies = 2 if "kill-proxy" in faults else 1
    c = DevCluster(data_dir=data_dir, nodes=3, spare=spare, proxies=proxies, replicas=2,
                   proxy_env={"SHARDPROXY_REPAIR_INTERVAL_S": "0", "SHARDPROXY_MIGRATOR_MAX_ROWS_PER_S": "50"})
    c.start()
    h = History()
    try:
        create(c.client(), replicas=2)
        wl = Workload(c, h, seed=seed, clients=clients, preload=preload)
        wl.load()
        plan = schedule(seed, faults, duration_s, nodes=3)
        t0 = time.monotonic()
        threads = wl.start()
        nem = threading.Thread(target=Nemesis(c, h).run, args=(plan, t0), daemon=True)
        nem.start()
        time.sleep(duration_s)
        nem.join(600)
        wl.stop.set()
        for t in threads:
            t.join(60)
        _healed(c)
        repairs, reports = asyncio.run(_repair_and_verify(c.redis_url))
        final, count = wl.final_state()
        result = check(h, final=final, final_count=count)
        h.dump(str(data_dir / f"history-{seed}.jsonl"))
        out = {
            "seed": seed, "faults": [f.__dict__ for f in plan], "events": h.events,
            "ops": len(h.ops), "outcomes": {k: sum(o.outcome == k for o in h.ops) for k in ("ok", "fail", "info")},
            "check": result.summary(), "repair": repairs,
            "verify_clean": all(r["clean"] for r in reports), "verify": reports,
        }
        (data_dir / f"round-{seed}.json").write_text(json.dumps(out, indent=1, default=str))
        return out
    finally:
        c.stop()


def main() -> None:  # pragma: no cover - manual replays
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", default="kill-node", help=f"comma list of {', '.join(FAULTS)}")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--dir", default="/tmp/shardproxy-jepsen")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    out = run_round(Path(args.dir) / f"seed-{args.seed}", args.seed, args.faults.split(","), args.duration)
    print(json.dumps({k: out[k] for k in ("seed", "ops", "outcomes", "check", "verify_clean")}, indent=1))


if __name__ == "__main__":  # pragma: no cover
    main()
