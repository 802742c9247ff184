"""The local executor: jobs run on the server's own machine, one slot per GPU that nvidia-smi lists."""
