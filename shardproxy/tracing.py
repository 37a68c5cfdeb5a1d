"""Optional OpenTelemetry tracing of the search fan-out (off by default).

With ``SHARDPROXY_TRACING=true`` (and the ``opentelemetry-sdk`` package installed: ``pip install
'shop-by-image[tracing]'``) every Search gets a ``shardproxy.search.fan_out`` span with one
``shardproxy.node.call`` child per node, tagged with the request id. Spans go to an OTLP/gRPC
collector at ``SHARDPROXY_OTLP_ENDPOINT`` when that is set and ``opentelemetry-exporter-otlp`` is
installed, else to stderr as JSON. When tracing is off, :func:`span` costs one global lookup.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from shardproxy import logs

log = logging.getLogger(__name__)

_tracer: Any = None
_provider: Any = None


def enabled() -> bool:
    return _tracer is not None


def setup(enabled: bool, service_name: str = "shardproxy", instance: str = "", otlp_endpoint: str = "",
          exporter: Any = None) -> bool:
    """Turn tracing on (returns False, with a warning, if the SDK is missing). ``exporter``: any
    OpenTelemetry span exporter, instead of OTLP/stderr."""
    global _tracer, _provider
    if not enabled:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("tracing asked for but opentelemetry-sdk is not installed; tracing stays off")
        return False
    if exporter is None and otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)
        except ImportError:
            log.warning("opentelemetry-exporter-otlp is not installed; spans go to stderr instead of %s",
                        otlp_endpoint)
    if exporter is None:
        exporter = ConsoleSpanExporter(out=sys.stderr)
    attrs = {"service.name": service_name}
    if instance:
        attrs["service.instance.id"] = instance
    _provider = TracerProvider(resource=Resource.create(attrs))
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracer = _provider.get_tracer("shardproxy")
    log.info("tracing on (%s)", "OTLP " + otlp_endpoint if otlp_endpoint else "stderr")
    return True


def shutdown() -> None:
    """Flush and stop (spans still queued are exported)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span named ``name`` (child of the current one), or nothing when tracing is off."""
    if _tracer is None:
        yield None
        return
    rid = logs.current_request_id()
    if rid:
        attributes["request_id"] = rid
    with _tracer.start_as_current_span(name, attributes=attributes) as sp:
        yield sp
