"""Milvus's privilege model as plain data and pure functions: privilege names, the built-in
privilege groups, grants, and the decision whether a set of roles may make one call.

Mirrors Milvus's proxy (``privilege_interceptor.go``, ``pkg/util/constant.go``,
``paramtable/rbac_param.go``): ``root`` and the ``admin`` role pass everything; every user
also has ``public``; a grant matches a call when its database matches (or is ``*``) and either
it names the call's privilege on the call's object (or ``*``), or it names ``All``, or a
privilege group holding the privilege (collection-level groups also match the collection).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pymilvus.grpc_gen import common_pb2

from shardproxy.auth.rpc_table import ANY, Check

ROOT_USER = "root"
ADMIN_ROLE = "admin"
PUBLIC_ROLE = "public"
BUILTIN_ROLES = (ADMIN_ROLE, PUBLIC_ROLE)
OBJECT_TYPES = ("Global", "Collection", "User")
ALL = "All"

# every privilege Milvus knows, by its API name (ObjectPrivilege enum without "Privilege")
ALL_PRIVILEGES: frozenset[str] = frozenset(
    n[len("Privilege"):] for n in common_pb2.ObjectPrivilege.keys() if not n.startswith("PrivilegeGroup")
)

COLLECTION_READ_ONLY = ("Query", "Search", "IndexDetail", "GetFlushState", "GetLoadState", "GetLoadingProgress",
                        "HasPartition", "ShowPartitions", "DescribeCollection", "DescribeAlias", "GetStatistics",
                        "ListAliases")
COLLECTION_READ_WRITE = COLLECTION_READ_ONLY + ("Load", "Release", "Insert", "Delete", "Upsert", "Import", "Flush",
                                                "Compaction", "LoadBalance", "CreateIndex", "DropIndex",
                                                "CreatePartition", "DropPartition")
COLLECTION_ADMIN = COLLECTION_READ_WRITE + ("CreateAlias", "DropAlias")
DATABASE_READ_ONLY = ("ShowCollections", "DescribeDatabase")
DATABASE_READ_WRITE = DATABASE_READ_ONLY + ("AlterDatabase",)
DATABASE_ADMIN = DATABASE_READ_WRITE + ("CreateCollection", "DropCollection")
CLUSTER_READ_ONLY = ("ListDatabases", "SelectOwnership", "SelectUser", "DescribeResourceGroup", "ListResourceGroups",
                     "ListPrivilegeGroups")
CLUSTER_READ_WRITE = CLUSTER_READ_ONLY + ("FlushAll", "TransferNode", "TransferReplica", "UpdateResourceGroups")
CLUSTER_ADMIN = CLUSTER_READ_WRITE + ("BackupRBAC", "RestoreRBAC", "CreateDatabase", "DropDatabase",
                                      "CreateOwnership", "DropOwnership", "ManageOwnership", "CreateResourceGroup",
                                      "DropResourceGroup", "UpdateUser", "RenameCollection", "CreatePrivilegeGroup",
                                      "DropPrivilegeGroup", "OperatePrivilegeGroup")

BUILTIN_GROUPS: dict[str, frozenset[str]] = {
    "CollectionReadOnly": frozenset(COLLECTION_READ_ONLY),
    "CollectionReadWrite": frozenset(COLLECTION_READ_WRITE),
    "CollectionAdmin": frozenset(COLLECTION_ADMIN),
    "DatabaseReadOnly": frozenset(DATABASE_READ_ONLY),
    "DatabaseReadWrite": frozenset(DATABASE_READ_WRITE),
    "DatabaseAdmin": frozenset(DATABASE_ADMIN),
    "ClusterReadOnly": frozenset(CLUSTER_READ_ONLY),
    "ClusterReadWrite": frozenset(CLUSTER_READ_WRITE),
    "ClusterAdmin": frozenset(CLUSTER_ADMIN),
}
# the v1 names of the first three groups (OperatePrivilege with "ReadOnly" etc.)
LEGACY_GROUPS = {"ReadOnly": "CollectionReadOnly", "ReadWrite": "CollectionReadWrite", "Admin": "CollectionAdmin"}

# what every user has through ``public`` (Milvus's default public-role grants)
PUBLIC_DEFAULT_GRANTS = (("Global", ANY, "DescribeCollection"), ("Collection", ANY, "IndexDetail"))


@dataclass(frozen=True, order=True)
class Grant:
    role: str
    object_type: str
    object_name: str
    db: str
    privilege: str
    grantor: str = ""

    def key(self) -> tuple[str, str, str, str, str]:
        """Identity of a grant (the grantor is not part of it)."""
        return (self.role, self.object_type, self.object_name, self.db, self.privilege)


def privilege_level(privilege: str, custom_groups: Mapping[str, Iterable[str]] = {}) -> str:  # noqa: B006
    """``Cluster`` | ``Database`` | ``Collection``: where OperatePrivilegeV2 files a grant."""
    name = LEGACY_GROUPS.get(privilege, privilege)
    if name.startswith("Cluster") and name in BUILTIN_GROUPS or name in CLUSTER_ADMIN:
        return "Cluster"
    if name.startswith("Database") and name in BUILTIN_GROUPS or name in DATABASE_ADMIN:
        return "Database"
    if name in custom_groups:
        levels = {privilege_level(p) for p in custom_groups[name]}
        return "Cluster" if "Cluster" in levels else ("Database" if "Database" in levels else "Collection")
    return "Collection" if name != ALL and name != ANY else "Cluster"


def v2_grant_target(privilege: str, db: str, collection: str,
                    custom_groups: Mapping[str, Iterable[str]] = {}) -> tuple[str, str, str]:  # noqa: B006
    """(object_type, object_name, db) of an OperatePrivilegeV2 grant, as Milvus files it."""
    level = privilege_level(privilege, custom_groups)
    if level == "Cluster":
        return "Global", ANY, ANY
    if level == "Database":
        return "Global", ANY, db or "default"
    return "Collection", collection or ANY, db or "default"


def is_known_privilege(name: str, custom_groups: Mapping[str, Iterable[str]]) -> bool:
    return name in ALL_PRIVILEGES or name in BUILTIN_GROUPS or name in LEGACY_GROUPS or name in custom_groups \
        or name == ANY


def _names_match(a: str, b: str) -> bool:
    return a == ANY or b == ANY or a == b


def grant_allows(grant: Grant, check: Check, object_name: str,
                 custom_groups: Mapping[str, frozenset[str]]) -> bool:
    """Whether one grant permits ``check.privilege`` on ``object_name``."""
    if grant.db != ANY and grant.db != check.db:
        return False
    priv = LEGACY_GROUPS.get(grant.privilege, grant.privilege)
    if priv in (ALL, ANY):
        return True
    if priv == check.privilege:
        return grant.object_type == check.object_type and (grant.object_name in (ANY, object_name))
    members = BUILTIN_GROUPS.get(priv)
    if members is None:
        members = custom_groups.get(priv)
    if members is None or check.privilege not in members:
        return False
    if priv.startswith("Collection") or priv not in BUILTIN_GROUPS:
        return _names_match(grant.object_name, object_name)
    return True


def decide(user: str, roles: Iterable[str], check: Check, grants: Iterable[Grant],
           custom_groups: Mapping[str, frozenset[str]]) -> bool:
    """Whether ``user`` holding ``roles`` (``public`` is added) may make the call ``check``."""
    role_set = {*roles, PUBLIC_ROLE}
    if user == ROOT_USER or ADMIN_ROLE in role_set:
        return True
    if check.admin:
        return False
    if check.object_type == "User" and check.object_names == (user,):
        return True  # a user may read and change what is their own
    mine = [g for g in grants if g.role in role_set]
    return all(any(grant_allows(g, check, name, custom_groups) for g in mine) for name in check.object_names)


def denial_message(check: Check, user: str) -> str:
    """Milvus's wording: ``PrivilegeInsert: permission deny to alice in the `default` database``."""
    if check.admin:
        return f"{check.method}: permission deny to {user}: the shardproxy admin API needs the admin role"
    return f"Privilege{check.privilege}: permission deny to {user} in the `{check.db}` database"


def is_own_request(method: str, request: object, roles: Iterable[str]) -> bool:
    """SelectGrant on one of the caller's own roles needs no privilege (as on Milvus)."""
    if method != "SelectGrant":
        return False
    role = request.entity.role.name  # type: ignore[attr-defined]
    return bool(role) and role in {*roles, PUBLIC_ROLE}
