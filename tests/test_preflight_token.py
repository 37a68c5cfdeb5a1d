"""`embed` checks the proxy's token before long work starts: a missing or refused token is named
(with the flag to set), instead of pymilvus's "illegal connection params or server unavailable"
after minutes of adaptation. Against the shared dev cluster (auth on)."""

from __future__ import annotations

import pytest

from devkit.devcluster import DevCluster
from embed.preflight import Unreachable, check_proxy
from shardproxy.auth.client import ClientAccess


def test_missing_or_wrong_token_is_named_before_work_starts(dev_cluster: DevCluster) -> None:
    uri = dev_cluster.proxy_uri
    with pytest.raises(Unreachable, match="no token was given") as e:
        check_proxy(uri, ClientAccess(""))
    assert "--token" in str(e.value) and "EMBED_TOKEN" in str(e.value)
    with pytest.raises(Unreachable, match="the token was refused"):
        check_proxy(uri, ClientAccess("root:not-the-password"))
    check_proxy(uri, dev_cluster.access())  # root's token passes
