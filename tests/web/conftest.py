"""Fixtures of the page tests: a catalog imported through the dev cluster's queue (importer and worker
on their own cache dir: the proxy gets the model from the cluster's model store, not a shared disk),
the page process, and Debian's Chromium (installed on demand; the browser test skips only when it
cannot be installed)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devkit import procs, syspkg
from devkit.devcluster import DevCluster
from tests.embed.conftest import ROOT, embed_cmd, stop
from tests.embed.synth import make_catalog

COLLECTION = "page_shop"
PRODUCTS = 18


@dataclass
class PageEnv:
    url: str
    proxy_address: str
    collection: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def page_env(dev_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PageEnv]:
    tmp = tmp_path_factory.mktemp("page")
    csv = make_catalog(tmp / "catalog", PRODUCTS)
    env = {**os.environ, "PYTHONPATH": procs.project_pythonpath(),
           "EMBED_CACHE_DIR": str(tmp / "importer-cache"),  # not the proxy's: models travel through Redis
           "EMBED_REDIS_URL": dev_cluster.redis_url, "EMBED_PROXY": dev_cluster.proxy_uri,
           "EMBED_STREAM": f"page:{uuid.uuid4().hex[:6]}", "EMBED_BATCH_SIZE": "8",
           "EMBED_TRAIN_VIEWS": "2", "EMBED_TRAIN_STEPS": "30", **dev_cluster.client_env()}
    worker = subprocess.Popen(embed_cmd("worker"), env=env, cwd=ROOT, stdout=open(tmp / "worker.log", "wb"),
                              stderr=subprocess.STDOUT)
    try:
        r = subprocess.run(embed_cmd("import", str(csv), "--collection", COLLECTION, "--wait", "--timeout", "1200"),
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=1500)  # a busy 2-core box
    finally:
        stop(worker)
    assert r.returncode == 0, r.stderr
    web = procs.start_web(dev_cluster.proxy_uri, dev_cluster.redis_url, None, "127.0.0.1", tmp / "web.log",
                          extra_env={"EMBED_STREAM": env["EMBED_STREAM"], "EMBED_CACHE_DIR": str(tmp / "web-cache"),
                                     **dev_cluster.client_env()})
    web_env = dict(env)
    try:
        yield PageEnv(f"http://{web.address}", dev_cluster.proxy_address, COLLECTION, web_env)
    finally:
        web.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        return syspkg.chromium()
    except syspkg.PackageUnavailable as exc:
        pytest.skip(f"no Chromium for the browser test: {exc}")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots the browser tests keep: $PAGE_TEST_ARTIFACTS or .data/test-artifacts/ in the checkout."""
    d = Path(os.environ.get("PAGE_TEST_ARTIFACTS") or ROOT / ".data" / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d
