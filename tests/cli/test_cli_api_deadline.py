"""An admin command's API calls give up on a hung API within their deadline (``cli.common.API_DEADLINE_S``).

A retry deadline alone is not enough: the first attempt would wait for the client's read timeout (a minute), or
its whole-attempt deadline (two) for an answer that trickles. The test uses a short deadline so that it stays
fast; the emulator's ``hang`` fault holds the answer far longer than that.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from slurm_dispatch.cli.common import API_DEADLINE_S, api_client, load
from slurm_dispatch.errors import ArvadosUnavailable
from slurm_dispatch.sandbox.api import EmulatorServer
from slurm_dispatch.sandbox.control import SandboxControl

HANG_S = 30.0
"""How long the emulator holds the answer: far past the test's deadline (the call would succeed after it)."""


def test_a_hung_api_fails_a_call_within_the_deadline(
    cli: Any, emulator: EmulatorServer, emulator_control: SandboxControl,
) -> None:
    body = cli.cluster()
    body["Services"]["Controller"]["ExternalURL"] = emulator.base_url
    body["TLS"] = {"Insecure": True}
    cli.write_config(body)
    settings = load(cli.config_path, None, environ={}, skip_legacy=True, dispatch_config=cli.own_path).settings
    uuid = emulator.create_container({"state": "Queued", "priority": 1})["uuid"]
    emulator_control.faults(mode="hang", seconds=HANG_S, path_prefix=f"/arvados/v1/containers/{uuid}")
    client = api_client(settings, deadline_s=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(ArvadosUnavailable):
            client.get(uuid)
    finally:
        client.close()
    assert time.monotonic() - started < 5.0


def test_the_deadline_is_what_the_docs_promise() -> None:
    assert API_DEADLINE_S == 10.0, "docs/admin-commands.md says about 10 s"
