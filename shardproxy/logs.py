"""Logging setup: readable lines by default, one JSON object per line when asked.

Every data-plane RPC of the proxy runs with a request id (:data:`REQUEST_ID`, a contextvar): the
caller's ``x-request-id`` metadata if it sent a sane one, else a fresh one. Log records made while
serving it carry ``request_id`` (readable lines show ``[rid]``), the proxy passes it on to every
node call as ``x-request-id`` metadata and returns it to the caller in the trailing metadata.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,64}$")


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def request_id_from(metadata: Iterable[Any] | None) -> str:
    """The caller's ``x-request-id`` if present and sane (≤ 64 safe characters), else a new id."""
    for item in metadata or ():
        key, value = (item.key, item.value) if hasattr(item, "key") else item
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _SANE_ID.match(value):
            return value
    return new_request_id()


def current_request_id() -> str:
    return REQUEST_ID.get()


def request_metadata() -> tuple[tuple[str, str], ...] | None:
    """gRPC metadata that passes the current request id on (None outside a request)."""
    rid = REQUEST_ID.get()
    return ((REQUEST_ID_HEADER, rid),) if rid else None


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or nothing) on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = REQUEST_ID.get()
        record.rid = f" [{record.request_id}]" if record.request_id else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "node", "collection", "event"):
            value = getattr(record, key, None)
            if value not in (None, ""):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


READABLE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s:%(rid)s %(message)s"


def setup(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(READABLE_FORMAT, "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("grpc", "asyncio", "urllib3", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
