"""The legacy file's keys are matched regardless of case, as Go matches them.

Go decodes the legacy crunch-dispatch-slurm.yml with encoding/json (lib/config/deprecated.go:
loadOldConfigHelper), which matches field names regardless of case: ``pollPeriod: 5s`` is PollPeriod there. A
drop-in replacement must read the same file the same way; it used to warn "unknown legacy config entry" and
ignore the key.
"""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.config import settings_from_documents
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.settings import Settings


def load(legacy: dict[str, Any]) -> tuple[Settings, list[str]]:
    return settings_from_documents({"Clusters": {"zzzzz": {}}}, source="/etc/arvados/config.yml",
                                   legacy_document=legacy, legacy_source="/etc/old.yml")


def test_keys_in_another_case_are_read() -> None:
    settings, warnings = load({"pollPeriod": "5s", "BATCHSIZE": 7,
                               "client": {"apihost": "ctrl.example:8443", "authToken": "abc", "INSECURE": True}})
    assert settings.poll_interval == 5.0 and settings.batch_size == 7
    assert settings.controller_url == "https://ctrl.example:8443/" and settings.system_root_token == "abc"
    assert settings.tls_insecure is True
    assert not [w for w in warnings if "unknown legacy config entry" in w], warnings


def test_a_key_in_another_case_gets_a_warning_naming_its_spelling() -> None:
    _, warnings = load({"pollPeriod": "5s", "Client": {"apihost": "ctrl.example"}})
    assert ("/etc/old.yml: legacy config entry pollPeriod is read as PollPeriod (Arvados matches these keys "
            "regardless of case); spell it PollPeriod") in warnings
    assert any("Client.apihost is read as Client.APIHost" in w for w in warnings), warnings


def test_the_same_key_twice_in_different_cases_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load({"PollPeriod": "5s", "pollperiod": "6s"})
    assert str(info.value) == ("/etc/old.yml: PollPeriod: given twice, as PollPeriod and pollperiod (keys are "
                               "matched regardless of case); keep one")


def test_unknown_keys_are_still_warned_about_and_ignored() -> None:
    settings, warnings = load({"Bogus": 1, "Client": {"bogus": 2}})
    assert "/etc/old.yml: unknown legacy config entry Bogus (ignored)" in warnings
    assert "/etc/old.yml: unknown legacy config entry Client.bogus (ignored)" in warnings
    assert settings.poll_interval == Settings().poll_interval
