"""Building the configured models, and the local registry that maps a model id to its spec.

``<cache_dir>/models/<model_id>.json`` holds the EmbedderSpec of every model this machine knows.
``embed import`` / ``embed train`` also publish the model to the shared model store (Redis, see
:mod:`embed.artifactstore`); a proxy or worker that meets an unknown model id fetches it from there
on demand (hash-checked), and refuses (FAILED_PRECONDITION) when neither has it. The detector head
trained for a model travels the same way: when the local head registry lacks it, ``ModelPool.detector``
fetches it from the model store (hash-checked); only "no head published for this model" falls back to
saliency under EMBED_DETECTOR=auto.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from embed.artifacts import ModelFileError
from embed.config import EmbedSettings
from embed.detector import Detector, NoDetector, SaliencyDetector, YoloOnnxDetector
from embed.embedder import LITE0, Embedder, EmbedderSpec
from embed.errors import ModelConfigError, ModelMismatch

log = logging.getLogger(__name__)

HEAD_RECHECK_S = 60.0  # how long a model without a published detector head keeps saliency before looking again


def spec_from_settings(settings: EmbedSettings, projection: Path | None = None) -> EmbedderSpec:
    proj = projection or settings.projection
    return EmbedderSpec(
        arch=settings.embedder,
        weights=str(settings.weights) if settings.weights else None,
        projection=str(proj) if proj else None,
        dim=settings.dim,
        catalog_views=settings.catalog_views,
        catalog_hard=settings.catalog_hard,
    )


def register(spec: EmbedderSpec, artifacts_dir: Path) -> str:
    """Record ``spec`` under its model id; returns the id."""
    mid = spec.model_id()
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    path = artifacts_dir / f"{mid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(spec.to_json())
    tmp.replace(path)
    return mid


def resolve(model_id: str, artifacts_dir: Path) -> EmbedderSpec | None:
    path = artifacts_dir / f"{model_id}.json"
    if not path.is_file():
        return None
    spec = EmbedderSpec(**json.loads(path.read_text()))
    try:
        if spec.model_id() != model_id:  # weights changed on disk since
            return None
    except ModelFileError:
        return None
    return spec


def build_detector(settings: EmbedSettings, embedder: Embedder | None = None) -> Detector:
    kind = settings.detector
    try:
        if kind == "none":
            return NoDetector()
        if kind == "yolo":
            if settings.yolo_path is None:
                raise ModelConfigError("EMBED_DETECTOR=yolo needs EMBED_YOLO_PATH (a YOLO .onnx export)")
            return YoloOnnxDetector(
                settings.yolo_path, labels=settings.yolo_labels, keep_classes=settings.yolo_classes,
                conf=settings.conf_threshold, iou=settings.iou_threshold, min_size=settings.min_box_size,
                input_size=settings.yolo_input_size, threads=settings.threads,
            )
        shared = embedder.backbone.net if embedder is not None and embedder.spec.arch == LITE0 else None
        if kind in ("auto", "trained"):
            from embed.productdet import ProductDetector, head_for_model

            head = settings.detector_head or (head_for_model(embedder.model_id, settings.artifacts_dir)
                                              if embedder is not None else None)
            if head is not None and (shared is not None or settings.embedder == LITE0):
                return ProductDetector(head, shared, runtime=settings.runtime, export_dir=settings.artifacts_dir,
                                       conf=settings.det_conf, min_size=settings.min_box_size, threads=settings.threads)
            if kind == "trained":
                raise ModelConfigError("EMBED_DETECTOR=trained needs a detector head: run `embed train CATALOG` "
                                       "(or set EMBED_DETECTOR_HEAD)")
            kind = "saliency"
        if kind == "saliency":
            return SaliencyDetector(shared, min_size=settings.min_box_size)
    except ModelFileError as e:
        raise ModelConfigError(str(e)) from e
    raise ModelConfigError(f"unknown detector {kind!r} (EMBED_DETECTOR: auto, trained, saliency, yolo or none)")


class ModelPool:
    """Loads embedders lazily by model id (the configured one, or any registered one)."""

    def __init__(self, settings: EmbedSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._embedders: dict[str, Embedder] = {}
        self._default: Embedder | None = None
        self._detectors: dict[str, Detector] = {}
        self._no_head: dict[str, float] = {}  # model id -> when the model store last had no head for it

    def _load(self, spec: EmbedderSpec) -> Embedder:
        try:
            emb = Embedder(spec, batch_size=self.settings.batch_size, threads=self.settings.threads,
                           runtime=self.settings.runtime, export_dir=self.settings.artifacts_dir)
        except (ModelFileError, ValueError) as e:
            raise ModelConfigError(f"cannot load the embedding model: {e}") from e
        from embed import metrics  # light: prometheus_client only

        metrics.set_model_info(emb.model_id, spec.arch, self.settings.dim, self.settings.detector)
        return emb

    def default(self) -> Embedder:
        with self._lock:
            if self._default is None:
                self._default = self._load(spec_from_settings(self.settings))
                self._embedders[self._default.model_id] = self._default
            return self._default

    def for_model(self, model_id: str | None, collection: str) -> Embedder:
        """The embedder of ``model_id``; ModelMismatch when neither configured nor registered."""
        if model_id is not None:
            with self._lock:
                if model_id in self._embedders:
                    return self._embedders[model_id]
            spec = resolve(model_id, self.settings.artifacts_dir) or self._from_store(model_id)
            if spec is not None:
                emb = self._load(spec)
                with self._lock:
                    self._embedders[model_id] = emb
                return emb
        default = self.default()
        if model_id != default.model_id:
            raise ModelMismatch(collection, model_id, default.model_id)
        return default

    def _from_store(self, model_id: str) -> EmbedderSpec | None:
        """Fetch a model this machine has never seen from the model store (hash-checked), and
        register it locally; None when the store does not know it."""
        from embed.artifactstore import ArtifactStore, ArtifactStoreError

        try:
            spec = ArtifactStore(self.settings.model_store_url).fetch(model_id, self.settings.artifacts_dir)
        except ArtifactStoreError as e:
            raise ModelConfigError(str(e)) from e
        if spec is not None:
            register(spec, self.settings.artifacts_dir)
            log.info("model %s loaded from the model store %s", model_id, self.settings.model_store_url)
        return spec

    def detector(self, embedder: Embedder | None = None) -> Detector:
        """The configured detector for ``embedder``'s model (the catalog-trained head registered for it, when
        there is one); Lite0 detectors share the loaded backbone."""
        emb = embedder if embedder is not None and embedder.spec.arch == LITE0 else None
        if emb is None and self.settings.detector in ("auto", "trained", "saliency") and self.settings.embedder == LITE0:
            emb = self.default()
        key = emb.model_id if emb is not None else ""
        with self._lock:
            # a model that had no head published is looked up again now and then (the importer
            # publishes the head after it creates the collection)
            recheck = key in self._no_head and time.monotonic() - self._no_head[key] >= HEAD_RECHECK_S
            if key not in self._detectors or recheck:
                missing = emb is not None and not self._head_from_store(emb.model_id)
                if missing and self.settings.detector == "auto":
                    self._no_head[key] = time.monotonic()
                else:
                    self._no_head.pop(key, None)
                if key not in self._detectors or not missing:
                    self._detectors[key] = build_detector(self.settings, emb)
            return self._detectors[key]

    def _head_from_store(self, model_id: str) -> bool:
        """Make sure the detector head of ``model_id`` is in the local registry when the settings use one:
        fetched from the model store (hash-checked) when the registry lacks it. False when no head was
        published for the model (the saliency fallback); an unreachable store or a missing / corrupt
        blob is a ModelConfigError, never a silent fallback."""
        s = self.settings
        if s.detector not in ("auto", "trained") or s.detector_head is not None:
            return True
        from embed.artifactstore import ArtifactStore, ArtifactStoreError
        from embed.productdet import head_for_model, register_head

        if head_for_model(model_id, s.artifacts_dir) is not None:
            return True
        try:
            path = ArtifactStore(s.model_store_url).fetch_head(model_id, s.artifacts_dir)
        except ArtifactStoreError as e:
            raise ModelConfigError(f"detector head of model {model_id}: {e}") from e
        if path is None:
            return False
        register_head(model_id, path, s.artifacts_dir)
        log.info("detector head of model %s loaded from the model store %s", model_id, s.model_store_url)
        return True
