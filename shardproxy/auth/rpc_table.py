"""Which privilege each RPC needs, on which object: a pure table, read by the interceptor.

Milvus declares the privilege of each ``MilvusService`` request in its proto
(``option (common.privilege_ext_obj)``: object type, privilege, the field naming the object).
This table states the same facts as plain data (``tests/unit/test_auth_policy.py`` checks it
against the proto options shipped with pymilvus), plus our own services: every ``ShardAdmin``
call needs the admin role, ``SearchByImage`` needs ``Search`` on its collection.

RPCs absent from the table (Connect, GetVersion, ShowCollections, HasCollection, ...) need an
authenticated caller and nothing more, as on Milvus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shardproxy.resolve import DB_HEADER, effective_db

MILVUS_SERVICE = "milvus.proto.milvus.MilvusService"
ADMIN_SERVICE = "shopbyimage.v1.ShardAdmin"
IMAGE_SEARCH_SERVICE = "shopbyimage.v1.ImageSearch"
# never authenticated: load balancers and grpcurl must reach them without a token
OPEN_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                           "grpc.reflection.v1.ServerReflection"})
ANY = "*"


@dataclass(frozen=True)
class Rule:
    """``object_type`` (Global | Collection | User), the privilege's API name, the request
    field naming the object (None: the object is ``*``), ``many``: that field is a list."""

    object_type: str
    privilege: str
    field: str | None
    many: bool = False


ADMIN_ONLY = Rule("Global", "ClusterAdmin", None)  # marker: the caller needs the admin role

MILVUS_RULES: dict[str, Rule] = {
    "CreateCollection": Rule("Global", "CreateCollection", None),
    "DropCollection": Rule("Global", "DropCollection", None),
    "LoadCollection": Rule("Collection", "Load", 'collection_name'),
    "ReleaseCollection": Rule("Collection", "Release", 'collection_name'),
    "DescribeCollection": Rule("Global", "DescribeCollection", None),
    "BatchDescribeCollection": Rule("Global", "DescribeCollection", None),
    "GetCollectionStatistics": Rule("Collection", "GetStatistics", 'collection_name'),
    "AlterCollection": Rule("Global", "CreateCollection", None),
    "AlterCollectionField": Rule("Global", "CreateCollection", None),
    "AddCollectionFunction": Rule("Global", "CreateCollection", None),
    "AlterCollectionFunction": Rule("Global", "CreateCollection", None),
    "DropCollectionFunction": Rule("Global", "CreateCollection", None),
    "TruncateCollection": Rule("Global", "DropCollection", None),
    "CreatePartition": Rule("Collection", "CreatePartition", 'collection_name'),
    "DropPartition": Rule("Collection", "DropPartition", 'collection_name'),
    "HasPartition": Rule("Collection", "HasPartition", 'collection_name'),
    "LoadPartitions": Rule("Collection", "Load", 'collection_name'),
    "Prewarm": Rule("Collection", "Load", 'collection_name'),
    "ReleasePartitions": Rule("Collection", "Release", 'collection_name'),
    "GetPartitionStatistics": Rule("Collection", "GetStatistics", 'collection_name'),
    "ShowPartitions": Rule("Collection", "ShowPartitions", 'collection_name'),
    "CreateNamespace": Rule("Collection", "CreatePartition", 'collection_name'),
    "DescribeNamespace": Rule("Collection", "ShowPartitions", 'collection_name'),
    "ListNamespaces": Rule("Collection", "ShowPartitions", 'collection_name'),
    "DropNamespace": Rule("Collection", "DropPartition", 'collection_name'),
    "HasNamespace": Rule("Collection", "HasPartition", 'collection_name'),
    "GetNamespaceStats": Rule("Collection", "ShowPartitions", 'collection_name'),
    "GetLoadingProgress": Rule("Collection", "GetLoadState", 'collection_name'),
    "GetLoadState": Rule("Collection", "GetLoadState", 'collection_name'),
    "CreateAlias": Rule("Global", "CreateAlias", None),
    "DropAlias": Rule("Global", "DropAlias", None),
    "AlterAlias": Rule("Global", "CreateAlias", None),
    "DescribeAlias": Rule("Global", "DescribeAlias", None),
    "ListAliases": Rule("Global", "ListAliases", None),
    "CreateIndex": Rule("Collection", "CreateIndex", 'collection_name'),
    "AlterIndex": Rule("Collection", "CreateIndex", 'collection_name'),
    "DescribeIndex": Rule("Collection", "IndexDetail", 'collection_name'),
    "GetIndexStatistics": Rule("Collection", "IndexDetail", 'collection_name'),
    "GetIndexState": Rule("Collection", "IndexDetail", 'collection_name'),
    "GetIndexBuildProgress": Rule("Collection", "IndexDetail", 'collection_name'),
    "DropIndex": Rule("Collection", "DropIndex", 'collection_name'),
    "Insert": Rule("Collection", "Insert", 'collection_name'),
    "Delete": Rule("Collection", "Delete", 'collection_name'),
    "Upsert": Rule("Collection", "Upsert", 'collection_name'),
    "Search": Rule("Collection", "Search", 'collection_name'),
    "HybridSearch": Rule("Collection", "Search", 'collection_name'),
    "Flush": Rule("Collection", "Flush", 'collection_names', many=True),
    "Query": Rule("Collection", "Query", 'collection_name'),
    "FlushAll": Rule("Global", "FlushAll", None),
    "AddCollectionField": Rule("Collection", "AddCollectionField", 'collection_name'),
    "AddCollectionStructField": Rule("Collection", "AddCollectionField", 'collection_name'),
    "GetFlushState": Rule("Collection", "GetFlushState", 'collection_name'),
    "LoadBalance": Rule("Collection", "LoadBalance", 'collectionName'),
    "ManualCompaction": Rule("Collection", "Compaction", 'collection_name'),
    "Import": Rule("Collection", "Import", 'collection_name'),
    "CreateCredential": Rule("Global", "CreateOwnership", None),
    "UpdateCredential": Rule("User", "UpdateUser", 'username'),
    "DeleteCredential": Rule("Global", "DropOwnership", None),
    "ListCredUsers": Rule("Global", "SelectOwnership", None),
    "CreateRole": Rule("Global", "CreateOwnership", None),
    "AlterRole": Rule("Global", "CreateOwnership", None),
    "DropRole": Rule("Global", "DropOwnership", None),
    "OperateUserRole": Rule("Global", "ManageOwnership", None),
    "SelectRole": Rule("Global", "SelectOwnership", None),
    "SelectUser": Rule("User", "SelectUser", 'user'),
    "OperatePrivilege": Rule("Global", "ManageOwnership", None),
    "OperatePrivilegeV2": Rule("Global", "ManageOwnership", None),
    "SelectGrant": Rule("Global", "SelectOwnership", None),
    "CreateResourceGroup": Rule("Global", "CreateResourceGroup", None),
    "DropResourceGroup": Rule("Global", "DropResourceGroup", None),
    "UpdateResourceGroups": Rule("Global", "UpdateResourceGroups", None),
    "TransferNode": Rule("Global", "TransferNode", None),
    "TransferReplica": Rule("Global", "TransferReplica", None),
    "ListResourceGroups": Rule("Global", "ListResourceGroups", None),
    "DescribeResourceGroup": Rule("Global", "DescribeResourceGroup", None),
    "RenameCollection": Rule("Global", "RenameCollection", None),
    "CreateDatabase": Rule("Global", "CreateDatabase", None),
    "DropDatabase": Rule("Global", "DropDatabase", None),
    "AlterDatabase": Rule("Global", "AlterDatabase", None),
    "DescribeDatabase": Rule("Global", "DescribeDatabase", None),
    "BackupRBAC": Rule("Global", "BackupRBAC", None),
    "RestoreRBAC": Rule("Global", "RestoreRBAC", None),
    "CreatePrivilegeGroup": Rule("Global", "CreatePrivilegeGroup", None),
    "DropPrivilegeGroup": Rule("Global", "DropPrivilegeGroup", None),
    "ListPrivilegeGroups": Rule("Global", "ListPrivilegeGroups", None),
    "OperatePrivilegeGroup": Rule("Global", "OperatePrivilegeGroup", None),
    "AddFileResource": Rule("Global", "AddFileResource", None),
    "RemoveFileResource": Rule("Global", "RemoveFileResource", None),
    "ListFileResources": Rule("Global", "ListFileResources", None),
    "AddUserTags": Rule("User", "UpdateUser", 'user_name'),
    "DeleteUserTags": Rule("User", "UpdateUser", 'user_name'),
    "GetUserTags": Rule("User", "SelectUser", 'user_name'),
    "ListUsersWithTag": Rule("User", "SelectUser", None),
    "CreateRowPolicy": Rule("Collection", "CreateOwnership", 'collection_name'),
    "DropRowPolicy": Rule("Collection", "DropOwnership", 'collection_name'),
    "ListRowPolicies": Rule("Collection", "SelectOwnership", 'collection_name'),
    "UpdateReplicateConfiguration": Rule("Global", "UpdateReplicateConfiguration", None),
    "GetReplicateConfiguration": Rule("Global", "GetReplicateConfiguration", None),
    "CreateSnapshot": Rule("Collection", "CreateSnapshot", 'collection_name'),
    "DropSnapshot": Rule("Collection", "DropSnapshot", 'collection_name'),
    "ListSnapshots": Rule("Collection", "ListSnapshots", 'collection_name'),
    "DescribeSnapshot": Rule("Collection", "DescribeSnapshot", 'collection_name'),
    "RestoreSnapshot": Rule("Collection", "RestoreSnapshot", 'collection_name'),
    "RestoreExternalSnapshot": Rule("Global", "RestoreExternalSnapshot", None),
    "ExportSnapshot": Rule("Global", "ExportSnapshot", None),
    "GetExportSnapshotState": Rule("Global", "ExportSnapshot", None),
    "ListRestoreSnapshotJobs": Rule("Collection", "RestoreSnapshot", 'collection_name'),
    "PinSnapshotData": Rule("Global", "PinSnapshotData", None),
    "UnpinSnapshotData": Rule("Global", "UnpinSnapshotData", None),
    "AlterCollectionSchema": Rule("Collection", "AlterCollectionSchema", 'collection_name'),
    "BatchUpdateManifest": Rule("Collection", "Insert", 'collection_name'),
    "RefreshExternalCollection": Rule("Collection", "RefreshExternalCollection", 'collection_name'),
}

OWN_RULES: dict[str, dict[str, Rule]] = {
    IMAGE_SEARCH_SERVICE: {"SearchByImage": Rule("Collection", "Search", "collection")},
}


@dataclass(frozen=True)
class Check:
    """What one call needs: ``privilege`` on each of ``object_names`` (of ``object_type``) in
    database ``db``; ``admin``: only root or the admin role may call it."""

    method: str
    object_type: str
    privilege: str
    object_names: tuple[str, ...]
    db: str
    admin: bool = False


def split_method(full_method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``)."""
    _, service, method = (full_method.split("/") + ["", ""])[:3]
    return service, method


def is_open(full_method: str) -> bool:
    return split_method(full_method)[0] in OPEN_SERVICES


def rule_for(service: str, method: str) -> Rule | None:
    if service == MILVUS_SERVICE:
        return MILVUS_RULES.get(method)
    if service == ADMIN_SERVICE:
        return ADMIN_ONLY
    return OWN_RULES.get(service, {}).get(method)


# their ``db_name`` is the database acted on, not the one the caller works in: as in Milvus, the
# check uses the caller's current database (the ``dbname`` header, else ``default``)
DATABASE_RPCS = frozenset({"CreateDatabase", "DropDatabase", "AlterDatabase", "DescribeDatabase"})


def db_of(request: Any, metadata_db: str, method: str = "") -> str:
    """The database a call addresses, as the handlers resolve it (:func:`shardproxy.resolve.effective_db`):
    the request's ``db_name``, else the ``dbname`` header pymilvus sends, else ``default``."""
    md = [(DB_HEADER, metadata_db)] if metadata_db else []
    return effective_db(None if method in DATABASE_RPCS else request, md)


def required_check(full_method: str, request: Any, metadata_db: str = "") -> Check | None:
    """The privilege check of one call, or None when any authenticated caller may make it."""
    service, method = split_method(full_method)
    rule = rule_for(service, method)
    if rule is None:
        return None
    db = db_of(request, metadata_db, method)
    if rule is ADMIN_ONLY:
        return Check(method, rule.object_type, rule.privilege, (ANY,), db, admin=True)
    if rule.field is None:
        names: tuple[str, ...] = (ANY,)
    elif rule.many:
        names = tuple(getattr(request, rule.field, ())) or (ANY,)
    else:
        names = (getattr(request, rule.field, "") or ANY,)
    return Check(method, rule.object_type, rule.privilege, names, db)
