"""Benchmarks of queuebench itself, printed, never asserted: what the harness costs next to a
bare client (overhead.py, `make bench`) and what one poll of the ledger costs (ledger.py,
`make bench-ledger`)."""
