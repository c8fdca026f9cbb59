"""When the service calls itself unhealthy (and stops the systemd watchdog pings)."""

from __future__ import annotations

import pytest

from slurm_dispatch.daemon import stale_reason


@pytest.mark.parametrize(
    ("last", "now", "poll", "unhealthy"),
    [
        pytest.param(None, 1000.0, 10.0, False, id="still starting"),
        pytest.param(100.0, 130.0, 10.0, False, id="recent"),
        pytest.param(100.0, 160.0, 10.0, False, id="a minute is the least limit"),
        pytest.param(100.0, 161.0, 10.0, True, id="over a minute at 10 s polls"),
        pytest.param(100.0, 350.0, 100.0, False, id="three polls at 100 s"),
        pytest.param(100.0, 401.0, 100.0, True, id="over three polls at 100 s"),
    ],
)
def test_stale_reason(last: float | None, now: float, poll: float, unhealthy: bool) -> None:
    reason = stale_reason(last, now, poll)
    assert (reason is not None) == unhealthy
    if reason:
        assert reason.startswith("no successful poll of the Arvados API for ")
