"""Values Arvados refuses are refused here too: durations and byte sizes with stray whitespace, other clusters' IDs.

``config check`` passing a value that Arvados's own services refuse leaves a cluster config that breaks them:
Go's time.ParseDuration takes no whitespace (sdk/go/arvados/duration.go); a byte size allows only spaces around
its unit (sdk/go/arvados/byte_size.go: strings.Trim(..., " ")) and its number is a JSON number; and
lib/config/load.go: Loader.Load checks the ID of every cluster in the file, not just the one in use.
"""

from __future__ import annotations

import pytest

from slurm_dispatch.config import parse_byte_size, parse_duration, settings_from_documents
from slurm_dispatch.errors import ConfigError


def one_line(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(exc.value)
    assert len(text.splitlines()) == 1, text
    return text


@pytest.mark.parametrize("text", [" 10s", "10s\n", "\t10s", " 10s "])
def test_a_duration_with_whitespace_around_it_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text, key="Clusters.zzzzz.Containers.MinRetryPeriod", path="/etc/x.yml")
    assert "remove the whitespace around it (Arvados refuses it)" in one_line(info)


@pytest.mark.parametrize("text", ["10\nKB", "10KB\n", "10\tKB", "10KiB\r\n"])
def test_a_byte_size_with_a_tab_or_line_break_after_the_number_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_byte_size(text, key="Clusters.zzzzz.Containers.ReserveExtraRAM", path="/etc/x.yml")
    assert "only spaces may come between the number and the unit, or after it" in one_line(info)


@pytest.mark.parametrize("text", ["+1KB", ".5KB", "1.KB", "010KB"])
def test_a_byte_size_number_must_be_a_json_number(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid byte size"):
        parse_byte_size(text)


@pytest.mark.parametrize(("text", "size"), [(" 10 KB ", 10_000), ("\n10KB", 10_000), ("-0KB", 0)])
def test_byte_sizes_go_reads_are_still_read(text: str, size: int) -> None:
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_an_infinite_duration_or_size_is_refused_as_such(value: float) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value)
    assert "an infinite or NaN duration is not allowed" in one_line(info) and "write e.g." not in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_byte_size(value)
    assert "an infinite or NaN size is not allowed" in one_line(info)


def test_another_clusters_bad_id_is_refused() -> None:
    document = {"Clusters": {"zzzzz": {}, "BAD!!": {}}}
    with pytest.raises(ConfigError) as info:
        settings_from_documents(document, source="/etc/arvados/config.yml", cluster_id="zzzzz")
    assert one_line(info) == ("/etc/arvados/config.yml: Clusters.BAD!!: cluster ID should be 5 lowercase "
                              "alphanumeric characters")


@pytest.mark.parametrize("cluster_id", ["zzzzz", None])
def test_a_sample_cluster_is_dropped_before_the_ids_are_checked(cluster_id: str | None) -> None:
    """lib/config/load.go: Loader.Load removes SAMPLE keys before checkClusterID, so Go accepts this file, and
    with one cluster left needs no cluster ID to choose it."""
    document = {"Clusters": {"zzzzz": {}, "SAMPLE": {"SystemRootToken": "x"}}}
    settings, _ = settings_from_documents(document, source="/etc/arvados/config.yml", cluster_id=cluster_id)
    assert settings.cluster_id == "zzzzz"
