"""The application: command line, reports, status, info, demo and SLURM batch scripts."""
