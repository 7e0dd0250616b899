"""bench.overload's promises decide on the figures alone: each one can fail, and says why."""

from __future__ import annotations

import pytest

from bench.overload import promises

GOOD = {
    "capacity": 400.0, "capacity_left": 380.0, "cores": 2, "calibration_client_cores": 0.05,
    "client_cores": 0.15, "budget": 0.5, "batch_p99": 0.1, "seconds": 60.0, "offered": 48000,
    "unsent": 0, "sent_rate": 800.0, "served_rate": 360.0, "shed_rate": 440.0,
    "statuses": {"200": 21600, "503": 26400}, "errors": {}, "wrong_answers": 0,
    "shed_without_retry_after": 0, "served_service_p50": 0.12, "served_service_p99": 0.45,
    "shed_service_p50": 0.001, "shed_service_p99": 0.06,
}


def broken(**changes) -> list[str]:
    return [p.name for p in promises({**GOOD, **changes}) if not p.met]


def test_a_run_within_every_bound_keeps_every_promise():
    assert broken() == []


@pytest.mark.parametrize(("changes", "name"), [
    ({"errors": {"ConnectionResetError": 1}}, "no errors"),
    ({"statuses": {"200": 21600, "500": 1, "503": 26399}}, "only 200, 429 and 503"),
    ({"wrong_answers": 1}, "no wrong answers"),
    ({"shed_without_retry_after": 3}, "every refusal has Retry-After"),
    ({"statuses": {"200": 21600, "503": 26000}}, "every request answered"),
    ({"sent_rate": 600.0}, "offered >= 1.6x capacity"),
    ({"served_rate": 300.0}, "served >= 0.8x capacity"),  # 0.79x of the capacity left
    ({"shed_service_p99": 0.101}, "shed p99 <= 100 ms"),
    ({"served_service_p99": 0.61}, "served p99 <= budget + one batch"),
])
def test_each_promise_fails_on_its_own_figure(changes, name):
    assert broken(**changes) == [name]


def test_nothing_shed_is_no_broken_promise_but_nothing_served_is():
    assert broken(shed_service_p99=None, shed_service_p50=None) == []
    assert "served p99 <= budget + one batch" in broken(served_service_p99=None, served_service_p50=None)
