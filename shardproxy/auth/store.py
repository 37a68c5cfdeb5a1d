"""The RBAC catalog in Redis, shared by every proxy; changes bump a version and are announced
on a pub/sub channel so each proxy reloads its cached :class:`Catalog` at once.

=================================  ======  ================================================
key                                type    content
=================================  ======  ================================================
``{p}:auth:users``                 hash    user -> argon2id hash of the password
``{p}:auth:roles``                 set     custom role names (admin and public are built in)
``{p}:auth:user_roles:{user}``     set     roles granted to the user
``{p}:auth:grants``                set     JSON ``[role, object_type, object_name, db,
                                           privilege, grantor]``
``{p}:auth:groups``                hash    custom privilege group -> JSON list of privileges
``{p}:auth:apikeys``               hash    sha256(key) -> JSON ``{user, expires_at, name}``
``{p}:auth:version``               string  integer, bumped on every change
``{p}:auth:events``                pubsub  the new version after each change
=================================  ======  ================================================
"""

from __future__ import annotations

import json
import time

import redis.asyncio as aioredis

from shardproxy.auth.catalog import ApiKey, Catalog
from shardproxy.auth.privileges import BUILTIN_ROLES, PUBLIC_DEFAULT_GRANTS, PUBLIC_ROLE, Grant

_GRANT_FIELDS = 6


def _grant_json(g: Grant) -> str:
    return json.dumps([g.role, g.object_type, g.object_name, g.db, g.privilege, g.grantor])


class AuthStore:
    def __init__(self, redis: aioredis.Redis, prefix: str = "shardproxy") -> None:
        self.r = redis
        self.p = f"{prefix}:auth"
        self.channel = f"{self.p}:events"

    # ------------------------------------------------------------------ reading
    async def version(self) -> int:
        return int(await self.r.get(f"{self.p}:version") or 0)

    async def load(self) -> Catalog:
        """One consistent snapshot (read inside MULTI, so no change lands half-way)."""
        async with self.r.pipeline(transaction=True) as pipe:
            pipe.get(f"{self.p}:version")
            pipe.hgetall(f"{self.p}:users")
            pipe.smembers(f"{self.p}:roles")
            pipe.smembers(f"{self.p}:grants")
            pipe.hgetall(f"{self.p}:groups")
            pipe.hgetall(f"{self.p}:apikeys")
            version, users, roles, grants, groups, keys = await pipe.execute()
        users = {_s(k): _s(v) for k, v in users.items()}
        user_roles: dict[str, frozenset[str]] = {}
        if users:
            async with self.r.pipeline(transaction=True) as pipe:
                for u in users:
                    pipe.smembers(f"{self.p}:user_roles:{u}")
                for u, got in zip(users, await pipe.execute()):
                    user_roles[u] = frozenset(_s(x) for x in got)
        parsed = [json.loads(_s(g)) for g in grants]
        return Catalog(
            users=users,
            roles=frozenset({*BUILTIN_ROLES, *(_s(x) for x in roles)}),
            user_roles=user_roles,
            grants=tuple(sorted(Grant(*g[:_GRANT_FIELDS]) for g in parsed)),
            groups={_s(k): frozenset(json.loads(_s(v))) for k, v in groups.items()},
            api_keys={_s(k): ApiKey(**json.loads(_s(v))) for k, v in keys.items()},
            version=int(version or 0),
        )

    # ------------------------------------------------------------------ writing
    async def _changed(self) -> int:
        version = int(await self.r.incr(f"{self.p}:version"))
        await self.r.publish(self.channel, str(version))
        return version

    async def bootstrap(self, root_password_hash: str | None, reset_root: bool = False) -> bool:
        """Create root (when absent, or always with ``reset_root``) and public's default grants.
        Returns whether root was (re)written."""
        wrote = False
        if root_password_hash is not None:
            if reset_root:
                await self.r.hset(f"{self.p}:users", "root", root_password_hash)
                wrote = True
            else:
                wrote = bool(await self.r.hsetnx(f"{self.p}:users", "root", root_password_hash))
        if await self.r.setnx(f"{self.p}:public_seeded", "1"):
            for obj, name, priv in PUBLIC_DEFAULT_GRANTS:
                await self.r.sadd(f"{self.p}:grants", _grant_json(Grant(PUBLIC_ROLE, obj, name, "*", priv, "root")))
            wrote = True
        if wrote:
            await self._changed()
        return wrote

    async def has_user(self, user: str) -> bool:
        return bool(await self.r.hexists(f"{self.p}:users", user))

    async def create_user(self, user: str, password_hash: str) -> bool:
        created = bool(await self.r.hsetnx(f"{self.p}:users", user, password_hash))
        if created:
            await self._changed()
        return created

    async def set_password(self, user: str, password_hash: str) -> None:
        await self.r.hset(f"{self.p}:users", user, password_hash)
        await self._changed()

    async def delete_user(self, user: str) -> bool:
        n = await self.r.hdel(f"{self.p}:users", user)
        await self.r.delete(f"{self.p}:user_roles:{user}")
        keys = await self.r.hgetall(f"{self.p}:apikeys")
        for k, v in keys.items():
            if json.loads(_s(v))["user"] == user:
                await self.r.hdel(f"{self.p}:apikeys", k)
        await self._changed()
        return bool(n)

    async def create_role(self, role: str) -> bool:
        created = bool(await self.r.sadd(f"{self.p}:roles", role))
        if created:
            await self._changed()
        return created

    async def drop_role(self, role: str, users: list[str]) -> None:
        await self.r.srem(f"{self.p}:roles", role)
        for u in users:
            await self.r.srem(f"{self.p}:user_roles:{u}", role)
        for raw in await self.r.smembers(f"{self.p}:grants"):
            if json.loads(_s(raw))[0] == role:
                await self.r.srem(f"{self.p}:grants", raw)
        await self._changed()

    async def set_user_role(self, user: str, role: str, add: bool) -> None:
        key = f"{self.p}:user_roles:{user}"
        await (self.r.sadd(key, role) if add else self.r.srem(key, role))
        await self._changed()

    async def set_grant(self, grant: Grant, add: bool) -> None:
        existing = [raw for raw in await self.r.smembers(f"{self.p}:grants")
                    if Grant(*json.loads(_s(raw))).key() == grant.key()]
        if add and not existing:
            await self.r.sadd(f"{self.p}:grants", _grant_json(grant))
        if not add and existing:
            await self.r.srem(f"{self.p}:grants", *existing)
        await self._changed()

    async def create_group(self, name: str) -> bool:
        created = bool(await self.r.hsetnx(f"{self.p}:groups", name, "[]"))
        if created:
            await self._changed()
        return created

    async def drop_group(self, name: str) -> None:
        await self.r.hdel(f"{self.p}:groups", name)
        await self._changed()

    async def set_group(self, name: str, privileges: frozenset[str]) -> None:
        await self.r.hset(f"{self.p}:groups", name, json.dumps(sorted(privileges)))
        await self._changed()

    async def add_api_key(self, key_sha: str, user: str, expires_at: float, name: str) -> None:
        await self.r.hset(f"{self.p}:apikeys", key_sha,
                          json.dumps({"user": user, "expires_at": expires_at, "name": name}))
        await self._changed()

    async def revoke_api_key(self, name: str, user: str) -> int:
        n = 0
        for k, v in (await self.r.hgetall(f"{self.p}:apikeys")).items():
            rec = json.loads(_s(v))
            if rec["name"] == name and rec["user"] == user:
                n += await self.r.hdel(f"{self.p}:apikeys", k)
        await self._changed()
        return n


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


def now() -> float:
    return time.time()
