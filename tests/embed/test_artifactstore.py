"""The model store: a model published by one process is fetched by another that shares no disk
with it (a real valkey), hash-checked; a corrupt file is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import torch

from embed.artifactstore import ArtifactStore, ArtifactStoreError
from embed.config import EmbedSettings
from embed.embedder import EmbedderSpec
from embed.models import ModelPool


def projection(path: Path, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    torch.save({"weight": torch.randn(256, 1280, generator=g)}, path)
    return path


def test_publish_fetch_verify(redis_url: str, tmp_path: Path) -> None:
    importer_dir, proxy_dir = tmp_path / "importer", tmp_path / "proxy"
    importer_dir.mkdir()
    spec = EmbedderSpec(projection=str(projection(importer_dir / "proj.pt")))
    store = ArtifactStore(redis_url)
    mid = store.publish(spec)
    assert mid == spec.model_id()
    got = store.fetch(mid, proxy_dir)
    assert got is not None and got.model_id() == mid
    assert Path(got.projection).parent == proxy_dir / "blobs"  # a local copy, not the importer's path
    assert store.fetch("efficientnet-lite0-256-000000000000", proxy_dir) is None

    # the proxy side: ModelPool finds the model it was never configured with
    pool = ModelPool(EmbedSettings(cache_dir=tmp_path / "other", artifacts_url=redis_url))
    assert pool.for_model(mid, "products").model_id == mid

    # a corrupted blob in the store is refused, never loaded
    r = redis.Redis.from_url(redis_url)
    sha = next(k for k in r.keys("shopbyimage:blob:*")).decode().rsplit(":", 1)[1]
    r.set(f"shopbyimage:blob:{sha}", b"not the weights")
    with pytest.raises(ArtifactStoreError, match="corrupt"):
        store.fetch(mid, tmp_path / "third")


def test_detector_head_travels_through_the_store(redis_url: str, lite0, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A head trained (here: an untrained head, saved the same way) in the importer's cache is found and
    loaded by a proxy with its own cache dir; a corrupt or missing blob is refused, not replaced by saliency."""
    from embed.dethead import DetHead
    from embed.detrain import DetTrainConfig, save_head
    from embed.errors import ModelConfigError
    from embed.productdet import ProductDetector, head_for_model, register_head

    store = ArtifactStore(redis_url)
    mid = lite0.model_id
    proxy = EmbedSettings(cache_dir=tmp_path / "proxy", artifacts_url=redis_url, runtime="torch")
    # nothing published for the model yet: the legitimate saliency fallback
    assert store.fetch_head(mid, tmp_path / "nothing") is None
    early = ModelPool(proxy.model_copy(update={"cache_dir": tmp_path / "early"}))
    assert type(early.detector(lite0)).__name__ == "SaliencyDetector"

    importer = EmbedSettings(cache_dir=tmp_path / "importer")
    importer.artifacts_dir.mkdir(parents=True)
    head = DetHead(width=8)
    torch.nn.init.normal_(head.out.weight, generator=torch.Generator().manual_seed(3))
    path = importer.artifacts_dir / "detector-head-test.pt"
    save_head(head, path, DetTrainConfig(size=256, width=8))
    register_head(mid, path, importer.artifacts_dir)
    sha = store.publish_head(mid, path)

    det = ModelPool(proxy).detector(lite0)
    assert isinstance(det, ProductDetector) and det.size == 256
    local = head_for_model(mid, proxy.artifacts_dir)
    assert local is not None and local.parent == proxy.artifacts_dir / "blobs" and local.name.startswith(sha)
    assert torch.equal(det.head.out.weight, head.out.weight)  # the published head, not a fresh one
    assert store.fetch_head("efficientnet-lite0-256-000000000000", proxy.artifacts_dir) is None
    # a proxy that met the model before the head was published picks it up on its next look
    monkeypatch.setattr("embed.models.HEAD_RECHECK_S", 0.0)
    assert isinstance(early.detector(lite0), ProductDetector)

    # a corrupted blob is refused by a proxy that has no local copy, and so is a missing one
    r = redis.Redis.from_url(redis_url)
    r.set(f"shopbyimage:blob:{sha}", b"not the head")
    with pytest.raises(ArtifactStoreError, match="corrupt"):
        store.fetch_head(mid, tmp_path / "third")
    with pytest.raises(ModelConfigError, match="corrupt"):
        ModelPool(proxy.model_copy(update={"cache_dir": tmp_path / "fourth"})).detector(lite0)
    r.delete(f"shopbyimage:blob:{sha}")
    with pytest.raises(ModelConfigError, match="lacks"):
        ModelPool(proxy.model_copy(update={"cache_dir": tmp_path / "fifth"})).detector(lite0)
    r.delete(f"shopbyimage:detector:{mid}")  # leave the session's store as it was
