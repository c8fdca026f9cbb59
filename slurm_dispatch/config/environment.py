"""Environment fill-ins: ARVADOS_API_TOKEN, ARVADOS_API_HOST and ARVADOS_API_HOST_INSECURE.

Owns ``env_fill``: as Go's loader does (lib/config/deprecated.go: Loader.loadOldEnvironmentVariables), these
variables fill only keys the cluster config leaves empty (SystemRootToken, Services.Controller.ExternalURL,
TLS.Insecure), each with a warning; they never override the file. The legacy file is applied after them.
And ``unused_env_warnings``: Go's warnings for such a variable that is set but not used, because the
config says otherwise. Pure: the environment is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from slurm_dispatch.config.limits import check_token
from slurm_dispatch.config.redact import show
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings


def env_fill(f: dict[str, Any], environ: Mapping[str, str], warnings: list[str]) -> None:
    """Fills an empty token and controller URL in ``f`` from ARVADOS_API_*; appends a warning for each. Pure.

    Port of lib/config/deprecated.go: Loader.loadOldEnvironmentVariables.

    Raises:
        ConfigError: ARVADOS_API_HOST is not ``host[:port]``, or ARVADOS_API_TOKEN is not a usable token
            (whitespace or a control character; the message never shows it).
    """
    token = environ.get("ARVADOS_API_TOKEN", "")
    if token and not f.get("system_root_token"):
        f["system_root_token"] = check_token(
            token, lambda message: ConfigError(message, key="ARVADOS_API_TOKEN", value="<redacted>"))
        warnings.append("SystemRootToken missing from cluster config, using the ARVADOS_API_TOKEN "
                        "environment variable")
    host = environ.get("ARVADOS_API_HOST", "").strip().rstrip("/")
    if host and not f.get("controller_url"):
        url = f"https://{host}/"
        if "/" in host or not host.isprintable() or any(ch.isspace() for ch in host) or not _hostname(url):
            raise ConfigError(f"cannot parse ARVADOS_API_HOST {show(host)}: expected host[:port]",
                              key="ARVADOS_API_HOST", value=show(host))
        f["controller_url"] = url
        warnings.append("Services.Controller.ExternalURL missing from cluster config, using the "
                        "ARVADOS_API_HOST(_INSECURE) environment variables")
        insecure = environ.get("ARVADOS_API_HOST_INSECURE", "")
        if insecure not in ("", "0"):
            f["tls_insecure"] = True


def _hostname(url: str) -> str | None:
    """Returns the host of ``url``, or None when it has none or its port is not 0-65535."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        return None
    return parts.hostname


def unused_env_warnings(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Returns Go's warning, word for word, for each ARVADOS_API_* variable that is set but not used. Pure.

    Port of lib/service/cmd.go: Command.RunCommand, which compares the final config with the environment:
    ARVADOS_API_HOST that is not the controller's ``host[:port]`` (compared after the trimming ``env_fill``
    does, so a variable that filled the URL never warns), ARVADOS_API_HOST_INSECURE whose truth (anything
    but ``0``) differs from TLS.Insecure, ARVADOS_API_TOKEN that is not SystemRootToken. The service never
    uses them: the config (after the fill-ins) is what it and its jobs get. No warning shows a value.
    """
    out: list[str] = []
    host = environ.get("ARVADOS_API_HOST", "")
    if host and host.strip().rstrip("/") != settings.api_host:
        out.append("ARVADOS_API_HOST environment variable is present, but will not be used")
    insecure = environ.get("ARVADOS_API_HOST_INSECURE", "")
    if insecure and (insecure != "0") != settings.tls_insecure:
        out.append("ARVADOS_API_HOST_INSECURE environment variable is present, but will not be used")
    token = environ.get("ARVADOS_API_TOKEN", "")
    if token and token != settings.system_root_token:
        out.append("ARVADOS_API_TOKEN environment variable is present, but will not be used")
    return out
