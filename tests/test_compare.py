"""`queuebench compare RUN_A RUN_B`: the change in each figure, and whether it is beyond the
noise of the repeats."""

from __future__ import annotations

import json

from queuebench.cli import main
from queuebench.report.compare import BEYOND, CANNOT_TELL, WITHIN, compare
from tests.test_report import config, document, measurements, repeats


def run(name: str, **rates: tuple[float, ...]) -> dict:
    """A run whose throughput case for each pair ran once per rate given."""
    results = [r for pair, values in rates.items() for r in repeats(
        config("throughput", pair), *(measurements(consume=v) for v in values))]
    return {**document(results), "run": {**document([])["run"], "name": name}}


def verdicts(text: str) -> dict[str, tuple[str, str]]:
    """(change, verdict) of the consume rate of each pair."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| throughput")]
    return {row[0].split()[1]: (row[4], row[5]) for row in rows if row[1] == "consume msg/s"}


def test_compare_flags_a_2x_change_and_not_a_2_percent_one_on_noisy_repeats():
    """Repeats spread about 10%: doubling is beyond the noise, 2% is within it."""
    before = run("a", doubled=(1000.0, 1100.0, 950.0), steady=(1000.0, 1100.0, 950.0))
    after = run("b", doubled=(2000.0, 2200.0, 1900.0), steady=(1020.0, 1122.0, 969.0))
    found = verdicts(compare(before, after))
    assert found["doubled"] == ("2.00x better", BEYOND)
    assert found["steady"] == ("1.02x better", WITHIN)


def test_compare_cannot_tell_from_one_repeat_and_names_cases_only_one_run_has():
    """A single run a side has no noise to compare with; unmatched cases are listed."""
    text = compare(run("a", once=(1000.0,), gone=(5.0,)), run("b", once=(2000.0,), new=(9.0,)))
    assert verdicts(text)["once"] == ("2.00x better", CANNOT_TELL)
    assert "Cases only in A: throughput gone json." in text
    assert "Cases only in B: throughput new json." in text


def test_compare_writes_markdown_to_a_file_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    """--output writes the file; a path that is no run is exit 2 with one line."""
    for name, rates in (("a", (1000.0, 1100.0)), ("b", (500.0, 520.0))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(run(name, p=rates)))
    out = tmp_path / "cmp.md"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b" / "results.json"),
                 "--output", str(out)]) == 0
    assert verdicts(out.read_text())["p"] == ("2.06x worse", BEYOND)
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.txt is neither a run folder" in err
    (tmp_path / "a" / "results.json").write_text("{}")
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "not a queuebench results file" in capsys.readouterr().err
