"""crunch-run-stub end to end: a real subprocess against the emulator, as a Slurm job would run it.

The stub reads ARVADOS_API_HOST/TOKEN/INSECURE from its environment, like crunch-run
with the dispatcher's exported environment (docs/security.md, "Where the token lives";
what it does to the record: docs/crunch-run-stub.md).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.model import Container, ContainerState
from slurm_dispatch.sandbox.api import EmulatorServer
from slurm_dispatch.sandbox.control import SandboxControl

PDH = r"[0-9a-f]{32}\+\d+"
SECRET = "eae11360d42186e309837cfc0e9871dba2e33f1803d16be32234811ef5187ba2"
DEADLINE_S = 30.0


@dataclass
class StubRun:
    """A running crunch-run-stub: its process and the stdout lines read so far."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _q: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self._q.put(line.rstrip("\n"))
            self._q.put(None)

        threading.Thread(target=read, daemon=True).start()

    def wait_line(self, text: str) -> None:
        """Block until a stdout line contains ``text`` (fails after DEADLINE_S or at EOF)."""
        deadline = time.monotonic() + DEADLINE_S
        while not any(text in line for line in self.lines):
            line = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                pytest.fail(f"stub exited before printing {text!r}; output: {self.lines}")
            self.lines.append(line)

    def finish(self) -> tuple[int, str, str]:
        """Wait for exit; return (status, stdout, stderr)."""
        status = self.proc.wait(timeout=DEADLINE_S)
        while (line := self._q.get(timeout=DEADLINE_S)) is not None:
            self.lines.append(line)
        assert self.proc.stderr is not None
        return status, "\n".join(self.lines), self.proc.stderr.read()


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[ArvadosClient]:
    c = ArvadosClient(api_host=emulator.api_host, token=emulator.root_token, insecure=True)
    yield c
    c.close()


@pytest.fixture
def start_stub(emulator: EmulatorServer) -> Iterator[Callable[..., StubRun]]:
    runs: list[StubRun] = []

    def start(uuid: str, *, argv0: list[str] | None = None, flags: tuple[str, ...] = (),
              env_extra: dict[str, str] | None = None) -> StubRun:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ARVADOS_API_HOST": emulator.api_host,
            "ARVADOS_API_TOKEN": emulator.root_token,
            "ARVADOS_API_HOST_INSECURE": "1",
            "GatewayAuthSecret": SECRET,
            "PYTHONUNBUFFERED": "1",
            **(env_extra or {}),
        }
        cmd = argv0 or [sys.executable, "-m", "slurm_dispatch.sandbox.crunch_run"]
        proc = subprocess.Popen(
            [*cmd, "--runtime-engine=docker", "--some-other-flag", *flags, uuid],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        run = StubRun(proc)
        run.start_reader()
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def locked_container(control: SandboxControl, client: ArvadosClient, **fields: Any) -> str:
    uuid = str(control.create_container(**fields)["uuid"])
    client.lock(uuid)
    return uuid


def mode(name: str) -> dict[str, Any]:
    return {"environment": {"SANDBOX_CRUNCH_RUN": name}}


def wait_state(client: ArvadosClient, uuid: str, state: ContainerState) -> Container:
    deadline = time.monotonic() + DEADLINE_S
    while (ctr := client.get(uuid)).state is not state:
        assert time.monotonic() < deadline, f"{uuid} still {ctr.state.value}, wanted {state.value}"
        time.sleep(0.05)
    return ctr


def test_locked_to_running_to_complete(
    client: ArvadosClient,
    emulator_control: SandboxControl,
    start_stub: Callable[..., StubRun],
) -> None:
    uuid = locked_container(emulator_control, client, command=["sleep", "0.3"])
    emulator_control.reset_stats()
    status, out, err = start_stub(uuid).finish()
    assert status == 0, err
    ctr = client.get(uuid)
    assert (ctr.state, ctr.exit_code) == (ContainerState.COMPLETE, 0)
    assert ctr.raw["log"] and ctr.raw["output"] and ctr.raw["started_at"] and ctr.raw["finished_at"]
    stats = emulator_control.stats()
    assert stats["PUT /arvados/v1/containers/{uuid}"] == 3, "Running, then exit_code alone, then Complete"
    assert stats["GET /arvados/v1/containers/{uuid}/auth"] == 1
    for step in (
        "container is Locked",
        "work 0.3 s",
        "state Running",
        "exited with code 0",
        "state Complete",
    ):
        assert step in out
    assert "GatewayAuthSecret: received, 64 characters" in out
    assert SECRET not in out + err


def test_fail_is_complete_with_exit_code_1(
    client: ArvadosClient, emulator_control: SandboxControl, start_stub: Callable[..., StubRun]
) -> None:
    uuid = locked_container(emulator_control, client, **mode("fail"))
    status, _, err = start_stub(uuid).finish()
    ctr = client.get(uuid)
    assert (status, ctr.state, ctr.exit_code) == (0, ContainerState.COMPLETE, 1), err


def test_refuses_a_queued_container(
    client: ArvadosClient, emulator_control: SandboxControl, start_stub: Callable[..., StubRun]
) -> None:
    uuid = emulator_control.create_container()["uuid"]
    before = client.get(uuid)
    status, _, err = start_stub(uuid).finish()
    assert status == 1
    assert f'dispatch error detected: container "{uuid}" has state "Queued"' in err
    assert client.get(uuid).raw == before.raw, "the record is untouched"


def test_fail_before_running_requeues(
    client: ArvadosClient, emulator_control: SandboxControl, start_stub: Callable[..., StubRun]
) -> None:
    uuid = locked_container(emulator_control, client, **mode("fail-before-running"))
    status, out, _ = start_stub(uuid).finish()
    ctr = client.get(uuid)
    assert (status, ctr.state, ctr.lock_count, ctr.locked_by_uuid) == (1, ContainerState.QUEUED, 1, "")
    assert "setting state Queued" in out


def test_sigterm_while_running_cancels(
    client: ArvadosClient, emulator_control: SandboxControl, start_stub: Callable[..., StubRun]
) -> None:
    uuid = locked_container(emulator_control, client, **mode("hang"))
    run = start_stub(uuid)
    run.wait_line("state Running")
    run.proc.send_signal(signal.SIGTERM)
    status, out, err = run.finish()
    assert status == 0, err
    assert client.get(uuid).state is ContainerState.CANCELLED
    assert "SIGTERM: stopping" in out


def test_sigterm_before_running_requeues(
    client: ArvadosClient, emulator_control: SandboxControl, start_stub: Callable[..., StubRun]
) -> None:
    uuid = locked_container(emulator_control, client, **mode("hang-before-running"))
    run = start_stub(uuid)
    run.wait_line("waiting for a signal before Running")
    assert client.get(uuid).state is ContainerState.LOCKED
    run.proc.send_signal(signal.SIGTERM)
    status, _, _ = run.finish()
    assert (status, client.get(uuid).state) == (1, ContainerState.QUEUED)


def test_cancel_self_sets_runtime_status_error(
    client: ArvadosClient, emulator_control: SandboxControl, start_stub: Callable[..., StubRun]
) -> None:
    uuid = locked_container(emulator_control, client, **mode("cancel-self"))
    status, _, err = start_stub(uuid).finish()
    ctr = client.get(uuid)
    assert (status, ctr.state) == (0, ContainerState.CANCELLED), err
    assert "cancel-self" in ctr.runtime_status["error"]


@pytest.mark.parametrize(
    ("name", "state"),
    [("exit-silently", ContainerState.LOCKED), ("exit-silently-while-running", ContainerState.RUNNING)],
)
def test_exit_silently_leaves_the_record(
    client: ArvadosClient,
    emulator_control: SandboxControl,
    start_stub: Callable[..., StubRun],
    name: str,
    state: ContainerState,
) -> None:
    uuid = locked_container(emulator_control, client, **mode(name))
    status, _, _ = start_stub(uuid).finish()
    assert (status, client.get(uuid).state) == (1, state)


@pytest.mark.parametrize(
    ("node", "broken"), [pytest.param("c1", True, id="on-a-broken-node"), pytest.param("c2", False, id="elsewhere")]
)
def test_broken_node_runs_the_hook_and_requeues_only_on_the_nodes_listed(
    client: ArvadosClient, emulator_control: SandboxControl, start_stub: Callable[..., StubRun], tmp_path: Path,
    node: str, broken: bool,
) -> None:
    hook = tmp_path / "hook"
    hook.write_text(f'#!/bin/sh\necho "hook ran on $SLURMD_NODENAME" > {tmp_path}/ran\necho marked\n')
    hook.chmod(0o755)
    uuid = locked_container(emulator_control, client, environment={"SANDBOX_CRUNCH_RUN": "broken-node",
                                                                   "SANDBOX_BROKEN_NODES": "c1 c3"})
    status, out, err = start_stub(uuid, flags=(f"--broken-node-hook={hook}",),
                                  env_extra={"SLURMD_NODENAME": node}).finish()
    ctr = client.get(uuid)
    if broken:
        assert (status, ctr.state, ctr.locked_by_uuid) == (1, ContainerState.QUEUED, ""), err
        assert (tmp_path / "ran").read_text() == "hook ran on c1\n"
        assert "hook: marked" in out and "broken node: setting state Queued" in out
    else:
        assert (status, ctr.state, ctr.exit_code) == (0, ContainerState.COMPLETE, 0), err
        assert not (tmp_path / "ran").exists(), "no hook where the node is fine"
        assert "node c2 is not broken (SANDBOX_BROKEN_NODES: c1 c3); behaving as 'complete'" in out


def test_console_script(
    client: ArvadosClient, emulator_control: SandboxControl, start_stub: Callable[..., StubRun]
) -> None:
    script = Path(sys.executable).parent / "crunch-run-stub"
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e . creates it)")
    uuid = locked_container(emulator_control, client)
    status, _, err = start_stub(uuid, argv0=[str(script)]).finish()
    assert status == 0, err
    assert wait_state(client, uuid, ContainerState.COMPLETE).exit_code == 0


def test_usage_error_without_uuid() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "slurm_dispatch.sandbox.crunch_run", "--runtime-engine=docker"],
        check=False,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )
    assert proc.returncode == 2 and "usage" in proc.stderr
