"""TLS and mutual TLS on the proxy's port, as pymilvus configures them (certificates from a
throwaway CA made with ``cryptography``), and certificate reload without a restart.

pymilvus 3 shares one connection per address and token whatever the TLS options: checks that
must open their own connection pass ``dedicated=True``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException
from shopbyimage.v1 import admin_pb2, admin_pb2_grpc

from shardproxy.auth.certs import make_dev_certs
from shardproxy.auth.client import ClientAccess, channel
from devkit.devcluster import DevCluster
from tests.helpers import eventually


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """Proxy A requires client certificates (mTLS); proxy B serves one-way TLS."""
    cluster = DevCluster(data_dir=tmp_path_factory.mktemp("tls"), nodes=1, tls=True, mtls=True)
    cluster.start()
    try:
        certs = cluster.certs()
        cluster.mtls = False  # proxy B: TLS without client certificates
        cluster.more_proxies.append(cluster._spawn_proxy(None, "proxy-tls"))
        cluster.mtls = True
        cluster.wait_serving(cluster.more_proxies[0])
        assert certs is not None
        yield cluster
    finally:
        cluster.stop()


def test_mtls_with_a_client_certificate(tls_cluster: DevCluster) -> None:
    c = tls_cluster
    certs = c.certs()
    # pymilvus's documented mTLS arguments
    client = MilvusClient(uri=f"https://{c.proxy_address}", token=c.token, secure=True,
                          client_pem_path=str(certs.client_cert), client_key_path=str(certs.client_key),
                          ca_pem_path=str(certs.ca))
    client.create_collection("tls_c", dimension=4, metric_type="L2", auto_id=False)
    client.insert("tls_c", [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4]}])
    hits = eventually(lambda: client.search("tls_c", [[0.1, 0.2, 0.3, 0.4]], limit=1))
    assert hits[0][0]["id"] == 1
    client.close()
    stub = c.admin()  # admin stub over mTLS
    assert len(stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=30).nodes) == 1


def test_mtls_refuses_clients_without_certificate_or_plaintext(tls_cluster: DevCluster) -> None:
    c = tls_cluster
    certs = c.certs()
    no_cert = ClientAccess(c.token, str(certs.ca))  # trusts the server, shows no certificate
    with pytest.raises(grpc.RpcError) as info:
        admin_pb2_grpc.ShardAdminStub(channel(c.proxy_address, no_cert)).ListNodes(
            admin_pb2.ListNodesRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as info:
        admin_pb2_grpc.ShardAdminStub(grpc.insecure_channel(c.proxy_address)).ListNodes(
            admin_pb2.ListNodesRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(MilvusException):
        MilvusClient(uri=f"http://{c.proxy_address}", token=c.token, timeout=10, dedicated=True)


def test_one_way_tls_with_server_pem_path(tls_cluster: DevCluster) -> None:
    c = tls_cluster
    b = c.more_proxies[0]
    certs = c.certs()
    client = MilvusClient(uri=f"https://{b.address}", token=c.token, secure=True, server_pem_path=str(certs.ca),
                          dedicated=True)
    assert "tls_c" in client.list_collections() or isinstance(client.list_collections(), list)
    client.close()
    with pytest.raises(MilvusException):  # plaintext to a TLS port
        MilvusClient(uri=f"http://{b.address}", token=c.token, timeout=10, dedicated=True)


def test_certificate_reload_without_restart(tls_cluster: DevCluster, tmp_path: Path) -> None:
    c = tls_cluster
    b = c.more_proxies[0]
    old = c.certs()
    new = make_dev_certs(tmp_path / "new-ca", hosts=("localhost", c.host))
    # clients trusting only the new CA are refused until the files change ...
    with pytest.raises(MilvusException):
        MilvusClient(uri=f"https://{b.address}", token=c.token, secure=True, server_pem_path=str(new.ca),
                     timeout=10, dedicated=True)
    shutil.copy(new.server_cert, old.server_cert)
    shutil.copy(new.server_key, old.server_key)
    # ... then the proxy serves the new certificate on new connections, same process
    client = eventually(lambda: MilvusClient(uri=f"https://{b.address}", token=c.token, secure=True,
                                             server_pem_path=str(new.ca), timeout=10, dedicated=True), timeout=30)
    assert isinstance(client.list_collections(), list)
    assert b.alive()
    client.close()
