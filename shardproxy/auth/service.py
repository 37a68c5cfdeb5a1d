"""The proxy's authentication state: the cached catalog (reloaded on every change notice), the
cache of verified tokens, the failure throttle and the per-user rate limiter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from shardproxy.auth import metrics, passwords
from shardproxy.auth.catalog import Catalog
from shardproxy.auth.limits import FailureThrottle, RateLimiter
from shardproxy.auth.store import AuthStore

log = logging.getLogger(__name__)

INTERNAL_USER = "__shardproxy__"
MSG_MISSING = "missing authorization in header"
MSG_BAD_FORMAT = "invalid token format"
MSG_BAD_PASSWORD = "auth check failure, please check username and password are correct"
MSG_BAD_KEY = "auth check failure, please check api key is correct"
_DUMMY_HASH = passwords.hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Identity:
    user: str
    principal: str  # rate-limit key and audit name: the user, or "apikey:<name>@<user>"
    internal: bool = False


class AuthFailed(Exception):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # metric label: missing | format | password | apikey


class AuthService:
    """One per proxy process."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "shardproxy", *, enabled: bool = True,
                 rate: float = 0.0, burst: float = 0.0, refresh_s: float = 1.0) -> None:
        self.store = AuthStore(redis, prefix)
        self.redis = redis
        self.enabled = enabled
        self.catalog = Catalog()
        self.limiter = RateLimiter(rate, burst or max(rate, 1.0))
        self.throttle = FailureThrottle()
        self.refresh_s = refresh_s
        self.internal_key = secrets.token_urlsafe(32)  # in-process clients (image search); never stored
        self._verified: dict[str, tuple[str, str]] = {}  # sha256(user:password) -> (user, hash it matched)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def internal_token(self) -> str:
        return self.internal_key

    async def start(self, root_password: str | None, reset_root: bool = False) -> None:
        root_hash = passwords.hash_password(root_password) if root_password else None
        if self.enabled and root_hash is None and not await self.store.has_user("root"):
            raise RuntimeError(
                "authentication is on but root has no password: set SHARDPROXY_ROOT_PASSWORD or "
                "SHARDPROXY_ROOT_PASSWORD_FILE (or SHARDPROXY_AUTH_ENABLED=false to run without auth)"
            )
        if await self.store.bootstrap(root_hash, reset_root):
            log.info("auth catalog bootstrapped (root %s)", "reset" if reset_root else "ensured")
        await self.reload()
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._poll())]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def reload(self) -> None:
        self.catalog = await self.store.load()
        metrics.CATALOG_VERSION.set(self.catalog.version)

    async def _listen(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(self.store.channel)
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: the poller keeps trying too
                log.warning("auth change listener: %s", exc)
                await asyncio.sleep(1.0)

    async def _poll(self) -> None:
        """Fallback for lost pub/sub messages: compare the version every ``refresh_s``."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                if await self.store.version() != self.catalog.version:
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("auth catalog refresh: %s", exc)

    # ------------------------------------------------------------------ authentication
    async def authenticate(self, header: str | None) -> Identity:
        if header is None:
            raise AuthFailed(MSG_MISSING, "missing")
        try:
            token = passwords.parse_authorization(header)
        except passwords.BadToken:
            raise AuthFailed(MSG_BAD_FORMAT, "format") from None
        if token.api_key:
            return self._api_key(token.api_key)
        user = token.user
        stored = self.catalog.users.get(user)
        if stored is None:  # same work as a wrong password: the answer time does not tell who exists
            await asyncio.to_thread(passwords.verify_password, _DUMMY_HASH, token.password)
            raise AuthFailed(MSG_BAD_PASSWORD, "password")
        key = passwords.sha256(f"{user}:{token.password}")
        hit = self._verified.get(key)
        if hit is not None and hit == (user, stored):
            return Identity(user, user)
        ok = await asyncio.to_thread(passwords.verify_password, stored, token.password)
        if not ok:
            raise AuthFailed(MSG_BAD_PASSWORD, "password")
        if len(self._verified) > 100_000:
            self._verified.clear()
        self._verified[key] = (user, stored)
        return Identity(user, user)

    def _api_key(self, key: str) -> Identity:
        if secrets.compare_digest(key, self.internal_key):
            return Identity(INTERNAL_USER, INTERNAL_USER, internal=True)
        rec = self.catalog.api_keys.get(passwords.sha256(key))
        if rec is None or (rec.expires_at and rec.expires_at <= time.time()) or rec.user not in self.catalog.users:
            raise AuthFailed(MSG_BAD_KEY, "apikey")
        return Identity(rec.user, f"apikey:{rec.name}@{rec.user}")

    def check_password(self, user: str, password: str) -> bool:
        stored = self.catalog.users.get(user)
        return stored is not None and passwords.verify_password(stored, password)
