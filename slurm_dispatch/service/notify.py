"""sd_notify without a systemd library: one datagram per message to ``$NOTIFY_SOCKET``.

With ``Type=notify`` systemd waits for ``READY=1`` before it calls the unit started. The Go dispatcher sends
``READY=1`` twice: from the service framework as soon as its HTTP server listens (lib/service/cmd.go), and again
once it holds the database lock (services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: run). Our choice
(``slurm_dispatch.service.serve``): ``READY=1`` once, only after the locks are held and the first poll of the
API worked, so "active" means "dispatching"; until then ``STATUS=`` says what the service waits for. A standby
dispatcher waiting for another's lock therefore stays "activating", which is why the unit in contrib/systemd
sets ``TimeoutStartSec=infinity`` (docs/operations.md).

Sending never raises and never blocks for long (a non-blocking send on a datagram socket): a missing or broken
notify socket must not stop a dispatcher. Everything here is a no-op when NOTIFY_SOCKET is unset.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to the socket named by ``environ["NOTIFY_SOCKET"]``.

    Args:
        environ: the process environment (pass ``os.environ`` from the entry point; tests pass a dict).
        pid: our pid, compared with ``WATCHDOG_PID``; defaults to ``os.getpid()``.
    """

    def __init__(self, environ: Mapping[str, str], *, pid: int | None = None) -> None:
        self._address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = environ.get("WATCHDOG_USEC", "")
        self._watchdog_pid = environ.get("WATCHDOG_PID", "")
        self._pid = os.getpid() if pid is None else pid
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether there is a notify socket to talk to. Does no I/O."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram. Does a non-blocking send; never raises.

        Returns:
            True when the datagram was sent, False when there is no socket or sending failed (logged once).
        """
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self._address)
            return True
        except OSError as exc:
            if not self._warned:  # systemd gone or socket full: say it once, keep dispatching
                log.warning("sending sd_notify to %r: %s", self._address_text(), exc.strerror or exc)
                self._warned = True
            return False

    def ready(self) -> bool:
        """``READY=1``: the service is up (send once the health endpoint listens). Never raises."""
        return self.notify("READY=1")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutting down (sent when SIGTERM starts the stop). Never raises."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: still alive. Send at half ``watchdog_interval()``. Never raises."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=text`` (shown by ``systemctl status``); newlines become spaces. Never raises."""
        return self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog_interval(self) -> float | None:
        """Return systemd's watchdog timeout in seconds, or None when there is no watchdog for us. Pure.

        None when WATCHDOG_USEC is unset, not a positive integer, or WATCHDOG_PID names another process (the
        variables were inherited from a parent). Ping at half this value.
        """
        if self._address is None:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != self._pid:
                    return None
            except ValueError:
                return None
        return usec / 1_000_000

    def _address_text(self) -> str:
        addr = self._address or ""
        return "@" + addr[1:] if addr.startswith("\0") else addr


def _socket_address(value: str) -> str | None:
    """Turn NOTIFY_SOCKET into a sendto address: a path, or ``@name`` → abstract ``\\0name``. Pure.

    Other forms (``vsock:...``) are not supported and disable notification.
    """
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value:
        log.warning("ignoring unsupported NOTIFY_SOCKET %r (only a path or an @abstract socket)", value)
    return None


async def keep_alive(
    notifier: Notifier, stop: asyncio.Event, *, healthy: Callable[[], bool] = lambda: True
) -> None:
    """Send ``WATCHDOG=1`` every half watchdog interval until ``stop`` is set; returns at once without a watchdog.

    ``healthy`` is asked before each ping; while it answers False no ping is sent, so a wedged dispatch loop
    makes systemd restart us (WatchdogSec). Does not block the event loop.
    """
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    while not stop.is_set():
        if healthy():
            notifier.watchdog()
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval / 2)
        except TimeoutError:
            pass
