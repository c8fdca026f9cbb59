"""slurm-dispatch: runs Arvados containers on a Slurm cluster."""

__version__ = "0.1.0"
