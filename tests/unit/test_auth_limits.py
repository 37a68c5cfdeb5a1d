"""Rate limiter, failure throttle, token parsing, password hashing: pure, injected clocks."""

from __future__ import annotations

import base64

import pytest

from shardproxy.auth import passwords
from shardproxy.auth.limits import FailureThrottle, RateLimiter, peer_host


def test_rate_limiter_allows_burst_then_asks_to_wait() -> None:
    rl = RateLimiter(rate=2.0, burst=3.0)
    assert [rl.acquire("bob", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.acquire("bob", 0.0)
    assert wait == pytest.approx(0.5)
    assert rl.acquire("alice", 0.0) == 0.0  # per user
    assert rl.acquire("bob", 0.5) == 0.0  # refilled one token


def test_rate_limiter_off() -> None:
    rl = RateLimiter(rate=0, burst=0)
    assert all(rl.acquire("x", 0.0) == 0.0 for _ in range(1000))


def test_failure_throttle_slows_repeat_offenders_and_forgives() -> None:
    t = FailureThrottle(free=2, base_s=0.1, max_s=0.4, window_s=60)
    assert [t.failed("p", 0.0) for _ in range(2)] == [0.0, 0.0]
    assert [t.failed("p", 1.0) for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    assert t.failed("q", 1.0) == 0.0
    assert t.failed("p", 120.0) == 0.0  # old failures left the window
    t.succeeded("p")
    assert t.failed("p", 121.0) == 0.0


def test_peer_host() -> None:
    assert peer_host("ipv4:127.0.0.1:5555") == "127.0.0.1"
    assert peer_host("ipv6:[::1]:5555") == "::1"


def test_token_parsing() -> None:
    enc = base64.b64encode(b"bob:pa:ss").decode()
    assert passwords.parse_authorization(enc) == passwords.Token("bob", "pa:ss")
    key = base64.b64encode(b"spk_abc").decode()
    assert passwords.parse_authorization(key).api_key == "spk_abc"
    with pytest.raises(passwords.BadToken):
        passwords.parse_authorization("not base64!!")


def test_password_hash_roundtrip_and_salt() -> None:
    h1, h2 = passwords.hash_password("secret1"), passwords.hash_password("secret1")
    assert h1 != h2 and h1.startswith("$argon2id$")
    assert passwords.verify_password(h1, "secret1")
    assert not passwords.verify_password(h1, "secret2")
    assert not passwords.verify_password("garbage", "secret1")
