"""Run one short command, its input on stdin and its output captured, with a deadline: ``posix_spawn`` underneath.

``subprocess.run`` costs the parent about 0.45 ms of CPU per command here (its Popen object, fork_exec's many
parameters, an error pipe), ``posix_spawn`` with three pipes about 0.15 ms (measured on this project's 2-core test
machine, /bin/echo, 300 runs each); the service launches one sbatch per container, and the saving is a fifth of its
CPU per submitted container (docs/benchmarks.md). What ``subprocess.run`` did that matters is kept:

* the program is found on the PATH of the environment given (not the parent's), and a missing one is an OSError;
* the child starts with the default SIGPIPE and SIGXFSZ dispositions (Python ignores them) and an empty signal
  mask, and inherits no descriptor but its three pipes: Python opens every descriptor close-on-exec (PEP 446), and
  before each spawn any descriptor that is not (one this process inherited, say) is made so
  (``subprocess``'s ``close_fds`` closed them in the child instead; this costs some 20 µs);
* stdout and stderr are read to the end, as UTF-8 with undecodable bytes replaced (any user may name a job
  anything);
* past the deadline the child is killed and reaped, and ``Timeout`` is raised.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_SIGDEF = (signal.SIGPIPE, signal.SIGXFSZ)
_CHUNK = 65536
PIPE_BUFFER = 4096
"""Bytes any empty pipe takes without blocking: one page (pipe(7): 64 KiB by default, but a single page once the
user's pipes exceed pipe-user-pages-soft). A longer input is written as the child reads it."""
_paths: dict[tuple[str, str], str | None] = {}
_paths_lock = threading.Lock()


@dataclass(frozen=True)
class Finished:
    """A command that has exited."""

    returncode: int
    """Its exit status, or minus the signal that killed it (as ``subprocess`` reports it)."""
    stdout: str
    stderr: str


class Timeout(Exception):
    """The command did not finish before its deadline; it has been killed."""


def _program(name: str, path: str) -> str:
    """Return the file to run for ``name`` on ``path`` (cached); raise FileNotFoundError if there is none."""
    key = (name, path)
    with _paths_lock:
        if key not in _paths:
            _paths[key] = name if os.sep in name else shutil.which(name, path=path)
        found = _paths[key]
    if found is None:
        raise FileNotFoundError(2, f"No such file or directory: {name!r} on PATH {path!r}")
    return found


def run(argv: Sequence[str], *, env: Mapping[str, str], stdin: str = "", timeout_s: float) -> Finished:
    """Run ``argv`` with ``stdin`` and return its exit status and output. Blocks until it exits, at most about
    ``timeout_s`` seconds.

    Raises:
        OSError: the program could not be started (not found, not executable).
        Timeout: it ran past ``timeout_s`` (it was killed).
    """
    program = _program(argv[0], env.get("PATH", os.defpath))
    deadline = time.monotonic() + timeout_s
    _inherit_nothing()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawn(program, list(argv), dict(env), setsigdef=_SIGDEF, setsigmask=(),
                             file_actions=[(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                                           (os.POSIX_SPAWN_DUP2, err_w, 2)])
    except BaseException:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    try:
        out, err = _exchange(in_w, out_r, err_r, stdin.encode(), deadline)
        status = _wait(pid, deadline)
    except Timeout:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return Finished(returncode=os.waitstatus_to_exitcode(status), stdout=out.decode("utf-8", "replace"),
                    stderr=err.decode("utf-8", "replace"))


def _inherit_nothing() -> None:
    """Make every open descriptor above 2 close-on-exec."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)


def _exchange(in_w: int, out_r: int, err_r: int, data: bytes, deadline: float) -> tuple[bytes, bytes]:
    """Write ``data`` to the child's stdin and read its stdout and stderr to their ends. Closes the three fds.

    ``select.poll`` rather than ``selectors``: no epoll descriptor to create per command (a third of the cost).
    """
    out, err = bytearray(), bytearray()
    buffers = {out_r: out, err_r: err}
    poller = select.poll()
    sent = 0
    if len(data) <= PIPE_BUFFER:  # an empty pipe takes it whole: no wait, whatever the child does
        _write_all(in_w, data)
        in_w = -1
    else:
        os.set_blocking(in_w, False)
        poller.register(in_w, select.POLLOUT)
    for fd in buffers:
        poller.register(fd, select.POLLIN)
    open_fds = {fd for fd in (in_w, out_r, err_r) if fd >= 0}
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout
            for fd, _ in poller.poll(left * 1000):
                if fd == in_w:
                    try:
                        sent += os.write(in_w, data[sent : sent + _CHUNK])
                    except BrokenPipeError:  # it stopped reading: what it wrote still counts
                        sent = len(data)
                    if sent >= len(data):
                        poller.unregister(in_w)
                        open_fds.discard(in_w)
                        os.close(in_w)
                    continue
                chunk = os.read(fd, _CHUNK)
                if chunk:
                    buffers[fd].extend(chunk)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    os.close(fd)
    finally:
        for fd in open_fds:
            os.close(fd)
    return bytes(out), bytes(err)


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` (at most PIPE_BUFFER) into an empty pipe and close it."""
    try:
        if data:
            os.write(fd, data)
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


def _wait(pid: int, deadline: float) -> int:
    """Reap the child (its output has ended, so it is exiting) and return its wait status; Timeout past the
    deadline. A pidfd (Linux 5.3) says when it has exited; without one, it is asked every millisecond."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = -1
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout
            if pidfd >= 0:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                poller.poll(left * 1000)
            else:
                time.sleep(min(0.001, left))
    finally:
        if pidfd >= 0:
            os.close(pidfd)


__all__ = ["Finished", "Timeout", "run"]
