"""HTTP contract of the emulator's transport: auth forms, bodies, overrides, TLS, restart, faults, control."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from slurm_dispatch.sandbox.api.server import _is_loopback


@pytest.fixture
def ctr(emulator_control: Any) -> str:
    return str(emulator_control.create_container()["uuid"])


def test_auth_forms(arv: Any, emulator: Any) -> None:
    tok = emulator.root_token
    path = "/arvados/v1/api_client_authorizations/current"
    forms = [
        {"headers": {"Authorization": f"Bearer {tok}"}},
        {"headers": {"Authorization": f"OAuth2 {tok}"}},
        {"headers": {"Authorization": "Basic " + base64.b64encode(f"x:{tok}".encode()).decode()}},
        {"params": {"api_token": tok}},
        {"headers": {"Authorization": f"Bearer v2/zzzzz-gj3su-000000000000000/{tok}"}},
        {"headers": {"Authorization": f"Bearer v2/zzzzz-gj3su-000000000000000/{tok}/zzzzz-dz642-xxxxxxxxxxxxxxx"}},
    ]
    for form in forms:
        resp = arv.get(path, token="", **form)
        assert resp.status_code == 200, form
        assert resp.json()["uuid"] == "zzzzz-gj3su-000000000000000"
    for scheme in ("bearer", "BEARER", "oauth2", "Token"):  # Go's auth.go and Rails's middleware spell them exactly
        resp = arv.get(path, token="", headers={"Authorization": f"{scheme} {tok}"})
        assert resp.status_code == 401, scheme


def test_form_and_json_bodies_and_overrides(arv: Any, ctr: str) -> None:
    path = f"/arvados/v1/containers/{ctr}"
    assert arv.put(path, data={"container": json.dumps({"priority": 2})}).json()["priority"] == 2
    assert arv.put(path, json={"container": {"priority": 3}}).json()["priority"] == 3
    assert arv.put(path, json={"priority": 4}).json()["priority"] == 4  # resource key missing
    assert arv.request("PATCH", path, json={"container": {"priority": 5}}).json()["priority"] == 5
    assert arv.post(path, data={"_method": "PUT", "container": '{"priority":6}'}).json()["priority"] == 6
    resp = arv.post(path, json={"container": {"priority": 7}}, headers={"X-Http-Method-Override": "PATCH"})
    assert resp.json()["priority"] == 7
    sel = arv.put(path, data={"container": '{"priority":8}', "select": '["uuid"]'}).json()
    assert set(sel) == {"kind", "etag", "uuid"}


def test_controller_serialisation(arv: Any, emulator_control: Any) -> None:
    made = emulator_control.create_container(runtime_constraints={"ram": 1 << 30, "vcpus": 2})
    got = arv.container(made["uuid"])
    assert got == made
    assert got["locked_by_uuid"] == "" and got["auth_uuid"] == "" and got["log"] == "" and got["output"] == ""
    assert got["exit_code"] == 0 and got["started_at"] is None and got["runtime_token"] == ""
    assert got["scheduling_parameters"]["partitions"] is None
    assert got["runtime_constraints"]["keep_cache_disk"] == 2 << 30
    assert got["runtime_constraints"]["gpu"] == {"stack": "", "driver_version": "", "hardware_target": None,
                                                 "device_count": 0, "vram": 0}
    assert len(got["created_at"]) == len("2006-01-02T15:04:05.000000000Z") and got["created_at"].endswith("000Z")
    assert "owner_uuid" not in got and "secret_mounts" not in got


def test_plain_http_option(make_emulator: Any) -> None:
    emu, arv = make_emulator(tls=False)
    assert emu.base_url.startswith("http://") and emu.api_host == f"127.0.0.1:{emu.port}"
    assert arv.get("/arvados/v1/containers").status_code == 200


def test_restart_with_sqlite_file_loses_nothing(make_emulator: Any, tmp_path: Path) -> None:
    db = str(tmp_path / "state.sqlite")
    emu, arv = make_emulator(db_path=db, root_token="tok-one")
    uuid = emu.create_container({"priority": 9})["uuid"]
    locked = arv.lock(uuid).json()
    arv.post("/arvados/v1/logs", data={"log": json.dumps({"object_uuid": uuid, "event_type": "dispatch",
                                                          "properties": {"text": "hello"}})})
    emu.stop()
    emu2, arv2 = make_emulator(db_path=db)  # root token kept from the file
    assert emu2.root_token == "tok-one"
    ctr = arv2.container(uuid)
    assert ctr["state"] == "Locked" and ctr["auth_uuid"] == locked["auth_uuid"] and ctr["lock_count"] == 1
    logs = arv2.get("/arvados/v1/logs", params={"filters": json.dumps([["object_uuid", "=", uuid]])}).json()
    assert [item["properties"]["text"] for item in logs["items"]] == ["hello"]
    assert arv2.unlock(uuid).status_code == 200


def test_fault_status_count_and_clear(arv: Any, emulator_control: Any) -> None:
    emulator_control.faults(mode="status", status=503, count=2, method="GET", path_prefix="/arvados/v1/containers")
    assert [arv.list().status_code for _ in range(3)] == [503, 503, 200]
    emulator_control.faults(mode="status", status=500)
    assert arv.get("/arvados/v1/api_client_authorizations/current").status_code == 500
    assert emulator_control.stats()  # control paths are never faulted
    emulator_control.clear_faults()
    assert arv.list().status_code == 200


def test_fault_drop_and_drop_after(arv: Any, emulator_control: Any, ctr: str) -> None:
    emulator_control.faults(mode="drop", count=1)
    with pytest.raises(requests.ConnectionError):
        arv.list()
    emulator_control.faults(mode="drop_after", count=1, path_prefix="/arvados/v1/containers/")
    with pytest.raises(requests.ConnectionError):
        arv.lock(ctr)
    # the lock was applied although its answer was lost: retrying gives 422
    assert arv.lock(ctr).status_code == 422
    assert arv.container(ctr)["state"] == "Locked"


def test_fault_hang_delays_then_answers(arv: Any, emulator_control: Any) -> None:
    emulator_control.faults(mode="hang", seconds=1.5, count=1)
    with pytest.raises(requests.Timeout):
        arv.get("/arvados/v1/containers", timeout=0.3)
    start = time.monotonic()
    assert arv.list().status_code == 200
    assert time.monotonic() - start < 1.0


def test_fault_fraction_and_duration(arv: Any, emulator_control: Any) -> None:
    emulator_control.faults(fraction=0.5, duration=60, seed=7, status=502)
    codes = [arv.list().status_code for _ in range(40)]
    assert 5 < codes.count(502) < 35 and codes.count(200) == 40 - codes.count(502)


def test_stats_count_by_endpoint_pattern(arv: Any, emulator_control: Any, ctr: str) -> None:
    emulator_control.reset_stats()
    arv.list()
    arv.list()
    arv.lock(ctr)
    arv.container(ctr)
    assert emulator_control.stats() == {
        "GET /arvados/v1/containers": 2,
        "POST /arvados/v1/containers/{uuid}/lock": 1,
        "GET /arvados/v1/containers/{uuid}": 1,
    }


def test_logs_round_trip(arv: Any, emulator_control: Any, ctr: str) -> None:
    resp = arv.post("/arvados/v1/logs", data={"log": json.dumps(
        {"object_uuid": ctr, "event_type": "dispatch", "properties": {"text": "submitted"}})})
    assert resp.status_code == 200
    assert resp.json()["uuid"].startswith("zzzzz-57u5n-")
    assert [r["properties"]["text"] for r in emulator_control.logs(ctr)] == ["submitted"]


def test_loopback_predicate() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("127.5.5.5") and _is_loopback("::1")
    assert _is_loopback("::ffff:127.0.0.1")
    assert not _is_loopback("10.0.0.1") and not _is_loopback("192.168.1.2") and not _is_loopback("garbage")


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
            addr = str(s.getsockname()[0])
        except OSError:
            return None
    return None if _is_loopback(addr) or addr == "0.0.0.0" else addr


def test_control_refused_from_non_loopback_peer(make_emulator: Any) -> None:
    addr = _non_loopback_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    emu, _ = make_emulator(host="0.0.0.0", tls=False)
    resp = requests.get(f"http://{addr}:{emu.port}/_sandbox/stats", timeout=10)
    assert resp.status_code == 403
    assert requests.get(f"http://127.0.0.1:{emu.port}/_sandbox/stats", timeout=10).status_code == 200
    # the API itself answers any peer
    assert requests.get(f"http://{addr}:{emu.port}/arvados/v1/containers", timeout=10).status_code == 401


def test_cli_prints_base_url_first_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "slurm_dispatch", "sandbox", "api", "--listen", "127.0.0.1:0", "--http"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        token = proc.stderr.readline().strip().removeprefix("root token: ")
        resp = requests.get(url + "/arvados/v1/containers", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert resp.status_code == 200
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
