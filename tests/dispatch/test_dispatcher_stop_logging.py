"""A call cut short by stopping is not an operator problem: logged at INFO, without "check the API ..." advice.

On SIGTERM the service stops the API client, so the call under way fails with ``ArvadosShuttingDown`` (or another
error once the dispatcher's stop is set). Before the first success that was an ERROR ("error getting my token UUID:
...; check the API host and the token"), and during a tick a WARNING ("...; check the API server").
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from dispatch_fakes import FakeArvados, Recorder

from slurm_dispatch.dispatch import Dispatcher
from slurm_dispatch.errors import ArvadosShuttingDown, ArvadosUnavailable, DispatchError

LOGGER = "slurm_dispatch.dispatch"
STOPPED = ArvadosShuttingDown(0, "GET", "/arvados/v1/containers", "the client is stopped: request not sent")
REFUSED = ArvadosUnavailable(0, "GET", "/arvados/v1/containers", "connection refused")


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.mark.parametrize(("error", "stop_first"), [
    pytest.param(STOPPED, False, id="the client was stopped"),
    pytest.param(REFUSED, True, id="another error once stopping"),
])
def test_the_token_uuid_call_cut_short_by_stopping_is_info(
    error: DispatchError, stop_first: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    fake = FakeArvados()
    fake.fail("current_token_uuid", error)

    async def main() -> None:
        d = Dispatcher(fake, Recorder())
        if stop_first:
            d.shutdown()
        try:
            with pytest.raises(type(error)):
                await d.prepare()
        finally:
            await d.aclose()

    asyncio.run(main())
    logged = [(level, text) for level, text in records(caplog) if "token UUID" in text]
    assert logged == [(logging.INFO, f"getting my token UUID was cut short by the shutdown: {error}")]


def test_the_token_uuid_error_still_says_what_to_check(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeArvados()
    fake.fail("current_token_uuid", REFUSED)

    async def main() -> None:
        d = Dispatcher(fake, Recorder())
        try:
            with pytest.raises(ArvadosUnavailable):
                await d.prepare()
        finally:
            await d.aclose()

    asyncio.run(main())
    assert records(caplog) == [
        (logging.ERROR, f"error getting my token UUID: {REFUSED}; check the API host and the token")]


@pytest.mark.parametrize(("error", "stop_first"), [
    pytest.param(STOPPED, False, id="the client was stopped"),
    pytest.param(REFUSED, True, id="another error once stopping"),
])
def test_a_query_cut_short_by_stopping_is_info(
    error: DispatchError, stop_first: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    fake = FakeArvados()

    async def main() -> None:
        d = Dispatcher(fake, Recorder())
        try:
            await d.prepare()
            if stop_first:
                d.shutdown()
            caplog.clear()
            fake.fail("list", error)
            report = await d.tick()
            assert not report.ok
        finally:
            await d.aclose()

    asyncio.run(main())
    logged = [(level, text) for level, text in records(caplog) if "error getting" in text]
    assert len(logged) == 1, records(caplog)
    level, text = logged[0]
    assert level == logging.INFO and text.endswith("; the service is stopping"), logged
    assert "check" not in text


def test_a_query_error_still_says_what_to_check(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeArvados()

    async def main() -> None:
        d = Dispatcher(fake, Recorder())
        try:
            await d.prepare()
            fake.fail("list", REFUSED)
            assert not (await d.tick()).ok
        finally:
            await d.aclose()

    asyncio.run(main())
    warnings = [(level, text) for level, text in records(caplog) if level >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0][1].endswith("; check the API server"), warnings
