"""Fixtures for the admin-command tests: a CliRunner wrapper with an isolated environment and a temp config.

``cli(*args)`` runs ``slurm-dispatch <args>`` in-process with ``catch_exceptions=False`` (a bug shows its
traceback), NO_COLOR, a fixed terminal width and ``ARVADOS_CONFIG`` pointing at the test's config file;
the ARVADOS_API_* variables, ARVADOS_SERVICE_INTERNAL_URL and SLURM_CONF of the outer environment are removed.
``SLURM_DISPATCH_CONFIG`` names the test's own slurm-dispatch file, whose ``Service.StateDirectory`` is a
temporary directory: an outer value never leaks in, and ``drain``, ``resume``, ``status`` and ``run`` read and
write the test's state file, never /var/lib/slurm-dispatch. A test that needs no own file at all sets
``SLURM_DISPATCH_CONFIG`` to None. The admin commands' log handler (``cli.common.admin_log_lines``, installed for
the rest of the process, as a command's process runs one command) is removed after each test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from slurm_dispatch.cli.app import app
from slurm_dispatch.cli.common import LIBRARY_LOGGER, AdminLogLines

ROOT_TOKEN = "systemusertesttoken1234567890aoeuidhtnsqjkxbmwvzpy"
"""The SystemRootToken of the test configs (and of the emulator): it must never appear in any output."""

WIDTH = 120
"""COLUMNS for every invocation: wide enough that the status table never wraps."""


@dataclass
class Cli:
    """Runs the CLI against one temporary config file."""

    config_path: Path
    env: dict[str, str | None] = field(default_factory=dict)
    own_path: Path | None = None
    """slurm-dispatch's own settings file (``$SLURM_DISPATCH_CONFIG``)."""
    state_dir: Path | None = None
    """Its ``Service.StateDirectory``: where the state file (drain, broken nodes) goes."""
    runner: CliRunner = field(default_factory=CliRunner)
    root_token: str = ROOT_TOKEN

    @staticmethod
    def cluster(**containers: Any) -> dict[str, Any]:
        """A minimal valid cluster config body (see ``base_cluster``) with these Containers keys."""
        return base_cluster(**containers)

    def write_config(self, cluster: Mapping[str, Any], *, cluster_id: str = "zzzzz") -> Path:
        """Write ``Clusters: {cluster_id: cluster}`` to the config file and return its path."""
        self.config_path.write_text(yaml.safe_dump({"Clusters": {cluster_id: dict(cluster)}}), encoding="utf-8")
        return self.config_path

    def write_own(self, text: str = "") -> Path:
        """Write slurm-dispatch's own file: ``text`` plus ``Service.StateDirectory`` (unless ``text`` sets a
        ``Service`` section of its own); return its path."""
        assert self.own_path is not None and self.state_dir is not None
        own = yaml.safe_load(text) or {}
        own.setdefault("Service", {"StateDirectory": str(self.state_dir)})
        self.own_path.write_text(yaml.safe_dump(own), encoding="utf-8")
        return self.own_path

    def __call__(self, *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None) -> Result:
        """Run ``slurm-dispatch *args``; blocks until it returns. Never catches exceptions."""
        return self.runner.invoke(app, list(args), env={**self.env, **(env or {})}, input=input,
                                  catch_exceptions=False)


def base_cluster(**containers: Any) -> dict[str, Any]:
    """A minimal valid cluster config body (token, controller, InternalURLs), with Containers overrides."""
    body: dict[str, Any] = {
        "SystemRootToken": ROOT_TOKEN,
        "Services": {
            "Controller": {"ExternalURL": "https://ctrl.example:8443/"},
            "DispatchSLURM": {"InternalURLs": {"http://localhost:9006": {}}},
        },
    }
    if containers:
        body["Containers"] = containers
    return body


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """A Cli with a valid default config (cluster zzzzz) at ``tmp_path/config.yml``, and its own settings at
    ``tmp_path/slurm-dispatch.yml`` with the state in ``tmp_path/state``."""
    path = tmp_path / "config.yml"
    own = tmp_path / "slurm-dispatch.yml"
    runner = Cli(config_path=path, own_path=own, state_dir=tmp_path / "state", env={
        "NO_COLOR": "1",
        "COLUMNS": str(WIDTH),
        "LINES": "50",
        "TERM": "dumb",
        "ARVADOS_CONFIG": str(path),
        "ARVADOS_API_TOKEN": None,
        "ARVADOS_API_HOST": None,
        "ARVADOS_API_HOST_INSECURE": None,
        "ARVADOS_SERVICE_INTERNAL_URL": None,
        "SLURM_CONF": None,
        "SLURM_DISPATCH_CONFIG": str(own),
    })
    runner.write_config(base_cluster())
    runner.write_own()
    yield runner
    library = logging.getLogger(LIBRARY_LOGGER)
    for handler in [h for h in library.handlers if isinstance(h, AdminLogLines)]:
        library.removeHandler(handler)
