"""The generic dispatch core, a port of Arvados's sdk/go/dispatch; it knows nothing of Slurm."""
