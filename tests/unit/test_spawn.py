"""spawn.run: what subprocess.run gave SlurmCLI, kept, on real child processes (sh, cat, sleep)."""

from __future__ import annotations

import os
import time

import pytest

from slurm_dispatch.slurm import spawn

ENV = {"PATH": "/usr/bin:/bin"}


def test_stdin_reaches_the_child_and_both_outputs_come_back_apart() -> None:
    done = spawn.run(["sh", "-c", "cat; echo oops >&2; exit 3"], env=ENV, stdin="hello\n", timeout_s=10)
    assert (done.returncode, done.stdout, done.stderr) == (3, "hello\n", "oops\n")


def test_more_than_a_pipe_holds_goes_both_ways() -> None:
    data = "x" * (1 << 20) + "\n"
    done = spawn.run(["cat"], env=ENV, stdin=data, timeout_s=30)
    assert done.returncode == 0 and done.stdout == data


def test_undecodable_bytes_are_replaced_not_raised() -> None:
    done = spawn.run(["printf", "a\\377b"], env=ENV, timeout_s=10)
    assert done.stdout == "a\ufffdb"


def test_the_program_is_found_on_the_given_path_only() -> None:
    with pytest.raises(FileNotFoundError):
        spawn.run(["true"], env={"PATH": "/nonexistent"}, timeout_s=10)
    with pytest.raises(OSError):
        spawn.run(["/etc/passwd"], env=ENV, timeout_s=10)


def test_a_child_past_its_deadline_is_killed_and_reaped() -> None:
    started = time.monotonic()
    with pytest.raises(spawn.Timeout):
        spawn.run(["sleep", "30"], env=ENV, timeout_s=0.3)
    assert time.monotonic() - started < 5
    with pytest.raises(ChildProcessError):  # nothing is left to reap
        os.waitpid(-1, os.WNOHANG)


def test_a_child_that_closes_its_output_but_hangs_still_meets_the_deadline() -> None:
    with pytest.raises(spawn.Timeout):
        spawn.run(["sh", "-c", "exec >&- 2>&-; sleep 30"], env=ENV, timeout_s=0.3)


def test_a_signal_is_a_negative_exit_status_and_sigpipe_is_the_default() -> None:
    assert spawn.run(["sh", "-c", "kill -TERM $$"], env=ENV, timeout_s=10).returncode == -15
    # with SIGPIPE ignored (Python's setting) `yes | head` would print an error for ever; by default yes just dies
    done = spawn.run(["sh", "-c", "yes | head -c 3; echo; trap"], env=ENV, timeout_s=10)
    assert done.returncode == 0 and done.stdout.startswith("y\ny") and "PIPE" not in done.stdout


def test_the_child_inherits_no_descriptor_but_its_three_pipes() -> None:
    extra = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(extra, True)  # as a descriptor this process inherited would be
    try:
        done = spawn.run(["sh", "-c", "ls /proc/$$/fd"], env=ENV, timeout_s=10)
    finally:
        os.close(extra)
    assert sorted(int(fd) for fd in done.stdout.split()) == [0, 1, 2]


def test_the_environment_is_exactly_the_one_given() -> None:
    done = spawn.run(["sh", "-c", "env"], env={**ENV, "ONLY_THIS": "1"}, timeout_s=10)
    names = {line.split("=", 1)[0] for line in done.stdout.splitlines()}
    assert "ONLY_THIS" in names and "HOME" not in names
