"""When the service calls itself unhealthy (and stops the systemd watchdog pings)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.exposition import generate_latest

from slurm_dispatch.errors import ArvadosConflict, ArvadosUnavailable
from slurm_dispatch.service.metered import MeteredClient
from slurm_dispatch.service.metrics import Metrics
from slurm_dispatch.service.serve import stale_reason


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


class _Inner:
    def lock(self, uuid: str) -> dict[str, str]:
        raise ArvadosConflict(422, "POST", f"/arvados/v1/containers/{uuid}/lock", "cannot lock when Locked")

    def get(self, uuid: str) -> str:
        return uuid


def test_metered_client_counts_failed_calls_by_kind() -> None:
    metrics = Metrics()
    client = MeteredClient(_Inner(), metrics)  # type: ignore[arg-type]
    assert client.get("x") == "x"
    with pytest.raises(ArvadosConflict):
        client.lock("zzzzz-dz642-000000000000001")
    text = generate_latest(metrics.registry).decode()
    assert 'arvados_dispatchslurm_api_errors_total{kind="conflict"} 1.0' in text


@pytest.mark.parametrize(("status", "overload"), [(429, True), (502, True), (503, True), (504, True), (500, False)])
def test_metered_client_counts_too_busy_answers_as_overloads(status: int, overload: bool) -> None:
    metrics = Metrics()

    class Busy:
        def lock(self, uuid: str) -> None:
            raise ArvadosUnavailable(status, "POST", f"/arvados/v1/containers/{uuid}/lock", "busy")

    client = MeteredClient(Busy(), metrics)  # type: ignore[arg-type]
    with pytest.raises(ArvadosUnavailable):
        client.lock("zzzzz-dz642-000000000000001")
    text = generate_latest(metrics.registry).decode()
    assert ("arvados_dispatchslurm_api_overloads_total 1.0" in text) == overload


def test_oldest_pending_gauge_follows_the_squeue_snapshot(fake_slurm: Any) -> None:
    from slurm_dispatch.assemble import DispatchLoop
    from slurm_dispatch.settings import Settings

    metrics = Metrics()
    settings = Settings(system_root_token="t" * 20, controller_url="https://ctrl.example")
    loop = DispatchLoop(settings, base_env={}, client=_Inner(), backend=fake_slurm, metrics=metrics)  # type: ignore[arg-type]
    fake_slurm.submit(args=["--job-name=zzzzz-dz642-pendingjob00001"], script="", env={})
    fake_slurm.submit(args=["--job-name=someone-elses-job"], script="", env={})

    def gauge() -> float:
        text = generate_latest(metrics.registry).decode()
        line = next(x for x in text.splitlines() if x.startswith("arvados_dispatchslurm_oldest_pending_job_age_seconds "))
        return float(line.split()[1])

    async def go() -> None:
        assert await loop.squeue.poll()
        loop._note_pending_jobs()
        assert loop._pending_since.keys() == {"zzzzz-dz642-pendingjob00001"}
        first_seen = loop._pending_since["zzzzz-dz642-pendingjob00001"]
        assert await loop.squeue.poll()
        loop._note_pending_jobs()
        assert loop._pending_since["zzzzz-dz642-pendingjob00001"] == first_seen  # age counts from first sight
        assert gauge() >= 0.0
        fake_slurm.start("zzzzz-dz642-pendingjob00001")
        assert await loop.squeue.poll()
        loop._note_pending_jobs()
        assert loop._pending_since == {}
        assert gauge() == 0.0

    asyncio.run(go())
    loop.runner.close()


def test_status_says_starting_until_a_poll_has_worked(fake_slurm: Any) -> None:
    """Before the first good poll the counts are zeros that mean nothing yet: ``starting`` says so."""
    from slurm_dispatch.assemble import DispatchLoop
    from slurm_dispatch.dispatch.dispatcher import TickReport
    from slurm_dispatch.settings import Settings

    settings = Settings(system_root_token="t" * 20, controller_url="https://ctrl.example")
    loop = DispatchLoop(settings, base_env={}, client=_Inner(), backend=fake_slurm)  # type: ignore[arg-type]

    async def go() -> None:
        assert (await loop.status())["starting"] is True
        loop._after_tick(TickReport(ok=True))
        assert (await loop.status())["starting"] is False

    asyncio.run(go())
