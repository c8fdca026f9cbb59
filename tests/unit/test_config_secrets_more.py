"""Secrets the first review found could leak: a password in the controller URL, and libpq password keywords
spelled in another case (libpq reads keywords in any case, so the config may say ``Password``)."""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.config import redacted, settings_from_documents
from slurm_dispatch.errors import ConfigError


def _doc(body: dict[str, Any]) -> dict[str, Any]:
    return {"Clusters": {"zzzzz": {"SystemRootToken": "x" * 40, **body}}}


@pytest.mark.parametrize(
    "url",
    ["https://admin:URLPASS@ctrl.example/", "https://admin@ctrl.example/", "ftp://u:URLPASS@ctrl.example/"],
)
def test_controller_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_documents(_doc({"Services": {"Controller": {"ExternalURL": url}}}), source="c.yml", environ={})
    text = str(err.value)
    assert "Services.Controller.ExternalURL" in text
    assert "URLPASS" not in text and "admin" not in text


@pytest.mark.parametrize("key", ["password", "Password", "PASSWORD", "sslpassword", "SSLPassword"])
def test_postgresql_password_keywords_are_redacted_in_any_case(key: str) -> None:
    settings, _ = settings_from_documents(
        _doc({"PostgreSQL": {"Connection": {"host": "db", key: "PGSECRET"}}}), source="c.yml", environ={}
    )
    shown = redacted(settings)
    assert "PGSECRET" not in repr(shown)
    assert shown["postgresql_connection"][key] == "<redacted>"


@pytest.mark.parametrize("key", ["Password", "sslpassword"])
def test_postgresql_password_keywords_are_redacted_in_errors(key: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings_from_documents(_doc({"PostgreSQL": {"Connection": {key: 1.5}}}), source="c.yml", environ={})
    assert "1.5" not in str(err.value)
    assert "<redacted>" in str(err.value)


def test_settings_repr_hides_the_sbatch_environment() -> None:
    settings, _ = settings_from_documents(
        _doc({"Containers": {"SLURM": {"SbatchEnvironmentVariables": {"MY_TOKEN": "ENVSECRET"}}}}),
        source="c.yml", environ={},
    )
    assert "ENVSECRET" not in repr(settings)
