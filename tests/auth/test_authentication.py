"""Authentication against real processes: missing, wrong, unknown, malformed tokens; API keys
(valid, expired, revoked); the failure slow-down; root's password from the config."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from devkit import procs
from devkit.devcluster import DevCluster
from tests.helpers import eventually

MISSING = "missing authorization in header"
BAD_PASSWORD = "auth check failure, please check username and password are correct"
BAD_KEY = "auth check failure, please check api key is correct"


def raw_call(cluster: DevCluster, header: str | None, address: str | None = None) -> milvus_pb2.ListDatabasesResponse:
    stub = milvus_pb2_grpc.MilvusServiceStub(grpc.insecure_channel(address or cluster.proxy_address))
    md = [("authorization", header)] if header is not None else []
    return stub.ShowCollections(milvus_pb2.ShowCollectionsRequest(), metadata=md, timeout=30)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def expect_unauthenticated(fn, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        fn()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == message


def test_root_token_works_and_every_bad_token_is_refused(auth_cluster: DevCluster) -> None:
    c = auth_cluster
    assert raw_call(c, b64(c.token)).status.code == 0
    expect_unauthenticated(lambda: raw_call(c, None), MISSING)
    expect_unauthenticated(lambda: raw_call(c, b64("root:wrong-password")), BAD_PASSWORD)
    expect_unauthenticated(lambda: raw_call(c, b64("nobody:whatever1")), BAD_PASSWORD)
    expect_unauthenticated(lambda: raw_call(c, "%%% not base64"), "invalid token format")
    expect_unauthenticated(lambda: raw_call(c, b64("spk_not_a_key")), BAD_KEY)


def test_pymilvus_sees_unauthenticated_as_on_milvus(auth_cluster: DevCluster) -> None:
    c = auth_cluster
    for kwargs in ({"uri": c.proxy_uri}, {"uri": c.proxy_uri, "token": "root:nope"},
                   {"uri": c.proxy_uri, "user": "root", "password": "nope"}):
        with pytest.raises(MilvusException) as info:
            MilvusClient(**kwargs)
        cause = info.value.__cause__
        assert isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.UNAUTHENTICATED
    # user= / password= is the same token as token="user:password"
    user, password = c.token.split(":", 1)
    client = MilvusClient(uri=c.proxy_uri, user=user, password=password)
    assert isinstance(client.list_collections(), list)
    client.close()


def test_repeated_failures_from_one_peer_are_slowed_down(auth_cluster: DevCluster) -> None:
    c = auth_cluster
    address = c.more_proxies[0].address  # proxy B: its throttle has not seen other tests' failures
    from shardproxy.auth.interceptor import THROTTLE_TRAILER
    from shardproxy.auth.limits import FailureThrottle

    def delay_ms() -> int:
        with pytest.raises(grpc.RpcError) as info:
            raw_call(c, b64("root:bad"), address)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        return int(dict(info.value.trailing_metadata() or ()).get(THROTTLE_TRAILER, 0))

    first = [delay_ms() for _ in range(FailureThrottle().free)]
    assert first == [0] * len(first)
    later = [delay_ms() for _ in range(2)]
    assert 0 < later[0] < later[1]  # held back, longer each time
    assert raw_call(c, b64(c.token), address).status.code == 0  # a success clears the peer's record
    assert delay_ms() == 0


def apikey_cli(c: DevCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shardproxy", "auth", *args, "--redis-url", c.redis_url],
                          capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": procs.project_pythonpath(), "PATH": "/usr/bin:/bin"})


def test_api_keys_valid_expired_revoked(auth_cluster: DevCluster) -> None:
    c = auth_cluster
    root = c.client()
    if "keyuser" not in root.list_users():
        root.create_user("keyuser", "keyuser-pw1")
    out = apikey_cli(c, "apikey-create", "--user", "keyuser", "--name", "ci", "--ttl", "0")
    assert out.returncode == 0, out.stderr
    key = json.loads(out.stdout)["api_key"]
    short = json.loads(apikey_cli(c, "apikey-create", "--user", "keyuser", "--name", "short", "--ttl", "2").stdout)
    # a key is a token without a colon, as pymilvus sends it
    eventually(lambda: raw_call(c, b64(key)), timeout=15)
    keyed = c.client(token=key)
    assert isinstance(keyed.list_collections(), list)
    # expired: the same user's key with a 2 s lifetime is refused once its time has passed (not checked
    # while valid: on a loaded machine the CLI may take longer than that to start)
    eventually(lambda: expect_unauthenticated(lambda: raw_call(c, b64(short["api_key"])), BAD_KEY), timeout=30,
               errors=(AssertionError, pytest.fail.Exception))
    # revoked: every proxy drops it (pub/sub)
    assert apikey_cli(c, "apikey-revoke", "--user", "keyuser", "--name", "ci").returncode == 0
    for p in c.all_proxies[:2]:
        eventually(lambda p=p: expect_unauthenticated(lambda: raw_call(c, b64(key), p.address), BAD_KEY),
                   timeout=15, errors=(AssertionError, pytest.fail.Exception))
    keyed.close()
    root.close()
