"""The harness-overhead benchmark runs end to end and prints its table; a pair whose broker does
not answer gets a note, not a traceback. Its figures are printed, never asserted."""

from __future__ import annotations

import pytest

from queuebench.adapters.huey import HueyRedisAdapter
from queuebench.bench import overhead
from queuebench.errors import BrokerUnreachable


@pytest.mark.broker("redis")
@pytest.mark.slow
def test_the_benchmark_prints_bare_and_harness_rates_of_a_pair(capsys):
    """At a tiny N on huey+redis: every run completes, and the table has the produce row and
    both consume rows (a receipt per message, batched) with an overhead in percent."""
    assert overhead.main(["--pair", "huey+redis", "--messages", "20", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| huey+redis |")]
    assert [row.split(" | ")[2] for row in rows] == [
        "produce", "consume, a receipt per message", "consume, receipts batched"]
    assert all(row.rstrip(" |").split(" | ")[-1].split("%")[0].lstrip("-").replace(".", "")
               .isdigit() for row in rows)


def test_a_pair_whose_broker_does_not_answer_is_a_note(capsys, monkeypatch):
    """An unreachable broker: one line naming the pair and how to start it, no table, exit 1."""
    def unreachable(self, timeout):
        raise BrokerUnreachable("huey+redis: cannot reach redis://127.0.0.1:6379/0")

    monkeypatch.setattr(HueyRedisAdapter, "check_reachable", unreachable)
    assert overhead.main(["--pair", "huey+redis", "--messages", "20", "--repeats", "1"]) == 1
    out = capsys.readouterr().out
    assert "huey+redis: skipped, its broker does not answer" in out
    assert "services up" in out
    assert "| pair |" not in out


def test_a_count_that_is_not_a_positive_whole_number_is_refused(capsys):
    """--messages 0 is a usage error naming the option, exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        overhead.main(["--messages", "0"])
    assert exit_info.value.code == 2
    assert "--messages: expected a positive whole number, got '0'" in capsys.readouterr().err
