"""Go's warnings for ARVADOS_API_* variables that are set but not used (lib/service/cmd.go), as loader warnings.

The config wins over these variables (they only fill empty keys), so a service that has them set to something
else is told, in Go's words, that they will not be used.
"""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.config import settings_from_documents

TOKEN = "configRootToken0123456789abcdefghijklmnopqrstu"
HOST_WARNING = "ARVADOS_API_HOST environment variable is present, but will not be used"
INSECURE_WARNING = "ARVADOS_API_HOST_INSECURE environment variable is present, but will not be used"
TOKEN_WARNING = "ARVADOS_API_TOKEN environment variable is present, but will not be used"
GO_WARNINGS = (HOST_WARNING, INSECURE_WARNING, TOKEN_WARNING)


def env_warnings(body: dict[str, Any], environ: dict[str, str]) -> list[str]:
    _, warnings = settings_from_documents({"Clusters": {"zzzzz": body}}, source="c.yml", environ=environ)
    return [w for w in warnings if w in GO_WARNINGS]


FULL = {"SystemRootToken": TOKEN, "Services": {"Controller": {"ExternalURL": "https://ctrl.example:8443/"}},
        "TLS": {"Insecure": False}}


@pytest.mark.parametrize(("body", "environ", "expected"), [
    pytest.param(FULL, {}, [], id="none-set"),
    pytest.param(FULL, {"ARVADOS_API_HOST": "other.example"}, [HOST_WARNING], id="host-differs"),
    pytest.param(FULL, {"ARVADOS_API_HOST": "ctrl.example:8443"}, [], id="host-same"),
    pytest.param(FULL, {"ARVADOS_API_HOST": "ctrl.example"}, [HOST_WARNING], id="host-without-the-port"),
    pytest.param(FULL, {"ARVADOS_API_HOST": ""}, [], id="host-empty"),
    pytest.param(FULL, {"ARVADOS_API_TOKEN": "otherToken"}, [TOKEN_WARNING], id="token-differs"),
    pytest.param(FULL, {"ARVADOS_API_TOKEN": TOKEN}, [], id="token-same"),
    pytest.param(FULL, {"ARVADOS_API_HOST_INSECURE": "1"}, [INSECURE_WARNING], id="insecure-1-vs-false"),
    pytest.param(FULL, {"ARVADOS_API_HOST_INSECURE": "0"}, [], id="insecure-0-vs-false"),
    pytest.param(FULL, {"ARVADOS_API_HOST_INSECURE": "false"}, [INSECURE_WARNING], id="insecure-false-is-true"),
    pytest.param({**FULL, "TLS": {"Insecure": True}}, {"ARVADOS_API_HOST_INSECURE": "0"}, [INSECURE_WARNING],
                 id="insecure-0-vs-true"),
    pytest.param({**FULL, "TLS": {"Insecure": True}}, {"ARVADOS_API_HOST_INSECURE": "yes"}, [],
                 id="insecure-yes-vs-true"),
    pytest.param(FULL, {"ARVADOS_API_HOST": "other.example", "ARVADOS_API_HOST_INSECURE": "1",
                        "ARVADOS_API_TOKEN": "otherToken"}, list(GO_WARNINGS), id="all-three-in-go-order"),
    pytest.param({}, {"ARVADOS_API_HOST": "ctrl.example/", "ARVADOS_API_HOST_INSECURE": "1",
                      "ARVADOS_API_TOKEN": "envToken"}, [], id="used-as-fill-ins"),
])
def test_go_warnings_for_unused_variables(body: dict[str, Any], environ: dict[str, str],
                                          expected: list[str]) -> None:
    assert env_warnings(body, environ) == expected


def test_the_legacy_file_counts_as_the_config() -> None:
    """The comparison is with the final settings: a legacy Client.AuthToken that matches the variable is used."""
    _, warnings = settings_from_documents(
        {"Clusters": {"zzzzz": FULL}}, source="c.yml", environ={"ARVADOS_API_TOKEN": "legacyToken"},
        legacy_document={"Client": {"AuthToken": "legacyToken", "APIHost": "ctrl.example:8443"}},
        legacy_source="legacy.yml")
    assert TOKEN_WARNING not in warnings


def test_no_warning_shows_a_value() -> None:
    secret = "envSecretToken0123456789"
    _, warnings = settings_from_documents({"Clusters": {"zzzzz": FULL}}, source="c.yml",
                                          environ={"ARVADOS_API_TOKEN": secret, "ARVADOS_API_HOST": "h.example"})
    assert warnings and not any(secret in w or TOKEN in w or "h.example" in w for w in warnings)
