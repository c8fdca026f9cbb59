"""``python -m slurm_dispatch`` runs the admin CLI."""

from slurm_dispatch.cli.app import main

main()
