"""The faults beyond the consumer: the broker stopped or killed, the network cut or slowed, a
worker frozen. Counted as Jepsen does: a send is acknowledged, or not (failed, or no answer);
lost is acknowledged and never received; a send never acknowledged whose message arrived is
recovered; duplicates are counted and allowed."""

from __future__ import annotations

from queuebench.report.cases import NA, cases_of, ended_by, row_name, shown, table


def faults_section(results: list[dict]) -> list[str]:
    cases = cases_of(results, "faults")
    if not cases:
        return []
    rows = []
    for case in cases:
        r = case.first
        m, fault = r["measurements"], r["measurements"].get("fault") or {}
        if r["status"] == "n/a":
            rows.append([row_name(r), r["config"].get("fault"), *[NA] * 8,
                         m.get("not_applicable")])
            continue
        lost, lost_acked = m.get("lost"), m.get("lost_acked")
        rows.append([
            row_name(r), r["config"].get("fault"), shown(m.get("total")),
            shown(lost_acked), shown(lost - lost_acked if None not in (lost, lost_acked) else None),
            shown(m.get("send_failed")), shown(m.get("recovered")), shown(m.get("duplicates")),
            shown(fault.get("first_receipt_after_heal_sec")), shown(fault.get("consumer_exits")),
            ended_by(r) if fault.get("injected", True) else "the fault never came: "
            f"{ended_by(r)}"])
    return ["## Faults beyond the consumer", "",
            "The fault hits once its share of the messages arrived, while the producer sends at "
            "its rate; producers and consumers reach the broker through Toxiproxy for network "
            "faults. **Lost, acknowledged** is what the broker or library is answerable for: "
            "acknowledged, never received. Sends never acknowledged were refused or unanswered; "
            "of those, **recovered** arrived all the same. **Recovered after** runs from the heal "
            "to the first message received. A worker that gave up during the fault was started "
            "again a second later, as its supervisor would; **workers restarted** counts them. A "
            "process crash keeps the page cache: these results cover a broker process dying, "
            "not a power loss.", "",
            table(["pair", "fault", "messages", "lost, acknowledged", "lost, never acknowledged",
                   "sends not acknowledged", "recovered", "duplicated", "recovered after s",
                   "workers restarted", "ended by"], rows), ""]
