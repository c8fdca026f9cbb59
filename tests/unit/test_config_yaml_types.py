"""The YAML scalars of a config read as Arvados's loader reads them (go-yaml v2 under ghodss/yaml, resolve.go),
where PyYAML's YAML 1.1 differs: exponents without a dot are numbers, y/n are booleans, base 60 is text."""

from __future__ import annotations

from typing import Any

import pytest

from slurm_dispatch.config import settings_from_documents
from slurm_dispatch.config.safe_yaml import parse_yaml


@pytest.mark.parametrize(("text", "value"), [
    ("1e9", 1e9), ("-1e-3", -0.001), ("2E+3", 2000.0), ("1.5", 1.5), ("12.", 12.0), (".5", 0.5), (".inf", float("inf")),
    ("123", 123), ("0x10", 16), ("1_000", 1000), ("0755", 493),
    ("y", True), ("Y", True), ("n", False), ("N", False), ("yes", True), ("off", False),
    ("1:30", "1:30"), ("10s", "10s"), ("4GiB", "4GiB"), ("'1e9'", "1e9"), ("yy", "yy"),
    ("2024-01-01", "2024-01-01"), ("=", "="), ("0x_", "0x_"), ("0b_", "0b_"), ("._", "._"),
])
def test_scalars_read_as_go_yaml_v2_reads_them(text: str, value: Any) -> None:
    assert parse_yaml(f"k: {text}\n") == {"k": value}
    assert type(parse_yaml(f"k: {text}\n")["k"]) is type(value)


def test_a_config_written_with_exponents_and_y_n_loads_as_arvados_loads_it() -> None:
    doc = parse_yaml("""
Clusters:
  zzzzz:
    Containers:
      ReserveExtraRAM: 1e9
    InstanceTypes:
      a: {VCPUs: 2, RAM: 2e9, Price: 1e-3, Preemptible: y}
    TLS:
      Insecure: n
""")
    settings, _ = settings_from_documents(doc, source="c.yml")
    assert settings.reserve_extra_ram == 10**9
    a = settings.instance_types["a"]
    assert (a.ram, a.price, a.preemptible) == (2 * 10**9, 0.001, True)
    assert settings.tls_insecure is False


def test_map_keys_that_yaml_reads_as_booleans_or_numbers_are_named_as_arvados_names_them() -> None:
    """ghodss/yaml writes each key as JSON text: the boolean an unquoted Y is becomes "true", 1e3 becomes "1000"
    (str() would give "True" and "1000.0")."""
    doc = parse_yaml("""
Clusters:
  zzzzz:
    Containers:
      SLURM:
        SbatchEnvironmentVariables: {Y: "1", FOO: "2"}
    InstanceTypes:
      1e3: {VCPUs: 1, RAM: 1GiB}
""")
    settings, _ = settings_from_documents(doc, source="c.yml")
    assert settings.sbatch_environment == {"true": "1", "FOO": "2"}
    assert list(settings.instance_types) == ["1000"]
