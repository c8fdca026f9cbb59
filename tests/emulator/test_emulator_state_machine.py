"""HTTP contract of the emulated container state machine (services/api/app/models/container.rb)."""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.model import parse_timestamp

ROOT_UUID = "zzzzz-gj3su-000000000000000"
LOCK_KEYS = {"kind", "etag", "uuid", "state", "priority", "auth_uuid", "locked_by_uuid"}


def errors_of(resp: Any) -> list[str]:
    body = resp.json()
    assert set(body) == {"errors", "error_token"}, body
    secs, _, hex8 = body["error_token"].partition("+")
    assert secs.isdigit() and len(hex8) == 8 and int(hex8, 16) >= 0
    return list(body["errors"])


@pytest.fixture
def queued(emulator_control: Any) -> dict[str, Any]:
    return dict(emulator_control.create_container())


@pytest.fixture
def locked(arv: Any, queued: dict[str, Any]) -> dict[str, Any]:
    resp = arv.lock(queued["uuid"])
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


@pytest.fixture
def running(arv: Any, locked: dict[str, Any]) -> dict[str, Any]:
    resp = arv.update(locked["uuid"], {"state": "Running"})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


# Refused operations: status code and message, one test each


def test_lock_when_not_queued_is_422(arv: Any, locked: dict[str, Any]) -> None:
    resp = arv.lock(locked["uuid"])
    assert resp.status_code == 422
    assert errors_of(resp) == ["#<ArvadosModel::LockFailedError: cannot lock when Locked>"]
    assert "uuid" not in resp.json()


def test_lock_with_priority_zero_is_422(arv: Any, emulator_control: Any) -> None:
    ctr = emulator_control.create_container(priority=0)
    resp = arv.lock(ctr["uuid"])
    assert resp.status_code == 422
    assert errors_of(resp) == ["#<ArvadosModel::LockFailedError: cannot lock when priority<=0>"]
    assert arv.container(ctr["uuid"])["state"] == "Queued"


def test_unlock_when_not_locked_is_422(arv: Any, queued: dict[str, Any]) -> None:
    resp = arv.unlock(queued["uuid"])
    assert resp.status_code == 422
    assert errors_of(resp) == ["#<ArvadosModel::InvalidStateTransitionError: cannot unlock when Queued>"]


@pytest.mark.parametrize("how", ["unlock", "put"])
def test_unlock_by_another_token_is_403(arv: Any, emulator_control: Any, locked: dict[str, Any], how: str) -> None:
    other = emulator_control.new_token(admin=True)["api_token"]
    if how == "unlock":
        resp = arv.unlock(locked["uuid"], token=other)
    else:
        resp = arv.update(locked["uuid"], {"state": "Queued"}, token=other)
    assert resp.status_code == 403, resp.text
    assert errors_of(resp) == ["#<ArvadosModel::PermissionDeniedError: locked by a different token>"]
    assert arv.container(locked["uuid"])["state"] == "Locked"


def test_put_bad_transition_is_422(arv: Any, queued: dict[str, Any]) -> None:
    resp = arv.update(queued["uuid"], {"state": "Running"})
    assert resp.status_code == 422
    assert errors_of(resp) == ["State cannot change from Queued to Running"]


def test_put_field_not_permitted_is_422(arv: Any, running: dict[str, Any]) -> None:
    uuid = running["uuid"]
    assert arv.update(uuid, {"state": "Complete", "exit_code": 0}).status_code == 200
    resp = arv.update(uuid, {"priority": 2})
    assert resp.status_code == 422
    assert errors_of(resp) == ["Priority cannot be modified in state 'Complete' (1, 2)"]


def test_put_by_non_admin_is_403(arv: Any, emulator_control: Any, queued: dict[str, Any]) -> None:
    # A non-admin reaches only containers it can read; the container's own token can
    # read it but may not change it while Locked.
    user = emulator_control.new_token(admin=False)["api_token"]
    assert arv.update(queued["uuid"], {"priority": 5}, token=user).status_code == 404
    locked = arv.lock(queued["uuid"]).json()
    auth = arv.get(f"/arvados/v1/containers/{locked['uuid']}/auth").json()
    ctoken = f"v2/{auth['uuid']}/{auth['api_token']}/{locked['uuid']}"
    resp = arv.update(locked["uuid"], {"priority": 5}, token=ctoken)
    assert resp.status_code == 403
    assert errors_of(resp) == ["#<ArvadosModel::PermissionDeniedError: ArvadosModel::PermissionDeniedError>"]


def test_auth_by_token_not_holding_lock_is_403(arv: Any, emulator_control: Any, locked: dict[str, Any]) -> None:
    other = emulator_control.new_token(admin=True)["api_token"]
    resp = arv.get(f"/arvados/v1/containers/{locked['uuid']}/auth", token=other)
    assert resp.status_code == 403
    assert errors_of(resp) == ["#<ArvadosModel::PermissionDeniedError: Not locked by your token>"]


def test_unknown_uuid_is_404(arv: Any) -> None:
    resp = arv.get("/arvados/v1/containers/zzzzz-dz642-doesnotexist000")
    assert resp.status_code == 404
    assert errors_of(resp) == ["Path not found"]
    assert arv.lock("zzzzz-dz642-doesnotexist000").status_code == 404


@pytest.mark.parametrize("token", ["", "nosuchtoken", "v2/zzzzz-gj3su-000000000000000/wrongsecret"])
def test_missing_or_invalid_token_is_401(arv: Any, token: str) -> None:
    resp = arv.get("/arvados/v1/containers", token=token)
    assert resp.status_code == 401
    assert errors_of(resp) == ["Not logged in"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"filters": [["foo", "=", "x"]]}, "#<ArgumentError: Invalid attribute 'foo' in filter>"),
        ({"filters": [["state", "xx", "x"]]}, "#<ArgumentError: Invalid operator 'xx'>"),
        ({"count": "maybe"}, "#<ArgumentError: count parameter must be 'exact' or 'none'>"),
        ({"limit": "-1"}, "#<ArgumentError: Invalid value for limit parameter>"),
        ({"limit": "ten"}, "#<ArgumentError: Invalid value for limit parameter>"),
        ({"offset": "1.5"}, "#<ArgumentError: Invalid value for offset parameter>"),
        ({"select": ["nope"]}, "#<ArgumentError: Invalid attribute 'nope' of Container in select parameter>"),
        ({"select": "uuid"}, '#<ArgumentError: Could not parse "select" param as an array>'),
        ({"select": "uuid,priority"}, '#<ArgumentError: Could not parse "select" param as an array>'),
    ],
)
def test_bad_list_parameter_is_422(arv: Any, params: dict[str, Any], message: str) -> None:
    resp = arv.list(**params)
    assert resp.status_code == 422
    assert errors_of(resp) == [message]


# lock/unlock answers, MaxDispatchAttempts (container.rb: check_unlock), lock races, and the other field rules


def test_lock_response_carries_only_lock_fields(arv: Any, queued: dict[str, Any]) -> None:
    resp = arv.lock(queued["uuid"])
    body = resp.json()
    assert set(body) == LOCK_KEYS
    assert body["state"] == "Locked" and body["locked_by_uuid"] == ROOT_UUID
    assert body["auth_uuid"].startswith("zzzzz-gj3su-") and body["auth_uuid"] != ROOT_UUID
    full = arv.container(queued["uuid"])
    assert full["lock_count"] == 1
    unlock = arv.unlock(queued["uuid"]).json()
    assert set(unlock) == LOCK_KEYS
    assert unlock["state"] == "Queued" and unlock["locked_by_uuid"] == "" and unlock["auth_uuid"] == ""


def test_max_dispatch_attempts_sequence(make_emulator: Any) -> None:
    emu, arv = make_emulator(max_dispatch_attempts=3)
    uuid = emu.create_container({})["uuid"]
    if True:
        for attempt in (1, 2):
            assert arv.lock(uuid).status_code == 200
            arv.update(uuid, {"runtime_status": {"activity": "trying"}})
            resp = arv.unlock(uuid)
            assert resp.status_code == 200 and resp.json()["state"] == "Queued", attempt
            assert arv.container(uuid)["runtime_status"] == {}
        assert arv.lock(uuid).status_code == 200
        resp = arv.unlock(uuid)
        assert resp.status_code == 200
        assert resp.json()["state"] == "Cancelled"
        ctr = arv.container(uuid)
        assert ctr["lock_count"] == 3
        assert ctr["runtime_status"] == {
            "error": "Failed to start container.  Cancelled after exceeding "
            "'Containers.MaxDispatchAttempts' (lock_count=3)"
        }
        assert ctr["locked_by_uuid"] == "" and ctr["auth_uuid"] == ""


def test_lock_race_one_wins(arv: Any, emulator_control: Any, queued: dict[str, Any]) -> None:
    import concurrent.futures

    other = emulator_control.new_token(admin=True)["api_token"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda tok: arv.lock(queued["uuid"], token=tok).status_code,
                                [arv.token, other]))
    assert sorted(results) == [200, 422]
    assert arv.container(queued["uuid"])["lock_count"] == 1


def test_priority_zero_never_changes_state(arv: Any, emulator_control: Any, running: dict[str, Any]) -> None:
    uuid = running["uuid"]
    emulator_control.set_priority(uuid, 0)
    ctr = arv.container(uuid)
    assert ctr["state"] == "Running" and ctr["priority"] == 0
    held = emulator_control.create_container(priority=0)
    assert arv.container(held["uuid"])["state"] == "Queued"
    emulator_control.set_priority(held["uuid"], 3)
    assert arv.lock(held["uuid"]).status_code == 200


def test_server_sets_timestamps_and_ignores_client_ones(arv: Any, locked: dict[str, Any]) -> None:
    uuid = locked["uuid"]
    before = arv.container(uuid)
    assert before["started_at"] is None and before["finished_at"] is None
    resp = arv.update(uuid, {"state": "Running", "modified_at": "2000-01-01T00:00:00Z"})
    assert resp.status_code == 200
    ctr = resp.json()
    assert ctr["started_at"] is not None
    assert parse_timestamp(ctr["modified_at"]) > parse_timestamp(before["modified_at"])  # type: ignore[operator]
    assert arv.update(uuid, {"state": "Complete", "exit_code": 0}).json()["finished_at"] is not None


def test_runtime_status_well_known_keys_must_be_strings(arv: Any, locked: dict[str, Any]) -> None:
    resp = arv.update(locked["uuid"], {"runtime_status": {"error": 1, "custom": 2}})
    assert resp.status_code == 422
    assert errors_of(resp) == ["Runtime status 'error' value must be a string"]
    ok = arv.update(locked["uuid"], {"runtime_status": {"warning": "w", "custom": {"n": 2}}})
    assert ok.status_code == 200 and ok.json()["runtime_status"] == {"custom": {"n": 2}, "warning": "w"}


def test_admin_not_holding_lock_loses_progress_fields(arv: Any, emulator_control: Any, running: dict[str, Any]) -> None:
    other = emulator_control.new_token(admin=True)["api_token"]
    uuid = running["uuid"]
    resp = arv.update(uuid, {"exit_code": 3}, token=other)
    assert resp.status_code == 422
    assert errors_of(resp) == ["Exit code cannot be modified in state 'Running' (nil, 3)"]
    assert arv.update(uuid, {"priority": 7}, token=other).status_code == 200
    cancel = arv.update(uuid, {"state": "Cancelled"}, token=other)
    assert cancel.status_code == 200 and cancel.json()["state"] == "Cancelled"


def test_container_token_may_finish_its_own_container(arv: Any, running: dict[str, Any]) -> None:
    uuid = running["uuid"]
    auth = arv.get(f"/arvados/v1/containers/{uuid}/auth").json()
    ctoken = f"v2/{auth['uuid']}/{auth['api_token']}/{uuid}"
    assert arv.get("/arvados/v1/containers/current", token=ctoken).json()["uuid"] == uuid
    resp = arv.update(uuid, {"priority": 9}, token=ctoken)
    assert resp.status_code == 422
    assert errors_of(resp) == ["Priority cannot be modified in state 'Running' (1, 9)"]
    done = arv.update(uuid, {"state": "Complete", "exit_code": 0, "output": "d41d8cd98f00b204e9800998ecf8427e+0"},
                      token=ctoken)
    assert done.status_code == 200, done.text
    # finishing expires the container token
    assert arv.get("/arvados/v1/containers/current", token=ctoken).status_code == 401


def test_unlock_expires_the_container_token(arv: Any, locked: dict[str, Any]) -> None:
    uuid = locked["uuid"]
    auth = arv.get(f"/arvados/v1/containers/{uuid}/auth").json()
    assert auth["uuid"] == locked["auth_uuid"] and auth["kind"] == "arvados#apiClientAuthorization"
    ctoken = f"v2/{auth['uuid']}/{auth['api_token']}"
    assert arv.get("/arvados/v1/containers/current", token=ctoken).status_code == 200
    assert arv.unlock(uuid).status_code == 200
    assert arv.get("/arvados/v1/containers/current", token=ctoken).status_code == 401
    relocked = arv.lock(uuid).json()
    assert relocked["auth_uuid"] not in ("", auth["uuid"])


def test_secret_mounts_only_for_the_container_token(arv: Any, emulator_control: Any) -> None:
    ctr = emulator_control.create_container(secret_mounts={"/secret": {"kind": "text", "content": "s3cr3t"}})
    uuid = ctr["uuid"]
    assert "secret_mounts" not in ctr
    assert arv.lock(uuid).status_code == 200
    resp = arv.get(f"/arvados/v1/containers/{uuid}/secret_mounts")
    assert resp.status_code == 403
    assert errors_of(resp) == ["Token is not associated with this container."]
    auth = arv.get(f"/arvados/v1/containers/{uuid}/auth").json()
    ctoken = f"v2/{auth['uuid']}/{auth['api_token']}/{uuid}"
    ok = arv.get(f"/arvados/v1/containers/{uuid}/secret_mounts", token=ctoken)
    assert ok.json() == {"secret_mounts": {"/secret": {"kind": "text", "content": "s3cr3t"}}}


def test_current_without_container_is_404(arv: Any) -> None:
    resp = arv.get("/arvados/v1/containers/current")
    assert resp.status_code == 404
    assert errors_of(resp) == ["Token is not associated with a container."]


def test_locked_by_and_auth_uuid_write_rules(arv: Any, locked: dict[str, Any]) -> None:
    uuid = locked["uuid"]
    same = arv.update(uuid, {"locked_by_uuid": ROOT_UUID})
    assert same.status_code == 200
    resp = arv.update(uuid, {"locked_by_uuid": "zzzzz-gj3su-aaaaaaaaaaaaaaa"})
    assert resp.status_code == 422
    assert "Locked by uuid can only change to zzzzz-gj3su-000000000000000" in errors_of(resp)
    resp = arv.update(uuid, {"auth_uuid": "zzzzz-gj3su-aaaaaaaaaaaaaaa"})
    assert resp.status_code == 422
    assert "Auth uuid is readonly" in errors_of(resp)


def test_put_queued_by_lock_holder_is_an_unlock(arv: Any, locked: dict[str, Any]) -> None:
    uuid = locked["uuid"]
    assert arv.update(uuid, {"runtime_status": {"error": "x"}}).status_code == 200
    # crunch-run's failure before Running: {state: Queued, exit_code: null, cost: 0}
    resp = arv.update(uuid, {"state": "Queued", "exit_code": None, "cost": 0})
    assert resp.status_code == 200, resp.text
    ctr = resp.json()
    assert ctr["state"] == "Queued" and ctr["runtime_status"] == {} and ctr["locked_by_uuid"] == ""


def test_cancel_from_queued_and_complete_to_cancelled(
    arv: Any, emulator_control: Any, running: dict[str, Any]
) -> None:
    resp = arv.update(emulator_control.create_container()["uuid"], {"state": "Cancelled"})
    assert resp.status_code == 200 and resp.json()["finished_at"] is not None
    uuid = running["uuid"]
    assert arv.update(uuid, {"state": "Complete", "exit_code": 0}).status_code == 200
    assert arv.update(uuid, {"state": "Cancelled"}).json()["state"] == "Cancelled"
    resp = arv.update(uuid, {"state": "Queued"})
    assert resp.status_code == 422
    assert errors_of(resp) == ["State cannot change from Cancelled to Queued"]


@pytest.mark.parametrize(
    ("priority", "message"),
    [
        (2.5, "Priority must be an integer"),
        ("3.7", "Priority must be an integer"),
        (True, "Priority is not a number"),
        ("high", "Priority is not a number"),
    ],
)
def test_priority_must_be_an_integer_as_sent(arv: Any, queued: dict[str, Any], priority: Any, message: str) -> None:
    """container.rb validates priority with numericality only_integer on the value before ActiveRecord casts
    it (which would truncate 2.5 to 2)."""
    resp = arv.update(queued["uuid"], {"priority": priority})
    assert resp.status_code == 422
    assert errors_of(resp) == [message]
    assert arv.container(queued["uuid"])["priority"] == queued["priority"]


def test_priority_given_as_an_integer_string_is_accepted(arv: Any, queued: dict[str, Any]) -> None:
    resp = arv.update(queued["uuid"], {"priority": "7"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["priority"] == 7


def test_a_scoped_token_may_read_itself_and_nothing_out_of_scope(arv: Any, emulator_control: Any) -> None:
    """api_client_authorization.rb lets any token GET .../current; other refusals are a bare 403 Forbidden."""
    ctr = emulator_control.create_container(runtime_auth_scopes=["GET /arvados/v1/containers/"])
    uuid = ctr["uuid"]
    assert arv.lock(uuid).status_code == 200
    auth = arv.get(f"/arvados/v1/containers/{uuid}/auth").json()
    ctoken = f"v2/{auth['uuid']}/{auth['api_token']}"
    current = arv.get("/arvados/v1/api_client_authorizations/current", token=ctoken)
    assert current.status_code == 200, current.text
    assert current.json()["uuid"] == auth["uuid"]
    assert arv.get(f"/arvados/v1/containers/{uuid}", token=ctoken).status_code == 200
    refused = arv.update(uuid, {"priority": 2}, token=ctoken)
    assert refused.status_code == 403
    assert errors_of(refused) == ["Forbidden"]
