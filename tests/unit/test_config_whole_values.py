"""Patterns that validate a whole value must refuse a trailing newline.

Python's ``$`` also matches just before a final newline, Go's does not: a cluster ID of ``"zzzzz\\n"`` passed
``^[a-z0-9]{5}$`` here (lib/config/load.go: checkClusterID refuses it), and then no job name ever matched the
cluster, so leftover jobs were never adopted.
"""

from __future__ import annotations

import pytest

from slurm_dispatch.config import LIBPQ_KEYWORD_RE, select_cluster, settings_from_documents
from slurm_dispatch.config.cluster import CLUSTER_ID_RE
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.service.locks import conninfo


def test_a_cluster_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError, match="cluster ID should be 5 lowercase alphanumeric characters") as info:
        select_cluster({"Clusters": {"zzzzz\n": {}}}, source="/etc/arvados/config.yml")
    assert len(str(info.value).splitlines()) == 1


def test_a_cluster_id_option_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ConfigError, match="--cluster-id: cluster ID should be 5"):
        settings_from_documents(None, source="/etc/arvados/config.yml", cluster_id="abcde\n")


def test_a_postgresql_keyword_with_a_trailing_newline_is_refused() -> None:
    body = {"PostgreSQL": {"Connection": {"host\n": "db"}}}
    with pytest.raises(ConfigError, match="not a libpq connection keyword"):
        settings_from_documents({"Clusters": {"zzzzz": body}}, source="/etc/arvados/config.yml")


def test_conninfo_refuses_a_keyword_with_a_trailing_newline() -> None:
    with pytest.raises(ConfigError, match="not a libpq connection keyword"):
        conninfo({"host\n": "db"})


@pytest.mark.parametrize("pattern", [CLUSTER_ID_RE, LIBPQ_KEYWORD_RE], ids=["cluster-id", "libpq"])
def test_the_shared_patterns_refuse_a_trailing_newline_even_with_match(pattern: object) -> None:
    # other modules import these; a caller using .match must not get Python's $ either
    assert pattern.match("abcde\n") is None  # type: ignore[attr-defined]
    assert pattern.match("abcde") is not None  # type: ignore[attr-defined]
