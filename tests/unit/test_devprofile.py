"""The dev profile: written by `dev up`, read by both CLIs below flags and environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shardproxy import devprofile


@pytest.fixture
def profile_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "dev.json"
    monkeypatch.setenv(devprofile.ENV, str(p))
    for var in ("EMBED_REDIS_URL", "EMBED_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return p


def test_round_trip_and_removal(profile_path: Path) -> None:
    assert devprofile.read() is None
    prof = devprofile.DevProfile(proxy="127.0.0.1:4242", redis_url="redis://127.0.0.1:4243/0", pid=os.getpid(),
                                 web="http://127.0.0.1:4244/", metrics={"proxy": "http://127.0.0.1:4245/metrics"})
    assert devprofile.write(prof) == profile_path
    got = devprofile.read()
    assert got == prof and got.proxy_uri == "http://127.0.0.1:4242"
    devprofile.remove(os.getpid() + 1)  # another process's profile is left alone
    assert profile_path.exists()
    devprofile.remove(os.getpid())
    assert devprofile.read() is None and not profile_path.exists()


def test_stale_profile_is_ignored(profile_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    devprofile.write(devprofile.DevProfile(proxy="127.0.0.1:1", redis_url="redis://127.0.0.1:2/0", pid=dead.pid))
    assert devprofile.read() is None
    profile_path.write_text("{not json")
    assert devprofile.read() is None


def test_embed_settings_use_the_profile_below_env(profile_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embed.config import EmbedSettings

    assert EmbedSettings().redis_url == "redis://127.0.0.1:6379/0"  # no profile: the built-in default
    devprofile.write(devprofile.DevProfile(proxy="127.0.0.1:4242", redis_url="redis://127.0.0.1:4243/0",
                                           pid=os.getpid()))
    s = EmbedSettings()
    assert (s.redis_url, s.proxy) == ("redis://127.0.0.1:4243/0", "http://127.0.0.1:4242")
    monkeypatch.setenv("EMBED_REDIS_URL", "redis://elsewhere:1/0")
    assert EmbedSettings().redis_url == "redis://elsewhere:1/0"  # the environment wins
    assert EmbedSettings(redis_url="redis://flag:1/0").redis_url == "redis://flag:1/0"  # a flag wins


def test_shardproxy_cli_uses_the_profile_below_the_flag(profile_path: Path) -> None:
    from shardproxy.cli import DEFAULT_PROXY, proxy_address

    assert proxy_address(None) == DEFAULT_PROXY
    devprofile.write(devprofile.DevProfile(proxy="127.0.0.1:4242", redis_url="redis://x/0", pid=os.getpid()))
    assert proxy_address(None) == "127.0.0.1:4242"
    assert proxy_address("10.0.0.1:19530") == "10.0.0.1:19530"


def test_import_checks_the_queue_before_adapting(profile_path: Path, tmp_path: Path) -> None:
    """No dev cluster and no Redis: `embed import` stops at once, naming the flag to set."""
    from devkit import procs

    csv = tmp_path / "catalog.csv"
    csv.write_text("product_id,image_path\nP1,p1.png\n")
    closed = procs.free_port()
    r = subprocess.run([sys.executable, "-m", "embed", "import", str(csv), "--collection", "products", "--wait",
                        "--redis-url", f"redis://127.0.0.1:{closed}/0"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": procs.project_pythonpath(), "COLUMNS": "300"})
    assert r.returncode == 1
    assert f"cannot reach the job queue (Redis/Valkey) at redis://127.0.0.1:{closed}/0" in r.stderr
    assert "--redis-url or EMBED_REDIS_URL" in r.stderr and str(profile_path) in r.stderr
    assert not (tmp_path / ".cache").exists()  # no adaptation started


def test_redis_only_commands_use_the_profile_below_the_flag(profile_path: Path) -> None:
    """`shardproxy verify`, `repair` and `auth apikey-*` talk to Redis directly: flag/env, else the
    running dev cluster's Redis, else 6379; the error for a silent Redis names the flag."""
    assert devprofile.redis_url(None) == devprofile.DEFAULT_REDIS_URL
    assert "--redis-url" in devprofile.no_redis(devprofile.DEFAULT_REDIS_URL, None)
    assert "no running `shardproxy dev up`" in devprofile.no_redis(devprofile.DEFAULT_REDIS_URL, None)
    devprofile.write(devprofile.DevProfile(proxy="127.0.0.1:4242", redis_url="redis://127.0.0.1:4243/0",
                                           pid=os.getpid()))
    assert devprofile.redis_url(None) == "redis://127.0.0.1:4243/0"
    assert devprofile.redis_url("redis://elsewhere:6379/1") == "redis://elsewhere:6379/1"
    assert "no running" not in devprofile.no_redis("redis://127.0.0.1:4243/0", None)


def test_verify_without_redis_names_the_flag(profile_path: Path) -> None:
    from devkit.procs import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    r = subprocess.run([sys.executable, "-m", "shardproxy", "verify", "--redis-url", url], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 2
    assert f"no Redis answers at {url}" in r.stderr and "--redis-url" in r.stderr and "Traceback" not in r.stderr
