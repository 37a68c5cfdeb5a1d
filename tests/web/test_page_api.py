"""The page's API answers every failure with a message (no servers needed for these: the size check
happens before any call, and an unreachable cluster is a real closed port)."""

from __future__ import annotations

import io

from PIL import Image
from starlette.testclient import TestClient

from devkit.procs import free_port
from embed.config import EmbedSettings
from embed.web.app import create_app


def photo() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


def client(max_bytes: int = 20 * 1024 * 1024) -> TestClient:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    s = EmbedSettings(proxy=dead, redis_url=f"redis://127.0.0.1:{free_port()}/0", max_image_bytes=max_bytes)
    return TestClient(create_app(s, "products"))


def test_too_large_is_refused_before_any_call() -> None:
    with client(max_bytes=100_000) as c:
        r = c.post("/api/search", files={"image": ("big.jpg", b"\xff" * 200_000, "image/jpeg")})
    assert r.status_code == 413
    assert r.json()["error"] == "too_large" and "too large" in r.json()["message"]


def test_cluster_unavailable_reads_as_a_message() -> None:
    with client() as c:
        r = c.post("/api/search", files={"image": ("a.jpg", photo(), "image/jpeg")}, data={"collection": "products"})
        assert r.status_code == 503
        assert r.json()["error"] == "unavailable" and "try again" in r.json()["message"]
        for url in ("/api/cluster", "/api/imports", "/api/products?collection=products"):
            r = c.get(url)
            assert r.status_code == 503, (url, r.text)
            assert "Traceback" not in r.text and "unavailable" in r.json()["message"]


def test_missing_file_and_empty_file() -> None:
    with client() as c:
        r = c.post("/api/search", data={"collection": "products"})
        assert r.status_code == 400 and r.json()["error"] == "no_image"
        r = c.post("/api/search", files={"image": ("e.jpg", b"", "image/jpeg")})
        assert r.status_code == 400 and r.json()["error"] == "not_an_image"


def test_pages_are_served() -> None:
    with client() as c:
        assert "Shop by image" in c.get("/").text
        assert "Imports" in c.get("/catalog").text
        assert c.get("/static/app.js").status_code == 200
