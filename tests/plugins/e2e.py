"""End-to-end fixtures: the real dispatcher, the emulated Arvados API and the real Slurm test cluster together.

``RunningDispatcher`` runs a ``DispatchLoop`` on an event loop in a background thread, so a test can drive the
emulator and Slurm from the test's own thread and wait for conditions.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.daemon import DispatchLoop
from slurm_dispatch.model import Container
from slurm_dispatch.settings import DEFAULT_SBATCH_ARGUMENTS, MiB, Settings

POLL_S = 0.5
"""PollInterval in end-to-end tests: short, so conditions come quickly."""


def crunch_run_stub() -> str:
    """The absolute path of the crunch-run stand-in installed with the package."""
    found = Path(sys.executable).with_name("crunch-run-stub")
    if found.exists():
        return str(found)
    which = shutil.which("crunch-run-stub")
    assert which, "crunch-run-stub is not installed (pip install -e .)"
    return which


def wait_until(predicate: Callable[[], Any], *, timeout: float = 60, what: str = "condition", every: float = 0.1) -> Any:
    """Return the first truthy value of ``predicate()``; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last value: {value!r})")
        time.sleep(every)


class RunningDispatcher:
    """A DispatchLoop running in a thread of its own; ``stop()`` shuts it down as SIGTERM would."""

    def __init__(self, settings: Settings, base_env: dict[str, str], **kwargs: Any) -> None:
        self.settings = settings
        self.base_env = base_env
        self.kwargs = kwargs
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dispatch: DispatchLoop | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> RunningDispatcher:
        self._thread = threading.Thread(target=self._main, name="dispatcher", daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "the dispatch loop did not start"
        return self

    def _main(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.dispatch = DispatchLoop(self.settings, base_env=self.base_env, first_squeue_immediately=True, **self.kwargs)
            self._ready.set()
            await self.dispatch.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop()
            self.error = exc
            self._ready.set()

    def stop(self) -> None:
        """Shut the loop down (leaving Slurm jobs running) and wait for its thread; raise what it raised."""
        if self.loop is not None and self.dispatch is not None and self._thread and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.dispatch.shutdown)
        if self._thread is not None:
            self._thread.join(30)
            assert not self._thread.is_alive(), "the dispatch loop did not stop within 30 s"
        if self.error is not None:
            raise self.error


@dataclass
class E2E:
    """What an end-to-end test works with."""

    settings: Settings
    emulator: Any
    control: Any
    slurm: Any
    output_dir: Path
    started: list[RunningDispatcher]
    api: ArvadosClient

    def dispatcher(self, **changes: Any) -> RunningDispatcher:
        """Start a dispatcher with these settings changes; it is stopped after the test."""
        d = RunningDispatcher(replace(self.settings, **changes), self.slurm.env).start()
        self.started.append(d)
        return d

    def container(self, uuid: str) -> Container:
        """The container record as the API shows it now."""
        return self.api.get(uuid)

    def jobs_named(self, name: str, *, states: str = "all") -> list[str]:
        """Slurm job ids named ``name`` (finished ones included while MinJobAge lasts)."""
        out = self.slurm.run(
            ["squeue", "--all", "--noheader", f"--states={states}", "--format=%i %j"], check=True
        ).stdout
        return [line.split()[0] for line in out.splitlines() if line.split()[1:] == [name]]


@pytest.fixture
def e2e(emulator: Any, emulator_control: Any, slurm_clean: Any, tmp_path: Path) -> Iterator[E2E]:
    """The emulator + the real Slurm cluster + settings for a dispatcher between them."""
    out = tmp_path / "slurm-out"
    out.mkdir()
    settings = Settings(
        cluster_id="zzzzz",
        system_root_token=emulator.root_token,
        controller_url=emulator.base_url,
        tls_insecure=True,
        poll_interval=POLL_S,
        batch_size=100,
        reserve_extra_ram=50 * MiB,
        crunch_run_command=crunch_run_stub(),
        sbatch_arguments=(*DEFAULT_SBATCH_ARGUMENTS, f"--output={out}/%%j.out"),
        log_format="text",
    )
    api = ArvadosClient(api_host=emulator.base_url, token=emulator.root_token, insecure=True, retry_deadline=5)
    env = E2E(settings, emulator, emulator_control, slurm_clean, out, [], api)
    try:
        yield env
    finally:
        errors = []
        for d in env.started:
            try:
                d.stop()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        if errors:
            raise errors[0]
