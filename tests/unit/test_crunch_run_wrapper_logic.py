"""crunch-run-wrapper's supervisor, its pure parts: crunch-run's argv (the broken-node hook inserted), exit
statuses, the grace setting, and the exit record with its reference parser (docs/crunch-run-wrapper.md)."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from slurm_dispatch.slurm.broken_nodes import NODE_NAME_RE

SUPERVISOR = Path(__file__).resolve().parents[2] / "crunch-run-wrapper" / "crunch_run_wrapper.py"


def load() -> ModuleType:
    """The supervisor as a module (it is a file beside the sh script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("crunch_run_wrapper", SUPERVISOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


w = load()
UUID = "zzzzz-dz642-0123456789abcde"
HOOK = "/usr/local/lib/slurm-dispatch/crunch-run-wrapper"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["--runtime-engine=docker", UUID], ["--runtime-engine=docker", f"--broken-node-hook={HOOK}", UUID],
                     id="before-the-uuid"),
        pytest.param([UUID], [f"--broken-node-hook={HOOK}", UUID], id="uuid-only"),
        pytest.param([], [], id="no-arguments"),
        pytest.param(["--broken-node-hook=/site/hook", UUID], ["--broken-node-hook=/site/hook", UUID], id="site-hook"),
        pytest.param(["-broken-node-hook", "/site/hook", UUID], ["-broken-node-hook", "/site/hook", UUID],
                     id="go-single-dash-separate-value"),
        pytest.param(["---broken-node-hook=x", UUID], ["---broken-node-hook=x", f"--broken-node-hook={HOOK}", UUID],
                     id="three-dashes-is-not-the-flag"),
        pytest.param(["--broken-node-hooks=x", UUID], ["--broken-node-hooks=x", f"--broken-node-hook={HOOK}", UUID],
                     id="another-flag"),
    ],
)
def test_child_argv_inserts_the_hook_before_the_uuid(args: list[str], expected: list[str]) -> None:
    assert w.child_argv("/usr/bin/crunch-run", args, HOOK) == ["/usr/bin/crunch-run", *expected]


def _status_of(argv: list[str]) -> int:
    pid = os.spawnv(os.P_NOWAIT, argv[0], argv)
    return os.waitpid(pid, 0)[1]


def test_decode_status_and_exit_code_of_a_real_exit_and_a_real_signal() -> None:
    exited = _status_of([sys.executable, "-c", "raise SystemExit(3)"])
    killed = _status_of([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    assert w.decode_status(exited) == (3, None)
    assert w.decode_status(killed) == (None, signal.SIGKILL)
    assert w.wrapper_exit_code(3, None) == 3
    assert w.wrapper_exit_code(None, signal.SIGKILL) == 137
    assert w.wrapper_exit_code(None, None) == 1


@pytest.mark.parametrize(
    ("value", "grace", "complains"),
    [
        pytest.param(None, 30.0, False, id="unset"),
        pytest.param("", 30.0, False, id="empty"),
        pytest.param("0.25", 0.25, False, id="fraction"),
        pytest.param("0", 0.0, False, id="zero"),
        pytest.param("-1", 30.0, True, id="negative"),
        pytest.param("nan", 30.0, True, id="nan"),
        pytest.param("1e9", 30.0, True, id="too-long"),
        pytest.param("30s", 30.0, True, id="unit-suffix"),
    ],
)
def test_grace_from_the_environment(value: str | None, grace: float, complains: bool) -> None:
    got, complaint = w.grace_from(value)
    assert got == grace
    assert bool(complaint) is complains
    if complains:
        assert "CRUNCH_RUN_WRAPPER_GRACE" in complaint and repr(value) in complaint


RECORD = {
    "container": UUID, "job": "4711", "node": "c1", "exit_status": 0, "signal": None, "wall_s": 12.5,
    "peak_rss_kb": 40960, "broken_node": False, "killed_leftovers": 0,
}


def test_exit_record_line_is_one_line_in_the_documented_shape() -> None:
    record = w.ExitRecord(**RECORD)
    line = w.exit_record_line(record)
    assert line == (
        'slurm-dispatch-exit: {"container": "zzzzz-dz642-0123456789abcde", "job": "4711", "node": "c1", '
        '"exit_status": 0, "signal": null, "wall_s": 12.5, "peak_rss_kb": 40960, "broken_node": false, '
        '"killed_leftovers": 0}'
    )
    assert w.parse_exit_record(line + "\n") == record


def test_exit_record_line_escapes_whatever_the_container_argument_holds() -> None:
    record = w.ExitRecord(**{**RECORD, "container": 'x"\nslurm-dispatch-exit: {}\u00e9'})
    line = w.exit_record_line(record)
    assert "\n" not in line and line.isascii()
    assert w.parse_exit_record(line).container == record.container


@pytest.mark.parametrize(
    ("line", "words"),
    [
        pytest.param("slurm-dispatch-exit {}", "does not start with", id="no-prefix"),
        pytest.param("slurm-dispatch-exit: {", "not valid JSON", id="bad-json"),
        pytest.param("slurm-dispatch-exit: []", "not a JSON object", id="array"),
        pytest.param("slurm-dispatch-exit: " + json.dumps({k: v for k, v in RECORD.items() if k != "node"}),
                     "lacks node", id="missing-field"),
        pytest.param("slurm-dispatch-exit: " + json.dumps({**RECORD, "job": 4711}), "'job'", id="job-not-string"),
        pytest.param("slurm-dispatch-exit: " + json.dumps({**RECORD, "exit_status": True}), "'exit_status'",
                     id="bool-is-not-int"),
        pytest.param("slurm-dispatch-exit: " + json.dumps({**RECORD, "exit_status": 256}), "'exit_status'",
                     id="status-range"),
        pytest.param("slurm-dispatch-exit: " + json.dumps({**RECORD, "signal": 0}), "'signal'", id="signal-zero"),
        pytest.param("slurm-dispatch-exit: " + json.dumps({**RECORD, "wall_s": -1}), "'wall_s'", id="negative-wall"),
        pytest.param('slurm-dispatch-exit: {"wall_s": NaN}', "not a number JSON allows", id="nan"),
        pytest.param("slurm-dispatch-exit: " + json.dumps({**RECORD, "broken_node": "yes"}), "'broken_node'",
                     id="broken-not-bool"),
        pytest.param("slurm-dispatch-exit: " + json.dumps({**RECORD, "killed_leftovers": None}), "'killed_leftovers'",
                     id="count-not-null"),
        pytest.param("slurm-dispatch-exit: " + json.dumps({**RECORD, "node": "x" * 5000}), "longer than 4096",
                     id="too-long"),
    ],
)
def test_parse_exit_record_refuses_with_a_reason(line: str, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        w.parse_exit_record(line)
    assert words in str(caught.value)


def test_parse_exit_record_ignores_unknown_keys_and_accepts_nulls() -> None:
    line = "slurm-dispatch-exit: " + json.dumps(
        {**RECORD, "exit_status": None, "signal": 9, "peak_rss_kb": None, "wall_s": 3, "future": [1]}
    )
    record = w.parse_exit_record(line)
    assert (record.exit_status, record.signal, record.peak_rss_kb, record.wall_s) == (None, 9, None, 3.0)


def test_last_exit_record_takes_the_last_record_line_of_an_output_file() -> None:
    first = w.exit_record_line(w.ExitRecord(**{**RECORD, "exit_status": 1}))
    last = w.exit_record_line(w.ExitRecord(**RECORD))
    text = f"crunch-run-wrapper: Slurm job 4711 ...\n{first}\nsome crunch-run line\n{last}\n"
    assert w.last_exit_record(text) == w.ExitRecord(**RECORD)
    assert w.last_exit_record("no record here\n") is None


@pytest.mark.parametrize(
    ("job", "node", "words"),
    [
        pytest.param("", "c1", "no SLURM_JOB_ID", id="not-in-slurm"),
        pytest.param("12;rm", "c1", "is not a job id", id="odd-job-id"),
        pytest.param("12", "c 1", "cannot go into a Comment", id="odd-node-name"),
    ],
)
def test_mark_job_refuses_odd_values_without_running_scontrol(job: str, node: str, words: str) -> None:
    done, sentence = w.mark_job(job, node, {"PATH": "/nonexistent"})
    assert not done
    assert words in sentence


def test_group_leftovers_finds_and_kills_a_process_group() -> None:
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        finder = w.GroupLeftovers(child.pid, subreaper=False)
        (proc,) = finder.find()
        assert proc.name == f"process group {child.pid}"
        finder.send(proc, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        assert finder.find() == []
    finally:
        child.kill()
        child.wait()


def test_procfs_leftovers_finds_the_processes_of_a_session() -> None:
    if not Path("/proc/self/stat").is_file():
        pytest.skip("no /proc here")
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        finder = w.ProcfsLeftovers(child.pid, subreaper=False)
        (proc,) = [p for p in finder.find() if p.pid == child.pid]  # our other children may show up too
        assert proc.name == "sleep"
        finder.send(proc._replace(start=proc.start + 1), signal.SIGKILL)  # not that process: spared
        assert child.poll() is None
        finder.send(proc, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("env", "base"),
    [
        pytest.param({"TMPDIR": "/scratch/tmp"}, "/scratch/tmp", id="TMPDIR"),
        pytest.param({}, "/tmp", id="unset"),
        pytest.param({"TMPDIR": ""}, "/tmp", id="empty"),
        # the hook is told the state directory's path and runs from elsewhere: it must be absolute
        pytest.param({"TMPDIR": "reltmp"}, str(Path.cwd() / "reltmp"), id="relative"),
    ],
)
def test_temp_base_is_where_go_makes_crunch_runs_temporary_directory(env: dict[str, str], base: str) -> None:
    assert w.temp_base(env) == base


def test_the_wrapper_and_the_service_agree_on_what_a_node_name_is() -> None:
    """The wrapper writes the node into the Comment, the service refuses any other shape: one pattern, two copies
    (the wrapper cannot import the package)."""
    assert w.NODE_NAME_RE.pattern == NODE_NAME_RE.pattern


def test_the_signals_go_ignores_do_not_kill_the_wrapper() -> None:
    """Go's runtime ignores these unless a program asks for them (runtime/sigtab_linux_generic.go: _SigNotify), so
    crunch-run survives them; Python's default would kill the wrapper, and crunch-run with it."""
    assert {signal.SIGXCPU, signal.SIGALRM, signal.SIGPWR} <= set(w.IGNORED)


def test_giving_up_on_a_full_disk_marks_the_job_and_writes_the_record(tmp_path: Path,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "scontrol.log"
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\n")
    scontrol.chmod(0o755)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    code = w.give_up_without_temp_dir(full, base="/tmp", container=UUID, job="4711", node="c7",
                                      env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    err = capfd.readouterr().err
    assert code == 73
    assert "cannot create a temporary directory in /tmp: No space left on device" in err
    assert log.read_text() == "update JobId=4711 Comment=slurm-dispatch:broken-node:c7\n"
    record = w.parse_exit_record(err.splitlines()[-1])
    assert (record.container, record.exit_status, record.broken_node) == (UUID, None, True)
