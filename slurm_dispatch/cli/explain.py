"""``slurm-dispatch explain``: the exact sbatch arguments and job script for one container, or why there are none.

Nothing is submitted. The arguments and script come from ``slurm_dispatch.slurm.jobs.job_for``, the very function
the service calls before sbatch, so ``explain`` and the service cannot disagree. The container comes from the API
(``GET containers/<uuid>``) or from a JSON file (``--container-file``), which needs neither the API nor a
token. GatewayAuthSecret (an HMAC of the SystemRootToken) is shown as ``<redacted>``.

Exit 0 when the container is submittable, 1 when it is not (no instance type fits, a bad ``%x`` in the
template), 2 on a config or usage error, 3 when the API is unreachable.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path
from typing import Annotated, Any

import typer

from slurm_dispatch.cli.common import (
    ClusterIdOption,
    ConfigOption,
    DispatchConfigOption,
    ExitCode,
    JsonOption,
    LegacyConfigOption,
    SkipLegacyOption,
    abort,
    api_client,
    container_uuid,
    errors_to_exit,
    load,
    print_json,
    require_our_container,
)
from slurm_dispatch.config import REDACTED, template_problems
from slurm_dispatch.errors import SbatchTemplateError, UnsatisfiableContainer
from slurm_dispatch.model import Container
from slurm_dispatch.settings import Settings
from slurm_dispatch.slurm.instance_types import choose_instance_type
from slurm_dispatch.slurm.jobs import job_for
from slurm_dispatch.slurm.sbatch import gateway_auth_secret


def redacted_job(container: Container, settings: Settings) -> tuple[list[str], str]:
    """Return (sbatch argv after ``sbatch``, job script with GatewayAuthSecret redacted). Pure.

    ``slurm_dispatch.slurm.jobs.job_for`` is the very function the service calls before sbatch.

    Raises:
        SbatchTemplateError: the template has an unknown ``%x``.
        UnsatisfiableContainer: instance types are configured and none fits, or a partition name is one no Slurm
            partition can have.
    """
    job = job_for(container, settings)
    secret = gateway_auth_secret(settings.system_root_token, container.uuid)
    return list(job.args), job.script.replace(secret, REDACTED)


CONTAINER_FILE_MAX_BYTES = 64 << 20
"""The largest ``--container-file`` read (64 MiB): a container record is a few KiB, even with big mounts."""


def _read_container_file(path: Path) -> Container:
    """Return the container record in a JSON file. Reads the file; aborts with exit 2 on a bad file.

    Only a regular file is read (a FIFO, a device such as /dev/zero or a directory is refused without blocking:
    it is opened non-blocking and checked before any read), and at most ``CONTAINER_FILE_MAX_BYTES`` of it; JSON
    nested too deeply for the parser is refused like any other bad JSON.
    """
    limit = f"{CONTAINER_FILE_MAX_BYTES >> 20} MiB"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        abort(f"{path}: cannot read the container file: {exc.strerror or exc}", ExitCode.CONFIG)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            abort(f"{path}: not a regular file (give the JSON file of a container record)", ExitCode.CONFIG)
        if info.st_size > CONTAINER_FILE_MAX_BYTES:
            abort(f"{path}: larger than {limit}: not a container record", ExitCode.CONFIG)
        with os.fdopen(os.dup(fd), "rb") as source:
            data = source.read(CONTAINER_FILE_MAX_BYTES + 1)
    except OSError as exc:
        abort(f"{path}: cannot read the container file: {exc.strerror or exc}", ExitCode.CONFIG)
    finally:
        os.close(fd)
    if len(data) > CONTAINER_FILE_MAX_BYTES:  # it grew while we read it
        abort(f"{path}: larger than {limit}: not a container record", ExitCode.CONFIG)
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        abort(f"{path}: not a JSON container record: not UTF-8 text ({exc.reason} at byte {exc.start})",
              ExitCode.CONFIG)
    except RecursionError:
        abort(f"{path}: not a JSON container record: nested too deeply", ExitCode.CONFIG)
    except ValueError as exc:  # json.JSONDecodeError, and an integer too long to convert
        abort(f"{path}: not a JSON container record: {exc}", ExitCode.CONFIG)
    if not isinstance(raw, dict):
        abort(f"{path}: not a JSON container record: expected an object", ExitCode.CONFIG)
    try:
        return Container.from_api(raw)
    except RecursionError:
        abort(f"{path}: not a valid container record: nested too deeply", ExitCode.CONFIG)
    except (ValueError, TypeError) as exc:
        abort(f"{path}: not a valid container record: {exc}", ExitCode.CONFIG)


def explanation(container: Container, settings: Settings) -> dict[str, Any]:
    """Return what ``explain --json`` prints for this container. Pure (no I/O).

    Keys: ``uuid``, ``state``, ``priority``, ``final`` (Complete or Cancelled: never dispatched again),
    ``runtime_status`` (its ``error``, ``errorDetail`` and ``warning``, those it has: why it ended or what is
    wrong, as users see it), ``warnings`` (template problems the service refuses to start with),
    ``instance_type`` (only when InstanceTypes are configured; null when none fits), then either ``sbatch_args``
    and ``script``, or ``error`` (and ``available_instance_types`` when no type fits).
    """
    status = {key: container.runtime_status[key] for key in ("error", "errorDetail", "warning")
              if container.runtime_status.get(key) not in (None, "")}
    out: dict[str, Any] = {
        "uuid": container.uuid,
        "state": container.state.value,
        "priority": container.priority,
        "final": container.state.is_final,
        "runtime_status": status,
        "warnings": template_problems(settings),
    }
    if settings.instance_types:
        try:
            chosen = choose_instance_type(container, settings)
            out["instance_type"] = chosen.name if chosen else None
        except UnsatisfiableContainer:
            out["instance_type"] = None
    try:
        args, script = redacted_job(container, settings)
    except UnsatisfiableContainer as exc:
        out["error"] = exc.log_text().rstrip("\n")
        out["available_instance_types"] = list(exc.available or [])
        return out
    except SbatchTemplateError as exc:
        out["error"] = f"cannot submit container {container.uuid}: {exc}"
        return out
    out["sbatch_args"] = args
    out["script"] = script
    return out


def _shown(value: Any) -> list[str]:
    """A runtime_status value as lines a terminal can show: a string's own lines, anything else as JSON; control
    characters escaped (the record is anyone's text)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return [line if line.isprintable() else repr(line)[1:-1] for line in text.splitlines() or [""]]


def _print_human(result: dict[str, Any]) -> None:
    typer.echo(f"Container: {result['uuid']} ({result['state']}, priority {result['priority']})")
    if result["final"]:
        typer.echo(f"It is {result['state']}: it is not dispatched again; below is the job it got, as it would be "
                   "built now.")
    for key, value in result["runtime_status"].items():
        lines = _shown(value)
        typer.echo(f"runtime_status.{key}: {lines[0]}")
        for line in lines[1:]:
            typer.echo(f"  {line}")
    if "instance_type" in result:
        typer.echo(f"Instance type: {result['instance_type'] or '(none fits)'}")
    if "error" in result:
        typer.echo("")
        typer.echo("Cannot submit:")
        for line in result["error"].splitlines():
            typer.echo(f"  {line}")
    else:
        typer.echo("")
        typer.echo("Command:")
        typer.echo(f"  {shlex.join(['sbatch', *result['sbatch_args']])}")
        typer.echo("")
        typer.echo("Job script (sent on sbatch's stdin):")
        for line in result["script"].splitlines():
            typer.echo(f"  {line}")
    if result["warnings"]:
        typer.echo("")
        typer.echo("Warnings (the service refuses to start with this config):")
        for warning in result["warnings"]:
            typer.echo(f"  - {warning}")


def explain(
    uuid: Annotated[
        str | None,
        typer.Argument(help="The container uuid, read from the API.", show_default=False),
    ] = None,
    container_file: Annotated[
        Path | None,
        typer.Option("--container-file", metavar="FILE",
                     help="Read the container record from this JSON file instead of the API."),
    ] = None,
    config: ConfigOption = None,
    cluster_id: ClusterIdOption = None,
    json_: JsonOption = False,
    legacy: LegacyConfigOption = None,
    skip_legacy: SkipLegacyOption = False,
    dispatch_config: DispatchConfigOption = None,
) -> None:
    """Show the sbatch arguments and job script the dispatcher would use for a container, or why it cannot.

    Submits nothing. Exit 0 when the container is submittable, 1 when it is not.
    """
    if (uuid is None) == (container_file is None):
        abort("give a container UUID or --container-file FILE (exactly one)", ExitCode.CONFIG)
    if uuid is not None:
        uuid = container_uuid(uuid)
    with errors_to_exit():
        settings = load(config, cluster_id, legacy=legacy, skip_legacy=skip_legacy,
                        dispatch_config=dispatch_config).settings
        if container_file is not None:
            container = _read_container_file(container_file)
        else:
            require_our_container(str(uuid), settings.cluster_id)
            client = api_client(settings)
            try:
                container = client.get(str(uuid))
            finally:
                client.close()
    result = explanation(container, settings)
    if json_:
        print_json(result)
    else:
        _print_human(result)
    if "error" in result:
        raise typer.Exit(ExitCode.PROBLEM)
