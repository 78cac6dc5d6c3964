"""What each library declares about durability, checked without a broker.

A fault report prints, beside each broker-crash result, what the pair's library declares that
decides whether a queued message survives it (queue durability, persistence, confirms or acks).
"""

from __future__ import annotations

import pytest

from queuebench.adapters import PAIRS, adapter_class


@pytest.mark.parametrize("scheme", PAIRS)
def test_every_pair_declares_its_durability(scheme):
    """Every pair's capabilities carry a durability line, so every result carries one."""
    capabilities = adapter_class(PAIRS[scheme]).capabilities
    assert capabilities.durability.strip(), f"{scheme} declares no durability"
