"""Benchmarks of queuebench itself: what the harness costs next to a bare client (overhead.py).

The ledger reader's own benchmark is `queuebench.engine.bench`.
"""
