"""``slurm-dispatch sandbox ...``: the emulated Arvados API and the demo."""

from __future__ import annotations

import typer

sandbox_app = typer.Typer(help="The embedded sandbox: an emulated Arvados API and the demo.", no_args_is_help=True)
