"""squeue narrowed to the service user's own jobs, on the real Slurm: what slurmctld is asked, and when it is not.

A service running as a user other than root (the shipped unit's ``crunch``) has squeue ask slurmctld for that
user's jobs only (REQUEST_JOB_USER_INFO, which packs only them), once a squeue of every user's jobs showed that
no job named like a container belongs to anyone else. Here root submits for ``nobody`` (``sbatch --uid``) and
asks as ``nobody`` would (``squeue --user=<uid>``: the same request whoever sends it).
"""

from __future__ import annotations

import logging
import pwd
import re
from typing import Any

import pytest
from plugins.slurm_cluster import SLURM_POLL_S
from plugins.waiting import wait_until

from slurm_dispatch.errors import SlurmCommandError
from slurm_dispatch.slurm import cli_backend
from slurm_dispatch.slurm.backend import SQUEUE_OWNERS_ARGV
from slurm_dispatch.slurm.cli_backend import SlurmCLI
from slurm_dispatch.slurm.decide import other_owners_of_container_jobs
from slurm_dispatch.slurm.squeue_lines import parse_squeue

pytestmark = pytest.mark.slurm

NOBODY = pwd.getpwnam("nobody").pw_uid
OURS = "zzzzz-dz642-ownjobsnobody01"
ROOTS = "zzzzz-dz642-ownjobsroot0001"
_RPC_RE = re.compile(r"^\s*(REQUEST_JOB_USER_INFO|REQUEST_JOB_INFO)\s+\(\s*\d+\)\s+count:(\d+)", re.MULTILINE)


def _submit(cluster: Any, name: str, *extra: str) -> str:
    job = cluster.run(["sbatch", "--parsable", "--hold", "--output=/dev/null", "-J", name, *extra],
                      input="#!/bin/sh\ntrue\n", check=True).stdout.strip()
    assert job
    return str(job)


def _rpc_counts(cluster: Any) -> dict[str, int]:
    out = cluster.run(["sdiag"], check=True).stdout
    counts = {"REQUEST_JOB_USER_INFO": 0, "REQUEST_JOB_INFO": 0}
    counts.update({name: int(n) for name, n in _RPC_RE.findall(out)})
    return counts


def test_squeue_reads_only_the_service_users_jobs_once_none_of_another_user_is_named_like_a_container(
    slurm_clean: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    # the root-owned container jobs of earlier tests leave squeue once they have ended (MinJobAge)
    wait_until(lambda: not other_owners_of_container_jobs(slurm_clean.run(list(SQUEUE_OWNERS_ARGV), check=True).stdout,
                                                          NOBODY),
               what="no job named like a container but ours", every=SLURM_POLL_S)
    ours = _submit(slurm_clean, OURS, f"--uid={NOBODY}")
    foreign = _submit(slurm_clean, "another users job")  # root's, not named like a container
    try:
        cli = SlurmCLI(env=slurm_clean.env, own_uid=NOBODY, settle_s=0)
        assert cli.own_jobs_only is None
        with caplog.at_level(logging.INFO, logger="slurm_dispatch.slurm.cli_backend"):
            cli.queue()  # the check of every user's jobs, then the first narrowed squeue
        assert cli.own_jobs_only is True
        assert f"squeue reads the jobs of uid {NOBODY} only" in caplog.text
        before = _rpc_counts(slurm_clean)
        jobs, errors = parse_squeue(cli.queue())
        after = _rpc_counts(slurm_clean)
        assert errors == []
        assert [(name, job.job_id) for name, job in jobs.items()] == [(OURS, ours)]
        assert after["REQUEST_JOB_USER_INFO"] - before["REQUEST_JOB_USER_INFO"] == 1
        assert after["REQUEST_JOB_INFO"] - before["REQUEST_JOB_INFO"] == 0  # not the whole table
    finally:
        slurm_clean.run(["scancel", ours, foreign])


def test_a_job_named_like_a_container_under_another_user_keeps_every_users_jobs_in_sight(
    slurm_clean: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """E.g. a job the Go dispatcher, which runs as root, left behind: narrowed to our uid, squeue would not show it,
    and its container would be submitted a second time. Once it has gone, a later check narrows squeue."""
    ours = _submit(slurm_clean, OURS, f"--uid={NOBODY}")
    roots = _submit(slurm_clean, ROOTS)
    try:
        cli = SlurmCLI(env=slurm_clean.env, own_uid=NOBODY, settle_s=0)
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.slurm.cli_backend"):
            jobs, _ = parse_squeue(cli.queue())
        assert cli.own_jobs_only is False
        assert "jobs named like containers belong to other users (uid 0)" in caplog.text
        assert {OURS, ROOTS} <= set(jobs)
        before = _rpc_counts(slurm_clean)
        cli.queue()  # within the hour: no second check
        assert _rpc_counts(slurm_clean)["REQUEST_JOB_INFO"] - before["REQUEST_JOB_INFO"] == 1
        slurm_clean.run(["scancel", roots], check=True)
        wait_until(lambda: ROOTS not in slurm_clean.run(list(SQUEUE_OWNERS_ARGV), check=True).stdout,
                   what="root's job to leave squeue", every=SLURM_POLL_S)
        monkeypatch.setattr(cli_backend, "OWNERS_RECHECK_S", 0)
        jobs, _ = parse_squeue(cli.queue())
        assert cli.own_jobs_only is True
        assert list(jobs) == [OURS]
    finally:
        slurm_clean.run(["scancel", ours, roots])


def test_a_container_job_another_user_submits_after_the_narrowing_widens_squeue_at_the_next_check(
    slurm_clean: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Narrowed, squeue would never show a root job named like a container that appears later (the Go
    dispatcher's last sbatch after a handover): the hourly check keeps running, and widens squeue again."""
    wait_until(lambda: not other_owners_of_container_jobs(slurm_clean.run(list(SQUEUE_OWNERS_ARGV), check=True).stdout,
                                                          NOBODY),
               what="no job named like a container but ours", every=SLURM_POLL_S)
    ours = _submit(slurm_clean, OURS, f"--uid={NOBODY}")
    roots = ""
    try:
        cli = SlurmCLI(env=slurm_clean.env, own_uid=NOBODY, settle_s=0)
        cli.queue()
        assert cli.own_jobs_only is True
        roots = _submit(slurm_clean, ROOTS)
        assert list(parse_squeue(cli.queue())[0]) == [OURS]  # within the hour: narrowed, root's job unseen
        monkeypatch.setattr(cli_backend, "OWNERS_RECHECK_S", 0)
        with caplog.at_level(logging.WARNING, logger="slurm_dispatch.slurm.cli_backend"):
            jobs, _ = parse_squeue(cli.queue())
        assert cli.own_jobs_only is False
        assert {OURS, ROOTS} <= set(jobs)
        assert "jobs named like containers belong to other users (uid 0)" in caplog.text
    finally:
        slurm_clean.run(["scancel", ours, *([roots] if roots else [])])


def test_root_and_several_clusters_never_narrow_squeue(slurm_clean: Any) -> None:
    for cli in (SlurmCLI(env=slurm_clean.env, own_uid=0), SlurmCLI(env=slurm_clean.env),
                SlurmCLI(env=slurm_clean.env, own_uid=NOBODY, clusters=("a", "b"))):
        assert cli.own_uid is None and cli.own_jobs_only is False


def test_when_slurm_does_not_answer_the_check_nothing_is_decided(slurm_clean: Any, tmp_path: Any) -> None:
    """The check failing is no information: squeue stays as wide as Go's, and the next poll checks again."""
    cli = SlurmCLI(env={**slurm_clean.env, "SLURM_CONF": str(tmp_path / "missing.conf")}, timeout_s=5,
                   own_uid=NOBODY)
    with pytest.raises(SlurmCommandError):
        cli.queue()
    assert cli.own_jobs_only is None
