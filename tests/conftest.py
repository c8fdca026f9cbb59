"""Root conftest: loads every fixture module under tests/plugins/.

Fixture modules live in tests/plugins/ (one per concern: the real Slurm cluster,
the Arvados emulator, ...) so that each can be owned and changed on its own.
Test files must have unique basenames: the test folders are not packages.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"plugins.{p.stem}" for p in (Path(__file__).parent / "plugins").glob("*.py") if p.stem != "__init__"
)
