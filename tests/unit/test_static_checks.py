"""The package stays type-checked (mypy --strict, as configured in pyproject.toml) and lint-clean (ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def test_mypy_strict_on_the_package() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_on_package_and_tests() -> None:
    result = _run("ruff", "check", "slurm_dispatch", "tests")
    assert result.returncode == 0, result.stdout + result.stderr
