"""The RBAC catalog as plain data: users, roles, grants, privilege groups, API keys.

:class:`Catalog` is an immutable snapshot (what a proxy caches and decides on); the Redis
store (:mod:`shardproxy.auth.store`) loads it and applies changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shardproxy.auth.privileges import ADMIN_ROLE, BUILTIN_ROLES, PUBLIC_ROLE, ROOT_USER, Grant


@dataclass(frozen=True)
class ApiKey:
    user: str
    expires_at: float  # unix seconds; 0 = never
    name: str = ""


@dataclass(frozen=True)
class Catalog:
    users: dict[str, str] = field(default_factory=dict)  # name -> argon2 hash
    roles: frozenset[str] = frozenset(BUILTIN_ROLES)
    user_roles: dict[str, frozenset[str]] = field(default_factory=dict)
    grants: tuple[Grant, ...] = ()
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # custom privilege groups
    api_keys: dict[str, ApiKey] = field(default_factory=dict)  # sha256(key) -> owner
    version: int = 0

    def roles_of(self, user: str) -> frozenset[str]:
        roles = set(self.user_roles.get(user, frozenset()))
        if user == ROOT_USER:
            roles.add(ADMIN_ROLE)
        return frozenset(roles)

    def is_admin(self, user: str) -> bool:
        return user == ROOT_USER or ADMIN_ROLE in self.roles_of(user)

    def users_in(self, role: str) -> list[str]:
        if role == PUBLIC_ROLE:
            return sorted(self.users)
        return sorted(u for u in self.users if role in self.roles_of(u))

    def grants_of(self, role: str) -> list[Grant]:
        return sorted(g for g in self.grants if g.role == role)
