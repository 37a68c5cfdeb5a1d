"""The Milvus RBAC RPCs (credentials, roles, grants, privilege groups) as a mixin class the
data-plane servicer inherits. The interceptor has already authenticated and authorized the
caller; these handlers validate, change the catalog in Redis and answer the way Milvus does
(a ``common.Status`` in the response, Milvus's messages for duplicates and unknown names)."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from shardproxy.auth import passwords
from shardproxy.auth.interceptor import current
from shardproxy.auth.privileges import (
    ADMIN_ROLE, ANY, BUILTIN_GROUPS, BUILTIN_ROLES, LEGACY_GROUPS, OBJECT_TYPES, PUBLIC_ROLE, ROOT_USER, Grant,
    is_known_privilege, v2_grant_target,
)
from shardproxy.auth.service import AuthService, Identity
from shardproxy.errors import MILVUS_CODE_PARAMETER_INVALID, ProxyError, status_ok
from shardproxy.rpc import rpc

_E = common_pb2.ErrorCode
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
MILVUS_CODE_RBAC = 65535
NO_ROLE = "not found the role, maybe the role isn't existed or internal system error"
NO_USER = "not found the user, maybe the user isn't existed or internal system error"


class RbacError(ProxyError):
    """A refused RBAC call: Milvus's message, its legacy error code and its merr code (mapped to a
    status by :func:`shardproxy.errors.to_milvus_status`, like every other failure)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, legacy: int, code: int = MILVUS_CODE_RBAC) -> None:
        super().__init__(message)
        self.legacy_code, self.milvus_code = legacy, code


Change = Callable[[Any, AuthService, Identity, Any, int], Awaitable[None]]
Read = Callable[[Any, AuthService, Identity, Any], Awaitable[Any]]


def _caller() -> tuple[AuthService, Identity]:
    svc, ident = current()
    return svc, ident or Identity(ROOT_USER, ROOT_USER)


def catalog_change(legacy: int) -> Callable[[Change], Callable[..., Awaitable[Any]]]:
    """An RBAC RPC that changes the catalog: the handler validates and writes to Redis (raising
    :class:`RbacError` with ``legacy`` to refuse); then every proxy's view is reloaded and the
    answer is a bare success Status. Errors become statuses in :func:`shardproxy.rpc.rpc`."""

    def deco(fn: Change) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            svc, ident = _caller()
            await fn(self, svc, ident, request, legacy)
            await svc.reload()
            return status_ok()

        return rpc(None)(handler)

    return deco


def catalog_read(response: Callable[..., Any]) -> Callable[[Read], Callable[..., Awaitable[Any]]]:
    """An RBAC RPC that only reads the catalog and answers ``response``."""

    def deco(fn: Read) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            svc, ident = _caller()
            return await fn(self, svc, ident, request)

        return rpc(response)(handler)

    return deco


def _invalid(message: str, legacy: int) -> RbacError:
    return RbacError(message, legacy, MILVUS_CODE_PARAMETER_INVALID)


def _check_name(kind: str, name: str, legacy: int) -> None:
    if not name:
        raise _invalid(f"{kind} name should not be empty", legacy)
    if not _NAME.match(name):
        raise _invalid(f"invalid {kind} name {name}: the first character of a {kind} name must be an underscore "
                       f"or letter, it can only contain numbers, letters and underscores, at most 32 characters",
                       legacy)


def _check_password(password: str, legacy: int) -> None:
    if not 6 <= len(password) <= 256:
        raise _invalid("The length of password must be great than 6 and less than 256 characters.", legacy)


class RbacHandlers:
    """Mixin: ``class MilvusProxyServicer(RbacHandlers, ...)``."""

    # ------------------------------------------------------------------ credentials
    @catalog_change(_E.CreateCredentialFailure)
    async def CreateCredential(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        _check_name("username", req.username, legacy)
        password = _b64(req.password, legacy)
        _check_password(password, legacy)
        if req.username in svc.catalog.users or await svc.store.has_user(req.username):
            raise RbacError(f"user already exists:{req.username}", legacy)
        if not await svc.store.create_user(req.username, passwords.hash_password(password)):
            raise RbacError(f"user already exists:{req.username}", legacy)

    @catalog_change(_E.UpdateCredentialFailure)
    async def UpdateCredential(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        _check_name("username", req.username, legacy)
        new = _b64(req.newPassword, legacy)
        _check_password(new, legacy)
        if req.username not in svc.catalog.users:
            raise RbacError(f"found no credential:{req.username}", legacy)
        if not svc.catalog.is_admin(ident.user) or req.oldPassword:
            old = _b64(req.oldPassword, legacy)
            if not svc.check_password(req.username, old):
                raise RbacError(f"old password not correct for {req.username}", legacy)
        await svc.store.set_password(req.username, passwords.hash_password(new))

    @catalog_change(_E.DeleteCredentialFailure)
    async def DeleteCredential(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        if req.username == ROOT_USER:
            raise _invalid("root user cannot be deleted", legacy)
        _check_name("username", req.username, legacy)
        await svc.store.delete_user(req.username)

    @catalog_read(milvus_pb2.ListCredUsersResponse)
    async def ListCredUsers(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        return milvus_pb2.ListCredUsersResponse(status=status_ok(), usernames=sorted(svc.catalog.users))

    # ------------------------------------------------------------------ roles
    @catalog_change(_E.CreateRoleFailure)
    async def CreateRole(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        name = req.entity.name
        _check_name("role", name, legacy)
        if name in svc.catalog.roles or not await svc.store.create_role(name):
            raise RbacError(f'role [name:"{name}"] already exists', legacy)

    @catalog_change(_E.DropRoleFailure)
    async def DropRole(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        name = req.role_name
        if name in BUILTIN_ROLES:
            raise _invalid(f"the role[{name}] is a default role, which can't be dropped", legacy)
        _check_name("role", name, legacy)
        cat = svc.catalog
        if name not in cat.roles:
            raise RbacError(NO_ROLE, legacy)
        if cat.grants_of(name) and not req.force_drop:
            raise RbacError("fail to drop the role that it has privileges. Use REVOKE API to revoke privileges",
                            legacy)
        await svc.store.drop_role(name, [u for u, roles in cat.user_roles.items() if name in roles])

    @catalog_change(_E.OperateUserRoleFailure)
    async def OperateUserRole(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        _check_name("username", req.username, legacy)
        _check_name("role", req.role_name, legacy)
        cat = svc.catalog
        if req.role_name not in cat.roles:
            raise RbacError(NO_ROLE, legacy)
        if req.username not in cat.users:
            raise RbacError(NO_USER, legacy)
        add = req.type == milvus_pb2.OperateUserRoleType.AddUserToRole
        if req.role_name == PUBLIC_ROLE:
            return  # every user has public
        await svc.store.set_user_role(req.username, req.role_name, add)

    @catalog_read(milvus_pb2.SelectRoleResponse)
    async def SelectRole(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        cat = svc.catalog
        if req.role.name:
            if req.role.name not in cat.roles:
                return milvus_pb2.SelectRoleResponse(status=status_ok())  # Milvus: empty result
            names = [req.role.name]
        else:
            names = sorted(cat.roles)
        results = [milvus_pb2.RoleResult(
            role=milvus_pb2.RoleEntity(name=n),
            users=[milvus_pb2.UserEntity(name=u) for u in cat.users_in(n)] if req.include_user_info else [])
            for n in names]
        return milvus_pb2.SelectRoleResponse(status=status_ok(), results=results)

    @catalog_read(milvus_pb2.SelectUserResponse)
    async def SelectUser(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        cat = svc.catalog
        if req.user.name:
            if req.user.name not in cat.users:
                raise RbacError(NO_USER, _E.SelectUserFailure)
            names = [req.user.name]
        else:
            names = sorted(cat.users)
        results = [milvus_pb2.UserResult(
            user=milvus_pb2.UserEntity(name=u),
            roles=[milvus_pb2.RoleEntity(name=r) for r in sorted(cat.user_roles.get(u, ()))]
            if req.include_role_info else [])
            for u in names]
        return milvus_pb2.SelectUserResponse(status=status_ok(), results=results)

    # ------------------------------------------------------------------ grants
    @catalog_change(_E.OperatePrivilegeFailure)
    async def OperatePrivilege(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        e = req.entity
        role, obj, priv = e.role.name, e.object.name, e.grantor.privilege.name
        _check_name("role", role, legacy)
        if obj not in OBJECT_TYPES:
            raise _invalid(f"not found the object type[name: {obj}], supported the object types: "
                           f"[{' '.join(OBJECT_TYPES)}]", legacy)
        if not e.object_name:
            raise _invalid("the object name in the grant entity is empty", legacy)
        grant = Grant(role, obj, e.object_name, e.db_name or "default", priv, ident.user)
        await self._operate(svc, grant, req.type == milvus_pb2.OperatePrivilegeType.Grant, legacy)

    @catalog_change(_E.OperatePrivilegeFailure)
    async def OperatePrivilegeV2(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        role, priv = req.role.name, req.grantor.privilege.name
        _check_name("role", role, legacy)
        if not req.collection_name:
            raise _invalid("collection_name must be set (use * for all)", legacy)
        obj, name, db = v2_grant_target(priv, req.db_name or "default", req.collection_name, svc.catalog.groups)
        grant = Grant(role, obj, name, db, priv, ident.user)
        await self._operate(svc, grant, req.type == milvus_pb2.OperatePrivilegeType.Grant, legacy)

    async def _operate(self, svc: AuthService, grant: Grant, add: bool, legacy: int) -> None:
        cat = svc.catalog
        if grant.role not in cat.roles:
            raise RbacError(NO_ROLE, legacy)
        if grant.role == ADMIN_ROLE:
            raise _invalid("the role[admin] is a default role, its privileges can't be changed", legacy)
        if not is_known_privilege(grant.privilege, cat.groups):
            raise _invalid(f"not found the privilege name[{grant.privilege}]", legacy)
        await svc.store.set_grant(grant, add)

    @catalog_read(milvus_pb2.SelectGrantResponse)
    async def SelectGrant(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        e = req.entity
        cat = svc.catalog
        if not e.role.name:
            raise _invalid("the role entity in the grant entity is invalid", _E.SelectGrantFailure)
        if e.role.name not in cat.roles:
            raise RbacError(NO_ROLE, _E.SelectGrantFailure)
        out = []
        for g in cat.grants_of(e.role.name):
            if e.object.name and g.object_type != e.object.name:
                continue
            if e.object_name and g.object_name != e.object_name:
                continue
            if e.db_name and g.db not in (e.db_name, ANY):
                continue
            out.append(milvus_pb2.GrantEntity(
                role=milvus_pb2.RoleEntity(name=g.role), object=milvus_pb2.ObjectEntity(name=g.object_type),
                object_name=g.object_name, db_name=g.db,
                grantor=milvus_pb2.GrantorEntity(user=milvus_pb2.UserEntity(name=g.grantor),
                                                 privilege=milvus_pb2.PrivilegeEntity(name=g.privilege))))
        return milvus_pb2.SelectGrantResponse(status=status_ok(), entities=out)

    # ------------------------------------------------------------------ privilege groups
    @catalog_change(_E.CreatePrivilegeGroupFailure)
    async def CreatePrivilegeGroup(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        name = req.group_name
        if not name or not _GROUP_NAME.match(name):
            raise _invalid(f"invalid privilege group name {name!r}", legacy)
        if name in BUILTIN_GROUPS or name in LEGACY_GROUPS or is_known_privilege(name, {}):
            raise _invalid(f"privilege group name [{name}] is defined by built in privileges or privilege "
                           f"groups in system", legacy)
        if name in svc.catalog.groups or not await svc.store.create_group(name):
            raise RbacError(f"privilege group [{name}] already exists", legacy)

    @catalog_change(_E.DropPrivilegeGroupFailure)
    async def DropPrivilegeGroup(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        name = req.group_name
        if name in BUILTIN_GROUPS:
            raise _invalid(f"privilege group [{name}] is a built-in group, which can't be dropped", legacy)
        users = sorted({g.role for g in svc.catalog.grants if g.privilege == name})
        if users:
            raise RbacError(f"privilege group [{name}] is being used by role [{users[0]}], cannot be dropped",
                            legacy)
        if name in svc.catalog.groups:
            await svc.store.drop_group(name)

    @catalog_read(milvus_pb2.ListPrivilegeGroupsResponse)
    async def ListPrivilegeGroups(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        groups = {**BUILTIN_GROUPS, **svc.catalog.groups}
        infos = [milvus_pb2.PrivilegeGroupInfo(group_name=n, privileges=[milvus_pb2.PrivilegeEntity(name=p)
                                                                         for p in sorted(privs)])
                 for n, privs in groups.items()]
        return milvus_pb2.ListPrivilegeGroupsResponse(status=status_ok(), privilege_groups=infos)

    @catalog_change(_E.OperatePrivilegeGroupFailure)
    async def OperatePrivilegeGroup(self, svc: AuthService, ident: Identity, req: Any, legacy: int) -> None:  # noqa: N802
        name = req.group_name
        if name in BUILTIN_GROUPS:
            raise _invalid(f"privilege group [{name}] is a built-in group, which can't be changed", legacy)
        current_privs = svc.catalog.groups.get(name)
        if current_privs is None:
            raise RbacError(f"there is no privilege group name [{name}] to operate", legacy)
        privs = {p.name for p in req.privileges}
        unknown = sorted(p for p in privs if not is_known_privilege(p, {}) or p in BUILTIN_GROUPS)
        if unknown:
            raise _invalid(f"not found the privilege name[{unknown[0]}]", legacy)
        add = req.type == milvus_pb2.OperatePrivilegeGroupType.AddPrivilegesToGroup
        new = current_privs | privs if add else current_privs - privs
        await svc.store.set_group(name, frozenset(new))


def _b64(value: str, legacy: int) -> str:
    try:
        return passwords.decode_b64_password(value)
    except passwords.BadToken:
        raise _invalid("decode password fail", legacy) from None
