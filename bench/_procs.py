"""Throwaway milvus-lite and valkey-server processes for the benchmarks (via devkit.procs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devkit import procs


@contextmanager
def servers(workdir: Path) -> Iterator[tuple[str, str]]:
    """(milvus uri, redis url) of fresh processes, stopped on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    milvus = procs.start_milvus(workdir / "milvus", name="bench-milvus")
    try:
        redis = procs.start_redis(workdir / "valkey", name="bench-valkey", persist=False)
    except BaseException:
        milvus.stop()
        raise
    try:
        yield f"http://{milvus.address}", f"redis://{redis.address}/0"
    finally:
        for p in (milvus, redis):
            p.stop()
