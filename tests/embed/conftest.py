"""Fixtures of the image pipeline tests: models cached per session, real Milvus and Valkey processes."""

from __future__ import annotations

import pytest

from embed.embedder import Embedder, EmbedderSpec


@pytest.fixture(scope="session")
def lite0() -> Embedder:
    return Embedder(EmbedderSpec(), batch_size=16)
