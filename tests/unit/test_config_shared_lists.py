"""One definition each: the log levels and the libpq keyword rule that the loader and the service share.

Before, ``service.logging_setup.LEVELS`` accepted fatal/panic that the loader refused, and ``service.locks``
had its own copy of the libpq keyword pattern.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dispatch.config import LIBPQ_KEYWORD_RE, LOG_LEVELS, settings_from_documents
from slurm_dispatch.errors import ConfigError
from slurm_dispatch.service import locks, logging_setup


def test_logging_uses_the_loaders_levels() -> None:
    assert logging_setup.LEVELS is LOG_LEVELS


@pytest.mark.parametrize("level", [*LOG_LEVELS, "INFO", "Fatal", "PANIC", "Warning"])
def test_every_level_go_accepts_loads_and_configures_logging(level: str) -> None:
    """logrus.ParseLevel (sdk/go/ctxlog: setLevel) takes these, in any case; so do the loader and logging."""
    settings, _ = settings_from_documents({"Clusters": {"zzzzz": {"SystemLogs": {"LogLevel": level}}}}, source="c")
    assert settings.log_level == level.lower()
    assert logging_setup.LEVELS[settings.log_level] == LOG_LEVELS[level.lower()]


@pytest.mark.parametrize("level", ["verbose", "critical", " info", "5"])
def test_other_levels_are_refused_by_the_loader_and_by_logging(level: str) -> None:
    with pytest.raises(ConfigError, match=r"SystemLogs\.LogLevel: .* is not one of panic, fatal, error, warn"):
        settings_from_documents({"Clusters": {"zzzzz": {"SystemLogs": {"LogLevel": level}}}}, source="c")
    if level.strip().lower() not in LOG_LEVELS:
        with pytest.raises(ConfigError):
            logging_setup.configure_logging(level=level, fmt="json")


@given(st.text(max_size=12))
def test_conninfo_refuses_exactly_the_keys_the_loader_refuses(key: str) -> None:
    body = {"PostgreSQL": {"Connection": {key: "x"}}}
    try:
        settings_from_documents({"Clusters": {"zzzzz": body}}, source="c")
        loader_ok = True
    except ConfigError:
        loader_ok = False
    try:
        locks.conninfo({key: "x"})
        conninfo_ok = True
    except ConfigError:
        conninfo_ok = False
    assert loader_ok == conninfo_ok == bool(LIBPQ_KEYWORD_RE.match(key.lower()))
