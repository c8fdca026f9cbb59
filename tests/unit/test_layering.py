"""The import layering of slurm_dispatch (.importlinter), checked with import-linter, and shown to bite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / ".importlinter"


def lint_imports(package_parent: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the slurm_dispatch package found in ``package_parent``."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
         "--config", str(CONFIG), "--no-cache"],
        cwd=cwd, env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_package_keeps_every_contract(tmp_path: Path) -> None:
    result = lint_imports(REPO, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_cli_module_importing_the_runner_breaks_the_contract(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(REPO / "slurm_dispatch", copy / "slurm_dispatch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    status = copy / "slurm_dispatch" / "cli" / "status.py"
    status.write_text(status.read_text() + "\nfrom slurm_dispatch.runner import SlurmRunner  # noqa\n")
    result = lint_imports(copy, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "slurm_dispatch.cli.status -> slurm_dispatch.runner" in result.stdout
    assert "never the runner's internals BROKEN" in result.stdout


def test_a_pure_module_running_commands_breaks_the_contract(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(REPO / "slurm_dispatch", copy / "slurm_dispatch",
                    ignore=shutil.ignore_patterns("__pycache__"))
    decide = copy / "slurm_dispatch" / "slurm" / "decide.py"
    decide.write_text(decide.read_text() + "\nimport subprocess  # noqa\n")
    result = lint_imports(copy, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "slurm_dispatch.slurm.decide is not allowed to import subprocess" in result.stdout
