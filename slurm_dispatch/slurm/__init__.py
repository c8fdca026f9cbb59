"""The Slurm side: pure sbatch/squeue/nice logic, the backend Protocol and its adapters."""
