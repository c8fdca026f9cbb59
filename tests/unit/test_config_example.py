"""contrib/config.example.yml and contrib/slurm-dispatch.example.yml must load cleanly and show what they document."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slurm_dispatch.config import KEYS, OwnKey, load_settings, redacted, startup_problems
from slurm_dispatch.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "contrib" / "config.example.yml"


def test_example_config_loads_without_warnings_or_problems() -> None:
    loaded = load_settings(path=EXAMPLE, environ={}, skip_legacy=True)
    s = loaded.settings
    assert loaded.warnings == []
    assert startup_problems(s) == []
    assert s.cluster_id == "zzzzz"
    assert s.api_host == "zzzzz.example.org"
    assert s.dispatch_internal_urls == ("http://localhost:9006",)
    assert s.reserve_extra_ram == 576716800
    assert s.poll_interval == 10.0
    assert s.postgresql_connection["dbname"] == "arvados_production"
    assert s.instance_types["m4large"].scratch == 32_000_000_000
    assert s.instance_types["g4dn"].gpu.device_count == 1
    assert s.sbatch_environment == {"ARVADOS_KEEP_SERVICES": "http://keep0.zzzzz.example.org:25107"}


def test_example_tokens_are_placeholders_and_redacted() -> None:
    s = load_settings(path=EXAMPLE, environ={}, skip_legacy=True).settings
    assert set(s.system_root_token) == {"x"}
    assert set(s.management_token) == {"y"}
    out = redacted(s)
    assert out["system_root_token"] == out["management_token"] == "<redacted>"
    assert out["postgresql_connection"]["password"] == "<redacted>"


OWN_EXAMPLE = EXAMPLE.with_name("slurm-dispatch.example.yml")
CONFIG_DOC = EXAMPLE.parents[1] / "docs" / "configuration.md"


def test_own_example_sets_every_key_to_its_default() -> None:
    """contrib/slurm-dispatch.example.yml shows every key at its default: loading it changes nothing."""
    loaded = load_settings(path=EXAMPLE, environ={}, skip_legacy=True, dispatch_config=OWN_EXAMPLE)
    assert loaded.warnings == []
    defaults = Settings()
    assert {k.field: getattr(loaded.settings, k.field) for k in KEYS} == {k.field: getattr(defaults, k.field)
                                                                          for k in KEYS}
    assert loaded.settings.dispatch_config_path == str(OWN_EXAMPLE)
    document = yaml.safe_load(OWN_EXAMPLE.read_text(encoding="utf-8"))
    for own in KEYS:
        section, key = own.key.split(".")
        assert key in document[section], own.key
    assert sum(len(keys) for keys in document.values()) == len(KEYS)


@pytest.mark.parametrize("own", KEYS, ids=[k.key for k in KEYS])
def test_every_own_key_is_documented(own: OwnKey) -> None:
    section, key = own.key.split(".")
    text = CONFIG_DOC.read_text(encoding="utf-8")
    assert f"`{section}.{key}`" in text, f"docs/configuration.md lacks {own.key}"
