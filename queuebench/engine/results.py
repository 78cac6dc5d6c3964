"""Results and the run folder they are written to.

A run writes `reports/<UTC time>-<name>/results.json` after every result, atomically (a temporary
file renamed over the old one), so a crash leaves the finished results readable and the run marked
incomplete. `finish` marks it complete, writes `report.md` and points `reports/latest` at it.
The file also keeps the run's progress (the plan's steps done), so that a run cut off after hours
(`make scenarios` takes a night) goes on where it stopped (`queuebench run ... --resume FOLDER`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from queuebench import ceilings
from queuebench.engine.environment import YARDSTICK_KEYS, harness_peak_rss_mb, same_code
from queuebench.errors import QueuebenchError, UsageError

# 2: a case runs `repeats` times, each repeat its own result (`config["repeat"]`, absent in
# schema 1: 0), and `measurements["latency_histogram"]` keeps the encoded HDR histogram.
# A schema 1 file still loads: it reads as a run of one repeat.
SCHEMA_VERSION = 2
STOP_MODES = ("graceful", "kill")  # how a consumer fault stops the consumers
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
LOCK_FILE = ".running"  # locked by the process running into the folder; holds its pid


@dataclass(frozen=True)
class ExperimentConfig:
    scenario: str  # "reliability" (the consumer stopped midway), "faults" or "throughput"
    pair: str
    variant: str
    format: str
    messages: int
    records: int
    work_ms: float
    deadline_sec: float
    wait_sec: float | None = None  # reliability: idle time with the consumer off
    stop: str | None = None  # reliability: "graceful" or "kill"
    repeat: int = 0  # which run of this case: every repeat is kept, statistics come on report
    workload: str | None = None  # the experiment file it came from (None: before there were any)
    consumers: int = 1  # consumer processes
    concurrency: int = 1  # per consumer process, in the pair's own unit
    producers: int = 1
    producer_mode: str = "sync"  # sync | async | processes
    fail_fraction: float = 0.0  # of the messages whose handler raises
    rate: float | tuple[tuple[int, float], ...] | None = None  # msg/s or [messages, delay_ms]
    # stages; None: as fast as the producer goes
    fault: str | None = None  # faults: the broker, network or worker fault, "broker-kill 5s"
    # What else sets a case apart: a raw or mixed payload ("50 B raw"), a Kafka topic's
    # partitions, an async producer's in-flight limit
    payload: str | None = None
    partitions: int | None = None
    in_flight: int | None = None
    durability: str | None = None  # the broker's durability mode, where a workload sweeps them

    @property
    def label(self) -> str:
        name = self.workload or self.scenario
        parts = [f"{name}/{self.stop or self.fault}" if self.stop or self.fault else name]
        if self.rate is not None:
            parts.append(f"{self.rate:g}msg/s" if isinstance(self.rate, float | int) else
                         "staged")
        if self.consumers != 1:
            parts.append(f"{self.consumers}consumers")
        parts += [f"{self.pair}[{self.variant}]", *filter(None, [self.durability]), self.format]
        if self.repeat:
            parts.append(f"#{self.repeat + 1}")
        return " ".join(parts)


@dataclass(frozen=True)
class Result:
    config: ExperimentConfig
    # "ok"; "incomplete" (cut short by its deadline: no verdict); "no-go" (payload over the
    # limit); "error"
    status: str
    pair_info: dict[str, object]
    measurements: dict[str, object] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, result: dict) -> Result:
        return cls(ExperimentConfig(**result["config"]), result["status"], result["pair_info"],
                   result["measurements"], result["error"])


CONFIG_DEFAULTS = {f.name: f.default for f in fields(ExperimentConfig) if f.default is not MISSING}


def write_atomically(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# What a resumed run notes of the machine it went on with
RESUMED_ON_KEYS = ("host", "os", *YARDSTICK_KEYS)


class RunFolder:
    """One run's folder; `results.json` is always a complete, parseable file.

    `plan` identifies the steps the run will take, in order (runner.plan_fingerprint): a resumed
    run must take the same steps to skip those done. One process at a time runs into a folder.
    """

    def __init__(self, reports_dir: Path, name: str, *, command: str, manifest: dict,
                 plan: str = "") -> None:
        started = datetime.now(UTC)
        self.path = reports_dir / f"{started:%Y%m%dT%H%M%SZ}-{name}"
        try:
            self.path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise QueuebenchError(f"run folder {self.path} exists already; "
                                  "wait a second or pick another --name") from None
        except OSError as exc:
            raise QueuebenchError(f"cannot write reports to {reports_dir}: {exc.strerror}; "
                                  "choose a writable folder with --reports-dir") from None
        self._hold()
        self.document: dict[str, object] = {
            "schema": SCHEMA_VERSION,
            "run": {"name": name, "command": command, "started_at": started.isoformat(),
                    "finished_at": None, "complete": False,
                    # The steps done, the results they wrote and the drain rates they measured
                    # (a later step's rate may be a fraction of one)
                    "progress": {"plan": plan, "steps": 0, "results": 0, "drain_rates": {}}},
            "environment": manifest,
            # The brokers' own ceilings measured on this machine (`make ceilings`), if any: the
            # report shows each pair's rates as a share of its broker's.
            "ceilings": ceilings.snapshot(),
            "payload_sizes": [],
            "results": [],
        }
        self._save()

    @classmethod
    def reopen(cls, path: Path, *, manifest: dict, plan: str) -> RunFolder:
        """The run folder at `path`, to run the rest of its plan into: a run that stopped keeps
        the results of the steps it finished, loses those of a step cut off midway, and notes
        when it was resumed, on which machine. A complete run is left as it is."""
        path = path.parent / path.resolve().name  # reports/latest: the run it points at
        load_run(path)  # a folder that is no run says so before a lock file is put in it
        folder = cls.__new__(cls)
        folder.path = path
        folder._hold()
        try:
            folder._resume(manifest, plan)
        except BaseException:
            folder.close()
            raise
        return folder

    def _resume(self, manifest: dict, plan: str) -> None:
        self.document = document = load_run(self.path)  # as the process before us left it
        path, run = self.path, document["run"]
        progress = run.get("progress")
        if isinstance(progress, dict) and progress["plan"] != plan:
            raise UsageError(f"{path} ran other experiments, pairs or settings; resume it with "
                             f"the command it ran: {run['command']} --resume {path}")
        if run["complete"]:
            return
        if not isinstance(progress, dict):
            raise UsageError(f"{path} cannot be resumed: it was written before queuebench kept "
                             "a run's progress; run it afresh")
        ran_at, now_at = document["environment"].get("commit"), manifest.get("commit")
        if not same_code(ran_at, now_at):
            raise UsageError(f"{path} ran at commit {ran_at}, and this is {now_at}: its rest "
                             f"would be measured by other code; check out {ran_at} to resume "
                             "it, or run afresh")
        del document["results"][progress["results"]:]
        for files in (path / "experiments").glob("*-*"):  # the cut-off step's, measured again
            number = files.name.split("-")[0]
            if number.isdigit() and int(number) >= progress["results"]:
                shutil.rmtree(files)
        run["finished_at"] = None
        run["resumed"] = [*run.get("resumed", []), {
            "at": datetime.now(UTC).isoformat(),
            **{key: manifest[key] for key in RESUMED_ON_KEYS if key in manifest},
            # the same code, but a later commit (its results committed midway)
            **({"commit": now_at} if now_at != ran_at else {})}]
        self._save()

    def _hold(self) -> None:
        """Lock the folder for this process, or say which process runs into it: a resume while
        the run goes on would truncate what it writes and measure its steps twice. The lock
        ends with the process, however it ends."""
        self._lock = (self.path / LOCK_FILE).open("a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "?"
            self.close()
            raise UsageError(f"{self.path} is being run by another queuebench (pid {holder}); "
                             "wait for it to end, or stop it, then resume") from None
        self._lock.truncate(0)
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()

    def close(self) -> None:
        """Release the folder to the next process (a resume)."""
        self._lock.close()

    @property
    def progress(self) -> dict:
        return self.document["run"]["progress"]

    def kept_results(self) -> list[Result]:
        """The results of the steps done before the run was resumed."""
        return [Result.from_dict(result) for result in self.document["results"]]

    def step_done(self, drain_rates: dict[str, float | None]) -> None:
        self.progress.update(steps=self.progress["steps"] + 1,
                             results=len(self.document["results"]), drain_rates={**drain_rates})
        self._save()

    def add(self, result: Result) -> None:
        self.document["results"].append(result.to_dict())
        self._save()

    def set_payload_sizes(self, rows: list[dict[str, object]]) -> None:
        self.document["payload_sizes"] = rows
        self._save()

    def finish(self, render_report, *, complete: bool = True) -> Path:
        """Write report.md and point `latest` at this run; an interrupted run says INCOMPLETE."""
        self.document["run"].update(complete=complete, finished_at=datetime.now(UTC).isoformat())
        self.document["environment"]["harness_peak_rss_mb"] = harness_peak_rss_mb()
        self._save()
        report = self.path / REPORT_FILE
        write_atomically(report, render_report(self.document))
        self._point_latest()
        return report

    def _save(self) -> None:
        write_atomically(self.path / RESULTS_FILE, json.dumps(self.document, indent=2) + "\n")

    def _point_latest(self) -> None:
        latest = self.path.parent / "latest"
        tmp = self.path.parent / f".latest-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.path.name)
        os.replace(tmp, latest)


def case_key(result: dict) -> str:
    """A case is a config without its repeat, at the concurrency asked for: a fleet capped to
    fit in memory runs as many as fit that time (605 in one run, 647 in the next). A field the
    config lacks (written before the field existed) has its default, as when it was run."""
    config = {**CONFIG_DEFAULTS, **result["config"]}
    del config["repeat"]
    if capped := (result.get("measurements") or {}).get("capped"):
        config["concurrency"] = capped["asked_concurrency"]
    return json.dumps(config, sort_keys=True)


def merge_key(result: dict) -> str:
    """The case a merge replaces by: a rate search's probes and its answer are one case each
    whatever rates they ran at (a search run again tries other rates, and its answer must
    replace the old one, not stand beside it); any other result is its case."""
    config = result["config"]
    if config["scenario"] == "sustained" or "sustained_probe" in (result.get("measurements")
                                                                  or {}):
        # A probe's message count and deadline follow from its rate.
        result = {**result, "config": {k: v for k, v in config.items()
                                       if k not in ("rate", "messages", "deadline_sec")}}
    return case_key(result)


def merge_runs(documents: list[dict[str, object]], name: str) -> dict[str, object]:
    """One results document holding the results of `documents`, for a comparison report.

    A case that more than one part measured stands as the newest part measured it (a case is
    run again because the engine measured it wrong, or the machine was busy): mixing its
    repeats would pass the old figures off as the new. Each result keeps the run that measured
    it (`part`), through merges of merges, with its commit and machine. The environment is
    what the parts share, their range or each of their values (merged_value); the merged run is
    complete only if every part was.
    """
    sizes: dict[tuple[int, str], dict] = {}
    for document in documents:
        for row in document["payload_sizes"]:
            merged = sizes.setdefault((row["records"], row["format"]), {**row, "pairs": {}})
            merged["pairs"].update(row["pairs"])
    runs = [document["run"] for document in documents]
    # Each result with the run that measured it, when that run started (merged before results
    # kept their run: the merged document's start, as before) and its case.
    stamped = []
    for document in documents:
        for result in document["results"]:
            part = result.get("part") or part_of(document)
            stamped.append(({**result, "part": part}, (part or document["run"])["started_at"],
                            merge_key(result)))
    measured_by: dict[str, str] = {}  # case -> when the newest part measuring it started
    for _, started, key in stamped:
        measured_by[key] = max(measured_by.get(key, ""), started)
    environment = {key: merged_value([document["environment"].get(key)
                                      for document in documents])
                   for key in dict.fromkeys(k for d in documents for k in d["environment"])}
    return {
        "schema": SCHEMA_VERSION,
        "run": {"name": name, "command": " + ".join(run["command"] for run in runs),
                "started_at": min(run["started_at"] for run in runs),
                "finished_at": max((run["finished_at"] or "") for run in runs) or None,
                "complete": all(run["complete"] for run in runs),
                "merged_from": [run["name"] for run in runs]},
        "environment": environment,
        "ceilings": documents[0].get("ceilings", []),
        "payload_sizes": sorted(sizes.values(), key=lambda r: (r["records"], r["format"])),
        "results": [result for result, started, key in stamped if measured_by[key] == started],
    }


def merged_value(values: list) -> object:
    """One manifest entry for the parts of a merge: the value they share; else their range
    when numbers (the machine's yardstick, the harness's memory), else each distinct value (the
    commits, the kernels): a merged report must not show the first part's machine as all."""
    distinct: list = []
    for value in values:  # by equality: a cluster's manifest is a dict, which cannot be hashed
        if value is not None and value not in distinct:
            distinct.append(value)
    if len(distinct) <= 1:
        return distinct[0] if distinct else None
    if all(isinstance(value, (int, float)) for value in distinct):
        return f"{min(distinct):g} to {max(distinct):g} over {len(distinct)} runs"
    if all(isinstance(value, (str, int, float)) for value in distinct):
        return ", ".join(map(str, distinct))
    return distinct[0]  # a cluster's manifest: the first part's


def part_of(document: dict) -> dict | None:
    """The run that measured a result, stamped on it in a merge so that the report can say
    which run (when, at which commit) each row comes from. None for a merged document's
    results that carry none: it merged them before results were stamped, and its own start
    and commits are not theirs."""
    run = document["run"]
    if "merged_from" in run:
        return None
    environment = document["environment"]
    return {"run": run["name"], "started_at": run["started_at"],
            "commit": environment.get("commit"),
            **{key: environment[key] for key in ("os", *YARDSTICK_KEYS) if key in environment},
            **({"resumed": run["resumed"]} if "resumed" in run else {})}


def newest_runs(reports_dir: Path) -> list[Path]:
    """The newest complete run folder of each run name (folders are named <UTC time>-<name>).

    A folder whose results cannot be read is skipped with a warning: one broken run must not
    stop a comparison of all the others.
    """
    newest: dict[str, Path] = {}
    for folder in sorted(reports_dir.glob("*T*Z-*")):
        try:
            complete = load_run(folder)["run"]["complete"]
        except UsageError as exc:
            print(f"queuebench: warning: skipping {folder}: {exc}", file=sys.stderr)
            continue
        if complete:
            newest[folder.name.split("-", 1)[1]] = folder
    return sorted(newest.values())


# The parts of a results document a report reads, and the type each must have.
DOCUMENT_PARTS = {"run": dict, "environment": dict, "payload_sizes": list, "results": list}
RUN_FIELDS = ("name", "command", "started_at", "complete")
RESULT_PARTS = {"config": dict, "status": str, "pair_info": dict, "measurements": dict}


def load_run(folder: Path) -> dict[str, object]:
    """The results document of a run folder (or of `reports/latest`), checked for its shape."""
    path = folder / RESULTS_FILE
    if not path.is_file():
        raise UsageError(f"{folder} holds no {RESULTS_FILE}; pass a run folder such as "
                         "reports/latest")
    readable = (1, SCHEMA_VERSION)  # schema 1 reads as a run of one repeat
    not_ours = f"{path} is not a queuebench results file of schema 1 or {SCHEMA_VERSION}"
    try:
        document = json.loads(path.read_bytes().decode())
    except UnicodeDecodeError:
        raise UsageError(f"{not_ours} (it is not text)") from None
    except json.JSONDecodeError as exc:
        empty = " (it is empty)" if not exc.doc.strip() else ""
        raise UsageError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}){empty}"
                         ) from None
    schema = document.get("schema") if isinstance(document, dict) else None
    if type(schema) is not int or schema not in readable:  # not `true`, which == 1
        raise UsageError(not_ours)
    missing = [part for part, kind in DOCUMENT_PARTS.items()
               if not isinstance(document.get(part), kind)]
    missing += [f"run.{field}" for field in RUN_FIELDS
                if isinstance(document.get("run"), dict) and field not in document["run"]]
    if not missing:
        missing = [f"results[{i}].{part}" for i, result in enumerate(document["results"])
                   for part, kind in RESULT_PARTS.items()
                   if not isinstance(result, dict) or not isinstance(result.get(part), kind)]
    if missing:
        raise UsageError(f"{not_ours}: {', '.join(missing[:3])} missing or malformed")
    return document
