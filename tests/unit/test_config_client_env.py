"""Arvados client variables in SbatchEnvironmentVariables, and PostgreSQL's port.

In Arvados's Go dispatcher, ARVADOS_API_HOST / ARVADOS_API_TOKEN / ARVADOS_API_HOST_INSECURE in
Containers.SLURM.SbatchEnvironmentVariables also replaced the dispatcher's own client settings
(services/crunch-dispatch-slurm/crunch-dispatch-slurm.go: configure); here they reach only the jobs, so
``config check`` warns when crunch-run would use another API server, token or TLS checking. A PostgreSQL port
outside 1-65535 used to pass and fail only when the lock connected.
"""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.config import settings_from_documents
from slurm_dispatch.errors import ConfigError

TOKEN = "s3cr3tRootTokenValue0123456789abcdef"
OTHER_TOKEN = "otherTokenValue0123456789abcdefghijk"
PREFIX = "Clusters.zzzzz.Containers.SLURM.SbatchEnvironmentVariables"


def warnings_for(env: dict[str, str], **body: Any) -> list[str]:
    cluster = {"SystemRootToken": TOKEN, "Services": {"Controller": {"ExternalURL": "https://ctrl.example:8443/"}},
               "Containers": {"SLURM": {"SbatchEnvironmentVariables": env}}, **body}
    _, warnings = settings_from_documents({"Clusters": {"zzzzz": cluster}}, source="/etc/arvados/config.yml")
    return [w for w in warnings if w.startswith(PREFIX)]


@pytest.mark.parametrize(("name", "value", "key"), [
    ("ARVADOS_API_TOKEN", OTHER_TOKEN, "SystemRootToken"),
    ("ARVADOS_API_HOST", "other.example", "Services.Controller.ExternalURL"),
    ("ARVADOS_API_HOST_INSECURE", "true", "TLS.Insecure"),
])
def test_a_client_variable_that_differs_from_the_dispatchers_is_a_warning(name: str, value: str, key: str) -> None:
    warnings = warnings_for({name: value})
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{PREFIX}.{name} is not what {key} gives the dispatcher: crunch-run would use ")
    assert f"set {key} instead, or remove the variable" in warnings[0]
    assert OTHER_TOKEN not in warnings[0] and TOKEN not in warnings[0]


def test_client_variables_that_agree_with_the_dispatcher_are_fine() -> None:
    assert warnings_for({"ARVADOS_API_TOKEN": TOKEN, "ARVADOS_API_HOST": "ctrl.example:8443",
                         "ARVADOS_API_HOST_INSECURE": "0", "ARVADOS_KEEP_SERVICES": "http://keep:25107"}) == []
    assert warnings_for({"ARVADOS_API_HOST_INSECURE": "Yes"}, TLS={"Insecure": True}) == []


@pytest.mark.parametrize("port", [0, 65536, 99999, 2**70, "99999", "x", "5432,5433", " 5432", "-1"])
def test_a_postgresql_port_out_of_range_is_refused(port: object) -> None:
    cluster = {"PostgreSQL": {"Connection": {"host": "db", "port": port}}}
    with pytest.raises(ConfigError) as info:
        settings_from_documents({"Clusters": {"zzzzz": cluster}}, source="/etc/arvados/config.yml")
    text = str(info.value)
    assert len(text.splitlines()) == 1
    assert text.startswith("/etc/arvados/config.yml: Clusters.zzzzz.PostgreSQL.Connection.port: must be a TCP port "
                           "number from 1 to 65535, got ")


@pytest.mark.parametrize("port", [1, 5432, "5432", 65535])
def test_a_postgresql_port_in_range_is_kept_as_text(port: object) -> None:
    cluster = {"PostgreSQL": {"Connection": {"host": "db", "port": port}}}
    settings, _ = settings_from_documents({"Clusters": {"zzzzz": cluster}}, source="/etc/arvados/config.yml")
    assert settings.postgresql_connection["port"] == str(port)
