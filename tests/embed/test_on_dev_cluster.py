"""The pipeline on the sharded dev cluster: `embed worker` + `embed import` write through the proxy,
and the proxy's own SearchByImage answers — catalog images spread over the nodes, a recompressed
product pasted into a larger photo comes back at rank 1, `cluster status` names the model (a collection property)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from devkit.devcluster import DevCluster
from shopbyimage.v1 import image_search_pb2 as pb
from shopbyimage.v1 import image_search_pb2_grpc as pb_grpc
from tests.conftest import node_clients
from tests.embed.conftest import ROOT, embed_cmd, stop
from tests.embed.synth import jpeg, make_catalog, paste_into_scene, product_image


def test_import_and_search_by_image_through_the_proxy(dev_cluster: DevCluster, embed_cache_dir: Path,
                                                      tmp_path: Path) -> None:
    csv = make_catalog(tmp_path / "catalog", 18)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}", "EMBED_CACHE_DIR": str(embed_cache_dir),
           "EMBED_REDIS_URL": dev_cluster.redis_url, "EMBED_PROXY": dev_cluster.proxy_uri,
           "EMBED_STREAM": f"devc:{uuid.uuid4().hex[:6]}", "EMBED_BATCH_SIZE": "8",
           "EMBED_TRAIN_VIEWS": "2", "EMBED_TRAIN_STEPS": "30", "EMBED_DET_SCENES": "24", "EMBED_DET_STEPS": "40",
           "EMBED_DET_TEXTURES": "",
           "OMP_WAIT_POLICY": "PASSIVE", **dev_cluster.client_env()}
    worker = subprocess.Popen(embed_cmd("worker"), env=env, cwd=ROOT, stdout=open(tmp_path / "worker.log", "wb"),
                              stderr=subprocess.STDOUT)
    try:
        r = subprocess.run(embed_cmd("import", str(csv), "--collection", "shop_sharded", "--wait", "--timeout", "300"),
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=360)
    finally:
        stop(worker)
    assert r.returncode == 0, r.stderr

    client = dev_cluster.client()
    assert client.query("shop_sharded", filter="", output_fields=["count(*)"])[0]["count(*)"] == 18
    per_node = [c.get_collection_stats("shop_sharded")["row_count"] for c in node_clients(dev_cluster).values()]
    assert sum(per_node) == 18 and sum(1 for n in per_node if n) >= 2  # spread over the shards
    client.close()

    stub = pb_grpc.ImageSearchStub(dev_cluster.channel())
    for i, pid in enumerate([2, 9, 15]):
        scene, _ = paste_into_scene(product_image(pid), seed=300 + i, size=(640, 480), scale=0.45, angle=8)
        resp = stub.SearchByImage(pb.SearchByImageRequest(image=jpeg(scene, 70), collection="shop_sharded", top_k=3),
                                  timeout=120)
        rank1 = {o.matches[0].product_id for o in resp.objects if o.matches}
        assert f"P{pid:03d}" in rank1, (pid, rank1)

    status = subprocess.run([sys.executable, "-m", "shardproxy", "cluster", "status", "--json", "--proxy",
                             dev_cluster.proxy_address], capture_output=True, text=True, timeout=60, check=True,
                            env={**env, **dev_cluster.client_env()})
    coll = next(c for c in json.loads(status.stdout)["collections"] if c["name"] == "shop_sharded")
    model_id = coll["properties"]["shopbyimage.model_id"]  # a generic collection property to the proxy
    assert model_id == resp.model_id and model_id.startswith("efficientnet-lite0-256-")
    # the proxy (its own cache dir, no shared disk) searched with the head the import trained: fetched
    # from the model store into its cache, not the saliency fallback
    proxy_models = Path(dev_cluster.proxy_env["EMBED_CACHE_DIR"]).resolve() / "models"
    head = json.loads((proxy_models / f"detector-for-{model_id}.json").read_text())["head"]
    assert Path(head).parent == proxy_models / "blobs"
