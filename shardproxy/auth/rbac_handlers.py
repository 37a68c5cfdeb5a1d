"""The Milvus RBAC RPCs (credentials, roles, grants, privilege groups) as a mixin class the
data-plane servicer inherits. The interceptor has already authenticated and authorized the
caller; these handlers validate, change the catalog in Redis and answer the way Milvus does
(a ``common.Status`` in the response, Milvus's messages for duplicates and unknown names)."""

from __future__ import annotations

import functools
import logging
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
from shardproxy.errors import MILVUS_CODE_PARAMETER_INVALID, status_ok

log = logging.getLogger(__name__)
_E = common_pb2.ErrorCode
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
_GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
MILVUS_CODE_RBAC = 65535
NO_ROLE = "not found the role, maybe the role isn't existed or internal system error"
NO_USER = "not found the user, maybe the user isn't existed or internal system error"


class RbacError(Exception):
    def __init__(self, message: str, legacy: int, code: int = MILVUS_CODE_RBAC) -> None:
        super().__init__(message)
        self.message, self.legacy, self.code = message, legacy, code


def _status(exc: RbacError) -> common_pb2.Status:
    return common_pb2.Status(error_code=exc.legacy, code=exc.code, reason=exc.message)


def rbac_rpc(response: Any, legacy: int) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Errors become a Milvus status (``response`` None: the RPC returns a bare Status)."""

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            svc, ident = current()
            try:
                return await fn(self, svc, ident or Identity(ROOT_USER, ROOT_USER), request)
            except RbacError as exc:
                status = _status(exc)
            except Exception as exc:  # noqa: BLE001 - every failure is a status; the server keeps serving
                log.exception("%s failed", fn.__name__)
                status = common_pb2.Status(error_code=legacy, code=MILVUS_CODE_RBAC,
                                           reason=f"internal error in shardproxy: {type(exc).__name__}: {exc}")
            if status.error_code == 0:
                status.error_code = legacy
            return status if response is None else response(status=status)

        return wrapper

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
    @rbac_rpc(None, _E.CreateCredentialFailure)
    async def CreateCredential(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.CreateCredentialFailure
        _check_name("username", req.username, legacy)
        password = _b64(req.password, legacy)
        _check_password(password, legacy)
        if req.username in svc.catalog.users or await svc.store.has_user(req.username):
            raise RbacError(f"user already exists:{req.username}", legacy)
        if not await svc.store.create_user(req.username, passwords.hash_password(password)):
            raise RbacError(f"user already exists:{req.username}", legacy)
        await svc.reload()
        return status_ok()

    @rbac_rpc(None, _E.UpdateCredentialFailure)
    async def UpdateCredential(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.UpdateCredentialFailure
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
        await svc.reload()
        return status_ok()

    @rbac_rpc(None, _E.DeleteCredentialFailure)
    async def DeleteCredential(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.DeleteCredentialFailure
        if req.username == ROOT_USER:
            raise _invalid("root user cannot be deleted", legacy)
        _check_name("username", req.username, legacy)
        await svc.store.delete_user(req.username)
        await svc.reload()
        return status_ok()

    @rbac_rpc(milvus_pb2.ListCredUsersResponse, _E.ListCredUsersFailure)
    async def ListCredUsers(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        return milvus_pb2.ListCredUsersResponse(status=status_ok(), usernames=sorted(svc.catalog.users))

    # ------------------------------------------------------------------ roles
    @rbac_rpc(None, _E.CreateRoleFailure)
    async def CreateRole(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.CreateRoleFailure
        name = req.entity.name
        _check_name("role", name, legacy)
        if name in svc.catalog.roles or not await svc.store.create_role(name):
            raise RbacError(f'role [name:"{name}"] already exists', legacy)
        await svc.reload()
        return status_ok()

    @rbac_rpc(None, _E.DropRoleFailure)
    async def DropRole(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.DropRoleFailure
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
        await svc.reload()
        return status_ok()

    @rbac_rpc(None, _E.OperateUserRoleFailure)
    async def OperateUserRole(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.OperateUserRoleFailure
        _check_name("username", req.username, legacy)
        _check_name("role", req.role_name, legacy)
        cat = svc.catalog
        if req.role_name not in cat.roles:
            raise RbacError(NO_ROLE, legacy)
        if req.username not in cat.users:
            raise RbacError(NO_USER, legacy)
        add = req.type == milvus_pb2.OperateUserRoleType.AddUserToRole
        if req.role_name == PUBLIC_ROLE:
            return status_ok()  # every user has public
        await svc.store.set_user_role(req.username, req.role_name, add)
        await svc.reload()
        return status_ok()

    @rbac_rpc(milvus_pb2.SelectRoleResponse, _E.SelectRoleFailure)
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

    @rbac_rpc(milvus_pb2.SelectUserResponse, _E.SelectUserFailure)
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
    @rbac_rpc(None, _E.OperatePrivilegeFailure)
    async def OperatePrivilege(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.OperatePrivilegeFailure
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
        return status_ok()

    @rbac_rpc(None, _E.OperatePrivilegeFailure)
    async def OperatePrivilegeV2(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.OperatePrivilegeFailure
        role, priv = req.role.name, req.grantor.privilege.name
        _check_name("role", role, legacy)
        if not req.collection_name:
            raise _invalid("collection_name must be set (use * for all)", legacy)
        obj, name, db = v2_grant_target(priv, req.db_name or "default", req.collection_name, svc.catalog.groups)
        grant = Grant(role, obj, name, db, priv, ident.user)
        await self._operate(svc, grant, req.type == milvus_pb2.OperatePrivilegeType.Grant, legacy)
        return status_ok()

    async def _operate(self, svc: AuthService, grant: Grant, add: bool, legacy: int) -> None:
        cat = svc.catalog
        if grant.role not in cat.roles:
            raise RbacError(NO_ROLE, legacy)
        if grant.role == ADMIN_ROLE:
            raise _invalid("the role[admin] is a default role, its privileges can't be changed", legacy)
        if not is_known_privilege(grant.privilege, cat.groups):
            raise _invalid(f"not found the privilege name[{grant.privilege}]", legacy)
        await svc.store.set_grant(grant, add)
        await svc.reload()

    @rbac_rpc(milvus_pb2.SelectGrantResponse, _E.SelectGrantFailure)
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
    @rbac_rpc(None, _E.CreatePrivilegeGroupFailure)
    async def CreatePrivilegeGroup(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.CreatePrivilegeGroupFailure
        name = req.group_name
        if not name or not _GROUP_NAME.match(name):
            raise _invalid(f"invalid privilege group name {name!r}", legacy)
        if name in BUILTIN_GROUPS or name in LEGACY_GROUPS or is_known_privilege(name, {}):
            raise _invalid(f"privilege group name [{name}] is defined by built in privileges or privilege "
                           f"groups in system", legacy)
        if name in svc.catalog.groups or not await svc.store.create_group(name):
            raise RbacError(f"privilege group [{name}] already exists", legacy)
        await svc.reload()
        return status_ok()

    @rbac_rpc(None, _E.DropPrivilegeGroupFailure)
    async def DropPrivilegeGroup(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.DropPrivilegeGroupFailure
        name = req.group_name
        if name in BUILTIN_GROUPS:
            raise _invalid(f"privilege group [{name}] is a built-in group, which can't be dropped", legacy)
        users = sorted({g.role for g in svc.catalog.grants if g.privilege == name})
        if users:
            raise RbacError(f"privilege group [{name}] is being used by role [{users[0]}], cannot be dropped",
                            legacy)
        if name in svc.catalog.groups:
            await svc.store.drop_group(name)
            await svc.reload()
        return status_ok()

    @rbac_rpc(milvus_pb2.ListPrivilegeGroupsResponse, _E.ListPrivilegeGroupsFailure)
    async def ListPrivilegeGroups(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        groups = {**BUILTIN_GROUPS, **svc.catalog.groups}
        infos = [milvus_pb2.PrivilegeGroupInfo(group_name=n, privileges=[milvus_pb2.PrivilegeEntity(name=p)
                                                                         for p in sorted(privs)])
                 for n, privs in groups.items()]
        return milvus_pb2.ListPrivilegeGroupsResponse(status=status_ok(), privilege_groups=infos)

    @rbac_rpc(None, _E.OperatePrivilegeGroupFailure)
    async def OperatePrivilegeGroup(self, svc: AuthService, ident: Identity, req: Any) -> Any:  # noqa: N802
        legacy = _E.OperatePrivilegeGroupFailure
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
        await svc.reload()
        return status_ok()


def _b64(value: str, legacy: int) -> str:
    try:
        return passwords.decode_b64_password(value)
    except passwords.BadToken:
        raise _invalid("decode password fail", legacy) from None
