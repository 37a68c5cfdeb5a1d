"""Errors of the pipeline, each mapped to one gRPC status code (see ``embed.service.status_for``)."""

from __future__ import annotations


class PipelineError(RuntimeError):
    """Base class of the errors the query and import stages report to users."""


class CollectionNotFound(PipelineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist")
        self.name = name


class ModelMismatch(PipelineError):
    def __init__(self, collection: str, built_with: str | None, available: str) -> None:
        what = f"model {built_with}" if built_with else "no recorded model (not a shop-by-image collection)"
        super().__init__(
            f"collection {collection!r} was built with {what}; this server embeds with {available}. "
            "Re-import the catalog with this model, or configure the model the collection was built with."
        )
        self.collection, self.built_with, self.available = collection, built_with, available


class ModelConfigError(PipelineError):
    """The model configuration is missing or invalid (bad path, corrupt file, unknown architecture)."""
