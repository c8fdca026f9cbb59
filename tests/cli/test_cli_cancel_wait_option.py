"""``cancel --wait SECONDS`` (how long a Running container is left to crunch-run after the SIGTERM) is a finite
number of seconds from 0 to an hour, checked before anything is asked of Slurm or the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

UUID = "zzzzz-dz642-aaaaaaaaaaaaaaa"


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "3601"])
def test_a_wait_that_is_not_a_number_of_seconds_is_refused(cli: Any, tmp_path: Path, value: str) -> None:
    result = cli("cancel", "--yes", "--wait", value, UUID, env={"PATH": str(tmp_path / "no-slurm-here")})
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"error: Invalid value for '--wait': must be a number of seconds from 0 to 3600, not "
                             f"{float(value)} (see 'slurm-dispatch cancel --help')\n")


@pytest.mark.parametrize("value", ["0", "3600", "2.5"])
def test_a_wait_in_range_is_accepted(cli: Any, tmp_path: Path, value: str) -> None:
    # past the check: the next step is squeue, which is not there (exit 3)
    result = cli("cancel", "--yes", "--wait", value, UUID, env={"PATH": str(tmp_path / "no-slurm-here")})
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("error: squeue "), result.stderr
