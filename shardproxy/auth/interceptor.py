"""The grpc.aio server interceptor that authenticates and authorizes every call on every
service of the proxy (Milvus data plane, admin API, image search; health and reflection stay
open), applies the per-user rate limit, and writes the audit log.

Failures answer as Milvus's proxy does: gRPC UNAUTHENTICATED with Milvus's messages,
PERMISSION_DENIED with ``PrivilegeX: permission deny to USER in the `DB` database``, and
RESOURCE_EXHAUSTED (with a ``retry-after-ms`` trailer) when a user is over the rate limit.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from shardproxy.auth import audit, metrics
from shardproxy.auth.privileges import decide, denial_message, is_own_request
from shardproxy.auth.rpc_table import ADMIN_SERVICE, ANY, Check, is_open, required_check, split_method
from shardproxy.auth.limits import peer_host
from shardproxy.auth.service import AuthFailed, AuthService, Identity

log = logging.getLogger(__name__)

CURRENT: contextvars.ContextVar[tuple[AuthService, Identity | None]] = contextvars.ContextVar("shardproxy_auth")
ANONYMOUS = Identity("anonymous", "anonymous")
THROTTLE_TRAILER = "x-shardproxy-auth-delay-ms"  # how long a refused authentication was held back


def current() -> tuple[AuthService, Identity | None]:
    """The auth service and the caller of the call being served (set by the interceptor)."""
    return CURRENT.get()


def _meta(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None


def _outcome(resp: Any) -> tuple[str, str]:
    status = resp if hasattr(resp, "error_code") and hasattr(resp, "reason") else getattr(resp, "status", None)
    if status is None or (getattr(status, "code", 0) == 0 and getattr(status, "error_code", 0) == 0):
        return "ok", ""
    return "error", status.reason


AliasResolver = Callable[[str, str], Awaitable[str]]


async def resolve_aliases(check: Check, resolve: AliasResolver | None) -> Check:
    """A collection named through an alias is checked as the collection the alias points at, so a
    grant on the collection covers calls made through its aliases (as Milvus's privilege
    interceptor resolves aliases); ``*`` and empty names are left alone. A name that cannot be
    resolved (catalog unreachable) is checked as written."""
    if resolve is None or check.object_type != "Collection":
        return check
    names = []
    for name in check.object_names:
        if name in (ANY, ""):
            names.append(name)
            continue
        try:
            names.append(await resolve(check.db, name))
        except Exception:  # noqa: BLE001 - the check then falls back to the name as written
            log.warning("could not resolve %s/%s for a privilege check", check.db, name, exc_info=True)
            names.append(name)
    return dataclasses.replace(check, object_names=tuple(names))


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service: AuthService, resolve_alias: AliasResolver | None = None) -> None:
        self.service = service
        self.resolve_alias = resolve_alias  # set by the server once its catalog cache exists

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or is_open(details.method):
            return handler
        full = details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(full, handler.unary_unary), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(full, handler.unary_stream), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        # client-streaming RPCs carry no single request to check: admin only
        behavior = handler.stream_unary or handler.stream_stream
        wrapped = self._wrap_admin_stream(full, behavior, streaming=handler.stream_stream is not None)
        factory = grpc.stream_unary_rpc_method_handler if handler.stream_unary else grpc.stream_stream_rpc_method_handler
        return factory(wrapped, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)

    async def _admit(self, full: str, request: Any, context: grpc.aio.ServicerContext) -> Identity:
        """Authenticate, rate-limit and authorize; aborts the call on refusal."""
        svc = self.service
        if not svc.enabled:
            return ANONYMOUS
        peer = peer_host(context.peer() or "")
        try:
            ident = await svc.authenticate(_meta(context, "authorization"))
        except AuthFailed as exc:
            metrics.AUTH_FAILURES.labels(reason=exc.reason).inc()
            delay = svc.throttle.failed(peer, time.monotonic())
            if delay:
                context.set_trailing_metadata(((THROTTLE_TRAILER, str(int(delay * 1000))),))
                await asyncio.sleep(delay)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
            raise  # not reached: abort raises
        svc.throttle.succeeded(peer)
        metrics.AUTH_SUCCESSES.inc()
        if ident.internal:
            return ident
        wait = svc.limiter.acquire(ident.principal, time.monotonic())
        if wait > 0:
            metrics.RATE_LIMITED.labels(user=ident.user).inc()
            ms = max(1, int(wait * 1000))
            context.set_trailing_metadata((("retry-after-ms", str(ms)),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"rate limit exceeded for user {ident.user}: retry after {ms} ms")
        check = required_check(full, request, _meta(context, "dbname") or "")
        if check is None:
            return ident
        check = await resolve_aliases(check, self.resolve_alias)
        cat = svc.catalog
        roles = cat.roles_of(ident.user)
        if is_own_request(split_method(full)[1], request, roles) or decide(ident.user, roles, check, cat.grants,
                                                                           cat.groups):
            return ident
        metrics.DENIED.labels(method=check.method, privilege=check.privilege).inc()
        message = denial_message(check, ident.user if not ident.principal.startswith("apikey:") else "apikey user")
        if audit.audited(*split_method(full)):
            audit.record(ident.principal, peer, check.method, audit.summary(request), "denied", message)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
        raise AssertionError("unreachable")

    def _wrap(self, full: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        service, method = split_method(full)
        audited = audit.audited(service, method)

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            ident = await self._admit(full, request, context)
            token = CURRENT.set((self.service, ident))
            try:
                if not audited:
                    return await behavior(request, context)
                try:
                    resp = await behavior(request, context)
                except BaseException as exc:
                    audit.record(ident.principal, peer_host(context.peer() or ""), method, audit.summary(request),
                                 "error", f"{type(exc).__name__}: {exc}")
                    raise
                outcome, detail = _outcome(resp)
                audit.record(ident.principal, peer_host(context.peer() or ""), method, audit.summary(request),
                             outcome, detail)
                return resp
            finally:
                CURRENT.reset(token)

        return wrapper

    def _wrap_stream(self, full: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            ident = await self._admit(full, request, context)
            token = CURRENT.set((self.service, ident))
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                CURRENT.reset(token)

        return wrapper

    def _wrap_admin_stream(self, full: str, behavior: Callable[..., Any], streaming: bool) -> Callable[..., Any]:
        admin_full = f"/{ADMIN_SERVICE}/{split_method(full)[1]}"

        async def unary_reply(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(admin_full, None, context)
            return await behavior(request_iterator, context)

        async def stream_reply(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(admin_full, None, context)
            async for item in behavior(request_iterator, context):
                yield item

        return stream_reply if streaming else unary_reply
