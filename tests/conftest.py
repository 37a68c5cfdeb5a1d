"""Shared fixtures: real processes only (milvus-lite servers, a valkey server, the proxy)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit import procs
from devkit.devcluster import DevCluster


def pytest_configure(config: pytest.Config) -> None:
    # tests never read or replace the dev profile of a `shardproxy dev up` someone runs on this machine
    import tempfile

    os.environ["SHOPBYIMAGE_PROFILE"] = str(Path(tempfile.mkdtemp(prefix="shopbyimage-profile-")) / "dev.json")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def embed_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model registry and artefacts shared by the pipeline's processes and the proxy's image search."""
    return tmp_path_factory.mktemp("embed-cache")


@pytest.fixture(scope="session")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory, embed_cache_dir: Path) -> Iterator[DevCluster]:
    """A 3-node dev cluster (3 milvus-lite processes, valkey, one proxy process)."""
    data = tmp_path_factory.mktemp("devcluster")
    cluster = DevCluster(
        data_dir=data, nodes=3,
        # the proxy's own model cache: the models it searches with come from the cluster's model
        # store (Redis), as on a real cluster where importer and proxies share no disk
        proxy_env={"SHARDPROXY_MAX_REQUEST_BYTES": str(8 * 1024 * 1024), "SHARDPROXY_LOG_LEVEL": "INFO",
                   "SHARDPROXY_ORDER_BY_MAX_ROWS": "200",  # tests/test_congruence_orderby.py
                   "EMBED_CACHE_DIR": str(tmp_path_factory.mktemp("proxy-model-cache"))},
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def direct_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[procs.ManagedProcess]:
    """One plain milvus-lite node, the reference for congruence tests."""
    data = tmp_path_factory.mktemp("direct")
    node = procs.start_milvus(data / "node", name="direct")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def proxy_client(dev_cluster: DevCluster):  # type: ignore[no-untyped-def]
    client = dev_cluster.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def direct_client(direct_node: procs.ManagedProcess):  # type: ignore[no-untyped-def]
    from pymilvus import MilvusClient

    client = MilvusClient(uri=f"http://{direct_node.address}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def real_direct_client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One real Milvus standalone (PyPI's ``milvus`` package, via :func:`devkit.procs.start_milvus_standalone`),
    the reference of the slow congruence tests (tests/test_congruence_real_*.py); started once per session."""
    pytest.importorskip("milvus", reason="PyPI's milvus package is installed by `make test-slow`")
    from pymilvus import MilvusClient

    node = procs.start_milvus_standalone(tmp_path_factory.mktemp("real-milvus") / "data", name="real-direct")
    client = MilvusClient(uri=f"http://{node.address}")
    try:
        yield client
    finally:
        client.close()
        node.stop(timeout=30)


def node_clients(cluster: DevCluster):  # type: ignore[no-untyped-def]
    from pymilvus import MilvusClient

    # A fresh connection per client: pymilvus pings idle channels every 10 s, which a milvus-lite
    # node answers with GOAWAY too_many_pings after a few strikes; a channel (or the process-wide
    # subchannel it shares) that a test left open would fail the next client's connect.
    return {p.name: MilvusClient(uri=f"http://{p.address}", dedicated=True,
                                 grpc_options={"grpc.use_local_subchannel_pool": 1}) for p in cluster.milvus}


os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A valkey server of its own for one test module (each module's tests use their own key prefix)."""
    server = procs.start_redis(tmp_path_factory.mktemp("valkey-module") / "data", persist=False)
    try:
        yield f"redis://{server.address}/0"
    finally:
        server.stop()
