"""ArvadosClient over real HTTPS against the sandbox emulator (fixtures in tests/plugins/emulator.py).

Covers what a dispatcher relies on: token uuid, paging through many containers, get,
lock/unlock and their refusals, and the retry policy under the emulator's fault injection.
Retry sleeps go through an injected fake clock, so no test waits for a backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from plugins.fake_time import FakeClock

from slurm_dispatch.arvados.client import ArvadosClient
from slurm_dispatch.errors import (
    ArvadosAuthError,
    ArvadosConflict,
    ArvadosNotFound,
    ArvadosPermissionDenied,
    ArvadosUnavailable,
)
from slurm_dispatch.model import ContainerState
from slurm_dispatch.sandbox.api import EmulatorServer
from slurm_dispatch.sandbox.control import SandboxControl

QUEUED = [["state", "=", "Queued"], ["priority", ">", "0"]]


@pytest.fixture
def make_client(emulator: EmulatorServer, fake_clock: FakeClock) -> Iterator[Callable[..., ArvadosClient]]:
    made: list[ArvadosClient] = []

    def make(**kwargs: Any) -> ArvadosClient:
        kwargs.setdefault("token", emulator.root_token)
        kwargs.setdefault("read_timeout", 10.0)
        c = ArvadosClient(
            api_host=emulator.api_host, insecure=True, sleep=fake_clock.blocking_sleep, clock=fake_clock.clock, **kwargs
        )
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(make_client: Callable[..., ArvadosClient]) -> ArvadosClient:
    return make_client()


def test_current_token_uuid_is_the_system_root_token(client: ArvadosClient) -> None:
    assert client.current_token_uuid() == "zzzzz-gj3su-000000000000000"


def test_bad_token_is_a_fatal_error_naming_the_host(
    make_client: Callable[..., ArvadosClient], emulator: EmulatorServer, fake_clock: FakeClock
) -> None:
    c = make_client(token="not-a-valid-token")
    with pytest.raises(ArvadosAuthError) as info:
        c.current_token_uuid()
    assert f"Arvados API at {emulator.api_host} refused our token" in str(info.value)
    assert "SystemRootToken" in str(info.value)
    assert "not-a-valid-token" not in str(info.value)
    assert fake_clock.sleeps == [], "a 401 is not retried"
    with pytest.raises(ArvadosAuthError):
        list(c.list_all(filters=QUEUED, batch_size=10))


def test_list_all_pages_through_many_containers(
    make_emulator: Callable[..., tuple[EmulatorServer, Any]], fake_clock: FakeClock
) -> None:
    # A server that clamps pages to 7 rows, so the client must page by len(items).
    server, _ = make_emulator(max_items_per_response=7, root_token="tok-paging-test-0123456789")
    control = SandboxControl(server.base_url)
    try:
        made = {control.create_container(priority=p)["uuid"]: p for p in range(1, 41)}
        for _ in range(3):  # priority 0 ("on hold") is not in the Queued query
            control.create_container(priority=0)
        control.reset_stats()
        c = ArvadosClient(api_host=server.api_host, token=server.root_token, insecure=True)
        pages = list(c.list_all(filters=QUEUED, batch_size=10))
        stats = control.stats()
        c.close()
    finally:
        control.close()
    assert [len(p) for p in pages] == [7] * 5 + [5]
    got = [ctr for page in pages for ctr in page]
    assert {ctr.uuid for ctr in got} == set(made)
    assert [ctr.priority for ctr in got] == sorted(made.values(), reverse=True)
    assert stats == {"GET /arvados/v1/containers": 7}, "one probe and six pages, no empty trailing page"


def test_list_all_of_nothing_yields_no_page(client: ArvadosClient) -> None:
    assert list(client.list_all(filters=[["uuid", "in", []]], batch_size=10)) == []


def test_list_with_select_and_count_none(client: ArvadosClient, emulator_control: SandboxControl) -> None:
    uuid = emulator_control.create_container(priority=3)["uuid"]
    page = client.list(filters=[["uuid", "=", uuid]], count="none", select=["uuid", "priority"], limit=5)
    assert page.items_available is None
    assert [(i["uuid"], i["priority"]) for i in page.items] == [(uuid, 3)]
    with pytest.raises(ArvadosConflict, match="Invalid attribute"):
        client.list(filters=[["nonsense", "=", 1]])


def test_get_and_not_found(client: ArvadosClient, emulator_control: SandboxControl) -> None:
    uuid = emulator_control.create_container(priority=5, command=["sleep", "1"])["uuid"]
    ctr = client.get(uuid)
    assert (ctr.uuid, ctr.state, ctr.priority, ctr.command) == (
        uuid,
        ContainerState.QUEUED,
        5,
        ("sleep", "1"),
    )
    with pytest.raises(ArvadosNotFound):
        client.get("zzzzz-dz642-doesnotexist0000")


def test_lock_unlock_and_their_refusals(
    client: ArvadosClient, make_client: Callable[..., ArvadosClient], emulator_control: SandboxControl
) -> None:
    uuid = emulator_control.create_container(priority=2)["uuid"]
    locked = client.lock(uuid)
    assert (locked["state"], locked["locked_by_uuid"]) == ("Locked", "zzzzz-gj3su-000000000000000")
    assert client.container_auth(uuid)["uuid"] == locked["auth_uuid"]
    with pytest.raises(ArvadosConflict, match="cannot lock when Locked"):
        client.lock(uuid)
    other = make_client(token=emulator_control.new_token(admin=True)["api_token"])
    with pytest.raises(ArvadosPermissionDenied):
        other.unlock(uuid)
    with pytest.raises(ArvadosPermissionDenied):
        other.container_auth(uuid)
    assert client.unlock(uuid)["state"] == "Queued"
    with pytest.raises(ArvadosConflict, match="cannot unlock when Queued"):
        client.unlock(uuid)
    emulator_control.set_priority(uuid, 0)
    with pytest.raises(ArvadosConflict, match="priority"):
        client.lock(uuid)


def test_update_state_and_create_log(client: ArvadosClient, emulator_control: SandboxControl) -> None:
    uuid = emulator_control.create_container(priority=2)["uuid"]
    assert client.update_state(uuid, ContainerState.CANCELLED).state is ContainerState.CANCELLED
    with pytest.raises(ArvadosConflict, match="State cannot change"):
        client.update_state(uuid, ContainerState.RUNNING)
    client.create_log(object_uuid=uuid, event_type="dispatch", text="cancelled by a test")
    [entry] = emulator_control.logs(uuid)
    assert entry["event_type"] == "dispatch"
    assert entry["properties"] == {"text": "cancelled by a test"}


def test_update_with_select_returns_only_those_fields(
    client: ArvadosClient, emulator_control: SandboxControl
) -> None:
    uuid = emulator_control.create_container(priority=2)["uuid"]
    client.lock(uuid)
    answer = client.update(uuid, {"state": "Running"}, select=["uuid"])
    assert answer["uuid"] == uuid and "state" not in answer
    assert client.get(uuid).state is ContainerState.RUNNING


# ---------------------------------------------------------------- retry policy under fault injection


@pytest.mark.parametrize("mode", ["status", "drop"])
def test_get_is_retried_through_faults(
    client: ArvadosClient, emulator_control: SandboxControl, fake_clock: FakeClock, mode: str
) -> None:
    uuid = emulator_control.create_container()["uuid"]
    emulator_control.faults(
        mode=mode, status=503, count=3, method="GET", path_prefix="/arvados/v1/containers/"
    )
    emulator_control.reset_stats()
    assert client.get(uuid).uuid == uuid
    assert emulator_control.stats() == {"GET /arvados/v1/containers/{uuid}": 4}
    assert len(fake_clock.sleeps) == 3


def test_get_gives_up_at_the_deadline(
    make_client: Callable[..., ArvadosClient], emulator_control: SandboxControl, fake_clock: FakeClock
) -> None:
    c = make_client(retry_deadline=10.0)
    emulator_control.faults(mode="status", status=502, method="GET")
    with pytest.raises(ArvadosUnavailable) as info:
        c.list(filters=QUEUED)
    assert info.value.status == 502
    assert 0 < sum(fake_clock.sleeps) <= 10.0


def test_429_retry_after_is_honoured(
    client: ArvadosClient, emulator_control: SandboxControl, fake_clock: FakeClock
) -> None:
    emulator_control.faults(mode="status", status=429, retry_after=4, count=1, method="GET")
    assert client.list(filters=QUEUED).items_available == 0
    assert fake_clock.sleeps == [4.0]


def test_501_is_not_retried(
    client: ArvadosClient, emulator_control: SandboxControl, fake_clock: FakeClock
) -> None:
    emulator_control.faults(mode="status", status=501, count=1, method="GET")
    with pytest.raises(Exception) as info:
        client.list(filters=QUEUED)
    assert not isinstance(info.value, ArvadosUnavailable)
    assert fake_clock.sleeps == []


@pytest.mark.parametrize(
    ("mode", "status"), [("status", 503), ("status", 500), ("status", 429), ("drop", 0), ("drop_after", 0)]
)
def test_lock_is_never_repeated_once_sent(
    client: ArvadosClient, emulator_control: SandboxControl, fake_clock: FakeClock, mode: str, status: int
) -> None:
    uuid = emulator_control.create_container(priority=1)["uuid"]
    emulator_control.faults(mode=mode, status=status or 503, count=1, method="POST")
    emulator_control.reset_stats()
    with pytest.raises(ArvadosUnavailable) as info:
        client.lock(uuid)
    assert info.value.status == status
    assert emulator_control.stats() == {"POST /arvados/v1/containers/{uuid}/lock": 1}
    assert fake_clock.sleeps == []


def test_lock_that_succeeded_unseen_is_healed_by_the_next_poll(
    client: ArvadosClient, emulator_control: SandboxControl
) -> None:
    """The lock happened but its answer was lost; the next poll's locked_by_uuid query finds it."""
    uuid = emulator_control.create_container(priority=1)["uuid"]
    emulator_control.faults(
        mode="drop_after", count=1, method="POST", path_prefix=f"/arvados/v1/containers/{uuid}"
    )
    with pytest.raises(ArvadosUnavailable):
        client.lock(uuid)
    with pytest.raises(ArvadosConflict, match="cannot lock when Locked"):
        client.lock(uuid)
    me = client.current_token_uuid()
    mine = [
        c.uuid
        for page in client.list_all(filters=[["locked_by_uuid", "=", me]], batch_size=100)
        for c in page
    ]
    assert mine == [uuid]


def test_unlock_and_update_are_not_repeated_on_read_timeout(
    make_client: Callable[..., ArvadosClient], emulator_control: SandboxControl, fake_clock: FakeClock
) -> None:
    c = make_client(read_timeout=0.3)
    uuid = emulator_control.create_container(priority=1)["uuid"]
    c.lock(uuid)
    emulator_control.faults(mode="hang", seconds=1.0, count=2)
    emulator_control.reset_stats()
    with pytest.raises(ArvadosUnavailable, match="may have reached the server"):
        c.unlock(uuid)
    with pytest.raises(ArvadosUnavailable, match="may have reached the server"):
        c.update(uuid, {"priority": 3})
    assert fake_clock.sleeps == []
    assert sum(emulator_control.stats().values()) == 2
