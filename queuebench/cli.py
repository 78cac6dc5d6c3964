"""The `queuebench` command: pairs, sizes, run, report, compare, consume.

Every error a user can cause is one line on stderr and a non-zero exit: 2 for usage errors,
1 for failures. Never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import signal
import sys
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from queuebench import adapters, report
from queuebench.engine.environment import machine_manifest
from queuebench.engine.results import (
    REPORT_FILE,
    RESULTS_FILE,
    STOP_MODES,
    RunFolder,
    load_run,
    merge_runs,
    newest_runs,
    write_atomically,
)
from queuebench.errors import QueuebenchError, UsageError
from queuebench.payloads import DEFAULT_STOCK_DB_URL, FORMATS, payload_sizes
from queuebench.redact import redact
from queuebench.report.compare import compare

PROBE_TIMEOUT_SEC = 2.0
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{message} (see: {self.prog} --help)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):  # nan compares false with everything; inf never ends
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def positive(text: str) -> float:
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not more than 0")
    return value


def run_name(text: str) -> str:
    """A run name becomes part of a folder name: one path component of plain characters."""
    if not RUN_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} may hold only letters, digits, '.', '_' and "
                                         "'-', and must not start with '.'")
    return text


def tell(line: str) -> None:
    """A line on stderr that may find no terminal left to read it (after SIGHUP)."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def probe_state(entry: adapters.PairEntry) -> str:
    """"broker answers", or the one line saying why not; the probe connects and asks only."""
    try:
        probe = adapters.adapter_class(entry)(entry.default_url, queue="queuebench-probe")
    except QueuebenchError as exc:  # its client library is missing
        return str(exc)
    try:
        probe.check_reachable(PROBE_TIMEOUT_SEC)
        return "broker answers"
    except QueuebenchError as exc:
        return str(exc)
    finally:
        probe.cleanup()


def cmd_pairs(_args: argparse.Namespace) -> int:
    urls = {scheme: redact(entry.default_url) for scheme, entry in adapters.PAIRS.items()}
    scheme_width = max(len(scheme) for scheme in urls)
    url_width = max(len(url) for url in urls.values())
    for entry in adapters.PAIRS.values():
        print(f"{entry.scheme:<{scheme_width}}  {urls[entry.scheme]:<{url_width}}  "
              f"{redact(probe_state(entry))}")
    return 0


def cmd_sizes(args: argparse.Namespace) -> int:
    limits = {}
    for entry in adapters.PAIRS.values():
        try:
            limits[entry.scheme] = adapters.adapter_class(entry).size_limit
        except QueuebenchError:
            limits[entry.scheme] = None  # client library not installed
    sizes = payload_sizes(args.stock_db)
    print(f"{'records':>8} {'format':<9} {'bytes':>11}  does not fit")
    for size in sizes:
        too_big = [scheme for scheme, limit in limits.items() if limit and limit.max_bytes
                   and limit.wire_bytes(size.bytes) > limit.max_bytes]
        print(f"{size.records:>8,} {size.fmt:<9} {size.bytes:>11,}  "
              f"{', '.join(too_big) or '(fits every pair)'}")
    unknown = [scheme for scheme, limit in limits.items() if limit is None]
    if unknown:
        print(f"not checked (client library not installed): {', '.join(unknown)}")
    return 0


def legacy_settings(args: argparse.Namespace) -> list[str]:
    """The options that predate `--set`, as the settings they stand for."""
    options = {"messages": args.messages, "payload.records": args.records,
               "work_ms": args.work_ms, "consumers.wait_sec": args.wait,
               "deadline_sec": args.deadline, "repeats": args.repeats,
               "payload.format": args.format and json.dumps(args.format)}
    return [f"{key}={value}" for key, value in options.items() if value is not None]


def cmd_run(args: argparse.Namespace) -> int:
    from queuebench.engine import runner, workload
    from queuebench.engine.client_logs import client_logs_in
    from queuebench.engine.interrupt import Interrupt

    workloads = tuple(part for name in args.experiments for part in workload.load(
        name, [*legacy_settings(args), *args.set], stops=args.stop))
    plan = runner.Plan(workloads=workloads, pairs=tuple(args.pair or ["embedded"]),
                       variants=tuple(args.variant or ()), stock_db_url=args.stock_db,
                       reachable_only=args.reachable_only)
    # `kill`, `timeout` and CI runners send SIGTERM, a closed terminal SIGHUP: end the run as
    # Ctrl-C does, through the experiments' cleanup, so that no consumer outlives it.
    signal.signal(signal.SIGTERM, Interrupt.handle)
    for ignorable in (signal.SIGINT, signal.SIGHUP):  # `nohup queuebench run &` goes on
        if signal.getsignal(ignorable) is not signal.SIG_IGN:
            signal.signal(ignorable, Interrupt.handle)
    # Everything that can be wrong with the request fails here, before a run folder exists.
    pairs = runner.resolve_pairs(plan)
    runner.check_stock_db(plan)
    pairs = runner.reachable_pairs(plan, pairs)
    if not args.cluster:  # a placement that cannot be (a cluster's is checked once it is up)
        for cell in plan.cells:
            cell.nodes_of_processes(None)
            cell.nodes_of_producers(None)
    with contextlib.ExitStack() as cleanup:
        manifest = machine_manifest()
        cluster = None
        if args.cluster:
            from queuebench.cluster import Cluster  # imports Ray: only when asked for

            cluster = Cluster(args.cluster)
            cleanup.callback(cluster.close)
            for cell in plan.cells:
                cell.nodes_of_processes(cluster.labels)
                cell.nodes_of_producers(cluster.labels)
            manifest["cluster"] = cluster.manifest()
        plan_id = runner.plan_fingerprint(plan, pairs)
        if args.resume:
            folder = RunFolder.reopen(Path(args.resume), manifest=manifest, plan=plan_id)
        else:
            default_name = "-".join(dict.fromkeys(Path(name).stem for name in args.experiments))
            folder = RunFolder(Path(args.reports_dir), args.name or default_name,
                               command=redact(shlex.join(["queuebench", *sys.argv[1:]])),
                               manifest=manifest, plan=plan_id)
        cleanup.callback(folder.close)
        if folder.document["run"]["complete"]:  # resumed, and there was nothing left
            tell(f"queuebench: {folder.path} is complete; nothing left to run")
            if not (folder.path / REPORT_FILE).exists():  # killed as it finished
                write_atomically(folder.path / REPORT_FILE,
                                 report.write_report(folder.path, folder.document))
            print(folder.path / REPORT_FILE)
            return run_exit_code(result["status"] for result in folder.document["results"])
        cleanup.enter_context(client_logs_in(folder.path))
        try:
            results = runner.run_plan(plan, pairs, folder, cluster)
        except BaseException:
            # Interrupted or crashed: what finished is still a report, marked INCOMPLETE.
            path = folder.finish(partial(report.write_report, folder.path), complete=False)
            tell(f"queuebench: the run stopped early; what finished is in {path}")
            raise
    path = folder.finish(partial(report.write_report, folder.path))
    print(path)
    return run_exit_code(result.status for result in results)


def cluster_spec(text: str) -> str:
    from queuebench.cluster import check_spec

    try:
        return check_spec(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--cluster {text!r}: ")) from None


def run_exit_code(statuses: Iterable[str]) -> int:
    """0: every row complete; 1: an experiment failed; 3: a row was cut short by its deadline."""
    statuses = set(statuses)
    if "error" in statuses:
        return 1
    return 3 if "incomplete" in statuses else 0


def cmd_report(args: argparse.Namespace) -> int:
    """One folder: rebuild its report. Several, or none (the newest run of each name under
    --reports-dir): merge them into one comparison in --output."""
    folders = [Path(f) for f in args.folders] or newest_runs(Path(args.reports_dir))
    if not folders:
        raise UsageError(f"no complete run in {args.reports_dir}; run `queuebench run` first")
    documents = [load_run(folder) for folder in folders]
    merging = len(args.folders) != 1 or args.output
    output = Path(args.output or Path(args.reports_dir) / "comparison") if merging else folders[0]
    if merging:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueuebenchError(f"cannot write {output}: {exc.strerror}") from None
    try:
        document = merge_runs(documents, args.name) if merging else documents[0]
        text = report.write_report(output, document)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # load_run checks the shape of a document; a field deeper down can still be wrong.
        raise UsageError(f"a results.json in {', '.join(map(str, folders))} lacks what a "
                         f"queuebench run writes ({type(exc).__name__}: {exc})") from None
    if merging:
        write_atomically(output / RESULTS_FILE, json.dumps(document, indent=2) + "\n")
    path = output / REPORT_FILE
    write_atomically(path, text)
    print(path)
    return 0


def run_document(given: str) -> dict:
    """The results of a run folder, or of a results.json named directly."""
    path = Path(given)
    if path.is_dir():
        return load_run(path)
    if path.name == RESULTS_FILE:
        return load_run(path.parent)
    raise UsageError(f"{given} is neither a run folder nor a {RESULTS_FILE}; pass a folder such "
                     "as reports/latest")


def cmd_compare(args: argparse.Namespace) -> int:
    """What changed from RUN_A to RUN_B, figure by figure, and whether it is beyond the noise."""
    before, after = run_document(args.run_a), run_document(args.run_b)
    try:
        text = compare(before, after)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{args.run_a} or {args.run_b} lacks what a queuebench run writes "
                         f"({type(exc).__name__}: {exc})") from None
    if args.output:
        try:
            write_atomically(Path(args.output), text)
        except OSError as exc:
            raise QueuebenchError(f"cannot write {args.output}: {exc.strerror}") from None
        print(args.output)
    else:
        print(text, end="")
    return 0


def cmd_consume(_args: argparse.Namespace) -> int:
    from queuebench.worker.consume import run_consumer

    run_consumer()
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="queuebench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    commands.add_parser("pairs", help="list every pair, its default URL and whether its broker "
                        "answers").set_defaults(func=cmd_pairs)

    sizes = commands.add_parser("sizes", help="bytes per format and which pairs cannot take them")
    sizes.add_argument("--stock-db", default=DEFAULT_STOCK_DB_URL, metavar="URL")
    sizes.set_defaults(func=cmd_sizes)

    run = commands.add_parser("run", help="run experiments and write a report")
    run.add_argument("experiments", nargs="+", metavar="EXPERIMENT",
                     help="an experiment file (experiments/throughput.yaml) or the name of one "
                     "in experiments/: reliability, throughput, latency, reference")
    run.add_argument("--pair", action="append", metavar="PAIR_OR_URL",
                     help="a pair (huey+sqlite), its URL, or a group (embedded, all); "
                     "repeatable; default: embedded")
    run.add_argument("--variant", action="append", help="delivery-settings variant; repeatable;"
                     " default: every variant the pair declares")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a key of the experiment files with a YAML value, e.g. "
                     "--set rate=200 or --set consumers.processes=[1,4] (a list sweeps)")
    run.add_argument("--repeats", type=positive_int, help="runs of each case (files' default: "
                     "1 for reliability, 3 for throughput and latency)")
    # Shorthands for --set, kept from before experiment files:
    run.add_argument("--format", action="append", choices=FORMATS[:2],
                     help="payload format (payload.format); repeatable")
    run.add_argument("--stop", action="append", choices=STOP_MODES,
                     help="how a consumer fault stops the consumers (faults: consumer); "
                     "repeatable")
    run.add_argument("--messages", type=positive_int, help="messages per case (messages)")
    run.add_argument("--records", type=positive_int, help="stock records a message "
                     "(payload.records)")
    run.add_argument("--work-ms", type=non_negative, help="work per message (work_ms)")
    run.add_argument("--wait", type=non_negative, help="seconds the queue fills with the "
                     "consumers off, where they start after producing (consumers.wait_sec)")
    run.add_argument("--deadline", type=positive, help="seconds before a case gives up "
                     "(deadline_sec); default scales with the messages and the work")
    run.add_argument("--cluster", type=cluster_spec, metavar="local:N|ray://HEAD:PORT",
                     help="run the consumers on the nodes of a Ray cluster (needs the cluster "
                     "extra): local:N simulates N nodes on this machine")
    run.add_argument("--reachable-only", action="store_true",
                     help="skip pairs whose broker does not answer instead of failing")
    run.add_argument("--name", type=run_name, help="run name, part of the folder name")
    run.add_argument("--reports-dir", default="reports")
    run.add_argument("--resume", metavar="FOLDER", help="go on with the run in FOLDER where it "
                     "stopped (the same command, at the same commit): the steps it finished "
                     "are kept")
    run.add_argument("--stock-db", default=DEFAULT_STOCK_DB_URL, metavar="URL")
    run.set_defaults(func=cmd_run)

    rep = commands.add_parser("report", help="rebuild a run's report.md from its results.json, "
                              "or merge several runs into one comparison")
    rep.add_argument("folders", nargs="*", metavar="FOLDER",
                     help="run folders; none: the newest complete run of each name")
    rep.add_argument("--output", help="folder for the merged results.json and report.md "
                     "(default: REPORTS_DIR/comparison)")
    rep.add_argument("--name", default="comparison", help="name of the merged run")
    rep.add_argument("--reports-dir", default="reports")
    rep.set_defaults(func=cmd_report)

    cmp = commands.add_parser("compare", help="what changed from one run to another, figure by "
                              "figure, and whether it is beyond the noise")
    cmp.add_argument("run_a", metavar="RUN_A", help="the earlier run: folder or results.json")
    cmp.add_argument("run_b", metavar="RUN_B", help="the later run: folder or results.json")
    cmp.add_argument("--output", metavar="FILE", help="write the markdown here, not to stdout")
    cmp.set_defaults(func=cmd_compare)

    commands.add_parser("consume", help="(started by the runner) a plain client's consumer "
                        "loop").set_defaults(func=cmd_consume)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args)
        sys.stdout.flush()  # so that a closed pipe shows up here, in the handler below
        return code
    except QueuebenchError as exc:
        print(f"queuebench: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        tell("queuebench: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (`queuebench pairs | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by it
