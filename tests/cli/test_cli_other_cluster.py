"""A container uuid of another cluster is refused before anything is asked of Slurm or the API: the service never
touches another cluster's containers or jobs (another dispatcher may share the Slurm cluster), and a GET of it would
be a federated call made on our token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

OTHER = "yyyyy-dz642-aaaaaaaaaaaaaaa"


@pytest.mark.parametrize("args", [
    pytest.param(["cancel", "--yes", OTHER], id="cancel"),
    pytest.param(["cancel", "--yes", "--slurm-only", OTHER], id="cancel-slurm-only"),
    pytest.param(["explain", OTHER], id="explain"),
])
def test_another_clusters_container_is_refused(cli: Any, tmp_path: Path, args: list[str]) -> None:
    # No Slurm on PATH and an API nobody listens on: the refusal must come first, with exit 2, not 3.
    body = cli.cluster()
    body["Services"]["Controller"]["ExternalURL"] = "https://127.0.0.1:9/"
    cli.write_config(body)
    result = cli(*args, env={"PATH": str(tmp_path / "no-slurm-here")})
    assert result.exit_code == 2, result.output
    assert (result.stdout, result.stderr) == ("", f"error: {OTHER}: not a container of cluster zzzzz\n")
