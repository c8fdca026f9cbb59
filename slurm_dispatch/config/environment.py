"""Environment fill-ins: ARVADOS_API_TOKEN, ARVADOS_API_HOST and ARVADOS_API_HOST_INSECURE.

Owns ``env_fill``: as Go's loader does (lib/config/deprecated.go: Loader.loadOldEnvironmentVariables), these
variables fill only keys the cluster config leaves empty (SystemRootToken, Services.Controller.ExternalURL,
TLS.Insecure), each with a warning; they never override the file. The legacy file is applied after them.
Pure: the environment is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from slurm_dispatch.config.limits import check_token
from slurm_dispatch.config.redact import show
from slurm_dispatch.errors import ConfigError


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
