"""A milvus-lite server process whose writes are serialized: ``python -m devkit.litenode server
--data-dir D --host H --port P`` (the ``milvus-lite server`` command line, unchanged).

Why: milvus-lite 3.2's gRPC server runs requests on a pool of threads (10 by default), and its
``Collection.insert`` / ``upsert`` / ``delete`` take no lock: two concurrent writes to one collection
interleave their bytes in the collection's write-ahead log (an Arrow IPC stream) and race on the
sequence numbers. Nothing shows while the process lives (the memtable is fine), but after a crash
(kill -9) the WAL replay stops at the first interleaved message and every write after it is gone,
acknowledged or not: on this machine 8 writer threads for 8 s, then kill -9, lost 43,700 of 46,560
acknowledged rows (``tests/test_litenode_wal.py`` is the regression test). Behind the proxy that is
an acknowledged-write loss the replicas cannot see: the restarted node answers as if complete.

This module runs the same server with one process-wide re-entrant lock around the engine's write
entry points (insert, upsert, delete, flush), so writes reach the WAL one at a time while searches
and queries stay concurrent. (``--max-workers 1`` would serialize reads and health checks too.)
Real Milvus (``--engine milvus``) writes through its own message queue, a different code path,
and is started unchanged.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

WRITE_METHODS = ("insert", "upsert", "delete", "flush")

_lock = threading.RLock()


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    wrapper.__devkit_serialized__ = True  # type: ignore[attr-defined]
    return wrapper


def serialize_writes() -> list[str]:
    """Wrap milvus-lite's collection write methods in the lock (idempotent); returns their names.
    Fails loudly when the engine no longer has one of them (a new milvus-lite: look again)."""
    from milvus_lite.engine.collection import Collection

    done: list[str] = []
    for name in WRITE_METHODS:
        method = getattr(Collection, name, None)
        if method is None:
            raise RuntimeError(f"milvus_lite Collection has no {name}(): devkit/litenode.py needs a look")
        if not getattr(method, "__devkit_serialized__", False):
            setattr(Collection, name, _serialized(method))
        done.append(name)
    return done


def main(argv: list[str] | None = None) -> int:
    from milvus_lite.cmdline import main as lite_main

    serialize_writes()
    return int(lite_main(argv) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
