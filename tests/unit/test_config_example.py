"""contrib/config.example.yml must load cleanly and show what it documents."""

from __future__ import annotations

from pathlib import Path

from slurm_dispatch.config import load_settings, redacted, startup_problems

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
