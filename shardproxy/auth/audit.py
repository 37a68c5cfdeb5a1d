"""The audit log: one JSON line per DDL, RBAC change and admin operation (who, what, when,
outcome), on the ``shardproxy.audit`` logger. Requests are summarised field by field with
secrets left out: passwords and keys never reach the log."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from shardproxy.auth.rpc_table import ADMIN_SERVICE, MILVUS_SERVICE

log = logging.getLogger("shardproxy.audit")

DDL = frozenset({
    "CreateCollection", "DropCollection", "AlterCollection", "AlterCollectionField", "RenameCollection",
    "TruncateCollection", "CreatePartition", "DropPartition", "CreateIndex", "DropIndex", "AlterIndex",
    "CreateAlias", "DropAlias", "AlterAlias", "CreateDatabase", "DropDatabase", "AlterDatabase",
    "AddCollectionField", "LoadCollection", "ReleaseCollection", "LoadPartitions", "ReleasePartitions",
})
RBAC = frozenset({
    "CreateCredential", "UpdateCredential", "DeleteCredential", "CreateRole", "DropRole", "OperateUserRole",
    "OperatePrivilege", "OperatePrivilegeV2", "CreatePrivilegeGroup", "DropPrivilegeGroup",
    "OperatePrivilegeGroup", "RestoreRBAC",
})
ADMIN_READS = frozenset({"ListNodes", "ClusterStatus", "RebalanceStatus"})
_SECRET_FIELDS = frozenset({"password", "oldPassword", "newPassword", "token", "api_key"})
_TARGET_FIELDS = ("db_name", "collection_name", "partition_name", "index_name", "alias", "field_name",
                  "username", "role_name", "group_name", "node_id", "address", "newName", "collection_names",
                  "force_drop", "type", "privileges", "spare", "weight", "id")


def audited(service: str, method: str) -> bool:
    if service == ADMIN_SERVICE:
        return method not in ADMIN_READS
    return service == MILVUS_SERVICE and (method in DDL or method in RBAC)


def summary(request: Any) -> dict[str, Any]:
    """The object of an audited call, without secrets."""
    out: dict[str, Any] = {}
    for f, value in (request.ListFields() if hasattr(request, "ListFields") else []):
        name = f.name
        if name in _SECRET_FIELDS:
            continue
        if name in _TARGET_FIELDS:
            out[name] = value if isinstance(value, str | bytes | int | float | bool) else [_flatten(v) for v in value]
        elif name in ("entity", "role", "grantor"):  # RBAC messages: role / object / privilege
            out[name] = _flatten(value)
    return out


def _flatten(msg: Any) -> Any:
    if not hasattr(msg, "ListFields"):
        return msg
    return {f.name: _flatten(v) for f, v in msg.ListFields() if f.name not in _SECRET_FIELDS}


def record(user: str, peer: str, method: str, target: dict[str, Any], outcome: str, detail: str = "") -> None:
    entry = {"audit": True, "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
             "user": user, "peer": peer, "rpc": method, "target": target, "outcome": outcome}
    if detail:
        entry["detail"] = detail[:500]
    log.info(json.dumps(entry, default=str, sort_keys=True))


def setup(path: str = "") -> None:
    """Audit lines go to ``path`` (append) or stderr, as bare JSON, not through the app log."""
    if getattr(log, "_configured", False):
        return
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    log._configured = True  # type: ignore[attr-defined]
