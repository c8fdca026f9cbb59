"""Fixtures for the admin-command tests: a CliRunner wrapper with an isolated environment and a temp config.

``cli(*args)`` runs ``slurm-dispatch <args>`` in-process with ``catch_exceptions=False`` (a bug shows its
traceback), NO_COLOR, a fixed terminal width and ``ARVADOS_CONFIG`` pointing at the test's config file;
the ARVADOS_API_* variables and SLURM_CONF of the outer environment are removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from slurm_dispatch.cli.app import app

ROOT_TOKEN = "systemusertesttoken1234567890aoeuidhtnsqjkxbmwvzpy"
"""The SystemRootToken of the test configs (and of the emulator): it must never appear in any output."""

WIDTH = 120
"""COLUMNS for every invocation: wide enough that the status table never wraps."""


@dataclass
class Cli:
    """Runs the CLI against one temporary config file."""

    config_path: Path
    env: dict[str, str | None] = field(default_factory=dict)
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
def cli(tmp_path: Path) -> Cli:
    """A Cli with a valid default config (cluster zzzzz) at ``tmp_path/config.yml``."""
    path = tmp_path / "config.yml"
    runner = Cli(config_path=path, env={
        "NO_COLOR": "1",
        "COLUMNS": str(WIDTH),
        "LINES": "50",
        "TERM": "dumb",
        "ARVADOS_CONFIG": str(path),
        "ARVADOS_API_TOKEN": None,
        "ARVADOS_API_HOST": None,
        "ARVADOS_API_HOST_INSECURE": None,
        "SLURM_CONF": None,
    })
    runner.write_config(base_cluster())
    return runner
