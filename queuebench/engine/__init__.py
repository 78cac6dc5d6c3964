"""The engine: runs the workloads of experiment files over pairs and writes their results (see
phases.py for the sequence every workload goes through)."""
