"""The environment: ARVADOS_API_TOKEN, ARVADOS_API_HOST, ARVADOS_API_HOST_INSECURE, ARVADOS_SERVICE_INTERNAL_URL.

Owns ``env_fill``: as Go's loader does (lib/config/deprecated.go: Loader.loadOldEnvironmentVariables), these
variables fill only keys the cluster config leaves empty (SystemRootToken, Services.Controller.ExternalURL,
TLS.Insecure), each with a warning; they never override the file. The legacy file is applied after them.
And ``unused_env_warnings``: Go's warnings for such a variable that is set but not used, because the
config says otherwise. And ``service_url_override``: ARVADOS_SERVICE_INTERNAL_URL names which
Services.DispatchSLURM.InternalURLs entry this process is, as in every Go service. And
``job_client_warnings``: these variables set in SbatchEnvironmentVariables reach only the jobs here. Pure: the
environment is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from slurm_dispatch.config.cluster import has_userinfo, host_port_url
from slurm_dispatch.config.document import Doc
from slurm_dispatch.config.limits import check_token
from slurm_dispatch.config.redact import show
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings

SERVICE_URL_ENV = "ARVADOS_SERVICE_INTERNAL_URL"
"""Names the InternalURLs entry this process serves (lib/service/cmd.go: getListenAddr)."""


def env_fill(f: dict[str, Any], environ: Mapping[str, str], warnings: list[str]) -> None:
    """Fills an empty token and controller URL in ``f`` from ARVADOS_API_*; appends a warning for each. Pure.

    Port of lib/config/deprecated.go: Loader.loadOldEnvironmentVariables.

    Raises:
        ConfigError: ARVADOS_API_HOST is not ``host[:port]``, or ARVADOS_API_TOKEN is not a usable token
            (whitespace or a control character; the message never shows it). ``host_port_url`` checks the
            host: no scheme, path or ``user:password@`` (the password is never shown).
    """
    token = environ.get("ARVADOS_API_TOKEN", "")
    if token and not f.get("system_root_token"):
        f["system_root_token"] = check_token(
            token, lambda message: ConfigError(message, key="ARVADOS_API_TOKEN", value="<redacted>"), from_yaml=False)
        warnings.append("SystemRootToken missing from cluster config, using the ARVADOS_API_TOKEN "
                        "environment variable")
    host = environ.get("ARVADOS_API_HOST", "").strip()
    if host and not f.get("controller_url"):
        env = Doc({}, source="", prefix="", warnings=warnings)
        f["controller_url"] = host_port_url(env, "ARVADOS_API_HOST", host, "https")
        warnings.append("Services.Controller.ExternalURL missing from cluster config, using the "
                        "ARVADOS_API_HOST(_INSECURE) environment variables")
        insecure = environ.get("ARVADOS_API_HOST_INSECURE", "")
        if insecure not in ("", "0"):
            f["tls_insecure"] = True


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


_CLIENT_VARIABLES = (("ARVADOS_API_HOST", "Services.Controller.ExternalURL", "a different API server"),
                     ("ARVADOS_API_TOKEN", "SystemRootToken", "a different token"),
                     ("ARVADOS_API_HOST_INSECURE", "TLS.Insecure", "different TLS certificate checking"))


def job_client_warnings(settings: Settings) -> list[str]:
    """Returns a warning for each Arvados client variable in Containers.SLURM.SbatchEnvironmentVariables that gives
    crunch-run another API server, token or TLS checking than the dispatcher's own. Pure; never shows a value.

    In Arvados's Go dispatcher these variables also replaced its own client's settings
    (services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: configure sets SbatchEnvironmentVariables in its
    own environment before arvadosclient.MakeArvadosClient reads it); here they reach only the jobs, so the two
    would talk to different places or as different users.
    """
    env = settings.sbatch_environment
    ours = {"ARVADOS_API_HOST": settings.api_host, "ARVADOS_API_TOKEN": settings.system_root_token}
    out = []
    for name, key, what in _CLIENT_VARIABLES:
        if name not in env:
            continue
        if name == "ARVADOS_API_HOST_INSECURE":
            # sdk/go/arvados/client.go: NewClientFromEnv reads 1, yes and true (in any case) as true
            differs = (env[name].lower() in ("1", "yes", "true")) != settings.tls_insecure
        else:
            differs = env[name] != ours[name]
        if differs:
            out.append(f"Clusters.{settings.cluster_id}.Containers.SLURM.SbatchEnvironmentVariables.{name} is not "
                       f"what {key} gives the dispatcher: crunch-run would use {what} than the dispatcher "
                       "(Arvados's Go dispatcher used the variable for both); set "
                       f"{key} instead, or remove the variable")
    return out


def _same_url_form(url: str) -> str:
    """Returns ``url`` as Go compares InternalURLs: scheme in lower case, an empty path as ``/``. Pure.

    Go parses both sides with url.Parse (which lowers the scheme) and makes an empty path ``/``
    (sdk/go/arvados/config.go: URL.UnmarshalText for the keys, getListenAddr for the variable).
    """
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path or "/", parts.query, parts.fragment))


def service_url_override(entries: Mapping[str, str], environ: Mapping[str, str],
                         warnings: list[str]) -> tuple[str, ...] | None:
    """Returns the one URL to listen on when ARVADOS_SERVICE_INTERNAL_URL is set, else None. Pure.

    Port of lib/service/cmd.go: getListenAddr. ``entries`` maps each Services.DispatchSLURM.InternalURLs key to
    where it listens (``cluster.internal_url_entries``). An empty variable counts as unset. When the variable
    names a key (compared as Go does: scheme case and a missing ``/`` path do not matter), the answer is that
    entry's listen URL (its ListenURL, else the key). When it names none, Go listens on the variable's URL
    anyway with a warning, and so do we, with Go's warning word for word appended to ``warnings``.

    Two deliberate differences from Go, both refusing at startup what would otherwise fail later: a value that
    is not ``http(s)://host[:port][/path]`` is refused (Go's url.Parse accepts almost any text, and the service
    then exits 1, which systemd restarts); and a value that names no entry must be ``http://`` with an explicit
    port, the only endpoint this service can serve.

    Raises:
        ConfigError: naming ARVADOS_SERVICE_INTERNAL_URL and its value.
    """
    want = environ.get(SERVICE_URL_ENV, "")
    if want == "":
        return None

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"{reason}, got {show(want)}", key=SERVICE_URL_ENV, value=show(want))

    if has_userinfo(want):  # first: the messages below show the value
        raise ConfigError("a URL with user:password@ is not supported", key=SERVICE_URL_ENV, value="<redacted>")
    if not want.isprintable() or any(ch.isspace() for ch in want):
        raise refuse("must not contain whitespace or control characters")
    try:
        parts = urlsplit(want)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"expected a URL like http://host:port/ ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise refuse("expected a URL like http://host:port/ naming one of Services.DispatchSLURM.InternalURLs")
    wanted = _same_url_form(want)
    for key, listen in entries.items():
        if _same_url_form(key) == wanted:
            return (listen,)
    if parts.scheme.lower() != "http" or port is None:
        raise refuse("names no Services.DispatchSLURM.InternalURLs entry, so it is where the health and metrics "
                     "endpoint listens, and that must be http:// with an explicit port")
    warnings.append(f"possible configuration error: listening on {wanted} (from ${SERVICE_URL_ENV}) even though "
                    "configuration does not have a matching InternalURLs entry")
    return (want,)
