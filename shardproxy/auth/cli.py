"""``shardproxy auth ...``: API keys (written straight to the catalog in Redis; Milvus has no
RPC for them) and a check of who a token is."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Optional

import redis.asyncio as aioredis
import redis.exceptions
import typer

from shardproxy import devprofile
from shardproxy.auth import passwords
from shardproxy.auth.store import AuthStore

app = typer.Typer(help="Users' API keys (users, roles and grants: pymilvus RBAC calls).", no_args_is_help=True)
RedisOpt = Annotated[Optional[str], typer.Option(
    envvar="SHARDPROXY_REDIS_URL",
    help="Redis holding the catalog; default: the running `dev up`'s, else redis://127.0.0.1:6379/0")]


async def _with_store(redis_url: str, fn):  # type: ignore[no-untyped-def]
    r = aioredis.from_url(redis_url)
    try:
        return await fn(AuthStore(r))
    finally:
        await r.aclose()


def _run(given: str | None, fn):  # type: ignore[no-untyped-def]
    """``fn(store)`` on the catalog in Redis (flag, env, else the running `dev up`'s); a Redis that
    does not answer is an error naming the flag, not a traceback."""
    url = devprofile.redis_url(given)
    try:
        return asyncio.run(_with_store(url, fn))
    except (redis.exceptions.ConnectionError, OSError) as exc:
        typer.echo(f"error: {exc}\n{devprofile.no_redis(url, given)}", err=True)
        raise typer.Exit(2) from None


@app.command("apikey-create")
def apikey_create(
    user: Annotated[str, typer.Option(help="the key acts as this user (with the user's roles)")],
    name: Annotated[str, typer.Option(help="a label to revoke the key by")],
    ttl: Annotated[float, typer.Option(help="seconds until the key expires (0 = never)")] = 0.0,
    redis_url: RedisOpt = None,
) -> None:
    """Create an API key for USER and print it once (only its SHA-256 is stored)."""
    key = passwords.new_api_key()

    async def go(store: AuthStore) -> None:
        if not await store.has_user(user):
            typer.echo(f"error: no user {user}", err=True)
            raise typer.Exit(2)
        await store.add_api_key(passwords.sha256(key), user, time.time() + ttl if ttl > 0 else 0.0, name)

    _run(redis_url, go)
    typer.echo(json.dumps({"user": user, "name": name, "api_key": key, "expires_in_s": ttl or None}))


@app.command("apikey-revoke")
def apikey_revoke(
    user: Annotated[str, typer.Option(help="owner of the key")],
    name: Annotated[str, typer.Option(help="label given at creation")],
    redis_url: RedisOpt = None,
) -> None:
    """Revoke USER's key(s) named NAME; proxies drop them within a second."""
    n = _run(redis_url, lambda s: s.revoke_api_key(name, user))
    typer.echo(f"revoked {n} key(s)")
    if not n:
        raise typer.Exit(1)
