"""The dev profile: where a running ``shardproxy dev up`` left its endpoints (proxy, Redis, metrics,
the page), so ``shardproxy`` and ``embed`` find the dev cluster by default. A command-line flag or an
environment variable always wins; the profile only replaces the built-in defaults.

The file is ``$SHOPBYIMAGE_PROFILE`` or ``$XDG_STATE_HOME/shop-by-image/dev.json``
(``~/.local/state/shop-by-image/dev.json``). ``dev up`` writes it when ready and removes it on exit;
a profile whose ``dev up`` process is gone is ignored. It holds the dev cluster's root credential
(and TLS files), so it is written readable by its owner only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV = "SHOPBYIMAGE_PROFILE"


def path() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "shop-by-image" / "dev.json"


@dataclass
class DevProfile:
    proxy: str  # HOST:PORT (Milvus protocol, admin API, SearchByImage)
    redis_url: str  # cluster metadata, import queue, model store
    pid: int = 0  # the `dev up` process
    data_dir: str = ""
    web: str = ""  # the shopper's page, http://HOST:PORT
    prometheus: str = ""
    metrics: dict[str, str] = field(default_factory=dict)  # process name -> http://HOST:PORT/metrics
    token: str = ""  # root credential of the dev cluster ("root:PASSWORD"); empty with --no-auth
    tls_ca: str = ""  # CA file to verify the proxy with (dev up --tls/--mtls)
    tls_cert: str = ""  # client certificate and key (dev up --mtls)
    tls_key: str = ""

    @property
    def proxy_uri(self) -> str:
        return f"http://{self.proxy}"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read() -> DevProfile | None:
    """The profile of a running ``dev up``; None when there is none (or it is stale or unreadable)."""
    p = path()
    try:
        data = json.loads(p.read_text())
        prof = DevProfile(**{k: v for k, v in data.items() if k in DevProfile.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None
    return prof if _alive(prof.pid) else None


def write(profile: DevProfile) -> Path:
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.touch(mode=0o600)  # holds the dev cluster's root credential: owner only
    tmp.chmod(0o600)
    tmp.write_text(json.dumps(asdict(profile), indent=2))
    tmp.replace(p)
    return p


def remove(pid: int) -> None:
    """Remove the profile if it is still the one process ``pid`` wrote."""
    p = path()
    try:
        if json.loads(p.read_text()).get("pid") == pid:
            p.unlink()
    except (OSError, ValueError):
        pass


def hint() -> str:
    """What to tell a user when no endpoint was configured and no dev cluster runs."""
    return f"no running `shardproxy dev up` recorded its endpoints in {path()}"


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url(given: str | None) -> str:
    """--redis-url / SHARDPROXY_REDIS_URL when given, else the running dev cluster's Redis, else 6379."""
    if given:
        return given
    prof = read()
    return prof.redis_url if prof is not None and prof.redis_url else DEFAULT_REDIS_URL


def no_redis(url: str, given: str | None) -> str:
    """What to tell a user whose Redis does not answer: the flag to set."""
    return (f"no Redis answers at {url}: pass --redis-url redis://HOST:PORT/0 or set SHARDPROXY_REDIS_URL"
            + ("" if given or read() else f" ({hint()})"))
