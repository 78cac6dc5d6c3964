"""Which messages a handler is meant to fail, decided by sequence number alone.

The worker (`queuebench.worker.handler`) raises for these; the engine's ledger
(`queuebench.engine.ledger.tally`) asks the same question to tell a failure that was planned
from one that was not, and a planned failure that never ran (the message is lost) from one that
did. Nothing here imports more than the standard library, so either side may import it.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache


class HandlerFailed(Exception):
    """Raised by the handler for a message meant to fail, after its "failed" receipt.

    Task libraries do with it what they do with any failing task (retry, dead-letter, drop);
    a plain client's loop decides for itself, as its users' code would.
    """

    def __init__(self, seq: int) -> None:
        super().__init__(f"message {seq} is meant to fail (fail_fraction)")
        self.seq = seq


@cache
def _exact(fraction: float) -> Fraction:
    # The decimal as written (0.29, not 0.28999999999999998002): 0.29 of 100 is then exactly 29.
    return Fraction(repr(fraction))


def meant_to_fail(seq: int, fraction: float) -> bool:
    """True for exactly floor(N * fraction) of the messages 0..N-1, spread evenly.

    Message `seq` fails when floor((seq + 1) * fraction) > floor(seq * fraction): the count
    below N telescopes to floor(N * fraction) for every N, so any prefix of the run holds its
    share. Message 0 fails only when every message does (fraction 1).
    """
    if fraction <= 0 or seq < 0:
        return False
    exact = _exact(fraction)
    p, q = exact.numerator, exact.denominator
    return (seq + 1) * p // q > seq * p // q
