"""The history checker on real processes under faults (see devkit/jepsen.py): one short round
in the normal suite, every fault in the long rounds (``--runslow``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devkit.jepsen import run_round
from devkit.nemesis import FAULTS, schedule


def assert_round_ok(out: dict, faults: list[str]) -> None:
    summary = {k: out[k] for k in ("seed", "ops", "outcomes", "check", "verify_clean")}
    assert out["check"]["ok"], json.dumps(summary, indent=1, default=str)
    assert out["verify_clean"], json.dumps(out["verify"], indent=1, default=str)[:4000]
    assert out["outcomes"]["ok"] >= 20, summary  # the workload really ran
    started = [e["what"] for e in out["events"] if e["what"].startswith("end ")]
    assert started == [f"end {f['kind']}" for f in out["faults"]] and len(started) == len(faults)
    c = out["check"]["checked"]
    assert c["gets"] and c["reads_for_duplicates"] and c["final_keys"] >= 100, c


def test_schedule_is_seeded_and_covers_each_fault_once() -> None:
    a = schedule(7, list(FAULTS), 60, nodes=3)
    assert a == schedule(7, list(FAULTS), 60, nodes=3) and a != schedule(8, list(FAULTS), 60, nodes=3)
    assert sorted(f.kind for f in a) == sorted(FAULTS)
    assert all(0 < f.at < 60 and f.hold_s > 0 and 0 <= f.target < 3 for f in a)
    with pytest.raises(ValueError, match="unknown fault"):
        schedule(1, ["meteor"], 10, nodes=3)


def test_short_round_node_crash(tmp_path: Path) -> None:
    faults = ["kill-node"]
    out = run_round(tmp_path / "r", seed=1, faults=faults, duration_s=12, preload=150, clients=2)
    assert_round_ok(out, faults)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_long_round_every_fault(tmp_path: Path, seed: int) -> None:
    faults = list(FAULTS)
    out = run_round(tmp_path / "r", seed=seed, faults=faults, duration_s=90, preload=400, clients=3)
    assert_round_ok(out, faults)
