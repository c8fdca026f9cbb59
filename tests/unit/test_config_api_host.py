"""ARVADOS_API_HOST and the legacy Client.APIHost: ``host[:port]``, nothing else, and never a password shown.

Go takes either text as the controller URL's host (lib/config/deprecated.go: loadOldEnvironmentVariables and
loadOldClientConfig), and the dispatcher uses only the host. Here a ``user:password@`` in it used to reach log
lines ("no response: admin:s3cretPW@127.0.0.1:1: ...") and every job's ARVADOS_API_HOST, and a legacy
``https://other.example`` became ``https://https://other.example/``.
"""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.config import settings_from_documents
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings

PASSWORD = "s3cretPW"
CLUSTER = {"Clusters": {"zzzzz": {"SystemRootToken": "abc"}}}


def load(**kwargs: Any) -> Settings:
    settings, _ = settings_from_documents(CLUSTER, source="/etc/arvados/config.yml", legacy_source="/etc/old.yml",
                                          **kwargs)
    return settings


def refused(**kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    text = str(info.value)
    assert len(text.splitlines()) == 1 and PASSWORD not in text and PASSWORD not in str(info.value.value), text
    return text


@pytest.mark.parametrize("host", [
    f"admin:{PASSWORD}@127.0.0.1:1",
    f"admin:{PASSWORD}@127.0.0.1:99999",  # a bad port too: the password must not show in the port's message
    f"admin:{PASSWORD}@127.0.0.1/x y",
    "admin@127.0.0.1",
])
def test_arvados_api_host_with_user_info_is_refused_without_showing_it(host: str) -> None:
    text = refused(environ={"ARVADOS_API_HOST": host})
    assert text.startswith("ARVADOS_API_HOST: ") and "user:password@ is not supported" in text


@pytest.mark.parametrize("host", [f"admin:{PASSWORD}@ctrl.example", "https://ctrl.example", "ctrl.example/api",
                                  "ctrl.example:99999"])
def test_legacy_api_host_is_checked_as_host_and_port(host: str) -> None:
    text = refused(legacy_document={"Client": {"APIHost": host}})
    assert text.startswith("/etc/old.yml: Client.APIHost: expected host[:port]"), text


def test_legacy_api_host_with_a_scheme_says_what_to_write() -> None:
    text = refused(legacy_document={"Client": {"APIHost": "https://other.example"}})
    assert "without a scheme, got 'https://other.example' (write 'other.example')" in text


@pytest.mark.parametrize("where", ["legacy", "environment"])
def test_a_trailing_slash_after_the_host_is_accepted_in_either_place(where: str) -> None:
    """One rule for both: Go makes a URL with that host and the path "/" from either."""
    settings = (load(legacy_document={"Client": {"APIHost": "h.example:8443/"}}) if where == "legacy"
                else load(environ={"ARVADOS_API_HOST": "h.example:8443/"}))
    assert settings.controller_url == "https://h.example:8443/"


def test_legacy_api_host_and_scheme_still_make_the_url() -> None:
    settings = load(legacy_document={"Client": {"APIHost": "other.example:8443", "Scheme": "http"}})
    assert settings.controller_url == "http://other.example:8443/"


@pytest.mark.parametrize("url", [
    f"https://admin:{PASSWORD}@ctrl.example:99999/",  # the port's error used to quote the whole URL
    f"https://admin:{PASSWORD}@ctrl example/",  # so did the whitespace error
])
def test_external_url_with_a_password_is_never_shown(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_documents({"Clusters": {"zzzzz": {"Services": {"Controller": {"ExternalURL": url}}}}},
                                source="/etc/arvados/config.yml")
    assert PASSWORD not in str(info.value) and "user:password@ is not supported" in str(info.value)


def test_service_internal_url_with_a_password_is_never_shown() -> None:
    text = refused(environ={"ARVADOS_SERVICE_INTERNAL_URL": f"http://admin:{PASSWORD}@host:99999 /"})
    assert "user:password@ is not supported" in text
