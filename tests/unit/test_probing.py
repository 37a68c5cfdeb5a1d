"""The adaptive probe deadline and the starved-round rule (pure)."""

from __future__ import annotations

from shardproxy.probing import ProbeHistory, probe_deadline, round_is_verdict


def test_deadline_stays_at_base_on_an_idle_machine() -> None:
    assert probe_deadline([0.002] * 50, base_s=1.0, max_s=5.0) == 1.0
    assert probe_deadline([], base_s=1.0, max_s=5.0) == 1.0
    assert probe_deadline([3.0, 3.0], base_s=1.0, max_s=5.0) == 1.0  # too few answers to judge


def test_deadline_follows_a_starved_machine_up_to_the_cap() -> None:
    slow = [0.4] * 30 + [0.6] * 10  # every node answers slowly: the machine is busy
    d = probe_deadline(slow, base_s=1.0, max_s=5.0)
    assert 2.0 < d <= 2.5
    assert probe_deadline([3.0] * 40, base_s=1.0, max_s=5.0) == 5.0  # capped: a hang is still found


def test_history_keeps_a_bounded_window() -> None:
    h = ProbeHistory(window=8)
    for i in range(20):
        h.add(i)
    assert list(h.samples) == list(range(12, 20))


def test_a_round_that_overran_its_deadline_is_no_verdict() -> None:
    assert round_is_verdict(1.05, 1.0)  # a hung node: the probe timed out on time
    assert not round_is_verdict(3.5, 1.0)  # the loop delivered the timeouts 2.5 s late
