"""When ``SlurmCLI`` narrows squeue to the service user's jobs, and when it stops: the decisions around the
commands, with ``spawn.run`` replaced (what the real squeue does with ``--user`` is
tests/integration/test_squeue_own_jobs.py)."""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Sequence
from typing import Any

import pytest

from slurm_dispatch.assemble import service_slurm_cli
from slurm_dispatch.errors import SlurmCommandError
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm import cli_backend, spawn
from slurm_dispatch.slurm.cli_backend import SlurmCLI

NOBODY = pwd.getpwnam("nobody").pw_uid
OURS = "1|0|100|PENDING|UNLIMITED||zzzzz-dz642-000000000000001|BeginTime\n"


class Squeue:
    """Stands in for ``spawn.run``: answers the owners check and squeue as told, and records each argv."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.argvs: list[list[str]] = []
        self.owners = spawn.Finished(returncode=0, stdout=f"{NOBODY}|zzzzz-dz642-000000000000001\n", stderr="")
        self.jobs = spawn.Finished(returncode=0, stdout=OURS, stderr="")
        monkeypatch.setattr(spawn, "run", self.run)

    def run(self, argv: Sequence[str], **_: Any) -> spawn.Finished:
        """Answer as squeue does, each line starting with the command's line marker (``marked_argv``)."""
        self.argvs.append(list(argv))
        answer = self.owners if _owners(argv) else self.jobs
        marker = next(a for a in argv if a.startswith("--format=")).removeprefix("--format=").split("|")[0]
        stdout = "".join(f"{marker}|{line}\n" for line in answer.stdout.splitlines())
        return spawn.Finished(returncode=answer.returncode, stdout=stdout, stderr=answer.stderr)

    def narrowed(self) -> list[bool]:
        return [any(a.startswith("--user=") for a in argv) for argv in self.argvs if not _owners(argv)]


def _owners(argv: Sequence[str]) -> bool:
    return any(a.startswith("--format=") and a.endswith("|%U|%j") for a in argv)


def test_a_narrowed_squeue_that_prints_an_error_is_no_information_and_squeue_widens_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """On 22.05 a uid the user database does not answer for makes squeue print "Invalid user", filter out every
    job and exit 0: an empty answer that must not read as "every job gone"."""
    fake = Squeue(monkeypatch)
    cli = SlurmCLI(env={}, own_uid=NOBODY, settle_s=0)
    assert cli.queue() == OURS
    assert cli.own_jobs_only is True
    fake.jobs = spawn.Finished(returncode=0, stdout="", stderr=f"squeue: error: Invalid user: {NOBODY}\n")
    with caplog.at_level(logging.WARNING), pytest.raises(SlurmCommandError, match="no information this poll"):
        cli.queue()
    assert cli.own_jobs_only is False
    assert "squeue reads every user's jobs again" in caplog.text
    fake.jobs = spawn.Finished(returncode=0, stdout=OURS, stderr="")
    assert cli.queue() == OURS
    assert fake.narrowed() == [True, True, False]  # and no second check within the hour


def test_a_uid_without_an_entry_in_the_user_database_is_never_narrowed_to(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    fake = Squeue(monkeypatch)
    unknown = next(uid for uid in range(60000, 65000) if not _has_entry(uid))
    fake.owners = spawn.Finished(returncode=0, stdout=f"{unknown}|zzzzz-dz642-000000000000001\n", stderr="")
    cli = SlurmCLI(env={}, own_uid=unknown)
    with caplog.at_level(logging.WARNING):
        cli.queue()
    assert cli.own_jobs_only is False
    assert f"uid {unknown} has no entry in this host's user database" in caplog.text
    assert fake.narrowed() == [False]


def test_a_failed_check_decides_nothing_and_the_next_poll_checks_again(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Squeue(monkeypatch)
    fake.owners = spawn.Finished(returncode=1, stdout="", stderr="slurm_load_jobs error: Unable to contact slurm "
                                                                   "controller (connect failure)\n")
    cli = SlurmCLI(env={}, own_uid=NOBODY, settle_s=0)
    assert cli.queue() == OURS
    assert cli.own_jobs_only is None
    fake.owners = spawn.Finished(returncode=0, stdout=f"{NOBODY}|zzzzz-dz642-000000000000001\n", stderr="")
    cli.queue()
    assert cli.own_jobs_only is True
    assert fake.narrowed() == [False, True]
    assert sum(_owners(argv) for argv in fake.argvs) == 2


def test_another_users_container_job_is_checked_again_after_the_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Squeue(monkeypatch)
    fake.owners = spawn.Finished(returncode=0, stdout="0|zzzzz-dz642-000000000000002\n", stderr="")
    cli = SlurmCLI(env={}, own_uid=NOBODY, settle_s=0)
    cli.queue()
    cli.queue()
    assert cli.own_jobs_only is False and fake.narrowed() == [False, False]
    fake.owners = spawn.Finished(returncode=0, stdout="", stderr="")
    monkeypatch.setattr(cli_backend, "OWNERS_RECHECK_S", 0)
    cli.queue()
    assert cli.own_jobs_only is True and fake.narrowed() == [False, False, True]


def _has_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_the_service_passes_its_own_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    """``slurm-dispatch run`` (service/serve.py) and a DispatchLoop without a backend both build it here."""
    settings = Settings(cluster_id="zzzzz", system_root_token="v2/zzzzz-gj3su-000000000000000/secret",
                        controller_url="https://api.example")
    monkeypatch.setattr(os, "geteuid", lambda: NOBODY)
    assert service_slurm_cli(settings, {}).own_uid == NOBODY
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert service_slurm_cli(settings, {}).own_uid is None


def test_a_narrowed_squeue_keeps_checking_and_widens_when_another_users_container_job_appears(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Once narrowed, a job named like a container that another user submits later (the Go dispatcher's last
    sbatch, an admin's resubmission as root) would stay out of sight: the hourly check runs narrowed too."""
    fake = Squeue(monkeypatch)
    cli = SlurmCLI(env={}, own_uid=NOBODY, settle_s=0)
    with caplog.at_level(logging.INFO, logger="slurm_dispatch.slurm.cli_backend"):
        cli.queue()
        cli.queue()  # within the hour: no second check
        assert cli.own_jobs_only is True and fake.narrowed() == [True, True]
        monkeypatch.setattr(cli_backend, "OWNERS_RECHECK_S", 0)
        cli.queue()  # checked again, still nobody else's: narrowed, and the INFO line is not repeated
        assert cli.own_jobs_only is True and fake.narrowed() == [True, True, True]
        assert caplog.text.count("squeue reads the jobs of uid") == 1
        fake.owners = spawn.Finished(returncode=0, stdout=f"0|zzzzz-dz642-000000000000002\n{NOBODY}|x\n", stderr="")
        cli.queue()
    assert cli.own_jobs_only is False and fake.narrowed() == [True, True, True, False]
    assert sum(_owners(argv) for argv in fake.argvs) == 3
    assert "jobs named like containers belong to other users (uid 0)" in caplog.text


def test_a_failed_check_while_narrowed_keeps_the_narrowing_and_is_not_retried_at_every_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each check is a whole-table squeue: while slurmctld is slow, trying it at every poll costs what narrowing
    saves."""
    fake = Squeue(monkeypatch)
    cli = SlurmCLI(env={}, own_uid=NOBODY, settle_s=0)
    cli.queue()
    assert cli.own_jobs_only is True
    monkeypatch.setattr(cli_backend, "OWNERS_RECHECK_S", 0)
    fake.owners = spawn.Finished(returncode=1, stdout="", stderr="slurm_load_jobs error: Socket timed out on "
                                                                   "send/recv operation\n")
    monkeypatch.setattr(cli_backend, "OWNERS_RETRY_S", 3600)
    cli.queue()
    cli.queue()
    assert cli.own_jobs_only is True and fake.narrowed() == [True, True, True]
    assert sum(_owners(argv) for argv in fake.argvs) == 2, "the failed check is not tried again at the next poll"


def test_a_narrowed_poll_does_not_log_its_output(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """squeue's output is the result, not news: the wide poll never logged it, and neither may the narrowed one (it
    was logged at INFO on every poll)."""
    Squeue(monkeypatch)
    cli = SlurmCLI(env={}, own_uid=NOBODY, settle_s=0)
    cli.queue()
    with caplog.at_level(logging.INFO, logger="slurm_dispatch.slurm.cli_backend"):
        assert cli.queue() == OURS
    assert "zzzzz-dz642-000000000000001" not in caplog.text


def test_squeue_is_not_narrowed_in_the_first_minutes_after_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job another user's sbatch began before we started (the Go dispatcher's last, as it was stopped) can reach
    slurmctld minutes later; narrowed, squeue would not show it. The first check runs at once all the same (it
    warns about jobs already there), and the next one narrows once the settling time is over."""
    fake = Squeue(monkeypatch)
    now = [1000.0]
    monkeypatch.setattr(cli_backend.time, "monotonic", lambda: now[0])
    cli = SlurmCLI(env={}, own_uid=NOBODY)  # the service's default
    cli.queue()
    now[0] += cli_backend.OWNERS_SETTLE_S - 1
    cli.queue()
    assert cli.own_jobs_only is False and fake.narrowed() == [False, False]
    assert sum(_owners(argv) for argv in fake.argvs) == 1, "one check at the start, none until the settling ends"
    now[0] += 1
    cli.queue()
    assert cli.own_jobs_only is True and fake.narrowed() == [False, False, True]
    assert sum(_owners(argv) for argv in fake.argvs) == 2
