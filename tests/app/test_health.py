"""health.py's readiness rules, on a clock the test turns: starting, polling, round trips, shutting down."""

from __future__ import annotations

import logging

from health import Health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_only_while_polling_with_a_recent_round_trip_and_not_shutting_down():
    clock = Clock()
    health = Health(check_interval_seconds=10, clock=clock)
    assert health.readiness_problem() == "starting: not polling yet"

    health.polling_started()  # the namespace check that preceded polling was a round trip
    assert health.readiness_problem() is None
    clock.now += 30
    assert health.readiness_problem() is None, "three intervals is still recent"

    health.round_trip_failed("tcp connect error")
    clock.now += 1
    assert health.readiness_problem() == (
        "no successful round trip to Temporal for 31s (limit 30s); last error: tcp connect error"
    )
    health.round_trip_succeeded()
    assert health.readiness_problem() is None

    health.shutting_down()
    assert health.readiness_problem().startswith("shutting down")


def test_a_lost_connection_is_logged_once_and_its_return_once(caplog):
    caplog.set_level(logging.INFO, logger="health")
    health = Health(check_interval_seconds=1, clock=Clock())
    health.polling_started()
    for _ in range(3):
        health.round_trip_failed("unavailable")
    for _ in range(3):
        health.round_trip_succeeded()
    messages = [record.getMessage() for record in caplog.records if record.name == "health"]
    assert messages == [
        "No answer from Temporal: unavailable; /readyz fails if none succeeds within 3s of the last",
        "Temporal answers again: /readyz passes",
    ]
