"""A running ``slurm-dispatch run`` says whether it dispatches, and logs every drain change once.

The ``dispatching`` gauge: 1 on the instance that holds the locks and polls, 0 on a standby waiting for the
PostgreSQL dispatch lock (whose other gauges are all 0 too, so without it a standby looks like a dispatcher with
nothing to do). Drain changes: ``slurm-dispatch drain``/``resume`` write the state file from another process; the
service reads it every tick and logs one INFO line per change, not one per tick. The real service runs as a child
process against the emulated API, with fake Slurm commands (no real Slurm needed).
"""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from plugins.service_process import (
    ServiceFactory,
    ServiceProcess,
    cluster_config,
    fake_slurm_commands,
    free_port,
)
from plugins.waiting import wait_until

from slurm_dispatch.dispatch.admission import Drain
from slurm_dispatch.model import format_timestamp
from slurm_dispatch.service.locks import CHECK_INTERVAL_S
from slurm_dispatch.service.state import StateStore

GAUGE = "arvados_dispatchslurm_dispatching"
NO_CLUSTER_LOCK = "WARNING slurm_dispatch.service: PostgreSQL.Connection is empty: no cluster-wide dispatch lock (10005)"


def gauge(svc: ServiceProcess) -> float | None:
    """The ``dispatching`` gauge of one scrape (None while the endpoint does not answer)."""
    if not svc.answers("/metrics"):
        return None
    found = re.findall(rf"^{GAUGE} (\S+)$", svc.request("GET", "/metrics").text, re.MULTILINE)
    assert len(found) == 1, found
    return float(found[0])


def healthy(svc: ServiceProcess) -> None:
    wait_until(lambda: not svc.alive() or (svc.answers() and svc.request("GET", "/_health/ping").json()
                                           == {"health": "OK"}),
               timeout=60, what=f"the service to be healthy (log: {svc.log})")
    assert svc.alive(), svc.logs()


def more_polls(emulator_control: Any, count: int = 3) -> None:
    """Wait until the service has sent ``count`` more requests to the API (a few more ticks)."""
    before = sum(emulator_control.stats().values())
    wait_until(lambda: sum(emulator_control.stats().values()) >= before + count, timeout=30,
               what="more polls of the API")


def test_drain_changes_from_another_process_are_logged_once_each(
    service_process: ServiceFactory, emulator_control: Any, tmp_path: Path,
) -> None:
    svc = service_process(slurm_env=fake_slurm_commands(tmp_path / "bin"))
    healthy(svc)
    assert gauge(svc) == 1.0
    # no PostgreSQL.Connection: Go would wait for its database, this service dispatches with no cluster lock (said
    # right after the health endpoint starts, so it may answer before the line is written)
    wait_until(lambda: NO_CLUSTER_LOCK in svc.logs(), timeout=10, what="the no-cluster-lock warning")

    since = format_timestamp(datetime.now(UTC))
    drained = (f"INFO slurm_dispatch.service.state: drained by alice@head since {since}: kernel upgrade; no new "
               "container is locked until `slurm-dispatch resume`")
    StateStore(svc.state_dir).set_drain(Drain(reason="kernel upgrade", since=since), by="alice@head")
    wait_until(lambda: drained in svc.logs(), timeout=10, what="the drained line")
    more_polls(emulator_control)
    assert svc.logs().count(drained) == 1, svc.logs()

    resumed = (f"INFO slurm_dispatch.service.state: resumed (was drained since {since}: kernel upgrade): locking "
               "new containers again")
    StateStore(svc.state_dir).set_drain(None)
    wait_until(lambda: resumed in svc.logs(), timeout=10, what="the resumed line")
    more_polls(emulator_control)
    assert svc.logs().count(resumed) == 1, svc.logs()

    # a reason on two lines would forge log lines: refused, and nothing changes
    bad = svc.request("POST", "/arvados/v1/dispatch/drain", data={"reason": "api\ndrain"})
    assert (bad.status_code, "control character" in bad.text) == (400, True), bad.text
    # a drain through the management API: its handler's line, and no second one from the watch
    assert svc.request("POST", "/arvados/v1/dispatch/drain", data={"reason": "api drain"}).status_code == 200
    more_polls(emulator_control)
    logs = svc.logs()
    assert logs.count("drained through the management API: api drain") == 1, logs
    assert "drained by the management API" not in logs, logs

    code, _ = svc.stop(signal.SIGTERM, within=15)
    assert code == 0, svc.logs()
    assert logs.count(NO_CLUSTER_LOCK) == 1, "said once, at the start"


@pytest.mark.postgres
def test_only_the_instance_holding_the_lock_says_it_dispatches(
    service_process: ServiceFactory, emulator: Any, postgres_server: Any, tmp_path: Path,
) -> None:
    env = fake_slurm_commands(tmp_path / "bin")
    ports = {name: free_port() for name in ("first", "second")}
    configs = {name: cluster_config(emulator=emulator, port=port, out_dir=tmp_path,
                                    PostgreSQL={"Connection": postgres_server.connection})
               for name, port in ports.items()}
    first = service_process(slurm_env=env, name="first", port=ports["first"], cluster=configs["first"])
    healthy(first)
    second = service_process(slurm_env=env, name="second", port=ports["second"], cluster=configs["second"])
    wait_until(lambda: not second.alive() or second.answers("/metrics"), timeout=30,
               what="the standby's metrics endpoint")
    # a standby is healthy, as Go's (the aggregator would count an ERROR against the cluster): the gauge tells
    assert second.request("GET", "/_health/ping").json() == {"health": "OK"}, second.logs()
    assert (gauge(first), gauge(second)) == (1.0, 0.0)

    code, _ = first.stop(signal.SIGTERM, within=15)
    assert code == 0, first.logs()
    wait_until(lambda: gauge(second) == 1.0, timeout=30, what=f"the standby to take over (log: {second.log})")
    code, _ = second.stop(signal.SIGTERM, within=15)
    assert code == 0, second.logs()
    assert NO_CLUSTER_LOCK not in first.logs() + second.logs()


@pytest.mark.postgres
def test_a_lost_dispatch_lock_stops_the_service_with_one_error(
    service_process: ServiceFactory, emulator: Any, postgres_server: Any, tmp_path: Path,
) -> None:
    """The PostgreSQL session holding lock 10005 ends (a database restart, ``pg_terminate_backend``): the service
    stops dispatching at once and exits 1 for systemd to restart it, saying so in one ERROR line."""
    port = free_port()
    config = cluster_config(emulator=emulator, port=port, out_dir=tmp_path,
                            PostgreSQL={"Connection": postgres_server.connection})
    svc = service_process(slurm_env=fake_slurm_commands(tmp_path / "bin"), port=port, cluster=config)
    healthy(svc)
    wait_until(lambda: gauge(svc) == 1.0, timeout=30, what="the service to dispatch")
    with postgres_server.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = 10005 "
                      "AND granted")
    # the service checks its session every CHECK_INTERVAL_S (30 s)
    wait_until(lambda: not svc.alive(), timeout=CHECK_INTERVAL_S + 30, what="the service to stop")
    code, _ = svc.stop(signal.SIGTERM, within=15)
    assert code == 1, svc.logs()
    lost = [line for line in svc.logs().splitlines() if " ERROR " in f" {line}" and "dispatch lock 10005" in line]
    assert len(lost) == 1, svc.logs()
    assert "stopping dispatch so that no other dispatcher runs beside us" in lost[0]


def test_cluster_variables_in_the_services_own_environment_are_honoured_and_said(
    service_process: ServiceFactory, tmp_path: Path,
) -> None:
    """SLURM_CLUSTERS in the unit's environment sends the jobs to those clusters: the service names them in every
    command, and says at startup that the admin commands, which do not get that environment, cannot see them."""
    env = {**fake_slurm_commands(tmp_path / "bin", squeue='echo "$@" >> "$0.args"'), "SLURM_CLUSTERS": "alpha,beta"}
    svc = service_process(slurm_env=env)
    said = ("WARNING slurm_dispatch.service: SLURM_CLUSTERS set in the service's own environment: the jobs may go "
            "to the Slurm clusters it names, so every Slurm command of the service names clusters alpha,beta")
    wait_until(lambda: said in svc.logs() or not svc.alive(), timeout=30, what="the warning")
    args = tmp_path / "bin" / "squeue.args"
    wait_until(args.exists, timeout=30, what="a squeue")
    assert "--clusters=alpha,beta" in args.read_text(), args.read_text()
    code, _ = svc.stop(signal.SIGTERM, within=15)
    assert code == 0, svc.logs()
    assert svc.logs().count(said) == 1
