"""The typer admin CLI: one module per command group, thin."""
