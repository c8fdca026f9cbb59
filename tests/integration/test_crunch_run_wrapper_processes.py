"""crunch-run-wrapper with real processes, no Slurm: it passes stop signals on to crunch-run, kills what crunch-run
leaves running after the grace, ends with the exit record, runs as the broken-node hook, and execs crunch-run
plainly when there is no usable Python.

crunch-run is a stand-in written into the test's directory (below); it records what it saw in STANDIN_DIR. The
tests never touch /var/lock: CRUNCH_RUN_WRAPPER_BROKEN_LOCK points into the test's directory.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from plugins.waiting import wait_until

WRAPPER = Path(__file__).resolve().parents[2] / "crunch-run-wrapper" / "crunch-run-wrapper"
UUID = "zzzzz-dz642-wrapperproc0001"
RECORD_PREFIX = "slurm-dispatch-exit: "
FIELDS = ["container", "job", "node", "exit_status", "signal", "wall_s", "peak_rss_kb", "broken_node",
          "killed_leftovers"]

STANDIN = r'''
"""crunch-run stand-in: records argv, environment and signals in $STANDIN_DIR; $STANDIN_MODE says what to do."""
import json, os, signal, subprocess, sys, time

d = os.environ["STANDIN_DIR"]
mode = os.environ.get("STANDIN_MODE", "exit")
code = int(os.environ.get("STANDIN_CODE", "0"))


def put(name, text):
    with open(os.path.join(d, name + ".tmp"), "w") as f:
        f.write(text)
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))


put("argv.json", json.dumps(sys.argv[1:]))
put("pid", str(os.getpid()))
put("env.json", json.dumps({k: v for k, v in os.environ.items() if k.startswith("CRUNCH_RUN_WRAPPER_")}))
stops = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT]
users = [signal.SIGUSR1, signal.SIGUSR2]
signal.pthread_sigmask(signal.SIG_BLOCK, stops + users)
if os.environ.get("STANDIN_ORPHAN"):
    # a grandchild in a session of its own that ignores TERM and outlives us (or exits after STANDIN_ORPHAN s)
    subprocess.Popen([sys.executable, "-c", (
        "import os, signal, sys, time\n"
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
        "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "time.sleep(float(sys.argv[2]))\n"), os.path.join(d, "grandchild"), os.environ["STANDIN_ORPHAN"]],
        start_new_session=True)
    while not os.path.exists(os.path.join(d, "grandchild")):
        time.sleep(0.01)
put("ready", "")
if mode == "wait":
    got = signal.sigwait(stops)
    put("signal", signal.Signals(got).name)
    sys.exit(code)
if mode == "usr":  # like Go's crunch-run, act on USR1 and USR2; record them, and exit after USR2
    got = []
    while signal.SIGUSR2 not in got:
        got.append(signal.sigwait(users))
        put("usr", " ".join(signal.Signals(g).name for g in got))
    sys.exit(code)
if mode == "kill-self":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "hook":
    hook = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--broken-node-hook=")][-1]
    put("hook-status", str(subprocess.call([hook])))
if mode == "lock":
    open(os.environ["CRUNCH_RUN_WRAPPER_BROKEN_LOCK"], "w").close()
sys.exit(code)
'''

SCONTROL = """#!/bin/sh
printf '%s\\n' "$*" >> '{log}'
[ -z "$SCONTROL_FAIL" ] && exit 0
echo "slurm_update error: $SCONTROL_FAIL" >&2
exit 1
"""


@functools.cache
def interpreters() -> dict[str, str]:
    """Python interpreters on this machine by kind: "psutil", "no-psutil", "3.6" (each only if found)."""
    probe = "import sys, importlib.util; print(sys.version_info >= (3, 6), bool(importlib.util.find_spec('psutil')))"
    found: dict[str, str] = {}
    for candidate in [sys.executable, shutil.which("python3"), "/usr/bin/python3", "/usr/local/bin/python3"]:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        out = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, check=False).stdout.split()
        if out[:1] == ["True"]:
            found.setdefault("psutil" if out[1:] == ["True"] else "no-psutil", candidate)
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    old = sorted(glob.glob(f"{pyenv}/versions/3.6*/bin/python3"))
    if old:
        found["3.6"] = old[-1]
    return found


def python(kind: str) -> str:
    """The interpreter of that kind, or skip the test."""
    if kind not in interpreters():
        pytest.skip(f"no {kind} Python on this machine")
    return interpreters()[kind]


@dataclass
class Run:
    """One finished run of the wrapper."""

    code: int
    stderr: str
    seconds: float
    standin: Path

    @property
    def record(self) -> dict[str, Any]:
        """The exit record: the last line of stderr, parsed as docs/crunch-run-wrapper.md says."""
        last = self.stderr.splitlines()[-1]
        assert last.startswith(RECORD_PREFIX), self.stderr
        record = json.loads(last[len(RECORD_PREFIX):])
        assert list(record) == FIELDS
        return record  # type: ignore[no-any-return]

    def seen(self, name: str) -> str:
        """What the stand-in recorded under ``name``."""
        return (self.standin / name).read_text()


@dataclass
class Site:
    """A compute node in the test's directory: the stand-in crunch-run, a stub scontrol, the environment."""

    tmp: Path
    env: dict[str, str]

    @property
    def scontrol_calls(self) -> list[str]:
        """The argument lists the stub scontrol was called with, one string each."""
        log = self.tmp / "scontrol.log"
        return log.read_text().splitlines() if log.exists() else []

    def start(self, args: list[str] | None = None, **env: str) -> tuple[subprocess.Popen[str], float]:
        """Start the wrapper (blocks only to fork)."""
        argv = [str(WRAPPER), *(["--runtime-engine=docker", UUID] if args is None else args)]
        proc = subprocess.Popen(argv, env={**self.env, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, cwd=self.tmp)
        return proc, time.monotonic()

    def finish(self, started: tuple[subprocess.Popen[str], float]) -> Run:
        """Wait for a started wrapper to exit (at most 30 s); return what it did."""
        proc, began = started
        _, err = proc.communicate(timeout=30)
        return Run(code=proc.returncode, stderr=err, seconds=time.monotonic() - began, standin=self.tmp / "standin")

    def run(self, args: list[str] | None = None, **env: str) -> Run:
        """Run the wrapper to its end."""
        return self.finish(self.start(args, **env))

    def ready(self) -> None:
        """Wait until the stand-in has its signal handling in place."""
        wait_until(lambda: (self.tmp / "standin" / "ready").exists(), timeout=20, what="the stand-in to start")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    standin = tmp_path / "crunch-run"
    standin.write_text(f"#!{sys.executable}\n{STANDIN}")
    standin.chmod(0o755)
    (tmp_path / "standin").mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(SCONTROL.format(log=tmp_path / "scontrol.log"))
    scontrol.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "TMPDIR": str(tmp_path),
        "CRUNCH_RUN_REAL": str(standin),
        "ARVADOS_API_HOST": "api.example:443",
        "ARVADOS_API_TOKEN": "test-token-never-printed",
        "SLURM_JOB_ID": "4711",
        "SLURMD_NODENAME": "c7",
        "CRUNCH_RUN_WRAPPER_PYTHON": python("psutil") if "psutil" in interpreters() else python("no-psutil"),
        "CRUNCH_RUN_WRAPPER_GRACE": "0.3",
        "CRUNCH_RUN_WRAPPER_BROKEN_LOCK": str(tmp_path / "crunch-run-broken"),
        "STANDIN_DIR": str(tmp_path / "standin"),
    }
    yield Site(tmp=tmp_path, env=env)
    pid_file = tmp_path / "standin" / "grandchild"
    if pid_file.exists():  # never leave a stray grandchild behind, whatever the test said
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie is not running)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# --- signals ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["psutil", "no-psutil", "3.6"])
def test_term_reaches_crunch_run_and_its_status_is_the_wrappers(site: Site, kind: str) -> None:
    started = site.start(CRUNCH_RUN_WRAPPER_PYTHON=python(kind), STANDIN_MODE="wait", STANDIN_CODE="7")
    site.ready()
    started[0].send_signal(signal.SIGTERM)
    run = site.finish(started)
    assert run.seen("signal") == "SIGTERM"
    assert run.code == 7
    assert "got SIGTERM; passed SIGTERM to crunch-run (pid " in run.stderr
    assert run.record["exit_status"] == 7 and run.record["signal"] is None


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        pytest.param(signal.SIGINT, "SIGINT", id="INT"),
        pytest.param(signal.SIGHUP, "SIGTERM", id="HUP-as-TERM"),
        pytest.param(signal.SIGQUIT, "SIGQUIT", id="QUIT"),
    ],
)
def test_other_stop_signals_reach_crunch_run(site: Site, sent: signal.Signals, received: str) -> None:
    started = site.start(STANDIN_MODE="wait")
    site.ready()
    started[0].send_signal(sent)
    run = site.finish(started)
    assert run.seen("signal") == received
    assert run.code == 0


@pytest.mark.parametrize("kind", ["psutil", "3.6"])
def test_usr1_and_usr2_reach_crunch_run_and_other_signals_are_ignored(site: Site, kind: str) -> None:
    """crunch-run saves its logs on USR1 and reloads prices on USR2; the wrapper must survive them and pass them
    on, and must survive the signals that kill by default but that Go's crunch-run only catches."""
    started = site.start(CRUNCH_RUN_WRAPPER_PYTHON=python(kind), STANDIN_MODE="usr", STANDIN_CODE="4",
                         STANDIN_ORPHAN="3", CRUNCH_RUN_WRAPPER_GRACE="20")
    site.ready()
    usr = site.tmp / "standin" / "usr"
    started[0].send_signal(signal.SIGUSR1)
    wait_until(lambda: usr.exists() and usr.read_text() == "SIGUSR1", timeout=10, what="crunch-run to get SIGUSR1")
    realtime = signal.SIGRTMIN + 6
    for sig in (signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO, signal.SIGPWR, realtime):
        started[0].send_signal(sig)
    time.sleep(0.2)  # the wrapper survived them (it did not end crunch-run with itself)
    assert started[0].poll() is None
    started[0].send_signal(signal.SIGUSR2)
    run = site.finish(started)
    assert run.seen("usr") == "SIGUSR1 SIGUSR2"
    assert run.code == 4, run.stderr
    assert "got SIGUSR1; passed SIGUSR1 to crunch-run (pid " in run.stderr
    assert "got SIGALRM; ignored, as crunch-run would" in run.stderr
    assert f"got signal {realtime}; ignored, as crunch-run would" in run.stderr
    assert "they get 20 s to exit" in run.stderr  # USR1/USR2 do not ask the job to stop: the full grace


def test_crunch_run_killed_by_a_signal_gives_128_plus_it(site: Site) -> None:
    run = site.run(STANDIN_MODE="kill-self")
    assert run.code == 128 + signal.SIGKILL
    assert (run.record["exit_status"], run.record["signal"]) == (None, signal.SIGKILL)
    assert "crunch-run was killed by SIGKILL" in run.stderr


# --- leftovers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["psutil", "no-psutil", "3.6"])
def test_what_crunch_run_leaves_running_is_killed_after_the_grace(site: Site, kind: str) -> None:
    run = site.run(CRUNCH_RUN_WRAPPER_PYTHON=python(kind), STANDIN_ORPHAN="3600", STANDIN_MODE="exit")
    grandchild = int(run.seen("grandchild"))
    wait_until(lambda: not alive(grandchild), timeout=10, what=f"grandchild {grandchild} to be gone")
    assert run.code == 0
    assert run.record["killed_leftovers"] == 1
    assert f"sending SIGKILL to {grandchild} (python" in run.stderr  # it ignored the SIGTERM


def test_a_leftover_that_ends_within_the_grace_is_left_alone(site: Site) -> None:
    run = site.run(CRUNCH_RUN_WRAPPER_GRACE="20", STANDIN_ORPHAN="0.3", STANDIN_MODE="exit")
    assert run.record["killed_leftovers"] == 0
    assert "they get 20 s to exit" in run.stderr
    assert run.seconds < 15  # the wrapper stopped waiting when the grandchild ended, long before the grace


def test_after_a_stop_signal_leftovers_get_a_short_grace(site: Site) -> None:
    started = site.start(CRUNCH_RUN_WRAPPER_GRACE="60", STANDIN_ORPHAN="3600", STANDIN_MODE="wait")
    site.ready()
    started[0].send_signal(signal.SIGTERM)
    run = site.finish(started)  # the 60 s grace would time this out: Slurm's KillWait is running
    assert run.record["killed_leftovers"] == 1
    assert "they get 1 s to exit" in run.stderr


# --- crunch-run that is the wrapper again ----------------------------------------------------------------------


def run_bounded(argv: list[str], env: dict[str, str], *, seconds: float = 10) -> subprocess.CompletedProcess[str]:
    """Run the wrapper, failing the test if it has not exited after ``seconds``: a wrapper that starts itself runs
    for ever. Killing it kills the whole chain: each crunch-run dies with its supervisor (PR_SET_PDEATHSIG)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the wrapper was still running after {seconds} s (it starts itself?):\n{err[-2000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, "", err)


@pytest.mark.parametrize("python_env", [None, "none"], ids=["supervised", "plain-exec"])
def test_crunch_run_on_path_that_is_a_symlink_to_the_wrapper_is_refused(site: Site, tmp_path: Path,
                                                                         python_env: str | None) -> None:
    bin_dir = tmp_path / "bin"
    (bin_dir / "crunch-run").symlink_to(WRAPPER)
    env = {k: v for k, v in site.env.items() if k != "CRUNCH_RUN_REAL"}
    if python_env:
        env["CRUNCH_RUN_WRAPPER_PYTHON"] = python_env
    done = run_bounded([str(WRAPPER), "--runtime-engine=docker", UUID], env)
    assert done.returncode == 127, done.stderr
    assert (f"crunch-run ('crunch-run', {bin_dir}/crunch-run) on node c7 is this wrapper; set CRUNCH_RUN_REAL in "
            "Containers.SLURM.SbatchEnvironmentVariables to the real crunch-run's path") in done.stderr
    assert not (tmp_path / "standin" / "argv.json").exists()


def test_crunch_run_real_naming_the_wrapper_is_refused(site: Site) -> None:
    done = run_bounded([str(WRAPPER), "--runtime-engine=docker", UUID], {**site.env, "CRUNCH_RUN_REAL": str(WRAPPER)})
    assert done.returncode == 127, done.stderr
    assert "is this wrapper; set CRUNCH_RUN_REAL" in done.stderr


@pytest.mark.parametrize("python_env", [None, "none"], ids=["supervised", "plain-exec"])
def test_a_copy_of_the_wrapper_installed_as_crunch_run_is_refused(site: Site, tmp_path: Path,
                                                                  python_env: str | None) -> None:
    """A copy is not the wrapper's path, so only the variable the wrapper sets for what it starts can tell."""
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(WRAPPER, copy / "crunch-run")
    shutil.copy(WRAPPER.with_name("crunch_run_wrapper.py"), copy)
    env = {**site.env, "CRUNCH_RUN_REAL": str(copy / "crunch-run")}
    if python_env:
        env["CRUNCH_RUN_WRAPPER_PYTHON"] = python_env
    done = run_bounded([str(WRAPPER), "--runtime-engine=docker", UUID], env)
    assert done.returncode == 127, done.stderr
    assert ("on node c7 runs this wrapper again instead of crunch-run; set CRUNCH_RUN_REAL in "
            "Containers.SLURM.SbatchEnvironmentVariables") in done.stderr


def test_crunch_run_gets_the_wrappers_guard_variable(site: Site) -> None:
    run = site.run(STANDIN_MODE="exit")
    assert json.loads(run.seen("env.json"))["CRUNCH_RUN_WRAPPER_ACTIVE"] == "1"


# --- the exit record -------------------------------------------------------------------------------------------


def test_exit_record_is_the_last_line_and_says_everything(site: Site) -> None:
    run = site.run(STANDIN_MODE="exit", STANDIN_CODE="3")
    record = run.record
    assert run.code == 3
    assert record["container"] == UUID
    assert record["job"] == "4711"
    assert record["node"] == "c7"
    assert record["exit_status"] == 3
    assert record["signal"] is None
    assert isinstance(record["wall_s"], float) and 0 < record["wall_s"] < run.seconds
    assert isinstance(record["peak_rss_kb"], int) and 1000 < record["peak_rss_kb"] < 10_000_000  # a Python child
    assert record["broken_node"] is False
    assert record["killed_leftovers"] == 0
    assert run.stderr.count(RECORD_PREFIX) == 1
    assert "test-token-never-printed" not in run.stderr
    assert json.loads(run.seen("argv.json")) == ["--runtime-engine=docker", f"--broken-node-hook={WRAPPER}", UUID]


def test_exit_record_when_crunch_run_cannot_start(site: Site, tmp_path: Path) -> None:
    no_interpreter = tmp_path / "no-interpreter"
    no_interpreter.write_text("#!/nonexistent/interpreter\n")
    no_interpreter.chmod(0o755)
    run = site.run(CRUNCH_RUN_REAL=str(no_interpreter))
    assert run.code == 127
    assert f"cannot start {no_interpreter}" in run.stderr
    assert (run.record["exit_status"], run.record["signal"], run.record["peak_rss_kb"]) == (None, None, None)


# --- no temporary directory ------------------------------------------------------------------------------------


def test_without_a_usable_tmpdir_crunch_run_is_not_started(site: Site, tmp_path: Path) -> None:
    """crunch-run would fail to make its own temporary directory there (Go's os.TempDir: $TMPDIR, else /tmp)."""
    missing = tmp_path / "no-such-dir"
    run = site.run(TMPDIR=str(missing))
    assert run.code == 73, run.stderr
    assert (f"cannot create a temporary directory in {missing}: No such file or directory; not starting "
            "crunch-run, which needs one there too") in run.stderr
    assert "internal error" not in run.stderr
    assert not (run.standin / "argv.json").exists()
    assert (run.record["exit_status"], run.record["broken_node"]) == (None, False)
    assert site.scontrol_calls == []


def test_a_full_tmpdir_marks_the_node_broken(site: Site, tmp_path: Path) -> None:
    """A tmpfs with no inode left gives the wrapper's mkdir ENOSPC, which crunch-run's list calls a broken node."""
    full = tmp_path / "full"
    full.mkdir()
    unshare = shutil.which("unshare")
    mount = "mount -t tmpfs -o size=4k,nr_inodes=1 tmpfs \"$TMPDIR\""
    probe = subprocess.run([unshare or "unshare", "-m", "sh", "-c", mount], env={**site.env, "TMPDIR": str(full)},
                           capture_output=True, text=True, check=False) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a mount namespace here: {probe.stderr.strip() if probe else 'no unshare'}")
    proc = subprocess.run([unshare, "-m", "sh", "-c", f'{mount} && exec "$0" "$@"', str(WRAPPER),
                           "--runtime-engine=docker", UUID], env={**site.env, "TMPDIR": str(full)},
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 73, proc.stderr
    assert f"cannot create a temporary directory in {full}: No space left on device" in proc.stderr
    assert "node c7 has no space left in" in proc.stderr
    assert site.scontrol_calls == ["update JobId=4711 Comment=slurm-dispatch:broken-node:c7"]
    last = proc.stderr.splitlines()[-1]
    assert json.loads(last[len(RECORD_PREFIX):])["broken_node"] is True
    assert not (site.tmp / "standin" / "argv.json").exists()


# --- broken nodes ----------------------------------------------------------------------------------------------


def test_hook_mode_marks_the_job_and_tells_the_supervisor(site: Site, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    run = site.run([], CRUNCH_RUN_WRAPPER_HOOK="1", CRUNCH_RUN_WRAPPER_STATE=str(state))
    assert run.code == 0, run.stderr
    assert site.scontrol_calls == ["update JobId=4711 Comment=slurm-dispatch:broken-node:c7"]
    assert sorted(p.name for p in state.iterdir()) == ["broken-node", "comment-set"]
    assert RECORD_PREFIX not in run.stderr  # no record
    assert "for container" not in run.stderr  # no pre-flight line: the hook is not a job


def test_hook_mode_refuses_a_state_directory_others_may_write(site: Site, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    run = site.run([], CRUNCH_RUN_WRAPPER_HOOK="1", CRUNCH_RUN_WRAPPER_STATE=str(state))
    assert run.code == 0  # the Comment was set
    assert "is not a private directory of ours" in run.stderr
    assert list(state.iterdir()) == []
    assert len(site.scontrol_calls) == 1


def test_broken_node_hook_through_crunch_run(site: Site) -> None:
    run = site.run(STANDIN_MODE="hook", STANDIN_CODE="1")
    assert run.seen("hook-status") == "0"
    assert json.loads(run.seen("env.json"))["CRUNCH_RUN_WRAPPER_HOOK"] == "1"
    assert run.code == 1
    assert run.record["broken_node"] is True
    assert site.scontrol_calls == ["update JobId=4711 Comment=slurm-dispatch:broken-node:c7"]  # once, by the hook
    assert "crunch-run found node c7 broken: its broken-node hook ran" in run.stderr


def test_a_failed_comment_in_the_hook_is_tried_again_by_the_supervisor(site: Site) -> None:
    run = site.run(STANDIN_MODE="hook", STANDIN_CODE="1", SCONTROL_FAIL="Invalid job id specified")
    assert run.record["broken_node"] is True
    assert site.scontrol_calls == ["update JobId=4711 Comment=slurm-dispatch:broken-node:c7"] * 2
    assert "failed (exit 1): slurm_update error: Invalid job id specified" in run.stderr


def test_lock_file_from_crunch_run_without_the_hook(site: Site) -> None:
    run = site.run(["--broken-node-hook=", UUID], STANDIN_MODE="lock", STANDIN_CODE="1")
    assert json.loads(run.seen("argv.json")) == ["--broken-node-hook=", UUID]  # the site's own flag is kept
    assert run.record["broken_node"] is True
    assert site.scontrol_calls == ["update JobId=4711 Comment=slurm-dispatch:broken-node:c7"]
    assert f"crunch-run found node c7 broken: it created {site.tmp}/crunch-run-broken" in run.stderr


def _other_file(tmp_path: Path) -> Path:
    other = tmp_path / "someone-elses-file"
    other.touch()
    return other


@pytest.mark.parametrize(
    ("make", "words"),
    [
        pytest.param(lambda lock, tmp: (lock.touch(), os.utime(lock, (time.time() - 3600,) * 2)),
                     "was there before this job started (modified ", id="older-than-the-job"),
        pytest.param(lambda lock, tmp: lock.symlink_to(_other_file(tmp)), "is not a regular file (a symlink?)",
                     id="symlink"),
        pytest.param(lambda lock, tmp: os.link(_other_file(tmp), lock), "has 2 links (a hard link to another file?)",
                     id="hard-link"),
        pytest.param(lambda lock, tmp: (lock.touch(), os.chown(lock, 65534, 65534)),
                     "belongs to uid 65534, neither root nor this job's user", id="another-users"),
    ],
)
def test_a_lock_file_crunch_run_did_not_create_does_not_count(site: Site, tmp_path: Path, make: Any,
                                                               words: str) -> None:
    """/var/lock is world-writable (1777) on Debian: any local user could otherwise get every job on the node
    reported broken, and the node excluded or drained."""
    if "belongs to uid" in words and os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    make(tmp_path / "crunch-run-broken", tmp_path)
    run = site.run(STANDIN_MODE="exit")
    assert run.code == 0
    assert run.record["broken_node"] is False, run.stderr
    assert words in run.stderr and "not counted" in run.stderr
    assert site.scontrol_calls == []


# --- without Python --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python_env", "why"),
    [
        pytest.param(None, "no python3 on this node", id="no-python3-on-PATH"),
        pytest.param("none", "CRUNCH_RUN_WRAPPER_PYTHON=none", id="turned-off"),
        pytest.param("OLD", "is not Python 3.6 or later", id="too-old"),
    ],
)
def test_without_python_it_execs_crunch_run(site: Site, tmp_path: Path, python_env: str | None, why: str) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**site.env, "PATH": str(empty)}  # nothing at all on PATH, python3 least of all
    del env["CRUNCH_RUN_WRAPPER_PYTHON"]
    if python_env == "OLD":
        old = empty / "python2"
        old.write_text("#!/bin/sh\nexit 1\n")
        old.chmod(0o755)
        env["CRUNCH_RUN_WRAPPER_PYTHON"] = str(old)
    elif python_env:
        env["CRUNCH_RUN_WRAPPER_PYTHON"] = python_env
    proc = subprocess.run([str(WRAPPER), "--runtime-engine=docker", UUID], env={**env, "STANDIN_CODE": "5"},
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 5
    assert json.loads((site.tmp / "standin" / "argv.json").read_text()) == ["--runtime-engine=docker", UUID]
    assert "running crunch-run unsupervised (" in proc.stderr and why in proc.stderr
    assert RECORD_PREFIX not in proc.stderr


def test_plain_exec_keeps_the_wrappers_process(site: Site, tmp_path: Path) -> None:
    started = site.start(CRUNCH_RUN_WRAPPER_PYTHON="none", STANDIN_MODE="wait", STANDIN_CODE="9")
    site.ready()
    assert int(site.tmp.joinpath("standin", "pid").read_text()) == started[0].pid  # exec'd: same process
    started[0].send_signal(signal.SIGTERM)
    run = site.finish(started)
    assert run.seen("signal") == "SIGTERM"
    assert run.code == 9


def test_pre_flight_says_when_crunch_run_is_not_executable(site: Site, tmp_path: Path) -> None:
    plain_file = tmp_path / "not-executable"
    plain_file.write_text("")
    run = site.run(CRUNCH_RUN_REAL=str(plain_file))
    assert run.code == 126
    assert f"{plain_file} on node c7 is not executable by " in run.stderr


@pytest.mark.parametrize(
    ("settings", "environment", "missing"),
    [
        pytest.param("# comment\nARVADOS_API_HOST = api.example:443 \r\n\tARVADOS_API_TOKEN=file-token-never-printed\n",
                     {}, "", id="both-in-the-file"),
        pytest.param("ARVADOS_API_TOKEN=file-token-never-printed\n", {"ARVADOS_API_HOST": "h"}, "", id="one-each"),
        pytest.param("ARVADOS_API_HOST=h\n", {}, " ARVADOS_API_TOKEN", id="token-nowhere"),
        pytest.param("ARVADOS_API_HOST=h\nARVADOS_API_TOKEN=t\nARVADOS_API_TOKEN = \n", {}, " ARVADOS_API_TOKEN",
                     id="the-last-line-wins"),
        pytest.param("ARVADOS_API_HOST=h\nARVADOS_API_TOKEN=t\n", {"ARVADOS_API_HOST": ""}, " ARVADOS_API_HOST",
                     id="an-empty-variable-wins"),
        pytest.param("# ARVADOS_API_HOST=h\nXARVADOS_API_TOKEN=t\n", {}, " ARVADOS_API_HOST ARVADOS_API_TOKEN",
                     id="not-lines-crunch-run-reads"),
    ],
)
def test_pre_flight_accepts_what_crunch_run_reads_from_settings_conf(site: Site, tmp_path: Path, settings: str,
                                                                      environment: dict[str, str],
                                                                      missing: str) -> None:
    """crunch-run takes ARVADOS_* from $HOME/.config/arvados/settings.conf when the environment lacks them
    (sdk/go/arvados/client.go: NewClientFromEnv), so the wrapper must not refuse such a job."""
    home = tmp_path / "home"
    (home / ".config" / "arvados").mkdir(parents=True)
    (home / ".config" / "arvados" / "settings.conf").write_text(settings)
    env = {k: v for k, v in site.env.items() if not k.startswith("ARVADOS_API_")}
    proc = subprocess.run([str(WRAPPER), "--runtime-engine=docker", UUID], env={**env, **environment, "HOME": str(home)},
                          capture_output=True, text=True, timeout=30, check=False)
    assert "never-printed" not in proc.stderr
    if missing:
        assert proc.returncode == 78, proc.stderr
        assert f"the job's environment lacks{missing}, and {home}/.config/arvados/settings.conf does not" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert (site.tmp / "standin" / "argv.json").exists()


def test_crunch_run_dies_with_a_wrapper_killed_by_sigkill(site: Site) -> None:
    """crunch-run runs in a session of its own, out of sight of Slurm's proctrack/pgid: when the wrapper is killed
    (Slurm's SIGKILL after KillWait), crunch-run must die with it, as Go's crunch-run, the batch process, does."""
    started = site.start(STANDIN_MODE="wait")
    site.ready()
    child = int((site.tmp / "standin" / "pid").read_text())
    assert alive(child)
    started[0].kill()
    started[0].communicate(timeout=30)
    wait_until(lambda: not alive(child), timeout=10, what="crunch-run to die with the wrapper")
