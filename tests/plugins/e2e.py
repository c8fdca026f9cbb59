"""End-to-end fixtures: the real dispatcher, the emulated Arvados API and the real Slurm test cluster together.

``RunningDispatcher`` runs a ``DispatchLoop`` on an event loop in a background thread, so a test can drive the
emulator and Slurm from the test's own thread and wait for conditions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.model import Container
from slurm_dispatch.sandbox.background import BackgroundDispatcher, crunch_run_stub_path, sandbox_settings
from slurm_dispatch.settings import Settings

POLL_S = 0.5
"""PollInterval in end-to-end tests: short, so conditions come quickly."""


def crunch_run_stub() -> str:
    """The absolute path of the crunch-run stand-in installed with the package."""
    return crunch_run_stub_path()


RunningDispatcher = BackgroundDispatcher
"""A DispatchLoop in a thread of its own (the demo's runner); ``stop()`` shuts it down as SIGTERM would."""


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

    def dispatcher(self, loop_kwargs: dict[str, Any] | None = None, **changes: Any) -> RunningDispatcher:
        """Start a dispatcher with these settings changes (and ``DispatchLoop`` arguments); it is stopped after
        the test."""
        d = RunningDispatcher(replace(self.settings, **changes), self.slurm.env, **(loop_kwargs or {})).start()
        self.started.append(d)
        return d

    def container(self, uuid: str) -> Container:
        """The container record as the API shows it now."""
        return self.api.get(uuid)

    def logs(self, uuid: str) -> list[str]:
        """The texts of the ``dispatch`` log records written on container ``uuid``, oldest first."""
        return [str(r.get("properties", {}).get("text", "")) for r in self.emulator.api.store.logs()
                if r.get("object_uuid") == uuid and r.get("event_type") == "dispatch"]

    def output(self, job_id: str) -> str:
        """The job's output file (the template writes ``<output_dir>/<job id>.out``), "" before it exists."""
        path = self.output_dir / f"{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else ""

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
    settings = sandbox_settings(
        root_token=emulator.root_token, base_url=emulator.base_url, output_dir=out, poll_interval=POLL_S
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
