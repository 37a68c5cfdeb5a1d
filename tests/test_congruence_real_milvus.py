"""The congruence checks again, with a real Milvus server (PyPI's ``milvus`` package: Milvus 2.3
standalone, C++ engine) as the reference instead of milvus-lite — so we know the proxy behaves like
real Milvus, not only like milvus-lite. Slow: `make test-slow` installs the package and runs these."""

from __future__ import annotations

import pytest

from tests.test_congruence import (  # noqa: F401 - collected again here, against real Milvus
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
def direct_client(real_direct_client):  # type: ignore[no-untyped-def]
    """The reference: the session's real Milvus standalone (tests/conftest.py)."""
    return real_direct_client
