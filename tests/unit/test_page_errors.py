"""How SearchByImage failures read on the shopper's page (pure mapping, no servers)."""

from __future__ import annotations

import grpc
import pytest

from embed.web.app import error_for_grpc


@pytest.mark.parametrize(("code", "details", "status", "kind", "words"), [
    (grpc.StatusCode.INVALID_ARGUMENT, "invalid image (not_an_image): not an image (unknown or unsupported format)",
     400, "not_an_image", "not an image"),
    (grpc.StatusCode.INVALID_ARGUMENT, "invalid image (corrupt): truncated or corrupt image", 400, "not_an_image", "JPEG"),
    (grpc.StatusCode.INVALID_ARGUMENT, "invalid image (too_large): image is 30000000 bytes", 413, "too_large", "20 MB"),
    (grpc.StatusCode.INVALID_ARGUMENT, "vector store refused the search: cannot parse expression", 400, "bad_filter",
     "filter"),
    (grpc.StatusCode.NOT_FOUND, "collection 'x' does not exist", 404, "no_collection", "Import one"),
    (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", 503, "unavailable", "try again"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", 503, "unavailable", "unavailable"),
    (grpc.StatusCode.FAILED_PRECONDITION, "collection built with model m", 409, "model", "model m"),
    (grpc.StatusCode.INTERNAL, "internal error: KeyError: 'x'", 502, "server", "our side"),
])
def test_error_for_grpc(code: grpc.StatusCode, details: str, status: int, kind: str, words: str) -> None:
    e = error_for_grpc(code, details, 20.0)
    assert (e.status, e.kind) == (status, kind)
    assert words in e.message
    assert "Traceback" not in e.message and "KeyError" not in e.message
