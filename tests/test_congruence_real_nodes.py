"""The congruence checks with real Milvus everywhere: the proxy over 3 real Milvus standalone nodes
(`DevCluster(engine="milvus")`, what `shardproxy dev up --engine milvus` starts) against one real
Milvus standalone holding the same data. Slow: four standalones (~0.3 GiB and ~40 s each to start);
`make test-slow` installs PyPI's milvus package and runs these."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.devcluster import DevCluster
from tests.test_congruence import (  # noqa: F401 - collected again here, on real Milvus nodes
    pair,
    test_count_and_stats_same,
    test_describe_and_indexes_same,
    test_filtered_search_with_offset_same,
    test_get_same,
    test_mutations_same,
    test_query_same,
    test_search_same,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    pytest.importorskip("milvus", reason="PyPI's milvus package is installed by `make test-slow`")
    cluster = DevCluster(data_dir=tmp_path_factory.mktemp("real-nodes"), nodes=3, engine="milvus",
                         proxy_env={"SHARDPROXY_LOG_LEVEL": "INFO"})
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def proxy_client(real_cluster: DevCluster) -> Iterator[object]:
    client = real_cluster.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def direct_client(real_direct_client):  # type: ignore[no-untyped-def]
    """The reference: the session's real Milvus standalone (tests/conftest.py), shared with
    tests/test_congruence_real_milvus.py."""
    return real_direct_client
