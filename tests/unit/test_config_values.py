"""Tables for the Go duration and Arvados byte-size spellings (sdk/go/arvados: duration.go, byte_size.go)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.config import parse_byte_size, parse_duration
from slurm_dispatch.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("10s", 10.0, id="seconds"),
        pytest.param("1m30s", 90.0, id="minutes-and-seconds"),
        pytest.param("5m", 300.0, id="minutes"),
        pytest.param("1h", 3600.0, id="hours"),
        pytest.param("1h2m3s", 3723.0, id="all-three"),
        pytest.param("300ms", 0.3, id="milliseconds"),
        pytest.param("1.5h", 5400.0, id="decimal"),
        pytest.param(".5s", 0.5, id="leading-dot"),
        pytest.param("100us", 100e-6, id="microseconds"),
        pytest.param("100µs", 100e-6, id="micro-sign"),
        pytest.param("10ns", 10e-9, id="nanoseconds"),
        pytest.param("+5s", 5.0, id="plus-sign"),
        pytest.param("0", 0.0, id="quoted-zero"),
        pytest.param(0, 0.0, id="bare-zero"),
        pytest.param("0s", 0.0, id="zero-seconds"),
        pytest.param("-0s", 0.0, id="minus-zero"),
    ],
)
def test_parse_duration_accepts_go_spellings(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param(10, "missing unit", id="bare-number"),
        pytest.param(1.5, "missing unit", id="bare-float"),
        pytest.param("10", "missing unit", id="quoted-number"),
        pytest.param("5mins", "invalid duration", id="unknown-unit"),
        pytest.param("1d", "invalid duration", id="days-not-a-go-unit"),
        pytest.param("s", "invalid duration", id="unit-only"),
        pytest.param("", "invalid duration", id="empty"),
        pytest.param("-1s", "negative", id="negative"),
        pytest.param(True, "expected a duration", id="bool"),
        pytest.param(["10s"], "expected a duration", id="list"),
    ],
)
def test_parse_duration_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, key="Clusters.zzzzz.Containers.MinRetryPeriod", path="/etc/x.yml")
    message = str(info.value)
    assert fragment in message
    assert message.startswith("/etc/x.yml: Clusters.zzzzz.Containers.MinRetryPeriod: ")
    assert info.value.key == "Clusters.zzzzz.Containers.MinRetryPeriod"
    assert info.value.value == repr(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        pytest.param(1024, 1024, id="int"),
        pytest.param(0, 0, id="zero"),
        pytest.param(2.0, 2, id="integral-float"),
        pytest.param("550MiB", 576716800, id="mebibytes-default-reserve"),
        pytest.param("550Mi", 576716800, id="no-trailing-B"),
        pytest.param("16GB", 16_000_000_000, id="gigabytes-decimal"),
        pytest.param("16G", 16_000_000_000, id="G-no-B"),
        pytest.param("1K", 1000, id="K"),
        pytest.param("1Ki", 1024, id="Ki"),
        pytest.param("1MB", 10**6, id="MB"),
        pytest.param("1Gi", 1 << 30, id="Gi"),
        pytest.param("1T", 10**12, id="T"),
        pytest.param("1Ti", 1 << 40, id="Ti"),
        pytest.param("1P", 10**15, id="P"),
        pytest.param("1PiB", 1 << 50, id="PiB"),
        pytest.param("1E", 10**18, id="E-exa-not-exponent"),
        pytest.param("1Ei", 1 << 60, id="Ei"),
        pytest.param("1.5Ki", 1536, id="decimal"),
        pytest.param("0.5KB", 500, id="fraction"),
        pytest.param("1e3B", 1000, id="exponent"),
        pytest.param("2 GiB", 2 << 30, id="space-before-unit"),
        pytest.param("5B", 5, id="plain-bytes"),
        pytest.param("0", 0, id="quoted-zero-is-harmless"),
    ],
)
def test_parse_byte_size(value: object, size: int) -> None:
    assert parse_byte_size(value) == size


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        # Go silently reads a quoted unitless number as 0; we refuse it instead of copying the trap.
        pytest.param("1024", "quoted number with no unit", id="quoted-unitless-go-trap"),
        pytest.param("1.5", "quoted number with no unit", id="quoted-unitless-decimal"),
        pytest.param(-1, "must not be negative", id="negative-int"),
        pytest.param("-5KiB", "must not be negative", id="negative-string"),
        pytest.param(1.5, "whole number", id="fractional-float"),
        pytest.param("abc", "invalid byte size", id="garbage"),
        pytest.param("5Xi", "invalid byte size", id="unknown-prefix"),
        pytest.param("5kB", "invalid byte size", id="lowercase-k-is-not-go"),
        pytest.param("B", "invalid byte size", id="unit-only"),
        pytest.param("", "invalid byte size", id="empty"),
        pytest.param("10E", "too large", id="overflow"),
        pytest.param(True, "expected a byte size", id="bool"),
        pytest.param({"a": 1}, "expected a byte size", id="map"),
    ],
)
def test_parse_byte_size_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_byte_size(value, key="Clusters.zzzzz.Containers.ReserveExtraRAM", path="c.yml")
    assert fragment in str(info.value)
    assert "Clusters.zzzzz.Containers.ReserveExtraRAM" in str(info.value)
    assert "c.yml" in str(info.value)


# --- properties ------------------------------------------------------------------------------------------

_VALUES = st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(),
                    st.lists(st.integers(), max_size=2))


@given(_VALUES)
def test_parse_duration_raises_only_config_error(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except ConfigError:
        return
    assert seconds >= 0


@given(_VALUES)
def test_parse_byte_size_raises_only_config_error(value: object) -> None:
    try:
        size = parse_byte_size(value)
    except ConfigError:
        return
    assert 0 <= size < 1 << 63


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["K", "Ki", "M", "Mi", "G", "Gi"]),
       st.booleans())
def test_byte_size_units_scale(number: int, prefix: str, with_b: bool) -> None:
    scale = {"K": 10**3, "Ki": 2**10, "M": 10**6, "Mi": 2**20, "G": 10**9, "Gi": 2**30}[prefix]
    assert parse_byte_size(f"{number}{prefix}{'B' if with_b else ''}") == number * scale


@given(st.integers(min_value=0, max_value=99), st.integers(min_value=0, max_value=59),
       st.integers(min_value=0, max_value=59))
def test_duration_components_add_up(h: int, m: int, s: int) -> None:
    assert parse_duration(f"{h}h{m}m{s}s") == pytest.approx(h * 3600 + m * 60 + s)
