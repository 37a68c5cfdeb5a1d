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
