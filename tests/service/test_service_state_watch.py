"""The state file as the service watches it: each change of the drain is logged once, whoever made it.

``drain_change`` is the pure decision (which line, if any, for two successive reads); ``StateWatch`` reads the
file, logs that line, and writes the management API's changes without logging them again (its handler does).
A running service doing the same: tests/service/test_service_dispatching.py.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from slurm_dispatch.dispatch.admission import Drain
from slurm_dispatch.service.state import (
    MANAGEMENT_API,
    State,
    StateError,
    StateStore,
    StateWatch,
    drain_change,
)
from slurm_dispatch.slurm.broken_nodes import BrokenNode

SINCE = "2026-12-07T12:00:00.000000000Z"
UPGRADE = Drain(reason="kernel upgrade", since=SINCE)
UNREADABLE = State(drain=Drain(reason="the state file is unreadable: x", since="?"), problem="x")
DRAINED_LINE = (f"drained by alice@head since {SINCE}: kernel upgrade; no new container is locked until "
                "`slurm-dispatch resume`")


@pytest.mark.parametrize(("before", "after", "line"), [
    pytest.param(None, State(drain=UPGRADE), None, id="first read: nothing to compare with"),
    pytest.param(State(), State(), None, id="not drained, still not"),
    pytest.param(State(drain=UPGRADE, drained_by="alice@head"), State(drain=UPGRADE, drained_by="alice@head"), None,
                 id="drained, still the same drain"),
    pytest.param(State(), State(broken={"c1": BrokenNode(node="c1", since=1.0, reason="docker")}), None,
                 id="a broken node is not a drain change"),
    pytest.param(State(), State(drain=UPGRADE, drained_by="alice@head"), DRAINED_LINE, id="drained: who, since, why"),
    pytest.param(State(), State(drain=UPGRADE),
                 f"drained since {SINCE}: kernel upgrade; no new container is locked until `slurm-dispatch resume`",
                 id="drained by someone not recorded (an older slurm-dispatch)"),
    pytest.param(State(), State(drain=Drain(reason="drained by alice@head", since=SINCE), drained_by="alice@head"),
                 f"drained since {SINCE}: drained by alice@head; no new container is locked until "
                 "`slurm-dispatch resume`", id="the default reason already names who"),
    pytest.param(State(drain=Drain(reason="upgrade", since="2026-12-06T00:00:00.000000000Z")),
                 State(drain=UPGRADE, drained_by="alice@head"), DRAINED_LINE, id="drained again, for another reason"),
    pytest.param(State(drain=UPGRADE, drained_by="alice@head"), State(),
                 f"resumed (was drained since {SINCE}: kernel upgrade): locking new containers again", id="resumed"),
    pytest.param(State(), UNREADABLE, None, id="unreadable: StateStore logs it at ERROR"),
    pytest.param(UNREADABLE, State(), "the state file is readable again and says not drained: locking new "
                 "containers again", id="readable again, not drained"),
    pytest.param(UNREADABLE, State(drain=UPGRADE, drained_by="alice@head"), DRAINED_LINE,
                 id="readable again, drained"),
])
def test_drain_change(before: State | None, after: State, line: str | None) -> None:
    assert drain_change(before, after) == line


def watched_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "slurm_dispatch.service.state"]


def test_a_change_made_by_another_process_is_logged_once_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="slurm_dispatch.service.state")
    watch = StateWatch(StateStore(tmp_path))
    assert watch.drain() is None
    # what `slurm-dispatch drain --reason 'kernel upgrade'` does, with a store of its own
    StateStore(tmp_path).set_drain(UPGRADE, by="alice@head")
    for _ in range(3):  # three ticks: one line
        assert watch.drain() == UPGRADE
    assert watched_lines(caplog) == [DRAINED_LINE]
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    StateStore(tmp_path).set_drain(None)
    for _ in range(3):
        assert watch.drain() is None
    assert watched_lines(caplog)[1:] == [
        f"resumed (was drained since {SINCE}: kernel upgrade): locking new containers again"]


def test_the_service_s_own_changes_are_not_logged_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="slurm_dispatch.service.state")
    watch = StateWatch(StateStore(tmp_path))
    watch.read()
    watch.set_drain(UPGRADE, by=MANAGEMENT_API)
    assert watch.drain() == UPGRADE
    watch.set_drain(None, by=MANAGEMENT_API)
    assert watch.drain() is None
    assert watched_lines(caplog) == []


def test_the_drain_records_who_and_keeps_it_across_broken_node_writes(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.set_drain(UPGRADE, by="alice@head")
    store.set_broken({"c1": BrokenNode(node="c1", since=1.0, reason="docker")})
    assert json.loads(store.path.read_text())["drain"] == {"reason": "kernel upgrade", "since": SINCE,
                                                          "by": "alice@head"}
    again = StateStore(tmp_path).read()
    assert (again.drain, again.drained_by, list(again.broken)) == (UPGRADE, "alice@head", ["c1"])
    assert StateStore(tmp_path).set_drain(None, by="bob@head").drained_by == ""


def test_a_file_without_who_is_read_as_before(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"drain": {"reason": "old", "since": SINCE}}))
    state = StateStore(tmp_path).read()
    assert (state.drain, state.drained_by, state.problem) == (Drain(reason="old", since=SINCE), "", "")


def test_a_state_file_nested_too_deeply_reads_as_drained_not_a_crash(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    (tmp_path / "state.json").write_text("[" * 200_000, encoding="utf-8")
    state = store.read()
    assert state.drain is not None and state.problem is not None and "nested too deeply" in state.problem


def test_a_fifo_for_a_state_file_reads_as_drained_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "state.json")
    state = StateStore(tmp_path).read()
    assert state.problem is not None and "not a regular file" in state.problem


def test_a_drain_never_follows_a_symlink_for_its_lock_file(tmp_path: Path) -> None:
    """An admin runs drain as root in a directory the service user owns: a link planted there must not make root
    create a file elsewhere."""
    target = tmp_path / "elsewhere" / "nologin"
    target.parent.mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / ".state.lock").symlink_to(target)
    with pytest.raises(StateError, match="cannot open"):
        StateStore(tmp_path / "state").set_drain(UPGRADE, by="root@head")
    assert not target.exists()
    assert not (tmp_path / "state" / "state.json").exists(), "nothing changed"


def test_the_lock_file_is_the_service_users_alone(tmp_path: Path) -> None:
    """0600, owned by the state directory's owner: no other local user can hold its flock, and when root (an
    admin's drain) creates it, the service user can still open it."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / ".state.lock").write_text("")
    os.chmod(state_dir / ".state.lock", 0o644)  # as an older slurm-dispatch made it
    StateStore(state_dir).set_drain(None)
    assert stat.S_IMODE(os.stat(state_dir / ".state.lock").st_mode) == 0o600
    if os.geteuid() != 0:
        return
    service_user = 65534  # nobody: the service user's stand-in
    os.chown(state_dir, service_user, service_user)
    (state_dir / ".state.lock").unlink()
    StateStore(state_dir).set_drain(UPGRADE, by="root@head")
    st = os.stat(state_dir / ".state.lock")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (service_user, service_user, 0o600)
