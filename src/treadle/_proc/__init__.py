"""Processes, pipes and signals on top of the kernel."""
