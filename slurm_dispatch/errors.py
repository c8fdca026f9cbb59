"""The whole exception hierarchy of slurm-dispatch, in one place.

Errors are classified two ways: what failed (config, Arvados API, Slurm, the
container itself) and whether retrying can help (``TransientError`` versus
everything else). Adapters translate library exceptions into these with
``raise ... from exc``; no code above the adapters catches ``requests.*`` or
``subprocess.*``.

Messages follow the shape "what we were doing, on which container: what
happened; what to check". No message ever contains a token.
"""

from __future__ import annotations

from collections.abc import Sequence


class DispatchError(Exception):
    """Root of every error slurm-dispatch raises on purpose."""


class TransientError(DispatchError):
    """Mixin meaning: retrying later may succeed (network, 5xx, slurmctld down)."""


class ConfigError(DispatchError):
    """The configuration is unusable; raised at startup only.

    Attributes:
        path: the file that was read ("" when the problem is not in a file).
        key: the dotted key path, e.g. ``Clusters.zzzzz.Containers.ReserveExtraRAM``.
        value: the offending value, as text (never a secret).
    """

    def __init__(self, message: str, *, path: str = "", key: str = "", value: object = None):
        self.path = path
        self.key = key
        self.value = value
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class ArvadosAPIError(DispatchError):
    """An Arvados API call failed.

    Attributes:
        status: the HTTP status (0 when no response arrived).
        method: the HTTP method.
        path: the request path, without query string or token.
        message: the server's ``errors`` text, or the transport error, trimmed.
    """

    def __init__(self, status: int, method: str, path: str, message: str):
        self.status = status
        self.method = method
        self.path = path
        self.message = message
        code = f"HTTP {status}" if status else "no response"
        super().__init__(f"{method} {path}: {code}: {message}")


class ArvadosUnavailable(ArvadosAPIError, TransientError):
    """The API could not be reached, timed out, or answered 5xx/429."""


class ArvadosAuthError(ArvadosAPIError):
    """401/403 on a call that a dispatcher token must be allowed: fatal to a daemon."""


class ArvadosConflict(ArvadosAPIError):
    """422 (for example a lost lock race, or a refused state change): handled per container."""


class ArvadosNotFound(ArvadosAPIError):
    """404: the object does not exist or this token cannot read it."""


class ArvadosPermissionDenied(ArvadosAPIError):
    """403 on a per-container rule (unlock by a token that does not hold the lock)."""


class ArvadosMalformedAnswer(ArvadosAPIError, TransientError):
    """The API answered, but not with what the call promises (a list without an ``items`` array, an item that
    is not a container record, a count that is not a count): no information, like a failed call.

    Not retried inside the call: the next poll asks again.
    """


class ArvadosShuttingDown(ArvadosUnavailable):
    """The client was stopped (``ArvadosClient.stop()``): the call was not sent, or was abandoned mid-way."""


class SlurmCommandError(DispatchError):
    """A Slurm command exited non-zero.

    Attributes:
        argv: the command line (never contains a secret: the script goes on stdin).
        returncode: its exit status (None when it timed out or could not start).
        stderr_tail: the end of its stderr, trimmed.
    """

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr_tail: str):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        status = "timed out or did not start" if returncode is None else f"exit {returncode}"
        super().__init__(f"{' '.join(self.argv)}: {status}: {stderr_tail}")


class SlurmUnavailable(SlurmCommandError, TransientError):
    """slurmctld did not answer (timeout, connection refused): no information, retry."""


class SqueueParseError(DispatchError):
    """One squeue line could not be parsed; the loop logs it and skips the line.

    Attributes:
        line: the line as squeue printed it.
        reason: what was wrong with it.
        about: the container uuid the line seems to be about, or None: a bad line about one of our jobs is "no
            information" about that job, never "gone".
    """

    def __init__(self, line: str, reason: str, *, about: str | None = None):
        self.line = line
        self.reason = reason
        self.about = about
        super().__init__(f"ignoring unparsed line in squeue output: {line!r}: {reason}")


class SbatchTemplateError(DispatchError):
    """SbatchArgumentsList or SbatchGPUArgumentsList has an unknown ``%x``: permanent."""


NO_INSTANCE_TYPES_LINE = "No instance types are configured."
"""What the ``dispatch`` log says in place of the instance-type list when there is none to show."""


class UnsatisfiableContainer(DispatchError):
    """No configured instance type (or node) can ever run this container: permanent.

    Attributes:
        uuid: the container.
        reason: why, in one line.
        available: one line per configured instance type, as the Go dispatcher logs them; None when the
            reason is not about instance types (sbatch refused the job).
        detail: a line saying what was asked for (the sbatch command Slurm refused), or "".
    """

    def __init__(self, uuid: str, reason: str, available: Sequence[str] | None = (), *, detail: str = ""):
        self.uuid = uuid
        self.reason = reason
        self.available = None if available is None else list(available)
        self.detail = detail
        super().__init__(f"cannot run container {uuid}: {reason}")

    def log_text(self) -> str:
        """Return the text of the ``dispatch`` log record written when the container is cancelled. Pure.

        Exactly the Go dispatcher's text: the ``cannot run container ...``
        line, then ``Available instance types:`` and one line per type, or the single line
        ``No instance types are configured.`` when the list is empty; nothing more when ``available`` is
        None; then ``detail``, if any. Every line ends with a newline.
        Port of sdk/go/dispatch/dispatch.go: the ConstraintsNotSatisfiableError branch of start.
        """
        lines = [str(self)]
        if self.available:
            lines += ["Available instance types:", *self.available]
        elif self.available is not None:
            lines.append(NO_INSTANCE_TYPES_LINE)
        if self.detail:
            lines.append(self.detail)
        return "".join(line + "\n" for line in lines)
