"""Each broker's own load tool, run at a tiny size against the real broker, and the command's
behaviour when a broker does not answer. The figures are only checked to be measured (positive,
for the messages asked), never for speed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from queuebench.ceilings import ceiling_at
from queuebench.ceilings.__main__ import main
from queuebench.services import SERVICES

SIZE = 100
MESSAGES = 2_000
BROKER_SERVICES = {"kafka": "kafka", "rabbitmq": "rabbitmq", "redis": "redis",
                   "postgres": "postgres", "sqs": "elasticmq"}


@pytest.mark.parametrize("broker", [
    pytest.param(name, marks=pytest.mark.broker(service_name))
    for name, service_name in BROKER_SERVICES.items()])
def test_each_tool_measures_both_directions(broker: str, tmp_path: Path, capsys) -> None:
    """The broker's tool produces and consumes the messages asked, and the file and the table
    carry positive rates for them; the lookup finds the row by an approximate size."""
    output = tmp_path / "ceilings.json"
    code = main(["--broker", broker, "--sizes", str(SIZE), "--messages", str(MESSAGES),
                 "--output", str(output), "--markdown", str(tmp_path / "CEILINGS.md")])

    assert code == 0, capsys.readouterr().err
    (row,) = json.loads(output.read_text())["ceilings"]
    assert (row["broker"], row["size_bytes"], row["messages"]) == (broker, SIZE, MESSAGES)
    for rate in ("produce_msg_s", "produce_mb_s", "consume_msg_s", "consume_mb_s"):
        assert row[rate] > 0, rate
    assert f"| {broker} |" in capsys.readouterr().out
    assert ceiling_at(broker, SIZE + 30, output).produce_msg_s == row["produce_msg_s"]
    assert ceiling_at(broker, SIZE * 3, output) is None  # not "about" the size measured


def test_a_broker_that_does_not_answer_is_named_in_one_line(tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    """Nothing listens on the port: one line names the address and `make services-up`, no
    traceback, and with no other broker measured the exit is 1 and nothing is written."""
    monkeypatch.setitem(SERVICES, "redis", dataclasses.replace(SERVICES["redis"], port=1))
    output = tmp_path / "ceilings.json"

    code = main(["--broker", "redis", "--sizes", "100", "--output", str(output),
                 "--markdown", str(tmp_path / "CEILINGS.md")])

    err = capsys.readouterr().err
    assert code == 1
    assert "redis: not measured: redis does not answer at 127.0.0.1:1; start it with: make " \
           "services-up" in err
    assert "Traceback" not in err
    assert not output.exists()


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "0"], "--sizes: expected a whole number above 0, got '0'"),
    (["--messages", "many"], "--messages: expected a whole number above 0, got 'many'"),
    (["--broker", "nats"], "--broker: invalid choice: 'nats'"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_broken_ceilings_file_is_named(tmp_path: Path, capsys) -> None:
    """An earlier file that is not a ceilings file stops the run before anything is measured."""
    output = tmp_path / "ceilings.json"
    output.write_text("{not json")

    code = main(["--broker", "redis", "--output", str(output)])

    assert code == 2
    assert f"{output}: not a ceilings file" in capsys.readouterr().err
