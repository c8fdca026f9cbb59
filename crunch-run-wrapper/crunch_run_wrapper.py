#!/usr/bin/env python3
"""crunch-run-wrapper's supervisor: runs crunch-run as its child, passes the job's stop signals on to it,
cleans up what it leaves running, marks the job when crunch-run finds the node broken, and ends with one exit
record.

The sh script ``crunch-run-wrapper`` beside this file starts it after its pre-flight checks, when a Python 3.6
or later is on the node::

    python3 crunch_run_wrapper.py supervise <crunch-run path> <wrapper path> [crunch-run arguments...]

and again when crunch-run runs its broken-node hook (the wrapper with no arguments, CRUNCH_RUN_WRAPPER_HOOK
set)::

    python3 crunch_run_wrapper.py hook

Standard library only; psutil, when it can be imported, finds leftover processes. docs/crunch-run-wrapper.md
describes the behaviour, the exit record and the Comment mark; ``parse_exit_record`` and ``last_exit_record``
are a reference parser of the exit record, for a site's script that reads the jobs' output files (slurm-dispatch
itself does not read it).

This file must keep running on Python 3.6 (the platform Python of RHEL 8 compute nodes): no
``from __future__ import annotations``, no dataclasses, no ``subprocess.run(capture_output=...)``.
"""

import ctypes
import errno
import json
import math
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

try:
    import psutil
except ImportError:  # optional: the /proc table, else the process group, stands in for it
    psutil = None  # type: ignore[assignment]

ME = "crunch-run-wrapper"

RECORD_PREFIX = "slurm-dispatch-exit: "
"""What the exit record line starts with; a JSON object follows on the same line."""
RECORD_MAX_CHARS = 4096
"""The parser refuses longer lines: a real record is about 250 characters."""
COMMENT_PREFIX = "slurm-dispatch:broken-node:"
"""The job's Comment once crunch-run found its node broken: this prefix, then the node's name."""

HOOK_ENV = "CRUNCH_RUN_WRAPPER_HOOK"
"""Set (to 1) for crunch-run: the wrapper run with no arguments and this set is the broken-node hook."""
STATE_ENV = "CRUNCH_RUN_WRAPPER_STATE"
"""Set for crunch-run: the supervisor's private directory, where the hook drops its markers."""
ACTIVE_ENV = "CRUNCH_RUN_WRAPPER_ACTIVE"
"""Set (to 1) for crunch-run; the sh script refuses to run crunch-run when it finds it set already: that crunch-run
is the wrapper again (a copy installed as crunch-run), which would start itself without end."""
GRACE_ENV = "CRUNCH_RUN_WRAPPER_GRACE"
LOCK_ENV = "CRUNCH_RUN_WRAPPER_BROKEN_LOCK"
"""Overrides BROKEN_LOCK; for tests, which must not touch the host's /var/lock."""

BROKEN_LOCK = "/var/lock/crunch-run-broken"
"""What crunch-run creates when it finds the node broken and has no hook (lib/crunchrun/crunchrun.go:
ContainerRunner.runBrokenNodeHook, lockdir + brokenfile): an empty file, opened with O_CREATE and never written,
so one left there by an earlier job keeps its old modification time. crunch-run itself only reads it in
``crunch-run --list`` (lib/crunchrun/background.go: ListProcesses), the cloud dispatcher's probe."""
LOCK_CLOCK_SLACK_S = 1.0
"""File times come from the kernel's coarse clock, up to a tick behind time.time(): a lock file crunch-run
creates just after the supervisor started may look that much older than the start."""
MARK_BROKEN = "broken-node"
"""The hook's marker in the state directory: crunch-run ran the hook."""
MARK_COMMENT = "comment-set"
"""The hook's marker once scontrol took the Comment, so that the supervisor does not set it again."""

DEFAULT_GRACE_S = 30.0
"""How long what crunch-run leaves running gets to exit on its own after crunch-run has exited."""
MAX_GRACE_S = 3600.0
SIGNALLED_GRACE_S = 1.0
"""The grace (and the time from SIGTERM to SIGKILL) once the job was told to stop: Slurm's KillWait (30 s by
default) may be running, and the exit record must be written before Slurm's SIGKILL."""
TERM_TO_KILL_S = 5.0
"""After the grace, leftovers get SIGTERM, then SIGKILL this long (at most the grace) later."""
KILL_WAIT_S = 2.0
"""How long to wait for SIGKILLed leftovers to disappear."""
NO_TEMP_DIR_EXIT = 73
"""The wrapper's exit code when it cannot create its temporary directory, so crunch-run was not started
(EX_CANTCREAT of sysexits.h)."""
INTERNAL_ERROR_EXIT = 70
"""The wrapper's exit code after an error of its own it did not foresee (EX_SOFTWARE of sysexits.h)."""
SCONTROL_TIMEOUT_S = 10.0
POLL_S = 0.05
PR_SET_CHILD_SUBREAPER = 36
"""prctl(2) option (linux/prctl.h): orphans of crunch-run's tree come to us instead of to init."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
"""The signals that tell the job to stop (scancel, Slurm's time limit); after one, leftovers get a short grace."""
FORWARD = {  # type: Dict[int, int]
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGINT: signal.SIGINT,
    # crunch-run stops its container on TERM, INT and QUIT; on HUP, Go's default would kill it outright,
    # leaving the container running and its logs unsaved: HUP reaches it as TERM.
    signal.SIGHUP: signal.SIGTERM,
    signal.SIGQUIT: signal.SIGQUIT,
    # crunch-run saves its log collection now on USR1 (lib/crunchrun/crunchrun.go: updateLogs) and reloads
    # instance prices on USR2 (handleSIGUSR2); Python's default would kill the wrapper, and crunch-run with it.
    signal.SIGUSR1: signal.SIGUSR1,
    signal.SIGUSR2: signal.SIGUSR2,
}
"""Signal the wrapper gets → signal crunch-run gets."""


def _ignored_signals() -> List[int]:
    names = ["SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGXCPU"]
    found = [int(getattr(signal, name)) for name in names if hasattr(signal, name)]
    if hasattr(signal, "SIGRTMIN") and hasattr(signal, "SIGRTMAX"):
        found.extend(range(int(signal.SIGRTMIN), int(signal.SIGRTMAX) + 1))
    return sorted(set(found) - set(FORWARD))


IGNORED = _ignored_signals()
"""Signals whose default would kill the wrapper (and so crunch-run: die_with) that a site may still send, with
`scancel --signal` or `sbatch --signal=B:...`: the wrapper only says it got them. A Go program such as crunch-run
catches them and takes no action (Go's src/os/signal/doc.go, "Default behavior of signals in Go programs"; not
SIGSTKFLT, which it dies of), so ignoring them is what the job would do without the wrapper."""

NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
"""What may follow COMMENT_PREFIX: a Slurm node name, nothing that could confuse a reader of the Comment."""
JOB_ID_RE = re.compile(r"[0-9]{1,12}\Z")


def say(message: str) -> None:
    """Write one line to stderr (the job's output file) in one write(2); safe inside a signal handler."""
    try:
        os.write(2, f"{ME}: {message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


# --- pure parts -------------------------------------------------------------------------------------------


class ExitRecord(NamedTuple):
    """What the exit record line says; docs/crunch-run-wrapper.md defines each field."""

    container: str
    job: str
    node: str
    exit_status: Optional[int]
    signal: Optional[int]
    wall_s: float
    peak_rss_kb: Optional[int]
    broken_node: bool
    killed_leftovers: int


def exit_record_line(record: ExitRecord) -> str:
    """Return the exit record's line (without newline): the prefix, then ASCII JSON in field order. Pure."""
    return RECORD_PREFIX + json.dumps(dict(record._asdict()), ensure_ascii=True, allow_nan=False)


def _field_error(name: str, value: Any, want: str) -> ValueError:
    return ValueError(f"exit record field {name!r} is {json.dumps(value)[:40]}, expected {want}")


def _int_field(data: Dict[str, Any], name: str, *, low: int, high: int, nullable: bool) -> Optional[int]:
    value = data[name]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _field_error(name, value, f"an integer in {low}..{high}" + (" or null" if nullable else ""))
    return value


def _count_field(data: Dict[str, Any], name: str) -> int:
    value = _int_field(data, name, low=0, high=2**31, nullable=False)
    return 0 if value is None else value


def parse_exit_record(line: str) -> ExitRecord:
    """Return the ExitRecord an exit record line says. Pure.

    A trailing newline is allowed; keys other than the nine fields are ignored.

    Raises:
        ValueError: the line is too long, lacks the prefix, is not a JSON object, or a field is missing or
            has the wrong type or range; the message names the field.
    """
    text = line.rstrip("\r\n")
    if len(text) > RECORD_MAX_CHARS:
        raise ValueError(f"exit record longer than {RECORD_MAX_CHARS} characters")
    if not text.startswith(RECORD_PREFIX):
        raise ValueError(f"not an exit record: the line does not start with {RECORD_PREFIX!r}")

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        data = json.loads(text[len(RECORD_PREFIX):], parse_constant=refuse_constant)
    except ValueError as exc:
        raise ValueError(f"exit record is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("exit record is not a JSON object")  # noqa: TRY004 - one error type for any bad line
    missing = [name for name in ExitRecord._fields if name not in data]
    if missing:
        raise ValueError("exit record lacks " + ", ".join(missing))
    for name in ("container", "job", "node"):
        if not isinstance(data[name], str):
            raise _field_error(name, data[name], "a string")
    wall = data["wall_s"]
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not 0 <= wall < 1e10:
        raise _field_error("wall_s", wall, "a number of seconds >= 0")
    if not isinstance(data["broken_node"], bool):
        raise _field_error("broken_node", data["broken_node"], "true or false")
    return ExitRecord(
        container=data["container"],
        job=data["job"],
        node=data["node"],
        exit_status=_int_field(data, "exit_status", low=0, high=255, nullable=True),
        signal=_int_field(data, "signal", low=1, high=127, nullable=True),
        wall_s=float(wall),
        peak_rss_kb=_int_field(data, "peak_rss_kb", low=0, high=2**53, nullable=True),
        broken_node=data["broken_node"],
        killed_leftovers=_count_field(data, "killed_leftovers"),
    )


def last_exit_record(text: str) -> Optional[ExitRecord]:
    """Return the record of the last line of ``text`` (a job's output) that starts with the prefix, or None.

    Pure. Earlier record lines are ignored: the wrapper writes its record last.

    Raises:
        ValueError: that last record line is malformed (see parse_exit_record).
    """
    for line in reversed(text.splitlines()):
        if line.startswith(RECORD_PREFIX):
            return parse_exit_record(line)
    return None


def has_hook_flag(args: Sequence[str]) -> bool:
    """Return whether crunch-run's arguments name a broken-node hook already (``-`` or ``--``). Pure."""
    for arg in args:
        dashes = len(arg) - len(arg.lstrip("-"))
        if dashes in (1, 2) and arg[dashes:].split("=", 1)[0] == "broken-node-hook":
            return True
    return False


def child_argv(crunch_run: str, args: Sequence[str], hook: str) -> List[str]:
    """Return crunch-run's argv, with ``--broken-node-hook=<hook>`` before the last argument (the container
    uuid) unless the arguments name a hook already or there are none. Pure."""
    args = list(args)
    if args and not has_hook_flag(args):
        args.insert(len(args) - 1, "--broken-node-hook=" + hook)
    return [crunch_run] + args


def decode_status(status: int) -> Tuple[Optional[int], Optional[int]]:
    """Return (exit status, None) or (None, signal number) for a wait(2) status. Pure."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def wrapper_exit_code(exit_status: Optional[int], sig: Optional[int]) -> int:
    """Return the wrapper's exit code: crunch-run's status, 128+N when signal N ended it, else 1. Pure."""
    if exit_status is not None:
        return exit_status
    if sig is not None:
        return 128 + sig
    return 1


def grace_from(value: Optional[str]) -> Tuple[float, str]:
    """Return (grace in seconds, complaint) for CRUNCH_RUN_WRAPPER_GRACE's value; the complaint is "" if fine.

    Pure. Unset or empty means the default; a bad value means the default and a complaint naming the value.
    """
    if value is None or not value.strip():
        return DEFAULT_GRACE_S, ""
    try:
        grace = float(value)
    except ValueError:
        grace = math.nan
    if not (math.isfinite(grace) and 0 <= grace <= MAX_GRACE_S):
        return DEFAULT_GRACE_S, (f"{GRACE_ENV}={value[:40]!r} is not a number of seconds in "
                                 f"0..{MAX_GRACE_S:g}; using {DEFAULT_GRACE_S:g}")
    return grace, ""


def temp_base(env: Dict[str, str]) -> str:
    """Return where crunch-run makes its temporary directory: $TMPDIR, else /tmp (Go's os.TempDir, which
    lib/crunchrun/crunchrun.go: RunCommand uses through MkTempDir("", ...)). Pure.

    Not Python's tempfile.gettempdir(), which falls back to /var/tmp and the working directory, and then
    reports ENOENT instead of the error that made it give up.
    """
    # absolute: crunch-run's hook, run from another directory, is given the state directory's path
    return os.path.abspath(env.get("TMPDIR") or "/tmp")


def node_name(env: Dict[str, str]) -> str:
    """Return the node's name: SLURMD_NODENAME, else the short host name."""
    return env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def broken_comment(node: str) -> str:
    """Return the job Comment that says crunch-run found ``node`` broken. Pure."""
    return COMMENT_PREFIX + node


# --- marking the job --------------------------------------------------------------------------------------


def mark_job(job: str, node: str, env: Dict[str, str]) -> Tuple[bool, str]:
    """Set the Slurm job's Comment to ``slurm-dispatch:broken-node:<node>`` with scontrol.

    Blocks up to SCONTROL_TIMEOUT_S. Best effort: never raises.

    Returns:
        (whether scontrol took it, a sentence saying what happened).
    """
    if not job:
        return False, "not in a Slurm job (no SLURM_JOB_ID), so no job Comment to set"
    if not JOB_ID_RE.match(job):
        return False, f"SLURM_JOB_ID={job[:40]!r} is not a job id; no Comment set"
    if not NODE_NAME_RE.match(node):
        return False, f"node name {node[:80]!r} cannot go into a Comment; none set"
    comment = broken_comment(node)
    child_env = dict(env)
    child_env["LC_ALL"] = "C"
    try:
        done = subprocess.run(
            ["scontrol", "update", "JobId=" + job, "Comment=" + comment], env=child_env, check=False,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=SCONTROL_TIMEOUT_S,
        )
    except FileNotFoundError:
        return False, f"scontrol is not on PATH ({env.get('PATH', '')}); job {job} not marked"
    except subprocess.TimeoutExpired:
        return False, f"scontrol update JobId={job} timed out after {SCONTROL_TIMEOUT_S:g} s; not marked"
    except OSError as exc:
        return False, f"cannot run scontrol: {exc}; job {job} not marked"
    if done.returncode != 0:
        tail = (done.stderr or b"").decode("utf-8", "replace").strip().replace("\n", " ")[-200:]
        return False, (f"scontrol update JobId={job} Comment={comment} failed (exit {done.returncode}): "
                       f"{tail or 'no message'}")
    return True, f"marked Slurm job {job} with Comment={comment}"


def drop_marker(state_dir: Optional[str], name: str) -> Tuple[bool, str]:
    """Create the empty file ``name`` in the supervisor's state directory. Never raises.

    The directory comes from the environment, so it must be a real directory of ours that no one else may
    write; the file is created without following a symlink.

    Returns:
        (whether it was created, why not).
    """
    if not state_dir or not os.path.isabs(state_dir):
        return False, f"{STATE_ENV} is not set to an absolute path"
    try:
        st = os.lstat(state_dir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return False, f"{STATE_ENV}={state_dir} is not a private directory of ours"
        os.close(os.open(os.path.join(state_dir, name), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    except OSError as exc:
        return False, f"cannot write in {state_dir}: {exc.strerror or exc}"
    return True, ""


def hook(env: Dict[str, str]) -> int:
    """Hook mode: tell the supervisor (a marker file) and Slurm (the job's Comment) that the node is broken.

    Blocks up to SCONTROL_TIMEOUT_S. What it says goes to crunch-run's log.

    Returns:
        0 when either worked, else 1 (crunch-run then logs that the hook failed).
    """
    node = node_name(env)
    state_dir = env.get(STATE_ENV)
    say(f"broken-node hook: crunch-run finds node {node} unable to run containers")
    dropped, why = drop_marker(state_dir, MARK_BROKEN)
    if not dropped:
        say("broken-node hook: cannot tell the supervisor: " + why)
    marked, sentence = mark_job(env.get("SLURM_JOB_ID", ""), node, env)
    say("broken-node hook: " + sentence)
    if marked and dropped:
        drop_marker(state_dir, MARK_COMMENT)
    return 0 if (marked or dropped) else 1


# --- leftovers --------------------------------------------------------------------------------------------


class Proc(NamedTuple):
    """A leftover process: pid, start time (tells it from a later process with that pid), name."""

    pid: int
    start: float
    name: str


def _session_of(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


class PsutilLeftovers:
    """Leftovers found with psutil: our descendants (crunch-run's orphans come to us, the subreaper), and,
    when we could not become subreaper, whatever is still in crunch-run's session."""

    how = "psutil"

    def __init__(self, session: int, *, subreaper: bool) -> None:
        self.session = session
        self.subreaper = subreaper
        self.seen = {}  # type: Dict[int, Any]

    def find(self) -> List[Proc]:
        """Return the live (not zombie) leftovers. Reads the process table."""
        candidates = psutil.Process().children(recursive=True)
        if not self.subreaper:
            candidates += [p for p in psutil.process_iter() if _session_of(p.pid) == self.session]
        found = {}
        for p in candidates:
            try:
                if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                    continue
                found[p.pid] = Proc(p.pid, p.create_time(), p.name())
                self.seen[p.pid] = p
            except psutil.Error:
                continue
        return sorted(found.values())

    def send(self, proc: Proc, sig: int) -> None:
        """Send ``sig`` to ``proc`` if it is still that process (psutil checks)."""
        p = self.seen.get(proc.pid)
        try:
            if p is not None:
                p.send_signal(sig)
        except psutil.Error:
            pass


def _procfs_stat(pid: int) -> Optional[Tuple[int, int, str, float, str]]:
    """Return (ppid, session, state, start time in clock ticks, name) of ``pid`` from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
        name = data[data.index("(") + 1:data.rindex(")")]
        rest = data[data.rindex(")") + 2:].split()
        # proc(5): after "(comm)" come state ppid pgrp session ...; starttime is field 22, so rest[19]
        return int(rest[1]), int(rest[3]), rest[0], float(rest[19]), name
    except (OSError, ValueError, IndexError):
        return None


class ProcfsLeftovers:
    """Leftovers found in /proc (Linux without psutil), by the rules of PsutilLeftovers."""

    how = "/proc"

    def __init__(self, session: int, *, subreaper: bool) -> None:
        self.session = session
        self.subreaper = subreaper

    def find(self) -> List[Proc]:
        """Return the live (not zombie) leftovers. Reads /proc."""
        table = {}
        for entry in os.listdir("/proc"):
            row = _procfs_stat(int(entry)) if entry.isdigit() else None
            if row is not None:
                table[int(entry)] = row
        children = {}  # type: Dict[int, List[int]]
        for pid, row in table.items():
            children.setdefault(row[0], []).append(pid)
        me = os.getpid()
        wanted = set()
        todo = list(children.get(me, []))
        while todo:
            pid = todo.pop()
            if pid not in wanted:
                wanted.add(pid)
                todo.extend(children.get(pid, []))
        if not self.subreaper:
            wanted.update(pid for pid, row in table.items() if row[1] == self.session)
        wanted.discard(me)
        live = [pid for pid in wanted if table[pid][2] not in ("Z", "X")]
        return sorted(Proc(pid, table[pid][3], table[pid][4]) for pid in live)

    def send(self, proc: Proc, sig: int) -> None:
        """Send ``sig`` to ``proc`` if /proc still shows that process (same start time)."""
        now = _procfs_stat(proc.pid)
        if now is not None and now[3] == proc.start:
            try:
                os.kill(proc.pid, sig)
            except OSError:
                pass


class GroupLeftovers:
    """Leftovers as crunch-run's process group, where there is neither psutil nor /proc: found and signalled
    all together, and counted as one."""

    how = "the process group"

    def __init__(self, session: int, *, subreaper: bool) -> None:
        del subreaper
        self.group = session

    def find(self) -> List[Proc]:
        """Return one pseudo-process while the process group has members, else none."""
        try:
            os.killpg(self.group, 0)
        except ProcessLookupError:
            return []
        except OSError:
            pass
        return [Proc(-self.group, 0.0, f"process group {self.group}")]

    def send(self, proc: Proc, sig: int) -> None:
        """Send ``sig`` to the whole process group."""
        del proc
        try:
            os.killpg(self.group, sig)
        except OSError:
            pass


def leftover_finder(session: int, *, subreaper: bool) -> Any:
    """Return the best finder this node allows: psutil, else /proc, else the process group."""
    if psutil is not None:
        return PsutilLeftovers(session, subreaper=subreaper)
    if os.path.isfile("/proc/self/stat"):
        return ProcfsLeftovers(session, subreaper=subreaper)
    return GroupLeftovers(session, subreaper=subreaper)


PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> Any:
    """Return a ``preexec_fn`` that has crunch-run killed (SIGKILL) when the wrapper dies before it (Linux prctl).

    crunch-run runs in a session of its own (so that a signal to the job's process group reaches it once, through
    the wrapper), which hides it from Slurm's ``proctrack/pgid``: without this, a wrapper killed at the time limit
    would leave crunch-run running outside its job. Go's crunch-run, the batch process itself, dies then too.
    """
    def preexec() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the wrapper died between the fork and the prctl
            os._exit(1)

    return preexec if sys.platform.startswith("linux") else None


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (Linux prctl); return whether that worked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def reap() -> int:
    """Reap every exited child without blocking; return the largest ru_maxrss among them (0 if none)."""
    peak = 0
    while True:
        try:
            pid, _, usage = os.wait3(os.WNOHANG)
        except ChildProcessError:
            return peak
        if pid == 0:
            return peak
        peak = max(peak, usage.ru_maxrss)


def _describe(procs: Sequence[Proc]) -> str:
    shown = ", ".join(f"{p.pid} ({p.name})" for p in procs[:8])
    return shown + (", ..." if len(procs) > 8 else "")


# --- supervising ------------------------------------------------------------------------------------------


def signal_name(signum: int) -> str:
    """Return the signal's name (SIGTERM), or "signal N" for one Python has no name for (most realtime ones)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Signals:
    """The signals the wrapper got; passed on to crunch-run while it runs."""

    def __init__(self) -> None:
        self.child = None  # type: Optional[int]
        self.child_done = False
        self.received = []  # type: List[int]
        """The stop signals (STOP_SIGNALS) received so far."""

    @property
    def stopped(self) -> bool:
        """Whether the job was told to stop."""
        return bool(self.received)

    def install(self) -> None:
        """Handle every signal of FORWARD and IGNORED from now on."""
        for sig in FORWARD:
            signal.signal(sig, self.handle)
        for sig in IGNORED:
            signal.signal(sig, self.ignore)

    def started(self, pid: int) -> None:
        """Record crunch-run's pid, and pass on the stop signals that came before it existed."""
        # blocked meanwhile, so that a signal arriving now is neither lost nor passed on twice
        old = signal.pthread_sigmask(signal.SIG_BLOCK, list(FORWARD))
        try:
            self.child = pid
            for sig in self.received:
                self.forward(sig)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def handle(self, signum: int, frame: Any) -> None:
        """Signal handler: remember a stop signal, and pass the signal on while crunch-run runs."""
        del frame
        if signum in STOP_SIGNALS:
            self.received.append(signum)  # passed on by started() if crunch-run is not there yet
        if self.child is not None:
            self.forward(signum)
        elif signum not in STOP_SIGNALS:  # USR1/USR2 ask a running crunch-run to act now: nothing to keep
            say(f"got {signal_name(signum)} before crunch-run started; ignored")

    def ignore(self, signum: int, frame: Any) -> None:
        """Signal handler for IGNORED: only say so."""
        del frame
        say(f"got {signal_name(signum)}; ignored, as crunch-run would")

    def forward(self, signum: int) -> None:
        """Send crunch-run the signal FORWARD maps ``signum`` to, unless it is reaped already."""
        name = signal_name(signum)
        pid = self.child
        if pid is None or self.child_done or not _not_reaped(pid):
            say(f"got {name}; crunch-run has already exited")
            return
        to = FORWARD[signum]
        try:
            os.kill(pid, to)
        except OSError as exc:
            say(f"got {name}; cannot pass it to crunch-run (pid {pid}): {exc.strerror}")
            return
        say(f"got {name}; passed {signal_name(to)} to crunch-run (pid {pid})")


def _not_reaped(pid: int) -> bool:
    """Return whether ``pid`` is our unreaped child (running or zombie): signalling it hits no stranger."""
    if not hasattr(os, "waitid"):
        return True
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def wait_for(pid: int, signals: Signals) -> Tuple[Optional[int], int]:
    """Wait for crunch-run to exit, reaping the orphans that come to us meanwhile.

    Blocks; signal handlers run while it waits.

    Returns:
        (crunch-run's wait status, or None if it was lost; the largest ru_maxrss of crunch-run's tree).
    """
    peak = 0
    while True:
        try:
            got, status, usage = os.wait3(0)
        except ChildProcessError:  # cannot happen while crunch-run is our child; never spin
            signals.child_done = True
            return None, peak
        peak = max(peak, usage.ru_maxrss)
        if got == pid:
            signals.child_done = True
            return status, peak


def _wait_until_gone(finder: Any, seconds: float) -> Tuple[List[Proc], int]:
    """Poll (reaping) until the finder finds nothing or ``seconds`` pass; return (what is left, peak rss)."""
    deadline = time.monotonic() + seconds
    peak = 0
    while True:
        peak = max(peak, reap())
        left = finder.find()  # type: List[Proc]
        if not left or time.monotonic() >= deadline:
            return left, peak
        time.sleep(POLL_S)


def clean_up(finder: Any, *, grace: float, signals: Signals) -> Tuple[int, int]:
    """Give what crunch-run left running ``grace`` seconds to exit (SIGNALLED_GRACE_S once a stop signal
    came), then SIGTERM it, then SIGKILL what still runs.

    Blocks up to the grace + TERM_TO_KILL_S + KILL_WAIT_S.

    Returns:
        (how many processes had to be signalled, the largest ru_maxrss of those reaped).
    """
    began = time.monotonic()
    peak = 0
    limit = grace
    left = []  # type: List[Proc]
    while True:
        peak = max(peak, reap())
        found = finder.find()  # type: List[Proc]
        if not found:
            return 0, peak
        limit = min(grace, SIGNALLED_GRACE_S) if signals.stopped else grace
        if not left:
            say(f"crunch-run left {len(found)} process(es) running: {_describe(found)}; "
                f"they get {limit:g} s to exit")
        left = found
        if time.monotonic() - began >= limit:
            break
        time.sleep(POLL_S)
    signalled = {p.pid for p in left}
    say(f"after {limit:g} s, sending SIGTERM to {_describe(left)}")
    for p in left:
        finder.send(p, signal.SIGTERM)
    left, more = _wait_until_gone(finder, min(limit, TERM_TO_KILL_S))
    peak = max(peak, more)
    if left:
        signalled.update(p.pid for p in left)
        say(f"sending SIGKILL to {_describe(left)}")
        for p in left:
            finder.send(p, signal.SIGKILL)
        peak = max(peak, _wait_until_gone(finder, KILL_WAIT_S)[1])
    return len(signalled), max(peak, reap())


def supervise(*, crunch_run: str, wrapper: str, args: Sequence[str], env: Dict[str, str]) -> int:
    """Run crunch-run under supervision; the last line written to stderr is the exit record.

    Blocks until crunch-run and what it left running are gone.

    Returns:
        The wrapper's exit code: crunch-run's, 128+N when signal N ended it, 127/126 when it cannot start,
        NO_TEMP_DIR_EXIT when the wrapper cannot create its temporary directory.
    """
    node = node_name(env)
    job = env.get("SLURM_JOB_ID", "")
    container = args[-1] if args else ""
    grace, complaint = grace_from(env.get(GRACE_ENV))
    if complaint:
        say(complaint)
    lock = env.get(LOCK_ENV) or BROKEN_LOCK
    began_at = time.time()
    base = temp_base(env)
    try:
        state_dir = tempfile.mkdtemp(prefix="crunch-run-wrapper.", dir=base)
    except OSError as exc:
        return give_up_without_temp_dir(exc, base=base, container=container, job=job, node=node, env=env)
    child_env = dict(env)
    child_env[HOOK_ENV] = "1"
    child_env[ACTIVE_ENV] = "1"  # the sh script sets it too; this covers a supervisor started some other way
    child_env[STATE_ENV] = state_dir
    subreaper = become_subreaper()
    signals = Signals()
    signals.install()
    began = time.monotonic()
    exit_status = sig = None  # type: Optional[int]
    peak = killed = 0
    try:
        proc = subprocess.Popen(child_argv(crunch_run, args, wrapper), env=child_env, start_new_session=True,
                                preexec_fn=die_with(os.getpid()))  # noqa: PLW1509 - the wrapper has one thread
    except OSError as exc:
        say(f"cannot start {crunch_run}: {exc.strerror or exc}")
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        wall = time.monotonic() - began
    else:
        signals.started(proc.pid)
        finder = leftover_finder(proc.pid, subreaper=subreaper)
        say(f"running {crunch_run} as pid {proc.pid}; stop signals are passed on; what it leaves running "
            f"gets {grace:g} s after it exits (found with {finder.how})")
        status, peak = wait_for(proc.pid, signals)
        wall = time.monotonic() - began
        proc.returncode = -1 if status is None else status  # reaped by wait_for: Popen must not wait
        exit_status, sig = (None, None) if status is None else decode_status(status)
        code = wrapper_exit_code(exit_status, sig)
        if sig is not None:
            say(f"crunch-run was killed by {signal_name(sig)} after {wall:.1f} s")
        else:
            say(f"crunch-run exited with status {exit_status} after {wall:.1f} s")
        try:
            killed, leftover_peak = clean_up(finder, grace=grace, signals=signals)
            peak = max(peak, leftover_peak)
        except Exception as exc:  # noqa: BLE001 - the exit record must still be written
            say(f"could not clean up after crunch-run: {type(exc).__name__}: {exc}")
    broken = note_broken_node(state_dir=state_dir, lock=lock, since=began_at, job=job, node=node, env=env)
    shutil.rmtree(state_dir, ignore_errors=True)
    write_exit_record(ExitRecord(container=container, job=job, node=node, exit_status=exit_status, signal=sig,
                                 wall_s=round(wall, 3), peak_rss_kb=_kib(peak), broken_node=broken,
                                 killed_leftovers=killed))
    return code


def write_exit_record(record: ExitRecord) -> None:
    """Write the exit record line to stderr in one write(2). Never raises."""
    try:
        os.write(2, (exit_record_line(record) + "\n").encode("ascii"))
    except OSError:
        pass


def give_up_without_temp_dir(error: OSError, *, base: str, container: str, job: str, node: str,
                             env: Dict[str, str]) -> int:
    """Say why crunch-run is not started, mark the job when the node is out of space, write the exit record.

    crunch-run makes its own temporary directory in the same place, and exits 1 when it cannot, before it does
    anything to the container (lib/crunchrun/crunchrun.go: RunCommand): starting it would change nothing but
    the words. Blocks up to SCONTROL_TIMEOUT_S. Never raises.

    Returns:
        NO_TEMP_DIR_EXIT.
    """
    say(f"cannot create a temporary directory in {base}: {error.strerror or error}; not starting crunch-run, "
        "which needs one there too")
    broken = error.errno == errno.ENOSPC
    if broken:
        # crunch-run counts "no space left on device" as a broken node (lib/crunchrun/crunchrun.go:
        # errorBlacklist), but does not check for it when its own temporary directory fails: mark the job as
        # its hook would, so that new jobs keep off this node.
        say(f"node {node} has no space left in {base}, which crunch-run counts as a broken node")
        say(mark_job(job, node, env)[1])
    write_exit_record(ExitRecord(container=container, job=job, node=node, exit_status=None, signal=None,
                                 wall_s=0.0, peak_rss_kb=None, broken_node=broken, killed_leftovers=0))
    return NO_TEMP_DIR_EXIT


def lock_file_counts(path: str, *, since: float, uid: int) -> Tuple[bool, str]:
    """Return whether the lock file at ``path`` is this job's crunch-run's broken-node mark, and why not.

    /var/lock is world-writable (1777) on many systems (Debian's /run/lock), so any local user could create the
    file, or a symlink or hard link there, and have every job on the node report it broken: only a regular file
    with one link, owned by root or by this job's user (who runs crunch-run), and modified since ``since`` (the
    supervisor's start, wall clock) counts. Reads the file's status without following a symlink. Never raises.

    Returns:
        (whether it counts, "" if it counts or is absent, else a sentence saying why it does not).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False, ""
    except OSError as exc:
        return False, f"cannot check {path}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return False, f"{path} is not a regular file (a symlink?); not counted"
    if st.st_uid not in (0, uid):
        return False, (f"{path} belongs to uid {st.st_uid}, neither root nor this job's user (uid {uid}): "
                       "any user may create it in a world-writable lock directory; not counted")
    if st.st_nlink != 1:
        return False, f"{path} has {st.st_nlink} links (a hard link to another file?); not counted"
    if st.st_mtime < since - LOCK_CLOCK_SLACK_S:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))
        return False, (f"{path} was there before this job started (modified {when}), so this job's crunch-run "
                       "did not create it; not counted (remove it once the node is repaired)")
    return True, ""


def note_broken_node(*, state_dir: str, lock: str, since: float, job: str, node: str,
                     env: Dict[str, str]) -> bool:
    """Return whether crunch-run found the node broken (its hook ran, or it created the lock file: see
    lock_file_counts), after making sure the job's Comment says so. Blocks up to SCONTROL_TIMEOUT_S. Never
    raises."""
    try:
        if os.path.exists(os.path.join(state_dir, MARK_BROKEN)):
            why = "its broken-node hook ran"
        else:
            counts, complaint = lock_file_counts(lock, since=since, uid=os.geteuid())
            if not counts:
                if complaint:
                    say(complaint)
                return False
            why = f"it created {lock}"
        say(f"crunch-run found node {node} broken: {why}")
        if not os.path.exists(os.path.join(state_dir, MARK_COMMENT)):
            say(mark_job(job, node, env)[1])
        return True
    except Exception as exc:  # noqa: BLE001 - the exit record must still be written
        say(f"could not check for a broken node: {type(exc).__name__}: {exc}")
        return False


def _kib(maxrss: int) -> Optional[int]:
    """Return ru_maxrss in KiB (Linux counts KiB, macOS bytes), or None when nothing was measured."""
    if maxrss <= 0:
        return None
    return maxrss // 1024 if sys.platform == "darwin" else maxrss


USAGE = "usage: crunch_run_wrapper.py supervise <crunch-run> <wrapper> [arguments...] | hook"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``hook`` or ``supervise`` as the arguments say; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    if args == ["hook"]:
        return hook(env)
    if len(args) >= 3 and args[0] == "supervise":
        return supervise(crunch_run=args[1], wrapper=args[2], args=args[3:], env=env)
    say(USAGE)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        say(f"internal error: {type(exc).__name__}: {exc}")
        sys.exit(INTERNAL_ERROR_EXIT)
