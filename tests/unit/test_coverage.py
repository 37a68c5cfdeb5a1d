"""Coverage and the partial-result policy (no servers)."""

from __future__ import annotations

import pytest

from shardproxy.coverage import COMPLETE, MISSING_KEY, PARTIAL_KEY, Coverage, decide, partial_allowed
from shardproxy.errors import Unavailable


def test_partial_allowed_reads_request_metadata() -> None:
    assert partial_allowed([(PARTIAL_KEY, "allow")])
    assert partial_allowed([("x-other", "1"), (PARTIAL_KEY, "TRUE")])
    assert partial_allowed([(PARTIAL_KEY, "1")])
    assert not partial_allowed([(PARTIAL_KEY, "deny")])
    assert not partial_allowed([("x-other", "allow")])
    assert not partial_allowed(None)
    assert not partial_allowed([])


def test_complete_when_nothing_is_missing() -> None:
    assert decide([], ["n1"], ["n1: gone"], allow_partial=False) is COMPLETE
    assert COMPLETE.trailers() == [] and not COMPLETE.partial


def test_missing_shards_fail_unless_partial_is_allowed() -> None:
    with pytest.raises(Unavailable) as exc:
        decide(["n1", "n2"], {"n2", "n1"}, ["n1: connection refused"], allow_partial=False)
    msg = exc.value.message
    assert "no live replica: n1, n2" in msg and "(down: n1, n2)" in msg
    assert f"'{PARTIAL_KEY}: allow'" in msg and msg.endswith("n1: connection refused")
    cov = decide(["n1"], ["n1"], [], allow_partial=True)
    assert cov.partial and cov.missing == ("n1",)
    assert cov.trailers() == [(PARTIAL_KEY, "true"), (MISSING_KEY, "n1")]


def test_coverage_union() -> None:
    assert (Coverage(("b",)) | Coverage(("a", "b"))).missing == ("a", "b")
    assert not (COMPLETE | COMPLETE).partial
