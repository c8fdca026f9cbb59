"""Fixtures for the Arvados API emulator: a fresh in-memory HTTPS server per test.

``emulator`` is the running ``EmulatorServer`` (``.base_url``, ``.api_host``,
``.root_token``); ``emulator_control`` is a ``SandboxControl`` bound to it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slurm_dispatch.sandbox.api import EmulatorServer
from slurm_dispatch.sandbox.control import SandboxControl


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """A fresh in-memory HTTPS emulator, cluster ``zzzzz``, stopped after the test."""
    server = EmulatorServer(root_token="systemusertesttoken1234567890aoeuidhtnsqjkxbmwvzpy")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emulator_control(emulator: EmulatorServer) -> Iterator[SandboxControl]:
    """A SandboxControl for the ``emulator`` fixture."""
    control = SandboxControl(emulator.base_url)
    try:
        yield control
    finally:
        control.close()
