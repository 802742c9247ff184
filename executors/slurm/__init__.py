"""The Slurm executor: jobs handed to a Slurm cluster through sbatch, followed through squeue and the wrapper."""
