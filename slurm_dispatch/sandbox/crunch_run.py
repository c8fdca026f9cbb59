"""crunch-run-stub: a stand-in for Arvados's crunch-run, for the sandbox and the tests.

It does to the container record what crunch-run does (lib/crunchrun/crunchrun.go:
ContainerRunner.Run), runs nothing, and prints one line on stdout per step so that the Slurm
job's output file shows its progress. It talks to the API with the dispatcher's token
from ``ARVADOS_API_HOST`` / ``ARVADOS_API_TOKEN`` / ``ARVADOS_API_HOST_INSECURE`` (the
host may carry ``http://`` for a plain-HTTP emulator), like crunch-run.

Usage, as in the job script (slurm_dispatch/slurm/sbatch.py: crunch_run_argv)::

    crunch-run-stub [--runtime-engine=docker] [any other -flag or --flag=value] <container uuid>

Flags are accepted and ignored; the last argument is the container uuid.

Steps:

1. ``GET containers/<uuid>``. Unless the state is Locked, print
   ``dispatch error detected: container "<uuid>" has state "<S>"`` on stderr and exit 1,
   changing nothing.
2. ``GET containers/<uuid>/auth`` (the container token; never printed).
3. ``PUT {state: Running, log: <pdh>}`` with ``select=["uuid"]``.
4. "Work" for the duration the record asks for (below).
5. ``PUT {exit_code: N}`` (a separate call, while still Running), then
   ``PUT {state: Complete, exit_code: N, log: <pdh>, output: <pdh>}``.

The environment variable ``GatewayAuthSecret`` is read and removed from the
environment (crunch-run starts its gateway with it); only its presence and length are
printed.

Signals: SIGTERM, SIGINT or SIGQUIT before step 3 puts the container back with
``PUT {state: Queued, exit_code: null}`` (an unlock, so MaxDispatchAttempts applies)
and exits 1; after step 3 it ``PUT {state: Cancelled, log}`` and exits 0.
Any failure before step 3 (for example a refused ``auth``) also puts it back to Queued.

Behaviour is chosen by the container record, so the dispatcher need not know:

``command``
    ``["sleep", "<seconds>"]`` works that long (a fraction such as ``"0.5"`` is
    allowed); any other command works 0 s.
``environment["SANDBOX_CRUNCH_RUN"]``
    ``complete`` (default)
        run, ``exit_code`` 0, Complete.
    ``fail``
        run, ``exit_code`` 1, still Complete, as when the container's command fails.
    ``cancel-self``
        run, then ``PUT {state: Cancelled, runtime_status: {error: ...}}`` as crunch-run
        does on a failure after Running (for example output capture failed).
    ``fail-before-running``
        after step 2, ``PUT {state: Queued, exit_code: null}`` as on a container-create
        error, and exit 1.
    ``hang``
        Running, then never finishes until a signal: then Cancelled.
    ``hang-before-running``
        after step 2, wait (state still Locked) until a signal: then Queued.
    ``exit-silently``
        after step 2, exit 1 without touching the record: the container stays Locked,
        as when crunch-run is killed or its node dies before the container starts.
    ``exit-silently-while-running``
        after step 3, exit 1 without touching the record: the container stays Running.
    ``wait-for``
        Running, then wait until every container named in ``environment["SANDBOX_WAIT_FOR"]``
        (space-separated uuids) is Complete or Cancelled, as a workflow runner waits for its
        children; then Complete.
    ``broken-node``
        after step 2, act as crunch-run on a broken node: run ``--broken-node-hook=<cmd>`` when
        given (no arguments, the stub's environment), then ``PUT {state: Queued}``.
        ``environment["SANDBOX_BROKEN_NODES"]`` (space-separated node names) limits this to those
        nodes: on any other node the stub behaves as ``complete``, so that a container breaks on its
        first node and completes once the dispatcher has sent it elsewhere. The stub's node is
        ``SLURMD_NODENAME``, else the host name up to the first dot. Unset: every node is broken.
    ``ignore-term``
        Running, then ignore SIGTERM and SIGINT for ever (a crunch-run stuck on a dead container
        engine): only SIGKILL ends it, and its job lingers in squeue after scancel.
    An unknown value is reported on stdout and treated as ``complete``.

``environment["SANDBOX_EXIT_AFTER"]`` (seconds, at most 600): after writing Complete, keep running that long
before exiting, as crunch-run does while it tidies up; a stop signal meanwhile ends the wait at once.

Exit status: 0 when the final state was written (Complete or Cancelled), 1 when the
container did not run or the stub failed, 2 on a usage error.
"""

from __future__ import annotations

import enum
import hashlib
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.errors import ArvadosAPIError
from slurm_dispatch.model import CONTAINER_UUID_RE, ContainerState

MODE_KEY = "SANDBOX_CRUNCH_RUN"
"""The ``environment`` key of the container record that selects the stub's behaviour."""
WAIT_FOR_KEY = "SANDBOX_WAIT_FOR"
"""With mode ``wait-for``: the container uuid (or space-separated uuids) the stub waits for, as a workflow
runner waits for its children, before it completes."""
BROKEN_NODES_KEY = "SANDBOX_BROKEN_NODES"
"""With mode ``broken-node``: the nodes (space-separated names) that are broken; elsewhere the stub completes."""
EXIT_AFTER_KEY = "SANDBOX_EXIT_AFTER"
"""Seconds the stub keeps running after it has written Complete (0 when unset)."""
MAX_EXIT_AFTER_S = 600.0
NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
"""A node name the stub accepts in ``SANDBOX_BROKEN_NODES`` (as crunch-run-wrapper accepts one in a Comment)."""
GATEWAY_SECRET_VAR = "GatewayAuthSecret"
"""Set by the dispatcher in the job script (slurm_dispatch/slurm/sbatch.py); read and unset, never printed."""
POLL_S = 0.05
"""How often the "work" loop looks for a signal."""


class Mode(str, enum.Enum):
    """What the stub does with a container; the value of ``environment["SANDBOX_CRUNCH_RUN"]``."""

    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL_SELF = "cancel-self"
    FAIL_BEFORE_RUNNING = "fail-before-running"
    HANG = "hang"
    HANG_BEFORE_RUNNING = "hang-before-running"
    EXIT_SILENTLY = "exit-silently"
    EXIT_SILENTLY_WHILE_RUNNING = "exit-silently-while-running"
    WAIT_FOR = "wait-for"
    BROKEN_NODE = "broken-node"
    IGNORE_TERM = "ignore-term"


@dataclass(frozen=True)
class Behaviour:
    """What to do, derived from the container record: the mode and how long to "work" (seconds)."""

    mode: Mode = Mode.COMPLETE
    duration: float = 0.0
    warning: str = ""
    wait_for: tuple[str, ...] = ()
    """With mode ``wait-for``: the containers to wait for."""
    broken_nodes: tuple[str, ...] | None = None
    """With mode ``broken-node``: the only nodes that are broken (None: every node)."""
    exit_after: float = 0.0
    """Seconds to keep running after writing Complete (``SANDBOX_EXIT_AFTER``)."""


def behaviour_of(record: Mapping[str, Any]) -> Behaviour:
    """Return the behaviour a raw container record asks for (see the module docstring). Pure."""
    warning = ""
    env = record.get("environment")
    raw_mode = env.get(MODE_KEY) if isinstance(env, Mapping) else None
    try:
        mode = Mode(raw_mode) if raw_mode else Mode.COMPLETE
    except ValueError:
        mode = Mode.COMPLETE
        warning = f"unknown {MODE_KEY}={raw_mode!r}, behaving as {Mode.COMPLETE.value!r}"
    duration = 0.0
    command = record.get("command")
    if isinstance(command, list) and len(command) >= 2 and command[0] == "sleep":
        try:
            duration = float(command[1])
        except (TypeError, ValueError):
            warning = warning or f"cannot read a duration in {command!r}, working 0 s"
        if not math.isfinite(duration) or duration < 0:
            duration = 0.0
    if mode in (Mode.HANG, Mode.HANG_BEFORE_RUNNING, Mode.IGNORE_TERM):
        duration = math.inf
    wait_for: tuple[str, ...] = ()
    if mode is Mode.WAIT_FOR:
        raw = env.get(WAIT_FOR_KEY) if isinstance(env, Mapping) else None
        wait_for = tuple(u for u in str(raw or "").split() if CONTAINER_UUID_RE.match(u))
    broken_nodes: tuple[str, ...] | None = None
    raw_nodes = env.get(BROKEN_NODES_KEY) if isinstance(env, Mapping) else None
    if mode is Mode.BROKEN_NODE and raw_nodes is not None:
        names = str(raw_nodes).split()
        broken_nodes = tuple(n for n in names if NODE_NAME_RE.match(n))
        if len(broken_nodes) != len(names):
            warning = warning or f"ignoring what is not a node name in {BROKEN_NODES_KEY}={str(raw_nodes)[:80]!r}"
    exit_after = 0.0
    raw_after = env.get(EXIT_AFTER_KEY) if isinstance(env, Mapping) else None
    if raw_after is not None:
        try:
            exit_after = float(raw_after)
        except (TypeError, ValueError):
            exit_after = math.nan
        if not math.isfinite(exit_after) or not 0 <= exit_after <= MAX_EXIT_AFTER_S:
            warning = warning or f"ignoring {EXIT_AFTER_KEY}={str(raw_after)[:40]!r}: not 0 to {MAX_EXIT_AFTER_S:g} s"
            exit_after = 0.0
    return Behaviour(mode=mode, duration=duration, warning=warning, wait_for=wait_for, broken_nodes=broken_nodes,
                     exit_after=exit_after)


def on_node(behaviour: Behaviour, node: str) -> Behaviour:
    """Return the behaviour on ``node``: ``broken-node`` becomes ``complete`` where the node is not broken. Pure."""
    if behaviour.mode is not Mode.BROKEN_NODE or behaviour.broken_nodes is None or node in behaviour.broken_nodes:
        return behaviour
    listed = " ".join(behaviour.broken_nodes) or "none"
    return replace(behaviour, mode=Mode.COMPLETE,
                   warning=f"node {node or '?'} is not broken ({BROKEN_NODES_KEY}: {listed}); behaving as "
                           f"{Mode.COMPLETE.value!r}")


def node_name(environ: Mapping[str, str]) -> str:
    """Return the name of the node the stub runs on: ``SLURMD_NODENAME``, else the short host name."""
    return environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def uuid_from_argv(argv: Sequence[str]) -> str:
    """Return the container uuid from crunch-run's argv (flags ignored). Pure.

    Raises:
        ValueError: the last argument is not a container uuid.
    """
    positional = [a for a in argv if not a.startswith("-")]
    if not positional or not CONTAINER_UUID_RE.match(positional[-1]):
        raise ValueError("usage: crunch-run-stub [--runtime-engine=X] [flags] <container uuid>")
    return positional[-1]


def fake_pdh(uuid: str, what: str) -> str:
    """Return a portable-data-hash-looking ``<32 hex>+<size>`` for ``what`` of ``uuid``. Pure."""
    manifest = f". {hashlib.md5(f'{uuid} {what}'.encode()).hexdigest()}+0 0:0:{what}.txt\n"
    return f"{hashlib.md5(manifest.encode()).hexdigest()}+{len(manifest)}"


class Stopper:
    """Remembers that SIGTERM/SIGINT/SIGQUIT arrived; ``requested`` is read by the steps."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: record the request (does no I/O, so it is safe at any point)."""
        del frame
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def install(self) -> None:
        """Install ``handle`` for SIGTERM, SIGINT and SIGQUIT (crunch-run's stop signals)."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, self.handle)


class Stub:
    """One run of the stand-in on one container; ``run`` returns the exit status."""

    def __init__(
        self,
        *,
        client: ArvadosClient,
        uuid: str,
        out: TextIO,
        err: TextIO,
        stopper: Stopper,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        broken_node_hook: str = "",
        node: str = "",
    ) -> None:
        self.broken_node_hook = broken_node_hook
        self.node = node
        self.client = client
        self.uuid = uuid
        self.out = out
        self.err = err
        self.stopper = stopper
        self.sleep = sleep
        self.clock = clock
        self.log_pdh = fake_pdh(uuid, "log")

    def say(self, message: str) -> None:
        """Print one progress line on stdout, flushed (the Slurm job's output file)."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        print(f"{stamp} {self.uuid} {message}", file=self.out, flush=True)

    def work(self, seconds: float) -> bool:
        """Wait ``seconds`` (inf: forever) or until a stop signal; return True if stopped. Blocks."""
        deadline = self.clock() + seconds
        while not self.stopper.requested:
            left = deadline - self.clock()
            if left <= 0:
                return False
            self.sleep(min(POLL_S, left))
        return True

    def requeue(self, why: str) -> int:
        """Put the container back to Queued, as crunch-run does on a failure before Running. Blocks."""
        self.say(f"{why}: setting state Queued")
        try:
            answer = self.client.update(
                self.uuid, {"state": "Queued", "exit_code": None}, select=["uuid", "state"]
            )
            self.say(f"state is now {answer.get('state', 'Queued')}")
        except ArvadosAPIError as exc:
            self.say(f"could not set state Queued: {exc}")
        return 1

    def run(self) -> int:
        """Do the steps of the module docstring; return the exit status. Blocks for the work time."""
        try:
            container = self.client.get(self.uuid)
        except ArvadosAPIError as exc:
            print(f"error loading container {self.uuid}: {exc}", file=self.err, flush=True)
            return 1
        if container.state is not ContainerState.LOCKED:
            print(
                f'dispatch error detected: container "{self.uuid}" has state "{container.state.value}"',
                file=self.err,
                flush=True,
            )
            return 1
        behaviour = behaviour_of(container.raw)
        if behaviour.warning:
            self.say(behaviour.warning)
        here = on_node(behaviour, self.node)
        if here is not behaviour:
            self.say(here.warning)
            behaviour = here
        self.say(f"container is Locked; mode {behaviour.mode.value}, work {behaviour.duration:g} s")
        try:
            auth = self.client.container_auth(self.uuid)
        except ArvadosAPIError as exc:
            return self.requeue(f"cannot get the container token: {exc}")
        self.say(f"got the container token {auth.get('uuid', '?')}")
        if self.stopper.requested:
            return self.requeue(f"{self.stopper.signal_name} before Running")
        mode = behaviour.mode
        if mode is Mode.FAIL_BEFORE_RUNNING:
            return self.requeue("simulated failure before Running")
        if mode is Mode.EXIT_SILENTLY:
            self.say("exiting without updating the record (state stays Locked)")
            return 1
        if mode is Mode.HANG_BEFORE_RUNNING:
            self.say("waiting for a signal before Running")
            self.work(behaviour.duration)
            return self.requeue(f"{self.stopper.signal_name} before Running")
        if mode is Mode.BROKEN_NODE:
            return self.broken_node()
        try:
            self.client.update(self.uuid, {"state": "Running", "log": self.log_pdh}, select=["uuid"])
        except ArvadosAPIError as exc:
            return self.requeue(f"cannot set state Running: {exc}")
        self.say("state Running")
        if mode is Mode.IGNORE_TERM:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.say("ignoring SIGTERM and SIGINT from now on")
            while True:
                self.sleep(POLL_S)
        if mode is Mode.EXIT_SILENTLY_WHILE_RUNNING:
            self.say("exiting without updating the record (state stays Running)")
            return 1
        return self.finish(behaviour)

    def broken_node(self) -> int:
        """Act as crunch-run on a broken node: run the hook (or write the lock file's stand-in), then requeue.

        crunch-run runs ``--broken-node-hook`` with no arguments and its own environment
        (lib/crunchrun/crunchrun.go: runBrokenNodeHook), then puts the container back to Queued.
        """
        self.say("Error suggests node is unable to run containers: Cannot connect to the Docker daemon (simulated)")
        if self.broken_node_hook:
            self.say(f'Running broken node hook "{self.broken_node_hook}"')
            try:
                done = subprocess.run([self.broken_node_hook], timeout=60, check=False, capture_output=True,
                                      text=True)
                for line in (done.stdout + done.stderr).splitlines():
                    self.say(f"hook: {line}")
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.say(f"Error running broken node hook: {exc}")
        return self.requeue("broken node")

    def wait_for(self, uuids: Sequence[str]) -> bool:
        """Wait until every container in ``uuids`` is final (a workflow runner waiting for its children), or a
        stop signal; return True if stopped. Blocks, polling the API."""
        self.say(f"waiting for {' '.join(uuids) or 'nothing'} to finish")
        while not self.stopper.requested:
            try:
                states = [self.client.get(u).state.value for u in uuids]
            except ArvadosAPIError as exc:
                self.say(f"cannot read a child: {exc}")
                states = []
            if states and all(s in ("Complete", "Cancelled") for s in states):
                return False
            self.sleep(POLL_S)
        return True

    def finish(self, behaviour: Behaviour) -> int:
        """Work, then write the final state (Complete, or Cancelled); return the exit status. Blocks."""
        try:
            stopped = (self.wait_for(behaviour.wait_for) if behaviour.mode is Mode.WAIT_FOR
                       else self.work(behaviour.duration))
            if stopped:
                self.say(f"{self.stopper.signal_name}: stopping; setting state Cancelled")
                self.client.update(self.uuid, {"state": "Cancelled", "log": self.log_pdh}, select=["uuid"])
                self.say("state Cancelled")
                return 0
            if behaviour.mode is Mode.CANCEL_SELF:
                self.say("simulated failure after Running: setting state Cancelled")
                status = {"error": "sandbox crunch-run: simulated failure (cancel-self)"}
                self.client.update(
                    self.uuid,
                    {"state": "Cancelled", "log": self.log_pdh, "runtime_status": status},
                    select=["uuid"],
                )
                self.say("state Cancelled")
                return 0
            exit_code = 1 if behaviour.mode is Mode.FAIL else 0
            self.say(f"container exited with code {exit_code}")
            self.client.update(self.uuid, {"exit_code": exit_code}, select=["uuid"])
            self.client.update(
                self.uuid,
                {
                    "state": "Complete",
                    "exit_code": exit_code,
                    "log": self.log_pdh,
                    "output": fake_pdh(self.uuid, "output"),
                },
                select=["uuid"],
            )
            self.say("state Complete")
            if behaviour.exit_after:
                self.say(f"tidying up for {behaviour.exit_after:g} s before exiting")
                if self.work(behaviour.exit_after):
                    self.say(f"{self.stopper.signal_name}: stopping")
            return 0
        except ArvadosAPIError as exc:
            self.say(f"cannot record the result: {exc}")
            return 1


def take_gateway_secret(environ: MutableMapping[str, str]) -> str:
    """Return ``GatewayAuthSecret`` and remove it from ``environ`` ("" when unset). Mutates ``environ``."""
    return environ.pop(GATEWAY_SECRET_VAR, "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``crunch-run-stub``; returns the exit status. Blocks until the container is done."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        uuid = uuid_from_argv(args)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    stopper = Stopper()
    stopper.install()
    secret = take_gateway_secret(os.environ)
    try:
        client = ArvadosClient.from_env(os.environ)
    except ValueError as exc:
        print(f"crunch-run-stub: {exc}", file=sys.stderr)
        return 1
    hook = next((a.split("=", 1)[1] for a in args if a.startswith("--broken-node-hook=")), "")
    stub = Stub(client=client, uuid=uuid, out=sys.stdout, err=sys.stderr, stopper=stopper, broken_node_hook=hook,
                node=node_name(os.environ))
    engine = next((a.split("=", 1)[1] for a in args if a.startswith("--runtime-engine=")), "docker")
    stub.say(f"crunch-run-stub starting on {client.api_host}, runtime engine {engine}")
    stub.say(f"GatewayAuthSecret: {'received, ' + str(len(secret)) + ' characters' if secret else 'not set'}")
    try:
        return stub.run()
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
